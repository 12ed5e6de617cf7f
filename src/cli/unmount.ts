import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { readMountTable } from '../mount-table.js';
import { UsageError } from './units.js';

const exec = promisify(execFile);
/** A wedged mount can make fusermount hang; give up on each attempt after this long. */
const ATTEMPT_TIMEOUT_MS = 5_000;

/** Mountpoints of FUSE filesystems. */
export async function fuseMountpoints(): Promise<string[]> {
  return (await readMountTable()).filter((m) => m.fsType.startsWith('fuse') && m.fsType !== 'fusectl').map((m) => m.mountpoint);
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
