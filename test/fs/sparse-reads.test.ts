import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BlockSource, DiskBlockCache, MemoryBlockCache, ReadaheadWindow, readsChunks } from '../../src/cache/index.js';
import { ALIGN_MIN_BLOCKS, Catalog, ChunkLayout, DEFAULT_CHUNK_SIZE, HASH_BYTES, keys, verifyStore, type Manifest } from '../../src/catalog/index.js';
import { Errno, FsError, RezFs } from '../../src/fs/index.js';
import { silentLog, type Log } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore } from '../../src/store/index.js';
import { waitFor } from '../support/cli.js';
import { CountingStore } from '../support/counting-store.js';
import { tempDir, writeTree } from '../support/small-repo.js';

/**
 * Small random reads of big files, kernel-free: RezFs over a file:// store with 16 KiB blocks (4 chunks each),
 * counting what reaches the store. The same behaviour through a real mount and s3rver: test/e2e/sparse.test.ts.
 */
const BLOCK = 16 * 1024;
const CHUNK = DEFAULT_CHUNK_SIZE;
const BIG_PATH = '/big/1.0.0/lib/big.bin';
/** 21 blocks and a bit: the last block and its last chunk are short. */
const big = randomBytes((ALIGN_MIN_BLOCKS + 13) * BLOCK + 1234);

let work: Awaited<ReturnType<typeof tempDir>>;
let storeDir: string;
let store: CountingStore;
let manifest: Manifest;
const errors: string[] = [];
const log: Log = { ...silentLog, error: (m) => errors.push(m) };

function freshFs(cacheDir?: string) {
  const memory = new MemoryBlockCache(1 << 24);
  const disk = cacheDir ? new DiskBlockCache(cacheDir) : undefined;
  const blocks = new BlockSource(store, memory, disk, log);
  return (async () => ({ fs: new RezFs(await Catalog.open(store), blocks, { uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 4, log }), blocks, memory, disk }))();
}

/** One read on a fresh handle, so readahead state never links it to another read. */
async function readOnce(fs: RezFs, offset: number, length: number, path = BIG_PATH): Promise<Buffer> {
  const handle = await fs.open(path, 0);
  try {
    return await fs.read(handle, offset, length);
  } finally {
    fs.release(handle);
  }
}

/** Buffer equality without vitest's element-by-element diff, which takes seconds on a few hundred KiB. */
function expectBytes(actual: Buffer, expected: Buffer, what = ''): void {
  expect(actual.length, what).toBe(expected.length);
  expect(actual.equals(expected), what).toBe(true);
}

const chunksObjectFile = () => join(storeDir, keys.chunks(manifest.chunks!.object));
const packFile = () => join(storeDir, keys.pack(manifest.pack));

beforeAll(async () => {
  work = await tempDir('sparse');
  storeDir = join(work.path, 'store');
  const repo = join(work.path, 'repo');
  await writeTree(repo, {
    'big/1.0.0/package.py': 'name = "big"\nversion = "1.0.0"\n',
    'big/1.0.0/lib/big.bin': big,
    'big/1.0.0/lib/small.txt': 'small neighbour\n',
    'small/1.0.0/package.py': 'name = "small"\nversion = "1.0.0"\n',
    'small/1.0.0/data.bin': randomBytes((ALIGN_MIN_BLOCKS - 1) * BLOCK),
  });
  const raw = openStore(`file://${storeDir}`);
  await raw.put(keys.config, Buffer.from(JSON.stringify({ format: '1.0.0', blockSize: BLOCK })));
  await publish(raw, { repoDir: repo, selectors: [], log: silentLog });
  store = new CountingStore(raw);
  const catalog = await Catalog.open(raw);
  manifest = await catalog.manifest((await catalog.shard('big')).versions['1.0.0']!.manifest);
});

afterAll(async () => work?.remove());
beforeEach(() => {
  store.reset();
  errors.length = 0;
});

describe('sparse reads', () => {
  it('return exact bytes at any offset and length, past the end included', async () => {
    const { fs } = await freshFs();
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: big.length + 2 * CHUNK }), fc.integer({ min: 0, max: 3 * CHUNK }), async (offset, length) => {
        expectBytes(await readOnce(fs, offset, length), big.subarray(offset, offset + length));
      }),
      { numRuns: 300 },
    );
    // The edges spelled out: chunk and block boundaries, the short last chunk and block, the end of the file.
    const cases: [number, number][] = [
      [CHUNK - 1, 2],
      [BLOCK - 1, 2],
      [BLOCK - 10, CHUNK + 20],
      [3 * BLOCK + CHUNK, CHUNK],
      [big.length - 1234, 1234],
      [big.length - 10, 100],
      [big.length - 1, 1],
      [big.length, 10],
      [big.length + 5000, 10],
    ];
    for (const [offset, length] of cases) expectBytes(await readOnce(fs, offset, length), big.subarray(offset, offset + length), `${offset}+${length}`);
    expect(errors).toEqual([]);
  });

  it('fetch each page read, one chunk list per block touched and the chunk index once: about their own size', async () => {
    const { fs, blocks } = await freshFs();
    const layout = new ChunkLayout(manifest.packSize, BLOCK, CHUNK);
    // Pages two chunks apart, so that no read is adjacent to another and none is a whole block.
    const pages = [1, 3, 7, 9, 13, 30, 45, 47, 60, 81].map((page) => page * 2 * CHUNK).filter((offset) => offset < big.length);
    for (const offset of pages) expectBytes(await readOnce(fs, offset, CHUNK), big.subarray(offset, offset + CHUNK));
    const blocksTouched = new Set(pages.map((offset) => Math.floor(offset / BLOCK)));
    const listBytes = [...blocksTouched].reduce((n, block) => n + layout.listSpan(block).end - layout.listSpan(block).start, 0);
    expect(blocks.stats.storeGets).toBe(pages.length + blocksTouched.size + 1);
    expect(blocks.stats.storeBytes).toBe(pages.length * CHUNK + listBytes + layout.blocks * HASH_BYTES);
    expect(store.count('getRange', 'packs/')).toBe(pages.length);
    expect(store.count('getRange', 'chunks/')).toBe(blocksTouched.size + 1);
  });

  it('fetch the chunks a read spans in one ranged GET, and a chunk twice asked for once', async () => {
    const { fs, blocks } = await freshFs();
    const offset = 2 * BLOCK + CHUNK - 100; // chunks 1 and 2 of block 2
    expectBytes(await readOnce(fs, offset, 200), big.subarray(offset, offset + 200));
    expect(store.count('getRange', 'packs/')).toBe(1);
    expect(blocks.stats.storeBytes).toBeLessThan(2 * CHUNK + BLOCK); // two chunks, a list and the index: no block
    store.reset();
    const other = 5 * BLOCK + 10;
    const both = await Promise.all([readOnce(fs, other, 10), readOnce(fs, other + 100, 10)]);
    expect(both).toEqual([big.subarray(other, other + 10), big.subarray(other + 100, other + 110)]);
    expect(store.count('getRange', 'packs/')).toBe(1);
    expect(store.count('getRange', 'chunks/')).toBe(1); // block 5's list; the index is in memory
    store.reset();
    expectBytes(await readOnce(fs, offset, 200), big.subarray(offset, offset + 200));
    expect(store.calls).toEqual([]);
  });

  it('keep chunks, lists and the index on disk, so another mount on the cache reads them without a GET', async () => {
    const cacheDir = join(work.path, 'cache-remount');
    const first = await freshFs(cacheDir);
    const offsets = [BLOCK + 5, 4 * BLOCK + 3 * CHUNK, 11 * BLOCK];
    for (const offset of offsets) await readOnce(first.fs, offset, 100);
    // Chunks and lists go to disk in the background: 3 chunks, 3 lists, 1 index.
    expect(await waitFor(async () => (await first.disk!.stats()).blocks === 7, 5_000)).toBe(true);
    store.reset();
    const second = await freshFs(cacheDir);
    for (const offset of offsets) expectBytes(await readOnce(second.fs, offset, 100), big.subarray(offset, offset + 100));
    expect(store.count('getRange')).toBe(0);
    expect(second.blocks.stats.diskHits).toBe(7);
  });

  it('never let a chunk stand for its block: a sequential reader afterwards gets whole blocks, exact', async () => {
    const { fs, memory, blocks } = await freshFs(join(work.path, 'cache-sequential'));
    await readOnce(fs, 3 * BLOCK + 7, 10);
    expect(await memory.get(manifest.blocks[3]!)).toBeUndefined();
    store.reset();
    blocks.stats.storeBytes = 0;
    const handle = await fs.open(BIG_PATH, 0);
    const parts: Buffer[] = [];
    for (let offset = 0; offset < big.length; offset += CHUNK) parts.push(await fs.read(handle, offset, CHUNK));
    fs.release(handle);
    expectBytes(Buffer.concat(parts), big);
    expect(store.count('getRange', 'chunks/')).toBe(0);
    // Whole blocks (alone or in readahead runs): no more GETs than blocks, each block's bytes once.
    expect(store.count('getRange', 'packs/')).toBeLessThanOrEqual(manifest.blocks.length);
    expect(blocks.stats.storeBytes).toBeGreaterThanOrEqual(big.length);
    expect(blocks.stats.storeBytes).toBeLessThanOrEqual(manifest.packSize);
    expect(await memory.get(manifest.blocks[3]!)).toBeDefined();
    expect(blocks.stats.chunkReads).toBe(1);
  });

  it('keep two readers of one handle sequential, their reads interleaved: whole blocks after their first, exact', async () => {
    const { fs, blocks } = await freshFs();
    const handle = await fs.open(BIG_PATH, 0);
    // Two threads scanning different parts of the file through one descriptor, one page at a time, by turns.
    const starts = [2 * BLOCK + CHUNK, 12 * BLOCK + CHUNK];
    const pages = (6 * BLOCK) / CHUNK;
    for (let page = 0; page < pages; page++) {
      for (const start of starts) {
        const offset = start + page * CHUNK;
        expectBytes(await fs.read(handle, offset, CHUNK), big.subarray(offset, offset + CHUNK), `${offset}`);
      }
    }
    fs.release(handle);
    // Each reader's first page is a short run like any random read (its chunks); from its second on it is
    // sequential: whole blocks, at most one GET per block touched (6 blocks and a bit each, readahead included).
    expect(blocks.stats.chunkReads).toBe(starts.length);
    expect(store.count('getRange', 'packs/')).toBeLessThanOrEqual(starts.length * (1 + 7));
  });

  it('serve a random read from its block when the block is already here', async () => {
    const { fs, blocks } = await freshFs();
    await readOnce(fs, 0, BLOCK); // from the start of the file: sequential, a whole block
    store.reset();
    expectBytes(await readOnce(fs, 2 * CHUNK + 1, 50), big.subarray(2 * CHUNK + 1, 2 * CHUNK + 51));
    expect(store.calls).toEqual([]);
    expect(blocks.stats.chunkReads).toBe(0);
  });

  it('leave packs without chunk hashes (small files only, or an older store) to whole blocks', async () => {
    const { fs } = await freshFs();
    expect(await readOnce(fs, 3 * BLOCK + 5, 10, '/small/1.0.0/data.bin')).toHaveLength(10);
    expect(store.count('getRange', 'chunks/')).toBe(0);
    expect(store.count('getRange', 'packs/')).toBe(1);
  });

  it('fall back to whole blocks, exact, when the chunk object is damaged or gone, with one log line', async () => {
    const original = await readFile(chunksObjectFile());
    try {
      for (const damage of [() => writeFile(chunksObjectFile(), randomBytes(original.length)), () => rm(chunksObjectFile())]) {
        await damage();
        errors.length = 0;
        const { fs } = await freshFs();
        for (const offset of [BLOCK + 100, 6 * BLOCK + 2 * CHUNK, 9 * BLOCK]) {
          expectBytes(await readOnce(fs, offset, 64), big.subarray(offset, offset + 64));
        }
        expect(errors.filter((e) => /read in whole blocks from now on/.test(e))).toHaveLength(1);
      }
    } finally {
      await writeFile(chunksObjectFile(), original);
    }
  });

  it('fail with EIO, in time, when the store stalls on the chunks', async () => {
    // A stalled backend, simulated: a real server cannot be made to hang on demand here.
    const stalled = new (class extends CountingStore {
      override getRange(key: string, start: number, end: number): Promise<Buffer> {
        return key.startsWith('packs/') ? new Promise<Buffer>(() => {}) : super.getRange(key, start, end);
      }
    })(openStore(`file://${storeDir}`));
    const fs = new RezFs(await Catalog.open(stalled), new BlockSource(stalled, new MemoryBlockCache(1 << 20), undefined, log), { uid: 0, gid: 0, readDeadlineMs: 200, readaheadBlocks: 4, log });
    const started = Date.now();
    const failure = await readOnce(fs, 9 * BLOCK + 5, 10).catch((err: unknown) => err);
    expect((failure as FsError).errno).toBe(Errno.EIO);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('fail with EIO on a chunk that does not match its hash, and cache nothing of it', async () => {
    const original = await readFile(packFile());
    const lib = manifest.root.entries.lib;
    const node = lib?.type === 'dir' ? lib.entries['big.bin'] : undefined;
    if (node?.type !== 'file') throw new Error('big.bin is not in the manifest');
    const offset = node.offset;
    const damaged = Buffer.from(original);
    const at = offset + 7 * BLOCK + CHUNK + 17;
    damaged[at] = damaged[at]! ^ 0xff;
    const cacheDir = join(work.path, 'cache-damaged');
    try {
      await writeFile(packFile(), damaged);
      const { fs } = await freshFs(cacheDir);
      const failure = await readOnce(fs, 7 * BLOCK + CHUNK, 100).catch((err: unknown) => err);
      expect(failure).toBeInstanceOf(FsError);
      expect((failure as FsError).errno).toBe(Errno.EIO);
      expect(errors.some((e) => /chunk \d+ of packs\/.* failed verification/.test(e))).toBe(true);
    } finally {
      await writeFile(packFile(), original);
    }
    // With the store repaired, the same cache serves the right bytes: nothing wrong was kept.
    const { fs } = await freshFs(cacheDir);
    expectBytes(await readOnce(fs, 7 * BLOCK + CHUNK, 100), big.subarray(7 * BLOCK + CHUNK, 7 * BLOCK + CHUNK + 100));
  });
});

describe('rezfs verify', () => {
  it('checks every chunk, and names a damaged chunk object or chunk', async () => {
    const raw = openStore(`file://${storeDir}`);
    const layout = new ChunkLayout(manifest.packSize, BLOCK, CHUNK);
    const good = await verifyStore(raw, undefined);
    expect(good.problems).toEqual([]);
    expect(good.chunks).toBe(layout.chunks);

    const object = await readFile(chunksObjectFile());
    const pack = await readFile(packFile());
    try {
      const damagedObject = Buffer.from(object);
      damagedObject[HASH_BYTES * 5]! ^= 1;
      await writeFile(chunksObjectFile(), damagedObject);
      expect((await verifyStore(raw, undefined)).problems).toEqual([`big/1.0.0: chunk object ${keys.chunks(manifest.chunks!.object)} fails its sha256 (or its index does)`]);
      await writeFile(chunksObjectFile(), object);

      const damagedPack = Buffer.from(pack);
      damagedPack[2 * BLOCK + CHUNK + 1]! ^= 1;
      await writeFile(packFile(), damagedPack);
      expect((await verifyStore(raw, undefined)).problems).toEqual([
        `big/1.0.0: block 2 of ${keys.pack(manifest.pack)} fails its sha256`,
        `big/1.0.0: chunk ${2 * (BLOCK / CHUNK) + 1} of ${keys.pack(manifest.pack)} fails its sha256`,
      ]);
    } finally {
      await writeFile(chunksObjectFile(), object);
      await writeFile(packFile(), pack);
    }
  });
});

describe('readsChunks', () => {
  const MiB = 1 << 20;
  const bigFile = ALIGN_MIN_BLOCKS * MiB;
  const run = (start: number, end: number) => ({ start, end });
  it('takes short runs of reads of big files that did not begin at the start', () => {
    expect(readsChunks({ run: run(5 * MiB, 5 * MiB + 4096), fileSize: bigFile, blockSize: MiB })).toBe(true);
    expect(readsChunks({ run: run(5 * MiB, 5 * MiB + MiB / 4), fileSize: bigFile, blockSize: MiB })).toBe(true);
    expect(readsChunks({ run: run(5 * MiB, 5 * MiB + MiB / 4 + 1), fileSize: bigFile, blockSize: MiB })).toBe(false); // a sequential reader by now
    expect(readsChunks({ run: run(0, 4096), fileSize: bigFile, blockSize: MiB })).toBe(false); // began at the start
    expect(readsChunks({ run: run(5 * MiB, 5 * MiB + 4096), fileSize: bigFile - 1, blockSize: MiB })).toBe(false); // shares blocks
  });

  it('sees a random read the kernel split in two as one short run, and a reader past a cached hole as one long run', () => {
    const w = new ReadaheadWindow(1, 8, MiB);
    w.onRead(7 * MiB + 4096, 16384);
    w.onRead(7 * MiB + 4096 + 16384, 4096);
    expect(w.run).toEqual(run(7 * MiB + 4096, 7 * MiB + 4096 + 20480));
    for (let offset = 7 * MiB + 4096 + 20480; offset < 8 * MiB; offset += 131072) w.onRead(offset + 8192, 131072 - 8192); // holes the page cache held
    expect(w.run.start).toBe(7 * MiB + 4096);
    expect(w.run.end - w.run.start).toBeGreaterThan(MiB / 4);
  });
});
