import { createHash, randomBytes } from 'node:crypto';
import { cp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BlockSource, ByteBudget, DiskBlockCache, MemoryBlockCache } from '../../src/cache/index.js';
import { Catalog, keys } from '../../src/catalog/index.js';
import { Errno, FsError, RezFs } from '../../src/fs/index.js';
import { silentLog, type Log } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { MirroredStore, openStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const BLOCK = 4096;
const big = randomBytes(3 * BLOCK + 123);
const O_RDONLY = 0;
const O_WRONLY = 1;

let work: Awaited<ReturnType<typeof tempDir>>;
let storeDir: string;
let store: CountingStore;
const errors: string[] = [];
const log: Log = { ...silentLog, error: (m) => errors.push(m) };

async function freshFs(options: { disk?: boolean } = {}): Promise<{ fs: RezFs; blocks: BlockSource; cacheDir: string }> {
  const cacheDir = join(work.path, `cache-${randomBytes(4).toString('hex')}`);
  const catalog = await Catalog.open(store);
  const blocks = new BlockSource(store, new MemoryBlockCache(1 << 20), options.disk === false ? undefined : new DiskBlockCache(cacheDir), log);
  return { fs: new RezFs(catalog, blocks, { uid: 1234, gid: 5678, readDeadlineMs: 5_000, readaheadBlocks: 4, log }), blocks, cacheDir };
}

async function errno(work: Promise<unknown>): Promise<number> {
  try {
    await work;
  } catch (err) {
    expect(err).toBeInstanceOf(FsError);
    return (err as FsError).errno;
  }
  throw new Error('expected an FsError');
}

async function readAll(fs: RezFs, path: string, chunk = 1000): Promise<Buffer> {
  const handle = await fs.open(path, O_RDONLY);
  const parts: Buffer[] = [];
  for (let offset = 0; ; offset += chunk) {
    const data = await fs.read(handle, offset, chunk);
    if (data.length === 0) break;
    parts.push(data);
  }
  fs.release(handle);
  return Buffer.concat(parts);
}

beforeAll(async () => {
  work = await tempDir('rezfs-unit');
  storeDir = join(work.path, 'store');
  const repo = join(work.path, 'repo');
  await writeTree(repo, {
    'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0'),
    'foo/1.0.0/bin/foo': { mode: 0o755, data: '#!/bin/sh\necho foo\n' },
    'foo/1.0.0/lib/libfoo.so.1.2.3': big,
    'foo/1.0.0/lib/libfoo.so.1': { link: 'libfoo.so.1.2.3' },
    'foo/1.0.0/lib/libfoo.so': { link: 'libfoo.so.1' },
    'foo/1.0.0/share/empty': { dir: true },
    'foo/1.0.0/share/zero': '',
    'foo/1.0.0/données été.txt': 'accents\n',
    'foo/2.0.0/package.yaml': 'name: foo\nversion: 2.0.0\n',
    'foo/.ignore1.0.0': '',
    'bar/1.0/package.py': packageDefinition('bar', '1.0', 'requires = ["foo"]\n'),
    'bar/1.0/_v/a': { link: '../0123abcd' },
    'bar/1.0/0123abcd/data.txt': 'variant\n',
  });
  const raw = openStore(`file://${storeDir}`);
  await raw.put(keys.config, Buffer.from(JSON.stringify({ format: '1.0.0', blockSize: BLOCK })));
  await publish(raw, { repoDir: repo, selectors: [], log: silentLog });
  store = new CountingStore(raw);
});

afterAll(async () => work?.remove());
beforeEach(() => {
  store.reset();
  errors.length = 0;
});

describe('RezFs metadata', () => {
  it('lists families, versions, extras and a version tree', async () => {
    const { fs } = await freshFs();
    const names = async (p: string) => (await fs.readdir(p)).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort();
    expect((await fs.readdir('/foo/1.0.0')).slice(0, 2).map((e) => [e.name, e.attr.ino])).toEqual([
      ['.', (await fs.getattr('/foo/1.0.0')).ino],
      ['..', (await fs.getattr('/foo')).ino],
    ]);
    expect(await names('/')).toEqual(['bar', 'foo']);
    expect(await names('/foo')).toEqual(['.ignore1.0.0', '1.0.0', '2.0.0']);
    expect(await names('/foo/1.0.0')).toEqual(['bin', 'données été.txt', 'lib', 'package.py', 'share']);
    expect(await names('/foo/1.0.0/share')).toEqual(['empty', 'zero']);
    expect(await names('/foo/1.0.0/share/empty')).toEqual([]);
  });

  it('gives exact sizes, modes, owners and mtimes', async () => {
    const { fs } = await freshFs();
    const py = await fs.getattr('/foo/1.0.0/package.py');
    expect(py.size).toBe(Buffer.byteLength(packageDefinition('foo', '1.0.0')));
    expect(py.mode).toBe(0o100644);
    expect([py.uid, py.gid]).toEqual([1234, 5678]);
    expect(py.mtimeMs).toBe(1_700_000_000_000);
    expect((await fs.getattr('/foo/1.0.0/bin/foo')).mode).toBe(0o100755);
    expect((await fs.getattr('/foo/1.0.0/lib/libfoo.so.1.2.3')).size).toBe(big.length);
    const link = await fs.getattr('/foo/1.0.0/lib/libfoo.so');
    expect(link.mode & 0o170000).toBe(0o120000);
    expect(link.size).toBe('libfoo.so.1'.length);
    const dir = await fs.getattr('/foo/1.0.0');
    expect(dir.mode & 0o170000).toBe(0o040000);
    expect(dir.nlink).toBe(2 + 3);
    expect((await fs.getattr('/foo')).nlink).toBe(2 + 2);
  });

  it('keeps inode numbers stable across instances and unique across paths', async () => {
    const a = (await freshFs()).fs;
    const b = (await freshFs()).fs;
    const paths = ['/', '/foo', '/foo/1.0.0', '/foo/1.0.0/package.py', '/foo/1.0.0/lib/libfoo.so', '/bar/1.0/_v/a'];
    const inosA = await Promise.all(paths.map(async (p) => (await a.getattr(p)).ino));
    const inosB = await Promise.all([...paths].reverse().map(async (p) => (await b.getattr(p)).ino));
    expect(inosB.reverse()).toEqual(inosA);
    expect(new Set(inosA).size).toBe(paths.length);
    expect(inosA[0]).toBe(1);
  });

  it('reads symlinks as stored, relative hashed-variant links included', async () => {
    const { fs } = await freshFs();
    expect(await fs.readlink('/foo/1.0.0/lib/libfoo.so')).toBe('libfoo.so.1');
    expect(await fs.readlink('/bar/1.0/_v/a')).toBe('../0123abcd');
    expect(await errno(fs.readlink('/foo/1.0.0/package.py'))).toBe(Errno.EINVAL);
  });

  it('answers ENOENT for what rez probes and does not exist', async () => {
    const { fs } = await freshFs();
    for (const path of ['/settings.yaml', '/foo/package.py', '/foo/.ignore2.0.0', '/foo/1.0.0/package.yaml', '/foo/9.9', '/nope/1.0', '/foo/1.0.0/lib/nope']) {
      expect(await errno(fs.getattr(path)), path).toBe(Errno.ENOENT);
    }
    expect(await errno(fs.getattr('/foo/1.0.0/package.py/x'))).toBe(Errno.ENOTDIR);
  });

  it('serves package.py, lists the root and a family, and answers rez\'s probes without any manifest or payload request', async () => {
    const { fs } = await freshFs();
    await fs.readdir('/');
    await fs.readdir('/foo');
    const py = await readAll(fs, '/foo/1.0.0/package.py');
    expect(py.toString()).toBe(packageDefinition('foo', '1.0.0'));
    expect((await readAll(fs, '/foo/2.0.0/package.yaml')).toString()).toContain('version: 2.0.0');
    // rez probes every version it loads for these: answered from the shard, no manifest fetched.
    for (const probe of ['/foo/1.0.0/release.yaml', '/foo/1.0.0/.metadata', '/foo/2.0.0/package.py']) {
      expect(await errno(fs.getattr(probe)), probe).toBe(Errno.ENOENT);
    }
    expect(store.calls.filter((c) => !c.key.startsWith('families/') && !c.key.startsWith('index/') && c.key !== 'rezfs.json')).toEqual([]);
  });
});

describe('RezFs data', () => {
  it('reads files exactly, at any offset and length, across blocks and past the end', async () => {
    const { fs } = await freshFs();
    const handle = await fs.open('/foo/1.0.0/lib/libfoo.so.1.2.3', O_RDONLY);
    const cases: [number, number][] = [[0, 1], [0, big.length], [BLOCK - 1, 2], [BLOCK - 10, 2 * BLOCK + 20], [big.length - 5, 100], [big.length, 10], [big.length + 1000, 10], [123, 0]];
    for (let i = 0; i < 200; i++) cases.push([Math.floor(Math.random() * big.length), Math.floor(Math.random() * 3 * BLOCK)]);
    for (const [offset, length] of cases) {
      const got = await fs.read(handle, offset, length);
      expect(got.equals(big.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
    }
    fs.release(handle);
    expect((await readAll(fs, '/foo/1.0.0/données été.txt')).toString()).toBe('accents\n');
    expect((await readAll(fs, '/foo/1.0.0/share/zero')).length).toBe(0);
  });

  it('reads by path without an open (the native binding\'s no-open reads) exactly as through a handle', async () => {
    const { fs } = await freshFs();
    const path = '/foo/1.0.0/lib/libfoo.so.1.2.3';
    for (const [offset, length] of [[0, 1], [BLOCK - 1, 2], [BLOCK - 10, 2 * BLOCK + 20], [big.length - 5, 100], [big.length, 10]] as const) {
      expect((await fs.readAt(path, offset, length)).equals(big.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
    }
    expect((await fs.readAt('/foo/1.0.0/package.py', 0, 1 << 20)).toString()).toBe(packageDefinition('foo', '1.0.0'));
    expect(await errno(fs.readAt('/foo/1.0.0/lib', 0, 10))).toBe(Errno.EISDIR);
    expect(await errno(fs.readAt('/foo/1.0.0/nope', 0, 10))).toBe(Errno.ENOENT);
  });

  it('fetches each block once, then serves it from memory and from disk', async () => {
    const { fs, blocks, cacheDir } = await freshFs();
    await readAll(fs, '/foo/1.0.0/lib/libfoo.so.1.2.3', 4096);
    const gets = store.count('getRange', 'packs/');
    expect(gets).toBeGreaterThanOrEqual(4);
    expect(gets).toBeLessThanOrEqual(5); // 4 blocks of the big file (+ the block holding neighbours)
    await readAll(fs, '/foo/1.0.0/lib/libfoo.so.1.2.3', 4096);
    expect(store.count('getRange', 'packs/')).toBe(gets);
    expect(blocks.stats.memoryHits).toBeGreaterThan(0);

    const catalog = await Catalog.open(store);
    const coldMemory = new BlockSource(store, new MemoryBlockCache(1 << 20), new DiskBlockCache(cacheDir), log);
    const again = new RezFs(catalog, coldMemory, { uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 4, log });
    expect((await readAll(again, '/foo/1.0.0/lib/libfoo.so.1.2.3')).equals(big)).toBe(true);
    expect(store.count('getRange', 'packs/')).toBe(gets);
    expect(coldMemory.stats.diskHits).toBeGreaterThan(0);
  });

  it('never serves or caches a block that fails verification', async () => {
    const { fs, cacheDir } = await freshFs();
    const packs = await readdir(join(storeDir, 'packs'));
    const originals = new Map<string, Buffer>();
    for (const p of packs) {
      const path = join(storeDir, 'packs', p);
      const bytes = await readFile(path);
      originals.set(path, bytes);
      const flipped = Buffer.from(bytes);
      for (let i = 0; i < flipped.length; i += 512) flipped[i]! ^= 0xff;
      await writeFile(path, flipped);
    }
    try {
      const handle = await fs.open('/foo/1.0.0/lib/libfoo.so.1.2.3', O_RDONLY);
      expect(await errno(fs.read(handle, 0, 100))).toBe(Errno.EIO);
      expect(errors.some((e) => e.includes('failed verification') && e.includes('packs/'))).toBe(true);
      const cached = await readdir(join(cacheDir, 'blocks')).catch(() => []);
      expect(cached).toEqual([]);
    } finally {
      for (const [path, bytes] of originals) await writeFile(path, bytes);
    }
  });

  it('takes a block from the next mirror when the first one serves bytes that fail verification', async () => {
    const damagedDir = join(work.path, `damaged-${randomBytes(3).toString('hex')}`);
    await cp(storeDir, damagedDir, { recursive: true });
    for (const p of await readdir(join(damagedDir, 'packs'))) {
      const bytes = await readFile(join(damagedDir, 'packs', p));
      for (let i = 0; i < bytes.length; i += 1000) bytes[i]! ^= 0x55;
      await writeFile(join(damagedDir, 'packs', p), bytes);
    }
    const mirrored = new MirroredStore([openStore(`file://${damagedDir}`), store]);
    const catalog = await Catalog.open(mirrored);
    const fs = new RezFs(catalog, new BlockSource(mirrored, new MemoryBlockCache(1 << 20), undefined, log), { uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 4, log });
    expect((await readAll(fs, '/foo/1.0.0/lib/libfoo.so.1.2.3')).equals(big)).toBe(true);
    expect(errors.some((e) => e.includes('failed verification') && e.includes(`from file://${damagedDir}`))).toBe(true);
    await mirrored.close();
  });

  it('replaces a corrupted disk-cache block with a fresh one from the store', async () => {
    const first = await freshFs();
    const { cacheDir } = first;
    await readAll(first.fs, '/foo/1.0.0/lib/libfoo.so.1.2.3');
    await first.blocks.flushed();
    const sub = (await readdir(join(cacheDir, 'blocks')))[0]!;
    const file = join(cacheDir, 'blocks', sub, (await readdir(join(cacheDir, 'blocks', sub)))[0]!);
    await writeFile(file, Buffer.from('rotten'));
    const catalog = await Catalog.open(store);
    const blocks = new BlockSource(store, new MemoryBlockCache(1 << 20), new DiskBlockCache(cacheDir), log);
    const fresh = new RezFs(catalog, blocks, { uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 4, log });
    expect((await readAll(fresh, '/foo/1.0.0/lib/libfoo.so.1.2.3')).equals(big)).toBe(true);
    await blocks.flushed(); // readahead's disk copies are written behind the reads
    const repaired = await readFile(file);
    expect(createHash('sha256').update(repaired).digest('hex')).toBe(file.split('/').pop());
  });

  it('fetches ahead of a sequential reader, not of a random one', async () => {
    const { fs } = await freshFs({ disk: false });
    const handle = await fs.open('/foo/1.0.0/lib/libfoo.so.1.2.3', O_RDONLY);
    await fs.read(handle, 100, 10); // random: only its own block
    await new Promise((r) => setTimeout(r, 50));
    expect(store.count('getRange', 'packs/')).toBe(1);
    await fs.read(handle, 110, 10); // sequential: the next block is fetched before it is asked for
    await new Promise((r) => setTimeout(r, 50));
    expect(store.count('getRange', 'packs/')).toBe(2);
    fs.release(handle);
  });

  it('keeps the bytes being fetched within the budget, whatever the readers ask', async () => {
    let inFlight = 0;
    let peak = 0;
    // Slow responses, simulated, so that readers pile up behind the budget.
    const slow = new (class extends CountingStore {
      override async getRange(key: string, start: number, end: number): Promise<Buffer> {
        peak = Math.max(peak, ++inFlight);
        await new Promise((r) => setTimeout(r, 20));
        inFlight--;
        return super.getRange(key, start, end);
      }
    })(store);
    const catalog = await Catalog.open(store);
    const blocks = new BlockSource(slow, new MemoryBlockCache(1 << 20), undefined, log, { budget: new ByteBudget(2 * BLOCK) });
    const fs = new RezFs(catalog, blocks, { uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 8, log });
    const handle = await fs.open('/foo/1.0.0/lib/libfoo.so.1.2.3', O_RDONLY);
    const reads = [0, 1, 2, 3].map((i) => fs.read(handle, i * BLOCK, BLOCK));
    const parts = await Promise.all(reads);
    expect(Buffer.concat(parts).equals(big.subarray(0, 4 * BLOCK))).toBe(true);
    expect(peak).toBeLessThanOrEqual(2);
    fs.release(handle);
  });

  it('turns a read that outlives its deadline into EIO', async () => {
    // A stalled backend, simulated: a real server cannot be made to hang on demand here.
    const stalled = new (class extends CountingStore {
      override getRange(): Promise<Buffer> {
        return new Promise<Buffer>(() => {});
      }
    })(store);
    const catalog = await Catalog.open(store);
    const fs = new RezFs(catalog, new BlockSource(stalled, new MemoryBlockCache(1 << 20), undefined, log), { uid: 0, gid: 0, readDeadlineMs: 200, readaheadBlocks: 4, log });
    const handle = await fs.open('/foo/1.0.0/bin/foo', O_RDONLY);
    const started = Date.now();
    expect(await errno(fs.read(handle, 0, 10))).toBe(Errno.EIO);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('RezFs refusals', () => {
  it('refuses writes, answers ENODATA for xattrs and an empty xattr list', async () => {
    const { fs } = await freshFs();
    expect(await errno(fs.open('/foo/1.0.0/package.py', O_WRONLY))).toBe(Errno.EROFS);
    expect(await errno(fs.open('/foo/1.0.0/package.py', 2))).toBe(Errno.EROFS);
    expect(await errno(fs.access('/foo/1.0.0/package.py', 2))).toBe(Errno.EROFS);
    await expect(fs.access('/foo/1.0.0/bin/foo', 1)).resolves.toBeUndefined();
    expect(await errno(fs.getxattr('/foo/1.0.0/package.py'))).toBe(Errno.ENODATA);
    expect(await fs.listxattr('/foo/1.0.0/package.py')).toEqual([]);
    expect(await errno(fs.open('/foo/1.0.0', O_RDONLY))).toBe(Errno.EISDIR);
    expect(await errno(fs.read(9999, 0, 1))).toBe(Errno.EBADF);
  });

  it('a family whose shard cannot be loaded is EIO, never empty or missing, and loads again once it can', async () => {
    const catalog = await Catalog.open(store);
    const shard = catalog.family('bar')!.shard;
    const path = join(storeDir, keys.shard(shard));
    const saved = await readFile(path);
    await rm(path);
    const { fs } = await freshFs();
    try {
      for (const probe of ['/bar/1.0', '/bar/1.0/package.py', '/bar/2.0', '/bar/1.0/_v/a']) expect(await errno(fs.getattr(probe)), probe).toBe(Errno.EIO);
      expect(await errno(fs.readdir('/bar'))).toBe(Errno.EIO);
      // What the index alone answers stays right: the family exists, an unknown family does not.
      expect((await fs.getattr('/bar')).mode & 0o170000).toBe(0o040000);
      expect(await errno(fs.getattr('/nope/1.0'))).toBe(Errno.ENOENT);
      expect(errors.some((e) => e.includes(`family bar: its shard ${keys.shard(shard)} could not be loaded`))).toBe(true);
    } finally {
      await writeFile(path, saved);
    }
    expect((await fs.readdir('/bar')).map((e) => e.name)).toContain('1.0');
  });

  it('a version whose manifest cannot be loaded is EIO below it; what the shard answers still works', async () => {
    // A version with enough files that its manifest is its own object (small ones travel inside the shard).
    const repo = join(work.path, 'wide-repo');
    const files = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`wide/1.0.0/lib/module_${i}.py`, `# ${i}\n`]));
    await writeTree(repo, { 'wide/1.0.0/package.py': packageDefinition('wide', '1.0.0'), 'wide/1.0.0/bin/wide': { mode: 0o755, data: '#!/bin/sh\n' }, ...files });
    const wideDir = join(work.path, 'wide-store');
    const wideStore = openStore(`file://${wideDir}`);
    await publish(wideStore, { repoDir: repo, selectors: [], log: silentLog });
    const catalog = await Catalog.open(wideStore);
    const record = (await catalog.shard('wide')).versions['1.0.0']!;
    expect(record.inlineManifest, 'the manifest must be an object of its own for this test').toBeUndefined();
    const path = join(wideDir, keys.manifest(record.manifest));
    const saved = await readFile(path);
    await writeFile(path, '{"format": "1.0.0"}'); // the wrong bytes: fails its hash
    const fs = new RezFs(await Catalog.open(wideStore), new BlockSource(wideStore, new MemoryBlockCache(1 << 20), undefined, log), { uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 4, log });
    try {
      for (const probe of ['/wide/1.0.0/bin/wide', '/wide/1.0.0/lib', '/wide/1.0.0/lib/module_7.py']) expect(await errno(fs.getattr(probe)), probe).toBe(Errno.EIO);
      expect(await errno(fs.readdir('/wide/1.0.0'))).toBe(Errno.EIO);
      expect(await errno(fs.open('/wide/1.0.0/bin/wide', O_RDONLY))).toBe(Errno.EIO);
      // package.py and rez's probes come from the shard: a resolve does not need the manifest.
      expect((await readAll(fs, '/wide/1.0.0/package.py')).toString()).toBe(packageDefinition('wide', '1.0.0'));
      expect(await errno(fs.getattr('/wide/1.0.0/release.yaml'))).toBe(Errno.ENOENT);
      expect(await errno(fs.getattr('/wide/1.0.0/nope/x'))).toBe(Errno.ENOENT); // not among the shard's names of the version
    } finally {
      await writeFile(path, saved);
    }
    expect((await fs.getattr('/wide/1.0.0/bin/wide')).mode).toBe(0o100755);
  });

  it('one deadline per operation: a hung shard and manifest give EIO within the read deadline, not one deadline each', async () => {
    // A backend that never answers catalog reads, simulated: a real store cannot be made to hang on demand here.
    const hung = new (class extends CountingStore {
      override get(key: string): Promise<Buffer> {
        return key.startsWith('families/') || key.startsWith('manifests/') ? new Promise<Buffer>(() => {}) : super.get(key);
      }
    })(store);
    const catalog = await Catalog.open(hung);
    const fs = new RezFs(catalog, new BlockSource(hung, new MemoryBlockCache(1 << 20), undefined, log), { uid: 0, gid: 0, readDeadlineMs: 300, readaheadBlocks: 4, log });
    const started = Date.now();
    expect(await errno(fs.readdir('/foo/1.0.0/lib'))).toBe(Errno.EIO);
    expect(await errno(fs.readdir('/foo'))).toBe(Errno.EIO);
    expect(Date.now() - started).toBeLessThan(2 * 300 + 250);
  });
});
