/**
 * Reads a released-package repository the way rez's filesystem repository does, without reading any payload:
 * versioned families (`<family>/<version>/package.py`), unversioned packages (`<family>/package.py`), and
 * single-file families (`<family>.py` / `<family>.yaml` at the root, holding one or many versions), plus the
 * family directories' own small files (`.ignore<version>` markers, a README).
 *
 * Invariants: a problem with one version (or family) refuses only that one, as a Refusal naming it; only a
 * problem with the whole command (no such repository, a package or family directory given as the repository,
 * a selector naming nothing) throws PublishInputError. Versions rez is still building (`.building<version>`)
 * are left out with a note. Imports the catalog's schema types only.
 */
import { lstatSync, readFileSync, readdirSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { InlineEntry, InlineFile } from '../catalog/index.js';
import { PublishInputError } from './errors.js';

export const DEFINITION_FILES = ['package.py', 'package.yaml'] as const;
/** Files served inline from the catalog (family directories' own files, single-file families) stay this small. */
const MAX_INLINE_BYTES = 1024 * 1024;
/** rez's markers in a family directory: a version being released, a version hidden from resolves. */
export const BUILDING_PREFIX = '.building';
/** rez's own name rule (rez.utils.formatting.PACKAGE_NAME_REGEX): what rez lists as a family at the root. */
const PACKAGE_NAME = /^[a-zA-Z_0-9](\.?[a-zA-Z0-9_]+)*$/;
/** Root entries rez's filesystem repository never reads as families. */
const RESERVED_ROOT_NAMES = new Set(['settings.yaml', '.lock']);

export interface VersionSource {
  family: string;
  /** undefined for an unversioned package, whose family directory is the package. */
  version: string | undefined;
  dir: string;
}

export interface FamilySource {
  name: string;
  dir: string;
  /** Versions selected for this publish. */
  versions: VersionSource[];
  /** Every version directory the family has in the source, selected or not (refused and still-building ones too). */
  present: Set<string>;
  /** Set when the family directory is itself one unversioned package (`<family>/package.py`). */
  unversioned: VersionSource | undefined;
  /** Non-version entries of the family directory (`.ignore<version>` markers and the like). */
  extras: Record<string, InlineEntry>;
}

/** A single-file family: `<family>.py` or `<family>.yaml` at the root, served as that one file. */
export interface FamilyFileSource {
  family: string;
  fileName: string;
  path: string;
  entry: InlineFile;
}

/** One version (or family) that cannot be published, and why; the others go ahead. */
export interface Refusal {
  /** `family/version`, `family` (an unversioned package or a family's own files) or a single-file family's file name. */
  what: string;
  message: string;
}

export interface RepositoryScan {
  root: string;
  families: FamilySource[];
  familyFiles: FamilyFileSource[];
  refusals: Refusal[];
  /** Things left out on purpose (a version rez is still building), one line each. */
  notes: string[];
}

/** `family/version`, or `family` for an unversioned package: how messages name a version. */
export function versionLabel(source: Pick<VersionSource, 'family' | 'version'>): string {
  return source.version === undefined ? source.family : `${source.family}/${source.version}`;
}

/**
 * Lists the repository and picks the selected families or family/version pairs (all when none are given).
 * Synchronous on purpose: a no-op publish of a large repository is one lstat per entry, and a tight loop of
 * synchronous calls costs what `find` costs, where a promise per call would cost several times that.
 */
export function scanRepository(repoDir: string, selectors: readonly string[], warn: (m: string) => void): RepositoryScan {
  const root = resolve(repoDir);
  const rootStat = tryLstat(root);
  if (!rootStat) throw new PublishInputError(root, 'no such directory; give the released-package repository to publish');
  if (!rootStat.isDirectory()) throw new PublishInputError(root, 'not a directory; give the released-package repository to publish');
  const rootNames = listNames(root);
  checkIsRepository(root, rootNames);

  const wanted = parseSelectors(selectors);
  const scan: RepositoryScan = { root, families: [], familyFiles: [], refusals: [], notes: [] };
  for (const entry of rootNames) {
    if (!entry.ok) {
      warn(`skipping ${join(root, entry.text)}: name is not valid UTF-8`);
      continue;
    }
    const name = entry.text;
    const path = join(root, name);
    const info = lstatSync(path);
    const family = info.isDirectory() ? name : familyOfFile(name);
    if (RESERVED_ROOT_NAMES.has(name) || family === undefined || !PACKAGE_NAME.test(family)) {
      if (!name.startsWith('.')) warn(`skipping ${path}: not a package family (rez would not read it either)`);
      continue;
    }
    if (wanted && !wanted.has(family)) continue;
    if (info.isDirectory()) scanFamily(scan, path, family, wanted?.get(family));
    else if (info.isFile()) scanFamilyFile(scan, path, family, name, info);
    else warn(`skipping ${path}: a family must be a directory or a ${family}.py / ${family}.yaml file`);
  }
  checkSelectorsFound(scan, wanted);
  return scan;
}

/** The family a root file defines (`multi.py` -> `multi`), if it is a single-file family's file at all. */
function familyOfFile(name: string): string | undefined {
  const match = /^(.+)\.(py|yaml)$/.exec(name);
  return match?.[1];
}

/**
 * A package or family directory given as the repository would publish its subdirectories as families (a
 * version's `bin` as a family `bin`): refuse it, saying which directory to give instead.
 */
function checkIsRepository(root: string, names: DirName[]): void {
  if (DEFINITION_FILES.some((file) => names.some((n) => n.text === file))) {
    throw new PublishInputError(root, 'holds a package definition: it is a package, not a repository; give the repository that holds its family (two levels up for a version)');
  }
  for (const { text, ok } of names) {
    if (!ok) continue;
    const dir = join(root, text);
    if (!tryLstat(dir)?.isDirectory()) continue;
    const definition = DEFINITION_FILES.map((file) => join(dir, file)).find((file) => tryLstat(file)?.isFile());
    // A family directory's subdirectories are versions, whose definitions name the family, not the directory.
    const named = definition ? definedName(definition) : undefined;
    if (named !== undefined && named !== text) {
      throw new PublishInputError(root, `is a package family directory (${text}/${basename(definition!)} defines ${named}); give the repository that holds it`);
    }
  }
}

/** The `name` a package definition declares, when it says so plainly. */
function definedName(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const match = /^name\s*(?:=|:)\s*['"]?([^'"\s#]+)['"]?/m.exec(text);
  return match?.[1];
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

function checkSelectorsFound(scan: RepositoryScan, wanted: Map<string, Set<string> | undefined> | undefined): void {
  for (const [family, versions] of wanted ?? []) {
    const found = scan.families.find((f) => f.name === family);
    const inFile = scan.familyFiles.some((f) => f.family === family);
    const refused = scan.refusals.some((r) => r.what === family || r.what.startsWith(`${family}/`));
    if (!found && !inFile && !refused) throw new PublishInputError(join(scan.root, family), 'no such package family in the repository');
    // A single-file family holds its versions inside the file: a version selector publishes the file.
    if (!found || found.unversioned) continue;
    for (const version of versions ?? []) {
      const known = found.versions.some((v) => v.version === version) || scan.refusals.some((r) => r.what === `${family}/${version}`);
      const building = scan.notes.some((note) => note.startsWith(`${family}/${version}:`));
      if (!known && !building) throw new PublishInputError(join(scan.root, family, version), 'no such package version in the repository');
    }
  }
}

function scanFamily(scan: RepositoryScan, dir: string, name: string, selected: Set<string> | undefined): void {
  const family: FamilySource = { name, dir, versions: [], present: new Set(), unversioned: undefined, extras: {} };
  const refuse = (what: string, message: string) => scan.refusals.push({ what, message });
  let names: DirName[];
  try {
    names = listNames(dir);
  } catch (err) {
    refuse(name, (err as Error).message);
    return;
  }
  const bad = names.find((n) => !n.ok);
  if (bad) {
    refuse(name, `${join(dir, bad.text)}: file name is not valid UTF-8; rename it`);
    return;
  }
  if (DEFINITION_FILES.some((file) => names.some((n) => n.text === file))) {
    // rez reads a family directory holding package.py as one unversioned package: the directory is its tree.
    family.unversioned = { family: name, version: undefined, dir };
    scan.families.push(family);
    return;
  }
  const building = new Set(names.filter((n) => n.text.startsWith(BUILDING_PREFIX)).map((n) => n.text.slice(BUILDING_PREFIX.length)));
  for (const { text: entry } of names) {
    const path = join(dir, entry);
    const info = lstatSync(path);
    if (info.isDirectory()) {
      family.present.add(entry);
      if (selected && !selected.has(entry)) continue;
      if (building.has(entry)) {
        scan.notes.push(`${name}/${entry}: skipped, rez is still releasing it (${join(dir, BUILDING_PREFIX + entry)}); publish again when the release is done (or remove a stale marker)`);
        continue;
      }
      const definitions = listNamesOrEmpty(path);
      if (!DEFINITION_FILES.some((file) => definitions.includes(file))) {
        refuse(`${name}/${entry}`, `${path}: version directory has neither package.py nor package.yaml`);
        continue;
      }
      family.versions.push({ family: name, version: entry, dir: path });
    } else if (entry.startsWith(BUILDING_PREFIX)) {
      continue; // rez's own bookkeeping while it releases; meaningless on a mount
    } else {
      const extra = inlineEntry(path, info, 'file in a family directory');
      if (typeof extra === 'string') {
        refuse(name, extra);
        return;
      }
      family.extras[entry] = extra;
    }
  }
  scan.families.push(family);
}

function scanFamilyFile(scan: RepositoryScan, path: string, family: string, fileName: string, info: Stats): void {
  const entry = inlineEntry(path, info, 'single-file family');
  if (typeof entry === 'string') scan.refusals.push({ what: fileName, message: entry });
  else if (entry.type === 'file') scan.familyFiles.push({ family, fileName, path, entry });
}

/** A small file or a symlink, read into the catalog; a string says why it cannot be. */
function inlineEntry(path: string, info: Stats, what: string): InlineEntry | string {
  if (info.isSymbolicLink()) return { type: 'symlink', mtimeMs: Math.floor(info.mtimeMs), target: readlinkSync(path) };
  if (!info.isFile()) return `${path}: ${describeSpecial(info)} cannot be published; remove it from the repository`;
  if (info.size > MAX_INLINE_BYTES) return `${path}: ${what} is larger than 1 MiB; move its payload into a version`;
  try {
    const data = readFileSync(path);
    return { type: 'file', mode: info.mode & 0o7777, mtimeMs: Math.floor(info.mtimeMs), data: data.toString('base64') };
  } catch (err) {
    return `${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
}

export interface DirName {
  text: string;
  /** False when the raw name is not valid UTF-8 (it could not be named in the catalog). */
  ok: boolean;
}

/** A directory's entry names, sorted, each marked whether it is valid UTF-8. */
export function listNames(dir: string): DirName[] {
  const list = <T>(read: () => T[]): T[] => {
    try {
      return read();
    } catch (err) {
      throw new PublishInputError(dir, `cannot list directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  // Decoding replaces invalid bytes with U+FFFD: only a directory with such a name needs the raw names (costlier).
  const texts = list(() => readdirSync(dir)).sort();
  if (!texts.some((text) => text.includes('\ufffd'))) return texts.map((text) => ({ text, ok: true }));
  return list(() => readdirSync(dir, { encoding: 'buffer' }))
    .map((name) => {
      const text = name.toString('utf8');
      return { text, ok: !text.includes('\ufffd') || Buffer.from(text, 'utf8').equals(name) };
    })
    .sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
}

function listNamesOrEmpty(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function tryLstat(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** The real path of `path`, or of its nearest existing parent with the rest appended (a store not created yet). */
export function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    const parent = resolve(path, '..');
    return parent === path ? path : join(realPathOf(parent), basename(path));
  }
}

export function describeSpecial(info: { isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean }): string {
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isBlockDevice() || info.isCharacterDevice()) return 'a device file';
  return 'a special file';
}
