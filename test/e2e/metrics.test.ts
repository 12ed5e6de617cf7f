import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forceUnmountAll, mountStore, runCli } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { sampleSum, scrape } from '../support/prom.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

/** `rezfs mount --metrics`: a real mount's Prometheus endpoint, scraped over HTTP, moves with what the mount does. */
describe('mount --metrics', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let env: Record<string, string>;
  let store: string;
  const payload = randomBytes(3 * 1024 * 1024 + 777);

  beforeAll(async () => {
    work = await tempDir('metrics');
    env = { REZFS_RUNTIME_DIR: join(work.path, 'run') };
    store = `file://${join(work.path, 'store')}`;
    const repo = join(work.path, 'repo');
    await writeTree(repo, { 'tool/1.0/package.py': packageDefinition('tool', '1.0'), 'tool/1.0/data.bin': payload });
    expect((await runCli(['publish', repo, '--store', store], { env })).code).toBe(0);
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    await work?.remove();
  });

  it('counts a cold read as store requests, pack bytes, store-tier block loads and a timed read; a second read hits memory', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/metrics`;
    const mount = await mountStore({ store, mountpoint: join(work.path, 'mnt'), cacheDir: join(work.path, 'cache'), env, extraArgs: ['--metrics', `127.0.0.1:${port}`] });
    try {
      const before = await scrape(url);
      expect(sampleSum(before, 'rezfs_catalog_generation')).toBe(1);
      expect(sampleSum(before, 'rezfs_offline')).toBe(0);
      expect(sampleSum(before, 'rezfs_store_up', { store })).toBe(1);
      expect(sampleSum(before, 'rezfs_store_requests_total', { store, kind: 'head' })).toBeGreaterThan(0); // the mount read index/HEAD
      expect(sampleSum(before, 'rezfs_store_requests_total', { kind: 'pack' })).toBe(0);
      expect(sampleSum(before, 'process_resident_memory_bytes')).toBeGreaterThan(0);

      expect((await readFile(join(mount.mountpoint, 'tool/1.0/data.bin'))).equals(payload)).toBe(true);
      const after = await scrape(url);
      expect(sampleSum(after, 'rezfs_store_requests_total', { store, kind: 'pack', operation: 'getRange' })).toBeGreaterThan(0);
      expect(sampleSum(after, 'rezfs_store_bytes_total', { store, kind: 'pack' })).toBeGreaterThanOrEqual(payload.length);
      expect(sampleSum(after, 'rezfs_block_loads_total', { tier: 'store' })).toBeGreaterThan(0); // readahead fetches several blocks per GET
      expect(sampleSum(after, 'rezfs_read_duration_seconds_count', { outcome: 'ok' })).toBeGreaterThan(0);
      expect(sampleSum(after, 'rezfs_fs_read_bytes_total')).toBeGreaterThanOrEqual(payload.length);
      expect(sampleSum(after, 'rezfs_errors_total', { kind: 'read' })).toBe(0);
      expect(sampleSum(after, 'rezfs_store_requests_in_flight')).toBe(0);
      // The version that cost it, by name: in the metrics and in status, with every pack byte the store sent.
      const packBytes = sampleSum(after, 'rezfs_store_bytes_total', { store, kind: 'pack' });
      expect(sampleSum(after, 'rezfs_package_cold_bytes', { package: 'tool-1.0' })).toBe(packBytes);
      expect(sampleSum(after, 'rezfs_package_read_seconds', { package: 'tool-1.0' })).toBeGreaterThan(0);
      const status = await runCli(['status', mount.mountpoint, '--json'], { env });
      const { costliest } = JSON.parse(status.stdout) as { costliest: { package: string; coldBytes: number; storeGets: number }[] };
      expect(costliest).toEqual([expect.objectContaining({ package: 'tool-1.0', coldBytes: packBytes })]);
      expect((await runCli(['status', mount.mountpoint], { env })).stdout).toMatch(/costliest cold: tool-1\.0 3\.\d MiB in \d+ GETs, read \d+\.\d\d s/);

      // The kernel's page cache would answer a second read of the same file; drop it so the read reaches rezfs.
      await writeFile('/proc/sys/vm/drop_caches', '1');
      expect((await readFile(join(mount.mountpoint, 'tool/1.0/data.bin'))).equals(payload)).toBe(true);
      const again = await scrape(url);
      expect(sampleSum(again, 'rezfs_block_loads_total', { tier: 'memory' })).toBeGreaterThan(sampleSum(after, 'rezfs_block_loads_total', { tier: 'memory' }));
      expect(sampleSum(again, 'rezfs_store_requests_total', { kind: 'pack' })).toBe(sampleSum(after, 'rezfs_store_requests_total', { kind: 'pack' }));

      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    } finally {
      await mount.unmount();
    }
  });

  it('refuses a --metrics that is not HOST:PORT, in one line, exit 2, before mounting', async () => {
    const result = await runCli(['mount', join(work.path, 'mnt'), '--store', store, '--cache-dir', join(work.path, 'cache'), '--metrics', '9464'], { env });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/--metrics "9464" is not HOST:PORT/);
  });
});
