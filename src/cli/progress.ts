import type { PublishProgress } from '../publish/index.js';
import { formatBytes } from './units.js';

const BAR_WIDTH = 28;
const REDRAW_MS = 100;

/** A one-line progress bar on a terminal; silent when stderr is a file or a pipe. */
export function progressBar(stream: NodeJS.WriteStream = process.stderr): { update(p: PublishProgress): void; done(): void } {
  if (!stream.isTTY) return { update: () => {}, done: () => {} };
  let last = 0;
  let drawn = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < REDRAW_MS) return;
      last = now;
      const fraction = p.totalBytes ? p.doneBytes / p.totalBytes : p.totalPackages ? p.donePackages / p.totalPackages : 0;
      const filled = Math.round(Math.min(1, fraction) * BAR_WIDTH);
      const bytes = p.totalBytes ? `${formatBytes(p.doneBytes)}/${formatBytes(p.totalBytes)}` : formatBytes(p.doneBytes);
      stream.write(`\r${p.phase.padEnd(9)} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${p.donePackages}/${p.totalPackages} packages ${bytes}\x1b[K`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}
