import { open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { notifyMounts } from '../../src/cli/registry.js';
import { forceUnmountAll, mountStore, runCli, waitFor, type MountHandle } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

/** A mount follows new publishes without a remount; signed mounts keep their last good generation. */
describe('live refresh', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    work = await tempDir('refresh');
    repo = join(work.path, 'repo');
    env = { REZFS_RUNTIME_DIR: join(work.path, 'run') };
    await writeTree(repo, {
      'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0'),
      'foo/1.0.0/data.txt': 'one',
    });
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    await work.remove();
  });

  const publish = (store: string, ...extra: string[]) => runCli(['publish', repo, '--store', store, ...extra], { env });
  const versions = async (mnt: string) => (await readdir(join(mnt, 'foo'))).sort();

  it('a publish on this host shows at once; polling finds one from elsewhere; open files keep their generation', async () => {
    const store = `file://${join(work.path, 'store')}`;
    expect((await publish(store)).code).toBe(0);
    const mount: MountHandle = await mountStore({ store, mountpoint: join(work.path, 'mnt'), cacheDir: join(work.path, 'cache'), env, extraArgs: ['--refresh', '0'] });
    try {
      const opened = await open(join(mount.mountpoint, 'foo/1.0.0/data.txt'));
      expect(await versions(mount.mountpoint)).toEqual(['1.0.0']);

      await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0') });
      const published = await publish(store);
      expect(published.stdout).toMatch(/1 local mount\(s\) told to refresh/);
      expect(await waitFor(async () => (await versions(mount.mountpoint)).includes('2.0.0'), 5_000)).toBe(true);
      expect((await opened.read(Buffer.alloc(10), 0, 10, 0)).bytesRead).toBe(3);
      await opened.close();
    } finally {
      await mount.unmount();
    }

    const polled = await mountStore({ store, mountpoint: join(work.path, 'mnt'), cacheDir: join(work.path, 'cache'), env: { REZFS_RUNTIME_DIR: join(work.path, 'elsewhere') }, extraArgs: ['--refresh', '1s'] });
    try {
      await writeTree(repo, { 'foo/3.0.0/package.py': packageDefinition('foo', '3.0.0') });
      const published = await publish(store);
      expect(published.stdout).not.toMatch(/told to refresh/);
      const started = Date.now();
      expect(await waitFor(async () => (await versions(polled.mountpoint)).includes('3.0.0'), 10_000)).toBe(true);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(await readFile(join(polled.mountpoint, 'foo/3.0.0/package.py'), 'utf8')).toBe(packageDefinition('foo', '3.0.0'));
    } finally {
      await polled.unmount();
    }
  });

  it('a signed mount refuses an unsigned, a tampered and a rolled-back generation and keeps serving the last good one', async () => {
    const storeDir = join(work.path, 'signed-store');
    const store = `file://${storeDir}`;
    const key = join(work.path, 'k');
    expect((await runCli(['keygen', key])).code).toBe(0);
    expect((await publish(store, '--sign-key', key)).code).toBe(0);
    const cacheDir = join(work.path, 'signed-cache');
    const mount = await mountStore({ store, mountpoint: join(work.path, 'mnt-signed'), cacheDir, env, extraArgs: ['--refresh', '0', '--trust-key', `${key}.pub`] });
    const log = () => readFile(join(cacheDir, 'mount.log'), 'utf8');
    try {
      const good = await versions(mount.mountpoint);
      const goodHead = await readFile(join(storeDir, 'index/HEAD'), 'utf8');

      await writeTree(repo, { 'foo/4.0.0/package.py': packageDefinition('foo', '4.0.0') });
      // Unsigned onto a signed store: refused unless forced; forced, every trusting mount must still refuse it.
      expect((await publish(store)).code).toBe(2);
      expect((await publish(store, '--allow-unsigned')).code).toBe(0);
      expect(await waitFor(async () => /is not signed/.test(await log()), 5_000)).toBe(true);
      expect(await versions(mount.mountpoint)).toEqual(good);

      await writeTree(repo, { 'foo/5.0.0/package.py': packageDefinition('foo', '5.0.0') });
      expect((await publish(store, '--sign-key', key)).code).toBe(0); // signed again: accepted
      expect(await waitFor(async () => (await versions(mount.mountpoint)).includes('5.0.0'), 5_000)).toBe(true);

      await writeFile(join(storeDir, 'index/HEAD'), goodHead); // an attacker rolls HEAD back
      process.env.REZFS_RUNTIME_DIR = env.REZFS_RUNTIME_DIR;
      expect(await notifyMounts(store)).toBe(1); // what a publish does after swapping HEAD
      delete process.env.REZFS_RUNTIME_DIR;
      expect(await waitFor(async () => /rollback/.test(await log()), 5_000)).toBe(true);
      expect(await versions(mount.mountpoint)).toContain('5.0.0');
    } finally {
      await mount.unmount();
    }
  });
});
