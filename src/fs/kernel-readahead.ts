import { readFile, writeFile } from 'node:fs/promises';
import { readMountTable } from '../mount-table.js';

/**
 * Lets the kernel read ahead `kib` on this mount (default 128 KiB), so a sequential reader's pages
 * come in requests as large as the binding's max_read: a few large requests instead of many small
 * ones. Needs root (sysfs); elsewhere the kernel's default stays, which is only slower.
 */
export async function raiseKernelReadahead(mountpoint: string, kib: number): Promise<boolean> {
  try {
    const device = (await readMountTable()).filter((m) => m.mountpoint === mountpoint).at(-1)?.device; // the top one
    if (!device) return false;
    const setting = `/sys/class/bdi/${device}/read_ahead_kb`;
    if (Number(await readFile(setting, 'utf8')) >= kib) return true;
    await writeFile(setting, String(kib));
    return true;
  } catch {
    return false;
  }
}
