import { ObjectNotFoundError, type ObjectStore } from '../store/index.js';
import type { KeyObject } from 'node:crypto';
import { CatalogError, decodeDocument, isSha256, parseVersioned } from './codec.js';
import { checkIndexSignature, UntrustedCatalogError, type IndexSignature } from './signing.js';
import {
  DEFAULT_BLOCK_SIZE,
  FORMAT_VERSION,
  keys,
  type CatalogIndex,
  type FamilyShard,
  type IndexedFamily,
  type Manifest,
  type StoreConfig,
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

export function defaultStoreConfig(): StoreConfig {
  return { format: FORMAT_VERSION, blockSize: DEFAULT_BLOCK_SIZE };
}

export async function readHead(store: ObjectStore): Promise<Head | undefined> {
  const info = await store.head(keys.head);
  if (!info) return undefined;
  const indexHash = (await store.get(keys.head)).toString('utf8').trim();
  if (!isSha256(indexHash)) throw new CatalogError(`${store.url} ${keys.head} does not hold an index hash`);
  return { indexHash, etag: info.etag };
}

export async function readIndex(store: ObjectStore, hash: string): Promise<CatalogIndex> {
  return decodeDocument<CatalogIndex>(`index ${hash}`, hash, await store.get(keys.index(hash)));
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
  const bytes = await store.get(keys.index(hash));
  const index = decodeDocument<CatalogIndex>(what, hash, bytes);
  checkIndexSignature(trust.keys, bytes, await readSignature(store, hash), what);
  if (index.generation < trust.minGeneration) {
    throw new UntrustedCatalogError(`${what} is generation ${index.generation}, older than generation ${trust.minGeneration} already seen (rollback?)`);
  }
  return index;
}

export async function readShard(store: ObjectStore, hash: string): Promise<FamilyShard> {
  return decodeDocument<FamilyShard>(`family shard ${hash}`, hash, await store.get(keys.shard(hash)));
}

export async function readManifest(store: ObjectStore, hash: string): Promise<Manifest> {
  return decodeDocument<Manifest>(`manifest ${hash}`, hash, await store.get(keys.manifest(hash)));
}

/**
 * One generation of the catalog as a mount sees it: the index is loaded up front, each family's
 * shard on first use, each version's manifest when something below the version is looked at.
 * Everything is immutable, so loaded documents are kept for the life of the generation.
 */
export class Catalog {
  private readonly shards = new Map<string, Promise<FamilyShard>>();
  private readonly manifests = new Map<string, Promise<Manifest>>();

  private constructor(
    readonly store: ObjectStore,
    readonly config: StoreConfig,
    readonly indexHash: string | undefined,
    readonly index: CatalogIndex,
  ) {}

  /**
   * Loads the current generation; a store nothing was published to yet is an empty catalog, unless
   * signatures are required (an empty store has nothing signed to trust).
   */
  static async open(store: ObjectStore, trust?: TrustPolicy): Promise<Catalog> {
    const config = (await readStoreConfig(store)) ?? defaultStoreConfig();
    const head = await readHead(store);
    if (!head && trust) throw new UntrustedCatalogError(`${store.url} has no published catalog to trust yet`);
    const index = !head ? EMPTY_INDEX : trust ? await readTrustedIndex(store, head.indexHash, trust) : await readIndex(store, head.indexHash);
    return new Catalog(store, config, head?.indexHash, index);
  }

  familyNames(): string[] {
    return Object.keys(this.index.families).sort();
  }

  family(name: string): IndexedFamily | undefined {
    return Object.hasOwn(this.index.families, name) ? this.index.families[name] : undefined;
  }

  shard(name: string): Promise<FamilyShard> {
    const entry = this.family(name);
    if (!entry) return Promise.reject(new CatalogError(`no family ${name} in the catalog`));
    return memoize(this.shards, entry.shard, () => readShard(this.store, entry.shard));
  }

  manifest(hash: string): Promise<Manifest> {
    return memoize(this.manifests, hash, () => readManifest(this.store, hash));
  }
}

/** Shares one load between concurrent callers; a failed load is forgotten so the next access retries. */
function memoize<T>(cache: Map<string, Promise<T>>, key: string, load: () => Promise<T>): Promise<T> {
  let pending = cache.get(key);
  if (!pending) {
    pending = load();
    cache.set(key, pending);
    pending.catch(() => cache.delete(key));
  }
  return pending;
}
