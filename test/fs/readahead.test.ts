import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockSource, MemoryBlockCache } from '../../src/cache/index.js';
import { Catalog, keys } from '../../src/catalog/index.js';
import { RezFs } from '../../src/fs/index.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const BLOCK = 4096;
const BLOCKS = 64;
const data = randomBytes(BLOCKS * BLOCK - 100);
/** 96 files of about 2.7 KiB: 64 blocks of pack, read one whole file at a time as tar does. */
const smallFiles = Array.from({ length: 96 }, (_, i) => `f${String(i).padStart(3, '0')}.txt`);
const smallData = (i: number) => randomBytes(2700 + i);

/** Readahead asks for runs of blocks in one ranged GET, so a streaming reader costs a few large requests. */
describe('readahead runs', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let store: CountingStore;

  beforeAll(async () => {
    work = await tempDir('readahead');
    const repo = join(work.path, 'repo');
    const small = Object.fromEntries(smallFiles.map((name, i) => [`many/1.0/files/${name}`, smallData(i)]));
    await writeTree(repo, { 'big/1.0/package.py': packageDefinition('big', '1.0'), 'big/1.0/data.bin': data, 'many/1.0/package.py': packageDefinition('many', '1.0'), ...small });
    const raw = openStore(`file://${join(work.path, 'store')}`);
    await raw.put(keys.config, Buffer.from(JSON.stringify({ format: '1.0.0', blockSize: BLOCK })));
    await publish(raw, { repoDir: repo, selectors: [], log: silentLog });
    store = new CountingStore(raw);
  });
  afterAll(async () => work?.remove());

  const freshFs = async () =>
    new RezFs(await Catalog.open(store), new BlockSource(store, new MemoryBlockCache(1 << 22), undefined, silentLog), {
      uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 8, log: silentLog,
    });

  it('a sequential reader gets exact bytes with far fewer GETs than blocks; a random reader only its own blocks', async () => {
    const fs = await freshFs();
    store.reset();
    const parts: Buffer[] = [];
    for (let offset = 0; offset < data.length; offset += 1024) {
      parts.push(await fs.readAt('/big/1.0/data.bin', offset, 1024));
      await new Promise((r) => setImmediate(r));
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    const gets = store.count('getRange', 'packs/');
    expect(gets).toBeGreaterThan(1);
    expect(gets).toBeLessThanOrEqual(BLOCKS / 3);

    const random = await freshFs();
    store.reset();
    for (const block of [40, 3, 22]) expect((await random.readAt('/big/1.0/data.bin', block * BLOCK + 7, 100)).equals(data.subarray(block * BLOCK + 7, block * BLOCK + 107))).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(store.count('getRange', 'packs/')).toBe(3);
  });

  it('reading a version\'s files one after the other in pack order fetches ahead across files', async () => {
    const fs = await freshFs();
    store.reset();
    const catalog = await Catalog.open(store);
    const shard = await catalog.shard('many');
    const manifest = await catalog.manifest(shard.versions['1.0']!.manifest);
    for (const name of smallFiles) {
      const node = (manifest.root.entries.files as { entries: Record<string, { size: number }> }).entries[name]!;
      expect((await fs.readAt(`/many/1.0/files/${name}`, 0, 128 * 1024)).length).toBe(node.size);
      await new Promise((r) => setImmediate(r));
    }
    const blocks = Math.ceil(manifest.packSize / BLOCK);
    expect(blocks).toBeGreaterThan(60);
    expect(store.count('getRange', 'packs/')).toBeLessThanOrEqual(blocks / 3);
  });
});

