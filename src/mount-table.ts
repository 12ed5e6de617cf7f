import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

/**
 * The kernel's mount table, parsed once for every part that needs it (the CLI's unmount and stack checks, the fs
 * part's readahead setting). It is read from /proc/self/mountinfo, never found by stat(2) on a mountpoint: reading the
 * table sends no request to a FUSE mount's serving process, which may be this one.
 */

export interface MountEntry {
  /** The kernel's id of the mount: a later mount on the same path has a higher one. */
  mountId: number;
  /** `major:minor`, the name of the mount's backing-device info in /sys/class/bdi/. */
  device: string;
  mountpoint: string;
  /** e.g. `fuse.rezfs`, `ext4`. */
  fsType: string;
  /** What was mounted: for rezfs, the store URL as given (redacted). */
  source: string;
}

/** mountinfo writes space, tab, newline and backslash as octal escapes (\040 ...). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * The entries of mountinfo's text, in mount order (a later entry on the same mountpoint is on top). A line is
 * `id parent major:minor root mountpoint options [optional fields...] - fstype source super-options`.
 */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (fields.length < 6 || separator < 0 || separator + 2 >= fields.length) continue;
    entries.push({ mountId: Number(fields[0]), device: fields[2]!, mountpoint: unescape(fields[4]!), fsType: fields[separator + 1]!, source: unescape(fields[separator + 2]!) });
  }
  return entries;
}

/** This process's mount table, now. */
export async function readMountTable(): Promise<MountEntry[]> {
  return parseMountinfo(await readFile(MOUNTINFO, 'utf8'));
}

/** The same, synchronously: for code that must not yield between looking and acting (tests' cleanup). */
export function readMountTableSync(): MountEntry[] {
  return parseMountinfo(readFileSync(MOUNTINFO, 'utf8'));
}

const MOUNTINFO = '/proc/self/mountinfo';
