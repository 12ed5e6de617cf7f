import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskBlockCache, MemoryBlockCache, type BlockCache } from '../../src/cache/index.js';
import { hungFile } from '../support/hung-file.js';

const dirs: string[] = [];
afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rezfs-cache-'));
  dirs.push(dir);
  return dir;
}

const implementations: [string, () => Promise<BlockCache>][] = [
  ['memory', async () => new MemoryBlockCache(64 * 1024 * 1024)],
  ['disk', async () => new DiskBlockCache(await tempDir())],
];

for (const [name, make] of implementations) {
  describe(`BlockCache contract: ${name}`, () => {
    it('returns what was put and nothing for unknown keys', async () => {
      const cache = await make();
      const block = randomBytes(4096);
      expect(await cache.get('a'.repeat(64))).toBeUndefined();
      await cache.put('a'.repeat(64), block);
      expect(await cache.get('a'.repeat(64))).toEqual(block);
    });

    it('deletes, and tolerates deleting what is absent', async () => {
      const cache = await make();
      await cache.put('b'.repeat(64), Buffer.from('x'));
      await cache.delete('b'.repeat(64));
      await cache.delete('c'.repeat(64));
      expect(await cache.get('b'.repeat(64))).toBeUndefined();
    });

    it('keeps empty blocks and overwrites in place', async () => {
      const cache = await make();
      await cache.put('d'.repeat(64), Buffer.alloc(0));
      expect(await cache.get('d'.repeat(64))).toEqual(Buffer.alloc(0));
      await cache.put('d'.repeat(64), Buffer.from('again'));
      expect((await cache.get('d'.repeat(64)))?.toString()).toBe('again');
    });
  });
}

it('memory cache stays within its byte bound, evicting the least recently used', async () => {
  const cache = new MemoryBlockCache(10 * 1024);
  for (let i = 0; i < 20; i++) await cache.put(String(i).padStart(64, '0'), Buffer.alloc(1024, i));
  expect(cache.bytes).toBeLessThanOrEqual(10 * 1024);
  expect(await cache.get('0'.padStart(64, '0'))).toBeUndefined();
  expect((await cache.get('19'.padStart(64, '0')))?.[0]).toBe(19);
});

it('disk cache survives a new instance and leaves no temp files', async () => {
  const dir = await tempDir();
  const sha = 'e'.repeat(64);
  await new DiskBlockCache(dir).put(sha, Buffer.from('persisted'));
  expect((await new DiskBlockCache(dir).get(sha))?.toString()).toBe('persisted');
  expect(await readdir(join(dir, 'blocks', 'ee'))).toEqual([sha]);
});

describe('disk cache limits', () => {
  const sha = (i: number) => i.toString(16).padStart(64, '0');
  const aged = async (dir: string, i: number, secondsAgo: number) => {
    const when = new Date(Date.now() - secondsAgo * 1000);
    await utimes(join(dir, 'blocks', sha(i).slice(0, 2), sha(i)), when, when);
  };

  it('evicts least recently used blocks between the watermarks, never pinned ones', async () => {
    const dir = await tempDir();
    const cache = new DiskBlockCache(dir);
    for (let i = 0; i < 10; i++) {
      await cache.put(sha(i), Buffer.alloc(1000, i));
      await aged(dir, i, 1000 - i * 10); // block 0 is the least recently used
    }
    await cache.pin('job-42', [sha(0)]);
    await cache.get(sha(1)); // a hit makes block 1 the most recently used
    const result = await cache.gc(5000);
    expect(result.remainingBytes).toBeLessThanOrEqual(5000);
    const left = (await Promise.all(Array.from({ length: 10 }, async (_, i) => ((await cache.get(sha(i))) ? i : -1)))).filter((i) => i >= 0);
    expect(left).toEqual([0, 1, 7, 8, 9]);
    expect(await cache.stats()).toEqual({ blocks: 5, bytes: 5000, pinnedBlocks: 1, pinnedBytes: 1000 });
    expect(await cache.pins()).toEqual(['job-42']);
    expect(await cache.unpin('job-42')).toBe(1);
    expect((await cache.stats()).pinnedBlocks).toBe(0);
  });

  it('never goes over its cap, even with writes in parallel', async () => {
    const dir = await tempDir();
    const cache = new DiskBlockCache(dir, 20_000);
    await cache.ready();
    for (let round = 0; round < 12; round++) {
      await Promise.all(Array.from({ length: 5 }, (_, i) => cache.put(sha(round * 5 + i), Buffer.alloc(1000, i))));
      expect((await cache.stats()).bytes).toBeLessThanOrEqual(20_000);
      await cache.evicted();
    }
    // Blocks past the cap while a pass runs wait for it in the background; once it is done, there is room again.
    await cache.flushed();
    expect((await cache.stats()).bytes).toBeLessThanOrEqual(20_000);
    await cache.put(sha(99), Buffer.alloc(1000));
    expect(await cache.get(sha(99))).toBeDefined();
  });

  it('a block past the cap while a pass runs is written once the pass made room: the newest blocks are kept', async () => {
    const dir = await tempDir();
    const cache = new DiskBlockCache(dir, 10_000);
    await cache.ready();
    for (let i = 0; i < 9; i++) {
      await cache.put(sha(i), Buffer.alloc(1000, i));
      await aged(dir, i, 1000 - i * 10); // block 0 is the least recently used
    }
    // Block 9 crosses the high watermark (a pass starts); block 10 would pass the cap until that pass is done.
    await Promise.all([cache.put(sha(9), Buffer.alloc(1000, 9)), cache.put(sha(10), Buffer.alloc(1000, 10))]);
    await cache.flushed();
    expect(cache.notKept).toBe(0);
    expect(await cache.get(sha(10))).toEqual(Buffer.alloc(1000, 10));
    expect(await cache.get(sha(0))).toBeUndefined(); // the least recently used made the room
    expect((await cache.stats()).bytes).toBeLessThanOrEqual(10_000);
  });

  it('a write never waits for eviction: it returns while a pass is stuck, and the cap holds meanwhile', async () => {
    const dir = await tempDir();
    const cache = new DiskBlockCache(dir, 10_000);
    await cache.ready();
    for (let i = 0; i < 9; i++) await cache.put(sha(i), Buffer.alloc(1000, i));
    // A pin file that never answers (see hung-file.ts) holds the eviction pass up.
    await mkdir(join(dir, 'pins'), { recursive: true });
    const stuck = await hungFile(join(dir, 'pins', 'stuck.json'));
    try {
      const started = Date.now();
      await cache.put(sha(9), Buffer.alloc(1000, 9)); // crosses the high watermark: a pass starts, and hangs
      await cache.put(sha(10), Buffer.alloc(1000, 10)); // would pass the cap: handed to a write that waits for the pass
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(await cache.get(sha(9))).toBeDefined();
      expect(await cache.get(sha(10))).toBeUndefined();
    } finally {
      await stuck.release(); // lets the pass go on: the pin file read as empty, which is damaged
    }
    await cache.flushed();
    expect(cache.lastEvictionError).toMatch(/pin file .*stuck\.json is unreadable or damaged/);
    // The pass evicted nothing (fail closed), so block 10 never found room: not kept, and the cap held.
    expect(cache.notKept).toBe(1);
    expect(await cache.get(sha(10))).toBeUndefined();
    expect((await cache.stats()).bytes).toBe(10_000);
  });

  it('a writer no reader waits for (prefetch) waits for room instead, and still keeps to the cap', async () => {
    const dir = await tempDir();
    const cache = new DiskBlockCache(dir, 10_000, true);
    for (let i = 0; i < 30; i++) await cache.put(sha(i), Buffer.alloc(1000, i));
    expect(cache.notKept).toBe(0);
    expect((await cache.stats()).bytes).toBeLessThanOrEqual(10_000);
    expect(await cache.get(sha(29))).toBeDefined();
    await cache.pin('all', Array.from({ length: 30 }, (_, i) => sha(i)));
    await cache.put(sha(99), Buffer.alloc(3000));
    expect(cache.notKept).toBe(1);
  });

  it('does not keep a block when everything else is pinned, rather than exceed its cap', async () => {
    const dir = await tempDir();
    const cache = new DiskBlockCache(dir, 3_000);
    await cache.ready();
    await cache.put(sha(1), Buffer.alloc(1000));
    await cache.put(sha(2), Buffer.alloc(1000));
    await cache.pin('all', [sha(1), sha(2)]);
    await cache.put(sha(3), Buffer.alloc(1500));
    await cache.flushed();
    expect(cache.notKept).toBe(1);
    expect(await cache.get(sha(3))).toBeUndefined();
    expect((await cache.stats()).bytes).toBe(2000);
  });

  it('verify deletes blocks whose bytes do not match their name; clear empties the cache', async () => {
    const dir = await tempDir();
    const cache = new DiskBlockCache(dir);
    const good = Buffer.from('good');
    const goodSha = createHash('sha256').update(good).digest('hex');
    await cache.put(goodSha, good);
    await cache.put(sha(7), Buffer.from('rotten'));
    const result = await cache.verify();
    expect(result).toEqual({ checked: 2, removed: [sha(7)] });
    expect(await cache.get(goodSha)).toEqual(good);
    await cache.clear();
    expect(await cache.stats()).toEqual({ blocks: 0, bytes: 0, pinnedBlocks: 0, pinnedBytes: 0 });
  });
});
