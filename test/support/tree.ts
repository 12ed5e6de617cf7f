/**
 * Snapshot a directory tree with lstat (never following symlinks) and compare snapshots.
 * Safe to use on a FUSE mount served by another process: plain fs APIs, bounded concurrency (default 4 operations
 * in flight), files hashed by streaming.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface TreeEntry {
  /** Relative to the snapshot root, '/'-separated; the root itself is '.' (only with includeRoot). */
  path: string;
  type: EntryType;
  /** Permission bits (st_mode & 0o7777). */
  mode: number;
  /** Files and symlinks only (for a symlink: the target's length in bytes, as lstat reports it). */
  size?: number;
  /** Whole seconds (floor of mtimeMs / 1000). */
  mtimeSec: number;
  /** Symlinks only. */
  target?: string;
  /** Regular files only (hex), unless hashing is disabled. */
  sha256?: string;
}

export interface SnapshotOptions {
  /** Skip an entry (and, for a dir, everything below it). Receives the relative path. */
  exclude?: (relPath: string) => boolean;
  /** Hash file contents (default true). */
  hash?: boolean;
  /** Max fs operations in flight (default 4). */
  concurrency?: number;
  /** Include the root directory itself as path '.' (default false). */
  includeRoot?: boolean;
}

/** At most `max` async jobs at once, the rest queued in order. */
export class Limiter {
  private active = 0;
  private queue: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const s = createReadStream(file, { highWaterMark: 256 * 1024 });
    s.on('data', (c) => h.update(c));
    s.on('error', reject);
    s.on('end', () => resolve(h.digest('hex')));
  });
}

function typeOf(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): EntryType {
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  return 'other';
}

/** Walk `root` with lstat and return its entries sorted by path (JS string order). */
export async function snapshotTree(root: string, opts: SnapshotOptions = {}): Promise<TreeEntry[]> {
  const limit = new Limiter(Math.max(1, opts.concurrency ?? 4));
  const doHash = opts.hash ?? true;
  const out: TreeEntry[] = [];

  async function entry(rel: string): Promise<void> {
    const abs = rel === '.' ? root : path.join(root, ...rel.split('/'));
    const st = await limit.run(() => lstat(abs));
    const type = typeOf(st);
    const e: TreeEntry = { path: rel, type, mode: st.mode & 0o7777, mtimeSec: Math.floor(st.mtimeMs / 1000) };
    if (type === 'file' || type === 'symlink') e.size = st.size;
    if (type === 'symlink') e.target = await limit.run(() => readlink(abs));
    if (type === 'file' && doHash) e.sha256 = await limit.run(() => sha256File(abs));
    if (rel !== '.' || opts.includeRoot) out.push(e);
    if (type === 'dir') {
      const names = await limit.run(() => readdir(abs));
      const children = names
        .sort()
        .map((n) => (rel === '.' ? n : `${rel}/${n}`))
        .filter((r) => !opts.exclude?.(r));
      await Promise.all(children.map((c) => entry(c)));
    }
  }

  await entry('.');
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export type DiffField = 'type' | 'mode' | 'size' | 'mtimeSec' | 'target' | 'sha256' | 'presence';

export interface IgnoreRule {
  /** Which paths the rule applies to: exact path, RegExp tested against the path, or predicate. */
  paths: string | RegExp | ((relPath: string) => boolean);
  /** Fields to ignore there ('presence' ignores an entry missing on either side). */
  fields: DiffField[];
}

export interface DiffOptions {
  ignore?: IgnoreRule[];
  /** Names of the two sides in messages (default ['a', 'b']). */
  labels?: [string, string];
  /** Stop after this many differences (default 50); a final line says how many more there were. */
  max?: number;
}

/** Paths of family directories (top level): their mtime on a mount is the publish time. */
export const FAMILY_DIRS = /^[^/]+$/;

function ruleMatches(rule: IgnoreRule, p: string): boolean {
  if (typeof rule.paths === 'string') return rule.paths === p;
  if (rule.paths instanceof RegExp) return rule.paths.test(p);
  return rule.paths(p);
}

function fmt(field: DiffField, v: unknown): string {
  if (v === undefined) return '(none)';
  if (field === 'mode' && typeof v === 'number') return `0${v.toString(8)}`;
  if (field === 'mtimeSec' && typeof v === 'number') return `${v} (${new Date(v * 1000).toISOString()})`;
  return JSON.stringify(v);
}

/**
 * Compare two snapshots. Returns human-readable differences, e.g.
 *   `lib/libfoo.so.1: mode 0755 != 0644`, `missing in b: share/x.txt`; an empty array when equal.
 * Directory sizes are never compared (snapshotTree does not record them).
 */
export function diffTrees(a: TreeEntry[], b: TreeEntry[], opts: DiffOptions = {}): string[] {
  const [la, lb] = opts.labels ?? ['a', 'b'];
  const max = opts.max ?? 50;
  const rules = opts.ignore ?? [];
  const ignored = (p: string, f: DiffField) => rules.some((r) => r.fields.includes(f) && ruleMatches(r, p));
  const ma = new Map(a.map((e) => [e.path, e]));
  const mb = new Map(b.map((e) => [e.path, e]));
  const paths = [...new Set([...ma.keys(), ...mb.keys()])].sort();
  const diffs: string[] = [];
  for (const p of paths) {
    const ea = ma.get(p);
    const eb = mb.get(p);
    if (!ea || !eb) {
      if (!ignored(p, 'presence')) diffs.push(ea ? `missing in ${lb}: ${p} (${ea.type})` : `missing in ${la}: ${p} (${eb!.type})`);
      continue;
    }
    if (ea.type !== eb.type) {
      if (!ignored(p, 'type')) diffs.push(`${p}: type ${ea.type} != ${eb.type}`);
      continue;
    }
    const fields: DiffField[] = ['mode', 'size', 'mtimeSec', 'target', 'sha256'];
    for (const f of fields) {
      if (f === 'size' && ea.type === 'dir') continue;
      const va = ea[f as keyof TreeEntry];
      const vb = eb[f as keyof TreeEntry];
      if (va !== vb && !ignored(p, f)) diffs.push(`${p}: ${f} ${fmt(f, va)} != ${fmt(f, vb)}`);
    }
  }
  if (diffs.length > max) {
    const more = diffs.length - max;
    return [...diffs.slice(0, max), `... and ${more} more difference(s)`];
  }
  return diffs;
}

/** Summary counts of a snapshot (handy in assertions and logs). */
export function treeStats(entries: TreeEntry[]): { files: number; dirs: number; symlinks: number; other: number; bytes: number } {
  const s = { files: 0, dirs: 0, symlinks: 0, other: 0, bytes: 0 };
  for (const e of entries) {
    if (e.type === 'file') {
      s.files++;
      s.bytes += e.size ?? 0;
    } else if (e.type === 'dir') s.dirs++;
    else if (e.type === 'symlink') s.symlinks++;
    else s.other++;
  }
  return s;
}
