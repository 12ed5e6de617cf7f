import type { KeyObject } from 'node:crypto';
import {
  EMPTY_INDEX,
  FORMAT_VERSION,
  defaultStoreConfig,
  encodeDocument,
  keys,
  readHead,
  readIndex,
  readShard,
  readStoreConfig,
  canonicalJson,
  countSubdirs,
  signIndex,
  type CatalogIndex,
  type FamilyShard,
  type VersionRecord,
} from '../catalog/index.js';
import type { Log } from '../log.js';
import type { ObjectStore } from '../store/index.js';
import { PublishInputError } from './errors.js';
import { buildPackage, type BuiltPackage } from './pack.js';
import { DEFINITION_FILES, scanRepository, type FamilySource, type VersionSource } from './scan.js';

const HEAD_SWAP_ATTEMPTS = 20;
const UPLOADS_IN_FLIGHT = 4;

export interface PublishProgress {
  phase: 'hashing' | 'uploading';
  doneBytes: number;
  /** Known once hashing is over; while hashing, progress is counted in packages. */
  totalBytes: number | undefined;
  donePackages: number;
  totalPackages: number;
}

export interface PublishSummary {
  packages: number;
  alreadyPublished: number;
  files: number;
  bytes: number;
  objectsUploaded: number;
  bytesUploaded: number;
  generation: number | undefined;
  elapsedMs: number;
}

export interface PublishOptions {
  repoDir: string;
  selectors: readonly string[];
  log: Log;
  onProgress?: (progress: PublishProgress) => void;
  /** Signs each new index (ed25519) so mounts with --trust-key accept it. */
  signingKey?: KeyObject;
}

interface Prepared {
  source: VersionSource;
  built: BuiltPackage;
}

/**
 * Publishes released packages: packs, manifests, family shards, the index, and last a
 * compare-and-swap of `index/HEAD`. Everything is checked before the first upload, objects already
 * in the store are not sent again, and a published version never changes.
 */
export async function publish(store: ObjectStore, options: PublishOptions): Promise<PublishSummary> {
  const started = Date.now();
  const families = await scanRepository(options.repoDir, options.selectors, options.log.warn);
  const existingConfig = await readStoreConfig(store);
  const config = existingConfig ?? defaultStoreConfig();
  let head = await readHead(store);
  let index = head ? await readIndex(store, head.indexHash) : EMPTY_INDEX;

  const sources = families.flatMap((family) => family.versions);
  let hashed = 0;
  const prepared: Prepared[] = [];
  for (const source of sources) {
    const built = await buildPackage(source.dir, config.blockSize, DEFINITION_FILES, (n) => {
      hashed += n;
      options.onProgress?.({ phase: 'hashing', doneBytes: hashed, totalBytes: undefined, donePackages: prepared.length, totalPackages: sources.length });
    });
    prepared.push({ source, built });
  }

  const uploads = new Uploads(store);
  let fresh = await freshVersions(store, index, prepared);
  const summary = (generation: number | undefined): PublishSummary => ({
    packages: fresh.length,
    alreadyPublished: prepared.length - fresh.length,
    files: fresh.reduce((n, p) => n + p.built.fileCount, 0),
    bytes: fresh.reduce((n, p) => n + p.built.manifest.packSize, 0),
    objectsUploaded: uploads.objects,
    bytesUploaded: uploads.bytes,
    generation,
    elapsedMs: Date.now() - started,
  });
  if (fresh.length === 0 && !(await extrasChanged(store, index, families))) return summary(undefined);

  if (!existingConfig) await uploads.put(keys.config, canonicalJson(config));
  const payloadBytes = fresh.reduce((n, p) => n + p.built.manifest.packSize, 0);
  let sent = 0;
  let packagesSent = 0;
  await inParallel(fresh, UPLOADS_IN_FLIGHT, async ({ built }) => {
    await uploads.stream(keys.pack(built.manifest.pack), built.packStream((n) => {
      sent += n;
      options.onProgress?.({ phase: 'uploading', doneBytes: sent, totalBytes: payloadBytes, donePackages: packagesSent, totalPackages: fresh.length });
    }));
    packagesSent++;
    await uploads.ifMissing(keys.manifest(encodeDocument(built.manifest).hash), encodeDocument(built.manifest).bytes);
  });

  // Another publisher may swap HEAD between our read and our write: re-merge onto theirs and retry.
  for (let attempt = 0; attempt < HEAD_SWAP_ATTEMPTS; attempt++) {
    const now = Date.now();
    const next: CatalogIndex = { format: FORMAT_VERSION, generation: index.generation + 1, createdMs: now, families: { ...index.families } };
    for (const family of families) {
      const shard = await mergeShard(store, index, family, fresh.filter((p) => p.source.family === family.name), now);
      if (!shard) continue;
      const doc = encodeDocument(shard);
      await uploads.ifMissing(keys.shard(doc.hash), doc.bytes);
      next.families[family.name] = { shard: doc.hash, mtimeMs: now, versions: Object.keys(shard.versions).length };
    }
    const indexDoc = encodeDocument(next);
    await uploads.ifMissing(keys.index(indexDoc.hash), indexDoc.bytes);
    if (options.signingKey) await uploads.put(keys.signature(indexDoc.hash), canonicalJson(signIndex(options.signingKey, indexDoc.bytes)));
    if (await store.putIfMatch(keys.head, Buffer.from(indexDoc.hash), head?.etag ?? null)) {
      uploads.count(indexDoc.hash.length);
      return summary(next.generation);
    }
    options.log.warn('index/HEAD moved during publish (another publisher); merging and retrying');
    head = await readHead(store);
    index = head ? await readIndex(store, head.indexHash) : EMPTY_INDEX;
    fresh = await freshVersions(store, index, prepared);
  }
  throw new Error(`could not update ${keys.head} after ${HEAD_SWAP_ATTEMPTS} attempts: too many concurrent publishers`);
}

/** Versions not yet in the catalog; an already published version with other content is an error. */
async function freshVersions(store: ObjectStore, index: CatalogIndex, prepared: Prepared[]): Promise<Prepared[]> {
  const fresh: Prepared[] = [];
  const shards = new Map<string, FamilyShard | undefined>();
  for (const item of prepared) {
    const { family, version, dir } = item.source;
    if (!shards.has(family)) shards.set(family, await currentShard(store, index, family));
    const existing = shards.get(family)?.versions[version];
    if (!existing) fresh.push(item);
    else if (existing.content !== item.built.content) {
      throw new PublishInputError(dir, `${family}/${version} is already published with different content; published versions are immutable, release a new version`);
    }
  }
  return fresh;
}

async function currentShard(store: ObjectStore, index: CatalogIndex, family: string): Promise<FamilyShard | undefined> {
  const entry = Object.hasOwn(index.families, family) ? index.families[family] : undefined;
  return entry ? readShard(store, entry.shard) : undefined;
}

async function extrasChanged(store: ObjectStore, index: CatalogIndex, families: FamilySource[]): Promise<boolean> {
  for (const family of families) {
    const shard = await currentShard(store, index, family.name);
    if (!shard && family.versions.length === 0 && Object.keys(family.extras).length === 0) continue;
    if (!shard || !canonicalJson(shard.extras).equals(canonicalJson(family.extras))) return true;
  }
  return false;
}

/** The family's new shard, or undefined when nothing about the family changes. */
async function mergeShard(store: ObjectStore, index: CatalogIndex, family: FamilySource, fresh: Prepared[], now: number): Promise<FamilyShard | undefined> {
  const current = await currentShard(store, index, family.name);
  const extrasSame = current !== undefined && canonicalJson(current.extras).equals(canonicalJson(family.extras));
  if (fresh.length === 0 && (extrasSame || (!current && Object.keys(family.extras).length === 0))) return undefined;
  const versions: Record<string, VersionRecord> = { ...(current?.versions ?? {}) };
  for (const { source, built } of fresh) versions[source.version] = versionRecord(built, now);
  return { format: FORMAT_VERSION, name: family.name, versions, extras: family.extras };
}

function versionRecord(built: BuiltPackage, now: number): VersionRecord {
  const root = built.manifest.root;
  const definitions: VersionRecord['definitions'] = {};
  for (const [name, data] of Object.entries(built.definitions)) {
    const node = root.entries[name];
    if (node?.type === 'file') definitions[name] = { type: 'file', mode: node.mode, mtimeMs: node.mtimeMs, data: data.toString('base64') };
  }
  return {
    mode: root.mode,
    mtimeMs: root.mtimeMs,
    subdirs: countSubdirs(root),
    names: Object.keys(root.entries).sort(),
    publishedMs: now,
    definitions,
    manifest: encodeDocument(built.manifest).hash,
    content: built.content,
  };
}

/** Writes objects, skipping content-addressed ones the store already has, and counts what it sent. */
class Uploads {
  objects = 0;
  bytes = 0;

  constructor(private readonly store: ObjectStore) {}

  count(bytes: number): void {
    this.objects++;
    this.bytes += bytes;
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.store.put(key, body);
    this.count(body.length);
  }

  async ifMissing(key: string, body: Buffer): Promise<void> {
    if (!(await this.store.head(key))) await this.put(key, body);
  }

  async stream(key: string, source: AsyncIterable<Buffer>): Promise<void> {
    if (await this.store.head(key)) return;
    let bytes = 0;
    await this.store.putStream(key, countBytes(source, (n) => (bytes += n)));
    this.count(bytes);
  }
}

async function* countBytes(source: AsyncIterable<Buffer>, add: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    add(chunk.length);
    yield chunk;
  }
}

async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
