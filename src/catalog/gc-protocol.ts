/**
 * The rules that let `rezfs gc` delete objects while publishers, `retire` and `sync` write to the same store, with
 * no lock between them.
 *
 * The danger: a writer finds an object it needs already in the store (an old pack nothing references any more),
 * skips uploading it, and swaps `index/HEAD` to a generation that names it, while the collector, which judged it
 * garbage, deletes it. Two rules close that race:
 *
 * - The collector deletes an object only if, checked just before the delete (and the delete issued within
 *   `deleteIssueWindowMs` of the check), it is still older than the grace period and has no claim younger than
 *   it. A delete is one request with a deadline, so it lands within `deleteIssueWindowMs + deleteDeadlineMs` of
 *   the check, or not at all.
 * - A writer that relies on an object it did not write in the last `claimAfterMs` writes a claim
 *   (`claims/<key>`) for it, waits `settleMs` (longer than any delete decided before the claim can take to land),
 *   and checks the object again: still there, it is safe for the grace period (no collector deletes what has a
 *   young claim, and the grace is at least `minGraceMs`); gone, the writer uploads it again. Only then does it swap
 *   HEAD. An object uploaded this long ago is treated the same, so a long publish is safe too.
 *
 * So a publish may take up to `claimAfterMs` between checking an object and swapping HEAD without claiming, and the
 * grace can never be shorter than `minGraceMs` (twice that). Object ages are the store's clock; the collector
 * and writers compare them with their own: clocks must agree to within minutes, far below these margins.
 * Claims are the one mutable object kind besides leases that mounts never read; the collector removes them once
 * they are older than the grace.
 *
 * Imports the store interface only.
 */
import { hostname } from 'node:os';
import type { ObjectInfo, ObjectStore } from '../store/index.js';
import { DEFAULT_TIMEOUTS } from '../store/index.js';
import { inParallel } from '../parallel.js';

const CLAIMS_IN_FLIGHT = 16;

export interface CollectionTiming {
  /** The collector refuses a shorter grace period. */
  minGraceMs: number;
  /** A writer claims an object it relies on when it has not known it this young: twice this is minGraceMs. */
  claimAfterMs: number;
  /** The collector issues a delete at most this long after the checks that allowed it. */
  deleteIssueWindowMs: number;
  /** How long one delete request may take (the store's connect plus first-byte timeout). */
  deleteDeadlineMs: number;
  /** A claiming writer waits this long before it checks again: every delete decided before the claim has landed. */
  settleMs: number;
}

export const DEFAULT_COLLECTION_TIMING: CollectionTiming = (() => {
  const deleteIssueWindowMs = 2_000;
  const deleteDeadlineMs = DEFAULT_TIMEOUTS.connectTimeoutMs + DEFAULT_TIMEOUTS.firstByteTimeoutMs;
  return {
    minGraceMs: 60 * 60_000,
    claimAfterMs: 30 * 60_000,
    deleteIssueWindowMs,
    deleteDeadlineMs,
    settleMs: deleteIssueWindowMs + deleteDeadlineMs + 3_000,
  };
})();

export const CLAIMS_PREFIX = 'claims/';

export function claimKey(key: string): string {
  return `${CLAIMS_PREFIX}${key}`;
}

/** The object a claim protects, or undefined for a key that is no claim. */
export function claimedKey(claim: string): string | undefined {
  return claim.startsWith(CLAIMS_PREFIX) ? claim.slice(CLAIMS_PREFIX.length) : undefined;
}

/**
 * The objects one writer's next generation relies on, and since when each is known young. `secure()` before the
 * HEAD swap makes every one of them safe from a concurrent collector.
 */
export class ReliedObjects {
  /** key -> when it was last known young (written or claimed), epoch ms. */
  private readonly youngSince = new Map<string, number>();

  constructor(
    private readonly store: ObjectStore,
    private readonly timing: CollectionTiming = DEFAULT_COLLECTION_TIMING,
    private readonly now: () => number = Date.now,
  ) {}

  /** This writer wrote `key` just now. */
  wrote(key: string): void {
    this.youngSince.set(key, this.now());
  }

  /** This writer found `key` in the store (and will not write it): it is as young as its last write. */
  found(key: string, info: Pick<ObjectInfo, 'modifiedMs'>): void {
    // A store that does not say when treats it as old: it is claimed.
    this.youngSince.set(key, Math.max(this.youngSince.get(key) ?? 0, info.modifiedMs ?? 0));
  }

  /**
   * Claims every relied-on object not known young within `claimAfterMs`, waits `settleMs`, and writes again
   * (`rewrite`) any that a collector removed meanwhile. Returns how many were claimed (0 costs no request).
   */
  async secure(rewrite: (key: string) => Promise<void>): Promise<number> {
    const stale = [...this.youngSince].filter(([, since]) => this.now() - since >= this.timing.claimAfterMs).map(([key]) => key);
    if (stale.length === 0) return 0;
    const claim = Buffer.from(JSON.stringify({ host: hostname(), pid: process.pid, claimedMs: this.now() }));
    await inParallel(stale, CLAIMS_IN_FLIGHT, (key) => this.store.put(claimKey(key), claim));
    const claimedAt = this.now();
    await new Promise((resolve) => setTimeout(resolve, this.timing.settleMs));
    for (const key of stale) {
      if (!(await this.store.head(key))) await rewrite(key);
      this.youngSince.set(key, claimedAt);
    }
    return stale.length;
  }
}
