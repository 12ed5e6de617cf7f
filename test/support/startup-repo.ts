/**
 * Deterministic generator of a released rez repository whose first resolve and first launch are what cold starts
 * over a network are judged by (issue 12; test/e2e/cold-start.test.ts and scripts/bench-latency.sh):
 *
 *  - `families` library families in three layers (`base_*`, `mid_*`, `top_*`), `versions` versions each, every
 *    family required by some family of the layer above with a version range, so that `resolveRequest` (all `top_*`
 *    families) resolves every library: rez's solver meets them one family at a time.
 *  - `app`, one version, requiring every `top_*` family: its payload is a Python package of `appModules` modules
 *    in `appModules / 20` subpackages and `bigBinaries` large binaries in `lib/`. `app-start` (`launchCommand`,
 *    run inside `rez env app`) imports every module in an order shuffled by the seed (unrelated to the order of
 *    files in the pack), imports every library's module, then reads `scatteredReads` ranges of 4-64 KiB at random
 *    offsets of each big binary, as a loader touches parts of shared libraries. It prints one line with the count
 *    of modules and bytes read and a sha256 over everything it read: the same line on every correct filesystem.
 *
 * Every library version ships `python/<family>/` (imported by app-start) and a small `lib/lib<family>.so`.
 * Names, bytes, modes and mtimes are a function of the options. Imports only node: and repo-generator.ts.
 */
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Rng, pseudoRandomBytes, pseudoText, seedFrom } from './repo-generator.js';

export interface StartupRepoOptions {
  seed?: number;
  /** Library families (the resolve's breadth); at least 6. */
  families?: number;
  versions?: number;
  appModules?: number;
  /** Sizes in bytes of the application's big binaries. */
  bigBinaries?: number[];
  scatteredReads?: number;
  /** The interpreter app-start runs on (its shebang). */
  python?: string;
}

export interface StartupRepo {
  root: string;
  /** `rez env <resolveRequest> -- true` resolves `resolvedPackages` packages. */
  resolveRequest: string[];
  resolvedPackages: number;
  /** `rez env <launchRequest> -- <launchCommand>`. */
  launchRequest: string[];
  launchCommand: string[];
  libraryFamilies: string[];
  /** The application's version directory, relative to root, and its big binaries relative to that. */
  appDir: string;
  bigBinaries: { path: string; size: number }[];
  files: number;
  bytes: number;
}

const BASE_TIME_SEC = 1_700_000_000;
const MODULES_PER_SUBPACKAGE = 20;

export function generateStartupRepo(root: string, options: StartupRepoOptions = {}): StartupRepo {
  const seed = options.seed ?? 12;
  const familyCount = Math.max(6, options.families ?? 40);
  const versionCount = Math.max(1, options.versions ?? 4);
  const appModules = Math.max(MODULES_PER_SUBPACKAGE, options.appModules ?? 400);
  const bigSizes = options.bigBinaries ?? [48 * 1024 * 1024, 24 * 1024 * 1024];
  const scatteredReads = options.scatteredReads ?? 48;
  const python = options.python ?? '/usr/bin/python3';
  const rng = new Rng(seedFrom('startup-repo', seed));
  let files = 0;
  let bytes = 0;
  let clock = 0;
  const write = (file: string, data: Buffer | string, mode = 0o644) => {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, data, { mode });
    const t = BASE_TIME_SEC + clock++;
    utimesSync(file, t, t);
    files++;
    bytes += Buffer.byteLength(data);
  };

  // Three layers; each family of a lower layer is required by at least one family of the layer above.
  const tops = Math.max(2, Math.round(familyCount / 5));
  const mids = Math.max(2, Math.round((familyCount - tops) / 2));
  const bases = familyCount - tops - mids;
  const layer = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}_${String(i).padStart(2, '0')}`);
  const layers = [layer('base', bases), layer('mid', mids), layer('top', tops)];
  const versions = Array.from({ length: versionCount }, (_, i) => `1.${i}.0`);
  const deps = new Map<string, string[]>();
  for (let l = 1; l < layers.length; l++) {
    const below = layers[l - 1]!;
    layers[l]!.forEach((family, i) => {
      const wanted = new Set<string>();
      for (let j = i; j < below.length; j += layers[l]!.length) wanted.add(below[j]!); // covers every family below
      while (wanted.size < Math.min(3, below.length)) wanted.add(rng.pick(below));
      deps.set(family, [...wanted].sort());
    });
  }

  const libraries = layers.flat();
  for (const family of libraries) {
    for (const [vi, version] of versions.entries()) {
      const dir = path.join(root, family, version);
      // A range that the newest version of the dependency meets, as rez packages usually say it.
      const requires = (deps.get(family) ?? []).map((d) => `${d}-1.${Math.min(vi, versionCount - 1)}+`);
      write(path.join(dir, 'package.py'), packagePy(family, version, requires, ['PYTHONPATH: python', 'LD_LIBRARY_PATH: lib']));
      const s = seedFrom(family, version);
      write(path.join(dir, 'python', family, '__init__.py'), `from . import core, util\nVERSION = ${JSON.stringify(version)}\n`);
      write(path.join(dir, 'python', family, 'core.py'), pythonModule(2048 + (s % 4096), s));
      write(path.join(dir, 'python', family, 'util.py'), pythonModule(1024 + (s % 2048), s + 1));
      write(path.join(dir, 'lib', `lib${family}.so`), pseudoRandomBytes(64 * 1024 + (s % (128 * 1024)), s + 2), 0o755);
    }
  }

  const appVersion = '2.0.0';
  const appDir = path.join('app', appVersion);
  const appRoot = path.join(root, appDir);
  const top = layers[2]!;
  write(path.join(appRoot, 'package.py'), packagePy('app', appVersion, top.map((t) => `${t}-1+`), ['PYTHONPATH: python', 'PATH: bin', 'LD_LIBRARY_PATH: lib']));
  const modules: string[] = [];
  for (let sub = 0; sub * MODULES_PER_SUBPACKAGE < appModules; sub++) {
    const pkg = `sub${String(sub).padStart(2, '0')}`;
    write(path.join(appRoot, 'python', 'app', pkg, '__init__.py'), '');
    for (let m = 0; m < MODULES_PER_SUBPACKAGE && modules.length < appModules; m++) {
      const name = `mod${String(m).padStart(2, '0')}`;
      write(path.join(appRoot, 'python', 'app', pkg, `${name}.py`), pythonModule(2048 + rng.int(0, 6144), rng.u32()));
      modules.push(`app.${pkg}.${name}`);
    }
  }
  shuffle(modules, rng);
  const binaries = bigSizes.map((size, i) => ({ path: `lib/libapp_${i}.so`, size }));
  for (const [i, b] of binaries.entries()) write(path.join(appRoot, b.path), pseudoRandomBytes(b.size, seedFrom('app-binary', seed, i)), 0o755);
  const reads = binaries.flatMap((b) => [
    [b.path, 0, 64 * 1024] as const, // the headers a loader reads first
    ...Array.from({ length: scatteredReads }, () => {
      const length = rng.int(1, 16) * 4096;
      return [b.path, rng.int(0, Math.max(0, b.size - length)), length] as const;
    }),
  ]);
  shuffle(reads, rng);
  write(path.join(appRoot, 'python', 'app', '__init__.py'), '');
  write(path.join(appRoot, 'python', 'app', 'startup.py'), startupPy(modules, libraries, reads));
  write(path.join(appRoot, 'bin', 'app-start'), `#!${python}\nimport sys\nsys.dont_write_bytecode = True\nfrom app.startup import main\nmain()\n`, 0o755);

  return {
    root,
    resolveRequest: [...top],
    resolvedPackages: libraries.length,
    launchRequest: ['app'],
    launchCommand: ['app-start'],
    libraryFamilies: libraries,
    appDir,
    bigBinaries: binaries,
    files,
    bytes,
  };
}

/** About `size` bytes of valid Python: pseudoText's, cut after its last complete statement. */
function pythonModule(size: number, seed: number): string {
  const lines = pseudoText(size, seed, 'py').toString('utf8').split('\n').slice(0, -1);
  while (lines.length > 0 && lines.at(-1)!.endsWith(':')) lines.pop();
  return `${lines.join('\n')}\n`;
}

function packagePy(name: string, version: string, requires: string[], paths: string[]): string {
  const commands = paths.map((p) => {
    const [variable, sub] = p.split(': ');
    return `    env.${variable}.append("{root}/${sub}")`;
  });
  return [
    `name = ${JSON.stringify(name)}`,
    `version = ${JSON.stringify(version)}`,
    `requires = ${JSON.stringify(requires)}`,
    '',
    'def commands():',
    ...commands,
    '',
  ].join('\n');
}

function startupPy(modules: readonly string[], libraries: readonly string[], reads: readonly (readonly [string, number, number])[]): string {
  return `import hashlib, importlib, os

MODULES = ${JSON.stringify(modules)}
LIBRARIES = ${JSON.stringify(libraries)}
READS = ${JSON.stringify(reads)}


def main():
    digest = hashlib.sha256()
    for name in MODULES + LIBRARIES:
        module = importlib.import_module(name)
        digest.update(name.encode())
        digest.update(str(len(vars(module))).encode())
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    total = 0
    for rel, offset, length in READS:
        fd = os.open(os.path.join(root, rel), os.O_RDONLY)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        digest.update(data)
        total += len(data)
    print("app-start: %d modules, %d bytes read, sha256 %s" % (len(MODULES) + len(LIBRARIES), total, digest.hexdigest()))
`;
}

function shuffle<T>(items: T[], rng: Rng): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
}
