/**
 * `rezfs gc`: deletes the objects that no kept generation references.
 *
 * Kept generations: the current one (index/HEAD), the `keepGenerations - 1` before it along each index's
 * `previous` (for indexes older than format 1.2.0, the index written just before), and every older one that was
 * still current within the grace period: a mount may still serve it (a mount refreshes every --refresh; an open
 * file keeps the generation it was opened in).
 *
 * Collected: objects under the catalog's key prefixes (OBJECT_KINDS), leftovers of writes that never finished
 * (`.tmp-*`) and claims, that no kept generation references and that were written longer ago than the grace
 * period (so what a publish in progress has uploaded but not yet named is safe), with no young claim. Each is
 * checked again just before its delete, as gc-protocol.ts requires, and index/HEAD is re-read before each batch so
 * a generation published meanwhile is kept too. Never touched: index/HEAD, rezfs.json, and keys outside those
 * prefixes (another tool's, or a newer rezfs's object kinds). A graph that cannot be read whole stops the
 * collection before anything is deleted.
 *
 * Imports the store and the catalog.
 */
import {
  CatalogWalker,
  CLAIMS_PREFIX,
  CatalogError,
  DEFAULT_COLLECTION_TIMING,
  OBJECT_KINDS,
  claimKey,
  claimedKey,
  NotAStoreError,
  keys,
  readHead,
  readStoreConfig,
  type CatalogIndex,
  type CollectionTiming,
  type Head,
} from '../catalog/index.js';
import type { Log } from '../log.js';
import { inParallel } from '../parallel.js';
import type { ListedObject, ObjectStore } from '../store/index.js';

export interface GcOptions {
  /** Generations kept along the chain from HEAD, HEAD's included (>= 1). */
  keepGenerations: number;
  /** Unreferenced objects younger than this stay, and so do generations current within it (>= timing.minGraceMs). */
  graceMs: number;
  /** Decide and report, delete nothing. */
  dryRun: boolean;
  log: Log;
  onProgress?: (deleted: number, total: number) => void;
  timing?: Partial<CollectionTiming>;
}

export interface KeptGeneration {
  indexHash: string;
  generation: number;
  why: 'current' | 'kept by --keep-generations' | 'current within the grace period';
}

export interface GcReport {
  kept: KeptGeneration[];
  /** Everything listed (the mutable roots and unknown keys included). */
  listed: { objects: number; bytes: number };
  /** Objects the kept generations reference. */
  referenced: number;
  /** Unreferenced, but written (or claimed) within the grace period: left for a later gc. */
  young: { objects: number; bytes: number };
  /** Keys outside rezfs's object kinds: never touched. */
  unknown: number;
  /** What was (or, in a dry run, would be) deleted, in deletion order. */
  garbage: ListedObject[];
  deleted: { objects: number; bytes: number };
  /** Garbage that its last check spared: written again, claimed, referenced by a new generation, or gone already. */
  spared: { key: string; why: string }[];
}

/** Bad options for gc: a usage error, nothing done. */
export class GcOptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GcOptionError';
  }
}

const DELETE_BATCH = 256;
const DELETES_IN_FLIGHT = 8;

/** Deleted first: documents before what they name, so a collection cut short leaves no document with holes. */
const DELETE_ORDER = [...new Set([...OBJECT_KINDS.map((k) => k.prefix).reverse(), CLAIMS_PREFIX])];

export async function collectGarbage(store: ObjectStore, options: GcOptions): Promise<GcReport> {
  const timing = { ...DEFAULT_COLLECTION_TIMING, ...options.timing };
  if (!Number.isInteger(options.keepGenerations) || options.keepGenerations < 1) {
    throw new GcOptionError(`--keep-generations ${options.keepGenerations} is not a whole number of at least 1`);
  }
  if (options.graceMs < timing.minGraceMs) {
    throw new GcOptionError(
      `--grace must be at least ${timing.minGraceMs / 60_000} minutes: a publish in progress relies on the objects it found or uploaded for that long`,
    );
  }
  const head = await readHead(store);
  if (!head && !(await readStoreConfig(store))) {
    throw new NotAStoreError(store.url);
  }

  const now = Date.now();
  const listing = new Map<string, ListedObject>();
  for await (const object of store.list('')) listing.set(object.key, object);
  const walker = new CatalogWalker(store);
  const kept = head
    ? await keptGenerations(store, walker, head, listing, options, now).catch((err: unknown) => {
        throw new CatalogError(`a kept generation of ${store.url} cannot be read whole (${(err as Error).message}): gc deleted nothing; run rezfs verify`);
      })
    : [];

  const report: GcReport = {
    kept,
    listed: { objects: listing.size, bytes: sum([...listing.values()]) },
    referenced: walker.keys.size,
    young: { objects: 0, bytes: 0 },
    unknown: 0,
    garbage: [],
    deleted: { objects: 0, bytes: 0 },
    spared: [],
  };
  const youngClaims = new Set<string>();
  for (const object of listing.values()) {
    const claimed = claimedKey(object.key);
    if (claimed !== undefined && now - object.modifiedMs < options.graceMs) youngClaims.add(claimed);
  }
  for (const object of listing.values()) {
    const kind = kindOf(object.key);
    if (kind === 'root' || walker.keys.has(object.key)) continue;
    if (kind === 'unknown') {
      report.unknown++;
    } else if (now - object.modifiedMs < options.graceMs || youngClaims.has(object.key)) {
      report.young.objects++;
      report.young.bytes += object.size;
    } else {
      report.garbage.push(object);
    }
  }
  report.garbage.sort((a, b) => deleteRank(a.key) - deleteRank(b.key) || a.key.localeCompare(b.key));
  if (options.dryRun || report.garbage.length === 0) return report;

  // Delete in batches; before each, a generation published meanwhile joins the kept ones.
  let seenHead = head;
  for (let start = 0; start < report.garbage.length; start += DELETE_BATCH) {
    seenHead = await keepNewGenerations(store, walker, seenHead, report);
    const batch = report.garbage.slice(start, start + DELETE_BATCH);
    await inParallel(batch, DELETES_IN_FLIGHT, async (object) => {
      const why = walker.keys.has(object.key) ? 'a new generation references it' : await deleteIfStillGarbage(store, object.key, options.graceMs, timing);
      if (why) report.spared.push({ key: object.key, why });
      else {
        report.deleted.objects++;
        report.deleted.bytes += object.size;
      }
      options.onProgress?.(report.deleted.objects + report.spared.length, report.garbage.length);
    });
  }
  report.referenced = walker.keys.size;
  for (const { key, why } of report.spared) options.log.info(`kept ${key}: ${why}`);
  return report;
}

/**
 * Walks back from HEAD: each generation is kept while fewer than `keepGenerations` are, or while the one that
 * replaced it was written within the grace period. Every kept generation is walked (so its objects are known).
 */
async function keptGenerations(store: ObjectStore, walker: CatalogWalker, head: Head, listing: Map<string, ListedObject>, options: GcOptions, now: number): Promise<KeptGeneration[]> {
  const kept: KeptGeneration[] = [];
  let hash: string | undefined = head.indexHash;
  let why: KeptGeneration['why'] = 'current';
  const visited = new Set<string>();
  while (hash !== undefined && !visited.has(hash)) {
    visited.add(hash);
    const index = await walker.walk(hash);
    kept.push({ indexHash: hash, generation: index.generation, why });
    const previous: string | undefined = index.previous ?? writtenBefore(listing, hash);
    if (previous === undefined || !listing.has(keys.index(previous))) break;
    const replacedMs = listing.get(keys.index(hash))?.modifiedMs ?? now;
    if (kept.length < options.keepGenerations) why = 'kept by --keep-generations';
    else if (now - replacedMs < options.graceMs) why = 'current within the grace period';
    else break;
    hash = previous;
  }
  return kept;
}

/** For an index without `previous` (written before format 1.2.0): the index written just before it. */
function writtenBefore(listing: Map<string, ListedObject>, indexHash: string): string | undefined {
  const indexes = [...listing.values()].filter((o) => /^index\/[0-9a-f]{64}\.json$/.test(o.key));
  const self = listing.get(keys.index(indexHash));
  if (!self) return undefined;
  const older = indexes.filter((o) => o.modifiedMs < self.modifiedMs || (o.modifiedMs === self.modifiedMs && o.key < self.key));
  const latest = older.sort((a, b) => b.modifiedMs - a.modifiedMs || b.key.localeCompare(a.key))[0];
  return latest?.key.slice('index/'.length, -'.json'.length);
}

/** Re-reads HEAD; generations published since the last look (back to one already walked) are walked and kept. */
async function keepNewGenerations(store: ObjectStore, walker: CatalogWalker, last: Head | undefined, report: GcReport): Promise<Head | undefined> {
  const head = await readHead(store);
  if (!head || head.etag === last?.etag) return head ?? last;
  let hash: string | undefined = head.indexHash;
  while (hash !== undefined && !walker.keys.has(keys.index(hash))) {
    const index: CatalogIndex = await walker.walk(hash).catch((err: unknown) => {
      // A generation made meanwhile whose graph cannot be read: delete nothing more, rather than guess.
      throw new CatalogError(`new generation ${hash} appeared during gc and cannot be walked (${(err as Error).message}); stopped before deleting more`);
    });
    report.kept.push({ indexHash: hash, generation: index.generation, why: 'current' });
    hash = index.previous;
  }
  return head;
}

/**
 * The last check of one object and its delete (gc-protocol.ts): deleted only if it is still there, still older
 * than the grace, has no young claim, and the delete goes out within the issue window of the check. Returns why it
 * was spared, or undefined once deleted.
 */
async function deleteIfStillGarbage(store: ObjectStore, key: string, graceMs: number, timing: CollectionTiming): Promise<string | undefined> {
  const checkedAt = Date.now();
  const info = await store.head(key);
  if (!info) return 'gone already';
  if (info.modifiedMs === undefined || checkedAt - info.modifiedMs < graceMs) return 'written again during gc';
  if (!key.startsWith(CLAIMS_PREFIX)) {
    const claim = await store.head(claimKey(key));
    if (claim && (claim.modifiedMs === undefined || checkedAt - claim.modifiedMs < graceMs)) return 'claimed by a writer during gc';
  }
  if (Date.now() - checkedAt > timing.deleteIssueWindowMs) return 'its checks took too long to act on them; left for the next gc';
  await store.delete(key);
  return undefined;
}

type KeyKind = 'root' | 'collectable' | 'unknown';

function kindOf(key: string): KeyKind {
  if (key === keys.head || key === keys.config) return 'root';
  if (isTempLeftover(key) || DELETE_ORDER.some((prefix) => key.startsWith(prefix))) return 'collectable';
  return 'unknown';
}

/** A file store's `.tmp-*` file: a write that never finished (its writer died, or is writing now: hence the grace). */
function isTempLeftover(key: string): boolean {
  return (key.split('/').pop() ?? '').startsWith('.tmp-');
}

function deleteRank(key: string): number {
  const rank = DELETE_ORDER.findIndex((prefix) => key.startsWith(prefix) && !isTempLeftover(key));
  return rank < 0 ? DELETE_ORDER.length : rank;
}

function sum(objects: readonly ListedObject[]): number {
  return objects.reduce((n, o) => n + o.size, 0);
}
