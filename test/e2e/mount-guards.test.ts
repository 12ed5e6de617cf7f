/**
 * What `rezfs mount` refuses or bounds before and while it starts, through the real CLI and real mounts: stacking
 * on a mount, option values and environment variables that make no sense, paths it cannot use, a child that never
 * reports ready, a reason hidden in a log nobody reads; and what it warns about.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, REPO_ROOT, cliCopy, findMount, forceUnmountAll, isMounted, mountStore, onSecondBinding, pidAlive, readMountTable, runCli, runProcess, waitFor, withoutWarnings } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

let work: Awaited<ReturnType<typeof tempDir>>;
let store: string;
let env: Record<string, string>;
let n = 0;
const mnt = async () => {
  const dir = join(work.path, `mnt${n++}`);
  await mkdir(dir);
  return dir;
};
const cache = () => join(work.path, `cache${n++}`);
const oneLine = (stderr: string) => withoutWarnings(stderr).trimEnd().split('\n');

beforeAll(async () => {
  work = await tempDir('guards');
  await chmod(work.path, 0o755); // one case mounts as an unprivileged user
  const repo = join(work.path, 'repo');
  await writeTree(repo, { 'hello/1.0.0/package.py': packageDefinition('hello', '1.0.0') });
  store = `file://${join(work.path, 'store')}`;
  expect((await runCli(['publish', repo, '--store', store])).code).toBe(0);
  env = { REZFS_RUNTIME_DIR: join(work.path, 'run') };
});
afterAll(async () => {
  await forceUnmountAll([work.path]);
  await work?.remove();
});

describe('mounting onto a mount', () => {
  it('is refused with exit 2, through rezfs mount and mount.rezfs; the first mount stays the only one', async () => {
    const dir = await mnt();
    const first = await mountStore({ store, mountpoint: dir, cacheDir: cache(), env });
    try {
      const again = await runCli(['mount', dir, '--store', store, '--cache-dir', cache()], { env });
      expect(again.code, again.stderr).toBe(2);
      expect(oneLine(again.stderr)).toEqual([`rezfs: ${dir} is already mounted (fuse.rezfs ${store}); unmount it first (rezfs unmount ${dir})`]);
      const helper = await runProcess('sh', [join(REPO_ROOT, 'scripts', 'mount.rezfs'), store, dir], { env: { ...env, REZFS_BIN: CLI_PATH } });
      expect(helper.code, helper.stderr).toBe(1); // mount(8)'s "bad usage"
      expect(helper.stderr).toMatch(/is already mounted/);
      expect(readMountTable().filter((m) => m.mountpoint === dir)).toHaveLength(1);
      const status = JSON.parse((await runCli(['status', dir, '--json'], { env })).stdout) as { pid: number };
      expect(status.pid).toBe(first.pid);
    } finally {
      await first.unmount();
    }
  });

  it('a dead mount there (its server killed) is still detached and mounted again', async () => {
    const dir = await mnt();
    const first = await mountStore({ store, mountpoint: dir, cacheDir: cache(), env });
    process.kill(first.pid, 'SIGKILL');
    await waitFor(() => !pidAlive(first.pid), 5_000);
    const second = await mountStore({ store, mountpoint: dir, cacheDir: cache(), env });
    try {
      expect(second.stderr).toMatch(/is a dead mount \(its server exited\); detaching it/);
      expect(await readdir(dir)).toEqual(['hello']);
    } finally {
      await second.unmount();
    }
  });
});

describe('option values and environment variables', () => {
  const refused = async (args: string[], extraEnv: Record<string, string>, message: RegExp) => {
    const dir = await mnt();
    const r = await runCli(['mount', dir, '--store', store, '--cache-dir', cache(), ...args], { env: { ...env, ...extraEnv } });
    expect(r.code, `${args.join(' ')} ${JSON.stringify(extraEnv)}: ${r.stderr}`).toBe(2);
    expect(oneLine(r.stderr), args.join(' ')).toHaveLength(1);
    expect(r.stderr, args.join(' ')).toMatch(message);
    expect(isMounted(dir)).toBe(false);
  };

  // Refused while the options are read, before any binding is chosen.
  it.skipIf(onSecondBinding)('refuses nonsense, naming the flag or the environment variable it came from', async () => {
    await refused(['--memory-limit', '1K'], {}, /^rezfs: --memory-limit 1K is too small: at least 160\.0 MiB/);
    await refused(['--memory-limit', '0'], {}, /^rezfs: --memory-limit 0 is too small/);
    await refused(['--memory-limit', '100T'], {}, /^rezfs: --memory-limit 100T is too big: at most .* \(a mount needs .*; this machine has /);
    await refused(['--cache-size', '0'], {}, /^rezfs: --cache-size 0 is too small: at least 8\.0 MiB/);
    await refused(['--cache-size', '1'], {}, /^rezfs: --cache-size 1 is too small/);
    await refused([], { REZFS_CACHE_SIZE: '1' }, /^rezfs: REZFS_CACHE_SIZE \(--cache-size\) 1 is too small/);
    await refused([], { REZFS_CACHE_SIZE: 'lots' }, /^rezfs: REZFS_CACHE_SIZE \(--cache-size\) "lots" is not a size/);
    await refused(['--read-timeout', '0'], {}, /^rezfs: --read-timeout 0 is out of range: use between 1s and 10m/);
    await refused(['--refresh', '1ms'], {}, /^rezfs: --refresh 1ms is out of range: use between 250ms and 24h, or 0 to poll only when a local publish says so/);
    await refused(['--store', 'file:///elsewhere'], {}, /^rezfs: --store was given 2 times \(file:\/\/.*, file:\/\/\/elsewhere\): give it once/);
    await refused(['--fuse', 'fast'], {}, /^rezfs: --fuse "fast" is not a FUSE binding; use auto, native, fuse-native/);
    for (const word of ['maybe', '2', 'ja']) await refused([], { REZFS_ALLOW_OTHER: word }, /^rezfs: REZFS_ALLOW_OTHER \(--allow-other\) ".*" is not a boolean; use 1\/0, true\/false or yes\/no/);
  });

  it('reads boolean environment variables as booleans: 0/false/no leave allow_other off, 1/true/yes turn it on', async () => {
    // Reading the words is the same code whatever the binding; the second binding's pass checks it mounts both ways.
    const words = [['0', false], ['false', false], ['no', false], ['1', true], ['true', true], ['yes', true]] as const;
    for (const [word, on] of words.filter(([w]) => !onSecondBinding || w === '0' || w === '1')) {
      const dir = await mnt();
      const m = await mountStore({ store, mountpoint: dir, cacheDir: cache(), env: { ...env, REZFS_ALLOW_OTHER: word } });
      try {
        const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.includes(` ${dir} `)) ?? '';
        expect(/allow_other/.test(line), `REZFS_ALLOW_OTHER=${word}: ${line}`).toBe(on);
      } finally {
        await m.unmount();
      }
    }
  });
});

describe('paths', () => {
  it('a cache dir that cannot be made, or is a file, and a log file in a missing directory: one line each, at once', async () => {
    const file = join(work.path, 'a-file');
    await writeFile(file, 'x');
    const cases: [string[], RegExp][] = [
      [['--cache-dir', '/proc/nope'], /^rezfs: --cache-dir \/proc\/nope: cannot create \/proc\/nope \(ENOENT\)$/],
      [['--cache-dir', file], /^rezfs: --cache-dir .*a-file: exists and is not a directory$/],
      [['--cache-dir', join(file, 'sub')], /^rezfs: --cache-dir .*a-file\/sub: .*a-file is not a directory$/],
      [['--log-file', '/nonexistent/dir/log'], /^rezfs: --log-file \/nonexistent\/dir\/log: directory \/nonexistent\/dir does not exist$/],
      [['--log-file', work.path], /^rezfs: --log-file .*: is a directory$/],
    ];
    for (const [args, message] of cases) {
      const dir = await mnt();
      const r = await runCli(['mount', dir, '--store', store, ...(args[0] === '--cache-dir' ? [] : ['--cache-dir', cache()]), ...args], { env, timeoutMs: 20_000 });
      expect({ code: r.code, timedOut: r.timedOut }, `${args.join(' ')}: ${r.stderr}`).toEqual({ code: 2, timedOut: false });
      expect(r.durationMs, args.join(' ')).toBeLessThan(10_000);
      expect(oneLine(r.stderr), args.join(' ')).toHaveLength(1);
      expect(oneLine(r.stderr)[0], args.join(' ')).toMatch(message);
    }
    const prefetched = await runCli(['prefetch', 'hello-1.0.0', '--store', store, '--cache-dir', '/proc/nope'], { env, timeoutMs: 20_000 });
    expect({ code: prefetched.code, stderr: prefetched.stderr }).toEqual({ code: 2, stderr: 'rezfs: --cache-dir /proc/nope: cannot create /proc/nope (ENOENT)\n' });
  });

  it('a file:// URL with two slashes, and keygen into a missing directory: one line naming the fix', async () => {
    const url = await runCli(['ls', '--store', 'file://srv/x']);
    expect({ code: url.code, stderr: url.stderr }).toEqual({
      code: 2,
      stderr: 'rezfs: bad store URL "file://srv/x": "srv" is read as a host name; a directory needs three slashes: file:///srv/x; use file:///abs/dir, s3://bucket/prefix, http(s)://host/prefix (read-only) or dav+http(s)://host/repo/prefix\n',
    });
    const key = await runCli(['keygen', '/nonexistent/dir/k']);
    expect({ code: key.code, stderr: key.stderr }).toEqual({ code: 2, stderr: 'rezfs: cannot write /nonexistent/dir/k: directory /nonexistent/dir does not exist\n' });
  });

  it('warns when mounting under /tmp (rez will not cache from it) or onto a non-empty directory, and mounts', async () => {
    const dir = await mnt();
    await writeFile(join(dir, 'hidden.txt'), 'x');
    const m = await mountStore({ store, mountpoint: dir, cacheDir: cache(), env });
    try {
      const underTmp = work.path.startsWith('/tmp/');
      if (underTmp) expect(m.stderr).toMatch(new RegExp(`rezfs: warning: ${dir} is under /tmp: rez never caches packages from repositories under its temp dir`));
      expect(m.stderr).toMatch(new RegExp(`rezfs: warning: ${dir} is not empty: its 1 entries are hidden while the store is mounted over them`));
    } finally {
      await m.unmount();
    }
  });
});

describe('starting in the background', () => {
  // The child is stopped before it mounts: the parent's supervision, whatever the binding.
  it.skipIf(onSecondBinding)('a child that never reports ready is given up on within 2 x --read-timeout + 20 s: stopped, nothing left mounted', async () => {
    const dir = await mnt();
    const parent = spawn(process.execPath, [CLI_PATH, 'mount', dir, '--store', store, '--cache-dir', cache(), '--read-timeout', '1s'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    parent.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((resolve) => parent.once('exit', resolve));
    // The serving child, stopped as soon as it exists: it never gets to say "ready" (a hung start, for real).
    let child: number | undefined;
    // The parent's own list of children: one small read per poll. A scan of all of /proc took long enough under
    // load for the child to become ready first and be adopted by init (and left mounted). It is stopped only once
    // it runs as the serving child (`--foreground` in its command line): stopped between fork and exec, it would
    // hold the parent inside spawn(), which waits for the exec.
    await waitFor(async () => {
      const children = await readFile(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8').catch(() => '');
      for (const pid of children.trim().split(/\s+/).filter(Boolean).map(Number)) {
        const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
        if (argv.includes('--foreground')) child = pid;
      }
      if (child !== undefined) process.kill(child, 'SIGSTOP');
      return child !== undefined;
    }, 10_000, 5);
    expect(child, 'the serving child').toBeDefined();
    const started = Date.now();
    const code = await exited;
    expect(Date.now() - started).toBeLessThan(2 * 1_000 + 20_000 + 5_000);
    expect(code).toBe(1);
    expect(stderr).toMatch(/did not report ready within 22 s; stopped it/);
    expect(await waitFor(() => !pidAlive(child!), 5_000)).toBe(true);
    expect(isMounted(dir)).toBe(false);
  }, 60_000);

  it.skipIf(!isRoot)('a mount that libfuse refuses says why (not "see the log above" of a log nobody reads)', async () => {
    // An unprivileged user: libfuse or fusermount3 refuses (no access to /dev/fuse here, or --allow-other without
    // user_allow_other in /etc/fuse.conf) and says why on the daemon's stderr, the log.
    const copy = await cliCopy({ native: true });
    try {
      const dir = await mnt();
      const cacheDir = cache();
      const run = join(work.path, 'run-nobody');
      await mkdir(cacheDir);
      await mkdir(run);
      for (const d of [dir, cacheDir, run]) await chown(d, NOBODY, NOBODY);
      await runProcess('chmod', ['-R', 'a+rX', join(work.path, 'store')]);
      const r = await runCli(['mount', dir, '--store', store, '--cache-dir', cacheDir, '--allow-other'], {
        script: copy.cli,
        cwd: copy.root,
        uid: NOBODY,
        gid: NOBODY,
        env: { REZFS_RUNTIME_DIR: run, HOME: cacheDir },
      });
      console.log(`[mount-guards] unprivileged mount: ${oneLine(r.stderr).join(' | ')}`);
      expect(r.code, r.stderr).toBe(1);
      expect(oneLine(r.stderr)).toHaveLength(1);
      expect(oneLine(r.stderr)[0]).toMatch(/^rezfs: cannot mount .*: cannot mount FUSE at .*: [^(]+ \((fuse|fusermount3?): [^;]+\)$/);
      expect(r.stderr).not.toMatch(/see the log/);
      expect(isMounted(dir)).toBe(false);
    } finally {
      await copy.remove();
    }
  });

  it('--fuse auto without the native addon serves through fuse-native and says why in the log', async () => {
    const copy = await cliCopy({ native: false });
    try {
      const dir = await mnt();
      const cacheDir = cache();
      const r = await runCli(['mount', dir, '--store', store, '--cache-dir', cacheDir, '--fuse', 'auto'], { script: copy.cli, cwd: copy.root, env });
      expect(r.code, r.stderr).toBe(0);
      try {
        const log = await readFile(join(cacheDir, 'mount.log'), 'utf8');
        expect(log).toMatch(/warn the native FUSE binding cannot be used \(the native FUSE binding is not built .*\); serving through fuse-native/);
        expect(findMount(dir)?.fsType).toMatch(/^fuse/);
        const native = await runCli(['mount', await mnt(), '--store', store, '--cache-dir', cache(), '--fuse', 'native'], { script: copy.cli, cwd: copy.root, env });
        expect(native.code).toBe(2);
        expect(oneLine(native.stderr)[0]).toMatch(/^rezfs: --fuse native: the native FUSE binding is not built .*; or use --fuse fuse-native/);
      } finally {
        await runCli(['unmount', dir], { env });
      }
    } finally {
      await copy.remove();
    }
  });
});

describe('a publish tells local mounts to refresh', () => {
  it('over their control socket: a stale record naming a live unrelated process does not signal it', async () => {
    const run = join(work.path, 'run-stale');
    await mkdir(run, { recursive: true });
    const bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      // What a mount that died without cleaning up leaves, with its pid since taken by another process.
      await writeFile(join(run, 'stale.json'), JSON.stringify({ pid: bystander.pid, mountpoint: '/gone', store, socket: join(run, 'gone.sock') }));
      const repo = join(work.path, 'repo');
      await writeTree(repo, { 'hello/1.1.0/package.py': packageDefinition('hello', '1.1.0') });
      const published = await runCli(['publish', repo, '--store', store], { env: { REZFS_RUNTIME_DIR: run } });
      expect(published.code, published.stderr).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(pidAlive(bystander.pid!), 'the bystander (SIGHUP would have killed it)').toBe(true);
      expect(existsSync(join(run, 'stale.json')), 'the stale record is removed').toBe(false);
    } finally {
      bystander.kill();
    }
  });

  it('SIGHUP makes a mount reopen its log file (logrotate), no longer refresh', async () => {
    const dir = await mnt();
    const cacheDir = cache();
    const m = await mountStore({ store, mountpoint: dir, cacheDir, env, extraArgs: ['--refresh', '0'] });
    try {
      const log = join(cacheDir, 'mount.log');
      await rename(log, `${log}.1`);
      process.kill(m.pid, 'SIGHUP');
      expect(await waitFor(async () => /SIGHUP: reopened/.test(await readFile(log, 'utf8').catch(() => '')), 5_000)).toBe(true);
      expect(pidAlive(m.pid)).toBe(true);
      const repo = join(work.path, 'repo');
      await writeTree(repo, { 'hello/1.2.0/package.py': packageDefinition('hello', '1.2.0') });
      const published = await runCli(['publish', repo, '--store', store], { env });
      expect(published.stdout).toMatch(/1 local mount\(s\) told to refresh/);
      expect(await waitFor(async () => (await readdir(join(dir, 'hello')).catch((): string[] => [])).includes('1.2.0'), 10_000)).toBe(true);
      // The log stream is written asynchronously: the new version can show before its line is flushed.
      expect(await waitFor(async () => /now serving generation/.test(await readFile(log, 'utf8')), 5_000)).toBe(true);
    } finally {
      await m.unmount();
    }
  });
});
