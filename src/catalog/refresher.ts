import type { Log } from '../log.js';
import { keys } from './schema.js';
import type { Catalog, TrustPolicy } from './catalog.js';

export interface RefresherOptions {
  /** 0 disables polling; refreshNow() still works (a publisher's notification). */
  intervalMs: number;
  /** Read before each load, so the rollback floor is the newest generation accepted so far. */
  trust?: () => Promise<TrustPolicy>;
  log: Log;
  /** Called with each newly accepted generation. */
  onNewGeneration: (catalog: Catalog) => Promise<void> | void;
  /** The poll's jitter source (tests); Math.random by default. */
  random?: () => number;
}

/**
 * Follows `index/HEAD`: a cheap HEAD request per poll, a new generation loaded only when it moved.
 * A generation that fails to load or to verify is logged and skipped; the last good one stays.
 */
export class CatalogRefresher {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private lastEtag: string | undefined;
  /** For `rezfs status`: when the store was last asked, and why the last refresh failed, if it did. */
  lastCheckMs: number | undefined;
  lastError: string | undefined;

  constructor(
    private current: Catalog,
    private readonly options: RefresherOptions,
  ) {}

  /**
   * Polls every `intervalMs` on average, each wait drawn uniformly from [0.5, 1.5) x the interval: a farm's
   * mounts, started together, then ask for `index/HEAD` spread over the interval instead of in lock-step.
   */
  start(): void {
    if (this.options.intervalMs <= 0 || this.stopped) return;
    const waitMs = this.options.intervalMs * (0.5 + (this.options.random ?? Math.random)());
    this.timer = setTimeout(() => void this.refreshNow().finally(() => this.start()), waitMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** One refresh at a time; a call during a refresh waits for it. */
  refreshNow(): Promise<void> {
    this.running ??= this.refresh().finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * A generation counts as served only once `onNewGeneration` has taken it: until then `current`, the
   * etag seen and `lastError` stay as they were, so a failed hand-over is tried again at the next poll
   * and `status` keeps saying why until one succeeds.
   */
  private async refresh(): Promise<void> {
    const { store } = this.current;
    try {
      this.lastCheckMs = Date.now();
      const head = await store.head(keys.head);
      if (head && head.etag !== this.lastEtag) {
        const next = await this.current.next(await this.options.trust?.());
        if (next.indexHash !== this.current.indexHash) {
          await this.options.onNewGeneration(next);
          this.current = next;
          this.options.log.info(`now serving generation ${next.index.generation} (index ${next.indexHash}) of ${store.url}`);
        }
        this.lastEtag = head.etag;
      }
      this.lastError = undefined;
    } catch (err) {
      this.lastError = (err as Error).message;
      this.options.log.error(`refresh of ${store.url} failed; still serving generation ${this.current.index.generation}: ${(err as Error).message}`);
    }
  }
}
