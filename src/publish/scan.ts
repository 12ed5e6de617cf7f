import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { InlineEntry } from '../catalog/index.js';
import { PublishInputError } from './errors.js';

export const DEFINITION_FILES = ['package.py', 'package.yaml'] as const;
const MAX_INLINE_BYTES = 1024 * 1024;

export interface VersionSource {
  family: string;
  version: string;
  dir: string;
}

export interface FamilySource {
  name: string;
  /** Versions selected for this publish. */
  versions: VersionSource[];
  /** Non-version entries of the family directory (`.ignore<version>` markers and the like). */
  extras: Record<string, InlineEntry>;
}

/**
 * Reads a released-package repository as rez lays it out (`<family>/<version>/package.py`) and picks
 * the selected families or family/version pairs (all when none are given). Problems are reported
 * before anything is uploaded.
 */
export async function scanRepository(repoDir: string, selectors: readonly string[], warn: (m: string) => void): Promise<FamilySource[]> {
  const root = resolve(repoDir);
  const rootStat = await lstat(root).catch(() => undefined);
  if (!rootStat) throw new PublishInputError(root, 'no such directory; give the released-package repository to publish');
  if (!rootStat.isDirectory()) throw new PublishInputError(root, 'not a directory; give the released-package repository to publish');

  const wanted = parseSelectors(selectors);
  const families: FamilySource[] = [];
  for (const name of await utf8Names(root)) {
    const path = join(root, name);
    const info = await lstat(path);
    if (!info.isDirectory()) {
      warn(`skipping ${path}: not a package family directory`);
      continue;
    }
    if (wanted && !wanted.has(name)) continue;
    families.push(await scanFamily(path, name, wanted?.get(name)));
  }
  for (const [family, versions] of wanted ?? []) {
    const found = families.find((f) => f.name === family);
    if (!found) throw new PublishInputError(join(root, family), 'no such package family in the repository');
    for (const version of versions ?? []) {
      if (!found.versions.some((v) => v.version === version)) {
        throw new PublishInputError(join(root, family, version), 'no such package version in the repository');
      }
    }
  }
  return families;
}

/** `family` selects every version, `family/version` one; undefined means everything. */
function parseSelectors(selectors: readonly string[]): Map<string, Set<string> | undefined> | undefined {
  if (selectors.length === 0) return undefined;
  const wanted = new Map<string, Set<string> | undefined>();
  for (const selector of selectors) {
    const [family, version, ...rest] = selector.split('/');
    if (!family || rest.length > 0 || version === '') {
      throw new PublishInputError(selector, 'not a package selector; use <family> or <family>/<version>');
    }
    if (version === undefined) wanted.set(family, undefined);
    else if (!wanted.has(family) || wanted.get(family)) wanted.set(family, new Set([...(wanted.get(family) ?? []), version]));
  }
  return wanted;
}

async function scanFamily(dir: string, name: string, versions: Set<string> | undefined): Promise<FamilySource> {
  const family: FamilySource = { name, versions: [], extras: {} };
  for (const entry of await utf8Names(dir)) {
    const path = join(dir, entry);
    const info = await lstat(path);
    if (info.isDirectory()) {
      const names = await utf8Names(path);
      if (!DEFINITION_FILES.some((file) => names.includes(file))) {
        throw new PublishInputError(path, 'version directory has neither package.py nor package.yaml');
      }
      if (!versions || versions.has(entry)) family.versions.push({ family: name, version: entry, dir: path });
    } else if (info.isSymbolicLink()) {
      family.extras[entry] = { type: 'symlink', mtimeMs: Math.floor(info.mtimeMs), target: await readlink(path) };
    } else if (info.isFile()) {
      if (info.size > MAX_INLINE_BYTES) throw new PublishInputError(path, 'file in a family directory is larger than 1 MiB; move it into a version');
      const data = await readFile(path).catch((err: NodeJS.ErrnoException) => {
        throw new PublishInputError(path, `cannot read (${err.code ?? err.message})`);
      });
      family.extras[entry] = { type: 'file', mode: info.mode & 0o7777, mtimeMs: Math.floor(info.mtimeMs), data: data.toString('base64') };
    } else {
      throw new PublishInputError(path, `${describeSpecial(info)} cannot be published; remove it from the repository`);
    }
  }
  return family;
}

/** Directory entry names, refusing any that is not valid UTF-8 (it could not be named in the catalog). */
export async function utf8Names(dir: string): Promise<string[]> {
  let raw: Buffer[];
  try {
    raw = await readdir(dir, { encoding: 'buffer' });
  } catch (err) {
    throw new PublishInputError(dir, `cannot list directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return raw
    .map((name) => {
      const text = name.toString('utf8');
      if (!Buffer.from(text, 'utf8').equals(name)) {
        throw new PublishInputError(join(dir, text), 'file name is not valid UTF-8; rename it');
      }
      return text;
    })
    .sort();
}

export function describeSpecial(info: { isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean }): string {
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isBlockDevice() || info.isCharacterDevice()) return 'a device file';
  return 'a special file';
}
