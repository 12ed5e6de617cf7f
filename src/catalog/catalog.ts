import { ObjectNotFoundError, readVerified, type ObjectStore } from '../store/index.js';
import type { KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { inParallel } from '../parallel.js';
import { CatalogError, decodeDocument, encodeDocument, isSha256, parseVersioned } from './codec.js';
import { checkIndexSignature, UntrustedCatalogError, type IndexSignature } from './signing.js';
import {
  DEFAULT_BLOCK_SIZE,
  FORMAT_VERSION,
  keys,
  type CatalogIndex,
  type FamilyShard,
  type IndexedFamily,
  type InlineFile,
  type Manifest,
  type StartupProfile,
  type StoreConfig,
  type VersionRecord,
} from './schema.js';

export interface Head {
  indexHash: string;
  /** The HEAD object's etag, for compare-and-swap. */
  etag: string;
}

export const EMPTY_INDEX: CatalogIndex = { format: FORMAT_VERSION, generation: 0, createdMs: 0, families: {} };

/** The store's `rezfs.json`, or undefined for a store nothing was ever published to. */
export async function readStoreConfig(store: ObjectStore): Promise<StoreConfig | undefined> {
  try {
    const config = parseVersioned<StoreConfig>(`${store.url} ${keys.config}`, await store.get(keys.config));
    if (!Number.isInteger(config.blockSize) || config.blockSize <= 0) {
      throw new CatalogError(`${store.url} ${keys.config} has an invalid blockSize`);
    }
    return config;
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

/** A URL that holds neither `rezfs.json` nor `index/HEAD`: nothing was ever published there. */
export class NotAStoreError extends CatalogError {
  constructor(readonly storeUrl: string) {
    super(`${storeUrl} is not a rezfs store: it holds neither ${keys.config} nor ${keys.head} (a mistyped bucket, prefix or directory? publish to it first to create it)`);
    this.name = 'NotAStoreError';
  }
}

export function defaultStoreConfig(): StoreConfig {
  return { format: FORMAT_VERSION, blockSize: DEFAULT_BLOCK_SIZE };
}

/** HEAD's index hash with the etag to compare-and-swap against (a HEAD request, then a GET: the etag is never newer than the hash). */
export async function readHead(store: ObjectStore): Promise<Head | undefined> {
  const info = await store.head(keys.head);
  if (!info) return undefined;
  return { indexHash: await getHeadHash(store), etag: info.etag };
}

/** The index hash HEAD names, in one GET, for whoever needs no etag (readers; a leased writer); undefined when absent. */
export async function readHeadHash(store: ObjectStore): Promise<string | undefined> {
  try {
    return await getHeadHash(store);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

/**
 * HEAD's content. Some servers (s3rver, WebDAV servers) write an object in place, so a GET racing a writer's PUT can
 * see it empty or cut short: a HEAD that does not hold a hash is read again a few times before it is an error.
 */
async function getHeadHash(store: ObjectStore): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const indexHash = (await store.get(keys.head)).toString('utf8').trim();
    if (isSha256(indexHash)) return indexHash;
    if (attempt === TORN_HEAD_RETRIES_MS.length) throw new CatalogError(`${store.url} ${keys.head} does not hold an index hash`);
    await new Promise((resolve) => setTimeout(resolve, TORN_HEAD_RETRIES_MS[attempt]));
  }
}

const TORN_HEAD_RETRIES_MS = [20, 100, 400];

/**
 * A content-addressed document, checked against its hash, read under the one verified-read policy
 * (store/verified-read.ts); a load that fails names every source whose bytes failed.
 */
async function fetchDocument<T extends { format: string }>(store: ObjectStore, key: string, what: string, hash: string): Promise<{ value: T; bytes: Buffer; size: number }> {
  const failures: string[] = [];
  try {
    return await readVerified(
      store,
      (source) => source.get(key),
      (bytes) => ({ value: decodeDocument<T>(what, hash, bytes), bytes, size: bytes.length }),
      CatalogError,
      (err, source) => failures.push(`${err.message} (from ${source.url})`),
    );
  } catch (err) {
    if (err instanceof CatalogError && failures.length > 0) throw new CatalogError(failures.join('; '));
    throw err;
  }
}

export async function readIndex(store: ObjectStore, hash: string): Promise<CatalogIndex> {
  return (await fetchDocument<CatalogIndex>(store, keys.index(hash), `index ${hash}`, hash)).value;
}

export async function readSignature(store: ObjectStore, hash: string): Promise<IndexSignature | undefined> {
  try {
    return parseVersioned<IndexSignature>(`signature of index ${hash}`, await store.get(keys.signature(hash)));
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

/** What a mount that checks signatures accepts: indexes signed by one of these keys, no older than it has seen. */
export interface TrustPolicy {
  keys: readonly KeyObject[];
  /** The newest generation this mount has accepted before; an older index is a rollback. */
  minGeneration: number;
}

async function readTrustedIndex(store: ObjectStore, hash: string, trust: TrustPolicy): Promise<CatalogIndex> {
  const what = `index ${hash} in ${store.url}`;
  // The signature is fetched alongside the index: one round trip for both.
  const [{ value: index, bytes }, signature] = await Promise.all([fetchDocument<CatalogIndex>(store, keys.index(hash), what, hash), readSignature(store, hash)]);
  checkIndexSignature(trust.keys, bytes, signature, what);
  if (index.generation < trust.minGeneration) {
    throw new UntrustedCatalogError(`${what} is generation ${index.generation}, older than generation ${trust.minGeneration} already seen (rollback?)`);
  }
  return index;
}

export async function readShard(store: ObjectStore, hash: string): Promise<FamilyShard> {
  return (await fetchDocument<FamilyShard>(store, keys.shard(hash), `family shard ${hash}`, hash)).value;
}

export async function readManifest(store: ObjectStore, hash: string): Promise<Manifest> {
  return (await fetchDocument<Manifest>(store, keys.manifest(hash), `manifest ${hash}`, hash)).value;
}

/** Parsed documents of one kind, bounded in (serialized) bytes, each loaded once however many ask at once. */
class DocumentCache<T> {
  private readonly loaded: LRUCache<string, { value: T; size: number }>;
  /** Loads in flight; a background one (a preload) may fail without that failure answering anyone else. */
  private readonly loading = new Map<string, { promise: Promise<T>; background: boolean }>();

  constructor(
    maxBytes: number,
    private readonly what: string,
    private readonly keyOf: (hash: string) => string,
  ) {
    this.loaded = new LRUCache({ maxSize: maxBytes, sizeCalculation: (entry) => Math.max(1, entry.size) });
  }

  has(hash: string): boolean {
    return this.loaded.has(hash) || this.loading.has(hash);
  }

  /** A demand load: joins one in flight; when that was a preload and it failed, loads again on its own account. */
  get(store: ObjectStore, hash: string): Promise<T> {
    const hit = this.loaded.get(hash);
    if (hit) return Promise.resolve(hit.value);
    const pending = this.loading.get(hash);
    if (pending?.background) return pending.promise.catch(() => this.get(store, hash));
    return pending?.promise ?? this.load(store, hash, false);
  }

  /** A background load: shares one in flight, never fails a reader that joined it (see get). */
  preload(store: ObjectStore, hash: string): Promise<T> {
    const hit = this.loaded.get(hash);
    if (hit) return Promise.resolve(hit.value);
    return this.loading.get(hash)?.promise ?? this.load(store, hash, true);
  }

  private load(store: ObjectStore, hash: string, background: boolean): Promise<T> {
    const promise = fetchDocument<T & { format: string }>(store, this.keyOf(hash), `${this.what} ${hash}`, hash).then(({ value, size }) => {
      this.loaded.set(hash, { value, size });
      return value;
    });
    const forget = () => {
      if (this.loading.get(hash)?.promise === promise) this.loading.delete(hash);
    };
    promise.then(forget, forget);
    this.loading.set(hash, { promise, background });
    return promise;
  }
}

/** Shards and manifests already loaded: immutable and named by hash, so every generation can share them. */
export class Documents {
  readonly shards = new DocumentCache<FamilyShard>(SHARD_CACHE_BYTES, 'family shard', keys.shard);
  readonly manifests = new DocumentCache<Manifest>(MANIFEST_CACHE_BYTES, 'manifest', keys.manifest);
  readonly profiles = new DocumentCache<StartupProfile>(PROFILE_CACHE_BYTES, 'startup profile', keys.profile);
  /** Inline manifests already checked against the hash their version record names. */
  readonly inlineChecked = new WeakSet<Manifest>();
}

/**
 * Loading every family's shard when a mount starts, so that a resolve, which meets families one at a time, finds
 * them loaded instead of waiting one round trip per family.
 */
export interface ShardPreloadPolicy {
  /** Shard GETs in flight at once for the preload; demand loads never wait for these slots. */
  parallel: number;
  /**
   * A catalog with more versions than this stays lazy (loaded family by family, on demand): its shards would
   * crowd the shard cache (about 1 KiB a version), and every fresh mount would send thousands of GETs.
   */
  maxVersions: number;
}

export const DEFAULT_SHARD_PRELOAD: ShardPreloadPolicy = { parallel: 16, maxVersions: 20_000 };

export interface ShardPreloadResult {
  /** Shards fetched (or read from a local copy) by this preload; shards already in memory are not counted. */
  loaded: number;
  failed: number;
  /** Why nothing was preloaded, if so. */
  skipped?: string;
  /** The first failure, for one log line. */
  firstError?: string;
}

/** Serialized bytes of documents kept parsed in memory (parsed objects take a few times more). */
const SHARD_CACHE_BYTES = 64 * 1024 * 1024;
const MANIFEST_CACHE_BYTES = 16 * 1024 * 1024;
const PROFILE_CACHE_BYTES = 4 * 1024 * 1024;

/**
 * One generation of the catalog as a mount sees it: the index is loaded up front, each family's
 * shard on first use, each version's manifest when something below the version is looked at.
 */
export class Catalog {
  private readonly sortedFamilies: string[];
  private readonly sortedRootFiles: string[];

  private constructor(
    readonly store: ObjectStore,
    readonly config: StoreConfig,
    readonly indexHash: string | undefined,
    readonly index: CatalogIndex,
    private readonly documents: Documents,
  ) {
    this.sortedFamilies = Object.keys(index.families).sort();
    this.sortedRootFiles = Object.keys(index.files ?? {}).sort();
  }

  /**
   * Loads the current generation. A store with `rezfs.json` but no `index/HEAD` yet is an empty
   * catalog, unless signatures are required (an empty store has nothing signed to trust); a URL with
   * neither is not a rezfs store at all (a mistyped bucket, prefix or directory), never an empty one.
   * A refresh passes the documents of the generation it replaces, so unchanged families are not
   * loaded again.
   */
  static async open(store: ObjectStore, trust?: TrustPolicy, documents: Documents = new Documents()): Promise<Catalog> {
    // Two round trips: rezfs.json with HEAD, then the index (with its signature).
    const [storedConfig, indexHash] = await Promise.all([readStoreConfig(store), readHeadHash(store)]);
    if (!storedConfig && !indexHash) throw new NotAStoreError(store.url);
    const config = storedConfig ?? defaultStoreConfig();
    if (!indexHash && trust) throw new UntrustedCatalogError(`${store.url} has no published catalog to trust yet`);
    const index = !indexHash ? EMPTY_INDEX : trust ? await readTrustedIndex(store, indexHash, trust) : await readIndex(store, indexHash);
    return new Catalog(store, config, indexHash, index, documents);
  }

  /** Opens the store's current generation sharing this one's loaded documents. */
  next(trust?: TrustPolicy): Promise<Catalog> {
    return Catalog.open(this.store, trust, this.documents);
  }

  familyNames(): readonly string[] {
    return this.sortedFamilies;
  }

  family(name: string): IndexedFamily | undefined {
    return Object.hasOwn(this.index.families, name) ? this.index.families[name] : undefined;
  }

  /** Files at the root (single-file families), sorted; most stores have none. */
  rootFileNames(): readonly string[] {
    return this.sortedRootFiles;
  }

  rootFile(name: string): InlineFile | undefined {
    const files = this.index.files;
    return files && Object.hasOwn(files, name) ? files[name] : undefined;
  }

  shard(name: string): Promise<FamilyShard> {
    const entry = this.family(name);
    if (!entry) return Promise.reject(new CatalogError(`no family ${name} in the catalog`));
    return this.documents.shards.get(this.store, entry.shard);
  }

  manifest(hash: string): Promise<Manifest> {
    return this.documents.manifests.get(this.store, hash);
  }

  /** A startup profile, loaded in the background: its failure is only ever logged (a profile is a hint). */
  profile(hash: string): Promise<StartupProfile> {
    return this.documents.profiles.preload(this.store, hash);
  }

  /**
   * A version's manifest: the one inlined in its shard record when the publisher put it there (no round trip),
   * else fetched. An inline manifest must hash to the record's `manifest`, like a fetched one.
   */
  versionManifest(record: VersionRecord): Promise<Manifest> {
    const inline = record.inlineManifest;
    if (!inline) return this.manifest(record.manifest);
    if (!this.documents.inlineChecked.has(inline)) {
      const { hash } = encodeDocument(inline);
      if (hash !== record.manifest) return Promise.reject(new CatalogError(`inline manifest ${hash} does not match manifest ${record.manifest} of its version`));
      this.documents.inlineChecked.add(inline);
    }
    return Promise.resolve(inline);
  }

  /**
   * Loads the shards of every family not loaded yet, `policy.parallel` at a time, in the background: a demand
   * load of a shard joins the preload's GET when one is in flight, and loads on its own if that GET fails, so a
   * background failure is never anyone's answer (decision D4). Never rejects. Unchanged families of a newer
   * generation are already loaded (documents are shared by hash), so a refresh preloads only what changed.
   */
  async preloadShards(policy: ShardPreloadPolicy = DEFAULT_SHARD_PRELOAD): Promise<ShardPreloadResult> {
    const families = Object.values(this.index.families);
    const versions = families.reduce((n, f) => n + f.versions, 0);
    if (versions > policy.maxVersions) return { loaded: 0, failed: 0, skipped: `${versions} versions, more than ${policy.maxVersions}: shards load on demand` };
    const result: ShardPreloadResult = { loaded: 0, failed: 0 };
    const missing = families.map((f) => f.shard).filter((hash) => !this.documents.shards.has(hash));
    await inParallel(missing, policy.parallel, async (hash) => {
      try {
        await this.documents.shards.preload(this.store, hash);
        result.loaded++;
      } catch (err) {
        result.failed++;
        result.firstError ??= (err as Error).message;
      }
    });
    return result;
  }
}
