/**
 * Disk copies of small pieces (4 KiB chunks, chunk lists), written once the mount has gone quiet.
 *
 * A cold launch that follows a startup profile fetches a thousand or more chunks within a second, and each disk
 * copy is a file: create, write, close, rename. Written as they arrived, those copies took the mount's CPU while the
 * application wanted both cores (issue 12's bench-latency at 20 ms, medians of 3: profiled launch 1604 ms and
 * 730 ms of mount CPU with them, 1477 ms and 630 ms without them; cold launch mount CPU 1160 ms against 800 ms). A
 * disk copy is a convenience for the next mount, never a reader's answer, so it can wait: pieces gather in a
 * bounded backlog and are written once none has come for `quietMs`, or at once when the backlog is full or someone
 * waits for them (`flushed()`: unmount, `rezfs prefetch`). What does not fit in the backlog gets no disk copy, as
 * before when writes piled up.
 *
 * Invariants: the backlog never holds more than `maxBytes`; a failed write is one warning, never an error to a
 * reader; the timer never keeps the process alive. Kernel-free; imports nothing above the cache.
 */
import type { Log } from '../log.js';
import type { BlockCache } from './block-cache.js';

export interface WriteBehindConfig {
  /** How long no new piece must come before the backlog is written. */
  quietMs: number;
  /** The most bytes the backlog holds; a piece beyond it is not written to disk. */
  maxBytes: number;
  /** Writes at once while the backlog drains. */
  concurrency: number;
}

export const DEFAULT_WRITE_BEHIND: WriteBehindConfig = {
  // Longer than the gaps between the bursts of one start-up, shorter than a user's pause between commands.
  quietMs: 1_000,
  // 2,048 chunks of 4 KiB: a big start-up's worth; within the memory plan's process reserve (memory-plan.ts).
  maxBytes: 8 * 1024 * 1024,
  concurrency: 4,
};

export class WriteBehind {
  private readonly backlog = new Map<string, Buffer>();
  private backlogBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  /** Pieces that got no disk copy because the backlog was full. */
  skipped = 0;

  constructor(
    private readonly disk: BlockCache,
    private readonly log: Log,
    private readonly config: WriteBehindConfig = DEFAULT_WRITE_BEHIND,
  ) {}

  /** Takes a verified piece for a later disk copy (or none, when the backlog is full). */
  add(sha: string, data: Buffer): void {
    if (this.backlog.has(sha)) return;
    if (this.backlogBytes + data.length > this.config.maxBytes) {
      this.skipped++;
      void this.drain(); // full: write now rather than skip what comes next
      return;
    }
    this.backlog.set(sha, data);
    this.backlogBytes += data.length;
    if (this.draining) return; // the running drain takes it
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.drain(), this.config.quietMs);
    this.timer.unref();
  }

  /** Settles once every piece taken so far is on disk (or failed, with a warning). */
  async flushed(): Promise<void> {
    while (this.backlog.size > 0 || this.draining) await this.drain();
  }

  private drain(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.draining ??= Promise.all(Array.from({ length: this.config.concurrency }, () => this.writeNext())).then(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /** One of the drain's writers: takes pieces from the backlog until it is empty. */
  private async writeNext(): Promise<void> {
    for (;;) {
      const next = this.backlog.entries().next();
      if (next.done) return;
      const [sha, data] = next.value;
      this.backlog.delete(sha);
      try {
        await this.disk.put(sha, data);
      } catch (err) {
        this.log.warn(`disk cache write failed: ${(err as Error).message}`);
      } finally {
        this.backlogBytes -= data.length;
      }
    }
  }
}
