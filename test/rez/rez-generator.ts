/**
 * Deterministic generator of a released rez repository with rez semantics, for running the real rez CLI against a
 * rezfs mount and against the source directory (test/rez/rez.test.ts, scripts/bench-rez.sh).
 *
 * - `python` + 210 families x 10 versions (+ `platform`: linux/osx/windows), layered as a DAG (foundation libraries,
 *   mid-level libraries, applications, bundles); requirements with version ranges of every rez syntax (`foo-1.2+<2`,
 *   `foo-2`, `foo<1.4`, `foo==1.2.3`, `foo-1.1|1.3`), weak (`~foo-2+`) and conflict (`!foo-<1.5`) requirements whose
 *   windows move with the version, so that combining families makes rez's solver backtrack or fail.
 * - Variants on python (`python-3.10/`), on platform and python (`platform-linux/python-3.10/`, with osx variants rez
 *   must skip), and hashed variants (`hashed_variants = True`: `<sha1>/` dirs and `_v/a -> ../<sha1>` shortlinks, as
 *   `rez-build`/`rez-cp` lay them out: sha1 of `str(list(map(str, variant_requires)))`, base26 link names in variant
 *   order).
 * - `.ignore<version>` markers (the latest version of some families, and one mid version).
 * - A payload per variant root: `bin/<family>-tool` (0755 sh script printing the sha256 of `lib/lib<family>.so`, found
 *   through `$REZ_<FAMILY>_ROOT`, and the cksum of `share/<family>/data.bin`), `lib/lib<family>.so -> .so.<major> ->
 *   .so.<x.y.z>` (random bytes; a few latest versions hold 1.2-1.6 MiB libraries, across block boundaries), a header,
 *   a README, python modules for python-variant packages.
 *
 * Everything (names, bytes, modes, mtimes) is a function of the seed: 2,103 package versions, ~3,700 variant roots,
 * ~25,000 files, ~33 MiB; generated in a few seconds.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Rng, pseudoRandomBytes, pseudoText, rezVariantHash, seedFrom } from '../support/repo-generator.js';

export type VariantKind = 'none' | 'python' | 'platform' | 'platform_python' | 'hashed';

export interface RezPackage {
  family: string;
  version: string;
  /** `<family>/<version>` */
  dir: string;
  format: 'py' | 'yaml';
  requires: string[];
  /** Variant requirements, in index order (empty: no variants). */
  variants: string[][];
  /** Variant subpaths (relative to `dir`) in index order: `python-3.10`, `platform-linux/python-3.10`, or the sha1. */
  variantDirs: string[];
  /** Shortlinks `_v/a`... (hashed variants only), in index order. */
  shortlinks: string[];
  hashed: boolean;
  /** A `.ignore<version>` marker hides this version. */
  ignored: boolean;
}

export interface RezFamily {
  name: string;
  layer: number;
  versions: string[];
  variantKind: VariantKind;
  deps: string[];
  /** The executable every package of this family has in `bin/`. */
  tool: string;
}

export interface RezRequest {
  /** Short label for test names. */
  label: string;
  /** The request, one argument per package request. */
  request: string[];
  /** The family whose `<family>-tool` runs in the resolved environment. */
  tool: string;
}

export interface RezRepo {
  root: string;
  seed: number;
  families: RezFamily[];
  packages: RezPackage[];
  /** Variant roots relative to the repo root (the package dir when there are no variants). */
  variantRoots: string[];
  fileCount: number;
  symlinkCount: number;
  totalBytes: number;
}

export interface GenerateRezRepoOptions {
  seed?: number;
  /** Base mtime, seconds (default 1_700_000_000). */
  baseTime?: number;
}

// ---------------------------------------------------------------------------------------------------------------

const PYTHON_VERSIONS = ['3.6.15', '3.7.17', '3.8.18', '3.9.18', '3.10.13', '3.10.14', '3.11.7', '3.11.8', '3.12.1', '3.12.2'];
const PY = ['3.7', '3.8', '3.9', '3.10', '3.11', '3.12'];
const PLATFORMS = ['linux', 'osx', 'windows'];

const STEMS = [
  'render', 'shader', 'texture', 'camera', 'light', 'mesh', 'vertex', 'frame', 'scene', 'layer', 'prim', 'stage',
  'sample', 'pixel', 'channel', 'buffer', 'volume', 'voxel', 'curve', 'point', 'matrix', 'vector', 'color', 'space',
  'config', 'plugin', 'asset', 'shot', 'review', 'cache', 'farm', 'grid', 'rig', 'anim', 'comp', 'lens',
];
const SUFFIXES = ['core', 'io', 'kit', 'sdk', 'utils', 'tools', 'py', 'gl', 'ui', 'db'];

export const FAMILY_COUNT = 210;
const LAYERS: [number, number][] = [
  [1, 40], // foundation: no dependencies (index 0 is python)
  [40, 100],
  [100, 160],
  [160, 200],
  [200, 210], // bundles: many dependencies
];

function layerOf(i: number): number {
  return LAYERS.findIndex(([a, b]) => i >= a && i < b);
}

function shuffled<T>(xs: readonly T[], rng: Rng): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}

function makeVersions(rng: Rng): string[] {
  let [maj, min, pat] = [rng.int(0, 4), rng.int(0, 9), rng.int(0, 5)];
  const out: string[] = [];
  for (let i = 0; i < 10; i++) {
    out.push(`${maj}.${min}.${pat}`);
    const r = rng.next();
    if (r < 0.45) pat += rng.int(1, 2);
    else if (r < 0.82) {
      min += 1;
      pat = 0;
    } else {
      maj += 1;
      min = 0;
      pat = 0;
    }
  }
  return out;
}

const clamp = (x: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, x));

/** A requirement on `dep` for the version at index `vi`, with a window that moves with `vi`. */
function rangeReq(dep: RezFamily, vi: number, rng: Rng, slope: number, offset: number, prefix = ''): string {
  const dv = dep.versions;
  const n = dep.name;
  const center = clamp(Math.round(vi * slope + offset), 0, 9);
  const lo = clamp(center - rng.int(0, 3), 0, 9);
  const hi = clamp(center + rng.int(1, 4), 1, 10); // exclusive
  const r = rng.next();
  if (r < 0.12) return `${prefix}${n}`;
  if (r < 0.34) return `${prefix}${n}-${dv[lo]}+`;
  if (r < 0.64) return hi >= 10 ? `${prefix}${n}-${dv[lo]}+` : `${prefix}${n}-${dv[lo]}+<${dv[hi]}`;
  if (r < 0.78) return `${prefix}${n}-${dv[center]!.split('.')[0]}`;
  if (r < 0.86) return hi >= 10 ? `${prefix}${n}` : `${prefix}${n}<${dv[hi]}`;
  if (r < 0.93) return `${prefix}${n}==${dv[center]}`;
  const other = clamp(center + rng.pick([-3, -2, 2, 3]), 0, 9);
  return other === center ? `${prefix}${n}-${dv[center]}` : `${prefix}${n}-${dv[Math.min(center, other)]}|${dv[Math.max(center, other)]}`;
}

/** The plan: families with versions, dependencies and variant kinds (no I/O). */
export function planFamilies(seed = 1): RezFamily[] {
  const rng = new Rng(seedFrom(seed, 'rez-plan'));
  const names = shuffled(
    STEMS.flatMap((s) => SUFFIXES.map((x) => `${s}_${x}`)),
    rng,
  ).slice(0, FAMILY_COUNT - 1);
  const families: RezFamily[] = [
    { name: 'python', layer: 0, versions: PYTHON_VERSIONS, variantKind: 'none', deps: [], tool: 'python-tool' },
  ];
  for (let i = 1; i < FAMILY_COUNT; i++) {
    const name = names[i - 1]!;
    const layer = layerOf(i);
    const r = rng.next();
    const variantKind: VariantKind =
      r < 0.58 ? 'none' : r < 0.78 ? 'python' : r < 0.86 ? 'platform_python' : r < 0.9 ? 'platform' : 'hashed';
    const deps: string[] = [];
    if (layer > 0) {
      const [, end] = LAYERS[layer - 1]!;
      const count = layer === 4 ? rng.int(4, 6) : rng.int(1, 3);
      // Mostly from the layer just below, sometimes from any earlier family.
      for (let k = 0; k < count * 4 && deps.length < count; k++) {
        const from = rng.chance(0.7) ? LAYERS[layer - 1]![0] : 1;
        const d = families[rng.int(from, end - 1)]!.name;
        if (!deps.includes(d)) deps.push(d);
      }
    }
    families.push({ name, layer, versions: makeVersions(rng), variantKind, deps, tool: `${name}-tool` });
  }
  return families;
}

// ---------------------------------------------------------------------------------------------------------------

function pyList(xs: string[]): string {
  return `[${xs.map((x) => `'${x}'`).join(', ')}]`;
}

function pythonWindow(vi: number, rng: Rng): string[] {
  const start = clamp(Math.floor(vi / 2.5) + rng.int(-1, 0), 0, PY.length - 2);
  return PY.slice(start, start + rng.int(2, 3));
}

function variantsFor(kind: VariantKind, vi: number, rng: Rng): string[][] {
  switch (kind) {
    case 'none':
      return [];
    case 'python':
      return pythonWindow(vi, rng).map((p) => [`python-${p}`]);
    case 'platform':
      return [['platform-linux'], ['platform-osx']];
    case 'platform_python': {
      const pys = pythonWindow(vi, rng);
      return [...pys.map((p) => ['platform-linux', `python-${p}`]), ['platform-osx', `python-${pys[pys.length - 1]}`]];
    }
    case 'hashed': {
      const pys = pythonWindow(vi, rng);
      return rng.chance(0.5) ? pys.map((p) => [`python-${p}`]) : pys.map((p) => ['platform-linux', `python-${p}`]);
    }
  }
}

function envName(family: string): string {
  return family.toUpperCase();
}

function toolScript(family: string): string {
  const E = envName(family);
  return [
    '#!/bin/sh',
    `# ${family}-tool: generated by rezfs tests; prints checksums of this variant's payload`,
    'set -e',
    `root="$REZ_${E}_ROOT"`,
    `[ -n "$root" ] || { echo "${family}-tool: REZ_${E}_ROOT is not set" >&2; exit 3; }`,
    `[ "$(dirname "$0")" = "$root/bin" ] && where=root || where="not-root:$(dirname "$0")"`,
    `lib=$(sha256sum < "$root/lib/lib${family}.so" | cut -d' ' -f1)`,
    `data=$(cksum < "$root/share/${family}/data.bin")`,
    `echo "${family}-$REZ_${E}_VERSION lib=$lib data=$data ran-from=$where"`,
    '',
  ].join('\n');
}

function packagePy(p: {
  family: string;
  version: string;
  requires: string[];
  variants: string[][];
  hashed: boolean;
  python: boolean;
  timestamp: number;
  description: string;
}): string {
  const lines = ['# -*- coding: utf-8 -*-', '', `name = '${p.family}'`, '', `version = '${p.version}'`, ''];
  lines.push(`description = '${p.description}'`, '', `authors = ['rezfs rez-generator']`, '');
  lines.push(`tools = ['${p.family}-tool']`, '');
  if (p.requires.length) lines.push(`requires = ${pyList(p.requires)}`, '');
  if (p.variants.length) {
    lines.push(`variants = [${p.variants.map(pyList).join(', ')}]`, '');
    if (p.hashed) lines.push('hashed_variants = True', '');
  }
  lines.push('def commands():');
  lines.push(`    env.PATH.prepend('{root}/bin')`);
  lines.push(`    env.LD_LIBRARY_PATH.prepend('{root}/lib')`);
  if (p.python) lines.push(`    env.PYTHONPATH.prepend('{root}/python')`);
  lines.push(`    env.${envName(p.family)}_DATA = '{root}/share/${p.family}'`);
  lines.push('', `timestamp = ${p.timestamp}`, '', 'format_version = 2', '');
  return lines.join('\n');
}

function packageYaml(p: { family: string; version: string; requires: string[]; timestamp: number; description: string }): string {
  const lines = [`name: ${p.family}`, `version: ${p.version}`, `description: ${p.description}`, 'authors:', '- rezfs rez-generator'];
  lines.push('tools:', `- ${p.family}-tool`);
  if (p.requires.length) lines.push('requires:', ...p.requires.map((r) => `- '${r}'`));
  lines.push('commands: |-', `  env.PATH.prepend('{root}/bin')`, `  env.LD_LIBRARY_PATH.prepend('{root}/lib')`);
  lines.push(`timestamp: ${p.timestamp}`, 'format_version: 2', '');
  return lines.join('\n');
}

class Writer {
  fileCount = 0;
  symlinkCount = 0;
  totalBytes = 0;
  constructor(readonly root: string) {}
  abs(rel: string): string {
    return path.join(this.root, ...rel.split('/'));
  }
  mkdir(rel: string): void {
    fs.mkdirSync(this.abs(rel), { recursive: true, mode: 0o755 });
  }
  file(rel: string, content: Buffer | string, mode = 0o644): void {
    this.mkdir(path.posix.dirname(rel));
    const a = this.abs(rel);
    const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    fs.writeFileSync(a, buf, { flag: 'wx' });
    fs.chmodSync(a, mode);
    this.fileCount++;
    this.totalBytes += buf.length;
  }
  symlink(rel: string, target: string): void {
    this.mkdir(path.posix.dirname(rel));
    fs.symlinkSync(target, this.abs(rel));
    this.symlinkCount++;
  }
}

const KiB = 1024;

function writePayload(w: Writer, base: string, fam: RezFamily, version: string, big: boolean, python: boolean, rng: Rng): void {
  const n = fam.name;
  const [maj = '0'] = version.split('.');
  w.file(`${base}/bin/${n}-tool`, toolScript(n), 0o755);
  const real = `lib${n}.so.${version}`;
  const libSize = big ? rng.int(1200 * KiB, 1600 * KiB) : rng.int(1 * KiB, 6 * KiB);
  w.file(`${base}/lib/${real}`, pseudoRandomBytes(libSize, rng.u32()), 0o755);
  if (maj !== version) {
    w.symlink(`${base}/lib/lib${n}.so.${maj}`, real);
    w.symlink(`${base}/lib/lib${n}.so`, `lib${n}.so.${maj}`);
  } else {
    w.symlink(`${base}/lib/lib${n}.so`, real);
  }
  w.file(`${base}/include/${n}/${n}.h`, pseudoText(rng.int(100, 1500), rng.u32(), 'c'));
  w.file(`${base}/share/${n}/data.bin`, pseudoRandomBytes(rng.int(0, 2 * KiB), rng.u32()));
  w.file(`${base}/README.txt`, `${n} ${version}\n${pseudoText(rng.int(50, 400), rng.u32())}\n`);
  if (python) {
    w.file(`${base}/python/${n}/__init__.py`, `__version__ = '${version}'\n`);
    w.file(`${base}/python/${n}/core.py`, pseudoText(rng.int(200, 2000), rng.u32(), 'py'));
  }
}

function listAll(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const d of fs.readdirSync(rel ? path.join(root, rel) : root, { withFileTypes: true })) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    out.push(r);
    if (d.isDirectory()) out.push(...listAll(root, r));
  }
  return out;
}

/** Families whose latest version has a `.ignore` marker, plus one mid-version marker. */
function ignoredVersions(families: RezFamily[]): Map<string, Set<string>> {
  const m = new Map<string, Set<string>>();
  const add = (f: RezFamily, v: string) => m.set(f.name, (m.get(f.name) ?? new Set()).add(v));
  families.forEach((f, i) => {
    if (i > 0 && i % 9 === 4) add(f, f.versions[9]!);
  });
  add(families[17]!, families[17]!.versions[5]!);
  return m;
}

/** Generate the repository into `dir` (created; must be empty or absent). */
export function generateRezRepo(dir: string, opts: GenerateRezRepoOptions = {}): RezRepo {
  const seed = opts.seed ?? 1;
  const baseTime = opts.baseTime ?? 1_700_000_000;
  const root = path.resolve(dir);
  fs.mkdirSync(root, { recursive: true });
  if (fs.readdirSync(root).length) throw new Error(`generateRezRepo: ${root} is not empty`);
  const w = new Writer(root);
  const families = planFamilies(seed);
  const byName = new Map(families.map((f) => [f.name, f]));
  const ignored = ignoredVersions(families);
  const packages: RezPackage[] = [];
  const variantRoots: string[] = [];
  const yamlFamilies = new Set([families[3]!.name, families[11]!.name]);

  // platform: linux, osx, windows (no payload but the tool)
  for (const [pi, p] of PLATFORMS.entries()) {
    const dirRel = `platform/${p}`;
    w.file(
      `${dirRel}/package.py`,
      packagePy({ family: 'platform', version: p, requires: [], variants: [], hashed: false, python: false, timestamp: baseTime + pi, description: `platform ${p}` }),
    );
    writePayload(w, dirRel, { name: 'platform', layer: 0, versions: PLATFORMS, variantKind: 'none', deps: [], tool: 'platform-tool' }, p, false, false, new Rng(seedFrom(seed, 'platform', p)));
    packages.push({ family: 'platform', version: p, dir: dirRel, format: 'py', requires: [], variants: [], variantDirs: [], shortlinks: [], hashed: false, ignored: false });
    variantRoots.push(dirRel);
  }

  const candidatesForSoft = families.slice(1, 200);
  for (const [fi, fam] of families.entries()) {
    const frng = new Rng(seedFrom(seed, 'family', fam.name));
    const slopes = fam.deps.map(() => 0.55 + frng.next() * 0.45);
    const offsets = fam.deps.map(() => frng.int(-1, 2));
    // From this version on, the family picks up one more dependency (if it has a layer below).
    const extraDepFrom = frng.int(4, 9);
    const extraDep = fam.layer > 0 ? frng.pick(families.slice(1, LAYERS[fam.layer - 1]![1])).name : undefined;
    const bigVersions = fi > 0 && fi % 37 === 5 ? new Set([fam.versions[9]]) : new Set<string>();
    for (const [vi, version] of fam.versions.entries()) {
      const rng = new Rng(seedFrom(seed, fam.name, version));
      const requires = fam.deps.map((d, k) => rangeReq(byName.get(d)!, vi, rng, slopes[k]!, offsets[k]!));
      if (extraDep && vi >= extraDepFrom && !fam.deps.includes(extraDep)) {
        requires.push(rangeReq(byName.get(extraDep)!, vi, rng, 0.8, 0));
      }
      if (fam.layer > 0 && rng.chance(0.18)) {
        const other = rng.pick(candidatesForSoft);
        if (other.name !== fam.name && !requires.some((r) => r.replace(/^[~!]/, '').split(/[-<=]/)[0] === other.name)) {
          requires.push(rangeReq(other, vi, rng, 0.9, 0, '~').replace(/^~([a-z_]+)$/, '~$1-0+'));
        }
      }
      if (fam.layer > 0 && rng.chance(0.08)) {
        const other = rng.pick(candidatesForSoft);
        if (other.name !== fam.name && !requires.some((r) => r.replace(/^[~!]/, '').split(/[-<=]/)[0] === other.name)) {
          const ov = other.versions;
          requires.push(rng.chance(0.3) ? `!${other.name}` : `!${other.name}-<${ov[rng.int(2, 6)]}`);
        }
      }
      const variants = variantsFor(fam.variantKind, vi, rng);
      const hashed = fam.variantKind === 'hashed';
      const python = fam.variantKind === 'python' || fam.variantKind === 'platform_python' || fam.variantKind === 'hashed';
      const dirRel = `${fam.name}/${version}`;
      const timestamp = baseTime + fi * 86_400 + vi * 3_600;
      const description = `${fam.name} ${version}, layer ${fam.layer} (generated by rezfs tests)`;
      const yaml = yamlFamilies.has(fam.name) && variants.length === 0 && vi % 2 === 1;
      if (yaml) w.file(`${dirRel}/package.yaml`, packageYaml({ family: fam.name, version, requires, timestamp, description }));
      else w.file(`${dirRel}/package.py`, packagePy({ family: fam.name, version, requires, variants, hashed, python, timestamp, description }));

      const variantDirs: string[] = [];
      const shortlinks: string[] = [];
      if (variants.length === 0) {
        writePayload(w, dirRel, fam, version, bigVersions.has(version), python, rng);
        variantRoots.push(dirRel);
      } else {
        for (const [i, v] of variants.entries()) {
          const sub = hashed ? rezVariantHash(v) : v.join('/');
          variantDirs.push(sub);
          writePayload(w, `${dirRel}/${sub}`, fam, version, bigVersions.has(version) && i === 0, python, rng);
          variantRoots.push(`${dirRel}/${sub}`);
          if (hashed) {
            const link = `_v/${String.fromCharCode(97 + i)}`;
            w.symlink(`${dirRel}/${link}`, `../${sub}`);
            shortlinks.push(link);
          }
        }
      }
      const isIgnored = ignored.get(fam.name)?.has(version) ?? false;
      packages.push({ family: fam.name, version, dir: dirRel, format: yaml ? 'yaml' : 'py', requires, variants, variantDirs, shortlinks, hashed, ignored: isIgnored });
    }
    for (const v of ignored.get(fam.name) ?? []) w.file(`${fam.name}/.ignore${v}`, '');
  }

  // Deterministic whole-second mtimes, children before parents.
  for (const rel of listAll(root).reverse()) {
    const t = baseTime + (seedFrom(seed, 'mtime', rel) % (180 * 86_400));
    const a = path.join(root, rel);
    if (fs.lstatSync(a).isSymbolicLink()) fs.lutimesSync(a, t, t);
    else fs.utimesSync(a, t, t);
  }

  return {
    root,
    seed,
    families,
    packages,
    variantRoots,
    fileCount: w.fileCount,
    symlinkCount: w.symlinkCount,
    totalBytes: w.totalBytes,
  };
}


// ---------------------------------------------------------------------------------------------------------------
// Requests

/**
 * The requests the end-to-end suite runs, derived from the plan: single families of every layer and variant kind,
 * every version-range syntax, python and platform pins (matching and not), weak and conflict requests, ignored
 * versions, missing families/versions, and seeded multi-family combinations (the solver backtracks on some).
 */
export function rezRequests(families: RezFamily[], seed = 1): RezRequest[] {
  const out: RezRequest[] = [];
  const add = (label: string, request: string[], tool?: string) => {
    const first = request.find((r) => /^[a-z]/.test(r))!;
    out.push({ label, request, tool: `${tool ?? first.split(/[-<=!~|]/)[0]}-tool` });
  };
  const f = families.slice(1);
  const find = (pred: (x: RezFamily) => boolean, nth = 0): RezFamily => {
    const found = f.filter(pred)[nth];
    if (!found) throw new Error('rezRequests: no family matches');
    return found;
  };
  const ignored = ignoredVersions(families);
  const latestIgnored = (x: RezFamily) => ignored.get(x.name)?.has(x.versions[9]!) ?? false;

  for (let layer = 0; layer <= 4; layer++) {
    const x = find((y) => y.layer === layer && y.variantKind === 'none' && !latestIgnored(y));
    add(`layer ${layer}`, [x.name]);
  }
  for (const [kind, layer] of [['hashed', 0], ['hashed', 1], ['hashed', 3], ['platform', 1], ['platform', 2], ['platform_python', 2], ['platform_python', 3], ['python', 3]] as const) {
    add(`${kind} variants, layer ${layer}`, [find((y) => y.layer === layer && y.variantKind === kind).name]);
  }
  const yamlFam = families[11]!;
  add('package.yaml family', [yamlFam.name]);
  add('package.yaml version', [`${yamlFam.name}==${yamlFam.versions[3]}`]);
  const big = families.filter((x, i) => i > 0 && i % 37 === 5 && !latestIgnored(x));
  big.slice(0, 2).forEach((x, i) => add(`1.2+ MiB library ${i + 1}`, [x.name]));

  const ig = families[4]!;
  add('latest version ignored', [ig.name]);
  add('ignored version requested (fails)', [`${ig.name}==${ig.versions[9]}`]);
  const mid = families[17]!;
  add('ignored mid version requested (fails)', [`${mid.name}==${mid.versions[5]}`]);
  add('range around an ignored version', [`${mid.name}-${mid.versions[4]}+<${mid.versions[6]}`]);

  const l2 = f.filter((x) => x.layer === 2);
  const l3 = f.filter((x) => x.layer === 3);
  const l4 = f.filter((x) => x.layer === 4);
  add('major version', [`${l3[1]!.name}-${l3[1]!.versions[4]!.split('.')[0]}`]);
  add('exact version', [`${l2[2]!.name}==${l2[2]!.versions[2]}`]);
  add('bounded range', [`${l4[1]!.name}-${l4[1]!.versions[3]}+<${l4[1]!.versions[7]}`]);
  add('upper bound', [`${l3[3]!.name}<${l3[3]!.versions[5]}`]);
  add('union of versions', [`${l2[4]!.name}-${l2[4]!.versions[1]}|${l2[4]!.versions[6]}`]);

  const pyFams = f.filter((x) => x.layer >= 1 && x.variantKind !== 'none' && x.variantKind !== 'platform');
  ['3.9', '3.12', '3.8', '3.11', '3.7', '3.10'].forEach((py, i) => {
    const x = pyFams[i * 5]!;
    add(`python-${py} pin`, [x.name, `python-${py}`]);
  });
  const plat = find((y) => y.layer >= 1 && y.variantKind === 'platform');
  add('platform-osx pin (implicit ~platform==linux: fails)', [plat.name, 'platform-osx']);
  const platPy = find((y) => y.layer >= 1 && y.variantKind === 'platform_python', 2);
  add('platform-linux pin', ['platform-linux', platPy.name], platPy.name);

  const withDeps = l3.filter((x) => x.deps.length >= 2);
  const a = withDeps[0]!;
  const dep = families.find((x) => x.name === a.deps[0])!;
  add('weak requirement on a dependency', [a.name, `~${dep.name}==${dep.versions[0]}`]);
  const unrelated = find((y) => y.layer === 0 && !a.deps.includes(y.name), 3);
  add('weak requirement on an absent family', [a.name, `~${unrelated.name}-0+`]);
  add('conflict with a dependency (fails)', [a.name, `!${dep.name}`]);
  add('conflict with the latest dependency', [a.name, `!${dep.name}-${dep.versions[9]}`]);
  add('conflict with itself (fails)', [`${a.name}-${a.versions[9]!.split('.')[0]}`, `!${a.name}`]);
  const top = l4[0]!;
  const mid1 = families.find((x) => x.name === top.deps[0])!;
  add('conflict with a transitive dependency', [top.name, `!${mid1.deps[0]}`]);
  add('python-3.7 pin on a bundle', [top.name, 'python-3.7']);
  add('missing family (fails)', ['no_such_family']);
  add('missing version (fails)', [`${l2[0]!.name}-99`]);

  const rng = new Rng(seedFrom(seed, 'rez-requests'));
  const pool = [...l2, ...l3, ...l4];
  for (let i = 0; i < 12; i++) {
    const n = rng.pick([2, 2, 3, 3, 4]);
    const picked: string[] = [];
    while (picked.length < n) {
      const x = rng.pick(pool).name;
      if (!picked.includes(x)) picked.push(x);
    }
    add(`combination ${i + 1}`, picked);
  }
  return out;
}
