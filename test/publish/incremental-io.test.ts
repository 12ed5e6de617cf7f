/**
 * What an incremental publish reads, counted by the kernel (/proc/self/io `rchar`: every byte any read(2) of this
 * process returned, the file store's documents included): a no-op republish of a 2,000-file repository reads none
 * of its files' content, with this host's memory or without it; adding one version reads only that version's
 * bytes (twice: once to hash, once to upload). Bytes, not time: the timings are in scripts/bench-publish.mjs.
 * Linux only (skipped, saying so, without /proc/self/io).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { pseudoRandomBytes } from '../support/repo-generator.js';
import { packageDefinition, tempDir, writeTree, type Entry } from '../support/small-repo.js';

const FAMILIES = 4;
const FILES_PER_VERSION = 500;
const FILE_BYTES = 16 * 1024;
const CONTENT = FAMILIES * FILES_PER_VERSION * FILE_BYTES; // 32 MiB
const HAVE_PROC_IO = existsSync('/proc/self/io');

function rchar(): number {
  return Number(/^rchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))![1]);
}

/** Bytes read(2) returned while `work` ran. */
async function bytesRead<T>(work: () => Promise<T>): Promise<{ result: T; read: number }> {
  const before = rchar();
  const result = await work();
  return { result, read: rchar() - before };
}

function version(family: string, name: string, seed: number): Record<string, Entry> {
  const tree: Record<string, Entry> = { [`${family}/${name}/package.py`]: packageDefinition(family, name) };
  for (let i = 0; i < FILES_PER_VERSION; i++) tree[`${family}/${name}/lib/d${i % 10}/f${i}.bin`] = pseudoRandomBytes(FILE_BYTES, seed * 100_000 + i);
  return tree;
}

describe.skipIf(!HAVE_PROC_IO)('bytes an incremental publish reads (/proc/self/io)', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;
  let store: ObjectStore;
  let stateDir: string;
  const run = (options: { stateDir?: string } = {}) => publish(store, { repoDir: repo, selectors: [], log: silentLog, ...options });

  beforeAll(async () => {
    work = await tempDir('incremental-io');
    repo = join(work.path, 'repo');
    stateDir = join(work.path, 'state');
    store = openStore(`file://${join(work.path, 'store')}`);
    for (let f = 0; f < FAMILIES; f++) await writeTree(repo, version(`fam${f}`, '1.0.0', f + 1));
    const first = await bytesRead(() => run({ stateDir }));
    expect(first.result.packages).toBe(FAMILIES);
    // The first publish reads everything, twice (hash, then upload): the counter does see file content.
    expect(first.read).toBeGreaterThan(2 * CONTENT);
  });
  afterAll(async () => work.remove());

  it('a no-op republish reads no file content, with this host\'s memory or without it', async () => {
    const memoryFiles = () => readdirSync(stateDir).map((name) => `${name} ${statSync(join(stateDir, name)).mtimeMs}`);
    const before = memoryFiles();
    const remembered = await bytesRead(() => run({ stateDir }));
    expect(remembered.result).toMatchObject({ packages: 0, alreadyPublished: FAMILIES, generation: undefined });
    // HEAD, the index and this host's memory file: a few KiB, against 32 MiB of content ...
    expect(remembered.read).toBeLessThan(64 * 1024);
    // ... and nothing is written, not even that memory.
    expect(memoryFiles()).toEqual(before);

    const compared = await bytesRead(() => run());
    expect(compared.result).toMatchObject({ packages: 0, generation: undefined });
    // Shards and manifests (a few hundred bytes per file), never the files: under 2% of the content.
    expect(compared.read).toBeLessThan(CONTENT / 50);
  });

  it('adding one version reads only that version\'s bytes', async () => {
    await writeTree(repo, version('fam0', '1.1.0', 99));
    const added = await bytesRead(() => run({ stateDir }));
    expect(added.result).toMatchObject({ packages: 1, changes: { new: 1 } });
    const versionBytes = FILES_PER_VERSION * FILE_BYTES;
    expect(added.read).toBeGreaterThanOrEqual(2 * versionBytes);
    // Hash pass + upload pass of the new 8 MiB, plus documents: far from the 40 MiB the repository holds.
    expect(added.read).toBeLessThan(2 * versionBytes + 1024 * 1024);
  });
});
