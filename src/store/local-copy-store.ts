import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sha256Hex } from '../hash.js';
import { ForwardingStore } from './forwarding-store.js';
import { ObjectNotFoundError, type ObjectInfo, type ObjectStore } from './types.js';

/** After a failed look at the store, serve copies for this long before asking it again. */
const RECHECK_MS = 10_000;

export interface CopyRules {
  /** Objects that never change once written: a local copy is always as good as the store's. */
  immutable(key: string): boolean;
  /** Small objects that change (index/HEAD): fresh from the store, the last copy when it cannot answer. */
  mutable(key: string): boolean;
}

export interface OfflineState {
  offline: boolean;
  /** When the store last stopped answering (epoch ms), while offline. */
  sinceMs: number | undefined;
  lastError: string | undefined;
}

/**
 * A store with a local copy of its catalog documents. Immutable documents are read from the copy
 * once fetched (a restart starts warm, with no round trip per family); the mutable pointer is read
 * from the store, and when no store answers, from the last copy: a mount then comes up offline with
 * the last generation it saw and serves what is cached, and reconnects by itself on the next poll.
 * Copies are checked where they are used: documents against their hashes, by the catalog.
 */
export class LocalCopyStore extends ForwardingStore {
  private readonly state: OfflineState = { offline: false, sinceMs: undefined, lastError: undefined };
  private recheckAtMs = 0;

  constructor(
    inner: ObjectStore,
    private readonly dir: string,
    private readonly rules: CopyRules,
  ) {
    super(inner);
  }

  /** The copies of one store live apart from another's. */
  static forStore(inner: ObjectStore, cacheDir: string, rules: CopyRules): LocalCopyStore {
    return new LocalCopyStore(inner, join(cacheDir, 'catalog', sha256Hex(inner.url).slice(0, 16)), rules);
  }

  offlineState(): OfflineState {
    return { ...this.state };
  }

  override async get(key: string): Promise<Buffer> {
    if (this.rules.immutable(key)) {
      const copy = await this.copyOf(key);
      if (copy) return copy;
      const fetched = await this.inner.get(key);
      await this.keep(key, fetched);
      return fetched;
    }
    if (!this.rules.mutable(key)) return this.inner.get(key);
    return this.fresh(key, async () => {
      const fetched = await this.inner.get(key);
      await this.keep(key, fetched);
      return fetched;
    }, async () => this.copyOf(key));
  }

  override async head(key: string): Promise<ObjectInfo | undefined> {
    if (!this.rules.mutable(key)) return this.inner.head(key);
    // Offline, the copy's hash stands in for an etag: it changes only when a fresh copy does.
    return this.fresh(key, () => this.inner.head(key), async () => {
      const copy = await this.copyOf(key);
      return copy && { size: copy.length, etag: `copy-${sha256Hex(copy)}` };
    });
  }

  /** A copy that fails verification is retried from the store itself (and its mirrors). */
  override replicas(): readonly ObjectStore[] {
    return [this.inner, ...(this.inner.replicas?.() ?? [])];
  }

  /** Asks the store; when it cannot answer and a copy exists, serves the copy and records being offline. */
  private async fresh<T>(key: string, ask: () => Promise<T>, fallback: () => Promise<T | undefined>): Promise<T> {
    if (this.state.offline && Date.now() < this.recheckAtMs) {
      const copy = await fallback();
      if (copy !== undefined) return copy;
    }
    try {
      const answer = await ask();
      this.state.offline = false;
      this.state.sinceMs = undefined;
      return answer;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) throw err;
      const copy = await fallback();
      if (copy === undefined) throw err;
      if (!this.state.offline) this.state.sinceMs = Date.now();
      this.state.offline = true;
      this.state.lastError = `${key}: ${(err as Error).message}`;
      this.recheckAtMs = Date.now() + RECHECK_MS;
      return copy;
    }
  }

  private pathOf(key: string): string {
    return join(this.dir, ...key.split('/'));
  }

  private async copyOf(key: string): Promise<Buffer | undefined> {
    return readFile(this.pathOf(key)).catch(() => undefined);
  }

  private async keep(key: string, data: Buffer): Promise<void> {
    const target = this.pathOf(key);
    const tmp = `${target}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(dirname(target), { recursive: true });
      await writeFile(tmp, data);
      await rename(tmp, target);
    } catch {
      await rm(tmp, { force: true }); // a local copy is an optimisation: failing to keep one is not an error
    }
  }
}
