/**
 * The catalog on a cold mount, kernel-free (issue 12): a mount opens in two round trips, preloads every shard in
 * bounded parallel waves without letting a background failure answer a reader (decision D4), preloads only what a
 * new generation changed, stays lazy for catalogs too big to preload, and looks inside small versions with no
 * manifest request at all (manifests inline in their shard record).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockSource, MemoryBlockCache } from '../../src/cache/index.js';
import { Catalog, DEFAULT_SHARD_PRELOAD, encodeDocument, keys, type FamilyShard } from '../../src/catalog/index.js';
import { RezFs } from '../../src/fs/index.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ListedObject, type ObjectInfo, type ObjectStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const FAMILIES = 40;

/** A store whose GETs take `delayMs` and may fail once per key, recording how many were in flight at most. */
class SlowStore implements ObjectStore {
  inFlight = 0;
  peak = 0;
  readonly failOnce = new Set<string>();
  readonly gets: string[] = [];

  constructor(
    private readonly inner: ObjectStore,
    private readonly delayMs: number,
  ) {}

  get url(): string {
    return this.inner.url;
  }

  async get(key: string): Promise<Buffer> {
    this.gets.push(key);
    this.peak = Math.max(this.peak, ++this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.failOnce.delete(key)) throw new Error(`injected failure of ${key}`);
      return await this.inner.get(key);
    } finally {
      this.inFlight--;
    }
  }
  getRange(key: string, start: number, end: number): Promise<Buffer> {
    return this.inner.getRange(key, start, end);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }
  put(): Promise<void> {
    throw new Error('read-only');
  }
  putStream(): Promise<void> {
    throw new Error('read-only');
  }
  putIfMatch(): Promise<boolean> {
    throw new Error('read-only');
  }
  delete(): Promise<void> {
    throw new Error('read-only');
  }
  list(prefix: string): AsyncIterable<ListedObject> {
    return this.inner.list(prefix);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

let work: Awaited<ReturnType<typeof tempDir>>;
let raw: ObjectStore;
let repo: string;

beforeAll(async () => {
  work = await tempDir('cold-catalog');
  repo = join(work.path, 'repo');
  const tree: Record<string, string | Buffer> = {};
  for (let i = 0; i < FAMILIES; i++) {
    const family = `fam${String(i).padStart(2, '0')}`;
    for (const version of ['1.0', '1.1']) {
      tree[`${family}/${version}/package.py`] = packageDefinition(family, version);
      tree[`${family}/${version}/python/${family}/__init__.py`] = `VALUE = ${i}\n`;
    }
  }
  // A version whose manifest is too big to travel inline: 400 files.
  for (let i = 0; i < 400; i++) tree[`big/1.0/share/file-with-a-longish-name-${i}.txt`] = `${i}\n`;
  tree['big/1.0/package.py'] = packageDefinition('big', '1.0');
  await writeTree(repo, tree);
  raw = openStore(`file://${join(work.path, 'store')}`);
  await publish(raw, { repoDir: repo, selectors: [], log: silentLog });
});
afterAll(async () => work?.remove());

describe('opening and preloading the catalog', () => {
  it('opens in two round trips: rezfs.json with HEAD, then the index; no HEAD request', async () => {
    const store = new SlowStore(raw, 30);
    const counting = new CountingStore(store);
    await Catalog.open(counting);
    expect(counting.calls.map((c) => `${c.op} ${c.key.replace(/[0-9a-f]{64}/, 'H')}`).sort()).toEqual(['get index/H.json', 'get index/HEAD', 'get rezfs.json']);
    // Three GETs with two in flight at once: at most two waves (counted, not timed: these machines are noisy).
    expect(store.peak).toBe(2);
  });

  it('preloads every shard in bounded parallel waves, and a reader joins a GET in flight', async () => {
    const store = new SlowStore(raw, 20);
    const catalog = await Catalog.open(store);
    store.gets.length = 0;
    const preload = catalog.preloadShards({ ...DEFAULT_SHARD_PRELOAD, parallel: 8 });
    const demanded = await catalog.shard('fam00');
    const result = await preload;
    expect(demanded.name).toBe('fam00');
    expect(result).toEqual({ loaded: FAMILIES + 1, failed: 0 });
    expect(store.gets.filter((k) => k.startsWith('families/'))).toHaveLength(FAMILIES + 1); // the reader's joined one
    expect(store.peak).toBe(8);
    // Loaded for good: readers need no request.
    store.gets.length = 0;
    await Promise.all(catalog.familyNames().map((f) => catalog.shard(f)));
    expect(store.gets).toEqual([]);
  });

  it('never answers a reader with a preload that failed: the reader loads again on its own', async () => {
    const store = new SlowStore(raw, 20);
    const catalog = await Catalog.open(store);
    const key = keys.shard(catalog.family('fam03')!.shard);
    store.failOnce.add(key);
    const preload = catalog.preloadShards();
    await new Promise((r) => setTimeout(r, 5)); // the preload's GET of fam03 is in flight
    const shard = await catalog.shard('fam03');
    expect(shard.name).toBe('fam03');
    const result = await preload;
    expect(result.failed).toBe(1);
    expect(result.firstError).toContain('injected failure');
    expect(store.gets.filter((k) => k === key)).toHaveLength(2);
  });

  it('stays lazy when the catalog has more versions than the policy preloads', async () => {
    const store = new SlowStore(raw, 0);
    const catalog = await Catalog.open(store);
    store.gets.length = 0;
    const result = await catalog.preloadShards({ ...DEFAULT_SHARD_PRELOAD, maxVersions: 10 });
    expect(result.skipped).toMatch(/81 versions, more than 10/);
    expect(store.gets).toEqual([]);
  });

  it('preloads only the shards a newer generation changed', async () => {
    const copy = openStore(`file://${join(work.path, 'store-2')}`);
    await publish(copy, { repoDir: repo, selectors: [], log: silentLog });
    const store = new SlowStore(copy, 0);
    const first = await Catalog.open(store);
    await first.preloadShards();
    await writeTree(repo, { 'fam07/1.2/package.py': packageDefinition('fam07', '1.2') });
    await publish(copy, { repoDir: repo, selectors: ['fam07'], log: silentLog });
    store.gets.length = 0;
    const second = await first.next();
    expect(await second.preloadShards()).toEqual({ loaded: 1, failed: 0 });
    expect(store.gets.filter((k) => k.startsWith('families/'))).toEqual([keys.shard(second.family('fam07')!.shard)]);
  });
});

describe('inline manifests', () => {
  it('carries small manifests in the shard record, hashing to the manifest they stand for, and big ones not', async () => {
    const catalog = await Catalog.open(raw);
    const small = (await catalog.shard('fam01')).versions['1.0']!;
    expect(small.inlineManifest).toBeDefined();
    expect(encodeDocument(small.inlineManifest).hash).toBe(small.manifest);
    expect(await raw.get(keys.manifest(small.manifest))).toBeDefined(); // still in the store, for older mounts
    expect((await catalog.shard('big')).versions['1.0']!.inlineManifest).toBeUndefined();
  });

  it('lets a mount look inside and read a small version with no manifest request', async () => {
    const store = new CountingStore(raw);
    const catalog = await Catalog.open(store);
    const fs = new RezFs(catalog, new BlockSource(store, new MemoryBlockCache(1 << 20), undefined, silentLog), {
      uid: 0,
      gid: 0,
      readDeadlineMs: 5_000,
      readaheadBlocks: 1,
      log: silentLog,
    });
    store.reset();
    expect((await fs.readdir('/fam05/1.1/python/fam05')).map((e) => e.name)).toEqual(['.', '..', '__init__.py']);
    expect((await fs.readAt('/fam05/1.1/python/fam05/__init__.py', 0, 100)).toString()).toBe('VALUE = 5\n');
    expect(store.count('get', 'manifests/')).toBe(0);
    await fs.readdir('/big/1.0/share');
    expect(store.count('get', 'manifests/')).toBe(1);
  });

  it('refuses an inline manifest that does not hash to the manifest its record names', async () => {
    const catalog = await Catalog.open(raw);
    const shard: FamilyShard = structuredClone(await catalog.shard('fam02'));
    const record = shard.versions['1.0']!;
    record.inlineManifest!.root.entries['extra'] = { type: 'file', mode: 0o644, mtimeMs: 0, size: 0, offset: 0, sha256: '0'.repeat(64) };
    await expect(catalog.versionManifest(record)).rejects.toThrow(/does not match manifest/);
  });
});
