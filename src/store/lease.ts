/**
 * Mutual exclusion between writers of one store that may ignore conditional writes (s3rver, some S3 gateways,
 * WebDAV servers): a lease over a name, built from plain PUT, LIST and DELETE.
 *
 * Protocol. A contender lists `locks/<name>/`; while it sees another writer's live claim it waits. Seeing none, it
 * PUTs its own claim under a key no one else uses (`<host>-<pid>-<random>`) and lists again: if its claim is the
 * only one, it holds the lease; otherwise it deletes its claim, backs off for a random while and starts over. Two
 * contenders cannot both hold it: each wrote its claim before listing, so whichever listed second sees the other's
 * claim (given a store whose listings show every write that completed before them, as AWS S3, MinIO, Ceph, s3rver
 * and a single WebDAV server do). Racing contenders may all back off; the random pauses make one win.
 *
 * A holder renews its claim (PUT again, which changes its modification time) every `renewEveryMs`; a contender
 * takes away a claim whose modification time it has watched stay the same for `ttlMs` of its own clock, so
 * clocks need not agree. A holder that could not renew for `ttlMs / 3` (paused, or the store unreachable) counts
 * its lease as lost, stops renewing and fails its next `confirm()`: the margin to `ttlMs` covers one request's
 * deadline. Claims live under `locks/`, which mounts never read and gc/sync leave alone (decision D1).
 *
 * Generic over ObjectStore; imports only this layer's types.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { StoreError, type ObjectStore } from './types.js';

export interface LeasePolicy {
  /** A claim unchanged for this long (by the watcher's clock) belongs to a writer that is gone. */
  ttlMs: number;
  /** How often a holder renews its claim. */
  renewEveryMs: number;
  /** How long a contender waits for the lease before giving up. */
  waitMs: number;
  /** Pause between looks at a held lease; backoff after a tie is a random multiple of it. */
  pollMs: number;
}

export const DEFAULT_LEASE_POLICY: LeasePolicy = { ttlMs: 90_000, renewEveryMs: 15_000, waitMs: 10 * 60_000, pollMs: 200 };

export const LEASE_PREFIX = 'locks/';

export class LeaseError extends StoreError {
  constructor(message: string) {
    super(message);
    this.name = 'LeaseError';
  }
}

/** A held lease: `confirm()` before each write that relies on it, `release()` when done. */
export class Lease {
  private lost: string | undefined;
  private lastRenewed = performance.now();
  private readonly timer: NodeJS.Timeout;
  private renewing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: ObjectStore,
    readonly key: string,
    private readonly policy: LeasePolicy,
  ) {
    this.timer = setInterval(() => {
      this.renewing = this.renew();
    }, policy.renewEveryMs);
    this.timer.unref();
  }

  /** Throws LeaseError unless the lease is still this writer's. */
  async confirm(): Promise<void> {
    await this.renewing;
    if (!this.lost && !(await this.store.head(this.key))) this.lost = `its claim ${this.key} is gone (another writer took it as stale)`;
    // After the HEAD request, so that the write this confirms is all that follows the check.
    this.checkFresh();
    if (this.lost) throw new LeaseError(`lost the lease on ${this.store.url}: ${this.lost}`);
  }

  /** Never throws: a claim left behind only makes the next writer wait out the ttl. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.renewing;
    await removeClaim(this.store, this.key);
  }

  private async renew(): Promise<void> {
    this.checkFresh();
    if (this.lost) return;
    try {
      // Never brings back a claim someone took away: that writer may hold the lease now.
      if (!(await this.store.head(this.key))) {
        this.lost = `its claim ${this.key} is gone (another writer took it as stale)`;
        return;
      }
      await this.store.put(this.key, claimBody(this.key));
      this.lastRenewed = performance.now();
    } catch {
      // Counted by checkFresh: a lease not renewed in time is lost.
    }
  }

  private checkFresh(): void {
    const since = performance.now() - this.lastRenewed;
    if (!this.lost && since > this.policy.ttlMs / 3) {
      this.lost = `not renewed for ${Math.round(since / 1000)} s (another writer may take it after ${this.policy.ttlMs / 1000} s)`;
      clearInterval(this.timer);
    }
  }
}

/**
 * Takes the lease `name` on `store`, waiting while another writer holds it. `onWait` is told once who holds it.
 * Throws LeaseError after `policy.waitMs`.
 */
export async function acquireLease(store: ObjectStore, name: string, options: { policy?: Partial<LeasePolicy>; onWait?: (holder: string) => void } = {}): Promise<Lease> {
  const policy = { ...DEFAULT_LEASE_POLICY, ...options.policy };
  const prefix = `${LEASE_PREFIX}${name}/`;
  const mine = `${prefix}${ownerTag()}`;
  const watched = new Map<string, { modifiedMs: number; since: number }>();
  const deadline = performance.now() + policy.waitMs;
  let told = false;
  let ties = 0;

  /** Other writers' claims that are alive; stale ones are taken away on the way. */
  const others = async (): Promise<string[]> => {
    const live: string[] = [];
    for await (const { key, modifiedMs } of store.list(prefix)) {
      if (key === mine) continue;
      const seen = watched.get(key);
      if (!seen || seen.modifiedMs !== modifiedMs) watched.set(key, { modifiedMs, since: performance.now() });
      else if (performance.now() - seen.since > policy.ttlMs && (await removeClaim(store, key))) {
        watched.delete(key);
        continue;
      }
      live.push(key);
    }
    return live;
  };

  for (;;) {
    const held = await others();
    if (held.length === 0) {
      await store.put(mine, claimBody(mine));
      if ((await others()).length === 0) return new Lease(store, mine, policy);
      // Left behind, it is still this writer's own claim: the next round skips it and others wait for it.
      await removeClaim(store, mine);
      ties++;
    } else if (!told) {
      options.onWait?.(held[0]!.slice(prefix.length));
      told = true;
    }
    if (performance.now() > deadline) {
      throw new LeaseError(`could not take the lease ${prefix} on ${store.url} within ${policy.waitMs / 1000} s: held by ${held.map((k) => k.slice(prefix.length)).join(', ') || 'racing writers'}`);
    }
    await pause(policy.pollMs * (held.length > 0 ? 1 : Math.random() * Math.min(2 ** ties, 32)));
  }
}

/**
 * Deletes a claim (or another object under `locks/`) a few times over: a store's DELETE is one attempt, and a busy
 * server may fail it (s3rver answers 500 to concurrent deletes in one directory). False when it could not.
 */
export async function removeClaim(store: ObjectStore, key: string): Promise<boolean> {
  for (let attempt = 0; attempt < CLAIM_DELETE_ATTEMPTS; attempt++) {
    try {
      await store.delete(key);
      return true;
    } catch {
      await pause(100 * (attempt + 1));
    }
  }
  return false;
}

const CLAIM_DELETE_ATTEMPTS = 4;

/** A claim key part no other writer uses, and that says who wrote it. */
function ownerTag(): string {
  return `${hostname().replace(/[^A-Za-z0-9._-]/g, '_')}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

function claimBody(key: string): Buffer {
  // The body changes on each renewal, so that stores that keep the old time for identical bytes still move it.
  return Buffer.from(JSON.stringify({ key, renewedMs: Date.now() }));
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
