/**
 * The cold-start benchmark (issue 12), run through scripts/bench-latency.sh (which owns the last-resort cleanup):
 *   vite-node scripts/bench/latency.ts -- --work DIR [--reps N] [--latencies 0,20,60] [--fuse native] [--quick]
 *
 * One s3rver on 127.0.0.1 behind the latency proxy (test/support/latency-proxy.ts: first-byte delay, request
 * counts, the longest serial chain of requests, peak in flight); the startup repository of
 * test/support/startup-repo.ts published to it and kept on local disk. At each latency, sides alternating, each
 * figure a median of --reps runs, stock rez (`rez env`):
 *   cold resolve   `rez env <all top_* families> -- true` on a fresh mount (empty cache dir) after drop_caches,
 *                  against the same on the local repository after drop_caches;
 *   warm resolve   the same again on that mount and on local disk, WARM_PAIRS runs each, interleaved;
 *   cold launch    `rez env app -- app-start` (hundreds of imports in shuffled order, scattered reads of big
 *                  binaries), fresh mount vs local, both after drop_caches; warm launch as warm resolve;
 *   cached launch  the launch again on the mount that ran the profiled one, after drop_caches: the mount holds
 *                  every byte, the kernel none, so no request goes out; what serving a kernel-cold launch costs
 *                  apart from the network (the floor under every cold row);
 *   sparse reads   2,000 random 4 KiB preads of one big binary on a fresh mount: bytes fetched per byte read.
 * Every rezfs row prints requests, chain and peak in flight as counted at the proxy from the mount's start
 * (its own start-up requests included), MiB fetched, and the mount process's CPU; `mount` rows show the mount's
 * own start-up alone. Ratios are against local disk measured in the same run, at the same latency.
 *
 * Nothing here serves a mount: every mount is a `rezfs mount` child (test/support/cli.ts), unmounted on the way
 * out. Progress goes to stderr, the table to stdout.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_WRITE_BEHIND } from '../../src/cache/write-behind.js';
import { waitFor } from '../../src/deadline.js';
import { findRez, forceUnmountAll, isolatedRezEnv, mountStore, runCli, runProcess, runRez, type CliResult, type MountHandle } from '../../test/support/cli.js';
import { startLatencyProxy, trafficStats, type LatencyProxy, type TrafficStats } from '../../test/support/latency-proxy.js';
import { cpuMs, dropCaches, untilCpuQuiet } from '../../test/support/proc.js';
import { startS3Server } from '../../test/support/s3-server.js';
import { generateStartupRepo, type StartupRepo } from '../../test/support/startup-repo.js';

interface Options {
  work: string;
  reps: number;
  latencies: number[];
  fuse: string;
  quick: boolean;
  /** Where each measured run's requests go, one JSON file per run (what each waited for), when set. */
  trace: string | undefined;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { work: '', reps: 3, latencies: [0, 20, 60], fuse: 'native', quick: false, trace: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i] ?? fail(`${a} needs a value`);
    if (a === '--') continue;
    else if (a === '--work') opts.work = value();
    else if (a === '--reps') opts.reps = Number(value());
    else if (a === '--latencies') opts.latencies = value().split(',').map(Number);
    else if (a === '--fuse') opts.fuse = value();
    else if (a === '--quick') opts.quick = true;
    else if (a === '--trace') opts.trace = value();
    else fail(`unknown argument ${a}`);
  }
  if (!opts.work) fail('--work DIR is required (scripts/bench-latency.sh passes it)');
  if (!Number.isInteger(opts.reps) || opts.reps < 1) fail('--reps takes a positive integer');
  if (opts.latencies.some((l) => !Number.isFinite(l) || l < 0)) fail('--latencies takes milliseconds, e.g. 0,20,60');
  return opts;
}

function fail(message: string): never {
  process.stderr.write(`bench-latency: ${message}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const WORK = opts.work;
const rez = findRez() ?? fail('rez not found: set REZ_BIN to the directory containing rez, or put rez on PATH');
const log = (message: string) => process.stderr.write(`[bench-latency ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
const MiB = 1024 * 1024;
const SPARSE_READS = 2000;
const SPARSE_SIZE = 4096;
const WARM_PAIRS = 3;
const PREAD = path.join(import.meta.dirname, 'pread.ts');
/** The TypeScript helpers run as `node <vite-node> <script> -- args`, on the same Node as this driver. */
const VITE_NODE = path.join(import.meta.dirname, '..', '..', 'node_modules', 'vite-node', 'vite-node.mjs');

/** One measured run of a command: wall time, what the proxy saw, the mount's CPU. */
interface Sample {
  ms: number;
  traffic?: TrafficStats;
  /** The payload GETs alone. */
  packs?: TrafficStats;
  mountCpuMs?: number;
  /** Bytes the command read (sparse rows). */
  readBytes?: number;
}

const rows = new Map<string, { local: Sample[]; rezfs: Sample[] }>();
const problems: string[] = [];

function record(latency: number, row: string, side: 'local' | 'rezfs', sample: Sample): void {
  const key = `${latency}\0${row}`;
  const entry = rows.get(key) ?? { local: [], rezfs: [] };
  entry[side].push(sample);
  rows.set(key, entry);
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  log(`generating the startup repository in ${WORK}/repo`);
  const repo = generateStartupRepo(path.join(WORK, 'repo'), opts.quick ? { families: 32, appModules: 200, bigBinaries: [16 * MiB, 8 * MiB] } : {});
  log(`${repo.files} files, ${(repo.bytes / MiB).toFixed(1)} MiB; resolve ${repo.resolveRequest.length} requests -> ${repo.resolvedPackages} packages`);
  const s3 = await startS3Server({ bucket: 'bench' });
  const proxy = await startLatencyProxy(s3.directEndpoint);
  const env = { ...s3.env, AWS_ENDPOINT_URL: proxy.url };
  try {
    const store = s3.storeUrl('plain');
    const published = await runCli(['publish', repo.root, '--store', store], { env, timeoutMs: 600_000 });
    if (published.code !== 0) throw new Error(`publish failed: ${published.stderr}`);
    log(published.stdout.trim());
    const expected = await launch(repo, repo.root);
    const profiled = await profiledStore(repo, s3.storeUrl('profiled'), env, proxy);
    for (const latency of opts.latencies) {
      proxy.setShape({ firstByteMs: latency });
      for (let rep = 0; rep < opts.reps; rep++) {
        log(`${latency} ms, run ${rep + 1} of ${opts.reps}`);
        await resolveRows(repo, latency, store, env, proxy);
        await launchRows(repo, latency, { plain: store, profiled }, env, proxy, expected);
        await sparseRows(repo, latency, store, env, proxy);
      }
    }
  } finally {
    await forceUnmountAll([WORK]);
    await proxy.stop();
    await s3.stop();
  }
  rezVersion = (await runProcess(rez, ['--version'], { timeoutMs: 60_000 })).stdout.trim() || 'rez';
  report(repo);
}

let rezVersion = 'rez';

// ------------------------------------------------------------------------------------------------------------------
// rows

async function resolveRows(repo: StartupRepo, latency: number, store: string, env: Record<string, string>, proxy: LatencyProxy): Promise<void> {
  const request = [...repo.resolveRequest, '--', 'true'];
  await dropCaches();
  record(latency, 'cold resolve', 'local', { ms: (await rezEnv(repo.root, request)).durationMs });
  await onFreshMount(latency, store, env, proxy, async (mount) => {
    await dropCaches();
    record(latency, 'cold resolve', 'rezfs', await measured(proxy, mount, () => rezEnv(mount.mountpoint, request), `${latency}ms-cold-resolve`));
    await rezEnv(repo.root, request); // drop_caches above made local disk cold again
    await warmPairs(latency, 'warm resolve', proxy, mount, () => rezEnv(repo.root, request), () => rezEnv(mount.mountpoint, request));
  });
}

/**
 * Warm rows: WARM_PAIRS runs of each side, interleaved and alternating which goes first. A warm run reaches no
 * store and takes well under a second, so one sample a side is mostly the machine's noise (0.96x and 1.24x for the
 * same code at 20 and 60 ms with one pair a rep).
 */
/**
 * What a cold run left the mount doing (disk copies, written once it is quiet; saving the startup set it recorded)
 * belongs to that run; on 2 cores it slowed the first warm run (0 store and 0 FUSE requests, yet 1266 ms against
 * 828 ms).
 */
async function settled(mount: MountHandle): Promise<void> {
  await sleep(DEFAULT_WRITE_BEHIND.quietMs + 200);
  await untilCpuQuiet(mount.pid);
}

async function warmPairs(latency: number, row: string, proxy: LatencyProxy, mount: MountHandle, local: () => Promise<unknown>, onMount: () => Promise<unknown>): Promise<void> {
  await settled(mount);
  for (let pair = 0; pair < WARM_PAIRS; pair++) {
    const sides = [
      async () => {
        const t0 = performance.now();
        await local();
        record(latency, row, 'local', { ms: performance.now() - t0 });
      },
      async () => {
        proxy.reset();
        record(latency, row, 'rezfs', await measured(proxy, mount, onMount, `${latency}ms-${row.replaceAll(' ', '-')}`));
      },
    ];
    for (const side of pair % 2 === 0 ? sides : sides.reverse()) await side();
  }
}

/** The repository published again, with the startup profile `rezfs profile` records for the launch attached. */
async function profiledStore(repo: StartupRepo, store: string, env: Record<string, string>, proxy: LatencyProxy): Promise<string> {
  proxy.setShape({ firstByteMs: 0 });
  const published = await runCli(['publish', repo.root, '--store', store], { env, timeoutMs: 600_000 });
  if (published.code !== 0) throw new Error(`publish failed: ${published.stderr}`);
  const rezEnvVars = { ...isolatedRezEnv(path.join(WORK, 'home'), repo.root), PATH: '/usr/local/bin:/usr/bin:/bin' };
  const profiled = await runCli(['profile', '--store', store, '--fuse', opts.fuse, '--', rez, 'env', ...repo.launchRequest, '--', ...repo.launchCommand], {
    env: { ...env, ...rezEnvVars },
    timeoutMs: 600_000,
  });
  if (profiled.code !== 0) throw new Error(`rezfs profile failed: ${profiled.stderr}`);
  log(profiled.stdout.trim());
  return store;
}

async function launchRows(repo: StartupRepo, latency: number, stores: { plain: string; profiled: string }, env: Record<string, string>, proxy: LatencyProxy, expected: string): Promise<void> {
  await dropCaches();
  const t0 = performance.now();
  const local = await launch(repo, repo.root);
  const localMs = performance.now() - t0;
  record(latency, 'cold launch', 'local', { ms: localMs });
  record(latency, 'profiled launch', 'local', { ms: localMs });
  record(latency, 'cached launch', 'local', { ms: localMs });
  if (local !== expected) problems.push(`local launch printed ${local}`);
  await onFreshMount(latency, stores.profiled, env, proxy, async (mount) => {
    // The launch, the kernel's cache dropped first, checked against local disk's output; `fromNow` counts only its
    // own requests, not the mount's start-up's.
    const kernelCold = async (row: string, fromNow: boolean) => {
      await dropCaches();
      if (fromNow) proxy.reset();
      const sample = await measured(
        proxy,
        mount,
        async () => {
          const printed = await launch(repo, mount.mountpoint);
          if (printed !== expected) problems.push(`${row} printed ${JSON.stringify(printed)}, local disk ${JSON.stringify(expected)}`);
        },
        `${latency}ms-${row.replace(' ', '-')}`,
      );
      record(latency, row, 'rezfs', sample);
    };
    await kernelCold('profiled launch', false);
    await settled(mount);
    await kernelCold('cached launch', true);
  });
  await onFreshMount(latency, stores.plain, env, proxy, async (mount) => {
    await dropCaches();
    const check = async () => {
      const out = await launch(repo, mount.mountpoint);
      if (out !== expected) problems.push(`launch on the mount printed ${JSON.stringify(out)}, local disk ${JSON.stringify(expected)}`);
    };
    record(latency, 'cold launch', 'rezfs', await measured(proxy, mount, check, `${latency}ms-cold-launch`));
    await launch(repo, repo.root); // drop_caches above made local disk cold again
    await warmPairs(latency, 'warm launch', proxy, mount, () => launch(repo, repo.root), check);
  });
}

async function sparseRows(repo: StartupRepo, latency: number, store: string, env: Record<string, string>, proxy: LatencyProxy): Promise<void> {
  const big = repo.bigBinaries[0]!;
  await dropCaches();
  const local = await pread(path.join(repo.root, repo.appDir, big.path));
  record(latency, 'sparse reads', 'local', local);
  await onFreshMount(latency, store, env, proxy, async (mount) => {
    await dropCaches();
    const file = path.join(mount.mountpoint, repo.appDir, big.path);
    let sparse: Awaited<ReturnType<typeof pread>> | undefined;
    proxy.reset(); // bytes fetched per byte read: the reads' own traffic only
    const sample = await measured(proxy, mount, async () => (sparse = await pread(file)), `${latency}ms-sparse-reads`);
    if (sparse?.checksum !== local.checksum) problems.push(`sparse reads on the mount: checksum ${sparse?.checksum}, local disk ${local.checksum}`);
    // Timed inside the reader on both sides, so node's start-up is in neither.
    record(latency, 'sparse reads', 'rezfs', { ...sample, ms: sparse!.ms, readBytes: sparse!.readBytes });
  });
}

/** Mounts the store on a fresh mountpoint with an empty cache dir, records the mount's own start-up, runs `body`. */
async function onFreshMount(latency: number, store: string, env: Record<string, string>, proxy: LatencyProxy, body: (mount: MountHandle) => Promise<void>): Promise<void> {
  const id = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const cacheDir = path.join(WORK, 'cache', id);
  proxy.reset();
  const t0 = performance.now();
  const mount = await mountStore({ store, mountpoint: path.join(WORK, 'mnt', id), cacheDir, env, extraArgs: ['--fuse', opts.fuse] });
  record(latency, 'mount', 'rezfs', { ms: performance.now() - t0, traffic: proxy.stats() });
  try {
    await body(mount);
  } finally {
    const report = await mount.unmount();
    if (report.method !== 'cli') problems.push(`mount ${mount.mountpoint} unmounted by ${report.method}: ${report.log.join('; ')}`);
    const text = readFileSync(path.join(cacheDir, 'mount.log'), 'utf8');
    for (const line of text.split('\n').filter((l) => / (warn|error) /.test(l)).slice(0, 3)) problems.push(`mount.log: ${line.slice(0, 300)}`);
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

/**
 * Times `run`; the traffic is what the proxy saw since its last reset (for a cold run, the mount's start-up too).
 * With --trace, the requests go to `<trace>/<name>-<n>.json`, with `t0`, when the run started (proxy clock).
 */
async function measured(proxy: LatencyProxy, mount: MountHandle, run: () => Promise<unknown>, name: string): Promise<Sample> {
  const cpu0 = cpuMs(mount.pid);
  const t0 = performance.now();
  await run();
  const ms = performance.now() - t0;
  if (opts.trace) {
    mkdirSync(opts.trace, { recursive: true });
    const n = readdirSync(opts.trace).filter((f) => f.startsWith(`${name}-`)).length + 1;
    writeFileSync(path.join(opts.trace, `${name}-${n}.json`), JSON.stringify({ t0, ms, requests: proxy.requests() }));
  }
  const packs = trafficStats(proxy.requests().filter((r) => r.path.includes('/packs/')));
  return { ms, traffic: proxy.stats(), packs, mountCpuMs: cpuMs(mount.pid) - cpu0 };
}

// ------------------------------------------------------------------------------------------------------------------
// commands

async function rezEnv(packagesPath: string, args: string[]): Promise<CliResult> {
  const home = path.join(WORK, 'home');
  const r = await runRez(['env', ...args], {
    rez,
    packagesPath,
    cleanEnv: true,
    timeoutMs: 300_000,
    cwd: WORK,
    env: { ...isolatedRezEnv(home, packagesPath), PATH: '/usr/local/bin:/usr/bin:/bin' },
  });
  if (r.code !== 0) throw new Error(`rez env ${args.join(' ')} on ${packagesPath} failed (exit ${r.code}): ${r.stderr.slice(-600)}`);
  return r;
}

async function launch(repo: StartupRepo, packagesPath: string): Promise<string> {
  return (await rezEnv(packagesPath, [...repo.launchRequest, '--', ...repo.launchCommand])).stdout.trim();
}

/** scripts/bench/pread.ts: random 4 KiB preads, timed inside the reader. */
async function pread(file: string): Promise<Sample & { checksum: number }> {
  const r = await runProcess(process.execPath, [VITE_NODE, PREAD, '--', file, String(SPARSE_READS), String(SPARSE_SIZE), '7'], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`pread of ${file} failed: ${r.stderr.slice(-300)}`);
  const result = JSON.parse(r.stdout.trim()) as { seconds: number; bytes: number; checksum: number };
  return { ms: result.seconds * 1000, readBytes: result.bytes, checksum: result.checksum };
}

// ------------------------------------------------------------------------------------------------------------------
// report

const median = (xs: number[]) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};

/** Targets of issue 12 on the ratio rezfs/local of a row at a latency (undefined: none). */
function ratioTarget(row: string, latency: number): number | undefined {
  if (row === 'cold resolve') return latency === 20 ? 1.3 : latency === 60 ? 1.5 : undefined;
  if (row === 'cold launch') return latency === 20 ? 2.5 : undefined;
  if (row === 'profiled launch') return latency === 20 ? 1.5 : latency === 60 ? 2 : undefined;
  if (row === 'warm resolve' || row === 'warm launch') return 1.15;
  return undefined;
}

function countVerdict(what: string, value: number, op: '<=' | '>=', limit: number): string {
  const met = op === '<=' ? value <= limit : value >= limit;
  return `${what} ${value} (target ${op} ${limit}) ${met ? 'met' : 'MISSED'}`;
}

function report(repo: StartupRepo): void {
  const out: string[] = [];
  out.push('');
  out.push(
    `cold start over a network: stock ${rezVersion} on ${opts.fuse}; resolve ${repo.resolveRequest.length} requests -> ${repo.resolvedPackages} packages; ` +
      `launch \`rez env app -- app-start\`; medians of ${opts.reps}; ms; ratios against local disk in the same run`,
  );
  const header = ['row', 'local', 'rezfs', 'ratio', 'target', 'requests', 'chain', 'peak', 'MiB got', 'mount CPU', 'by kind (median run)'];
  const widths = [16, 7, 7, 7, 14, 8, 6, 5, 8, 9, 0];
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const verdicts: string[] = [];
  for (const latency of opts.latencies) {
    out.push('');
    out.push(`--- first byte +${latency} ms ---`);
    out.push(line(header));
    for (const row of ['mount', 'cold resolve', 'warm resolve', 'cold launch', 'profiled launch', 'cached launch', 'warm launch', 'sparse reads']) {
      const entry = rows.get(`${latency}\0${row}`);
      if (!entry) continue;
      const rz = entry.rezfs;
      const local = median(entry.local.map((s) => s.ms));
      const ms = median(rz.map((s) => s.ms));
      const ratio = ms / local;
      const limit = ratioTarget(row, latency);
      let target = '';
      if (limit !== undefined) {
        const met = ratio <= limit;
        target = `<=${limit}x ${met ? 'met' : 'MISSED'}`;
        verdicts.push(`${row} at ${latency} ms: ${ratio.toFixed(2)}x (target <= ${limit}x) ${met ? 'met' : 'MISSED'}`);
      }
      const traffic = rz.map((s) => s.traffic).filter((t): t is TrafficStats => t !== undefined);
      const med = (f: (t: TrafficStats) => number) => median(traffic.map(f));
      const typical = traffic.slice().sort((a, b) => a.requests - b.requests)[Math.floor(traffic.length / 2)];
      let extra = typical ? Object.entries(typical.byKind).map(([k, n]) => `${n} ${k}`).join(', ') : '';
      if (row === 'sparse reads') {
        const perByte = median(rz.map((s) => (s.traffic?.bytes ?? Number.NaN) / (s.readBytes ?? Number.NaN)));
        extra = `${perByte.toFixed(1)} bytes fetched per byte read; ${extra}`;
      }
      if (row.endsWith('launch') && rz.some((r) => r.packs)) {
        const packs = rz.map((r) => r.packs).filter((t): t is TrafficStats => t !== undefined);
        extra = `packs: chain ${median(packs.map((t) => t.chain))}, peak ${median(packs.map((t) => t.peakInFlight))}; ${extra}`;
      }
      if (row === 'cold resolve') verdicts.push(countVerdict(`${row} at ${latency} ms: chain`, med((t) => t.chain), '<=', 10));
      if (row.startsWith('cold launch') || row === 'profiled launch') verdicts.push(countVerdict(`${row} at ${latency} ms: peak in flight`, med((t) => t.peakInFlight), '>=', 8));
      out.push(
        line([
          row,
          Number.isFinite(local) ? local.toFixed(0) : '-',
          ms.toFixed(0),
          Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '-',
          target,
          String(med((t) => t.requests)),
          String(med((t) => t.chain)),
          String(med((t) => t.peakInFlight)),
          (med((t) => t.bytes) / MiB).toFixed(1),
          rz.some((s) => s.mountCpuMs !== undefined) ? median(rz.map((s) => s.mountCpuMs ?? Number.NaN)).toFixed(0) : '-',
          extra,
        ]),
      );
    }
  }
  out.push('');
  out.push('targets (issue 12):');
  for (const v of verdicts) out.push(`  ${v}`);
  if (problems.length > 0) {
    out.push('problems:');
    for (const p of [...new Set(problems)].slice(0, 20)) out.push(`  ${p}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
  if (problems.length > 0) process.exitCode = 1;
}


void (async () => {
  const stop = async (signal: string) => {
    log(`${signal}: cleaning up`);
    await forceUnmountAll([WORK]);
    process.exit(130);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  try {
    await main();
  } catch (err) {
    log(`failed: ${(err as Error).stack ?? String(err)}`);
    await forceUnmountAll([WORK]);
    process.exitCode = 1;
  }
})();
