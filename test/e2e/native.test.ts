import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeBindingAvailable } from '../../src/fs/index.js';
import { findRez, forceUnmountAll, mountStore, runCli, runRez, waitFor, type MountHandle } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree, type Entry } from '../support/small-repo.js';

const exec = promisify(execFile);
const native = nativeBindingAvailable();
if (!native) console.warn('[native] skipped: native/build/Release/rezfs_fuse.node is not built (npm run build:native needs libfuse3-dev)');

interface Requests {
  metadata: number;
  reads: number;
}

/** What only the project's own binding promises: a warm tree never leaves the kernel, forgets, invalidation. */
describe.skipIf(!native)('native binding (libfuse3 low-level)', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;
  let store: string;
  let env: Record<string, string>;
  let mount: MountHandle;

  beforeAll(async () => {
    work = await tempDir('native');
    repo = join(work.path, 'repo');
    store = `file://${join(work.path, 'store')}`;
    env = { REZFS_RUNTIME_DIR: join(work.path, 'run') };
    const tree: Record<string, Entry> = {};
    for (const family of ['alpha', 'beta', 'gamma', 'delta']) {
      for (const version of ['1.0', '1.1', '2.0']) {
        const root = `${family}/${version}`;
        tree[`${root}/package.py`] = packageDefinition(family, version);
        tree[`${root}/bin/${family}`] = { mode: 0o755, data: `#!/bin/sh\necho ${family}-${version}\n` };
        tree[`${root}/lib/lib${family}.so.1`] = Buffer.alloc(70_000 + version.length, family);
        tree[`${root}/lib/lib${family}.so`] = { link: `lib${family}.so.1` };
        for (let i = 0; i < 12; i++) tree[`${root}/share/data/${i}.txt`] = `${family} ${version} ${i}\n`.repeat(i + 1);
      }
    }
    await writeTree(repo, tree);
    expect((await runCli(['publish', repo, '--store', store], { env })).code).toBe(0);
    mount = await mountStore({ store, mountpoint: join(work.path, 'mnt'), cacheDir: join(work.path, 'cache'), env, extraArgs: ['--fuse', 'native', '--refresh', '0'] });
  });
  afterAll(async () => {
    await mount?.unmount();
    await forceUnmountAll([work.path]);
    await work.remove();
  });

  const status = async () => {
    const r = await runCli(['status', mount.mountpoint, '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { fuse: string; requests: Requests; kernelInodes: { held: number; lookups: number } | null };
  };
  /** What rez and a farm job do to a tree: stat everything, read every file, follow the links. */
  const walk = async (dir: string) => {
    const listing = await exec('find', [dir, '-printf', '%s %T@ %m %l %p\n'], { maxBuffer: 1 << 26 });
    const bytes = await exec('sh', ['-c', 'tar -cf - "$0" | sha256sum', dir], { maxBuffer: 1 << 20 });
    return `${listing.stdout}${bytes.stdout}`;
  };

  it('serves a warm tree entirely from the kernel: a second walk reaches rezfs with no request at all', async () => {
    expect((await status()).fuse).toMatch(/native/);
    const first = await walk(mount.mountpoint);
    expect(first).toContain('/alpha/1.0/lib/libalpha.so');
    const before = (await status()).requests;
    expect(before.metadata).toBeGreaterThan(50); // readdirplus answers most lookups along with the listing
    // No lookup, getattr, readdir, readlink or read: opens never leave the kernel and the page cache is kept.
    // On a shared machine the kernel may reclaim a dentry or page under memory pressure between two walks,
    // so one of three warm walks in a row must reach rezfs with nothing; a binding that loses the kernel's
    // caches sends requests on every walk.
    const counts: { metadata: number; reads: number }[] = [];
    let last = before;
    for (let i = 0; i < 3 && !counts.some((c) => c.metadata === 0 && c.reads === 0); i++) {
      expect(await walk(mount.mountpoint)).toBe(first);
      const now = (await status()).requests;
      counts.push({ metadata: now.metadata - last.metadata, reads: now.reads - last.reads });
      last = now;
    }
    expect(counts.at(-1)).toEqual({ metadata: 0, reads: 0 });
  });

  it('lets go of inodes the kernel forgets, so a long run does not grow', async () => {
    const warm = await walk(mount.mountpoint);
    const held = (await status()).kernelInodes!.held;
    expect(held).toBe(1 + 4 + 12 + 12 * 20); // the root, 4 families, 12 versions, 20 entries in each
    await writeFile('/proc/sys/vm/drop_caches', '2'); // evicts unused dentries and inodes: the kernel sends FORGETs
    expect(await waitFor(async () => (await status()).kernelInodes!.held < 20, 10_000)).toBe(true);
    // Forgotten inodes come back with the same numbers and bytes.
    expect(await walk(mount.mountpoint)).toBe(warm);
  });

  it('shows a new version at once although the kernel had cached its absence, and keeps everything else cached', async () => {
    const newVersion = join(mount.mountpoint, 'beta/3.0');
    expect(existsSync(newVersion)).toBe(false); // now a negative entry the kernel keeps for a minute
    const unchanged = join(mount.mountpoint, 'beta/2.0');
    await walk(unchanged);

    await writeTree(repo, { 'beta/3.0/package.py': packageDefinition('beta', '3.0'), 'beta/3.0/bin/beta': { mode: 0o755, data: 'new\n' } });
    const published = await runCli(['publish', repo, '--store', store], { env });
    expect(published.stdout).toMatch(/1 local mount\(s\) told to refresh/);
    expect(await waitFor(() => existsSync(newVersion), 5_000)).toBe(true);
    expect((await readdir(join(mount.mountpoint, 'beta'))).sort()).toEqual(['1.0', '1.1', '2.0', '3.0']);

    const before = (await status()).requests;
    await walk(unchanged);
    const after = (await status()).requests;
    expect(after.metadata - before.metadata).toBe(0);

    const rez = findRez();
    if (!rez) {
      console.warn('[native] rez part skipped: no rez (set REZ_BIN or put rez on PATH)');
      return;
    }
    const search = await runRez(['search', 'beta', '--format', '{qualified_name}'], { rez, packagesPath: mount.mountpoint });
    expect(search.stdout.split('\n').filter(Boolean).sort()).toEqual(['beta-1.0', 'beta-1.1', 'beta-2.0', 'beta-3.0']);
  });
});
