import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex } from '../hash.js';
import { isRunning } from '../pid.js';
import { sendControl } from './control.js';

/** A publish does not wait longer than this for a mount to take its "refresh now". */
const NOTIFY_TIMEOUT_MS = 2_000;

/** One running mount on this host, so that a publish can tell it to refresh at once. */
export interface MountRecord {
  pid: number;
  mountpoint: string;
  store: string;
  /** The mount's control socket (`rezfs status`). */
  socket: string;
}

export function runtimeDir(): string {
  if (process.env.REZFS_RUNTIME_DIR) return process.env.REZFS_RUNTIME_DIR;
  const uid = process.getuid?.() ?? 0;
  return uid === 0 ? '/run/rezfs' : join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), `rezfs-${uid}`);
}

const recordName = (mountpoint: string) => sha256Hex(mountpoint).slice(0, 16);
const recordFile = (mountpoint: string) => join(runtimeDir(), `${recordName(mountpoint)}.json`);

/** Where a mount of `mountpoint` listens for control commands. */
export function controlSocketPath(mountpoint: string): string {
  return join(runtimeDir(), `${recordName(mountpoint)}.sock`);
}

/** The record of the mount at `mountpoint`, if one is running. */
export async function findMount(mountpoint: string): Promise<MountRecord | undefined> {
  const record = await readFile(recordFile(mountpoint), 'utf8').then((t) => JSON.parse(t) as MountRecord).catch(() => undefined);
  return record && isRunning(record.pid) ? record : undefined;
}

/** Records a mount; the returned function removes the record again. */
export async function registerMount(record: MountRecord): Promise<() => Promise<void>> {
  await mkdir(runtimeDir(), { recursive: true, mode: 0o755 });
  const file = recordFile(record.mountpoint);
  await writeFile(file, JSON.stringify(record));
  return () => rm(file, { force: true });
}

/**
 * Tells every mount of `storeUrl` on this host to refresh now, over its control socket; returns how
 * many were told. A signal to the pid a record names could hit an unrelated process that reused it;
 * a socket nobody listens on is a mount that died without cleaning up, and its record is removed.
 */
export async function notifyMounts(storeUrl: string): Promise<number> {
  const dir = runtimeDir();
  let told = 0;
  for (const name of (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'))) {
    const record = await readFile(join(dir, name), 'utf8').then((t) => JSON.parse(t) as MountRecord).catch(() => undefined);
    if (record?.store !== storeUrl) continue;
    try {
      await sendControl(record.socket, 'refresh', NOTIFY_TIMEOUT_MS);
      told++;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ECONNREFUSED' || code === 'ENOENT') await rm(join(dir, name), { force: true });
    }
  }
  return told;
}
