/**
 * Run the built CLI (dist/cli/main.js) as a child process, and mount/unmount stores with it.
 *
 * Rules this module follows (and tests should too):
 *  - never a synchronous exec while a FUSE mount may be involved (a stuck mount would freeze the test runner);
 *  - never stat/readdir a mountpoint while unmounting (a stuck mount would hang): mount state comes from
 *    /proc/self/mountinfo;
 *  - only kill pids we started (or that our `rezfs mount` reported as its serving process, after checking that
 *    /proc/<pid>/cmdline still is ours), never by name.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../src/deadline.js';
import { isRunning } from '../../src/pid.js';
import { readMountTableSync, type MountEntry } from '../../src/mount-table.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI_PATH = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');
/**
 * True in the pass that repeats the mounting suites on a second FUSE binding (vitest.config.ts). A case that
 * never reaches the binding (a refusal before mounting, a publish) runs in the first pass only:
 * `it.skipIf(onSecondBinding)`.
 */
export const onSecondBinding = process.env.REZFS_TEST_SECOND_BINDING === '1';

export interface RunCliOptions {
  /** Merged over process.env (a value of undefined removes the variable). */
  env?: Record<string, string | undefined>;
  /** Start from an empty environment (plus PATH, HOME) instead of process.env. */
  cleanEnv?: boolean;
  uid?: number;
  gid?: number;
  /** Default 60 s; the child is then sent SIGTERM, then SIGKILL after 3 s. */
  timeoutMs?: number;
  cwd?: string;
  /** Written to the child's stdin (stdin is closed either way). */
  input?: string;
  /** Run this script instead of dist/cli/main.js (for testing the helper itself). */
  script?: string;
}

export interface CliResult {
  /** Exit code; -1 when the process was killed by a signal (see `signal`). */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

function buildEnv(opts: RunCliOptions): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = opts.cleanEnv
    ? { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: process.env.HOME ?? '/root' }
    : { ...process.env };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

export const pidAlive = isRunning;

/** Poll until true or a deadline (src/deadline.ts: the benchmark polls with it too). */
export { waitFor };

/** Spawn any command with a timeout, never through a shell. Resolves once it exits (stdio drained or 1 s grace). */
export function runProcess(
  command: string,
  args: string[],
  opts: RunCliOptions & { env?: Record<string, string | undefined> } = {},
): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: opts.cwd ?? REPO_ROOT,
      env: buildEnv(opts),
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');

    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, 'SIGTERM');
        } catch {
          /* gone */
        }
        killTimer = setTimeout(() => {
          if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
            try {
              process.kill(child.pid, 'SIGKILL');
            } catch {
              /* gone */
            }
          }
        }, 3000);
      }
    }, opts.timeoutMs ?? 60_000);

    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      // A daemonizing child may have handed our pipes to a grandchild: don't wait for them.
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({ code: code ?? -1, signal, stdout, stderr, timedOut, durationMs: Date.now() - started });
    };
    child.on('error', (e) => {
      stderr += `spawn error: ${e.message}\n`;
      finish(-1, null);
    });
    child.on('close', (code, signal) => finish(code, signal));
    child.on('exit', (code, signal) => {
      // 'close' normally follows at once; if a grandchild still holds stdout/stderr, give up waiting after 1 s.
      setTimeout(() => finish(code, signal), 1000).unref();
    });
  });
}

/**
 * A copy of the built CLI in a fresh temp dir that every user may enter: tests that run the CLI as another user
 * cannot rely on the checkout (root's home, say, is 0700). Hard links where the file system allows (fast), else a
 * copy. `native: false` leaves the native addon out, as a checkout without libfuse3-dev would. Run it with
 * runCli's `script: copy.cli`.
 */
export async function cliCopy(options: { native: boolean }): Promise<{ root: string; cli: string; remove(): Promise<void> }> {
  const root = await mkdtemp(path.join(tmpdir(), 'rezfs-cli-copy-'));
  await chmod(root, 0o755);
  const copy = async (rel: string, link: boolean) => {
    await mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    const linked = link ? await runProcess('cp', ['-al', path.join(REPO_ROOT, rel), path.join(root, rel)], { timeoutMs: 120_000 }) : undefined;
    if (linked?.code !== 0) {
      const copied = await runProcess('cp', ['-r', path.join(REPO_ROOT, rel), path.join(root, rel)], { timeoutMs: 120_000 });
      if (copied.code !== 0) throw new Error(`cannot copy ${rel}: ${copied.stderr}`);
    }
  };
  for (const rel of ['package.json', 'dist', ...(options.native ? ['native/build/Release/rezfs_fuse.node'] : [])]) await copy(rel, false);
  await copy('node_modules', true); // 100 MiB: linked, so its files keep their modes (npm's 0644)
  // Directories only: chmod on a hard link would change the checkout's own file.
  await runProcess('find', [root, '-type', 'd', '-exec', 'chmod', 'a+rx', '{}', '+'], { timeoutMs: 60_000 });
  await runProcess('chmod', ['-R', 'a+r', path.join(root, 'dist'), path.join(root, 'package.json')]);
  return { root, cli: path.join(root, 'dist', 'cli', 'main.js'), remove: () => rm(root, { recursive: true, force: true }) };
}

/** A command's stderr without `rezfs: warning:` lines (mounting under /tmp, as tests do, is warned about). */
export function withoutWarnings(stderr: string): string {
  return stderr.replace(/^rezfs: warning: .*\n/gm, '');
}

/** Run `node dist/cli/main.js ...args`. */
export function runCli(args: string[], opts: RunCliOptions = {}): Promise<CliResult> {
  return runProcess(process.execPath, [opts.script ?? CLI_PATH, ...args], opts);
}

// ---------------------------------------------------------------------------------------------------------------
// Mount table

/** A mount table entry, as the CLI parses it (src/mount-table.ts): one parser for the tests and the product. */
export type MountInfo = MountEntry;

/** Parse /proc/self/mountinfo (reading it never touches any FUSE filesystem). */
export const readMountTable = readMountTableSync;

/** Absolute, symlink-resolved path without stat-ing the last component (which may be a stuck mount). */
export function canonicalPath(p: string): string {
  const abs = path.resolve(p);
  const parent = path.dirname(abs);
  try {
    return path.join(realpathSync(parent), path.basename(abs));
  } catch {
    return abs;
  }
}

/** The topmost mount at exactly this path, if any. */
export function findMount(p: string): MountInfo | undefined {
  const cp = canonicalPath(p);
  const all = readMountTable().filter((m) => m.mountpoint === cp);
  return all[all.length - 1];
}

export function isMounted(p: string): boolean {
  return findMount(p) !== undefined;
}

/** Mounts at or below `dir`, deepest first. */
export function mountsUnder(dir: string): MountInfo[] {
  const cp = canonicalPath(dir);
  return readMountTable()
    .filter((m) => m.mountpoint === cp || m.mountpoint.startsWith(cp.endsWith('/') ? cp : `${cp}/`))
    .sort((a, b) => b.mountpoint.length - a.mountpoint.length || b.mountId - a.mountId);
}

// ---------------------------------------------------------------------------------------------------------------
// Mount / unmount

export interface MountStoreOptions {
  store: string;
  mountpoint: string;
  cacheDir?: string;
  /** Extra env for the CLI (e.g. the S3 server's env). */
  env?: Record<string, string | undefined>;
  /** Extra CLI arguments, e.g. ['--refresh', '1s']. */
  extraArgs?: string[];
  uid?: number;
  gid?: number;
  /** Timeout for `rezfs mount` to return (default 60 s). */
  timeoutMs?: number;
}

export interface UnmountReport {
  /** How the mount went away: via `rezfs unmount`, lazy umount, or after aborting the FUSE connection. */
  method: 'not-mounted' | 'cli' | 'umount-lazy' | 'abort';
  /** Whether the serving process was still alive after unmount and had to be killed. */
  killedPid: boolean;
  log: string[];
}

export interface MountHandle {
  pid: number;
  mountpoint: string;
  stdout: string;
  stderr: string;
  unmount(): Promise<UnmountReport>;
}

/** mountpoint (canonical) -> serving pid, for forceUnmountAll(). */
const tracked = new Map<string, number | undefined>();

/** True if /proc/<pid>/cmdline looks like our CLI (guards against pid reuse before killing). */
function isOurProcess(pid: number): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes('main.js') || cmd.includes('rezfs');
  } catch {
    return false;
  }
}

async function killServingPid(pid: number | undefined, log: string[]): Promise<boolean> {
  if (pid === undefined || !pidAlive(pid)) return false;
  if (await waitFor(() => !pidAlive(pid), 5000)) return false;
  if (!isOurProcess(pid)) {
    log.push(`pid ${pid} is alive but no longer looks like rezfs; not killing it`);
    return false;
  }
  log.push(`serving pid ${pid} still alive 5 s after unmount: SIGTERM`);
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  if (await waitFor(() => !pidAlive(pid), 3000)) return true;
  log.push(`pid ${pid}: SIGKILL`);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  await waitFor(() => !pidAlive(pid), 3000);
  return true;
}

const FUSECTL = '/sys/fs/fuse/connections';

async function ensureFusectl(log: string[]): Promise<boolean> {
  if (readMountTable().some((m) => m.fsType === 'fusectl')) return true;
  if (!existsSync(FUSECTL)) return false;
  const r = await runProcess('mount', ['-t', 'fusectl', 'fusectl', FUSECTL], { timeoutMs: 10_000 });
  log.push(`mount -t fusectl: exit ${r.code} ${r.stderr.trim()}`);
  return r.code === 0;
}

/** Abort a FUSE connection by its device ("0:NN"): pending and future requests fail with ENOTCONN. */
export async function abortFuseConnection(dev: string, log: string[] = []): Promise<boolean> {
  const [maj, min] = dev.split(':').map(Number);
  if (maj === undefined || min === undefined || Number.isNaN(maj) || Number.isNaN(min)) return false;
  if (!(await ensureFusectl(log))) return false;
  const id = String((maj << 20) | min);
  const abortFile = path.join(FUSECTL, id, 'abort');
  if (!existsSync(abortFile)) {
    log.push(`no ${abortFile} (connections: ${safeList(FUSECTL).join(',')})`);
    return false;
  }
  try {
    await writeFile(abortFile, '1');
    log.push(`aborted FUSE connection ${id}`);
    return true;
  } catch (e) {
    log.push(`abort ${id} failed: ${(e as Error).message}`);
    return false;
  }
}

function safeList(d: string): string[] {
  try {
    return readdirSync(d);
  } catch {
    return [];
  }
}

/**
 * Unmount `mountpoint` however it takes: `rezfs unmount`, then `umount -l` (or `fusermount -uz` when not root),
 * then abort the FUSE connection through fusectl. Finally makes sure `pid` (the serving process) is gone.
 */
export async function unmountPath(
  mountpoint: string,
  opts: { pid?: number; env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<UnmountReport> {
  const log: string[] = [];
  const mp = canonicalPath(mountpoint);
  const info = findMount(mp);
  const report = (method: UnmountReport['method'], killedPid: boolean): UnmountReport => {
    tracked.delete(mp);
    return { method, killedPid, log };
  };
  if (!info) return report('not-mounted', await killServingPid(opts.pid, log));

  const r = await runCli(['unmount', mp], { env: opts.env ?? {}, timeoutMs: opts.timeoutMs ?? 10_000 });
  log.push(`rezfs unmount: exit ${r.code}${r.timedOut ? ' (timed out)' : ''} ${r.stderr.trim()}`);
  if (!isMounted(mp)) {
    const killed = await killServingPid(opts.pid, log);
    return report('cli', killed);
  }

  const isRoot = process.getuid?.() === 0;
  const lazy = isRoot
    ? await runProcess('umount', ['-l', mp], { timeoutMs: 10_000 })
    : await runProcess('fusermount', ['-u', '-z', mp], { timeoutMs: 10_000 });
  log.push(`${isRoot ? 'umount -l' : 'fusermount -uz'}: exit ${lazy.code} ${lazy.stderr.trim()}`);
  const stillMounted = isMounted(mp);
  const daemonGone = opts.pid === undefined ? true : await waitFor(() => !pidAlive(opts.pid!), 3000);
  if (!stillMounted && daemonGone) return report('umount-lazy', false);

  // Stuck: abort the connection so nothing keeps waiting on the daemon, then detach and reap.
  await abortFuseConnection(info.device, log);
  if (isMounted(mp)) {
    const again = await runProcess('umount', ['-l', mp], { timeoutMs: 10_000 });
    log.push(`umount -l after abort: exit ${again.code} ${again.stderr.trim()}`);
  }
  const killed = await killServingPid(opts.pid, log);
  if (isMounted(mp)) log.push(`WARNING: ${mp} is still mounted`);
  return report('abort', killed);
}

/**
 * `rezfs mount <mountpoint> --store <store> [--cache-dir <dir>]` (daemonized). Resolves once the CLI has returned
 * and the mount is in the mount table; rejects with the CLI's output otherwise.
 */
export async function mountStore(opts: MountStoreOptions): Promise<MountHandle> {
  const mp = canonicalPath(opts.mountpoint);
  // A dead mount (ENOTCONN) is left for `rezfs mount` to detect and clean up: that is under test too.
  await mkdir(mp, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOTCONN') throw err;
  });
  if (opts.cacheDir) await mkdir(opts.cacheDir, { recursive: true });
  const args = ['mount', mp, '--store', opts.store];
  if (opts.cacheDir) args.push('--cache-dir', opts.cacheDir);
  args.push(...(opts.extraArgs ?? []));
  const r = await runCli(args, {
    env: opts.env ?? {},
    timeoutMs: opts.timeoutMs ?? 60_000,
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
    ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
  });
  const m = /\bpid (\d+)/.exec(r.stdout);
  const pid = m ? Number(m[1]) : undefined;
  if (r.code !== 0 || pid === undefined || !isMounted(mp)) {
    // Clean up whatever half-started.
    if (isMounted(mp) || (pid !== undefined && pidAlive(pid))) await unmountPath(mp, { pid, env: opts.env ?? {} });
    throw new Error(
      `rezfs mount failed (exit ${r.code}${r.timedOut ? ', timed out' : ''}` +
        `${pid === undefined ? ', no "pid N" on stdout' : ''}${isMounted(mp) ? '' : ', not in mount table'})\n` +
        `args: ${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
    );
  }
  tracked.set(mp, pid);
  return {
    pid,
    mountpoint: mp,
    stdout: r.stdout,
    stderr: r.stderr,
    unmount: () => unmountPath(mp, { pid, env: opts.env ?? {} }),
  };
}

/**
 * For afterAll: unmount every mount made by mountStore() that is still mounted, plus any mount at or below the
 * given paths (e.g. a test's temp dir), deepest first. Never throws; returns what it did.
 */
export async function forceUnmountAll(paths: string[] = []): Promise<string[]> {
  const done: string[] = [];
  const targets = new Map<string, number | undefined>();
  for (const [mp, pid] of tracked) targets.set(mp, pid);
  for (const p of paths) for (const m of mountsUnder(p)) if (!targets.has(m.mountpoint)) targets.set(m.mountpoint, undefined);
  const ordered = [...targets.keys()].sort((a, b) => b.length - a.length);
  for (const mp of ordered) {
    try {
      const rep = await unmountPath(mp, { pid: targets.get(mp) });
      if (rep.method !== 'not-mounted' || rep.killedPid) done.push(`${mp}: ${rep.method}${rep.killedPid ? ' (killed daemon)' : ''}`);
    } catch (e) {
      done.push(`${mp}: error ${(e as Error).message}`);
    }
  }
  return done;
}

// ---------------------------------------------------------------------------------------------------------------
// rez

/**
 * The `rez` executable to use for end-to-end tests, or undefined (tests should then skip):
 * $REZ_BIN/rez (REZ_BIN = a directory containing rez), else `rez` on PATH, else /opt/rez/bin/rez/rez.
 */
export function findRez(): string | undefined {
  const candidates: string[] = [];
  if (process.env.REZ_BIN) candidates.push(path.join(process.env.REZ_BIN, 'rez'));
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir) candidates.push(path.join(dir, 'rez'));
  candidates.push('/opt/rez/bin/rez/rez');
  for (const c of candidates) {
    try {
      const st = statSync(c);
      if (st.isFile() && st.mode & 0o111) return c;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/**
 * The environment of a rez run that nothing of the caller's rez configuration reaches: `packagesPath` as the only
 * repository, its own home and local packages dir under `home` (created), no resolve caching, no memcached, no colours.
 */
export function isolatedRezEnv(home: string, packagesPath: string): Record<string, string> {
  mkdirSync(path.join(home, 'local-packages'), { recursive: true });
  return {
    HOME: home,
    REZ_PACKAGES_PATH: packagesPath,
    REZ_RELEASE_PACKAGES_PATH: packagesPath,
    REZ_LOCAL_PACKAGES_PATH: path.join(home, 'local-packages'),
    REZ_DISABLE_HOME_CONFIG: '1',
    REZ_RESOLVE_CACHING: '0',
    REZ_MEMCACHED_URI: '',
    REZ_COLOR_ENABLED: '0',
  };
}

/** Run `rez <args>` with REZ_PACKAGES_PATH set (a mount or a plain repo). cwd defaults to the repo root. */
export function runRez(
  args: string[],
  opts: RunCliOptions & { packagesPath: string | string[]; rez?: string },
): Promise<CliResult> {
  const rez = opts.rez ?? findRez();
  if (!rez) throw new Error('rez not found: set REZ_BIN or put rez on PATH (tests should skip when findRez() is undefined)');
  const packagesPath = Array.isArray(opts.packagesPath) ? opts.packagesPath.join(':') : opts.packagesPath;
  return runProcess(rez, args, { ...opts, env: { ...opts.env, REZ_PACKAGES_PATH: packagesPath } });
}
