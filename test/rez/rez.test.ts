/**
 * Stock rez against a rezfs mount, compared with the same rez against the source directory.
 *
 * One generated repository (test/rez/rez-generator.ts: 210 families x 10 versions, variants, hashed variants, weak and
 * conflict requirements, `.ignore` markers) is published to a file:// store and mounted by other processes, once per
 * FUSE binding (REZFS_FUSE's, and fuse-native: this file covers both in one pass, so the source side runs once).
 * For every request, the real rez CLI runs on each side — `REZ_PACKAGES_PATH` = a mount, or = source — and every
 * mount must answer what the source does:
 * the resolve (or the failure) and the solver's counters, `rez-context` of the saved context, and the output of
 * `rez env <request> -- <family>-tool`, an executable that runs from the package and prints checksums of its payload.
 * `rez search` / `rez view` must agree too. Paths are compared modulo the repository root. Then rez's payload cache
 * (`cache_packages_path`, `--pkg-cache-mode sync`) copies variants from the mount, and the copies must equal the
 * source byte for byte (and in modes and mtimes).
 *
 * Needs rez: `REZ_BIN` (the directory containing `rez`) or `rez` on PATH; skipped, saying so, without it.
 * rez refuses to cache packages of repositories under its tmpdir (/tmp), so everything lives under /var/tmp
 * (or `REZFS_REZ_TEST_DIR`).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRez, forceUnmountAll, isolatedRezEnv, mountStore, mountsUnder, runCli, runProcess, type CliResult, type MountHandle } from '../support/cli.js';
import { Limiter } from '../support/tree.js';
import { generateRezRepo, planFamilies, rezRequests, type RezRepo, type RezRequest } from './rez-generator.js';

const REZ = findRez();
const SKIP_REASON = REZ ? undefined : 'rez not found: set REZ_BIN to the directory containing the `rez` executable, or put rez on PATH';
const CONCURRENCY = Math.max(1, Number(process.env.REZ_TEST_CONCURRENCY ?? 4));
/** Each binding this file mounts (vitest.config.ts keeps it out of the second binding's pass). */
const BINDINGS = [...new Set([process.env.REZFS_FUSE ?? 'auto', 'fuse-native'])];
const REQUESTS = rezRequests(planFamilies());
/** Requests whose variants go through rez's payload cache. */
const CACHE_LABELS = ['hashed variants, layer 1', 'platform_python variants, layer 2', '1.2+ MiB library 1', 'combination 1'];

if (SKIP_REASON) console.warn(`[test/rez] skipping stock-rez end-to-end tests: ${SKIP_REASON}`);

const limiter = new Limiter(CONCURRENCY);

interface Side {
  /** `source`, or `mount-<binding>`: also names its saved contexts. */
  name: string;
  root: string;
}

let work = '';
let repo: RezRepo;
const mounts: MountHandle[] = [];
let source: Side;
const mountSides: Side[] = [];

/** Environment for one rez run: nothing from the caller's rez config, no resolve caching, no memcached. */
function rezEnv(side: Side, extra: Record<string, string> = {}): Record<string, string> {
  return { ...isolatedRezEnv(path.join(work, 'home'), side.root), ...extra };
}

function rezTool(name: string): [string, string[]] {
  const sibling = path.join(path.dirname(REZ!), `rez-${name}`);
  return existsSync(sibling) ? [sibling, []] : [REZ!, [name]];
}

function rez(side: Side, args: string[], extraEnv: Record<string, string> = {}, tool?: string): Promise<CliResult> {
  const [cmd, pre] = tool ? rezTool(tool) : [REZ!, []];
  return limiter.run(() =>
    runProcess(cmd, [...pre, ...args], { cleanEnv: true, env: rezEnv(side, extraEnv), cwd: work, timeoutMs: 180_000 }),
  );
}

/** Replace this side's repository root (and context file dir) by placeholders; drop the "resolved by <user>, on <date>" line and log times. */
function normalize(text: string, side: Side): string {
  return text
    .split(side.root)
    .join('<REPO>')
    .split(path.join(work, 'rxt', side.name))
    .join('<RXT>')
    .replace(/^(resolved by|resolve failed, by) .*$/gm, '<resolved by ...>')
    .replace(/^\d\d:\d\d:\d\d (?=[A-Z]+ )/gm, '<time> ');
}

/** Split `rez env --stats` output into the solver's counters and the rest. */
function splitStats(stdout: string): { counters: Record<string, number>; rest: string } {
  const start = stdout.indexOf("{'solve_stats'");
  if (start < 0) return { counters: {}, rest: stdout };
  const end = stdout.indexOf('}}}', start) + 3;
  const block = stdout.slice(start, end);
  const counters = Object.fromEntries([...block.matchAll(/'(num_\w+)': (\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
  return { counters, rest: stdout.slice(0, start) + stdout.slice(end) };
}

/** `rez view` output as its sorted top-level entries (a key line with its indented continuation lines). */
function viewEntries(text: string): string[] {
  return text.split(/\n(?=\S)/).sort();
}

/** `name-version -> root` from `rez-context` output (the "resolved packages:" section). */
function resolvedRoots(contextOut: string): Map<string, string> {
  const out = new Map<string, string>();
  const i = contextOut.indexOf('resolved packages:');
  if (i < 0) return out;
  for (const line of contextOut.slice(i).split('\n').slice(1)) {
    const m = /^(\S+)\s+(\S+)/.exec(line);
    if (!m) break;
    out.set(m[1]!, m[2]!);
  }
  return out;
}

interface RequestRun {
  resolve: CliResult;
  counters: Record<string, number>;
  context?: CliResult;
  tool: CliResult;
}

async function runRequest(side: Side, req: RezRequest, index: number): Promise<RequestRun> {
  const rxt = path.join(work, 'rxt', `${side.name}-${index}.rxt`);
  const resolve = await rez(side, ['env', ...req.request, '--stats', '-o', rxt]);
  const { counters } = splitStats(resolve.stdout);
  const context = existsSync(rxt) ? await rez(side, [rxt], {}, 'context') : undefined;
  const tool = await rez(side, ['env', ...req.request, '--', req.tool]);
  return { resolve, counters, ...(context ? { context } : {}), tool };
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

interface Outcome {
  ok: boolean;
  solverFails: number;
  roots: Map<string, string>;
  toolStdout: string;
}
const outcomes = new Map<number, Outcome>();

/** A tree read through stat (following symlinks, as shutil.copytree does): path -> type, mode, size, mtime, sha256. */
async function readTree(root: string, followSymlinks: boolean): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(rel: string): Promise<void> {
    const abs = rel ? path.join(root, rel) : root;
    const st = followSymlinks ? await fsp.stat(abs) : await fsp.lstat(abs);
    const key = rel || '.';
    const meta = `mode=${(st.mode & 0o7777).toString(8)} mtime=${Math.floor(st.mtimeMs / 1000)}`;
    if (st.isDirectory()) {
      out.set(key, `dir ${meta}`);
      for (const name of (await fsp.readdir(abs)).sort()) await walk(rel ? `${rel}/${name}` : name);
    } else if (st.isFile()) {
      out.set(key, `file ${meta} size=${st.size} sha256=${sha256(await fsp.readFile(abs))}`);
    } else {
      out.set(key, `other (${st.isSymbolicLink() ? 'symlink' : 'special'})`);
    }
  }
  await walk('');
  return out;
}

describe.skipIf(!!SKIP_REASON)(`stock rez on a rezfs mount vs the source directory${SKIP_REASON ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  beforeAll(async () => {
    const base = process.env.REZFS_REZ_TEST_DIR ?? '/var/tmp';
    work = await fsp.realpath(await fsp.mkdtemp(path.join(base, 'rezfs-rez-')));
    if (work.startsWith(path.resolve(tmpdir()) + path.sep) || work.startsWith('/tmp/')) {
      throw new Error(`${work} is under the temp dir: rez would refuse to cache its packages; set REZFS_REZ_TEST_DIR`);
    }
    await Promise.all(['home', 'rxt'].map((d) => fsp.mkdir(path.join(work, d))));
    repo = generateRezRepo(path.join(work, 'repo'));
    const store = `file://${path.join(work, 'store')}`;
    const published = await runCli(['publish', repo.root, '--store', store], { timeoutMs: 300_000 });
    expect(published.stderr).toBe('');
    expect(published.code).toBe(0);
    for (const binding of BINDINGS) {
      const name = `mount-${binding}`;
      mounts.push(await mountStore({ store, mountpoint: path.join(work, name), cacheDir: path.join(work, `cache-${binding}`), extraArgs: ['--fuse', binding] }));
      mountSides.push({ name, root: mounts.at(-1)!.mountpoint });
    }
    source = { name: 'source', root: repo.root };
  }, 400_000);

  afterAll(async () => {
    if (!work) return;
    for (const mount of mounts) await mount.unmount();
    const left = await forceUnmountAll([work]);
    if (left.length) console.warn(`[test/rez] forced unmounts: ${left.join('; ')}`);
    // Never recurse into a mount that is still there.
    if (mountsUnder(work).length === 0) await fsp.rm(work, { recursive: true, force: true });
    else console.warn(`[test/rez] ${work} still has mounts; not removed`);
  }, 120_000);

  it('generates the repository the suite needs', () => {
    const families = new Set(repo.packages.map((p) => p.family));
    expect(families.size).toBeGreaterThanOrEqual(200);
    expect(repo.packages.filter((p) => p.family !== 'platform').length).toBe((families.size - 1) * 10);
    expect(repo.packages.some((p) => p.hashed)).toBe(true);
    expect(repo.packages.some((p) => p.ignored)).toBe(true);
    expect(repo.packages.some((p) => p.requires.some((r) => r.startsWith('~')))).toBe(true);
    expect(repo.packages.some((p) => p.requires.some((r) => r.startsWith('!')))).toBe(true);
    expect(REQUESTS.length).toBeGreaterThanOrEqual(40);
  });

  it('shows the same families on each mount as in the source', async () => {
    const s = await fsp.readdir(source.root);
    for (const side of mountSides) expect((await fsp.readdir(side.root)).sort(), side.name).toEqual(s.sort());
  });

  describe.concurrent('rez env / rez-context / tool, request by request', () => {
    REQUESTS.forEach((req, index) => {
      it(`${req.request.join(' ')}  [${req.label}]`, async ({ expect }) => {
        const [s, ...ms] = await Promise.all([runRequest(source, req, index), ...mountSides.map((side) => runRequest(side, req, index))]);
        const show = (r: CliResult) => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
        for (const [i, m] of ms.entries()) {
          const mountSide = mountSides[i]!;
          // The resolve (or its failure), and the solver's work, are identical.
          expect(m.resolve.timedOut || s.resolve.timedOut).toBe(false);
          expect(m.resolve.code, `${mountSide.name}:\n${show(m.resolve)}\nsource:\n${show(s.resolve)}`).toBe(s.resolve.code);
          expect(normalize(splitStats(m.resolve.stdout).rest, mountSide)).toBe(normalize(splitStats(s.resolve.stdout).rest, source));
          expect(normalize(m.resolve.stderr, mountSide)).toBe(normalize(s.resolve.stderr, source));
          expect(m.counters).toEqual(s.counters);
          // rez-context of the saved context: request, resolved packages and their roots.
          expect(!!m.context).toBe(!!s.context);
          if (m.context && s.context) {
            expect(m.context.code).toBe(s.context.code);
            expect(normalize(m.context.stdout, mountSide)).toBe(normalize(s.context.stdout, source));
            expect(normalize(m.context.stderr, mountSide)).toBe(normalize(s.context.stderr, source));
          }
          // The tool, run from the resolved package, prints the same checksums.
          expect(m.tool.code, `${mountSide.name}:\n${show(m.tool)}\nsource:\n${show(s.tool)}`).toBe(s.tool.code);
          expect(m.tool.stdout).toBe(s.tool.stdout);
          expect(normalize(m.tool.stderr, mountSide)).toBe(normalize(s.tool.stderr, source));
          if (s.resolve.code === 0) expect(m.context?.stdout).toContain(`${mountSide.root}/`);
        }

        const ok = s.resolve.code === 0;
        const roots = resolvedRoots(normalize(s.context?.stdout ?? '', source));
        if (ok) {
          const family = req.tool.replace(/-tool$/, '');
          const line = new RegExp(`^${family}-(\\S+) lib=([0-9a-f]{64}) data=\\d+ \\d+ ran-from=root$`, 'm').exec(s.tool.stdout);
          expect(line, s.tool.stdout + s.tool.stderr).not.toBeNull();
          const root = roots.get(`${family}-${line![1]}`);
          expect(root, `${family} in ${[...roots.keys()].join(' ')}`).toBeDefined();
          const lib = await fsp.readFile(path.join(root!.replace('<REPO>', source.root), 'lib', `lib${family}.so`));
          expect(line![2]).toBe(sha256(lib));
        }
        outcomes.set(index, { ok, solverFails: s.counters.num_fails ?? 0, roots, toolStdout: s.tool.stdout });
      });
    });
  });

  it('covered successes, failures, backtracking and hashed-variant shortlinks', () => {
    const all = [...outcomes.values()];
    expect(all.length).toBe(REQUESTS.length);
    const failed = all.filter((o) => !o.ok).length;
    const backtracked = all.filter((o) => o.ok && o.solverFails > 0).length;
    const shortlinked = all.filter((o) => [...o.roots.values()].some((r) => r.includes('/_v/'))).length;
    const variantDirs = all.filter((o) => [...o.roots.values()].some((r) => /\/python-3\.\d+$/.test(r))).length;
    console.log(`[test/rez] ${all.length} requests compared: ${all.length - failed} resolved (${backtracked} after backtracking), ${failed} failed; ${shortlinked} with hashed-variant shortlinks, ${variantDirs} with python variant dirs`);
    expect(failed).toBeGreaterThanOrEqual(8);
    expect(backtracked).toBeGreaterThanOrEqual(5);
    expect(shortlinked).toBeGreaterThanOrEqual(3);
    expect(variantDirs).toBeGreaterThanOrEqual(3);
  });

  describe.concurrent('rez search / rez view', () => {
    const known = new Set(planFamilies().map((f) => f.name));
    const families = [...new Set(REQUESTS.map((r) => r.tool.replace(/-tool$/, '')))].filter((f) => known.has(f));
    for (const family of families) {
      it(family, async ({ expect }) => {
        const search = ['search', family, '--type', 'variant', '--validate', '--format', '{qualified_name} {index} {root} {uri} {timestamp} {requires}'];
        const [ss, sv] = await Promise.all([rez(source, search), rez(source, ['view', family])]);
        expect(ss.code).toBe(0);
        expect(ss.stdout).not.toBe('');
        expect(sv.code).toBe(0);
        await Promise.all(
          mountSides.map(async (side) => {
            const [ms, mv] = await Promise.all([rez(side, search), rez(side, ['view', family])]);
            expect(ms.code, side.name).toBe(ss.code);
            expect(normalize(ms.stdout, side)).toBe(normalize(ss.stdout, source));
            expect(normalize(ms.stderr, side)).toBe(normalize(ss.stderr, source));
            expect(mv.code, side.name).toBe(sv.code);
            // rez orders the keys outside its fixed list (`base`, `hashed_variants`) by set iteration, which varies
            // from run to run (rez's python runs with -E: PYTHONHASHSEED is ignored): compare the entries as a set.
            expect(viewEntries(normalize(mv.stdout, side))).toEqual(viewEntries(normalize(sv.stdout, source)));
            expect(normalize(mv.stderr, side)).toBe(normalize(sv.stderr, source));
          }),
        );
      });
    }
    it('every package of every family (rez search --validate "*"), and the family list', async ({ expect }) => {
      for (const args of [['search', '--type', 'package', '--validate', '*'], ['search', '--type', 'family']]) {
        const [s, ...ms] = await Promise.all([rez(source, args), ...mountSides.map((side) => rez(side, args))]);
        expect(s.code).toBe(0);
        for (const [i, m] of ms.entries()) {
          expect(m.code, mountSides[i]!.name).toBe(0);
          expect(normalize(m.stdout, mountSides[i]!)).toBe(normalize(s.stdout, source));
          expect(normalize(m.stderr, mountSides[i]!)).toBe(normalize(s.stderr, source));
        }
      }
      const visible = repo.packages.filter((p) => !p.ignored).length;
      const s = await rez(source, ['search', '--type', 'package', '*']);
      expect(s.stdout.trim().split('\n').length).toBe(visible);
    });
  });

  it('fills rez\'s payload cache from each mount; the cached variants equal the source byte for byte', async () => {
    for (const side of mountSides) await fillPayloadCache(side);
  }, 300_000);
});

/** rez's payload cache (`--pkg-cache-mode sync`) filled from one mount: the copies equal the source tree. */
async function fillPayloadCache(side: Side): Promise<void> {
  const cacheDir = path.join(work, `pkg-cache-${side.name}`);
  await fsp.mkdir(cacheDir);
  const cacheEnv = { REZ_CACHE_PACKAGES_PATH: cacheDir, REZ_DEFAULT_CACHABLE: '1' };
  const indexes = CACHE_LABELS.map((label) => REQUESTS.findIndex((r) => r.label === label));
  expect(indexes).not.toContain(-1);
  const expected = new Set<string>();
  for (const index of indexes) {
    const req = REQUESTS[index]!;
    const before = outcomes.get(index);
    expect(before?.ok, req.label).toBe(true);
    for (const k of before!.roots.keys()) expected.add(k);
    const run = await rez(side, ['env', '--pkg-cache-mode', 'sync', ...req.request, '--', req.tool], cacheEnv);
    expect(run.code, run.stderr).toBe(0);
    // Same checksums as without the cache; now the tool runs from the cached copy.
    expect(run.stdout).toBe(before!.toolStdout);
    const family = req.tool.replace(/-tool$/, '');
    const where = await rez(side, ['env', ...req.request, '--', 'printenv', `REZ_${family.toUpperCase()}_ROOT`], cacheEnv);
    expect(where.stdout.trim().startsWith(`${cacheDir}/${family}/`), where.stdout + where.stderr).toBe(true);
  }

  // <cache>/<family>/<version>/<hash>/<a>.json (+ the copy in <a>/); .sys holds rez's logs.
  const cached: { json: string; copy: string }[] = [];
  for (const family of await fsp.readdir(cacheDir)) {
    if (family === '.sys') continue;
    for (const version of await fsp.readdir(path.join(cacheDir, family))) {
      for (const hash of await fsp.readdir(path.join(cacheDir, family, version))) {
        const dir = path.join(cacheDir, family, version, hash);
        for (const name of await fsp.readdir(dir)) {
          if (name.endsWith('.json')) cached.push({ json: path.join(dir, name), copy: path.join(dir, name.slice(0, -5)) });
          else if (name.startsWith('.copying')) throw new Error(`unfinished copy ${path.join(dir, name)}`);
        }
      }
    }
  }
  const names: string[] = [];
  for (const { json, copy } of cached) {
    const { handle } = JSON.parse(await fsp.readFile(json, 'utf8')) as {
      handle: { variables: { location: string; name: string; version: string; index: number | null } };
    };
    const v = handle.variables;
    expect(v.location).toBe(side.root);
    names.push(`${v.name}-${v.version}`);
    const pkg = repo.packages.find((p) => p.family === v.name && p.version === v.version)!;
    expect(pkg, `${v.name}-${v.version}`).toBeDefined();
    const sub = v.index === null || v.index === undefined ? '' : pkg.variantDirs[v.index]!;
    const source = path.join(repo.root, pkg.dir, sub);
    const [copyTree, sourceTree] = await Promise.all([readTree(copy, false), readTree(source, true)]);
    expect(copyTree.size).toBeGreaterThan(5);
    expect(Object.fromEntries(copyTree), `${copy} vs ${source}`).toEqual(Object.fromEntries(sourceTree));
  }
  expect(names.sort()).toEqual([...expected].sort());
  console.log(`[test/rez] payload cache: ${cached.length} variants copied from ${side.name}, equal to the source`);
}
