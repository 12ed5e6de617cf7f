import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { UsageError } from './units.js';

const exec = promisify(execFile);
/** A wedged mount can make fusermount hang; give up on each attempt after this long. */
const ATTEMPT_TIMEOUT_MS = 5_000;

export interface MountEntry {
  source: string;
  mountpoint: string;
  fsType: string;
}

/** The host's mount table, from /proc/mounts (octal escapes decoded); reading it never touches a mount. */
export async function mountTable(): Promise<MountEntry[]> {
  const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return (await readFile('/proc/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields.length > 2)
    .map((fields) => ({ source: unescape(fields[0]!), mountpoint: unescape(fields[1]!), fsType: fields[2]! }));
}

/** Mountpoints of FUSE filesystems. */
export async function fuseMountpoints(): Promise<string[]> {
  return (await mountTable()).filter((m) => m.fsType.startsWith('fuse') && m.fsType !== 'fusectl').map((m) => m.mountpoint);
}

/** Unmounts with fusermount3 (works unprivileged), falling back to umount(8). */
export async function unmountCommand(mountpoint: string): Promise<void> {
  const path = resolve(mountpoint);
  if (!(await fuseMountpoints()).includes(path)) throw new UsageError(`${path} is not a FUSE mountpoint`);
  const attempts: [string, string[]][] = [
    ['fusermount3', ['-u', path]],
    ['fusermount', ['-u', path]],
    ['umount', [path]],
  ];
  const failures: string[] = [];
  for (const [command, args] of attempts) {
    try {
      await exec(command, args, { timeout: ATTEMPT_TIMEOUT_MS, killSignal: 'SIGKILL' });
      return;
    } catch (err) {
      failures.push(`${command}: ${((err as { stderr?: string }).stderr || (err as Error).message).trim()}`);
    }
  }
  throw new Error(`cannot unmount ${path} (busy? close files and shells using it, or use umount -l): ${failures.at(-1)}`);
}

/** Lazily detaches a mount whatever its state (a dead server, busy files); never waits on the server. */
export async function detach(mountpoint: string): Promise<void> {
  await exec('fusermount3', ['-uz', mountpoint], { timeout: ATTEMPT_TIMEOUT_MS, killSignal: 'SIGKILL' }).catch(() =>
    exec('umount', ['-l', mountpoint], { timeout: ATTEMPT_TIMEOUT_MS, killSignal: 'SIGKILL' }),
  );
}
