/**
 * State that guards what a mount serves fails closed: a refresh is served only once it was taken, a damaged
 * rollback floor refuses rather than reading as 0, a damaged pin file stops eviction rather than unpinning.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiskBlockCache } from '../../src/cache/index.js';
import { Catalog, CatalogRefresher, GenerationFloor, UntrustedCatalogError } from '../../src/catalog/index.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

let work: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  work = await tempDir('fail-closed');
});
afterEach(async () => work.remove());

async function publishVersion(store: ObjectStore, version: string): Promise<void> {
  const repo = join(work.path, 'repo');
  await writeTree(repo, { [`foo/${version}/package.py`]: packageDefinition('foo', version) });
  await publish(store, { repoDir: repo, selectors: [], log: silentLog });
}

describe('catalog refresh', () => {
  it('serves a new generation only once the mount took it: a failed hand-over is retried, and stays reported until then', async () => {
    const store = openStore(`file://${join(work.path, 'store')}`);
    await publishVersion(store, '1.0.0');
    const first = await Catalog.open(store);
    // The hand-over fails once: the mount's side (trust floor, invalidation) could not take the generation.
    const taken: number[] = [];
    let failures = 1;
    const refresher = new CatalogRefresher(first, {
      intervalMs: 0,
      log: silentLog,
      onNewGeneration: (next) => {
        if (failures-- > 0) throw new Error('disk full while raising the floor');
        taken.push(next.index.generation);
      },
    });
    await publishVersion(store, '2.0.0');
    await refresher.refreshNow();
    expect(refresher.lastError).toMatch(/disk full/);
    expect(taken).toEqual([]);
    // HEAD has not moved since: the next poll must try the same generation again, not call it done.
    await refresher.refreshNow();
    expect(taken).toEqual([2]);
    expect(refresher.lastError).toBeUndefined();
    await refresher.refreshNow();
    expect(taken).toEqual([2]);
  });
});

describe('rollback floor', () => {
  it('reads 0 only when there is no floor yet; a damaged one refuses, naming the file and how to reset it', async () => {
    const floor = new GenerationFloor(join(work.path, 'state'), 's3://bucket/prod');
    expect(await floor.read()).toBe(0);
    await floor.raise(7);
    expect(await floor.read()).toBe(7);
    for (const damage of ['{"generation": 7', '{"generation": "7"}', '', '{"generation": -1}']) {
      await writeFile(floor.file, damage);
      const refused = floor.read();
      await expect(refused, damage).rejects.toBeInstanceOf(UntrustedCatalogError);
      await expect(floor.read()).rejects.toThrow(new RegExp(`${floor.file} is damaged.*remove that file`));
      await expect(floor.raise(8)).rejects.toBeInstanceOf(UntrustedCatalogError);
    }
    await mkdir(`${floor.file}.d`);
    const unreadable = new GenerationFloor(join(work.path, 'state'), 's3://bucket/prod');
    Object.defineProperty(unreadable, 'file', { value: `${floor.file}.d` }); // a directory where the file should be: EISDIR
    await expect(unreadable.read()).rejects.toThrow(/cannot be read \(EISDIR\)/);
  });
});

describe('pins', () => {
  const sha = (i: number) => i.toString(16).padStart(64, '0');

  it('a pin file that cannot be read stops eviction (and says which), rather than unpinning its blocks', async () => {
    const dir = join(work.path, 'cache');
    const cache = new DiskBlockCache(dir);
    for (let i = 0; i < 4; i++) await cache.put(sha(i), Buffer.alloc(1000, i));
    await cache.pin('job-42', [sha(0), sha(1)]);
    await writeFile(join(dir, 'pins', 'job-42.json'), '["' + sha(0)); // torn by a full disk
    await expect(cache.gc(0)).rejects.toThrow(/pin file .*job-42\.json is unreadable or damaged, so nothing is evicted.*rezfs cache unpin job-42/);
    for (let i = 0; i < 4; i++) expect(await cache.get(sha(i)), `block ${i}`).toBeDefined();
    // A capped cache cannot make room now: it refuses the new block rather than evict pinned ones or pass its cap.
    const capped = new DiskBlockCache(dir, 4_200);
    await capped.put(sha(9), Buffer.alloc(1000)).catch(() => undefined);
    expect(await capped.get(sha(9))).toBeUndefined();
    for (let i = 0; i < 4; i++) expect(await cache.get(sha(i)), `block ${i}`).toBeDefined();
    await cache.pin('job-42', [sha(0), sha(1)]);
    expect((await cache.gc(0)).removedBlocks).toBe(2);
  });
});
