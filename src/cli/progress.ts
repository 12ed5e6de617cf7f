const BAR_WIDTH = 28;
const REDRAW_MS = 100;

export interface ProgressBar {
  /** `fraction` of the work is done; `text` says what, e.g. "12/40 packages 1.2 GiB". */
  update(phase: string, fraction: number, text: string): void;
  done(): void;
}

/** A one-line progress bar on a terminal; silent when stderr is a file or a pipe. */
export function progressBar(stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  if (!stream.isTTY) return { update: () => {}, done: () => {} };
  let last = 0;
  let drawn = false;
  return {
    update(phase, fraction, text) {
      const now = Date.now();
      if (now - last < REDRAW_MS) return;
      last = now;
      const filled = Math.round(Math.max(0, Math.min(1, fraction)) * BAR_WIDTH);
      stream.write(`\r${phase.padEnd(10)} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${text}\x1b[K`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write('\r\x1b[K');
      drawn = false;
    },
  };
}
