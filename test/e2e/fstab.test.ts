/**
 * scripts/mount.rezfs, the mount(8) helper behind `mount -t rezfs`, /etc/fstab lines and systemd .mount units.
 *
 * util-linux mount(8) runs `/sbin/mount.rezfs <source> <mountpoint> [-sfnv] -o <options>` with the options it does
 * not keep for itself (it strips noauto, comment=, x-*; passes rw/ro, nofail, _netdev, nosuid, ...), with HOME
 * removed and PATH reset to a default. The helper is first called exactly that way from a copy in a temp dir; then,
 * when running as root and no /sbin/mount.rezfs exists, it is installed there for the duration of the file and
 * driven by the real mount(8) and umount(8), from the command line and from an fstab file (`mount -T`).
 */
import { constants } from 'node:fs';
import { access, chmod, copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, REPO_ROOT, findMount, forceUnmountAll, isMounted, pidAlive, runCli, runProcess, waitFor } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const HELPER = join(REPO_ROOT, 'scripts', 'mount.rezfs');
const SBIN_HELPER = '/sbin/mount.rezfs';
/** The PATH mount(8) gives its helpers. */
const MOUNT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const MESSAGE = 'payload read through a mount made by mount.rezfs\n';

let work: Awaited<ReturnType<typeof tempDir>>;
let store: string;
let helper: string;
let env: Record<string, string | undefined>;
const servingPids: number[] = [];

beforeAll(async () => {
  work = await tempDir('fstab');
  const repo = join(work.path, 'repo');
  await writeTree(repo, {
    'hello/1.0.0/package.py': packageDefinition('hello', '1.0.0'),
    'hello/1.0.0/share/message.txt': MESSAGE,
  });
  store = `file://${join(work.path, 'store')}`;
  const published = await runCli(['publish', repo, '--store', store]);
  expect(published.code, published.stderr).toBe(0);
  // Installed as an admin would: a copy, so it finds rezfs through REZFS_BIN (from the defaults file).
  helper = join(work.path, 'sbin', 'mount.rezfs');
  await mkdir(join(work.path, 'sbin'));
  await copyFile(HELPER, helper);
  await chmod(helper, 0o755);
  const defaults = join(work.path, 'default-rezfs');
  await writeFile(defaults, `REZFS_BIN=${CLI_PATH}\nREZFS_RUNTIME_DIR=${join(work.path, 'run')}\n`);
  // mount(8)'s environment for helpers: no HOME, the default PATH.
  env = { HOME: undefined, PATH: MOUNT_PATH, REZFS_DEFAULTS: defaults, REZFS_BIN: undefined, REZFS_RUNTIME_DIR: undefined };
});

afterAll(async () => {
  await forceUnmountAll([work.path]);
  for (const pid of servingPids) await waitFor(() => !pidAlive(pid), 5_000);
  await work?.remove();
});

const pidOf = (stdout: string) => Number(/\bpid (\d+)/.exec(stdout)?.[1]);

/** The serving process's arguments, NUL-separated in /proc. */
const cmdline = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');

describe('mount.rezfs as mount(8) calls it', () => {
  it('turns mount options into rezfs mount flags, ignores the generic ones, refuses unknown ones unless -s', async () => {
    const options = 'ro,nosuid,nodev,noexec,cache-dir=/var/cache/rezfs,cache_size=20G,allow_other,refresh=30s,' +
      'mirror=http://cache.site:8080/rez/prod,mirror=file:///srv/rez,trust-key=/etc/rezfs/studio.pub,read-timeout=20s,' +
      'memory-limit=1G,_netdev,nofail,user,relatime';
    const shown = await runProcess(helper, ['s3://rez-packages/prod', '/packages', '-f', '-v', '-o', options], { env });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stderr.trim()).toBe(
      `mount.rezfs: '${CLI_PATH}' 'mount' '/packages' '--store' 's3://rez-packages/prod' '--cache-dir' '/var/cache/rezfs' ` +
        `'--cache-size' '20G' '--allow-other' '--refresh' '30s' '--mirror' 'http://cache.site:8080/rez/prod' ` +
        `'--mirror' 'file:///srv/rez' '--trust-key' '/etc/rezfs/studio.pub' '--read-timeout' '20s' '--memory-limit' '1G'`,
    );

    const unknown = await runProcess(helper, ['s3://b/p', '/packages', '-o', 'rw,uid=1000'], { env });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/unknown option uid=1000/);
    const sloppy = await runProcess(helper, ['s3://b/p', '/packages', '-s', '-f', '-o', 'rw,uid=1000'], { env });
    expect(sloppy.code).toBe(0);
    expect(sloppy.stderr).toMatch(/ignoring unknown option uid=1000/);
    expect((await runProcess(helper, ['s3://b/p', '/packages', '-o', 'cache-dir'], { env })).code).toBe(1);
    expect((await runProcess(helper, ['s3://b/p'], { env })).code).toBe(1);
  });

  it('finds rezfs next to its real path when installed as a symlink into a checkout', async () => {
    const linked = join(work.path, 'sbin-link', 'mount.rezfs');
    await mkdir(join(work.path, 'sbin-link'));
    await symlink(HELPER, linked);
    const shown = await runProcess(linked, ['file:///x', '/mnt/x', '-f'], { env: { ...env, REZFS_DEFAULTS: '/nonexistent' } });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stderr).toContain(`'node' '${CLI_PATH}' 'mount' '/mnt/x' '--store' 'file:///x'`);
  });

  it('mounts with the options given, and rezfs unmount removes the mount', async () => {
    const mnt = join(work.path, 'mnt');
    const cacheDir = join(work.path, 'cache');
    await mkdir(mnt);
    const r = await runProcess(helper, [store, mnt, '-o', `rw,cache-dir=${cacheDir},cache-size=64M,allow_other,refresh=5s,read-timeout=20s,_netdev,nofail`], { env });
    expect(r.code, r.stderr).toBe(0);
    const pid = pidOf(r.stdout);
    expect(pid, r.stdout).toBeGreaterThan(0);
    servingPids.push(pid);
    const mounted = findMount(mnt);
    expect(mounted?.fsType).toBe('fuse.rezfs');
    expect(await readFile(join(mnt, 'hello/1.0.0/share/message.txt'), 'utf8')).toBe(MESSAGE);
    const args = await cmdline(pid);
    for (const [flag, value] of [['--cache-dir', cacheDir], ['--cache-size', '64M'], ['--refresh', '5s'], ['--read-timeout', '20s']]) {
      expect(args[args.indexOf(flag!) + 1], flag).toBe(value);
    }
    expect(args).toContain('--allow-other');
    expect((await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.includes(` ${mnt} `))).toMatch(/allow_other/);
    await access(join(cacheDir, 'mount.log'), constants.R_OK); // the background mount logs to its cache dir

    const unmounted = await runCli(['unmount', mnt]);
    expect(unmounted.code, unmounted.stderr).toBe(0);
    expect(isMounted(mnt)).toBe(false);
    expect(await waitFor(() => !pidAlive(pid), 5_000)).toBe(true);
  });

  it('answers with mount(8) exit codes: 1 for bad usage, 32 for a failed mount', async () => {
    const mnt = join(work.path, 'mnt-fail');
    await mkdir(mnt);
    const noMountpoint = await runProcess(helper, [store, join(work.path, 'missing'), '-o', `cache-dir=${join(work.path, 'cache-fail')}`], { env });
    expect(noMountpoint.code).toBe(1);
    expect(noMountpoint.stderr).toMatch(/does not exist/);
    // Nothing listens on port 1: the store cannot be read, the mount fails.
    const down = await runProcess(helper, ['http://127.0.0.1:1/rez', mnt, '-o', `cache-dir=${join(work.path, 'cache-fail')}`], { env, timeoutMs: 60_000 });
    expect(down.code, down.stderr).toBe(32);
    expect(isMounted(mnt)).toBe(false);
  });

  // A bad store URL is bad usage (rezfs exits 2, which the helper maps to mount(8)'s 1), reported before the mount
  // goes to the background.
  it('a bad store URL is bad usage, with the reason on stderr', async () => {
    const mnt = join(work.path, 'mnt-fail');
    const badUrl = await runProcess(helper, ['nope://store', mnt, '-o', `cache-dir=${join(work.path, 'cache-fail')}`], { env });
    expect(isMounted(mnt)).toBe(false);
    expect(badUrl.stderr).toMatch(/bad store URL/);
    expect(badUrl.code).toBe(1);
  });
});

// Real mount(8): needs root, and must not replace a mount.rezfs someone installed.
const realMountSkip =
  process.getuid?.() !== 0 ? 'not root' : (await access(SBIN_HELPER).then(() => true, () => false)) ? `${SBIN_HELPER} already exists` : undefined;
if (realMountSkip) console.warn(`[fstab.test] mount(8) tests skipped: ${realMountSkip}`);

describe.skipIf(realMountSkip !== undefined)(`mount(8) with ${SBIN_HELPER} installed for this test`, () => {
  let installed = false;
  beforeAll(async () => {
    await copyFile(HELPER, SBIN_HELPER, constants.COPYFILE_EXCL);
    installed = true;
    await chmod(SBIN_HELPER, 0o755);
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    if (installed) await rm(SBIN_HELPER, { force: true });
  });

  // The test's environment minus HOME and PATH is what mount(8) hands the helper; REZFS_DEFAULTS points it at ours.
  const mountEnv = () => ({ REZFS_DEFAULTS: env.REZFS_DEFAULTS, REZFS_BIN: undefined, REZFS_RUNTIME_DIR: undefined });

  it('mount -t rezfs <store> <dir> -o ... mounts, umount unmounts', async () => {
    const mnt = join(work.path, 'mnt-t');
    await mkdir(mnt);
    const r = await runProcess('mount', ['-t', 'rezfs', store, mnt, '-o', `cache-dir=${join(work.path, 'cache-t')},allow_other,_netdev,nofail,noauto,x-systemd.automount`], { env: mountEnv() });
    expect(r.code, r.stderr).toBe(0);
    servingPids.push(pidOf(r.stdout));
    expect(findMount(mnt)?.fsType).toBe('fuse.rezfs');
    expect(await readFile(join(mnt, 'hello/1.0.0/share/message.txt'), 'utf8')).toBe(MESSAGE);
    const umount = await runProcess('umount', [mnt], { timeoutMs: 10_000 });
    expect(umount.code, umount.stderr).toBe(0);
    expect(isMounted(mnt)).toBe(false);
    expect(await waitFor(() => !pidAlive(pidOf(r.stdout)), 5_000)).toBe(true);
  });

  it('an fstab line mounts with `mount <dir>` (here `mount -T <fstab> <dir>`), rezfs unmount unmounts', async () => {
    const mnt = join(work.path, 'mnt-fstab');
    await mkdir(mnt);
    const fstab = join(work.path, 'fstab');
    await writeFile(fstab, `# a farm node's line\n${store} ${mnt} rezfs cache-dir=${join(work.path, 'cache-fstab')},refresh=30s,allow_other,_netdev 0 0\n`);
    const r = await runProcess('mount', ['-T', fstab, mnt], { env: mountEnv() });
    expect(r.code, r.stderr).toBe(0);
    servingPids.push(pidOf(r.stdout));
    expect(await readFile(join(mnt, 'hello/1.0.0/share/message.txt'), 'utf8')).toBe(MESSAGE);
    const unmounted = await runCli(['unmount', mnt]);
    expect(unmounted.code, unmounted.stderr).toBe(0);
    expect(isMounted(mnt)).toBe(false);
  });

  it('mount -a mounts the fstab lines of type rezfs', async () => {
    const mnt = join(work.path, 'mnt-all');
    await mkdir(mnt);
    await writeFile(join(work.path, 'fstab-all'), `${store} ${mnt} rezfs cache-dir=${join(work.path, 'cache-all')},_netdev 0 0\n`);
    const first = await runProcess('mount', ['-T', join(work.path, 'fstab-all'), '-a', '-t', 'rezfs'], { env: mountEnv() });
    expect(first.code, first.stderr).toBe(0);
    servingPids.push(pidOf(first.stdout));
    expect(await readFile(join(mnt, 'hello/1.0.0/share/message.txt'), 'utf8')).toBe(MESSAGE);
  });

  // The mount table shows the store URL as the source, so mount(8) sees that the fstab line is mounted already.
  it('a second mount -a skips the line that is mounted already', async () => {
    const mnt = join(work.path, 'mnt-all');
    try {
      expect(isMounted(mnt)).toBe(true);
      const again = await runProcess('mount', ['-T', join(work.path, 'fstab-all'), '-a', '-t', 'rezfs'], { env: mountEnv() });
      expect(again.code, again.stderr).toBe(0);
    } finally {
      await forceUnmountAll([mnt]);
    }
  });
});
