import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * The first of `names` found on PATH or in the sbin directories root's PATH has but a test runner's may lack
 * (Debian puts nginx and apache2 in /usr/sbin), plus `extraDirs`; undefined when none is installed.
 */
export function findProgram(names: string[], extraDirs: string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', ...extraDirs].filter((d) => path.isAbsolute(d));
  for (const name of names) {
    const found = dirs.map((d) => path.join(d, name)).find((p) => existsSync(p));
    if (found) return found;
  }
  return undefined;
}
