import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiskBlockCache } from '../../src/cache/disk-cache.js';
import { WriteBehind, type WriteBehindConfig } from '../../src/cache/write-behind.js';
import type { Log } from '../../src/log.js';
import { tempDir } from '../support/small-repo.js';

const CHUNK = 4096;

function piece(): [string, Buffer] {
  const data = randomBytes(CHUNK);
  return [createHash('sha256').update(data).digest('hex'), data];
}

function collectingLog(): Log & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, info: () => {}, warn: (m: string) => void warnings.push(m), error: () => {} };
}

describe('WriteBehind: disk copies of small pieces once the mount is quiet (a real disk cache)', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let disk: DiskBlockCache;
  beforeEach(async () => {
    work = await tempDir('rezfs-write-behind-');
    disk = new DiskBlockCache(join(work.path, 'cache'));
  });
  afterEach(() => work.remove());

  const config = (over: Partial<WriteBehindConfig>): WriteBehindConfig => ({ quietMs: 60_000, maxBytes: 1 << 20, concurrency: 4, ...over });
  const onDisk = async () => (await disk.stats()).blocks;

  it('writes nothing while pieces keep coming, and all of them once none has come for the quiet time', async () => {
    const writes = new WriteBehind(disk, collectingLog(), config({ quietMs: 300 }));
    const pieces = Array.from({ length: 6 }, piece);
    for (const [sha, data] of pieces) {
      writes.add(sha, data);
      await sleep(100);
    }
    expect(await onDisk()).toBe(0); // 600 ms of pieces, never 300 ms apart
    await sleep(50);
    expect(await onDisk()).toBe(0);
    await sleep(600);
    expect(await onDisk()).toBe(6);
    for (const [sha, data] of pieces) expect(await disk.get(sha)).toEqual(data);
  });

  it('writes the backlog at once for whoever waits on flushed() (unmount, prefetch)', async () => {
    const writes = new WriteBehind(disk, collectingLog(), config({}));
    for (const [sha, data] of Array.from({ length: 5 }, piece)) writes.add(sha, data);
    expect(await onDisk()).toBe(0);
    await writes.flushed();
    expect(await onDisk()).toBe(5);
  });

  it('holds at most maxBytes: a full backlog is written at once, and the piece that did not fit gets no copy', async () => {
    const writes = new WriteBehind(disk, collectingLog(), config({ maxBytes: 3 * CHUNK }));
    const pieces = Array.from({ length: 4 }, piece);
    for (const [sha, data] of pieces) writes.add(sha, data);
    expect(writes.skipped).toBe(1);
    const deadline = Date.now() + 5_000;
    while ((await onDisk()) < 3 && Date.now() < deadline) await sleep(20); // no flushed(): the full backlog drains itself
    expect(await onDisk()).toBe(3);
    expect(await disk.get(pieces[3]![0])).toBeUndefined();
  });

  it('turns a failed write into one warning per piece, and flushed() still settles', async () => {
    const notADirectory = join(work.path, 'file');
    await writeFile(notADirectory, 'x');
    const log = collectingLog();
    const writes = new WriteBehind(new DiskBlockCache(notADirectory), log, config({}));
    for (const [sha, data] of Array.from({ length: 2 }, piece)) writes.add(sha, data);
    await writes.flushed();
    expect(log.warnings).toHaveLength(2);
    expect(log.warnings[0]).toMatch(/^disk cache write failed: /);
  });
});
