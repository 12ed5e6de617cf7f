import { readFile, writeFile } from 'node:fs/promises';

/**
 * The device (`major:minor`) mounted at `mountpoint`, from /proc/self/mountinfo's text. Reading
 * the table, unlike stat(2) on the mountpoint, never sends the serving process a request of its own.
 */
export function deviceOf(mountinfo: string, mountpoint: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    if (fields.length > 4 && unescapeMountinfo(fields[4]!) === mountpoint) return fields[2];
  }
  return undefined;
}

/** mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...). */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Lets the kernel read ahead `kib` on this mount (default 128 KiB), so a sequential reader's pages
 * come in requests as large as the binding's max_read: a few large requests instead of many small
 * ones. Needs root (sysfs); elsewhere the kernel's default stays, which is only slower.
 */
export async function raiseKernelReadahead(mountpoint: string, kib: number): Promise<boolean> {
  try {
    const device = deviceOf(await readFile('/proc/self/mountinfo', 'utf8'), mountpoint);
    if (!device) return false;
    const setting = `/sys/class/bdi/${device}/read_ahead_kb`;
    if (Number(await readFile(setting, 'utf8')) >= kib) return true;
    await writeFile(setting, String(kib));
    return true;
  } catch {
    return false;
  }
}
