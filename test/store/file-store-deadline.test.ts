/** A file store on a hung NFS path (a FIFO: see test/support/hung-file.ts). */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlockSource, ByteBudget, MemoryBlockCache } from '../../src/cache/index.js';
import { silentLog } from '../../src/log.js';
import { FileStore } from '../../src/store/file-store.js';
import { StoreTimeoutError } from '../../src/store/index.js';
import { hungFile, type HungFile } from '../support/hung-file.js';
import { tempDir } from '../support/small-repo.js';

const DEADLINE_MS = 300;

describe('a file store on a path that never answers', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let hung: HungFile[];

  beforeEach(async () => {
    work = await tempDir('hung-nfs');
    await mkdir(join(work.path, 'packs'));
    hung = [];
  });
  afterEach(async () => {
    for (const file of hung) await file.release(); // no pool thread stays stuck
    await work.remove();
  });

  const hungObject = async (key: string) => hung.push(await hungFile(join(work.path, key)));

  it('answers by its deadline, frees the byte budget then, and fails at once while reads stay hung', async () => {
    await hungObject('packs/a');
    await hungObject('packs/b');
    await writeFile(join(work.path, 'packs/c'), 'fine');
    const store = new FileStore(work.path, { deadlineMs: DEADLINE_MS });
    const budget = new ByteBudget(1 << 20);
    const blocks = new BlockSource(store, new MemoryBlockCache(1 << 20), undefined, silentLog, { budget, loadDeadlineMs: 10_000 });
    const pack = { key: 'packs/a', size: 4096, blockSize: 4096, blocks: ['0'.repeat(64)] };

    const started = Date.now();
    const read = blocks.read(pack, { start: 0, end: 100 });
    await expect(read).rejects.toBeInstanceOf(StoreTimeoutError);
    expect(Date.now() - started).toBeLessThan(DEADLINE_MS + 500);
    // The open(2) still blocks; the budget it held is back regardless.
    expect(budget.inUse).toBe(0);

    await expect(store.get('packs/b')).rejects.toThrow(/no answer within 300 ms/);
    // Two reads hang: a third fails at once instead of taking a third thread of libuv's pool.
    const third = Date.now();
    await expect(store.get('packs/c')).rejects.toThrow(/2 earlier reads are still unanswered/);
    expect(Date.now() - third).toBeLessThan(100);

    for (const file of hung.splice(0)) await file.release();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await store.get('packs/c')).toString()).toBe('fine');
  });
});
