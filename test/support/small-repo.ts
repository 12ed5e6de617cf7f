import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export type Entry = string | Buffer | { link: string } | { mode: number; data: string | Buffer } | { dir: true };

/** Writes a small tree from a path -> content map; every mtime set to a fixed second. */
export async function writeTree(root: string, entries: Record<string, Entry>, mtimeSec = 1_700_000_000): Promise<void> {
  for (const [path, entry] of Object.entries(entries)) {
    const full = join(root, path);
    await mkdir(dirname(full), { recursive: true });
    if (typeof entry === 'string' || Buffer.isBuffer(entry)) await writeFile(full, entry);
    else if ('link' in entry) await symlink(entry.link, full);
    else if ('dir' in entry) await mkdir(full, { recursive: true });
    else await writeFile(full, entry.data, { mode: entry.mode });
  }
  for (const path of Object.keys(entries)) {
    const full = join(root, path);
    if (typeof entries[path] === 'object' && 'link' in (entries[path] as object)) continue;
    await utimes(full, mtimeSec, mtimeSec);
  }
}

export async function tempDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `rezfs-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export function packageDefinition(name: string, version: string, extra = ''): string {
  return `name = "${name}"\nversion = "${version}"\n${extra}`;
}

/** The smallest repository with something in it: two families, one executable. */
export const TWO_FAMILIES: Record<string, Entry> = {
  'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0'),
  'foo/1.0.0/bin/foo': { mode: 0o755, data: 'x' },
  'bar/1.0/package.py': packageDefinition('bar', '1.0'),
};

/** A family with two versions to take one away from, and a family of one version (retire, rez-rm). */
export const GREETER_AND_OTHER: Record<string, Entry> = {
  'greeter/1.0.0/package.py': packageDefinition('greeter', '1.0.0'),
  'greeter/1.0.0/bin/greet': { mode: 0o755, data: 'hello 1.0.0' },
  'greeter/1.1.0/package.py': packageDefinition('greeter', '1.1.0'),
  'greeter/1.1.0/bin/greet': { mode: 0o755, data: 'hello 1.1.0' },
  'other/2.0/package.py': packageDefinition('other', '2.0'),
};
