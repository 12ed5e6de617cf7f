/**
 * Every layout rez's filesystem repository reads, from rez's own test repositories `py_packages` and
 * `yaml_packages` (versioned families, unversioned packages, single-file families `multi.py` / `single_*.yaml`, a
 * family with no versions): published from the rez checkout as it is, then `rez search` and a resolve of every
 * family must give the same answers through a mount as from the source (paths compared modulo the root).
 *
 * The repositories come from `REZ_SOURCE` (a rez source checkout: src/rez/data/tests/packages) or, next to the rez
 * install, from rez's own package (rez/data/tests/packages). Never copied into this repository. Skipped, saying so,
 * without rez or without them.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRez, forceUnmountAll, mountStore, runCli, runProcess, type MountHandle } from '../support/cli.js';
import { Limiter } from '../support/tree.js';

const REZ = findRez();
const REPOSITORIES = ['py_packages', 'yaml_packages'] as const;

/** Where rez's test repositories are: REZ_SOURCE's checkout, else the installed rez package's data. */
function rezTestPackages(): string | undefined {
  const candidates = [];
  if (process.env.REZ_SOURCE) candidates.push(path.join(process.env.REZ_SOURCE, 'src/rez/data/tests/packages'), path.join(process.env.REZ_SOURCE, 'rez/data/tests/packages'));
  if (REZ) {
    // The rez entry point is a script of rez's own Python: ask that Python where the rez package is.
    const python = /^#!\s*(\S+)/.exec(readFileSync(REZ, 'utf8').split('\n')[0] ?? '')?.[1];
    try {
      if (python) candidates.push(path.join(execFileSync(python, ['-c', 'import os, rez; print(os.path.dirname(rez.__file__))'], { encoding: 'utf8', timeout: 30_000 }).trim(), 'data/tests/packages'));
    } catch {
      /* not a Python rez: no install to look next to */
    }
  }
  return candidates.find((dir) => REPOSITORIES.every((repo) => existsSync(path.join(dir, repo))));
}

const PACKAGES = rezTestPackages();
const SKIP_REASON = !REZ
  ? 'rez not found: set REZ_BIN to the directory containing `rez`, or put rez on PATH'
  : !PACKAGES
    ? "rez's test repositories (py_packages, yaml_packages) not found: set REZ_SOURCE to a rez source checkout"
    : undefined;
if (SKIP_REASON) console.warn(`[test/rez/rez-layouts] skipping: ${SKIP_REASON}`);

let work = '';
const mounts: MountHandle[] = [];
/** rez runs a few at a time: each is a second of Python start-up. */
const limiter = new Limiter(4);

function rez(root: string, args: string[]) {
  const env = { HOME: path.join(work, 'home'), REZ_PACKAGES_PATH: root, REZ_DISABLE_HOME_CONFIG: '1', REZ_RESOLVE_CACHING: '0', REZ_COLOR_ENABLED: '0' };
  return limiter.run(() => runProcess(REZ!, args, { cleanEnv: true, env, cwd: work, timeoutMs: 120_000 }));
}

/** The same rez command on both sides, at once. */
const bothSides = (mounted: string, source: string, args: string[]) => Promise.all([answer(mounted, args), answer(source, args)]);

/** rez's answer with the repository root and log times taken out, so the two sides compare. */
async function answer(root: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await rez(root, args);
  const out = `${r.stdout}\n${r.stderr}`.split(root).join('<REPO>').replace(/^\d\d:\d\d:\d\d (?=[A-Z]+ )/gm, '<time> ');
  return { code: r.code, out: out.split('\n').sort().join('\n') };
}

describe.skipIf(SKIP_REASON !== undefined).each(REPOSITORIES)("rez's own test repository %s through a mount", (name) => {
  const source = () => path.join(PACKAGES!, name);
  const mounted = () => path.join(work, name, 'mnt');
  let families: string[] = [];

  beforeAll(async () => {
    work ||= await fsp.mkdtemp(path.join(process.env.REZFS_REZ_TEST_DIR ?? '/var/tmp', 'rezfs-layouts-'));
    const store = `file://${path.join(work, name, 'store')}`;
    const published = await runCli(['publish', source(), '--store', store, '--state-dir', path.join(work, 'state')]);
    expect(published.code, published.stderr).toBe(0);
    mounts.push(await mountStore({ store, mountpoint: mounted(), cacheDir: path.join(work, name, 'cache') }));
    const listed = await rez(source(), ['search', '--type', 'family']);
    families = listed.stdout.split('\n').filter(Boolean).sort();
  }, 120_000);

  afterAll(async () => {
    for (const m of mounts.splice(0)) await m.unmount().catch(() => undefined);
    await forceUnmountAll(work ? [work] : []);
  });

  it('rez search finds the same families and packages', async () => {
    expect(families.length).toBeGreaterThanOrEqual(5);
    const searches = await Promise.all(['family', 'package', 'variant'].map((type) => bothSides(mounted(), source(), ['search', '--type', type])));
    for (const [i, [viaMount, fromSource]] of searches.entries()) expect(viaMount, `rez search --type ${['family', 'package', 'variant'][i]}`).toEqual(fromSource);
  });

  it('every family resolves (or fails) the same', async () => {
    const resolves = await Promise.all(families.map((family) => bothSides(mounted(), source(), ['env', family, '--', 'printenv', 'REZ_USED_RESOLVE'])));
    for (const [i, [viaMount, fromSource]] of resolves.entries()) expect(viaMount, `rez env ${families[i]}`).toEqual(fromSource);
  });
});

afterAll(async () => {
  if (work) await fsp.rm(work, { recursive: true, force: true });
});
