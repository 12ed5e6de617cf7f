import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskBlockCache, MemoryBlockCache, type BlockCache } from '../../src/cache/index.js';

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
