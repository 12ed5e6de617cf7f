/**
 * `rezfs profile`: learns the startup sets of the versions a command uses and publishes them (issue 12).
 *
 *   rezfs profile --store URL [--sign-key KEY] [--record-window 20s] -- <command> [args...]
 *   rezfs profile --store URL [--sign-key KEY] --from-cache DIR
 *
 * The first form mounts the store privately (a temporary mountpoint and an empty cache dir, so every read is cold,
 * served by its own `rezfs mount` process), runs the command with `REZ_PACKAGES_PATH` (and `REZFS_PROFILE_MOUNT`)
 * set to that mount, unmounts — the mount then writes what each version it was used read in its first
 * `--record-window` — and publishes those recordings. The second publishes what a mount of the same store already
 * recorded under its cache dir. Publishing is src/publish/attach-profiles.ts: one catalog transaction. A command
 * that fails publishes nothing. Mounts keep needing only GET and HEAD: writing takes this command's credentials.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RecordedProfiles } from '../cache/index.js';
import { profileBytes } from '../catalog/index.js';
import { streamLog } from '../log.js';
import { waitFor } from '../deadline.js';
import { isRunning } from '../pid.js';
import { attachProfiles } from '../publish/index.js';
import { openStore } from '../store/index.js';
import { readPrivateKey } from './keys.js';
import { notifyMounts } from './registry.js';
import { UsageError, formatBytes } from './units.js';
import { unmountCommand } from './unmount.js';

export interface ProfileCommand {
  store: string;
  signKey: string | undefined;
  /** Publish what this cache dir holds instead of running a command. */
  fromCache: string | undefined;
  recordWindow: string;
  fuse: string;
  command: string[];
}

/** How long the private mount's server may take to write its recordings and exit once unmounted. */
const SERVER_EXIT_MS = 30_000;

export async function profileCommand(cmd: ProfileCommand): Promise<void> {
  if ((cmd.fromCache === undefined) === (cmd.command.length === 0)) {
    throw new UsageError('rezfs profile needs either a command (after --) or --from-cache DIR, not both: e.g. rezfs profile --store URL -- rez env app -- app-start');
  }
  const signingKey = cmd.signKey === undefined ? undefined : readPrivateKey(cmd.signKey);
  const store = openStore(cmd.store);
  const log = streamLog((line) => process.stderr.write(line), false);
  try {
    const work = cmd.fromCache === undefined ? await mkdtemp(join(tmpdir(), 'rezfs-profile-')) : undefined;
    try {
      const cacheDir = cmd.fromCache ?? join(work!, 'cache');
      if (work) await recordRun(cmd, work, cacheDir);
      const { profiles, unreadable } = await new RecordedProfiles(cacheDir, store.url).list();
      for (const problem of unreadable) log.warn(`skipping an unreadable recording: ${problem}`);
      if (profiles.length === 0) throw new UsageError(`no startup profiles of ${store.url} recorded${cmd.fromCache ? ` under ${cmd.fromCache}` : ': the command used no package payload from the mount'}`);
      const summary = await attachProfiles(store, profiles, { log, ...(signingKey ? { signingKey } : {}) });
      for (const reason of summary.skipped) log.warn(`not attached: ${reason}`);
      const told = summary.generation === undefined ? 0 : await notifyMounts(store.url);
      const bytes = profiles.filter((p) => summary.attached.some((a) => a.family === p.family && a.version === p.version)).reduce((n, p) => n + profileBytes(p), 0);
      process.stdout.write(
        `profiled ${summary.attached.length} versions (${formatBytes(bytes)} of startup reads) into ${store.url}: ` +
          (summary.generation === undefined ? 'the catalog already had them' : `generation ${summary.generation}, ${summary.objectsUploaded} objects uploaded`) +
          `${summary.skipped.length > 0 ? `; ${summary.skipped.length} skipped` : ''}${told > 0 ? `; ${told} local mount(s) told to refresh` : ''}\n`,
      );
    } finally {
      if (work) await rm(work, { recursive: true, force: true });
    }
  } finally {
    await store.close();
  }
}

/** Mounts privately, runs the command on the mount, unmounts; the mount leaves its recordings in `cacheDir`. */
async function recordRun(cmd: ProfileCommand, work: string, cacheDir: string): Promise<void> {
  const mountpoint = join(work, 'mnt');
  await mkdir(mountpoint);
  const self = [...process.execArgv, process.argv[1]!];
  const mount = await run(process.execPath, [...self, 'mount', mountpoint, '--store', cmd.store, '--cache-dir', cacheDir, '--refresh', '0', '--record-window', cmd.recordWindow, '--fuse', cmd.fuse], 'pipe');
  const pid = Number(/pid (\d+)/.exec(mount.stdout)?.[1]);
  if (mount.code !== 0 || !pid) throw new Error(`could not mount ${cmd.store} to profile on: ${mount.stderr.trim() || mount.stdout.trim()}`);
  let ran: { code: number | null; signal: string | null };
  try {
    ran = await run(cmd.command[0]!, cmd.command.slice(1), 'inherit', { REZ_PACKAGES_PATH: mountpoint, REZFS_PROFILE_MOUNT: mountpoint });
  } finally {
    await unmountCommand(mountpoint);
    await waitFor(() => !isRunning(pid), SERVER_EXIT_MS, 100);
  }
  if (ran.code !== 0) throw new Error(`${cmd.command.join(' ')} ${ran.signal ? `was killed by ${ran.signal}` : `exited with code ${ran.code}`}: nothing published`);
}

function run(command: string, args: string[], stdio: 'pipe' | 'inherit', env: Record<string, string> = {}): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', stdio, stdio], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', (err) => reject(new UsageError(`cannot run ${command}: ${err.message}`)));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
