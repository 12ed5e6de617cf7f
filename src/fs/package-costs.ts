/**
 * What each package version costs a mount cold: the payload bytes fetched from the store for it (demand reads,
 * readahead and preloads of its packs and chunk hashes) and the time its readers waited on reads that reached
 * rezfs. `rezfs status` and the metrics name the costliest versions, so a farm team knows what to prefetch or
 * profile first.
 *
 * A version's objects are learned when its manifest is first used (`versionOpened`); BlockSource reports every
 * store fetch by object key (`fetched`), which is charged to the version that named the object (an object two
 * versions share is charged to the first that used it). Both maps are bounded LRUs: a long-running mount keeps
 * the costs of the versions it used last. Imports nothing of rezfs.
 */
import { LRUCache } from 'lru-cache';

export interface PackageCost {
  /** `family-version`, the way rez names a package. */
  package: string;
  /** Payload bytes fetched from the store for it. */
  coldBytes: number;
  /** Store GETs that fetched them. */
  storeGets: number;
  /** Time its readers spent in reads that reached rezfs, summed. */
  readSeconds: number;
}

/** Versions whose costs are kept; objects (packs, chunk objects) mapped to their version. */
const MAX_PACKAGES = 2_000;
const MAX_OBJECTS = 20_000;

export class PackageCosts {
  private readonly costs = new LRUCache<string, PackageCost>({ max: MAX_PACKAGES });
  private readonly ownerOf = new LRUCache<string, string>({ max: MAX_OBJECTS });
  private readonly opened = new LRUCache<string, true>({ max: MAX_PACKAGES });

  /**
   * A version's manifest is in use (told on every look inside it; only the first counts): the store objects of its
   * payload are charged to it from now on.
   */
  versionOpened(manifestHash: string, name: string, objectKeys: () => readonly string[]): void {
    if (this.opened.has(manifestHash)) return;
    this.opened.set(manifestHash, true);
    for (const key of objectKeys()) if (!this.ownerOf.has(key)) this.ownerOf.set(key, name);
  }

  /** `bytes` of object `key` came from the store. */
  readonly fetched = (key: string, bytes: number): void => {
    const owner = this.ownerOf.get(key);
    if (owner === undefined) return;
    const cost = this.costOf(owner);
    cost.coldBytes += bytes;
    cost.storeGets++;
  };

  /** A reader of `name`'s files waited `seconds` on a read. */
  read(name: string, seconds: number): void {
    this.costOf(name).readSeconds += seconds;
  }

  /** The `n` versions that cost the most cold bytes (then read time), costliest first. */
  top(n: number): PackageCost[] {
    return [...this.costs.values()]
      .filter((c) => c.coldBytes > 0 || c.readSeconds > 0)
      .sort((a, b) => b.coldBytes - a.coldBytes || b.readSeconds - a.readSeconds)
      .slice(0, n)
      .map((c) => ({ ...c }));
  }

  private costOf(name: string): PackageCost {
    let cost = this.costs.get(name);
    if (!cost) this.costs.set(name, (cost = { package: name, coldBytes: 0, storeGets: 0, readSeconds: 0 }));
    return cost;
  }
}
