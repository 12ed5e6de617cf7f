/**
 * Deterministic generator of a released rez package repository (`<family>/<version>/package.py` + payload), used as
 * publish input by the tests. The same seed always yields byte-identical trees (names, content, modes, mtimes,
 * symlinks); the structure (families, versions, variants, notable files) is fixed, the seed drives payload
 * file counts, sizes and content.
 *
 * All paths in the returned summary are relative to the repository root and use '/'.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

// ---------------------------------------------------------------------------------------------------------------
// PRNG

/** mulberry32: small, fast, good enough for test data. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** Float in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  u32(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(arr: readonly T[]): T {
    return arr[Math.floor(this.next() * arr.length)] as T;
  }
}

/** Seed derived from a string (stable across runs and platforms). */
export function seedFrom(...parts: (string | number)[]): number {
  return createHash('sha256').update(parts.join('\0')).digest().readUInt32LE(0);
}

/** `size` deterministic pseudo-random bytes (xorshift32). */
export function pseudoRandomBytes(size: number, seed: number): Buffer {
  const words = Math.ceil(size / 4);
  const u32 = new Uint32Array(words);
  let x = seed >>> 0 || 0x2545f491;
  for (let i = 0; i < words; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    u32[i] = x;
  }
  return Buffer.from(u32.buffer, 0, size);
}

const WORDS = [
  'render', 'shader', 'texture', 'camera', 'light', 'mesh', 'vertex', 'frame', 'scene', 'layer', 'prim', 'stage',
  'sample', 'pixel', 'channel', 'buffer', 'volume', 'voxel', 'curve', 'point', 'matrix', 'vector', 'color', 'space',
  'config', 'plugin', 'module', 'asset', 'shot', 'sequence', 'publish', 'review', 'cache', 'deadline', 'farm', 'node',
];

/** Deterministic text of exactly `size` bytes (ASCII). `style` picks python-ish or prose-ish lines. */
export function pseudoText(size: number, seed: number, style: 'py' | 'c' | 'txt' = 'txt'): Buffer {
  if (size <= 0) return Buffer.alloc(0);
  const rng = new Rng(seed);
  const parts: string[] = [];
  let len = 0;
  let n = 0;
  while (len < size) {
    const w1 = rng.pick(WORDS);
    const w2 = rng.pick(WORDS);
    const w3 = rng.pick(WORDS);
    let line: string;
    if (style === 'py') {
      line =
        n % 7 === 0
          ? `def ${w1}_${w2}_${n}(${w3}, *args, **kwargs):\n    return ${w3}  # ${rng.u32().toString(16)}\n`
          : `${w1.toUpperCase()}_${w2.toUpperCase()}_${n} = ${rng.int(0, 99999)}  # ${w3}\n`;
    } else if (style === 'c') {
      line =
        n % 5 === 0
          ? `int ${w1}_${w2}_${n}(const ${w3}_t *p, size_t n); /* ${rng.u32().toString(16)} */\n`
          : `#define ${w1.toUpperCase()}_${w2.toUpperCase()}_${n} 0x${rng.u32().toString(16)}\n`;
    } else {
      line = `${w1} ${w2} ${w3} ${rng.int(0, 1e6)} ${rng.pick(WORDS)} ${rng.pick(WORDS)}.\n`;
    }
    parts.push(line);
    len += line.length;
    n++;
  }
  return Buffer.from(parts.join(''), 'ascii').subarray(0, size);
}

// ---------------------------------------------------------------------------------------------------------------
// Types

export interface GeneratedPackage {
  family: string;
  version: string;
  /** `<family>/<version>` */
  dir: string;
  format: 'py' | 'yaml';
  /** Variant subpaths relative to the package dir (plain: `platform-linux/python-3.9`; hashed: the sha1 dir). */
  variants: string[];
  hashedVariants: boolean;
  /** True when the family dir holds a `.ignore<version>` marker for this version. */
  ignored: boolean;
  requires: string[];
}

export interface FileInfo {
  path: string;
  size: number;
}

export interface RepoSummary {
  root: string;
  seed: number;
  /** Sorted family names (including `bigpkg` when requested). */
  families: string[];
  packages: GeneratedPackage[];
  versionCount: number;
  /** Regular files (package.py/yaml, markers and payload). */
  fileCount: number;
  /** Directories below the root (the root itself excluded). */
  dirCount: number;
  symlinkCount: number;
  totalBytes: number;
  largestFile: FileInfo;
  notable: {
    /** A file spanning more than 2 blocks of 1 MiB (3.5 MiB). */
    bigFile: FileInfo;
    /** Files of exactly 1 MiB - 1, 1 MiB, 1 MiB + 1 and 2 MiB bytes. */
    blockBoundaryFiles: FileInfo[];
    /** [libfoo.so, libfoo.so.1, libfoo.so.1.2.3]: the first two are relative symlinks, the last a regular file. */
    soChain: [string, string, string];
    absoluteSymlink: string;
    absoluteSymlinkTarget: string;
    /** A relative symlink whose target does not exist. */
    danglingSymlink: string;
    /** A relative symlink to a directory. */
    dirSymlink: string;
    /** An executable (0755) script under bin/ starting with a shebang. */
    executable: string;
    /** Expected stdout (trimmed) of running `executable` with no args. */
    executableOutput: string;
    emptyDirs: string[];
    zeroByteFile: string;
    /** A 0444 file. */
    readOnlyFile: string;
    /** `données été.txt` (spaces + non-ASCII). */
    unicodeFile: string;
    /** A file whose name contains a 4-byte UTF-8 character. */
    emojiFile: string;
    spacedFile: string;
    /** A package.yaml (relative path). */
    packageYaml: string;
    /** A plain variant directory, e.g. `oiio/2.5.8/platform-linux/python-3.11`. */
    variantDir: string;
    /** A hashed variant directory `<pkg>/<sha1>` and its shortlink `<pkg>/_v/a` (-> `../<sha1>`). */
    hashedVariantDir: string;
    hashedVariantLink: string;
    /** `<family>/.ignore<version>` */
    ignoreMarker: string;
    ignoredPackage: { family: string; version: string };
  };
  bigPackage?: {
    family: string;
    version: string;
    dir: string;
    /** A 10 KiB file in the big package. */
    smallFile: FileInfo;
    files: FileInfo[];
    totalBytes: number;
  };
}

export interface GenerateRepoOptions {
  /** PRNG seed (default 1). */
  seed?: number;
  /** Also create `bigpkg/1.0.0` with ~`bigPackageMiB` MiB of payload (default false). */
  bigPackage?: boolean;
  /** Approximate payload size of the big package in MiB (default 50). */
  bigPackageMiB?: number;
  /** Base mtime (seconds since epoch) for all entries (default 1_700_000_000 = 2023-11-14). */
  baseTime?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Writer

const MiB = 1024 * 1024;

class Writer {
  fileCount = 0;
  dirCount = 0;
  symlinkCount = 0;
  totalBytes = 0;
  largest: FileInfo = { path: '', size: -1 };
  constructor(readonly root: string) {}

  abs(rel: string): string {
    return path.join(this.root, ...rel.split('/'));
  }

  mkdir(rel: string): void {
    const parts = rel.split('/').filter(Boolean);
    let cur = '';
    for (const p of parts) {
      cur = cur ? `${cur}/${p}` : p;
      const a = this.abs(cur);
      if (!fs.existsSync(a)) {
        fs.mkdirSync(a);
        fs.chmodSync(a, 0o755);
        this.dirCount++;
      }
    }
  }

  file(rel: string, content: Buffer | string, mode = 0o644): FileInfo {
    const dir = path.posix.dirname(rel);
    if (dir !== '.') this.mkdir(dir);
    const a = this.abs(rel);
    if (fs.existsSync(a)) throw new Error(`repo-generator: duplicate path ${rel}`);
    const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    fs.writeFileSync(a, buf);
    fs.chmodSync(a, mode);
    this.fileCount++;
    this.totalBytes += buf.length;
    if (buf.length > this.largest.size) this.largest = { path: rel, size: buf.length };
    return { path: rel, size: buf.length };
  }

  symlink(rel: string, target: string): string {
    const dir = path.posix.dirname(rel);
    if (dir !== '.') this.mkdir(dir);
    fs.symlinkSync(target, this.abs(rel));
    this.symlinkCount++;
    return rel;
  }
}

/** Random size with a long tail: mostly small files, a few hundred KiB, rarely ~1 MiB. */
function randomSize(rng: Rng): number {
  const r = rng.next();
  if (r < 0.04) return 0;
  if (r < 0.45) return rng.int(1, 1024);
  if (r < 0.85) return rng.int(1025, 8 * 1024);
  if (r < 0.97) return rng.int(8 * 1024 + 1, 64 * 1024);
  if (r < 0.997) return rng.int(64 * 1024 + 1, 192 * 1024);
  return rng.int(256 * 1024 + 1, 1536 * 1024);
}

// ---------------------------------------------------------------------------------------------------------------
// Repository spec

type Kind = 'none' | 'python' | 'lib' | 'py' | 'tool';

interface FamilySpec {
  name: string;
  versions: string[];
  kind: Kind[];
  /** Families this one requires (must come earlier in FAMILIES). */
  deps?: string[];
  variants?: string[][];
  hashed?: boolean;
  /** Versions written as package.yaml. */
  yaml?: string[];
  /** Extra header count for header-heavy libraries. */
  headers?: number;
}

const FAMILIES: FamilySpec[] = [
  { name: 'platform', versions: ['linux', 'osx', 'windows'], kind: ['none'] },
  { name: 'python', versions: ['3.9.18', '3.10.13', '3.11.7'], kind: ['python'] },
  { name: 'zlib', versions: ['1.2.13', '1.3.0', '1.3.1'], kind: ['lib'], yaml: ['1.3.0'] },
  { name: 'libpng', versions: ['1.6.37', '1.6.39', '1.6.40'], kind: ['lib'], deps: ['zlib'] },
  { name: 'tbb', versions: ['2020.3', '2021.9.0', '2021.11.0'], kind: ['lib'] },
  { name: 'boost', versions: ['1.76.0', '1.80.0', '1.82.0'], kind: ['lib'], headers: 30 },
  { name: 'imath', versions: ['3.1.7', '3.1.9', '3.1.10'], kind: ['lib'] },
  { name: 'openexr', versions: ['3.1.11', '3.2.1', '3.2.4'], kind: ['lib'], deps: ['imath', 'zlib'] },
  { name: 'ocio', versions: ['2.1.3', '2.2.1', '2.3.0'], kind: ['lib', 'tool'], deps: ['imath'] },
  {
    name: 'oiio',
    versions: ['2.4.15', '2.5.4', '2.5.8'],
    kind: ['lib', 'py'],
    deps: ['openexr', 'libpng', 'ocio', 'boost'],
    variants: [
      ['platform-linux', 'python-3.9'],
      ['platform-linux', 'python-3.11'],
    ],
  },
  { name: 'openvdb', versions: ['9.1.0', '10.0.1', '11.0.0'], kind: ['lib'], deps: ['tbb', 'boost'] },
  { name: 'alembic', versions: ['1.8.3', '1.8.5', '1.8.6'], kind: ['lib'], deps: ['imath'] },
  {
    name: 'usd',
    versions: ['22.11', '23.08', '23.11'],
    kind: ['lib', 'py'],
    deps: ['tbb', 'boost', 'openexr', 'alembic'],
    variants: [['python-3.9'], ['python-3.10'], ['python-3.11']],
    hashed: true,
  },
  {
    name: 'numpy',
    versions: ['1.24.4', '1.25.2', '1.26.2'],
    kind: ['py'],
    variants: [['python-3.10'], ['python-3.11']],
  },
  { name: 'qt', versions: ['5.15.2', '5.15.8', '5.15.11'], kind: ['lib'], headers: 12 },
  {
    name: 'pyside2',
    versions: ['5.15.2', '5.15.7', '5.15.10'],
    kind: ['py', 'lib'],
    deps: ['qt'],
    variants: [['platform-linux', 'python-3.9']],
  },
  { name: 'ffmpeg', versions: ['4.4.4', '5.1.4', '6.0.1'], kind: ['tool', 'lib'], deps: ['zlib'] },
  { name: 'cmake', versions: ['3.24.4', '3.26.6', '3.27.7'], kind: ['tool'], yaml: ['3.24.4', '3.26.6', '3.27.7'] },
  { name: 'maya_tools', versions: ['1.0.0', '1.1.0', '2.0.0'], kind: ['py', 'tool'], deps: ['python'] },
  { name: 'nuke_tools', versions: ['12.0.0', '13.1.0', '14.0.2'], kind: ['py'], deps: ['python'] },
  { name: 'houdini_tools', versions: ['19.5.0', '20.0.1', '20.0.3'], kind: ['py', 'tool'], deps: ['python'] },
  {
    name: 'studio_pipeline',
    versions: ['1.0.0', '1.1.0', '1.2.0'],
    kind: ['tool', 'py'],
    deps: ['python', 'maya_tools', 'nuke_tools', 'ffmpeg'],
  },
];

const IGNORED = { family: 'nuke_tools', version: '13.1.0' };

/** rez's hashed variant directory name: sha1 of str(list(map(str, variant_requires))) in Python. */
export function rezVariantHash(requires: string[]): string {
  const pyRepr = `[${requires.map((r) => `'${r}'`).join(', ')}]`;
  return createHash('sha1').update(pyRepr, 'utf8').digest('hex');
}

function pyList(xs: string[]): string {
  return `[${xs.map((x) => `'${x}'`).join(', ')}]`;
}

function packagePy(p: {
  name: string;
  version: string;
  description: string;
  requires: string[];
  variants?: string[][];
  hashed?: boolean;
  tools?: string[];
  timestamp: number;
  hasBin: boolean;
  hasPython: boolean;
  hasLib: boolean;
}): string {
  const lines: string[] = ['# -*- coding: utf-8 -*-', '', `name = '${p.name}'`, '', `version = '${p.version}'`, ''];
  lines.push(`description = '${p.description}'`, '', `authors = ['rezfs test generator']`, '');
  if (p.tools && p.tools.length) lines.push(`tools = ${pyList(p.tools)}`, '');
  if (p.requires.length) lines.push(`requires = ${pyList(p.requires)}`, '');
  if (p.variants && p.variants.length) {
    lines.push(`variants = [${p.variants.map(pyList).join(', ')}]`, '');
    if (p.hashed) lines.push('hashed_variants = True', '');
  }
  lines.push('def commands():');
  const cmds: string[] = [`env.${p.name.toUpperCase()}_ROOT = '{root}'`];
  if (p.hasBin) cmds.push(`env.PATH.prepend('{root}/bin')`);
  if (p.hasPython) cmds.push(`env.PYTHONPATH.prepend('{root}/python')`);
  if (p.hasLib) cmds.push(`env.LD_LIBRARY_PATH.prepend('{root}/lib')`);
  for (const c of cmds) lines.push(`    ${c}`);
  lines.push('', `timestamp = ${p.timestamp}`, '', 'format_version = 2', '');
  return lines.join('\n');
}

function packageYaml(p: {
  name: string;
  version: string;
  description: string;
  requires: string[];
  tools?: string[];
  timestamp: number;
}): string {
  const lines = [`name: ${p.name}`, `version: ${p.version}`, `description: ${p.description}`, 'authors:', '- rezfs test generator'];
  if (p.tools && p.tools.length) lines.push('tools:', ...p.tools.map((t) => `- ${t}`));
  if (p.requires.length) lines.push('requires:', ...p.requires.map((r) => `- ${r}`));
  lines.push('commands: |-', `  env.PATH.prepend('{root}/bin')`, `  env.${p.name.toUpperCase()}_ROOT = '{root}'`);
  lines.push(`timestamp: ${p.timestamp}`, 'format_version: 2', '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Payload builders

interface Ctx {
  w: Writer;
  rng: Rng;
  family: string;
  version: string;
  /** Payload root relative to the repo root (package dir or variant dir). */
  base: string;
  notes: Partial<RepoSummary['notable']>;
}

function writeRandomFiles(c: Ctx, dir: string, count: number, exts: string[], style: 'py' | 'c' | 'txt' | 'bin'): void {
  for (let i = 0; i < count; i++) {
    const ext = c.rng.pick(exts);
    const name = `${c.rng.pick(WORDS)}_${i}${ext}`;
    const size = randomSize(c.rng);
    const seed = c.rng.u32();
    const content = style === 'bin' ? pseudoRandomBytes(size, seed) : pseudoText(size, seed, style);
    const info = c.w.file(`${c.base}/${dir}/${name}`, content, c.rng.chance(0.05) ? 0o444 : 0o644);
    if (info.size === 0 && !c.notes.zeroByteFile) c.notes.zeroByteFile = info.path;
  }
}

const LICENSE = pseudoText(1100, 4242, 'txt');

function buildLib(c: Ctx, headers: number): void {
  const n = c.family;
  const [maj = '1', min = '0', pat = '0'] = c.version.split('.');
  const real = `lib${n}.so.${maj}.${min}.${pat}`;
  c.w.file(`${c.base}/lib/${real}`, pseudoRandomBytes(c.rng.int(20_000, 200_000), c.rng.u32()), 0o755);
  c.w.symlink(`${c.base}/lib/lib${n}.so.${maj}`, real);
  c.w.symlink(`${c.base}/lib/lib${n}.so`, `lib${n}.so.${maj}`);
  if (!c.notes.soChain) {
    c.notes.soChain = [`${c.base}/lib/lib${n}.so`, `${c.base}/lib/lib${n}.so.${maj}`, `${c.base}/lib/${real}`];
  }
  c.w.file(`${c.base}/lib/lib${n}.a`, pseudoRandomBytes(c.rng.int(1000, 60_000), c.rng.u32()));
  writeRandomFiles(c, `include/${n}`, headers + c.rng.int(2, 8), ['.h', '.hpp', '.inl'], 'c');
  if (c.rng.chance(0.6)) writeRandomFiles(c, `include/${n}/detail`, c.rng.int(1, 5), ['.h'], 'c');
  const Cap = n.charAt(0).toUpperCase() + n.slice(1);
  c.w.file(`${c.base}/lib/cmake/${Cap}/${Cap}Config.cmake`, `set(${Cap}_VERSION ${c.version})\n`);
  c.w.file(`${c.base}/lib/cmake/${Cap}/${Cap}ConfigVersion.cmake`, pseudoText(c.rng.int(300, 3000), c.rng.u32()));
  c.w.file(`${c.base}/lib/pkgconfig/${n}.pc`, `prefix=\${pcfiledir}/../..\nName: ${n}\nVersion: ${c.version}\n`);
  c.w.file(`${c.base}/share/doc/${n}/LICENSE`, LICENSE);
  c.w.file(`${c.base}/share/doc/${n}/README.md`, pseudoText(c.rng.int(200, 6000), c.rng.u32()));
}

function buildPy(c: Ctx): void {
  const n = c.family;
  const pkg = `python/${n}`;
  c.w.file(`${c.base}/${pkg}/__init__.py`, `__version__ = '${c.version}'\n`);
  writeRandomFiles(c, pkg, c.rng.int(5, 12), ['.py'], 'py');
  for (const sub of ['core', 'ui', 'utils'].slice(0, c.rng.int(1, 3))) {
    c.w.file(`${c.base}/${pkg}/${sub}/__init__.py`, '');
    writeRandomFiles(c, `${pkg}/${sub}`, c.rng.int(2, 6), ['.py'], 'py');
  }
  writeRandomFiles(c, `${pkg}/resources`, c.rng.int(1, 6), ['.png', '.json', '.svg'], 'bin');
}

function buildTool(c: Ctx): void {
  const n = c.family;
  const exe = `${c.base}/bin/${n}`;
  const out = `${n} ${c.version}`;
  c.w.file(exe, `#!/bin/sh\n# generated by rezfs tests\necho "${out}"\n`, 0o755);
  if (!c.notes.executable) {
    c.notes.executable = exe;
    c.notes.executableOutput = out;
  }
  c.w.file(`${c.base}/bin/${n}-helper`, `#!/usr/bin/env python3\nprint('${n} helper ${c.version}')\n`, 0o755);
  c.w.file(`${c.base}/etc/${n}.conf`, pseudoText(c.rng.int(50, 2000), c.rng.u32()));
  writeRandomFiles(c, `share/${n}`, c.rng.int(3, 10), ['.txt', '.cfg', '.dat'], 'txt');
}

function buildPython(c: Ctx): void {
  const [maj = '3', min = '0'] = c.version.split('.');
  const xy = `${maj}.${min}`;
  c.w.file(`${c.base}/bin/python${xy}`, `#!/bin/sh\n# stand-in interpreter for tests: delegate to the system python\nexec /usr/bin/python3 "$@"\n`, 0o755);
  c.w.symlink(`${c.base}/bin/python3`, `python${xy}`);
  c.w.symlink(`${c.base}/bin/python`, 'python3');
  const stdlib = `lib/python${xy}`;
  writeRandomFiles(c, stdlib, c.rng.int(15, 25), ['.py'], 'py');
  for (const sub of ['json', 'email', 'http', 'asyncio', 'importlib']) {
    c.w.file(`${c.base}/${stdlib}/${sub}/__init__.py`, pseudoText(c.rng.int(0, 2000), c.rng.u32(), 'py'));
    writeRandomFiles(c, `${stdlib}/${sub}`, c.rng.int(2, 6), ['.py'], 'py');
  }
  c.w.mkdir(`${c.base}/${stdlib}/site-packages`);
  c.w.symlink(`${c.base}/lib/python3`, `python${xy}`);
  if (!c.notes.dirSymlink) c.notes.dirSymlink = `${c.base}/lib/python3`;
  const real = `libpython${xy}.so.1.0`;
  c.w.file(`${c.base}/lib/${real}`, pseudoRandomBytes(c.rng.int(100_000, 600_000), c.rng.u32()), 0o755);
  c.w.symlink(`${c.base}/lib/libpython${xy}.so`, real);
  writeRandomFiles(c, `include/python${xy}`, c.rng.int(10, 20), ['.h'], 'c');
}

/** Notable entries placed in fixed packages. */
function addNotables(c: Ctx, w: Writer): void {
  const key = `${c.family}/${c.version}`;
  if (key === 'usd/23.11' && c.base.endsWith(rezVariantHash(['python-3.11']))) {
    c.notes.bigFile = w.file(`${c.base}/lib/libusd_monolithic.so`, pseudoRandomBytes(3.5 * MiB, c.rng.u32()), 0o755);
  }
  if (key === 'openvdb/10.0.1') {
    c.notes.blockBoundaryFiles = [MiB - 1, MiB, MiB + 1, 2 * MiB].map((size, i) =>
      w.file(`${c.base}/share/openvdb/samples/boundary_${i}_${size}.vdb`, pseudoRandomBytes(size, 1000 + i)),
    );
  }
  if (key === 'ocio/2.3.0') {
    c.notes.absoluteSymlinkTarget = '/usr/bin/env';
    c.notes.absoluteSymlink = w.symlink(`${c.base}/bin/ocio-env`, '/usr/bin/env');
    c.notes.danglingSymlink = w.symlink(`${c.base}/share/ocio/current-config`, 'configs/does-not-exist.ocio');
  }
  if (key === 'maya_tools/2.0.0') {
    c.notes.unicodeFile = w.file(`${c.base}/share/docs/données été.txt`, 'Résumé : les données de l’été.\n').path;
    c.notes.emojiFile = w.file(`${c.base}/share/docs/🎬 shots/clip ✓.txt`, 'clapperboard\n').path;
    w.file(`${c.base}/share/docs/日本語/ファイル.txt`, 'ファイル\n');
  }
  if (key === 'houdini_tools/20.0.3') {
    c.notes.spacedFile = w.file(`${c.base}/share/otls/My Digital Asset v2.hda`, pseudoRandomBytes(40_000, 77)).path;
    w.file(`${c.base}/share/otls/ trailing and leading spaces .txt`, 'spaces\n');
  }
  if (key === 'studio_pipeline/1.2.0') {
    const empties = [`${c.base}/var/empty`, `${c.base}/share/studio_pipeline/plugins`, `${c.base}/a/b/c/deep_empty`];
    for (const d of empties) w.mkdir(d);
    c.notes.emptyDirs = empties;
    c.notes.readOnlyFile = w.file(`${c.base}/etc/site.lock`, 'locked\n', 0o444).path;
    w.file(`${c.base}/bin/not-executable.sh`, '#!/bin/sh\necho no\n', 0o644);
    w.file(`${c.base}/bin/group-exec`, '#!/bin/sh\necho group\n', 0o750);
  }
}

// ---------------------------------------------------------------------------------------------------------------

function listAll(root: string, rel = ''): string[] {
  const out: string[] = [];
  const abs = rel ? path.join(root, rel) : root;
  for (const name of fs.readdirSync(abs).sort()) {
    const r = rel ? `${rel}/${name}` : name;
    out.push(r);
    const st = fs.lstatSync(path.join(root, r));
    if (st.isDirectory()) out.push(...listAll(root, r));
  }
  return out;
}

/** Deterministic whole-second mtimes for every entry below root (children before parents). */
function applyTimes(root: string, seed: number, baseTime: number): void {
  const all = listAll(root).reverse();
  for (const rel of all) {
    const t = baseTime + (seedFrom(seed, 'mtime', rel) % (180 * 86400));
    const a = path.join(root, rel);
    if (fs.lstatSync(a).isSymbolicLink()) fs.lutimesSync(a, t, t);
    else fs.utimesSync(a, t, t);
  }
}

function ensureEmptyDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  if (fs.readdirSync(dir).length) throw new Error(`generateRepo: ${dir} is not empty`);
}

/**
 * Create the deterministic repository in `dir` (created if missing; must be empty).
 * 22 families x 3 versions + optional `bigpkg/1.0.0`.
 */
export async function generateRepo(dir: string, opts: GenerateRepoOptions = {}): Promise<RepoSummary> {
  const seed = opts.seed ?? 1;
  const baseTime = opts.baseTime ?? 1_700_000_000;
  const root = path.resolve(dir);
  ensureEmptyDir(root);
  const w = new Writer(root);
  const notes: Partial<RepoSummary['notable']> = {};
  const packages: GeneratedPackage[] = [];

  for (const [fi, fam] of FAMILIES.entries()) {
    w.mkdir(fam.name);
    for (const [vi, version] of fam.versions.entries()) {
      const rng = new Rng(seedFrom(seed, fam.name, version));
      const pkgDir = `${fam.name}/${version}`;
      w.mkdir(pkgDir);
      const timestamp = baseTime + fi * 86400 + vi * 3600;
      const requires = (fam.deps ?? []).map((d) => {
        const depSpec = FAMILIES.find((f) => f.name === d)!;
        // Satisfiable by every version of the dependency: `dep` or `dep-<lowest>+`.
        return rng.chance(0.5) ? d : `${d}-${depSpec.versions[0]}+`;
      });
      const isYaml = (fam.yaml ?? []).includes(version);
      const kinds = fam.kind;
      const hasBin = kinds.includes('tool') || kinds.includes('python');
      const hasPython = kinds.includes('py');
      const hasLib = kinds.includes('lib') || kinds.includes('python');
      const tools = kinds.includes('tool') ? [fam.name, `${fam.name}-helper`] : kinds.includes('python') ? ['python', 'python3'] : [];
      const description = `${fam.name} ${version} (generated by rezfs tests)`;
      if (isYaml) {
        const f = w.file(`${pkgDir}/package.yaml`, packageYaml({ name: fam.name, version, description, requires, tools, timestamp }));
        if (!notes.packageYaml) notes.packageYaml = f.path;
      } else {
        w.file(
          `${pkgDir}/package.py`,
          packagePy({
            name: fam.name,
            version,
            description,
            requires,
            variants: fam.variants,
            hashed: fam.hashed,
            tools,
            timestamp,
            hasBin,
            hasPython,
            hasLib,
          }),
        );
      }

      const variantPaths: string[] = [];
      const bases: string[] = [];
      if (fam.variants && fam.variants.length) {
        for (const [i, v] of fam.variants.entries()) {
          if (fam.hashed) {
            const h = rezVariantHash(v);
            variantPaths.push(h);
            bases.push(`${pkgDir}/${h}`);
            const link = `${pkgDir}/_v/${String.fromCharCode(97 + i)}`;
            w.symlink(link, `../${h}`);
            if (!notes.hashedVariantDir) {
              notes.hashedVariantDir = `${pkgDir}/${h}`;
              notes.hashedVariantLink = link;
            }
          } else {
            const sub = v.join('/');
            variantPaths.push(sub);
            bases.push(`${pkgDir}/${sub}`);
            if (!notes.variantDir && fam.name === 'oiio' && version === '2.5.8' && i === 1) notes.variantDir = `${pkgDir}/${sub}`;
          }
        }
      } else {
        bases.push(pkgDir);
      }

      for (const base of bases) {
        w.mkdir(base);
        const c: Ctx = { w, rng, family: fam.name, version, base, notes };
        for (const k of kinds) {
          if (k === 'lib') buildLib(c, fam.headers ?? 0);
          else if (k === 'py') buildPy(c);
          else if (k === 'tool') buildTool(c);
          else if (k === 'python') buildPython(c);
        }
        addNotables(c, w);
      }

      packages.push({
        family: fam.name,
        version,
        dir: pkgDir,
        format: isYaml ? 'yaml' : 'py',
        variants: variantPaths,
        hashedVariants: !!fam.hashed,
        ignored: fam.name === IGNORED.family && version === IGNORED.version,
        requires,
      });
    }
  }

  notes.ignoredPackage = { ...IGNORED };
  notes.ignoreMarker = w.file(`${IGNORED.family}/.ignore${IGNORED.version}`, '').path;

  let bigPackage: RepoSummary['bigPackage'];
  if (opts.bigPackage) {
    const total = Math.max(1, opts.bigPackageMiB ?? 50) * MiB;
    const pkgDir = 'bigpkg/1.0.0';
    w.mkdir(pkgDir);
    w.file(
      `${pkgDir}/package.py`,
      packagePy({
        name: 'bigpkg',
        version: '1.0.0',
        description: 'one big package for laziness tests',
        requires: [],
        tools: ['bigpkg'],
        timestamp: baseTime,
        hasBin: true,
        hasPython: false,
        hasLib: false,
      }),
    );
    const files: FileInfo[] = [];
    files.push(w.file(`${pkgDir}/bin/bigpkg`, '#!/bin/sh\necho bigpkg 1.0.0\n', 0o755));
    const smallFile = w.file(`${pkgDir}/share/small/readme-10k.txt`, pseudoText(10 * 1024, seedFrom(seed, 'bigpkg-small')));
    files.push(smallFile);
    const shares = [0.4, 0.3, 0.2, 0.1];
    let left = total - 10 * 1024;
    shares.forEach((s, i) => {
      const size = i === shares.length - 1 ? left : Math.floor(total * s);
      left -= size;
      files.push(w.file(`${pkgDir}/data/blob_${i}.bin`, pseudoRandomBytes(size, seedFrom(seed, 'bigpkg', i))));
    });
    bigPackage = {
      family: 'bigpkg',
      version: '1.0.0',
      dir: pkgDir,
      smallFile,
      files,
      totalBytes: files.reduce((a, f) => a + f.size, 0),
    };
    packages.push({
      family: 'bigpkg',
      version: '1.0.0',
      dir: pkgDir,
      format: 'py',
      variants: [],
      hashedVariants: false,
      ignored: false,
      requires: [],
    });
  }

  applyTimes(root, seed, baseTime);

  for (const k of [
    'bigFile', 'blockBoundaryFiles', 'soChain', 'absoluteSymlink', 'danglingSymlink', 'dirSymlink', 'executable',
    'emptyDirs', 'zeroByteFile', 'readOnlyFile', 'unicodeFile', 'emojiFile', 'spacedFile', 'packageYaml', 'variantDir',
    'hashedVariantDir', 'ignoreMarker',
  ] as const) {
    if (notes[k] === undefined) throw new Error(`repo-generator bug: notable '${k}' not produced`);
  }

  return {
    root,
    seed,
    families: [...new Set(packages.map((p) => p.family))].sort(),
    packages,
    versionCount: packages.length,
    fileCount: w.fileCount,
    dirCount: w.dirCount,
    symlinkCount: w.symlinkCount,
    totalBytes: w.totalBytes,
    largestFile: w.largest,
    notable: notes as RepoSummary['notable'],
    ...(bigPackage ? { bigPackage } : {}),
  };
}

export interface AddPackageOptions {
  seed?: number;
  requires?: string[];
  /** Number of payload files (default 5). */
  files?: number;
  /** mtime for every entry of the new package (default now, whole seconds). */
  mtime?: number;
}

/**
 * Add one small package version `<family>/<version>` (package.py + bin script + a few files) to an existing repo,
 * e.g. to test incremental publish and index refresh. Returns the package dir relative to the repo root and the
 * relative paths of the files it created.
 */
export async function addPackage(
  repoDir: string,
  family: string,
  version: string,
  opts: AddPackageOptions = {},
): Promise<{ dir: string; files: string[]; executable: string; executableOutput: string }> {
  const root = path.resolve(repoDir);
  const pkgDir = `${family}/${version}`;
  if (fs.existsSync(path.join(root, family, version))) throw new Error(`addPackage: ${pkgDir} exists`);
  const w = new Writer(root);
  const rng = new Rng(seedFrom(opts.seed ?? 1, 'add', family, version));
  const mtime = opts.mtime ?? Math.floor(Date.now() / 1000);
  const familyExisted = fs.existsSync(path.join(root, family));
  const familyTimes = familyExisted ? fs.statSync(path.join(root, family)) : undefined;
  const files: string[] = [];
  files.push(
    w.file(
      `${pkgDir}/package.py`,
      packagePy({
        name: family,
        version,
        description: `${family} ${version} (added by rezfs tests)`,
        requires: opts.requires ?? [],
        tools: [family],
        timestamp: mtime,
        hasBin: true,
        hasPython: false,
        hasLib: false,
      }),
    ).path,
  );
  const out = `${family} ${version}`;
  const exe = w.file(`${pkgDir}/bin/${family}`, `#!/bin/sh\necho "${out}"\n`, 0o755).path;
  files.push(exe);
  for (let i = 0; i < (opts.files ?? 5); i++) {
    files.push(w.file(`${pkgDir}/share/data_${i}.txt`, pseudoText(rng.int(0, 20_000), rng.u32())).path);
  }
  for (const rel of [...listAll(root, pkgDir).reverse(), pkgDir]) {
    fs.utimesSync(path.join(root, rel), mtime, mtime);
  }
  // Adding a version changes the family dir's mtime, as on a real filesystem; keep it whole-second.
  if (familyTimes) fs.utimesSync(path.join(root, family), familyTimes.atime, new Date(mtime * 1000));
  else fs.utimesSync(path.join(root, family), mtime, mtime);
  return { dir: pkgDir, files, executable: exe, executableOutput: out };
}
