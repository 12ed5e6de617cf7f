import { unlessNotFound } from './responses.js';
import { exponentialMs } from './retry.js';
import { ForwardingStore } from './forwarding-store.js';
import { ObjectNotFoundError, StoreError, type ObjectInfo, type ObjectStore, type StoreHealth } from './types.js';

export interface MirrorOptions {
  /** First pause before a failed store is probed; doubles with each failed probe up to maxCoolDownMs. */
  coolDownMs: number;
  maxCoolDownMs: number;
  /** What a probe HEADs. Any key will do: a 404 proves the store answers as well as a 200. */
  probeKey: string;
}

export const DEFAULT_MIRROR_OPTIONS: MirrorOptions = { coolDownMs: 1_000, maxCoolDownMs: 60_000, probeKey: 'rezfs.json' };

/** Every store failed (none said "not found" either). */
export class MirrorsUnavailableError extends StoreError {
  constructor(what: string, readonly errors: readonly Error[]) {
    super(`${what}: no store could serve it: ${errors.map((e) => e.message).join('; ')}`);
    this.name = 'MirrorsUnavailableError';
  }
}

interface Member {
  store: ObjectStore;
  health: StoreHealth;
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
 * Writes, deletes and listings go to the primary only (forwarded): mirrors are filled by replication (`rezfs sync`).
 */
export class MirroredStore extends ForwardingStore {
  private readonly members: Member[];
  private readonly options: MirrorOptions;
  private closed = false;

  constructor(stores: readonly ObjectStore[], options: Partial<MirrorOptions> = {}) {
    if (stores.length === 0) throw new StoreError('a mirrored store needs at least one store');
    super(stores[0]!);
    this.members = stores.map((store) => ({
      store,
      health: { url: store.url, healthy: true, failures: 0, downSinceMs: undefined, lastError: undefined },
      probe: undefined,
    }));
    this.options = { ...DEFAULT_MIRROR_OPTIONS, ...options };
  }

  /** The stores in the order reads try them now: healthy ones by priority, then the others by priority. */
  candidates(): ObjectStore[] {
    return this.ordered().map((m) => m.store);
  }

  /** The members a read whose bytes failed their check asks next: all but the one reads go to first. */
  override replicas(): readonly ObjectStore[] {
    return this.candidates().slice(1);
  }

  override health(): StoreHealth[] {
    return this.members.map((m) => ({ ...m.health }));
  }

  override get(key: string): Promise<Buffer> {
    return this.read(`GET ${key}`, (store) => store.get(key));
  }

  override getRange(key: string, start: number, end: number): Promise<Buffer> {
    return this.read(`GET ${key} [${start}, ${end})`, (store) => store.getRange(key, start, end));
  }

  override head(key: string): Promise<ObjectInfo | undefined> {
    return unlessNotFound(
      this.read(`HEAD ${key}`, async (store) => {
        const info = await store.head(key);
        if (!info) throw new ObjectNotFoundError(store.url, key);
        return info;
      }),
    );
  }

  override async close(): Promise<void> {
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
