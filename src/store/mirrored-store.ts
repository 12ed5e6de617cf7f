import { unlessNotFound } from './responses.js';
import { exponentialMs } from './retry.js';
import { ObjectNotFoundError, StoreError, type ListedObject, type ObjectInfo, type ObjectStore, type PutStreamOptions } from './types.js';

export interface MirrorOptions {
  /** First pause before a failed store is probed; doubles with each failed probe up to maxCoolDownMs. */
  coolDownMs: number;
  maxCoolDownMs: number;
  /** What a probe HEADs. Any key will do: a 404 proves the store answers as well as a 200. */
  probeKey: string;
}

export const DEFAULT_MIRROR_OPTIONS: MirrorOptions = { coolDownMs: 1_000, maxCoolDownMs: 60_000, probeKey: 'rezfs.json' };

/** One store's standing, e.g. for `rezfs status`. */
export interface MirrorHealth {
  url: string;
  healthy: boolean;
  /** Consecutive failures (requests or probes) since it last answered. */
  failures: number;
  /** When it was last marked down (epoch ms), while it is down. */
  downSinceMs: number | undefined;
  lastError: string | undefined;
}

/** Every store failed (none said "not found" either). */
export class MirrorsUnavailableError extends StoreError {
  constructor(what: string, readonly errors: readonly Error[]) {
    super(`${what}: no store could serve it: ${errors.map((e) => e.message).join('; ')}`);
    this.name = 'MirrorsUnavailableError';
  }
}

interface Member {
  store: ObjectStore;
  health: MirrorHealth;
  probe: NodeJS.Timeout | undefined;
}

/**
 * Several stores holding the same objects, in priority order (the first is the primary). Reads go to the
 * healthy stores in order, then, as a last resort, to the unhealthy ones. A store that fails a read (after its
 * own retries) is marked down and skipped until a background probe finds it answering again, so reads return
 * to the preferred store when it recovers without a user request paying for the probe.
 *
 * A 404 does not mark a store down and falls through to the next one: a mirror that lags has not got the
 * newest objects yet. The object is "not found" when no store had it and at least one said so; when every
 * store failed, MirrorsUnavailableError lists why.
 *
 * Writes, deletes and listings go to the primary only: mirrors are filled by replication (`rezfs sync`).
 */
export class MirroredStore implements ObjectStore {
  readonly url: string;
  private readonly members: Member[];
  private readonly options: MirrorOptions;
  private closed = false;

  constructor(stores: readonly ObjectStore[], options: Partial<MirrorOptions> = {}) {
    if (stores.length === 0) throw new StoreError('a mirrored store needs at least one store');
    this.members = stores.map((store) => ({
      store,
      health: { url: store.url, healthy: true, failures: 0, downSinceMs: undefined, lastError: undefined },
      probe: undefined,
    }));
    this.options = { ...DEFAULT_MIRROR_OPTIONS, ...options };
    this.url = stores[0]!.url;
  }

  get readOnly(): boolean {
    return this.primary.readOnly ?? false;
  }

  get conditionalWrites(): ObjectStore['conditionalWrites'] {
    return this.primary.conditionalWrites;
  }

  private get primary(): ObjectStore {
    return this.members[0]!.store;
  }

  /** The stores in the order reads try them now: healthy ones by priority, then the others by priority. */
  candidates(): ObjectStore[] {
    return this.ordered().map((m) => m.store);
  }

  replicas(): readonly ObjectStore[] {
    return this.candidates();
  }

  health(): MirrorHealth[] {
    return this.members.map((m) => ({ ...m.health }));
  }

  get(key: string): Promise<Buffer> {
    return this.read(`GET ${key}`, (store) => store.get(key));
  }

  getRange(key: string, start: number, end: number): Promise<Buffer> {
    return this.read(`GET ${key} [${start}, ${end})`, (store) => store.getRange(key, start, end));
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return unlessNotFound(
      this.read(`HEAD ${key}`, async (store) => {
        const info = await store.head(key);
        if (!info) throw new ObjectNotFoundError(store.url, key);
        return info;
      }),
    );
  }

  put(key: string, body: Buffer): Promise<void> {
    return this.primary.put(key, body);
  }

  putStream(key: string, source: () => AsyncIterable<Buffer>, options?: PutStreamOptions): Promise<void> {
    return this.primary.putStream(key, source, options);
  }

  putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
    return this.primary.putIfMatch(key, body, expected);
  }

  delete(key: string): Promise<void> {
    return this.primary.delete(key);
  }

  list(prefix: string): AsyncIterable<ListedObject> {
    return this.primary.list(prefix);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const member of this.members) clearTimeout(member.probe);
    await Promise.all(this.members.map((m) => m.store.close()));
  }

  private ordered(): Member[] {
    return [...this.members.filter((m) => m.health.healthy), ...this.members.filter((m) => !m.health.healthy)];
  }

  private async read<T>(what: string, op: (store: ObjectStore) => Promise<T>): Promise<T> {
    let notFound: ObjectNotFoundError | undefined;
    const errors: Error[] = [];
    for (const member of this.ordered()) {
      try {
        const result = await op(member.store);
        this.answered(member);
        return result;
      } catch (err) {
        if (err instanceof ObjectNotFoundError) {
          this.answered(member);
          notFound ??= err;
        } else {
          this.failed(member, err as Error);
          errors.push(err as Error);
        }
      }
    }
    throw notFound ?? new MirrorsUnavailableError(what, errors);
  }

  private answered(member: Member): void {
    clearTimeout(member.probe);
    member.probe = undefined;
    Object.assign(member.health, { healthy: true, failures: 0, downSinceMs: undefined });
  }

  private failed(member: Member, err: Error): void {
    const health = member.health;
    health.lastError = err.message;
    // Concurrent reads failing together count once: the cool-down grows with probes, not with load.
    if (!health.healthy) return;
    health.healthy = false;
    health.failures = 1;
    health.downSinceMs = Date.now();
    this.scheduleProbe(member);
  }

  private scheduleProbe(member: Member): void {
    if (this.closed || this.members.length === 1) return; // with one store there is nothing to fail over to
    const ceiling = exponentialMs(this.options.coolDownMs, this.options.maxCoolDownMs, member.health.failures);
    // Half jitter: many hosts that lost the same store do not probe it in step.
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    member.probe = setTimeout(() => void this.probe(member), delay);
    member.probe.unref(); // a pending probe must not keep a finished command alive
  }

  private async probe(member: Member): Promise<void> {
    member.probe = undefined;
    try {
      await member.store.head(this.options.probeKey);
      this.answered(member);
    } catch (err) {
      if (member.health.healthy) return; // a request got through meanwhile
      member.health.failures++;
      member.health.lastError = (err as Error).message;
      this.scheduleProbe(member);
    }
  }
}
