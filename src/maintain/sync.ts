/**
 * `rezfs sync`: makes a target store serve the source's current generation, for another site's bucket or a
 * directory a site serves over HTTP.
 *
 * It copies what the target lacks of the objects the source's generation references (the shared walker), in
 * dependency order: packs, manifests, shards, the signature, the index; `rezfs.json` when it differs; `index/HEAD`
 * last, by compare-and-swap against the target HEAD it started from. So a mount of the target sees its old
 * generation or the new one, whole, at every moment. Every copied object is checked against its sha256 on the way
 * (a pack is streamed in ranges and refused at its end, so the target never holds bytes that fail); what the target
 * already has (listed, with the size its parent document records) is not sent again, which makes a rerun after a
 * crash resume where it stopped, and a rerun after success copy nothing.
 *
 * A target that has a generation of its own (its HEAD names an index the source does not have: someone published
 * to it directly), or a newer one than the source's, is refused: replacing it would silently drop what was
 * published there. `force` replaces it anyway. Objects found in the target are claimed as gc-protocol.ts asks of
 * any writer, so a gc of the target running meanwhile cannot remove them.
 *
 * Imports the store and the catalog.
 */
import { createHash } from 'node:crypto';
import {
  CatalogError,
  CatalogWalker,
  Documents,
  HeadWriter,
  NotAStoreError,
  OBJECT_KINDS,
  ReliedObjects,
  dependencyRank,
  keys,
  readHead,
  readIndex,
  type ObjectRef,
} from '../catalog/index.js';
import type { Log } from '../log.js';
import { inParallel } from '../parallel.js';
import { ObjectNotFoundError, type ListedObject, type ObjectStore } from '../store/index.js';

export interface SyncPolicy {
  /** Packs copied at once (each streamed in `rangeBytes` ranges). */
  packsInFlight: number;
  /** Small documents copied at once. */
  documentsInFlight: number;
  rangeBytes: number;
}

export const DEFAULT_SYNC_POLICY: SyncPolicy = { packsInFlight: 4, documentsInFlight: 16, rangeBytes: 8 * 1024 * 1024 };

export interface SyncProgress {
  doneObjects: number;
  totalObjects: number;
  doneBytes: number;
  totalBytes: number;
}

export interface SyncOptions {
  log: Log;
  /** Replace a target that has generations of its own (or a newer one) instead of refusing. */
  force: boolean;
  onProgress?: (progress: SyncProgress) => void;
  policy?: Partial<SyncPolicy>;
}

export interface SyncReport {
  generation: number;
  indexHash: string;
  /** The generation the target served before, if any. */
  previousGeneration: number | undefined;
  /** Objects the source generation references, and how many of them the target already had. */
  objects: number;
  alreadyThere: number;
  copied: { objects: number; bytes: number };
  /** Whether HEAD (or rezfs.json) had to change: false means the target served this generation already. */
  changed: boolean;
}

/** The target must not be overwritten as asked, or the source has nothing to sync: a usage error. */
export class SyncRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SyncRefusedError';
  }
}

export async function syncStores(source: ObjectStore, target: ObjectStore, options: SyncOptions): Promise<SyncReport> {
  const policy = { ...DEFAULT_SYNC_POLICY, ...options.policy };
  const sourceHead = await readHead(source);
  const sourceConfig = await source.get(keys.config).catch((err: unknown) => {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  });
  if (!sourceHead) {
    if (!sourceConfig) throw new NotAStoreError(source.url);
    throw new SyncRefusedError(`${source.url} has nothing published yet: nothing to sync`);
  }
  const targetHead = await readHead(target);
  const previousGeneration = targetHead ? await checkTargetMayFollow(source, target, sourceHead.indexHash, targetHead.indexHash, options.force) : undefined;

  const refs: ObjectRef[] = [];
  const documents = new Documents();
  const index = await new CatalogWalker(source, { documents }).walk(sourceHead.indexHash, { object: (ref) => refs.push(ref) }).catch((err: unknown) => {
    throw new CatalogError(`${source.url}: generation at ${keys.head} cannot be read whole (${(err as Error).message}); run rezfs verify on it`);
  });
  const present = await listKinds(target);
  const servedNow = targetHead ? await referencedBy(target, targetHead.indexHash, documents) : new Set<string>();
  const relied = new ReliedObjects(target);
  const missing: ObjectRef[] = [];
  for (const ref of refs) {
    const there = present.get(ref.key);
    if (!there || (ref.kind === 'pack' && there.size !== ref.size)) missing.push(ref);
    // What the target's own generation references, gc keeps anyway; anything else found there is claimed.
    else if (!servedNow.has(ref.key)) relied.found(ref.key, there);
  }
  missing.sort((a, b) => dependencyRank(a.kind) - dependencyRank(b.kind));

  const report: SyncReport = {
    generation: index.generation,
    indexHash: sourceHead.indexHash,
    previousGeneration,
    objects: refs.length,
    alreadyThere: refs.length - missing.length,
    copied: { objects: 0, bytes: 0 },
    changed: false,
  };
  const totalBytes = missing.reduce((n, ref) => n + (ref.kind === 'pack' ? ref.size : 0), 0);
  const progress = () => options.onProgress?.({ doneObjects: report.copied.objects, totalObjects: missing.length, doneBytes: report.copied.bytes, totalBytes });
  const copy = async (ref: ObjectRef) => {
    const bytes = await copyObject(source, target, ref, policy.rangeBytes, (n) => {
      report.copied.bytes += n;
      progress();
    });
    if (ref.kind !== 'pack') report.copied.bytes += bytes;
    report.copied.objects++;
    relied.wrote(ref.key);
    progress();
  };
  // One kind after the other, so that no document reaches the target before what it names.
  for (const { kind } of OBJECT_KINDS) {
    const ofKind = missing.filter((ref) => ref.kind === kind);
    await inParallel(ofKind, kind === 'pack' ? policy.packsInFlight : policy.documentsInFlight, copy);
  }
  const byKey = new Map(refs.map((ref) => [ref.key, ref]));
  await relied.secure(async (key) => copy(byKey.get(key)!));

  if (sourceConfig && !sourceConfig.equals((await target.get(keys.config).catch(() => undefined)) ?? Buffer.alloc(0))) {
    await target.put(keys.config, sourceConfig);
    report.changed = true;
  }
  if (targetHead?.indexHash !== sourceHead.indexHash) {
    const heads = new HeadWriter(target);
    const swapped = await heads.swap(sourceHead.indexHash, targetHead).finally(() => heads.close());
    if (!swapped) {
      throw new Error(`${keys.head} of ${target.url} moved during the sync (a publish or another sync to it?); run the sync again`);
    }
    report.changed = true;
  }
  return report;
}

/**
 * The target may follow the source when the index it serves came from the source (the source has it) and is not
 * newer. Returns the generation the target serves.
 */
async function checkTargetMayFollow(source: ObjectStore, target: ObjectStore, sourceIndex: string, targetIndex: string, force: boolean): Promise<number | undefined> {
  if (targetIndex === sourceIndex) return (await readIndex(source, sourceIndex)).generation;
  const ownGeneration = async () => (await readIndex(target, targetIndex).catch(() => undefined))?.generation;
  const fromSource = await source.head(keys.index(targetIndex));
  const sourceGeneration = (await readIndex(source, sourceIndex)).generation;
  const targetGeneration = fromSource ? (await readIndex(source, targetIndex)).generation : await ownGeneration();
  const why = !fromSource
    ? `it serves generation ${targetGeneration ?? '?'} (index ${targetIndex}), which ${source.url} does not have: something was published to it directly`
    : targetGeneration !== undefined && targetGeneration > sourceGeneration
      ? `it serves generation ${targetGeneration}, newer than the source's ${sourceGeneration}`
      : undefined;
  if (why && !force) {
    throw new SyncRefusedError(`${target.url} will not follow ${source.url}: ${why}; publish to the source instead, or pass --force to replace it`);
  }
  return targetGeneration;
}

/**
 * The objects the target's current generation references (the documents it shares with the source's generation
 * are read once). A part that cannot be read is left out: what it names is claimed then, which is merely slower.
 */
async function referencedBy(target: ObjectStore, indexHash: string, documents: Documents): Promise<ReadonlySet<string>> {
  const walker = new CatalogWalker(target, { documents });
  try {
    await walker.walk(indexHash, { problem: () => {} });
  } catch {
    return new Set();
  }
  return walker.keys;
}

/** What the target holds of the catalog's kinds, in one listing per prefix. */
async function listKinds(target: ObjectStore): Promise<Map<string, ListedObject>> {
  const present = new Map<string, ListedObject>();
  for (const prefix of new Set(OBJECT_KINDS.map((k) => k.prefix))) {
    for await (const object of target.list(prefix)) present.set(object.key, object);
  }
  return present;
}

/** Copies one object, checked against its hash; returns its size. */
async function copyObject(source: ObjectStore, target: ObjectStore, ref: ObjectRef, rangeBytes: number, onPackBytes: (n: number) => void): Promise<number> {
  if (ref.kind === 'pack') {
    await target.putStream(ref.key, () => verifiedRanges(source, ref, rangeBytes, onPackBytes), { size: ref.size, sha256: ref.sha256 });
    return ref.size;
  }
  const bytes = await source.get(ref.key);
  if (ref.kind !== 'signature') {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== ref.sha256) throw new CatalogError(`${ref.key} in ${source.url} fails its sha256 (got ${actual}): not copied; run rezfs verify on the source`);
  }
  await target.put(ref.key, bytes);
  return bytes.length;
}

/** A pack in ranges, hashed on the way: it throws instead of yielding its last range if the whole fails its sha256. */
async function* verifiedRanges(source: ObjectStore, ref: Extract<ObjectRef, { kind: 'pack' }>, rangeBytes: number, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  const check = () => {
    const actual = hash.digest('hex');
    if (actual !== ref.sha256) throw new CatalogError(`${ref.key} in ${source.url} fails its sha256 (got ${actual}): not copied; run rezfs verify on the source`);
  };
  if (ref.size === 0) check();
  for (let offset = 0; offset < ref.size; offset += rangeBytes) {
    const end = Math.min(offset + rangeBytes, ref.size);
    const part = await source.getRange(ref.key, offset, end);
    if (part.length !== end - offset) throw new CatalogError(`${ref.key} in ${source.url} is shorter than the ${ref.size} bytes its manifest says: not copied`);
    hash.update(part);
    onBytes(part.length);
    if (end === ref.size) check();
    yield part;
  }
}
