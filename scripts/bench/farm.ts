/**
 * The farm benchmark (issue 16), run through scripts/bench-farm.sh (which owns the last-resort cleanup):
 *   vite-node scripts/bench/farm.ts -- --work DIR [--nodes 32] [--latency 20] [--fault-rate 0.05] [--quick]
 *
 * N mounts on this machine, each its own `rezfs mount` process and cache dir, all cold, read the same context at
 * the same moment: every node runs one `sha256sum` over the files of the application version of
 * test/support/startup-repo.ts and the package.py of each library (the payload a job's start reads, whole), and
 * its sums are checked against local disk. The origin is s3rver behind the latency proxy
 * (test/support/latency-proxy.ts: first-byte delay, request counts, peak in flight), which is what every row's
 * origin figures are counted at; the mounts reach it
 *   direct      straight through the proxy (every node a client of the origin), or
 *   site cache  through nginx with the shipped examples/nginx/rezfs-site-cache.conf (fresh cache each run)
 *               in front of the proxy, the way a site deploys it (the latency is the origin's, not the LAN's);
 * each as one node alone and as N nodes at once, and N nodes through the site cache with the origin answering a
 * share of GETs 503 SlowDown (--fault-rate; the S3 server's own proxy injects them, below the latency proxy).
 * It prints origin requests and bytes against the unique objects (distinct objects or slices asked) and the
 * unique bytes (the union of the byte ranges asked, per object), p50/p95/max time for a node to finish, peak
 * origin concurrency, and the RSS of the idle mounts. Ratios are within the run.
 *
 * Nothing here serves a mount: every mount is a `rezfs mount` child (test/support/cli.ts), unmounted on the way
 * out. Progress goes to stderr, the table to stdout. Exit 1 when a node read other bytes than local disk or failed.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { forceUnmountAll, mountStore, runCli, runProcess, type MountHandle } from '../../test/support/cli.js';
import { startLatencyProxy, type LatencyProxy, type ProxiedRequest } from '../../test/support/latency-proxy.js';
import { findNginx, startNginxCache } from '../../test/support/nginx.js';
import { cpuMs, dropCaches, machineBusyMs, memoryBytes } from '../../test/support/proc.js';
import { startS3Server, type S3TestServer } from '../../test/support/s3-server.js';
import { generateStartupRepo, type StartupRepo } from '../../test/support/startup-repo.js';

interface Options {
  work: string;
  nodes: number;
  latencyMs: number;
  faultRate: number;
  quick: boolean;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { work: '', nodes: 32, latencyMs: 20, faultRate: 0.05, quick: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i] ?? fail(`${a} needs a value`);
    if (a === '--') continue;
    else if (a === '--work') opts.work = value();
    else if (a === '--nodes') opts.nodes = Number(value());
    else if (a === '--latency') opts.latencyMs = Number(value());
    else if (a === '--fault-rate') opts.faultRate = Number(value());
    else if (a === '--quick') opts.quick = true;
    else fail(`unknown argument ${a}`);
  }
  if (!opts.work) fail('--work DIR is required (scripts/bench-farm.sh passes it)');
  if (!Number.isInteger(opts.nodes) || opts.nodes < 2 || opts.nodes > 128) fail('--nodes takes a whole number from 2 to 128');
  if (!Number.isFinite(opts.latencyMs) || opts.latencyMs < 0) fail('--latency takes milliseconds, e.g. 20');
  if (!(opts.faultRate >= 0 && opts.faultRate < 1)) fail('--fault-rate takes a share of GETs below 1, e.g. 0.05 (0: no fault row)');
  return opts;
}

function fail(message: string): never {
  process.stderr.write(`bench-farm: ${message}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const WORK = opts.work;
const log = (message: string) => process.stderr.write(`[bench-farm ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
const MiB = 1024 * 1024;
const CORES = availableParallelism();
const SLOW_DOWN = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';
const NGINX = findNginx() ?? fail('nginx is not installed (apt-get install nginx-light): the site-cache rows need it');

/** One row: a set of nodes started together through one path to the origin. */
interface Row {
  label: string;
  nodes: number;
  origin: ProxiedRequest[];
  /** Each node's time from the common start to its reader's exit. */
  nodeMs: number[];
  failed: number;
  peakInFlight: number;
  /** 503s the origin answered (fault rows). */
  injected: number;
  /** Each mount's memory after mounting, before any read. */
  idleMemory: { rss: number; pss: number; private: number }[];
  /** Origin requests the mounts made while mounting (the catalog: index, shards), before the herd read. */
  mountRequests: number;
  /** CPU the mount processes spent during the herd's read, summed. */
  mountCpuMs: number;
  /** CPU the whole machine spent busy during it (mounts, readers, nginx, s3rver, proxy), summed over cores. */
  machineBusyMs: number;
  /** Wall time from the common start to the last node's finish. */
  wallMs: number;
}

const rows: Row[] = [];
const problems: string[] = [];

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  log(`generating the startup repository in ${WORK}/repo`);
  const repo = generateStartupRepo(path.join(WORK, 'repo'), opts.quick ? { families: 12, appModules: 100, bigBinaries: [4 * MiB, 2 * MiB] } : { families: 24, appModules: 300, bigBinaries: [12 * MiB, 6 * MiB] });
  const files = readSet(repo);
  writeFileSync(path.join(WORK, 'files.txt'), `${files.join('\n')}\n`);
  const expected = await sums(repo.root);
  log(`${files.length} files read per node; ${repo.files} files, ${(repo.bytes / MiB).toFixed(1)} MiB in the repository`);
  const s3 = await startS3Server({ bucket: 'farm' });
  // The origin as a site sees it: the S3 server (its own proxy injects the fault row's 503s) behind the latency.
  const proxy = await startLatencyProxy(s3.endpoint, { firstByteMs: opts.latencyMs });
  const env = { ...s3.env, AWS_ENDPOINT_URL: proxy.url, REZFS_RUNTIME_DIR: path.join(WORK, 'run') };
  try {
    const published = await runCli(['publish', repo.root, '--store', s3.storeUrl('farm')], { env, timeoutMs: 600_000 });
    if (published.code !== 0) throw new Error(`publish failed: ${published.stderr}`);
    log(published.stdout.trim().split('\n').at(-1) ?? '');
    const direct = { store: s3.storeUrl('farm'), site: false };
    const site = { store: '', site: true };
    await runRow('direct, one node', 1, direct, s3, proxy, env, expected);
    await runRow(`direct, ${opts.nodes} nodes`, opts.nodes, direct, s3, proxy, env, expected);
    await runRow('site cache, one node', 1, site, s3, proxy, env, expected);
    await runRow(`site cache, ${opts.nodes} nodes`, opts.nodes, site, s3, proxy, env, expected);
    if (opts.faultRate > 0) await runRow(`site cache, ${opts.nodes} nodes, ${opts.faultRate * 100}% 503`, opts.nodes, site, s3, proxy, env, expected, opts.faultRate);
  } finally {
    await forceUnmountAll([WORK]);
    await proxy.stop();
    await s3.stop();
  }
  report(files.length);
}

/** What every node reads: the application version's files and each library version's package.py, sorted. */
function readSet(repo: StartupRepo): string[] {
  const out = runSync('find', [repo.appDir, '-type', 'f'], repo.root);
  const libraries = runSync('find', ['.', '-mindepth', '3', '-maxdepth', '3', '-name', 'package.py'], repo.root).map((p) => p.replace(/^\.\//, ''));
  return [...new Set([...out, ...libraries])].sort();
}

function runSync(command: string, args: string[], cwd: string): string[] {
  return execFileSync(command, args, { cwd, encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** One node's job: `sha256sum` of the read set under `root`. */
function sumsUnder(root: string): ReturnType<typeof runProcess> {
  return runProcess('sh', ['-c', `xargs -d '\\n' sha256sum < ${path.join(WORK, 'files.txt')}`], { cwd: root, timeoutMs: 600_000 });
}

/** The sums as local disk prints them. */
async function sums(root: string): Promise<string> {
  const r = await sumsUnder(root);
  if (r.code !== 0) throw new Error(`sha256sum under ${root} failed: ${r.stderr}`);
  return r.stdout;
}

async function runRow(
  label: string,
  nodes: number,
  via: { store: string; site: boolean },
  s3: S3TestServer,
  proxy: LatencyProxy,
  env: Record<string, string>,
  expected: string,
  faultRate = 0,
): Promise<void> {
  log(`${label}: mounting`);
  const nginx = via.site ? await startNginxCache(NGINX, proxy.url, { workerConnections: Math.max(256, nodes * 40) }) : undefined;
  const store = nginx ? `${nginx.url}/${s3.bucket}/farm/` : via.store;
  const dir = path.join(WORK, label.replace(/[^a-z0-9]+/gi, '-'));
  const mounts: MountHandle[] = [];
  proxy.reset();
  try {
    // Mounted a few at a time: N mount processes starting at once on two cores is a test of the scheduler.
    for (let i = 0; i < nodes; i += 4) {
      const batch = Array.from({ length: Math.min(4, nodes - i) }, (_, j) =>
        mountStore({ store, mountpoint: path.join(dir, `mnt${i + j}`), cacheDir: path.join(dir, `cache${i + j}`), env, timeoutMs: 120_000, extraArgs: ['--refresh', '0'] }),
      );
      mounts.push(...(await Promise.all(batch)));
    }
    const idleMemory = (await Promise.all(mounts.map((m) => memoryBytes(m.pid)))).map((b) => b ?? { rss: 0, pss: 0, private: 0 });
    await dropCaches();
    let injected = 0;
    if (faultRate > 0) {
      // Every (1/rate)th GET, the first included: a herd through a site cache makes few origin requests (one per
      // object), and a coin per request would often inject none.
      const every = Math.max(1, Math.round(1 / faultRate));
      let gets = 0;
      s3.setInterceptor((r) => {
        if (r.method !== 'GET' || gets++ % every !== 0) return undefined;
        injected++;
        return { status: 503, body: SLOW_DOWN, headers: { 'content-type': 'application/xml' } };
      });
    }
    const mountRequests = proxy.requests().length;
    proxy.reset();
    log(`${label}: ${nodes} node(s) read at once`);
    const cpu0 = mounts.map((m) => cpuMs(m.pid));
    const busy0 = machineBusyMs();
    const t0 = performance.now();
    const results = await Promise.all(
      mounts.map(async (m) => {
        const r = await sumsUnder(m.mountpoint);
        return { ms: performance.now() - t0, ok: r.code === 0 && r.stdout === expected, why: r.code !== 0 ? r.stderr.split('\n')[0] : 'other bytes than local disk' };
      }),
    );
    const wallMs = performance.now() - t0;
    const machineBusy = machineBusyMs() - busy0;
    const mountCpuMs = mounts.reduce((n, m, i) => n + (cpuMs(m.pid) - cpu0[i]!), 0);
    s3.setInterceptor(null);
    const failed = results.filter((r) => !r.ok);
    for (const r of failed.slice(0, 3)) problems.push(`${label}: a node failed: ${r.why}`);
    const stats = proxy.stats();
    rows.push({ label, nodes, origin: proxy.requests(), nodeMs: results.map((r) => r.ms), failed: failed.length, peakInFlight: stats.peakInFlight, injected, idleMemory, mountRequests, mountCpuMs, machineBusyMs: machineBusy, wallMs });
  } finally {
    s3.setInterceptor(null);
    await Promise.all(mounts.map((m) => m.unmount()));
    await forceUnmountAll([dir]);
    await nginx?.stop();
  }
}

// ------------------------------------------------------------------------------------------------------------------
// report

/** Distinct objects (slices, for ranged GETs) asked, and the union of the byte ranges asked per object. */
function unique(origin: readonly ProxiedRequest[]): { pieces: number; bytes: number } {
  const ok = origin.filter((r) => r.method === 'GET' && r.status !== undefined && r.status < 300);
  const pieces = new Set(ok.map((r) => `${r.path} ${r.range ?? ''}`)).size;
  const spans = new Map<string, [number, number][]>();
  for (const r of ok) {
    const m = /^bytes=(\d+)-(\d+)$/.exec(r.range ?? '');
    const span: [number, number] = m ? [Number(m[1]), Number(m[1]) + r.bytes] : [0, r.bytes];
    spans.set(r.path, [...(spans.get(r.path) ?? []), span]);
  }
  let bytes = 0;
  for (const list of spans.values()) {
    list.sort((a, b) => a[0] - b[0]);
    let [start, end] = list[0]!;
    for (const [s, e] of list.slice(1)) {
      if (s > end) {
        bytes += end - start;
        [start, end] = [s, e];
      } else end = Math.max(end, e);
    }
    bytes += end - start;
  }
  return { pieces, bytes };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function report(filesPerNode: number): void {
  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  const lines: string[] = [];
  lines.push(`rezfs farm benchmark: ${opts.nodes} nodes, origin first byte ${opts.latencyMs} ms, ${filesPerNode} files per node; origin counted at the latency proxy`);
  lines.push('');
  lines.push('Origin figures are the herd\'s reads; "at mount" is what the mounts asked the origin while mounting (the catalog), before.');
  lines.push('');
  lines.push('| row | at mount | origin requests | unique objects/slices | ratio | origin MiB | unique MiB | ratio | 503s | node p50 | node p95 | node max | vs one node (p95) | peak origin in flight | mount CPU | machine busy | failed |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const alone = new Map(rows.filter((r) => r.nodes === 1).map((r) => [r.label.split(',')[0], r]));
  for (const row of rows) {
    const u = unique(row.origin);
    const bytes = row.origin.reduce((n, r) => n + r.bytes, 0);
    const single = alone.get(row.label.split(',')[0]);
    const p95 = percentile(row.nodeMs, 95);
    lines.push(
      `| ${row.label} | ${row.mountRequests} | ${row.origin.length} | ${u.pieces} | ${(row.origin.length / u.pieces).toFixed(2)}x | ${(bytes / MiB).toFixed(1)} | ${(u.bytes / MiB).toFixed(1)} | ` +
        `${(bytes / u.bytes).toFixed(2)}x | ${row.injected} | ${s(percentile(row.nodeMs, 50))} | ${s(p95)} | ${s(Math.max(...row.nodeMs))} | ` +
        `${single && row.nodes > 1 ? `${(p95 / percentile(single.nodeMs, 95)).toFixed(2)}x` : '–'} | ${row.peakInFlight} | ${s(row.mountCpuMs)} | ` +
        `${((100 * row.machineBusyMs) / (CORES * row.wallMs)).toFixed(0)}% of ${CORES} cores | ${row.failed} |`,
    );
  }
  lines.push('');
  lines.push(
    '"mount CPU" is what the mount processes spent during the read, summed; "machine busy" is the share of all cores busy (mounts, readers, nginx, ' +
      's3rver, proxy) from the start to the last node\'s finish: near 100% the herd waits for this machine\'s cores, not for the origin.',
  );
  const fault = rows.find((r) => r.injected > 0);
  const clean = rows.find((r) => r.label === `site cache, ${opts.nodes} nodes`);
  if (fault && clean) {
    lines.push('');
    lines.push(`retries under ${opts.faultRate * 100}% 503s: ${fault.origin.length} origin requests vs ${clean.origin.length} fault-free (${(fault.origin.length / clean.origin.length).toFixed(2)}x)`);
  }
  const idle = rows.filter((r) => r.nodes > 1).flatMap((r) => r.idleMemory);
  if (idle.length > 0) {
    const figure = (name: string, values: number[]) => `${name} median ${(percentile(values, 50) / MiB).toFixed(0)} MiB, max ${(Math.max(...values) / MiB).toFixed(0)} MiB`;
    lines.push(
      `idle mount memory (${idle.length} mounts): ${figure('RSS', idle.map((m) => m.rss))}; ${figure('PSS', idle.map((m) => m.pss))}; ` +
        `${figure('private', idle.map((m) => m.private))} (RSS counts the node binary's text, shared by every mount, whole in each)`,
    );
  }
  for (const p of problems) lines.push(`PROBLEM: ${p}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().then(
  () => process.exit(problems.length > 0 ? 1 : 0),
  async (err: unknown) => {
    process.stderr.write(`bench-farm: ${(err as Error).stack ?? String(err)}\n`);
    await forceUnmountAll([WORK]);
    process.exit(1);
  },
);
