import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex } from '../hash.js';

/** One running mount on this host, so that a publish can tell it to refresh at once. */
export interface MountRecord {
  pid: number;
  mountpoint: string;
  store: string;
}

export function runtimeDir(): string {
  if (process.env.REZFS_RUNTIME_DIR) return process.env.REZFS_RUNTIME_DIR;
  const uid = process.getuid?.() ?? 0;
  return uid === 0 ? '/run/rezfs' : join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), `rezfs-${uid}`);
}

const recordFile = (mountpoint: string) => join(runtimeDir(), `${sha256Hex(mountpoint).slice(0, 16)}.json`);

/** Records a mount; the returned function removes the record again. */
export async function registerMount(record: MountRecord): Promise<() => Promise<void>> {
  await mkdir(runtimeDir(), { recursive: true, mode: 0o755 });
  const file = recordFile(record.mountpoint);
  await writeFile(file, JSON.stringify(record));
  return () => rm(file, { force: true });
}

/** Sends SIGHUP (refresh now) to every live mount of `storeUrl`; returns how many were told. */
export async function notifyMounts(storeUrl: string): Promise<number> {
  const dir = runtimeDir();
  let told = 0;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const record = await readFile(join(dir, name), 'utf8').then((t) => JSON.parse(t) as MountRecord, () => undefined);
    if (record?.store !== storeUrl) continue;
    try {
      process.kill(record.pid, 'SIGHUP');
      told++;
    } catch {
      await rm(join(dir, name), { force: true }); // a mount that died without cleaning up
    }
  }
  return told;
}
