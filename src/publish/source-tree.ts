/**
 * One package version's tree as the source filesystem has it, from lstat alone: names, types, modes, sizes,
 * mtimes, symlink targets, and the inode and ctime that tell a rewritten file from an untouched one. Reading
 * it costs one readdir per directory and one lstat per entry, never a file's bytes.
 *
 * `statDigest` condenses all of it into one hash: equal digests mean no entry was added, removed, renamed,
 * rewritten or chmod-ed since (a rewrite changes ctime even when it restores mtime and size).
 * Imports nothing of rezfs but the publish errors and scan's name listing.
 */
import { createHash, type Hash } from 'node:crypto';
import { lstatSync, readlinkSync, type Stats } from 'node:fs';
import { PublishInputError } from './errors.js';
import { describeSpecial, listNames } from './scan.js';

export interface SourceFile {
  type: 'file';
  path: string;
  mode: number;
  mtimeMs: number;
  size: number;
}

export interface SourceDir {
  type: 'dir';
  mode: number;
  mtimeMs: number;
  entries: Map<string, SourceNode>;
}

export interface SourceLink {
  type: 'symlink';
  mtimeMs: number;
  target: string;
}

export type SourceNode = SourceFile | SourceDir | SourceLink;

export interface SourceTree {
  root: SourceDir;
  /** Every file, in pack order: a directory's files together, then its subdirectories. */
  files: SourceFile[];
  statDigest: string;
}

/** Walks `dir`; a special file or an unnameable entry is a PublishInputError naming it. */
export function readSourceTree(dir: string): SourceTree {
  const files: SourceFile[] = [];
  const digest = createHash('sha256');
  const root = walk(dir, lstatSync(dir), files, digest, '');
  return { root, files, statDigest: digest.digest('hex') };
}

/** What the digest takes of each entry, as numbers: kind, mode, size, mtime, ctime, inode. */
const DIGEST_FIELDS = 6;
const enum Kind {
  Dir = 1,
  File = 2,
  Link = 3,
}

// Plain (not bigint) lstat: Node's float milliseconds keep sub-microsecond precision for today's times, which is all
// the digest needs to see a rewrite, and bigint stats cost a third more per entry on a 20,000-file version. The
// digest takes a directory's names as one string and their numbers as raw doubles: a no-op publish of a big
// repository is this loop, and formatting numbers as text cost as much as the lstat calls.
function walk(dir: string, info: Stats, files: SourceFile[], digest: Hash, relative: string): SourceDir {
  const node: SourceDir = { type: 'dir', mode: info.mode & 0o7777, mtimeMs: Math.floor(info.mtimeMs), entries: new Map() };
  const names = listNames(dir);
  const numbers = new Float64Array((names.length + 1) * DIGEST_FIELDS);
  numbers.set([Kind.Dir, info.mode, 0, info.mtimeMs, info.ctimeMs, info.ino]);
  const text: string[] = [relative];
  const subdirs: [string, Stats][] = [];
  names.forEach(({ text: name, ok }, i) => {
    const path = `${dir}/${name}`;
    if (!ok) throw new PublishInputError(path, 'file name is not valid UTF-8; rename it');
    const entry = lstatSync(path);
    const mtimeMs = Math.floor(entry.mtimeMs);
    let kind: Kind;
    if (entry.isDirectory()) {
      kind = Kind.Dir;
      subdirs.push([name, entry]);
    } else if (entry.isFile()) {
      kind = Kind.File;
      const file: SourceFile = { type: 'file', path, mode: entry.mode & 0o7777, mtimeMs, size: entry.size };
      node.entries.set(name, file);
      files.push(file);
    } else if (entry.isSymbolicLink()) {
      kind = Kind.Link;
      const target = readlinkSync(path);
      node.entries.set(name, { type: 'symlink', mtimeMs, target });
      text.push(target);
    } else {
      throw new PublishInputError(path, `${describeSpecial(entry)} cannot be published; remove it from the package`);
    }
    text.push(name);
    numbers.set([kind, entry.mode, entry.size, entry.mtimeMs, entry.ctimeMs, entry.ino], (i + 1) * DIGEST_FIELDS);
  });
  // Names cannot hold NUL, so joined with it they cannot run together.
  digest.update(`${text.join('\0')}\0\0`);
  digest.update(new Uint8Array(numbers.buffer));
  for (const [name, stats] of subdirs) node.entries.set(name, walk(`${dir}/${name}`, stats, files, digest, `${relative}/${name}`));
  return node;
}
