import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forceUnmountAll, mountStore, runCli, runProcess } from '../support/cli.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

/**
 * Runs a program that lives on the mount through sh: spawn() blocks this process until execve
 * returns, and execve of a file whose metadata the mount must still fetch through this process's S3
 * proxy would wait on itself.
 */
const runTool = (path: string) => runProcess('sh', ['-c', '"$0"', path], { timeoutMs: 30_000 });

/**
 * A temp dir and an S3 server of their own for one describe block, holding `tool/1.0` (an executable) and
 * `big/1.0` (6 MiB never read before the store goes), published to `prefix` with `publishArgs`.
 */
function storeWithTools(name: string, prefix: string, publishArgs: (work: string) => Promise<string[]> = async () => []) {
  const fixture = {} as { work: Awaited<ReturnType<typeof tempDir>>; s3: S3TestServer; env: Record<string, string>; store: string };
  beforeAll(async () => {
    fixture.work = await tempDir(name);
    fixture.s3 = await startS3Server();
    fixture.env = { ...fixture.s3.env, REZFS_RUNTIME_DIR: join(fixture.work.path, 'run') };
    fixture.store = fixture.s3.storeUrl(prefix);
    const repo = join(fixture.work.path, 'repo');
    await writeTree(repo, {
      'tool/1.0/package.py': packageDefinition('tool', '1.0'),
      'tool/1.0/bin/tool': { mode: 0o755, data: '#!/bin/sh\necho tool works\n' },
      'big/1.0/package.py': packageDefinition('big', '1.0'),
      // Over 4 MiB: looking into the version does not preload it whole (a startup set), so it stays cold.
      'big/1.0/cold.bin': Buffer.alloc(6 * 1024 * 1024, 3),
    });
    const args = ['publish', repo, '--store', fixture.store, ...(await publishArgs(fixture.work.path))];
    expect((await runCli(args, { env: fixture.env })).code).toBe(0);
  });
  afterAll(async () => {
    await forceUnmountAll(fixture.work ? [fixture.work.path] : []);
    await fixture.s3?.stop();
    await fixture.work?.remove();
  });
  return fixture;
}

/** Every store down, warm cache: what was used before keeps working; the rest fails fast with EIO. */
describe('offline', () => {
  const f = storeWithTools('offline', 'off');

  it('mounts from the local copy of the catalog, serves cached data, fails uncached reads within the timeout, and says so', async () => {
    const cacheDir = join(f.work.path, 'cache');
    const mountpoint = join(f.work.path, 'mnt');
    const first = await mountStore({ store: f.store, mountpoint, cacheDir, env: f.env });
    await readdir(join(mountpoint, 'big/1.0')); // the package was listed, its payload never read
    expect((await runTool(join(mountpoint, 'tool/1.0/bin/tool'))).stdout).toBe('tool works\n');
    await first.unmount();

    await f.s3.stop(); // every store is down from here on
    const started = Date.now();
    const offline = await mountStore({ store: f.store, mountpoint, cacheDir, env: f.env, extraArgs: ['--read-timeout', '4s'] });
    expect(Date.now() - started).toBeLessThan(15_000);
    try {
      expect((await readdir(mountpoint)).sort()).toEqual(['big', 'tool']);
      expect(await readFile(join(mountpoint, 'tool/1.0/package.py'), 'utf8')).toBe(packageDefinition('tool', '1.0'));
      const ran = await runProcess(join(mountpoint, 'tool/1.0/bin/tool'), [], { timeoutMs: 30_000 });
    expect(ran.stdout, JSON.stringify(ran)).toBe('tool works\n');

      const readStarted = Date.now();
      const uncached = await runProcess('cat', [join(mountpoint, 'big/1.0/cold.bin')], { timeoutMs: 60_000 });
      expect(uncached.code).not.toBe(0);
      expect(uncached.stderr).toMatch(/Input\/output error/);
      expect(Date.now() - readStarted).toBeLessThan(15_000);

      const status = await runCli(['status', mountpoint, '--json'], { env: f.env });
      expect(status.code, status.stderr).toBe(0);
      const report = JSON.parse(status.stdout) as { offline: boolean; offlineSince: string | null; generation: number };
      expect(report.offline).toBe(true);
      expect(report.offlineSince).not.toBeNull();
      expect(report.generation).toBe(1);
      const human = await runCli(['status', mountpoint], { env: f.env });
      expect(human.stdout).toMatch(/OFFLINE since/);
    } finally {
      await offline.unmount();
    }
  });

  it('status of a path with no mount is bad input', async () => {
    const none = await runCli(['status', join(f.work.path, 'nowhere')], { env: f.env });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no running rezfs mount at/);
  });
});

/** "Prefetch before the job, store down after a reboot": a cache dir that only `rezfs prefetch` ever filled. */
describe('a cache dir filled by prefetch alone', () => {
  const f = storeWithTools('prefetched', 'pre', async (work) => {
    expect((await runCli(['keygen', join(work, 'signing.key')])).code).toBe(0);
    return ['--sign-key', join(work, 'signing.key')];
  });

  it('mounts with the store down (signed, trusted) and serves what was prefetched; the rest is EIO, never missing', async () => {
    const cacheDir = join(f.work.path, 'cache');
    const rxt = join(f.work.path, 'job.rxt');
    const variant = (name: string, location: string) => ({ key: 'filesystem.variant', variables: { name, version: '1.0', location, index: null } });
    await writeFile(rxt, JSON.stringify({ resolved_packages: [variant('tool', '/mnt/rez'), variant('mine', '/home/td/packages')] }));
    const prefetched = await runCli(['prefetch', '--context', rxt, '--store', f.store, '--cache-dir', cacheDir, '--pin'], { env: f.env });
    expect(prefetched.code, prefetched.stderr).toBe(0);
    expect(prefetched.stdout).toMatch(/^prefetched 1 packages/);
    expect(prefetched.stdout).toMatch(/not in s3:\/\/rezfs-test\/pre\/, so not prefetched: mine-1\.0 \(\/home\/td\/packages\)/);

    await f.s3.stop(); // the store is gone (connection refused) from here on
    const mountpoint = join(f.work.path, 'mnt');
    const offline = await mountStore({
      store: f.store,
      mountpoint,
      cacheDir,
      env: f.env,
      extraArgs: ['--read-timeout', '4s', '--trust-key', join(f.work.path, 'signing.key.pub')],
    });
    try {
      expect((await readdir(mountpoint)).sort()).toEqual(['big', 'tool']);
      expect((await runTool(join(mountpoint, 'tool/1.0/bin/tool'))).stdout).toBe('tool works\n');
      const unloaded = await runProcess('ls', [join(mountpoint, 'big')], { timeoutMs: 60_000 });
      expect({ code: unloaded.code, stdout: unloaded.stdout }).toEqual({ code: 2, stdout: '' });
      expect(unloaded.stderr).toMatch(/Input\/output error/);
      const status = JSON.parse((await runCli(['status', mountpoint, '--json'], { env: f.env })).stdout) as { offline: boolean; generation: number };
      expect(status).toMatchObject({ offline: true, generation: 1 });
    } finally {
      await offline.unmount();
    }
  });
});
