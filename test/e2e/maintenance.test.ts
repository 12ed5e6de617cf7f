import { randomBytes } from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forceUnmountAll, mountStore, runCli } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

/** verify, prefetch and cache: what an admin runs on a store and on a farm node's cache. */
describe('store and cache maintenance through the CLI', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let store: string;
  let storeDir: string;
  let cacheDir: string;
  const payload = randomBytes(3 * 1024 * 1024 + 5); // random, so no two blocks share a hash

  beforeAll(async () => {
    work = await tempDir('maintenance');
    storeDir = join(work.path, 'store');
    store = `file://${storeDir}`;
    cacheDir = join(work.path, 'cache');
    const repo = join(work.path, 'repo');
    await writeTree(repo, {
      'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0'),
      'foo/1.0.0/lib/big.bin': payload,
      'bar/2.0/package.py': packageDefinition('bar', '2.0'),
      'bar/2.0/data.txt': 'bar data',
    });
    expect((await runCli(['publish', repo, '--store', store])).code).toBe(0);
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    await work.remove();
  });

  it('verify passes on a good store and names each damaged object', async () => {
    const good = await runCli(['verify', '--store', store]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toMatch(/^verified generation 1 of file:\/\/.*: 2 families, 2 versions, 2 packs, 5 blocks \(.*\), 0 chunks in .*: all good\n$/);

    const packs = await readdir(join(storeDir, 'packs'));
    const big = (await Promise.all(packs.map(async (p) => ({ p, n: (await readFile(join(storeDir, 'packs', p))).length })))).find((x) => x.n > 1e6)!;
    const path = join(storeDir, 'packs', big.p);
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    damaged[1024 * 1024 + 10]! ^= 0xff;
    await writeFile(path, damaged);
    try {
      const bad = await runCli(['verify', '--store', store]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain(`rezfs: foo/1.0.0: block 1 of packs/${big.p} fails its sha256`);
      expect(bad.stderr).toMatch(/rezfs: 1 problem\(s\) in generation 1/);
    } finally {
      await writeFile(path, original);
    }
  });

  it('prefetch fills the disk cache once, pins on request, and cache stats/unpin/gc/clear manage it', async () => {
    const first = await runCli(['prefetch', 'foo-1.0.0', 'bar/2.0', '--store', store, '--cache-dir', cacheDir, '--pin']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^prefetched 2 packages into .*: 5 blocks, 5 fetched \(.*\), 0 already cached, pinned in/);
    const again = await runCli(['prefetch', 'foo-1.0.0', '--store', store, '--cache-dir', cacheDir]);
    expect(again.stdout).toMatch(/4 blocks, 0 fetched \(0 B\), 4 already cached/);

    const stats = await runCli(['cache', 'stats', '--cache-dir', cacheDir]);
    expect(stats.stdout).toMatch(/5 blocks, .*; pinned 5 blocks .* by 2 pin\(s\): bar-2\.0, foo-1\.0\.0/);
    const kept = await runCli(['cache', 'gc', '--cache-dir', cacheDir, '--cache-size', '1K']);
    expect(kept.stdout).toMatch(/^removed 0 blocks/);
    expect((await runCli(['cache', 'unpin', 'foo-1.0.0', '--cache-dir', cacheDir])).code).toBe(0);
    expect((await runCli(['cache', 'unpin', 'nope', '--cache-dir', cacheDir])).code).toBe(2);
    const trimmed = await runCli(['cache', 'gc', '--cache-dir', cacheDir, '--cache-size', '1K']);
    expect(trimmed.stdout).toMatch(/^removed 4 blocks/);
    expect((await runCli(['cache', 'verify', '--cache-dir', cacheDir])).stdout).toMatch(/checked 1 blocks .*: 0 bad block\(s\) removed/);
    expect((await runCli(['cache', 'clear', '--cache-dir', cacheDir])).code).toBe(0);
    expect((await runCli(['cache', 'stats', '--cache-dir', cacheDir])).stdout).toMatch(/: 0 blocks, 0 B;/);
  });

  it('profile refuses bad usage with one line and exit 2, and writes nothing', async () => {
    const head = await readFile(join(storeDir, 'index', 'HEAD'), 'utf8');
    const cases: [string[], RegExp][] = [
      [['profile', '--store', store], /needs either a command \(after --\) or --from-cache DIR/],
      [['profile', '--store', store, '--from-cache', cacheDir, '--', 'true'], /needs either a command .* not both/],
      [['profile', '--store', store, '--from-cache', join(work.path, 'no-such-dir')], /no startup profiles of file:\/\/.* recorded under/],
      [['profile', '--store', store, '--record-window', 'soon', '--', 'true'], /--record-window/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
    expect(await readFile(join(storeDir, 'index', 'HEAD'), 'utf8')).toBe(head);
  });

  it('prefetch keeps to --cache-size: more than fits is refused up front; what pins leave no room for is not kept (exit 1)', async () => {
    const repo = join(work.path, 'big-repo');
    const bigStore = `file://${join(work.path, 'big-store')}`;
    const MiB = 1024 * 1024;
    await writeTree(repo, {
      'huge/1.0/package.py': packageDefinition('huge', '1.0'),
      'huge/1.0/data.bin': randomBytes(12 * MiB),
      'half/1.0/package.py': packageDefinition('half', '1.0'),
      'half/1.0/data.bin': randomBytes(5 * MiB),
    });
    expect((await runCli(['publish', repo, '--store', bigStore])).code).toBe(0);
    const small = join(work.path, 'small-cache');
    const prefetch = (pkg: string) => runCli(['prefetch', pkg, '--store', bigStore, '--cache-dir', small, '--cache-size', '8M', '--pin']);
    const tooBig = await prefetch('huge-1.0');
    expect(tooBig.code, tooBig.stderr).toBe(2);
    expect(tooBig.stderr).toMatch(/^rezfs: the packages take 12\.0 MiB, more than the cache's cap of 8\.0 MiB \(--cache-size\)/);
    expect((await prefetch('half-1.0')).code).toBe(0);
    // 5 MiB pinned: another 5 MiB cannot all be kept under an 8 MiB cap, and nothing pinned is evicted for it.
    await writeTree(repo, { 'more/1.0/package.py': packageDefinition('more', '1.0'), 'more/1.0/data.bin': randomBytes(5 * MiB) });
    expect((await runCli(['publish', repo, 'more', '--store', bigStore])).code).toBe(0);
    const full = await runCli(['prefetch', 'more-1.0', '--store', bigStore, '--cache-dir', small, '--cache-size', '8M']);
    expect(full.code, full.stderr).toBe(1);
    expect(full.stderr).toMatch(/^rezfs: \d+ of 6 blocks could not be kept: .*small-cache is at its cap \(8\.0 MiB\) and everything else in it is pinned; raise --cache-size/);
    const stats = await runCli(['cache', 'stats', '--cache-dir', small]);
    expect(stats.stdout).toMatch(/pinned 6 blocks \(5\.0 MiB\)/);
    const bytes = Number(/blocks, ([\d.]+) MiB/.exec(stats.stdout)?.[1]);
    expect(bytes, stats.stdout).toBeLessThanOrEqual(8);
  });

  it('prefetch takes a saved rez context, skips and names what other repositories hold, and refuses unknown packages', async () => {
    const rxt = join(work.path, 'job.rxt');
    // REZ_PACKAGES_PATH=~/packages:/mnt/rez: the context holds local packages too, a new family and a local version.
    const variant = (name: string, version: string, location: string) => ({ key: 'filesystem.variant', variables: { name, version, location, index: null, repository_type: 'filesystem' } });
    const resolved = [variant('tiny', '1.0', '/home/td/packages'), variant('bar', '2.0', '/mnt/rez'), variant('foo', '0.9.dev', '/home/td/packages'), variant('foo', '1.0.0', '/mnt/rez')];
    await writeFile(rxt, JSON.stringify({ resolved_packages: resolved }));
    const contextCache = join(work.path, 'context-cache');
    const fromContext = await runCli(['prefetch', '--context', rxt, '--store', store, '--cache-dir', contextCache]);
    expect(fromContext.code, fromContext.stderr).toBe(0);
    expect(fromContext.stdout).toMatch(/^prefetched 2 packages/);
    expect(fromContext.stdout).toContain(`not in ${store}, so not prefetched: tiny-1.0 (/home/td/packages), foo-0.9.dev (/home/td/packages)\n`);
    // A mount on that cache dir serves what the context needs from disk: no payload GET to the store.
    const mount = await mountStore({ store, mountpoint: join(work.path, 'context-mnt'), cacheDir: contextCache, env: { REZFS_RUNTIME_DIR: join(work.path, 'run') } });
    try {
      expect((await readFile(join(mount.mountpoint, 'foo/1.0.0/lib/big.bin'))).equals(payload)).toBe(true);
      const status = await runCli(['status', mount.mountpoint, '--json'], { env: { REZFS_RUNTIME_DIR: join(work.path, 'run') } });
      expect(status.code, status.stderr).toBe(0);
      const { cache } = JSON.parse(status.stdout) as { cache: { disk: { hits: number }; store: { gets: number } } };
      expect(cache.store.gets).toBe(0);
      expect(cache.disk.hits).toBeGreaterThanOrEqual(3);
    } finally {
      await mount.unmount();
    }
    const unknown = await runCli(['prefetch', 'foo-9.9', '--store', store, '--cache-dir', cacheDir]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no version 9\.9 of foo/);
  });
});
