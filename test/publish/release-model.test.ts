/**
 * rez's release model, kernel-free: a version gains variants over time, a definition changes only deliberately,
 * a refused version holds nothing else back, versions rez is still releasing are skipped, and every layout rez's
 * filesystem repository reads (versioned, unversioned, single-file families) is published. Reads go through
 * RezFs, so what a mount would serve is checked too.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlockSource, MemoryBlockCache } from '../../src/cache/index.js';
import { Catalog, FORMAT_2, packsOf, readManifest, verifyStore } from '../../src/catalog/index.js';
import { RezFs } from '../../src/fs/index.js';
import { silentLog } from '../../src/log.js';
import { publish, PublishInputError, type PublishOptions } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let store: ObjectStore;

const run = (s: ObjectStore = store, options: Partial<PublishOptions> = {}) => publish(s, { repoDir: repo, selectors: [], log: silentLog, ...options });

/** What a mount of the store's current generation serves at `path`. */
async function served(path: string): Promise<Buffer> {
  const fs = new RezFs(await Catalog.open(store), new BlockSource(store, new MemoryBlockCache(1 << 24), undefined, silentLog), {
    uid: 0,
    gid: 0,
    readDeadlineMs: 5_000,
    readaheadBlocks: 4,
    log: silentLog,
  });
  const handle = await fs.open(path, 0);
  const parts: Buffer[] = [];
  for (let offset = 0; ; offset += 65536) {
    const data = await fs.read(handle, offset, 65536);
    if (data.length === 0) break;
    parts.push(data);
  }
  return Buffer.concat(parts);
}

/** A package.py listing the variants released so far, as rez rewrites it on each variant release. */
const multiVariant = (variants: string[]) => packageDefinition('multi', '1.0.0', `variants = ${JSON.stringify(variants.map((v) => [v]))}\n`);

beforeEach(async () => {
  work = await tempDir('release-model');
  repo = join(work.path, 'repo');
  store = openStore(`file://${join(work.path, 'store')}`);
  await writeTree(repo, {
    'multi/1.0.0/package.py': multiVariant(['python-3.9']),
    'multi/1.0.0/python-3.9/lib/multi.py': 'print("3.9")\n',
    'multi/1.0.0/python-3.9/bin/tool': { mode: 0o755, data: '#!/bin/sh\necho 3.9\n' },
    'other/2.0/package.py': packageDefinition('other', '2.0'),
  });
});
afterEach(async () => work.remove());

describe('variants released one at a time', () => {
  it('adds the new variant as a new pack: nothing published before is uploaded again, both variants are served', async () => {
    await run();
    const before = await readManifest(store, (await (await Catalog.open(store)).shard('multi')).versions['1.0.0']!.manifest);
    await writeTree(repo, {
      'multi/1.0.0/package.py': multiVariant(['python-3.9', 'python-3.11']),
      'multi/1.0.0/python-3.11/lib/multi.py': 'print("3.11")\n',
    });
    const counting = new CountingStore(store);
    const summary = await run(counting);
    expect(summary).toMatchObject({ packages: 1, changes: { grown: 1 }, files: 2, refusals: [] });
    // One new pack (the new variant's file and the rewritten package.py), its manifest, the shard, the index, HEAD.
    expect(counting.calls.filter((c) => c.op === 'put').map((c) => c.key.split('/')[0]).sort()).toEqual(['families', 'index', 'index', 'manifests', 'packs']);
    const catalog = await Catalog.open(store);
    const record = (await catalog.shard('multi')).versions['1.0.0']!;
    const manifest = await readManifest(store, record.manifest);
    expect(manifest.format).toBe(FORMAT_2);
    expect(packsOf(manifest).map((p) => p.pack)).toEqual([before.pack, manifest.addedPacks![0]!.pack]);
    expect(Buffer.from(record.definitions['package.py']!.data, 'base64').toString()).toMatch(/python-3\.11/);
    expect((await served('/multi/1.0.0/python-3.11/lib/multi.py')).toString()).toBe('print("3.11")\n');
    expect((await served('/multi/1.0.0/python-3.9/bin/tool')).toString()).toBe('#!/bin/sh\necho 3.9\n');
    expect((await served('/multi/1.0.0/package.py')).toString()).toBe(await readFile(join(repo, 'multi/1.0.0/package.py'), 'utf8'));
    expect((await verifyStore(store, undefined)).problems).toEqual([]);
    // A third variant adds a third pack; republishing the same source changes nothing.
    await writeTree(repo, { 'multi/1.0.0/package.py': multiVariant(['python-3.9', 'python-3.11', 'python-3.12']), 'multi/1.0.0/python-3.12/x': '12' });
    expect(await run()).toMatchObject({ changes: { grown: 1 } });
    expect((await readManifest(store, (await (await Catalog.open(store)).shard('multi')).versions['1.0.0']!.manifest)).addedPacks).toHaveLength(2);
    expect(await run()).toMatchObject({ packages: 0, generation: undefined });
    expect((await verifyStore(store, undefined)).problems).toEqual([]);
  });

  it('refuses a new variant when an existing variant\'s payload changed, naming the file', async () => {
    await run();
    await writeTree(repo, {
      'multi/1.0.0/package.py': multiVariant(['python-3.9', 'python-3.11']),
      'multi/1.0.0/python-3.11/lib/multi.py': 'print("3.11")\n',
      'multi/1.0.0/python-3.9/lib/multi.py': 'print("3.9, rebuilt")\n',
    });
    const summary = await run();
    expect(summary.refusals).toEqual([{ what: 'multi/1.0.0', message: expect.stringMatching(/python-3\.9\/lib\/multi\.py differs from the published multi\/1\.0\.0/) }]);
    expect(summary.generation).toBeUndefined();
  });

  it('accepts a changed definition alone only with allowRedefine', async () => {
    await run();
    await writeFile(join(repo, 'multi/1.0.0/package.py'), multiVariant(['python-3.9']) + 'description = "fixed by hand"\n');
    const refused = await run();
    expect(refused.refusals[0]!.message).toMatch(/package\.py changed but no variant was added to the published multi\/1\.0\.0: .*--allow-redefine/);
    expect(refused.generation).toBeUndefined();
    expect(await run(store, { allowRedefine: true })).toMatchObject({ changes: { redefined: 1 }, generation: 2 });
    expect((await served('/multi/1.0.0/package.py')).toString()).toMatch(/fixed by hand/);
    expect((await served('/multi/1.0.0/python-3.9/lib/multi.py')).toString()).toBe('print("3.9")\n');
    expect((await verifyStore(store, undefined)).problems).toEqual([]);
  });
});

describe('what rez does to a repository', () => {
  it('skips a version rez is still releasing, with a note, and publishes the others', async () => {
    await writeTree(repo, { 'other/3.0/package.py': packageDefinition('other', '3.0'), 'other/.building3.0': '' });
    const summary = await run();
    expect(summary.notes).toEqual([expect.stringMatching(/^other\/3\.0: skipped, rez is still releasing it/)]);
    const shard = await (await Catalog.open(store)).shard('other');
    expect(Object.keys(shard.versions)).toEqual(['2.0']);
    expect(Object.keys(shard.extras)).toEqual([]); // the marker itself is rez's bookkeeping, not published
    await rm(join(repo, 'other/.building3.0'));
    expect(await run()).toMatchObject({ packages: 1, notes: [] });
  });

  it('publishes unversioned packages and single-file families, and a mount serves them as rez expects', async () => {
    await writeTree(repo, {
      'unversioned/package.py': 'name = "unversioned"\n',
      'unversioned/bin/hello': { mode: 0o755, data: '#!/bin/sh\necho hello\n' },
      'single.py': 'name = "single"\nversions = ["1.0", "2.0"]\n',
      'combined.yaml': 'name: combined\nversions: ["3.0"]\n',
      'README.md': 'not a family\n',
    });
    expect(await run()).toMatchObject({ refusals: [] });
    const catalog = await Catalog.open(store);
    expect(catalog.index.format).toBe(FORMAT_2);
    expect(Object.keys(catalog.index.files ?? {}).sort()).toEqual(['combined.yaml', 'single.py']);
    const shard = await catalog.shard('unversioned');
    expect(shard.format).toBe(FORMAT_2);
    expect(shard.versions).toEqual({});
    expect((await served('/single.py')).toString()).toMatch(/versions = \["1.0", "2.0"\]/);
    expect((await served('/unversioned/package.py')).toString()).toBe('name = "unversioned"\n');
    expect((await served('/unversioned/bin/hello')).toString()).toBe('#!/bin/sh\necho hello\n');
    expect((await verifyStore(store, undefined)).problems).toEqual([]);
    // A changed single-file family redefines every version in it: only deliberately.
    await writeFile(join(repo, 'single.py'), 'name = "single"\nversions = ["1.0", "2.0", "2.1"]\n');
    expect((await run()).refusals.map((r) => r.what)).toEqual(['single.py']);
    expect(await run(store, { allowRedefine: true })).toMatchObject({ refusals: [], generation: 2 });
  });

  it('refuses a version or family directory given as the repository, before writing anything', async () => {
    await expect(run(store, { repoDir: join(repo, 'multi/1.0.0') })).rejects.toThrow(/1\.0\.0: holds a package definition: it is a package, not a repository/);
    await expect(run(store, { repoDir: join(repo, 'multi') })).rejects.toThrow(PublishInputError);
    await expect(run(store, { repoDir: join(repo, 'multi') })).rejects.toThrow(/multi: is a package family directory \(1\.0\.0\/package\.py defines multi\)/);
    const keysWritten: string[] = [];
    for await (const { key } of store.list('')) keysWritten.push(key);
    expect(keysWritten).toEqual([]);
  });

  it('a dry run decides everything and writes nothing', async () => {
    await run();
    await writeTree(repo, { 'multi/1.0.0/package.py': multiVariant(['python-3.9', 'x']), 'multi/1.0.0/x/y': 'y', 'fresh/1.0/package.py': packageDefinition('fresh', '1.0') });
    const counting = new CountingStore(store);
    const summary = await run(counting, { dryRun: true });
    expect(counting.count('put')).toBe(0);
    expect(summary.planned.sort()).toEqual([
      expect.stringMatching(/^would publish fresh\/1\.0 \(new version\): 1 files/),
      expect.stringMatching(/^would publish multi\/1\.0\.0 \(new variant payload\): 2 files/),
    ]);
    expect(summary.generation).toBeUndefined();
    expect((await Catalog.open(store)).index.generation).toBe(1);
  });
});

describe('incremental publish', () => {
  it('remembers what it checked: an unchanged republish fetches no shard and no manifest', async () => {
    const stateDir = join(work.path, 'state');
    await run(store, { stateDir });
    const counting = new CountingStore(store);
    expect(await run(counting, { stateDir })).toMatchObject({ packages: 0, alreadyPublished: 2 });
    // rezfs.json, HEAD, the index and (is this store signed?) its signature: nothing per family or version.
    expect(counting.calls.filter((c) => c.op === 'get').map((c) => c.key.replace(/[0-9a-f]{64}/, 'H')).sort()).toEqual(['index/H.json', 'index/H.sig', 'index/HEAD', 'rezfs.json']);
    // Without that memory (another host), the manifests are compared instead: still no new generation.
    const fresh = new CountingStore(store);
    expect(await run(fresh)).toMatchObject({ packages: 0 });
    expect(fresh.count('get', 'manifests/')).toBe(2);
    // A changed version is noticed through the memory.
    await writeTree(repo, { 'other/2.0/extra.txt': 'x' });
    expect(await run(store, { stateDir })).toMatchObject({ changes: { grown: 1 } });
  });
});
