import { ObjectNotFoundError, type ObjectStore } from '../store/index.js';
import type { KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
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

/**
 * A content-addressed document, checked against its hash. Bytes that fail are retried from each
 * replica of the store (a mirror set) before the load fails, naming every source that failed.
 */
async function fetchDocument<T extends { format: string }>(store: ObjectStore, key: string, what: string, hash: string): Promise<{ value: T; bytes: Buffer; size: number }> {
  const failures: string[] = [];
  for (const source of [store, ...(store.replicas?.() ?? [])]) {
    const bytes = await source.get(key);
    try {
      return { value: decodeDocument<T>(what, hash, bytes), bytes, size: bytes.length };
    } catch (err) {
      if (!(err instanceof CatalogError)) throw err;
      failures.push(`${err.message} (from ${source.url})`);
    }
  }
  throw new CatalogError(failures.join('; '));
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
  const { value: index, bytes } = await fetchDocument<CatalogIndex>(store, keys.index(hash), what, hash);
  checkIndexSignature(trust.keys, bytes, await readSignature(store, hash), what);
  if (index.generation < trust.minGeneration) {
    throw new UntrustedCatalogError(`${what} is generation ${index.generation}, older than generation ${trust.minGeneration} already seen (rollback?)`);
  }
  return index;
}

export async function readShard(store: ObjectStore, hash: string): Promise<FamilyShard> {
  return (await fetchDocument<FamilyShard>(store, keys.shard(hash), `family shard ${hash}`, hash)).value;
}

/** Parsed documents of one kind, bounded in (serialized) bytes, each loaded once however many ask at once. */
class DocumentCache<T> {
  private readonly loaded: LRUCache<string, { value: T; size: number }>;
  private readonly loading = new Map<string, Promise<T>>();

  constructor(
    maxBytes: number,
    private readonly what: string,
    private readonly keyOf: (hash: string) => string,
  ) {
    this.loaded = new LRUCache({ maxSize: maxBytes, sizeCalculation: (entry) => Math.max(1, entry.size) });
  }

  get(store: ObjectStore, hash: string): Promise<T> {
    const hit = this.loaded.get(hash);
    if (hit) return Promise.resolve(hit.value);
    let pending = this.loading.get(hash);
    if (!pending) {
      pending = fetchDocument<T & { format: string }>(store, this.keyOf(hash), `${this.what} ${hash}`, hash).then(({ value, size }) => {
        this.loaded.set(hash, { value, size });
        return value;
      });
      const forget = () => this.loading.delete(hash);
      pending.then(forget, forget);
      this.loading.set(hash, pending);
    }
    return pending;
  }
}

/** Shards and manifests already loaded: immutable and named by hash, so every generation can share them. */
export class Documents {
  readonly shards = new DocumentCache<FamilyShard>(SHARD_CACHE_BYTES, 'family shard', keys.shard);
  readonly manifests = new DocumentCache<Manifest>(MANIFEST_CACHE_BYTES, 'manifest', keys.manifest);
}

/** Serialized bytes of documents kept parsed in memory (parsed objects take a few times more). */
const SHARD_CACHE_BYTES = 64 * 1024 * 1024;
const MANIFEST_CACHE_BYTES = 16 * 1024 * 1024;

/**
 * One generation of the catalog as a mount sees it: the index is loaded up front, each family's
 * shard on first use, each version's manifest when something below the version is looked at.
 */
export class Catalog {
  private readonly sortedFamilies: string[];

  private constructor(
    readonly store: ObjectStore,
    readonly config: StoreConfig,
    readonly indexHash: string | undefined,
    readonly index: CatalogIndex,
    private readonly documents: Documents,
  ) {
    this.sortedFamilies = Object.keys(index.families).sort();
  }

  /**
   * Loads the current generation; a store nothing was published to yet is an empty catalog, unless
   * signatures are required (an empty store has nothing signed to trust). A refresh passes the
   * documents of the generation it replaces, so unchanged families are not loaded again.
   */
  static async open(store: ObjectStore, trust?: TrustPolicy, documents: Documents = new Documents()): Promise<Catalog> {
    const config = (await readStoreConfig(store)) ?? defaultStoreConfig();
    const head = await readHead(store);
    if (!head && trust) throw new UntrustedCatalogError(`${store.url} has no published catalog to trust yet`);
    const index = !head ? EMPTY_INDEX : trust ? await readTrustedIndex(store, head.indexHash, trust) : await readIndex(store, head.indexHash);
    return new Catalog(store, config, head?.indexHash, index, documents);
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

  shard(name: string): Promise<FamilyShard> {
    const entry = this.family(name);
    if (!entry) return Promise.reject(new CatalogError(`no family ${name} in the catalog`));
    return this.documents.shards.get(this.store, entry.shard);
  }

  manifest(hash: string): Promise<Manifest> {
    return this.documents.manifests.get(this.store, hash);
  }
}
