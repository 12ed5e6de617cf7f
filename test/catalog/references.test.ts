import { rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog, CatalogWalker, OBJECT_KINDS, buildProfile, dependencyRank, generateSigningKeys, keys, loadPrivateKey, readHead, readIndex, type ObjectRef } from '../../src/catalog/index.js';
import { silentLog } from '../../src/log.js';
import { attachProfiles, publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { packageDefinition, tempDir, TWO_FAMILIES, writeTree } from '../support/small-repo.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let storeDir: string;
let store: ObjectStore;

const run = (options: Partial<Parameters<typeof publish>[1]> = {}) => publish(store, { repoDir: repo, selectors: [], log: silentLog, ...options });

/** What the store holds besides its two mutable roots: the publisher writes nothing a generation does not name. */
async function storedObjects(): Promise<string[]> {
  const found: string[] = [];
  for await (const { key } of store.list('')) if (key !== keys.head && key !== keys.config) found.push(key);
  return found.sort();
}

async function headHash(): Promise<string> {
  return (await readHead(store))!.indexHash;
}

beforeEach(async () => {
  work = await tempDir('walker');
  repo = join(work.path, 'repo');
  storeDir = join(work.path, 'store');
  store = openStore(`file://${storeDir}`);
  await writeTree(repo, TWO_FAMILIES);
});
afterEach(async () => work.remove());

describe('CatalogWalker', () => {
  it('finds exactly the objects a signed generation consists of, each once, parents before children', async () => {
    const { privatePem } = generateSigningKeys();
    await run({ signingKey: loadPrivateKey(privatePem, 'test key') });
    const order: ObjectRef[] = [];
    const walker = new CatalogWalker(store);
    await walker.walk(await headHash(), { object: (ref) => order.push(ref) });
    expect([...walker.keys].sort()).toEqual(await storedObjects());
    expect(order.map((r) => r.key).sort()).toEqual(await storedObjects());
    expect(order.map((r) => r.kind).sort()).toEqual(['index', 'manifest', 'manifest', 'pack', 'pack', 'shard', 'shard', 'signature']);
    const position = (key: string) => order.findIndex((r) => r.key === key);
    for (const ref of order.filter((r) => r.kind === 'pack')) {
      const manifest = order.find((r) => r.kind === 'manifest' && r.where === ref.where)!;
      expect(position(manifest.key)).toBeLessThan(position(ref.key));
    }
    const pack = order.find((r): r is Extract<ObjectRef, { kind: 'pack' }> => r.kind === 'pack' && r.where === 'foo/1.0.0')!;
    expect((await store.head(pack.key))!.size).toBe(pack.size);
  });

  it('walks several generations once over, and each generation on its own finds only what it names', async () => {
    await run();
    const first = await headHash();
    await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0'), 'foo/2.0.0/lib/x': 'new' });
    await run();
    const second = await headHash();
    expect((await readIndex(store, second)).previous).toBe(first);

    const both = new CatalogWalker(store);
    const visits: string[] = [];
    await both.walk(second, { object: (ref) => visits.push(ref.key) });
    await both.walk(first, { object: (ref) => visits.push(ref.key) });
    expect(visits.sort()).toEqual(await storedObjects()); // no duplicates, nothing missing
    const onlySecond = new CatalogWalker(store);
    await onlySecond.walk(second);
    const notInSecond = (await storedObjects()).filter((k) => !onlySecond.keys.has(k));
    // generation 1's index and its foo shard (bar's is shared by both)
    expect(notInSecond.map((k) => k.split('/')[0]).sort()).toEqual(['families', 'index']);
    expect(notInSecond).toContain(keys.index(first));
  });

  it('visits a manifest two versions share once, and shows it to each version', async () => {
    // Same tree, same mtimes: the two versions' manifests are one document.
    await writeTree(repo, { 'twin/1/package.py': 'name = "twin"\n', 'twin/2/package.py': 'name = "twin"\n' });
    for (const dir of ['twin/1', 'twin/2']) await utimes(join(repo, dir), 1_700_000_000, 1_700_000_000);
    await run();
    const manifests: string[] = [];
    const versions: string[] = [];
    await new CatalogWalker(store).walk(await headHash(), {
      object: (ref) => ref.kind === 'manifest' && manifests.push(ref.where),
      version: (where) => versions.push(where),
    });
    expect(versions.sort()).toEqual(['bar/1.0', 'foo/1.0.0', 'twin/1', 'twin/2']);
    expect(manifests.filter((w) => w.startsWith('twin/'))).toHaveLength(1);
  });

  it('reports a document it cannot read and goes on, or throws without a problem hook', async () => {
    await run();
    const head = await headHash();
    const index = await readIndex(store, head);
    await rm(join(storeDir, ...keys.shard(index.families.foo!.shard).split('/')));
    const problems: string[] = [];
    const walker = new CatalogWalker(store);
    await walker.walk(head, { problem: (where, err) => problems.push(`${where}: ${err.name}`) });
    expect(problems).toEqual(['foo: ObjectNotFoundError']);
    expect([...walker.keys].filter((k) => k.startsWith('packs/'))).toHaveLength(1); // bar's
    await expect(new CatalogWalker(store).walk(head)).rejects.toThrow(/not found/);
  });

  it('finds the chunk hashes of a pack that has them (format 1.2), before the manifest that names them', async () => {
    const blockSize = 16 * 1024;
    await store.put(keys.config, Buffer.from(JSON.stringify({ format: '1.2.0', blockSize })));
    await writeTree(repo, { 'big/1.0/package.py': packageDefinition('big', '1.0'), 'big/1.0/lib/libbig.so': Buffer.alloc(8 * blockSize + 1, 7) });
    await run();
    const order: ObjectRef[] = [];
    const walker = new CatalogWalker(store);
    await walker.walk(await headHash(), { object: (ref) => order.push(ref) });
    expect([...walker.keys].sort()).toEqual(await storedObjects());
    const chunks = order.filter((r) => r.kind === 'chunks');
    expect(chunks.map((r) => r.where)).toEqual(['big/1.0']); // the small packages have none
    const pack = order.find((r): r is Extract<ObjectRef, { kind: 'pack' }> => r.kind === 'pack' && r.where === 'big/1.0')!;
    expect(chunks[0]!.key).toBe(keys.chunks(pack.chunks!.object));
  });

  it('names a version\'s startup profile before its shard, so gc keeps it and sync copies it first', async () => {
    await run();
    const catalog = await Catalog.open(store);
    const record = (await catalog.shard('foo')).versions['1.0.0']!;
    const manifest = await catalog.versionManifest(record);
    const profile = buildProfile({ family: 'foo', version: '1.0.0', manifestHash: record.manifest }, 1000, new Map([[manifest.pack, [[0, 10] as [number, number]]]]));
    const attached = await attachProfiles(store, [profile], { log: silentLog });
    const order: ObjectRef[] = [];
    const walker = new CatalogWalker(store);
    await walker.walk(await headHash(), { object: (ref) => order.push(ref) });
    const key = keys.profile(attached.attached[0]!.profile);
    expect(order.filter((r) => r.kind === 'profile')).toEqual([{ kind: 'profile', key, sha256: attached.attached[0]!.profile, where: 'foo/1.0.0' }]);
    expect(await storedObjects()).toContain(key);
    expect(dependencyRank('profile')).toBeLessThan(dependencyRank('shard'));
  });

  it('orders kinds so that what a document names comes before it', () => {
    expect(dependencyRank('pack')).toBeLessThan(dependencyRank('manifest'));
    expect(dependencyRank('chunks')).toBeLessThan(dependencyRank('manifest'));
    expect(dependencyRank('manifest')).toBeLessThan(dependencyRank('shard'));
    expect(dependencyRank('shard')).toBeLessThan(dependencyRank('index'));
    expect(dependencyRank('signature')).toBeLessThan(dependencyRank('index'));
    expect(new Set(OBJECT_KINDS.map((k) => k.kind)).size).toBe(OBJECT_KINDS.length);
  });
});
