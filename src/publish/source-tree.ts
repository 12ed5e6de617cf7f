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
import { lstatSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
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
  const root = walk(dir, files, digest, '');
  return { root, files, statDigest: digest.digest('hex') };
}

function walk(dir: string, files: SourceFile[], digest: Hash, relative: string): SourceDir {
  const info = lstatSync(dir, { bigint: true });
  const node: SourceDir = { type: 'dir', mode: Number(info.mode & 0o7777n), mtimeMs: Math.floor(Number(info.mtimeNs / 1_000_000n)), entries: new Map() };
  digest.update(`d ${relative} ${info.mode} ${info.mtimeNs} ${info.ctimeNs} ${info.ino}\n`);
  const subdirs: string[] = [];
  for (const { text: name, ok } of listNames(dir)) {
    const path = join(dir, name);
    if (!ok) throw new PublishInputError(path, 'file name is not valid UTF-8; rename it');
    const entry = lstatSync(path, { bigint: true });
    const mtimeMs = Math.floor(Number(entry.mtimeNs / 1_000_000n));
    if (entry.isDirectory()) {
      subdirs.push(name);
    } else if (entry.isFile()) {
      const file: SourceFile = { type: 'file', path, mode: Number(entry.mode & 0o7777n), mtimeMs, size: Number(entry.size) };
      node.entries.set(name, file);
      files.push(file);
      digest.update(`f ${relative}/${name} ${entry.mode} ${entry.size} ${entry.mtimeNs} ${entry.ctimeNs} ${entry.ino}\n`);
    } else if (entry.isSymbolicLink()) {
      const target = readlinkSync(path);
      node.entries.set(name, { type: 'symlink', mtimeMs, target });
      digest.update(`l ${relative}/${name} ${entry.mtimeNs} ${target.length} ${target}\n`);
    } else {
      throw new PublishInputError(path, `${describeSpecial(entry)} cannot be published; remove it from the package`);
    }
  }
  for (const name of subdirs) node.entries.set(name, walk(join(dir, name), files, digest, `${relative}/${name}`));
  return node;
}
