/**
 * What each version costs cold (issue 16: per-package cost), kernel-free: a RezFs over a real file:// store charges
 * every byte BlockSource fetches to the version whose pack it came from, readahead and preloads included, and its
 * read time to the version read; a second read of the same bytes costs nothing more.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockSource, MemoryBlockCache } from '../../src/cache/index.js';
import { Catalog, keys } from '../../src/catalog/index.js';
import { PackageCosts, RezFs } from '../../src/fs/index.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const BLOCK = 4096;
const big = randomBytes(40 * BLOCK + 123);
const small = randomBytes(3 * BLOCK);

describe('package costs', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let store: ObjectStore;

  beforeAll(async () => {
    work = await tempDir('package-costs');
    await writeTree(join(work.path, 'repo'), {
      'big/2.0/package.py': packageDefinition('big', '2.0'),
      'big/2.0/lib/big.so': big,
      'small/1.0/package.py': packageDefinition('small', '1.0'),
      'small/1.0/data.bin': small,
    });
    store = openStore(`file://${join(work.path, 'store')}`);
    await store.put(keys.config, Buffer.from(JSON.stringify({ format: '1.0.0', blockSize: BLOCK })));
    await publish(store, { repoDir: join(work.path, 'repo'), selectors: [], log: silentLog });
  });
  afterAll(async () => work?.remove());

  it('charges each fetched byte and each read to the version read, costliest first, and nothing for a warm read', async () => {
    const costs = new PackageCosts();
    const blocks = new BlockSource(store, new MemoryBlockCache(1 << 24), undefined, silentLog, { onFetched: costs.fetched });
    const fs = new RezFs(await Catalog.open(store), blocks, { uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 4, log: silentLog, costs });
    const read = async (path: string, data: Buffer) => {
      for (let offset = 0; offset < data.length; offset += 8192) expect((await fs.readAt(path, offset, 8192)).equals(data.subarray(offset, offset + 8192))).toBe(true);
    };
    await read('/small/1.0/data.bin', small);
    await read('/big/2.0/lib/big.so', big);
    await new Promise((r) => setTimeout(r, 50)); // readahead still landing is charged too
    const top = costs.top(10);
    expect(top.map((c) => c.package)).toEqual(['big-2.0', 'small-1.0']);
    expect(top[0]!.coldBytes).toBeGreaterThanOrEqual(big.length);
    expect(top[1]!.coldBytes).toBeGreaterThanOrEqual(small.length);
    expect(top[0]!.coldBytes + top[1]!.coldBytes).toBe(blocks.stats.storeBytes);
    expect(top.every((c) => c.readSeconds > 0 && c.storeGets > 0)).toBe(true);

    const before = costs.top(10);
    await read('/big/2.0/lib/big.so', big); // from memory now
    const after = costs.top(10);
    expect(after.map((c) => [c.package, c.coldBytes, c.storeGets])).toEqual(before.map((c) => [c.package, c.coldBytes, c.storeGets]));
    expect(costs.top(1)).toHaveLength(1);
  });
});
