import { chmod, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog, canonicalJson, keys, readHead, verifyStore, type FileNode, type Manifest } from '../../src/catalog/index.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let store: ObjectStore;

async function allKeys(s: ObjectStore): Promise<Set<string>> {
  const found = new Set<string>();
  for await (const { key } of s.list('')) found.add(key);
  return found;
}

const run = (s: ObjectStore, selectors: string[] = []) => publish(s, { repoDir: repo, selectors, log: silentLog });

beforeEach(async () => {
  work = await tempDir('publish');
  repo = join(work.path, 'repo');
  store = openStore(`file://${join(work.path, 'store')}`);
  await writeTree(repo, {
    'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0'),
    'foo/1.0.0/bin/foo': { mode: 0o755, data: 'x' },
    'bar/1.0/package.py': packageDefinition('bar', '1.0'),
    'bar/1.0/data/a.txt': 'a',
  });
});
afterEach(async () => work.remove());

describe('publish', () => {
  it('writes packs, manifests, shards, an index and HEAD', async () => {
    const summary = await run(store);
    expect(summary).toMatchObject({ packages: 2, alreadyPublished: 0, files: 4, generation: 1 });
    const written = [...(await allKeys(store))];
    for (const prefix of ['packs/', 'manifests/', 'families/']) expect(written.filter((k) => k.startsWith(prefix))).toHaveLength(2);
    expect(written).toContain('index/HEAD');
    expect(written).toContain('rezfs.json');
    const catalog = await Catalog.open(store);
    expect(catalog.familyNames()).toEqual(['bar', 'foo']);
    expect(Object.keys((await catalog.shard('foo')).versions)).toEqual(['1.0.0']);
  });

  it('is idempotent: a second run uploads nothing and keeps HEAD', async () => {
    await run(store);
    const head = await readHead(store);
    const counting = new CountingStore(store);
    const summary = await run(counting);
    expect(summary).toMatchObject({ packages: 0, alreadyPublished: 2, objectsUploaded: 0, generation: undefined });
    expect(counting.count('put')).toBe(0);
    expect(await readHead(store)).toEqual(head);
  });

  it('uploads only the new version payload, its shard, the index and HEAD', async () => {
    await run(store);
    const before = await allKeys(store);
    await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0'), 'foo/2.0.0/lib/x': 'new' });
    const counting = new CountingStore(store);
    const summary = await run(counting);
    expect(summary).toMatchObject({ packages: 1, alreadyPublished: 2, generation: 2 });
    const added = [...(await allKeys(store))].filter((k) => !before.has(k)).map((k) => k.split('/')[0]).sort();
    expect(added).toEqual(['families', 'index', 'manifests', 'packs']);
    expect(counting.calls.filter((c) => c.op === 'put').map((c) => c.key.split('/')[0]).sort()).toEqual(['families', 'index', 'index', 'manifests', 'packs']);
    expect(summary.objectsUploaded).toBe(5);
    const catalog = await Catalog.open(store);
    expect(Object.keys((await catalog.shard('foo')).versions).sort()).toEqual(['1.0.0', '2.0.0']);
    expect(catalog.family('bar')!.shard).toBe((await Catalog.open(openStore(store.url))).family('bar')!.shard);
  });

  it('publishes only the selected families and versions', async () => {
    await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0') });
    await run(store, ['foo/2.0.0']);
    let catalog = await Catalog.open(store);
    expect(catalog.familyNames()).toEqual(['foo']);
    expect(Object.keys((await catalog.shard('foo')).versions)).toEqual(['2.0.0']);
    await run(store, ['bar']);
    catalog = await Catalog.open(store);
    expect(catalog.familyNames()).toEqual(['bar', 'foo']);
    await expect(run(store, ['nope'])).rejects.toThrow(/nope: no such package family/);
    await expect(run(store, ['foo/9.9'])).rejects.toThrow(/foo\/9\.9: no such package version/);
  });

  it('refuses changed payload under a published version, naming the file, and publishes the rest', async () => {
    await run(store);
    const head = await readHead(store);
    await writeFile(join(repo, 'foo/1.0.0/bin/foo'), 'changed');
    const summary = await run(store);
    expect(summary.refusals).toEqual([{ what: 'foo/1.0.0', message: expect.stringMatching(/foo\/1\.0\.0: bin\/foo differs from the published foo\/1\.0\.0: a published payload never changes/) }]);
    expect(summary.generation).toBeUndefined();
    expect(await readHead(store)).toEqual(head);
    // The refused version does not hold back another one.
    await writeTree(repo, { 'bar/2.0/package.py': packageDefinition('bar', '2.0') });
    const next = await run(store);
    expect(next).toMatchObject({ packages: 1, generation: 2 });
    expect(next.refusals.map((r) => r.what)).toEqual(['foo/1.0.0']);
    expect(Object.keys((await (await Catalog.open(store)).shard('bar')).versions).sort()).toEqual(['1.0', '2.0']);
  });

  it('treats a re-copy that only changed mtimes as already published', async () => {
    await run(store);
    await utimes(join(repo, 'foo/1.0.0/bin/foo'), 1_800_000_000, 1_800_000_000);
    expect(await run(store)).toMatchObject({ packages: 0, generation: undefined, refusals: [] });
  });

  it('a mode change, a removed file and a same-size rewrite (with --rehash) are changes', async () => {
    await run(store);
    await chmod(join(repo, 'bar/1.0/data/a.txt'), 0o600);
    expect((await run(store)).refusals[0]!.message).toMatch(/data\/a\.txt differs from the published bar\/1\.0/);
    await chmod(join(repo, 'bar/1.0/data/a.txt'), 0o644);
    await rm(join(repo, 'bar/1.0/data/a.txt'));
    expect((await run(store)).refusals[0]!.message).toMatch(/data\/a\.txt differs/);
    await writeTree(repo, { 'bar/1.0/data/a.txt': 'b' }); // same size, same mtime as published: stat cannot tell
    expect(await run(store)).toMatchObject({ packages: 0, refusals: [] });
    const rehashed = await publish(store, { repoDir: repo, selectors: [], log: silentLog, rehash: true });
    expect(rehashed.refusals[0]!.message).toMatch(/data\/a\.txt differs/);
  });

  it('publishes a new .ignore marker in a family without new versions', async () => {
    await run(store);
    await writeTree(repo, { 'foo/.ignore1.0.0': '' });
    const summary = await run(store);
    expect(summary.generation).toBe(2);
    const shard = await (await Catalog.open(store)).shard('foo');
    expect(Object.keys(shard.extras)).toEqual(['.ignore1.0.0']);
  });

  it('merges onto a HEAD another publisher moved meanwhile', async () => {
    await run(store, ['foo']);
    // Simulates a concurrent publisher: HEAD moves between this publisher's read and its swap.
    const racing = new (class extends CountingStore {
      private raced = false;
      override async putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
        if (key === keys.head && !this.raced) {
          this.raced = true;
          await publish(store, { repoDir: repo, selectors: ['bar'], log: silentLog });
        }
        return super.putIfMatch(key, body, expected);
      }
    })(store);
    await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0') });
    await publish(racing, { repoDir: repo, selectors: ['foo'], log: silentLog });
    const catalog = await Catalog.open(store);
    expect(catalog.familyNames()).toEqual(['bar', 'foo']);
    expect(Object.keys((await catalog.shard('foo')).versions).sort()).toEqual(['1.0.0', '2.0.0']);
  });

  it('starts big files on a block boundary, zero padding before them, so the same file has the same blocks anywhere', async () => {
    const blockSize = 64;
    await store.put(keys.config, canonicalJson({ format: '1.0.0', blockSize }));
    const big = Buffer.from(Array.from({ length: 8 * blockSize + 37 }, (_, i) => (i * 13) % 251));
    await writeTree(repo, {
      'big/1.0/package.py': packageDefinition('big', '1.0'),
      'big/1.0/lib/libbig.so': big,
      'big/1.0/lib/small.txt': 'small',
      'big/2.0/package.py': packageDefinition('big', '2.0', '# a longer definition moves everything after it'),
      'big/2.0/lib/libbig.so': big,
    });
    await run(store, ['big']);
    const catalog = await Catalog.open(store);
    const shard = await catalog.shard('big');
    const layouts: { manifest: Manifest; file: FileNode; pack: Buffer }[] = [];
    for (const version of ['1.0', '2.0']) {
      const manifest = await catalog.manifest(shard.versions[version]!.manifest);
      const lib = manifest.root.entries.lib;
      if (lib?.type !== 'dir' || lib.entries['libbig.so']?.type !== 'file') throw new Error('libbig.so missing from the manifest');
      layouts.push({ manifest, file: lib.entries['libbig.so'], pack: await store.get(keys.pack(manifest.pack)) });
    }
    for (const { manifest, file, pack } of layouts) {
      expect(file.offset % blockSize).toBe(0);
      expect(file.offset).toBeGreaterThan(0); // package.py comes first, so there was padding to add
      expect(pack.subarray(file.offset, file.offset + file.size).equals(big)).toBe(true);
      expect(pack.length).toBe(manifest.packSize);
      const others = Object.values(manifest.root.entries).filter((n): n is FileNode => n.type === 'file');
      const endOfFirst = Math.max(...others.map((n) => n.offset + n.size));
      expect(pack.subarray(endOfFirst, file.offset).every((b) => b === 0)).toBe(true);
    }
    const blocksOf = ({ manifest, file }: (typeof layouts)[number]) => manifest.blocks.slice(file.offset / blockSize, file.offset / blockSize + 8);
    expect(blocksOf(layouts[0]!)).toEqual(blocksOf(layouts[1]!));
    expect(layouts[0]!.manifest.pack).not.toBe(layouts[1]!.manifest.pack);
    expect((await verifyStore(store, undefined)).problems).toEqual([]);
  });
});
