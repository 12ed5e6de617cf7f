import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forceUnmountAll, mountStore, runCli, type MountHandle } from '../support/cli.js';
import { expectBytesAt } from '../support/reads.js';
import { Rng } from '../support/repo-generator.js';
import { startS3Server, type RecordedRequest, type S3TestServer } from '../support/s3-server.js';
import { tempDir, writeTree } from '../support/small-repo.js';

/**
 * Issue 12, "sparse reads fetch what they need": a real FUSE mount (served by its own process) of an s3rver store,
 * scattered reads of a file of many 1 MiB blocks, every byte compared with the source and every byte the mount
 * fetched counted at the S3 proxy. Blocks and chunks are the store's defaults (1 MiB, 4 KiB).
 */
const MiB = 1024 * 1024;
const PAGE = 4096;
const FILE = 'big/1.0.0/lib/libbig.so';
/** 24 blocks and a bit: a short last block whose last chunk is short too. */
const SIZE = 24 * MiB + 5000;

let work: Awaited<ReturnType<typeof tempDir>>;
let s3: S3TestServer;
let source: Buffer;
let mount: MountHandle;

const payloadGets = (requests: readonly RecordedRequest[]) => requests.filter((r) => r.method === 'GET' && /^sparse\/(packs|chunks)\//.test(r.key));
const fetched = (requests: readonly RecordedRequest[]) => payloadGets(requests).reduce((n, r) => n + r.responseBytes, 0);

beforeAll(async () => {
  work = await tempDir('sparse-e2e');
  source = randomBytes(SIZE);
  const repo = join(work.path, 'repo');
  await writeTree(repo, { 'big/1.0.0/package.py': 'name = "big"\nversion = "1.0.0"\n', [FILE]: source, 'big/1.0.0/lib/README': 'neighbour\n' });
  s3 = await startS3Server();
  const published = await runCli(['publish', repo, '--store', s3.storeUrl('sparse')], { env: s3.env, timeoutMs: 300_000 });
  expect(published.code, published.stderr).toBe(0);
  mount = await mountStore({ store: s3.storeUrl('sparse'), mountpoint: join(work.path, 'mnt'), cacheDir: join(work.path, 'cache'), env: s3.env });
}, 600_000);

afterAll(async () => {
  await mount?.unmount();
  await forceUnmountAll([work.path]);
  await s3?.stop();
  await work?.remove();
});

interface Tally {
  readBytes: number;
  pages: Set<number>;
}

/** Reads each case through the mount and compares it with the source; tallies what was read and its pages. */
async function readCases(cases: readonly [number, number][], tally: Tally): Promise<void> {
  const handle = await fsp.open(join(mount.mountpoint, FILE), 'r');
  try {
    for (const [offset, length] of cases) {
      const bytesRead = await expectBytesAt(handle, source, offset, length);
      tally.readBytes += bytesRead;
      for (let page = Math.floor(offset / PAGE); page * PAGE < Math.min(offset + length, SIZE); page++) tally.pages.add(page);
    }
  } finally {
    await handle.close();
  }
}

describe('sparse reads through a mount', () => {
  it('return exact bytes at every offset and length tried and fetch about what they read, counted at the proxy', async () => {
    // Deterministic, so that a failure names a case that can be run again.
    const rng = new Rng(12);
    // Page 0 is left alone: a read from the start of a file is how a sequential reader begins (whole blocks).
    const anywhere = () => rng.int(PAGE, SIZE - 1);
    s3.requests.reset();
    // First the pattern of the target (scattered 4 KiB reads), whose cost is what the kernel asks for: one page each.
    const scattered: Tally = { readBytes: 0, pages: new Set() };
    await readCases(Array.from({ length: 200 }, () => [anywhere() & ~(PAGE - 1), PAGE] as [number, number]), scattered);
    const first = s3.requests.all();
    const blocks = new Set([...scattered.pages].map((page) => Math.floor((page * PAGE) / MiB)));
    // The chunks holding the pages read, per block touched its chunk list (8 KiB), once the pack's index (32 bytes a
    // block of the pack: the file's, and block 0 with package.py and README before it).
    const packBlocks = 1 + Math.ceil(SIZE / MiB);
    expect(fetched(first)).toBeLessThanOrEqual(scattered.pages.size * PAGE + blocks.size * 8192 + packBlocks * 32);
    expect(Math.max(...payloadGets(first).map((r) => r.responseBytes))).toBeLessThanOrEqual(8192);

    // Then every edge, and reads of any length, on top.
    const cases: [number, number][] = [
      [3 * PAGE - 1, 2], // across a chunk boundary
      [MiB - 10, 20], // across a block boundary
      [5 * MiB - 100, 3 * PAGE], // across both, three pages
      [23 * MiB + 17, 100], // inside the last full block
      [24 * MiB + 1000, 200], // inside the short last block
      [SIZE - 100, 300], // the end, read past
      [SIZE, 10], // at the end
      [SIZE + 5 * MiB, 10], // far past it
    ];
    for (let i = 0; i < 150; i++) cases.push([anywhere(), rng.int(1, 20_000)]);
    const all: Tally = { readBytes: scattered.readBytes, pages: new Set(scattered.pages) };
    await readCases(cases, all);
    const requests = s3.requests.all();
    expect(requests.filter((r) => r.method !== 'GET' && r.method !== 'HEAD')).toEqual([]);
    const bytes = fetched(requests);
    const touched = new Set([...all.pages].map((page) => Math.floor((page * PAGE) / MiB)));
    console.log(
      `[sparse] ${200 + cases.length} reads, ${all.readBytes} bytes (${all.pages.size} pages in ${touched.size} blocks): ` +
        `${payloadGets(requests).length} GETs fetched ${bytes} bytes, ${(bytes / all.readBytes).toFixed(2)} per byte read ` +
        `(the 200 scattered 4 KiB reads alone: ${(fetched(first) / scattered.readBytes).toFixed(2)}; whole blocks: ${((touched.size * MiB) / all.readBytes).toFixed(1)})`,
    );
    expect(bytes / all.readBytes).toBeLessThanOrEqual(4);
  });

  it('reads a file front to back exact, without fetching much more than the file', async () => {
    s3.requests.reset();
    const whole = await fsp.readFile(join(mount.mountpoint, FILE));
    expect(createHash('sha256').update(whole).digest('hex')).toBe(createHash('sha256').update(source).digest('hex'));
    // What the scattered reads fetched is cached; the rest comes in whole blocks or, between pages the kernel
    // holds, in the pieces the kernel asks for.
    expect(fetched(s3.requests.all())).toBeLessThan(SIZE + 2 * MiB);
  });
});
