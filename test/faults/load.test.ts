/**
 * Load on a real mount: 32 concurrent readers (16 long-lived processes reading with O_DIRECT, so every read reaches
 * the mount, half of them streaming a 160 MiB package bigger than the memory cache; 16 `sha256sum` loops over the
 * generated repository's payload files) plus, where rez is installed, 8 concurrent `rez env <request> -- <tool>`
 * loops, for REZFS_LOAD_SECONDS (default 60) seconds. Zero errors and zero wrong bytes allowed, and the mount
 * process's RSS (VmRSS, sampled every 0.5 s) must stay under its --memory-limit (256M) + 64 MiB.
 *
 * Everything lives under /var/tmp: rez treats repositories under its tmpdir (/tmp) as temporary.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path, { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRez, forceUnmountAll, mountStore, pidAlive, runCli, runProcess, type MountHandle } from '../support/cli.js';
import { procState, rssBytes, spawnChild } from '../support/proc.js';
import { generateRepo, type RepoSummary } from '../support/repo-generator.js';

const MiB = 1024 * 1024;
const SECONDS = Number(process.env.REZFS_LOAD_SECONDS ?? 60);
const MEMORY_LIMIT = 256 * MiB;
const RSS_BOUND = MEMORY_LIMIT + 64 * MiB;
const REZ = findRez();
const READER = fileURLToPath(new URL('../support/reader.cjs', import.meta.url));
/** `node -e RSS_SAMPLER <pid> <until epoch ms>`: VmRSS every 0.5 s until then; prints { peak (bytes), samples }. */
const RSS_SAMPLER = `const fs = require('fs'); const [pid, until] = process.argv.slice(1); let peak = 0, samples = 0;
const timer = setInterval(() => {
  try { const m = /^VmRSS:\\s+(\\d+) kB/m.exec(fs.readFileSync('/proc/' + pid + '/status', 'utf8')); if (m) { samples++; peak = Math.max(peak, Number(m[1]) * 1024); } } catch {}
  if (Date.now() >= Number(until)) { clearInterval(timer); process.stdout.write(JSON.stringify({ peak, samples })); }
}, 500);`;

/** Requests that resolve in the generated repository, the tool each runs, and what the tool prints. */
const REZ_RUNS: { request: string[]; tool: string; output: string }[] = [
  { request: ['ffmpeg'], tool: 'ffmpeg', output: 'ffmpeg 6.0.1' },
  { request: ['cmake-3.26'], tool: 'cmake', output: 'cmake 3.26.6' },
  { request: ['ocio'], tool: 'ocio', output: 'ocio 2.3.0' },
  { request: ['maya_tools-1.1'], tool: 'maya_tools', output: 'maya_tools 1.1.0' },
  { request: ['houdini_tools'], tool: 'houdini_tools-helper', output: 'houdini_tools helper 20.0.3' },
  { request: ['studio_pipeline', 'ffmpeg-5'], tool: 'studio_pipeline', output: 'studio_pipeline 1.2.0' },
  { request: ['bigpkg'], tool: 'bigpkg', output: 'bigpkg 1.0.0' },
];

let work = '';
let repo: RepoSummary;
let mount: MountHandle;
/** Mount path -> sha256 of every regular payload file (package definitions included). */
const expected: Record<string, string> = {};

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}

async function listFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(root, r)));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

/** Deterministic shuffle (the same every run). */
function shuffled<T>(items: T[], seed: number): T[] {
  const a = [...items];
  let x = seed || 1;
  for (let i = a.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

beforeAll(async () => {
  await mkdir('/var/tmp', { recursive: true });
  work = await mkdtemp('/var/tmp/rezfs-load-');
  repo = await generateRepo(join(work, 'repo'), { bigPackage: true, bigPackageMiB: 160 });
  const store = `file://${join(work, 'store')}`;
  const env = { REZFS_RUNTIME_DIR: join(work, 'run') };
  const published = await runCli(['publish', repo.root, '--store', store], { env, timeoutMs: 120_000 });
  expect(published.code, published.stderr).toBe(0);
  mount = await mountStore({
    store,
    mountpoint: join(work, 'mnt'),
    cacheDir: join(work, 'cache'),
    env,
    extraArgs: ['--memory-limit', '256M', '--refresh', '0'],
  });
  for (const rel of await listFiles(repo.root)) {
    if (path.basename(rel).startsWith('.ignore')) continue;
    expected[join(mount.mountpoint, rel)] = await sha256File(join(repo.root, rel));
  }
}, 180_000);

afterAll(async () => {
  await forceUnmountAll(work ? [work] : []);
  if (work) await rm(work, { recursive: true, force: true });
});

interface ReaderSummary {
  files: number;
  bytes: number;
  reads: number;
  maxReadMs: number;
  errorCount: number;
  errors: string[];
  mismatchCount: number;
  mismatches: string[];
}

describe('load', () => {
  it(`32 readers${REZ ? ' and 8 rez env loops' : ''} for ${SECONDS} s: zero errors, mount RSS under --memory-limit 256M + 64 MiB`, async () => {
    if (!REZ) console.warn('[load] rez not found (set REZ_BIN or put rez on PATH): running the 32 readers without the 8 rez env loops');
    const expectFile = join(work, 'expected.json');
    await writeFile(expectFile, JSON.stringify(expected));
    const all = Object.keys(expected);
    const blobs = all.filter((f) => /\/bigpkg\/1\.0\.0\/data\/blob_\d\.bin$/.test(f)).sort();
    const small = all.filter((f) => !blobs.includes(f));
    expect(blobs).toHaveLength(4);

    const until = Date.now() + SECONDS * 1000;
    const errors: string[] = [];

    // RSS of the serving process every 0.5 s, sampled by a process of its own: this one is busy running the loops.
    const sampler = spawnChild(process.execPath, ['-e', RSS_SAMPLER, String(mount.pid), String(until)], { timeoutMs: (SECONDS + 150) * 1000 });

    // 16 O_DIRECT readers: 8 streaming the big package's blobs (bigger than the memory cache), 8 over the small files.
    const direct = Array.from({ length: 16 }, (_, i) => {
      const files = i < 8 ? shuffled(blobs, i + 1) : shuffled(small, i + 1);
      const child = spawnChild(process.execPath, [READER, ...files], {
        timeoutMs: (SECONDS + 120) * 1000,
        env: { ...process.env, READER_UNTIL: String(until), READER_EXPECT: expectFile, READER_DIRECT: '1' },
      });
      return child.done.then((r) => {
        const line = r.stdout.trim().split('\n').pop() ?? '';
        let s: ReaderSummary | undefined;
        try {
          s = JSON.parse(line) as ReaderSummary;
        } catch {
          s = undefined;
        }
        if (r.code !== 0 || r.timedOut || !s) {
          errors.push(`O_DIRECT reader ${i}: exit ${r.code}${r.timedOut ? ' (timed out)' : ''} ${r.stderr.trim().slice(0, 500)}`);
          return undefined;
        }
        errors.push(...s.errors.map((e) => `O_DIRECT reader ${i}: ${e}`), ...s.mismatches.map((e) => `O_DIRECT reader ${i}: ${e}`));
        if (s.errorCount > s.errors.length) errors.push(`O_DIRECT reader ${i}: ${s.errorCount} errors in all`);
        if (s.mismatchCount > s.mismatches.length) errors.push(`O_DIRECT reader ${i}: ${s.mismatchCount} wrong files in all`);
        return s;
      });
    });

    // 16 sha256sum loops, 40 files a run (through the page cache once a file has been read).
    let shaRuns = 0;
    let shaFiles = 0;
    const hashing = Array.from({ length: 16 }, async (_, i) => {
      const files = shuffled(small, 100 + i);
      for (let at = 0; Date.now() < until; at = (at + 40) % files.length) {
        const batch = files.slice(at, at + 40);
        const r = await runProcess('sha256sum', batch, { timeoutMs: 120_000 });
        shaRuns++;
        if (r.code !== 0) errors.push(`sha256sum (loop ${i}): exit ${r.code} ${r.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
        for (const line of r.stdout.split('\n').filter(Boolean)) {
          const m = /^([0-9a-f]{64}) {2}(.*)$/.exec(line);
          shaFiles++;
          if (!m || expected[m[2]!] !== m[1]) errors.push(`sha256sum (loop ${i}): wrong bytes: ${line}`);
        }
      }
    });

    // 8 rez env loops.
    let rezRuns = 0;
    const rezHome = join(work, 'home');
    await mkdir(rezHome, { recursive: true });
    const rezLoops = REZ
      ? Array.from({ length: 8 }, async (_, i) => {
          for (let n = i; Date.now() < until; n++) {
            const run = REZ_RUNS[n % REZ_RUNS.length]!;
            const r = await runProcess(REZ, ['env', ...run.request, '--', run.tool], {
              cleanEnv: true,
              cwd: work,
              timeoutMs: 120_000,
              env: {
                HOME: rezHome,
                REZ_PACKAGES_PATH: mount.mountpoint,
                REZ_DISABLE_HOME_CONFIG: '1',
                REZ_RESOLVE_CACHING: '0',
                REZ_MEMCACHED_URI: '',
                REZ_COLOR_ENABLED: '0',
              },
            });
            rezRuns++;
            if (r.code !== 0 || r.stdout.trim() !== run.output) {
              errors.push(`rez env ${run.request.join(' ')} -- ${run.tool}: exit ${r.code}, stdout ${JSON.stringify(r.stdout.trim().slice(0, 200))}, stderr ${r.stderr.trim().slice(-500)}`);
            }
          }
        })
      : [];

    const summaries = await Promise.all(direct);
    await Promise.all([...hashing, ...rezLoops]);
    const sampled = await sampler.done;
    const { peak, samples: rssSamples } = JSON.parse(sampled.stdout || '{"peak":0,"samples":0}') as { peak: number; samples: number };
    let peakRss = peak;
    const last = await rssBytes(mount.pid);
    if (last !== undefined) peakRss = Math.max(peakRss, last);

    const directFiles = summaries.reduce((n, s) => n + (s?.files ?? 0), 0);
    const directBytes = summaries.reduce((n, s) => n + (s?.bytes ?? 0), 0);
    const directReads = summaries.reduce((n, s) => n + (s?.reads ?? 0), 0);
    const slowest = Math.max(0, ...summaries.map((s) => s?.maxReadMs ?? 0));
    console.log(
      `[load] ${SECONDS} s: O_DIRECT readers ${directFiles} files, ${(directBytes / MiB).toFixed(0)} MiB in ${directReads} read(2) calls (slowest ${slowest} ms); ` +
        `sha256sum ${shaRuns} runs, ${shaFiles} files; rez env ${REZ ? `${rezRuns} runs` : 'skipped (no rez)'}; ` +
        `mount peak RSS ${(peakRss / MiB).toFixed(1)} MiB over ${rssSamples} samples (bound ${RSS_BOUND / MiB} MiB); errors ${errors.length}`,
    );

    expect(errors.slice(0, 30), `${errors.length} error(s)`).toEqual([]);
    expect(directFiles).toBeGreaterThan(0);
    expect(shaFiles).toBeGreaterThan(0);
    if (REZ) expect(rezRuns).toBeGreaterThanOrEqual(8);
    expect(rssSamples).toBeGreaterThan(SECONDS * 1.5); // sampled all along (2 a second)
    expect(peakRss, `peak RSS ${(peakRss / MiB).toFixed(1)} MiB`).toBeLessThan(RSS_BOUND);
    expect(pidAlive(mount.pid)).toBe(true);
    expect(['R', 'S']).toContain(await procState(mount.pid));
  }, (SECONDS + 180) * 1000);
});
