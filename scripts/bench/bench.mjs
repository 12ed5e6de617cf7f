// The rezfs benchmark (issue 4). Run through scripts/bench.sh, which owns the temp dir and the last-resort cleanup:
//   node scripts/bench/bench.mjs --tmp <dir> [--quick] [--peers] [--reps N] [--peer-reps N]
// Starts s3rver on 127.0.0.1 (request counting preloaded into its own process, no proxy), generates the data, runs
// workloads 1-9 through rezfs mounts (the CLI, each mount served by its own daemon), baselines in the same run,
// and prints one table. Progress goes to stderr, the table to stdout.
//
// Rules kept here: nothing in this process ever serves a mount; every command that touches a mount runs as a child
// with a timeout (never a synchronous exec); only pids this run started (or that `rezfs mount` reported as its
// serving daemon) are ever signalled; every mount is unmounted on the way out (umount -l as the last resort).
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bigFilePackage, catalogRepo, treePackage } from './data.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const S3RVER_MAIN = join(ROOT, 'test', 'support', 's3rver-main.cjs');
const S3_COUNT = join(HERE, 's3-count.cjs');
const S3_TOOL = join(HERE, 's3-tool.mjs');
const PREAD = join(HERE, 'pread.mjs');
const NODE = process.execPath;
const MiB = 1024 * 1024;
const BUCKET = 'bench';

// ------------------------------------------------------------------------------------------------------------------
// options

function parseArgs(argv) {
  const opts = { quick: false, peers: false, tmp: undefined, reps: undefined, peerReps: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--peers') opts.peers = true;
    else if (a === '--tmp') opts.tmp = argv[++i];
    else if (a === '--reps') opts.reps = Number(argv[++i]);
    else if (a === '--peer-reps') opts.peerReps = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.tmp) throw new Error('--tmp <dir> is required (scripts/bench.sh passes it)');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const TMP = opts.tmp;
const Q = opts.quick;
const cfg = {
  reps: opts.reps ?? (Q ? 1 : 3),
  peerReps: opts.peerReps ?? 1,
  bigBytes: (Q ? 64 : 256) * MiB,
  treeDirs: Q ? 200 : 2000,
  perDir: 10,
  catFamilies: Q ? 500 : 5000,
  catVersions: 20,
  smallFamilies: 200,
  publishBytes: (Q ? 256 : 1024) * MiB,
  preads: 2000,
  preadSize: 4096,
  memoryLimit: process.env.BENCH_MEMORY_LIMIT ?? '256M',
  rezRequest: ['fam00010', 'fam00020', 'fam00030'],
};
const memoryLimitMiB = parseSizeMiB(cfg.memoryLimit);

function parseSizeMiB(text) {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)/i.exec(text);
  const unit = { '': 1 / MiB, K: 1 / 1024, M: 1, G: 1024 }[m[2].toUpperCase()];
  return Number(m[1]) * unit;
}

// ------------------------------------------------------------------------------------------------------------------
// processes, mounts and cleanup

const started = new Set(); // pids this run started (or that rezfs mount reported), still possibly alive
const mounted = new Map(); // mountpoint -> mount record
const notes = [];
const problems = [];
const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function track(pid) {
  started.add(pid);
  appendFileSync(join(TMP, 'pids'), `${pid}\n`);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

function cmdlineOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** Signals a pid we started, only while its command line still contains `expect`. */
function signalOurs(pid, signal, expect) {
  if (!pid || !alive(pid)) return;
  if (expect && !cmdlineOf(pid).includes(expect)) return;
  try {
    process.kill(pid, signal);
  } catch {
    /* gone */
  }
}

/** Runs a command without a shell; resolves with its output, exit code and wall time. Kills its process group on timeout. */
function run(cmd, args, { env, timeoutMs = 600_000, cwd } = {}) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env: env ?? process.env, cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const kill = (signal) => {
      try {
        process.kill(-child.pid, signal);
      } catch {
        /* gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      setTimeout(() => kill('SIGKILL'), 3000).unref();
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: stderr + String(err), timedOut, seconds: (performance.now() - t0) / 1000 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, seconds: (performance.now() - t0) / 1000 });
    });
  });
}

/**
 * Times a shell snippet from inside bash ($EPOCHREALTIME around it), so process start-up of the harness is not
 * counted. Throws unless it exits 0. Returns {seconds, output}.
 */
async function timed(script, { timeoutMs = 900_000, env } = {}) {
  const outFile = join(TMP, 'timed.out');
  const wrapped = `s=$EPOCHREALTIME; ( ${script} ) > ${outFile} 2>&1; rc=$?; e=$EPOCHREALTIME; echo "__T $s $e $rc" >&2`;
  const r = await run('bash', ['-c', wrapped], { env: { ...(env ?? process.env), LC_ALL: 'C' }, timeoutMs });
  const output = existsSync(outFile) ? readFileSync(outFile, 'utf8') : '';
  const m = /__T (\S+) (\S+) (\d+)/.exec(r.stderr);
  if (r.timedOut) throw new Error(`timed out after ${timeoutMs / 1000} s: ${script}`);
  if (!m || m[3] !== '0') throw new Error(`failed (${m ? `exit ${m[3]}` : r.stderr.trim()}): ${script}: ${output.trim().slice(-300)}`);
  return { seconds: Number(m[2]) - Number(m[1]), output };
}

let dropWarned = false;
async function dropCaches() {
  const r = await run('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'], { timeoutMs: 120_000 });
  if (r.code !== 0 && !dropWarned) {
    dropWarned = true;
    notes.push(`drop_caches failed (${r.stderr.trim()}): "cold" and "after drop_caches" figures are NOT cold`);
  }
}

function vmHWM(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

function fuseMountpoints() {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2]?.startsWith('fuse') && f[2] !== 'fusectl')
    .map((f) => f[1].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))));
}

async function waitFor(fn, timeoutMs, intervalMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (fn()) return true;
    if (Date.now() > end) return false;
    await sleep(intervalMs);
  }
}

let mountSeq = 0;
function newMountpoint(kind) {
  const mnt = join(TMP, 'mnt', `${kind}${++mountSeq}`);
  mkdirSync(mnt, { recursive: true });
  return mnt;
}

let cacheSeq = 0;
const freshCacheDir = () => join(TMP, 'cache', `c${++cacheSeq}`);

/** `rezfs mount` (daemonizes, returns once usable). Returns {kind, mnt, pid, cacheDir, seconds}. */
async function mountRezfs(store, cacheDir, memoryLimit = cfg.memoryLimit) {
  const mnt = newMountpoint('rezfs');
  mkdirSync(cacheDir, { recursive: true });
  const logFile = join(cacheDir, 'mount.log');
  const logOffset = existsSync(logFile) ? statSync(logFile).size : 0;
  const r = await run(NODE, [CLI, 'mount', mnt, '--store', store, '--cache-dir', cacheDir, '--memory-limit', memoryLimit], { timeoutMs: 120_000 });
  const pid = Number(/pid (\d+)/.exec(r.stdout)?.[1]);
  if (pid) track(pid);
  if (r.code !== 0 || !pid) throw new Error(`rezfs mount failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
  const m = { kind: 'rezfs', mnt, pid, cacheDir, logFile, logOffset, seconds: r.seconds, expect: CLI };
  mounted.set(mnt, m);
  return m;
}

const peakRss = { data: 0, dataMount: '' };

/** Unmounts, waits for the serving process to go; returns the mount process's VmHWM in MiB. */
async function unmount(m) {
  const hwm = vmHWM(m.pid);
  if (m.kind === 'rezfs') await run(NODE, [CLI, 'unmount', m.mnt], { timeoutMs: 30_000 });
  else await run('fusermount', ['-u', m.mnt], { timeoutMs: 30_000 });
  if (!(await waitFor(() => !alive(m.pid), 15_000))) signalOurs(m.pid, 'SIGTERM', m.expect);
  if (!(await waitFor(() => !alive(m.pid), 5_000))) signalOurs(m.pid, 'SIGKILL', m.expect);
  if (fuseMountpoints().includes(m.mnt)) {
    problems.push(`${m.kind} mount ${m.mnt} did not unmount cleanly; used umount -l`);
    await run('umount', ['-l', m.mnt], { timeoutMs: 30_000 });
  }
  mounted.delete(m.mnt);
  started.delete(m.pid);
  if (m.kind === 'rezfs') collectLog(m);
  return hwm;
}

/** Error and warning lines a rezfs mount logged while this benchmark used it. */
function collectLog(m) {
  if (!existsSync(m.logFile)) return;
  const text = readFileSync(m.logFile).subarray(m.logOffset).toString('utf8');
  const bad = text.split('\n').filter((l) => /error|warn|fail|exception/i.test(l));
  for (const line of bad.slice(0, 5)) problems.push(`mount.log (${m.label ?? m.mnt}): ${line.trim().slice(0, 300)}`);
  if (bad.length > 5) problems.push(`mount.log (${m.label ?? m.mnt}): ... ${bad.length - 5} more error/warning lines`);
}

/** The mounts of workloads 1-5 count towards the first peak RSS row. */
async function unmountData(m, label) {
  m.label = label;
  const hwm = await unmount(m);
  if (hwm > peakRss.data) {
    peakRss.data = hwm;
    peakRss.dataMount = label;
  }
  return hwm;
}

async function cleanup() {
  for (const m of [...mounted.values()]) {
    await run(m.kind === 'rezfs' ? NODE : 'fusermount', m.kind === 'rezfs' ? [CLI, 'unmount', m.mnt] : ['-u', m.mnt], { timeoutMs: 15_000 });
    if (fuseMountpoints().includes(m.mnt)) await run('umount', ['-l', m.mnt], { timeoutMs: 15_000 });
    mounted.delete(m.mnt);
  }
  if (s3) {
    s3.child.stdin.end(); // s3rver-main.cjs shuts down when its stdin closes
    if (!(await waitFor(() => !alive(s3.child.pid), 5_000))) signalOurs(s3.child.pid, 'SIGKILL', 's3rver-main');
  }
  await sleep(200);
  for (const pid of started) signalOurs(pid, 'SIGTERM');
}

let exiting = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (exiting) return;
    exiting = true;
    log(`${sig}: cleaning up`);
    cleanup().finally(() => process.exit(130));
  });
}

// ------------------------------------------------------------------------------------------------------------------
// S3 server and request counting

let s3;
const AWS_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
  AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};

async function startS3() {
  const dataDir = join(TMP, 's3');
  mkdirSync(dataDir, { recursive: true });
  const child = spawn(NODE, ['--openssl-legacy-provider', '-r', S3_COUNT, S3RVER_MAIN, dataDir, BUCKET], { stdio: ['pipe', 'pipe', 'pipe'] });
  track(child.pid);
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start: ${out}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /S3RVER_READY (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => reject(new Error(`s3rver exited (${code}): ${out}`)));
  });
  const endpoint = `http://127.0.0.1:${port}`;
  Object.assign(process.env, AWS_ENV, { AWS_ENDPOINT_URL: endpoint });
  return { child, port, endpoint };
}

async function counters(reset = false) {
  const res = await fetch(`${s3.endpoint}/__bench/${reset ? 'reset' : 'stats'}`);
  return (await res.json()).requests;
}
const resetCounters = () => counters(true);

/** GET requests (count, bytes) since the last reset, optionally only those whose class matches. */
async function gets(match = /./) {
  const all = await counters();
  let n = 0;
  let bytes = 0;
  const by = {};
  for (const [name, c] of Object.entries(all)) {
    if (!name.startsWith('GET ') || !match.test(name)) continue;
    n += c.n;
    bytes += c.bytesOut;
    by[name.slice(4)] = c.n;
  }
  return { n, bytes, by: Object.entries(by).map(([k, v]) => `${v} ${k}`).join(', ') };
}

async function s3tool(...args) {
  const r = await run(NODE, [S3_TOOL, ...args.map(String)], { timeoutMs: 1_800_000 });
  if (r.code !== 0) throw new Error(`s3-tool ${args[0]} failed: ${r.stderr.trim().slice(-500)}`);
  const value = JSON.parse(r.stdout.trim().split('\n').pop());
  return Array.isArray(value) ? value : { ...value, wall: r.seconds };
}

// ------------------------------------------------------------------------------------------------------------------
// workloads

async function ddRead(path, expectBytes) {
  const { seconds, output } = await timed(`dd if='${path}' of=/dev/null bs=1M`);
  const bytes = Number(/(\d+) bytes/.exec(output)?.[1]);
  if (bytes !== expectBytes) throw new Error(`read ${bytes} bytes of ${path}, expected ${expectBytes}`);
  return expectBytes / MiB / seconds;
}

async function findTree(dir) {
  const { seconds, output } = await timed(`find '${dir}' -printf '%s %T@\\n' | wc -l`);
  return { seconds, entries: Number(output.trim()) };
}

async function tarTree(parent, name) {
  const { seconds, output } = await timed(`tar -cf - -C '${parent}' '${name}' | wc -c`);
  return { seconds, bytes: Number(output.trim()) };
}

async function preads(file) {
  const r = await run(NODE, [PREAD, file, cfg.preads, cfg.preadSize, 7], { timeoutMs: 900_000 });
  if (r.code !== 0) throw new Error(`pread failed: ${r.stderr.trim().slice(-300)}`);
  return JSON.parse(r.stdout.trim());
}

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

/** Collected figures: results[name] = array of repetitions. */
const results = {};
const add = (name, value) => (results[name] ??= []).push(value);
const med = (name) => median(results[name] ?? []);
const errors = {};

/** Runs one step; on failure records the error under `name` and goes on with the benchmark. */
async function step(name, fn) {
  const t = performance.now();
  try {
    const value = await fn();
    log(`  ${name}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
    return value;
  } catch (err) {
    errors[name] ??= err.message.replace(/\s+/g, ' ').slice(0, 400);
    log(`${name}: ${err.message.replace(/\s+/g, ' ').slice(0, 400)}`);
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------------------------------
// main

const t0 = performance.now();
const paths = {};
const gate = { sanity: [] };

async function setup() {
  mkdirSync(join(TMP, 'mnt'), { recursive: true });
  s3 = await startS3();
  log(`s3rver on ${s3.endpoint} (pid ${s3.child.pid})`);

  let t = performance.now();
  const repo = join(TMP, 'repo');
  paths.big = bigFilePackage(repo, 'bigfile', 'big.bin', cfg.bigBytes);
  const tree = treePackage(repo, 'tree', cfg.treeDirs, cfg.perDir);
  paths.treeParent = join(repo, 'tree');
  paths.treeFiles = tree.files;
  paths.treeBytes = tree.bytes;
  paths.pubRepo = join(TMP, 'pubrepo');
  paths.pubFile = bigFilePackage(paths.pubRepo, 'payload', 'payload.bin', cfg.publishBytes);
  log(`generated data in ${((performance.now() - t) / 1000).toFixed(1)} s: ${cfg.bigBytes / MiB} MiB file, ${tree.files} files (${(tree.bytes / MiB).toFixed(0)} MiB) in ${cfg.treeDirs} dirs, ${cfg.publishBytes / MiB} MiB publish payload`);

  const pub = await run(NODE, [CLI, 'publish', repo, '--store', `s3://${BUCKET}/main`], { timeoutMs: 1_800_000 });
  if (pub.code !== 0) throw new Error(`publish of the benchmark repository failed: ${pub.stderr.trim()}`);
  notes.push(`setup: data generated; \`rezfs publish\` of bigfile + tree to s3://${BUCKET}/main took ${pub.seconds.toFixed(1)} s (${pub.stdout.trim().replace(/^published /, '')})`);
  const packs = await s3tool('ls', BUCKET, 'main/packs/');
  paths.bigPackKey = packs.reduce((a, b) => (b.size > a.size ? b : a)).key;
}

async function bigFile() {
  const rezBig = (m) => join(m.mnt, 'bigfile', '1.0.0', 'data', 'big.bin');
  for (let r = 0; r < cfg.reps; r++) {
    log(`big file, repetition ${r + 1}/${cfg.reps}`);
    await step('1 raw', async () => {
      await dropCaches();
      const g = await s3tool('get', BUCKET, paths.bigPackKey);
      add('1 raw', g.bytes / MiB / g.seconds);
    });
    const cacheDir = freshCacheDir();
    await step('1 rezfs', async () => {
      const m = await mountRezfs(`s3://${BUCKET}/main`, cacheDir);
      try {
        await dropCaches();
        await resetCounters();
        add('1 rezfs', await ddRead(rezBig(m), cfg.bigBytes));
        const g = await gets();
        add('1 gets', g.n);
        add('1 getbytes', g.bytes);
        await step('2 rezfs', async () => add('2 rezfs', await ddRead(rezBig(m), cfg.bigBytes)));
      } finally {
        await unmountData(m, 'big file cold+warm');
      }
    });
    await step('3 rezfs', async () => {
      const m = await mountRezfs(`s3://${BUCKET}/main`, cacheDir);
      try {
        await dropCaches();
        await resetCounters();
        add('3 rezfs', await ddRead(rezBig(m), cfg.bigBytes));
        add('3 gets', (await gets(/packs/)).n);
      } finally {
        await unmountData(m, 'big file disk-cache-warm');
      }
    });
    await step('local big', async () => {
      await dropCaches();
      add('3 local', await ddRead(paths.big, cfg.bigBytes));
      add('2 local', await ddRead(paths.big, cfg.bigBytes));
    });
  }
}

async function tree() {
  const rezParent = (m) => join(m.mnt, 'tree');
  for (let r = 0; r < cfg.reps; r++) {
    log(`tree of ${paths.treeFiles} files, repetition ${r + 1}/${cfg.reps}`);
    await step('4 local', async () => {
      await dropCaches();
      const cold = await findTree(join(paths.treeParent, '1.0.0'));
      add('4 find cold local', cold.seconds);
      add('4 find warm local', (await findTree(join(paths.treeParent, '1.0.0'))).seconds);
      gate.findEntries = cold.entries;
      await dropCaches();
      const tar = await tarTree(paths.treeParent, '1.0.0');
      add('4 tar cold local', tar.seconds);
      add('4 tar warm local', (await tarTree(paths.treeParent, '1.0.0')).seconds);
      gate.tarBytes = tar.bytes;
    });
    await step('4 find rezfs', async () => {
      const m = await mountRezfs(`s3://${BUCKET}/main`, freshCacheDir());
      try {
        await dropCaches();
        const cold = await findTree(join(rezParent(m), '1.0.0'));
        add('4 find cold rezfs', cold.seconds);
        add('4 find warm rezfs', (await findTree(join(rezParent(m), '1.0.0'))).seconds);
        if (gate.findEntries !== undefined && cold.entries !== gate.findEntries) gate.sanity.push(`find lists ${cold.entries} entries on rezfs, ${gate.findEntries} locally`);
      } finally {
        await unmountData(m, 'tree find');
      }
    });
    await step('4 tar rezfs', async () => {
      const m = await mountRezfs(`s3://${BUCKET}/main`, freshCacheDir());
      try {
        await dropCaches();
        await resetCounters();
        const tar = await tarTree(rezParent(m), '1.0.0');
        add('4 tar cold rezfs', tar.seconds);
        const g = await gets();
        add('4 gets', g.n);
        gate.treeGets = g.by;
        add('4 gets packs', (await gets(/packs/)).n);
        if (gate.tarBytes !== undefined && tar.bytes !== gate.tarBytes) gate.sanity.push(`tar of the tree is ${tar.bytes} bytes on rezfs, ${gate.tarBytes} locally`);
        add('4 tar warm rezfs', (await tarTree(rezParent(m), '1.0.0')).seconds);
      } finally {
        await unmountData(m, 'tree tar');
      }
    });
  }
}

async function randomReads() {
  const readBytes = cfg.preads * cfg.preadSize;
  for (let r = 0; r < cfg.reps; r++) {
    log(`random preads, repetition ${r + 1}/${cfg.reps}`);
    await step('5 local', async () => {
      await dropCaches();
      const cold = await preads(paths.big);
      add('5 cold local', cold.opsPerSec);
      add('5 amp local', cold.readBytes / readBytes);
      add('5 warm local', (await preads(paths.big)).opsPerSec);
      gate.preadSum = cold.checksum;
    });
    await step('5 rezfs', async () => {
      const m = await mountRezfs(`s3://${BUCKET}/main`, freshCacheDir());
      try {
        await dropCaches();
        await resetCounters();
        const cold = await preads(join(m.mnt, 'bigfile', '1.0.0', 'data', 'big.bin'));
        const g = await gets(/packs/);
        add('5 cold rezfs', cold.opsPerSec);
        add('5 amp rezfs', g.bytes / readBytes);
        add('5 gets', g.n);
        if (gate.preadSum !== undefined && cold.checksum !== gate.preadSum) gate.sanity.push('random preads returned different bytes on rezfs and locally');
        add('5 warm rezfs', (await preads(join(m.mnt, 'bigfile', '1.0.0', 'data', 'big.bin'))).opsPerSec);
      } finally {
        await unmountData(m, 'random preads');
      }
    });
  }
}

/** Item 6: everything at once through one mount (big file, whole tree, random reads), on top of workloads 1-5. */
async function memoryStress() {
  log('memory: reading everything at once through one mount');
  await step('6 stress', async () => {
    const m = await mountRezfs(`s3://${BUCKET}/main`, freshCacheDir());
    try {
      await dropCaches();
      const big = join(m.mnt, 'bigfile', '1.0.0', 'data', 'big.bin');
      const t = performance.now();
      const took = (what) => () => log(`  ${what} done after ${((performance.now() - t) / 1000).toFixed(1)} s`);
      await Promise.all([
        run('dd', [`if=${big}`, 'of=/dev/null', 'bs=1M'], { timeoutMs: 900_000 }).then(took('dd')),
        run('bash', ['-c', `tar -cf - -C '${join(m.mnt, 'tree')}' 1.0.0 | wc -c`], { timeoutMs: 900_000 }).then(took('tar')),
        run(NODE, [PREAD, big, cfg.preads, cfg.preadSize, 11], { timeoutMs: 900_000 }).then(took('preads')),
        run('bash', ['-c', `for i in 1 2 3 4; do dd if='${big}' of=/dev/null bs=128k skip=$((i * 100)) 2>/dev/null & done; wait`], { timeoutMs: 900_000 }).then(took('4 x dd')),
      ]);
    } finally {
      m.label = 'read everything at once';
      add('6 stress', await unmount(m));
    }
  });
}

function rezExecutable() {
  const candidates = [];
  if (process.env.REZ_BIN) candidates.push(join(process.env.REZ_BIN, 'rez'), process.env.REZ_BIN);
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir) candidates.push(join(dir, 'rez'));
  candidates.push('/opt/rez/bin/rez/rez'); // rez's install.py default layout
  return candidates.find((c) => {
    try {
      return statSync(c).isFile();
    } catch {
      return false;
    }
  });
}

async function catalogScale() {
  const stores = {};
  const rez = rezExecutable();
  if (!rez) notes.push('7: rez not found (REZ_BIN, PATH, /opt/rez/bin/rez): rez env rows skipped');
  for (const [name, families] of [
    ['big', cfg.catFamilies],
    ['small', cfg.smallFamilies],
  ]) {
    const ok = await step(`7 build ${name}`, async () => {
      let t = performance.now();
      const repo = join(TMP, `catrepo-${name}`);
      catalogRepo(repo, families, cfg.catVersions);
      const genS = (performance.now() - t) / 1000;
      const fileStore = join(TMP, `catstore-${name}`);
      const pub = await run(NODE, [CLI, 'publish', repo, '--store', `file://${fileStore}`], { timeoutMs: 3_600_000 });
      if (pub.code !== 0) throw new Error(`publish failed: ${pub.stderr.trim()}`);
      const copy = await s3tool('put-dir', BUCKET, `cat-${name}`, fileStore, 48);
      notes.push(
        `7: ${families * cfg.catVersions} versions (${families} families x ${cfg.catVersions}, package.py only): repo written in ${genS.toFixed(1)} s, ` +
          `\`rezfs publish\` to a file:// store ${pub.seconds.toFixed(1)} s, its ${copy.objects} objects copied to s3://${BUCKET}/cat-${name} in ${copy.seconds.toFixed(1)} s (48 PUTs in flight)`,
      );
      rmSync(repo, { recursive: true, force: true });
      rmSync(fileStore, { recursive: true, force: true });
      stores[name] = `s3://${BUCKET}/cat-${name}`;
      return true;
    });
    if (!ok) return;
  }
  const rezEnv = (mnt) => ({
    ...process.env,
    REZ_PACKAGES_PATH: mnt,
    REZ_LOCAL_PACKAGES_PATH: join(TMP, 'rez', 'local'),
    REZ_RELEASE_PACKAGES_PATH: join(TMP, 'rez', 'release'),
    REZ_CACHE_PACKAGES_PATH: '',
    REZ_RESOLVE_CACHING: '0',
  });
  mkdirSync(join(TMP, 'rez', 'local'), { recursive: true });
  for (let r = 0; r < cfg.reps; r++) {
    log(`catalog scale, repetition ${r + 1}/${cfg.reps}`);
    for (const name of ['big', 'small']) {
      await step(`7 ${name}`, async () => {
        await dropCaches();
        const m = await mountRezfs(stores[name], freshCacheDir(), '512M');
        try {
          add(`7 mount ${name}`, m.seconds);
          const ls = await timed(`ls '${m.mnt}' | wc -l`);
          add(`7 ls ${name}`, ls.seconds);
          const families = name === 'big' ? cfg.catFamilies : cfg.smallFamilies;
          if (Number(ls.output.trim()) !== families) gate.sanity.push(`ls of the ${name} catalog root shows ${ls.output.trim()} entries, expected ${families}`);
          if (rez) {
            const cmd = `'${rez}' env ${cfg.rezRequest.join(' ')} -- true`;
            await resetCounters();
            add(`7 rez cold ${name}`, (await timed(cmd, { env: rezEnv(m.mnt), timeoutMs: 300_000 })).seconds);
            const g = await gets();
            add(`7 rez gets ${name}`, g.n);
            gate[`rez gets ${name}`] = g.by;
            add(`7 rez warm ${name}`, (await timed(cmd, { env: rezEnv(m.mnt), timeoutMs: 300_000 })).seconds);
          }
        } finally {
          m.label = `catalog ${name}`;
          add(`7 rss ${name}`, await unmount(m));
        }
      });
    }
  }
}

async function publishBench() {
  const mib = cfg.publishBytes / MiB;
  for (let r = 0; r < cfg.reps; r++) {
    log(`publish ${mib} MiB, repetition ${r + 1}/${cfg.reps}`);
    await step('8 raw', async () => {
      await timed(`cat '${paths.pubFile}' > /dev/null`);
      const up = await s3tool('multipart', BUCKET, `raw${r}/payload.bin`, paths.pubFile);
      add('8 raw', mib / up.wall);
      await s3tool('rm', BUCKET, `raw${r}/`);
    });
    await step('8 rezfs', async () => {
      await timed(`cat '${paths.pubFile}' > /dev/null`);
      const pub = await run(NODE, [CLI, 'publish', paths.pubRepo, '--store', `s3://${BUCKET}/pub${r}`], { timeoutMs: 1_800_000 });
      if (pub.code !== 0) throw new Error(`publish failed: ${pub.stderr.trim()}`);
      add('8 rezfs', mib / pub.seconds);
      await s3tool('rm', BUCKET, `pub${r}/`);
    });
  }
}

// ---- peers (s3fs, rclone) ----

function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    try {
      if (dir && statSync(join(dir, cmd)).isFile()) return join(dir, cmd);
    } catch {
      /* next */
    }
  }
  return undefined;
}

async function mountPeer(peer) {
  const mnt = newMountpoint(peer);
  const logFile = join(TMP, `${peer}.log`);
  let args;
  if (peer === 's3fs') {
    const pass = join(TMP, 's3fs.passwd');
    writeFileSync(pass, 'S3RVER:S3RVER\n', { mode: 0o600 });
    args = [`${BUCKET}:/peer`, mnt, '-f', '-o', `ro,url=${s3.endpoint},use_path_request_style,passwd_file=${pass},endpoint=us-east-1`];
  } else {
    const conf = join(TMP, 'rclone.conf');
    writeFileSync(conf, '');
    args = ['mount', `:s3:${BUCKET}/peer`, mnt, '--config', conf, '--read-only', '--s3-provider', 'Other', '--s3-endpoint', s3.endpoint,
      '--s3-access-key-id', 'S3RVER', '--s3-secret-access-key', 'S3RVER', '--s3-region', 'us-east-1', '--s3-force-path-style=true'];
  }
  const out = openSync(logFile, 'a');
  // rclone 1.60 refuses any AWS_CA_BUNDLE ("unable to load custom CA bundle"); all traffic is plain http on loopback.
  const env = { ...process.env };
  delete env.AWS_CA_BUNDLE;
  const child = spawn(which(peer), args, { stdio: ['ignore', out, out], detached: true, env });
  track(child.pid);
  const m = { kind: peer, mnt, pid: child.pid, expect: peer };
  mounted.set(mnt, m);
  if (!(await waitFor(() => fuseMountpoints().includes(mnt) || !alive(child.pid), 30_000))) throw new Error(`${peer} did not mount within 30 s`);
  if (!alive(child.pid)) throw new Error(`${peer} exited: ${readFileSync(logFile, 'utf8').trim().split('\n').pop().slice(-300)}`);
  return m;
}

async function peers() {
  const wanted = ['s3fs', 'rclone'].filter((p) => which(p));
  const missing = ['s3fs', 'rclone'].filter((p) => !which(p));
  if (missing.length) notes.push(`9: ${missing.join(', ')} not installed${opts.peers ? ' (run with --install-peers)' : ''}: rows skipped`);
  if (wanted.length === 0) return [];
  log('peers: uploading the same files as plain objects');
  const up = await step('9 upload', () => s3tool('put-dir', BUCKET, 'peer', join(TMP, 'repo'), 32, 'markers'));
  if (!up) return [];
  notes.push(`9: ${up.objects} plain objects (files + a dir/ marker per directory) uploaded to s3://${BUCKET}/peer for the peers in ${up.seconds.toFixed(1)} s; peers mounted with default caching (s3fs: no use_cache; rclone: --vfs-cache-mode off), ${cfg.peerReps} repetition(s)`);
  const big = (m) => join(m.mnt, 'bigfile', '1.0.0', 'data', 'big.bin');
  for (const peer of wanted) {
    for (let r = 0; r < cfg.peerReps; r++) {
      log(`${peer}: big file, repetition ${r + 1}`);
      await step(`9 ${peer} big`, async () => {
        let m = await mountPeer(peer);
        try {
          await dropCaches();
          await resetCounters();
          add(`9 ${peer} 1`, await ddRead(big(m), cfg.bigBytes));
          add(`9 ${peer} 1 gets`, (await gets()).n);
          add(`9 ${peer} 2`, await ddRead(big(m), cfg.bigBytes));
        } finally {
          await unmount(m);
        }
        m = await mountPeer(peer);
        try {
          await dropCaches();
          add(`9 ${peer} 3`, await ddRead(big(m), cfg.bigBytes));
        } finally {
          await unmount(m);
        }
      });
      log(`${peer}: tree, repetition ${r + 1}`);
      await step(`9 ${peer} find`, async () => {
        const m = await mountPeer(peer);
        try {
          await dropCaches();
          await resetCounters();
          add(`9 ${peer} find cold`, (await findTree(join(m.mnt, 'tree', '1.0.0'))).seconds);
          add(`9 ${peer} find gets`, (await gets()).n);
          add(`9 ${peer} find warm`, (await findTree(join(m.mnt, 'tree', '1.0.0'))).seconds);
        } finally {
          await unmount(m);
        }
      });
      await step(`9 ${peer} tar`, async () => {
        const m = await mountPeer(peer);
        try {
          await dropCaches();
          await resetCounters();
          const tar = await tarTree(join(m.mnt, 'tree'), '1.0.0');
          add(`9 ${peer} tar cold`, tar.seconds);
          add(`9 ${peer} tar gets`, (await gets()).n);
          if (gate.tarBytes !== undefined && tar.bytes !== gate.tarBytes) gate.sanity.push(`tar of the tree is ${tar.bytes} bytes on ${peer}, ${gate.tarBytes} locally`);
          add(`9 ${peer} tar warm`, (await tarTree(join(m.mnt, 'tree'), '1.0.0')).seconds);
        } finally {
          await unmount(m);
        }
      });
      log(`${peer}: random preads, repetition ${r + 1}`);
      await step(`9 ${peer} pread`, async () => {
        const m = await mountPeer(peer);
        try {
          await dropCaches();
          await resetCounters();
          add(`9 ${peer} pread cold`, (await preads(big(m))).opsPerSec);
          add(`9 ${peer} pread amp`, (await gets()).bytes / (cfg.preads * cfg.preadSize));
          add(`9 ${peer} pread warm`, (await preads(big(m))).opsPerSec);
        } finally {
          await unmount(m);
        }
      });
    }
  }
  return wanted;
}

// ------------------------------------------------------------------------------------------------------------------
// the table

function fmt(x, unit) {
  if (x === undefined || Number.isNaN(x)) return 'n/a';
  if (unit === 's') return x >= 100 ? `${x.toFixed(0)} s` : x >= 10 ? `${x.toFixed(1)} s` : x >= 0.1 ? `${x.toFixed(2)} s` : `${(x * 1000).toFixed(1)} ms`;
  if (unit === 'x') return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  const n = Number.isInteger(x) ? String(x) : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 0.01 ? x.toFixed(2) : x.toPrecision(2);
  return unit ? `${n} ${unit}` : n;
}

/**
 * One row. `target` is {min} or {max} on the ratio (rezfs / baseline), or {abs: fn(value)} on the rezfs figure alone,
 * with `text` shown in the target column.
 */
function row(workload, unit, rezKey, baseKey, target, errKeys = []) {
  const rez = typeof rezKey === 'number' ? rezKey : med(rezKey);
  const base = typeof baseKey === 'number' ? baseKey : baseKey ? med(baseKey) : undefined;
  const ratio = base !== undefined && Number.isFinite(rez) && Number.isFinite(base) && base !== 0 ? rez / base : undefined;
  let ok = '-';
  if (target) {
    const v = target.abs ? target.abs(rez) : target.min !== undefined ? ratio >= target.min : target.max !== undefined ? ratio <= target.max : undefined;
    ok = !Number.isFinite(rez) || (ratio === undefined && !target.abs) ? 'n/a' : v ? 'yes' : 'NO';
  }
  const err = errKeys.map((k) => errors[k]).find(Boolean);
  return [workload, err && !Number.isFinite(rez) ? 'ERROR' : fmt(rez, unit), base === undefined ? '-' : fmt(base, unit), ratio === undefined ? '-' : `${fmt(ratio, 'x')}x`, target?.text ?? '-', err && !Number.isFinite(rez) ? 'ERR' : ok];
}

function table(peerList) {
  const files = paths.treeFiles;
  const bigMiB = cfg.bigBytes / MiB;
  const rows = [
    ['workload', 'rezfs', 'baseline', 'ratio', 'target', 'ok?'],
    row(`1 ${bigMiB} MiB file cold, fresh mount (vs raw SDK GET)`, 'MiB/s', '1 rezfs', '1 raw', { min: 0.8, text: '>= 0.8x' }, ['1 rezfs', '1 raw']),
    row(`2 ${bigMiB} MiB file warm (vs local page cache)`, 'MiB/s', '2 rezfs', '2 local', { min: 0.8, text: '>= 0.8x' }, ['2 rezfs', '1 rezfs']),
    row('3 remount + drop_caches: disk cache (vs local cold)', 'MiB/s', '3 rezfs', '3 local', { min: 0.5, text: '>= 0.5x' }, ['3 rezfs']),
    row(`4 find ${files} files cold (vs local cold)`, 's', '4 find cold rezfs', '4 find cold local', { max: 5, text: '<= 5x' }, ['4 find rezfs']),
    row(`4 find ${files} files warm (vs local warm)`, 's', '4 find warm rezfs', '4 find warm local', { max: 2, text: '<= 2x' }, ['4 find rezfs']),
    row(`4 read all ${files} files cold (tar|wc)`, 's', '4 tar cold rezfs', '4 tar cold local', { max: 2, text: '<= 2x' }, ['4 tar rezfs']),
    row(`4 read all ${files} files warm (tar|wc)`, 's', '4 tar warm rezfs', '4 tar warm local', { max: 2, text: '<= 2x' }, ['4 tar rezfs']),
    row('4 GETs per file read (cold tar, all GETs)', '', med('4 gets') / files, undefined, { abs: (v) => v <= 1 / 50, text: '<= 0.02' }, ['4 tar rezfs']),
    row(`5 ${cfg.preads} random 4K preads cold`, 'ops/s', '5 cold rezfs', '5 cold local', null, ['5 rezfs']),
    row(`5 ${cfg.preads} random 4K preads warm`, 'ops/s', '5 warm rezfs', '5 warm local', null, ['5 rezfs']),
    row('5 bytes fetched per byte read, cold', '', '5 amp rezfs', '5 amp local', null, ['5 rezfs']),
    row(`6 peak RSS, mounts of 1-5 (limit ${cfg.memoryLimit})`, 'MiB', peakRss.data || NaN, memoryLimitMiB, { abs: (v) => v <= memoryLimitMiB + 64, text: `<= ${memoryLimitMiB + 64} MiB` }),
    row(`6 peak RSS, all read at once (limit ${cfg.memoryLimit})`, 'MiB', '6 stress', memoryLimitMiB, { abs: (v) => v <= memoryLimitMiB + 64, text: `<= ${memoryLimitMiB + 64} MiB` }, ['6 stress']),
  ];
  const versions = cfg.catFamilies * cfg.catVersions;
  const vs = `${cfg.smallFamilies} families`;
  rows.push(
    row(`7 ${versions} versions: mount usable (vs ${vs})`, 's', '7 mount big', '7 mount small', { abs: (v) => v < 2, text: '< 2 s' }, ['7 big', '7 build big']),
    row(`7 ${versions} versions: ls of the root (vs ${vs})`, 's', '7 ls big', '7 ls small', null, ['7 big', '7 build big']),
    row(`7 ${versions} versions: rez env 3 pkgs, fresh mount`, 's', '7 rez cold big', '7 rez cold small', { max: 1.2, text: '<= 1.2x' }, ['7 big', '7 build big']),
    row(`7 ${versions} versions: rez env 3 pkgs, again`, 's', '7 rez warm big', '7 rez warm small', { max: 1.2, text: '<= 1.2x' }, ['7 big', '7 build big']),
    row(`7 ${versions} versions: mount RSS (vs ${vs})`, 'MiB', '7 rss big', '7 rss small', { abs: (v) => v < 200, text: '< 200 MiB' }, ['7 big', '7 build big']),
    row(`8 publish ${cfg.publishBytes / MiB} MiB (vs raw multipart 8 MiB x4)`, 'MiB/s', '8 rezfs', '8 raw', { min: 0.7, text: '>= 0.7x' }, ['8 rezfs', '8 raw']),
  );
  for (const p of peerList) {
    const t = p === 's3fs';
    rows.push(
      row(`9 vs ${p}: file cold`, 'MiB/s', '1 rezfs', `9 ${p} 1`, t ? { min: 1.5, text: '>= 1.5x' } : null, [`9 ${p} big`]),
      row(`9 vs ${p}: file warm`, 'MiB/s', '2 rezfs', `9 ${p} 2`, null, [`9 ${p} big`]),
      row(`9 vs ${p}: file after remount + drop_caches`, 'MiB/s', '3 rezfs', `9 ${p} 3`, null, [`9 ${p} big`]),
      row(`9 vs ${p}: find cold`, 's', '4 find cold rezfs', `9 ${p} find cold`, null, [`9 ${p} find`]),
      row(`9 vs ${p}: find warm`, 's', '4 find warm rezfs', `9 ${p} find warm`, null, [`9 ${p} find`]),
      row(`9 vs ${p}: read all files cold`, 's', '4 tar cold rezfs', `9 ${p} tar cold`, null, [`9 ${p} tar`]),
      row(`9 vs ${p}: read all files warm`, 's', '4 tar warm rezfs', `9 ${p} tar warm`, null, [`9 ${p} tar`]),
      row(`9 vs ${p}: random preads cold`, 'ops/s', '5 cold rezfs', `9 ${p} pread cold`, null, [`9 ${p} pread`]),
      row(`9 vs ${p}: random preads warm`, 'ops/s', '5 warm rezfs', `9 ${p} pread warm`, null, [`9 ${p} pread`]),
    );
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  const sep = `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`;
  return [line(rows[0]), sep, ...rows.slice(1).map(line)].join('\n');
}

function details(peerList) {
  const out = [];
  const files = paths.treeFiles;
  const f = (k) => fmt(med(k), '');
  out.push(`GETs: cold ${cfg.bigBytes / MiB} MiB file ${f('1 gets')} (${(med('1 getbytes') / MiB).toFixed(0)} MiB); disk-cache-warm re-read ${f('3 gets')} pack GETs; ` +
    `cold tar of ${files} files ${f('4 gets')} GETs (${f('4 gets packs')} pack); cold preads ${f('5 gets')} pack GETs; ` +
    `rez env on a fresh mount ${f('7 rez gets big')} (${cfg.catFamilies * cfg.catVersions} versions: ${gate['rez gets big'] ?? '-'}) / ${f('7 rez gets small')} (${cfg.smallFamilies} families)`);
  if (gate.treeGets) out.push(`GETs of the cold tar: ${gate.treeGets}`);
  for (const p of peerList) {
    out.push(`GETs ${p}: cold file ${f(`9 ${p} 1 gets`)}, cold find ${f(`9 ${p} find gets`)}, cold tar ${f(`9 ${p} tar gets`)} (${fmt(med(`9 ${p} tar gets`) / files, '')} per file); preads fetched ${f(`9 ${p} pread amp`)} bytes per byte read`);
  }
  const perDir = ((med('4 find warm rezfs') - med('4 find warm local')) / (cfg.treeDirs + 1)) * 1e6;
  const perFile = ((med('4 tar warm rezfs') - med('4 tar warm local')) / files) * 1e6;
  out.push(`FUSE cost over local, warm: find ${fmt(perDir, 'us')} per directory, tar ${fmt(perFile, 'us')} per file`);
  out.push(`peak RSS of the mounts of 1-5: ${fmt(peakRss.data, 'MiB')} (${peakRss.dataMount}); ratio = rezfs / baseline: for times lower is better, for rates higher is better`);
  return out;
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const loadAtStart = loadavg();

async function main() {
  log(`rezfs benchmark${Q ? ' (--quick)' : ''}: ${cfg.reps} repetition(s), temp ${TMP}`);
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build`);
  await setup();
  await bigFile();
  await tree();
  await randomReads();
  await memoryStress();
  await catalogScale();
  await publishBench();
  const peerList = opts.peers || ['s3fs', 'rclone'].some(which) ? await peers() : [];
  if (!opts.peers && peerList.length === 0) notes.push('9: s3fs/rclone not installed and --peers not given: peer rows skipped');
  const wall = (performance.now() - t0) / 1000;

  const out = [];
  out.push(`rezfs benchmark${Q ? ' --quick' : ''}: medians of ${cfg.reps} repetition(s); ${cfg.bigBytes / MiB} MiB file, ${paths.treeFiles} files in ${cfg.treeDirs} dirs (${(paths.treeBytes / MiB).toFixed(0)} MiB), ` +
    `${cfg.preads} x ${cfg.preadSize} B preads, --memory-limit ${cfg.memoryLimit}; s3rver on 127.0.0.1; ${(await import('node:os')).cpus().length} CPUs`);
  out.push('');
  out.push(table(peerList));
  out.push('');
  out.push(...details(peerList));
  out.push(...notes);
  for (const [k, v] of Object.entries(errors)) out.push(`ERROR in ${k}: ${v}`);
  for (const s of gate.sanity) out.push(`MISMATCH: ${s}`);
  for (const p of [...new Set(problems)]) out.push(`problem: ${p}`);
  out.push(`load average (1/5/15 min) at start ${loadAtStart}, at end ${loadavg()}${Number(loadAtStart.split(' ')[0]) > 0.5 ? ' -- other work was running: figures are noisy' : ''}`);
  out.push(`benchmark wall time ${(wall / 60).toFixed(1)} min`);
  process.stdout.write(`${out.join('\n')}\n`);
}

let code = 0;
try {
  await main();
} catch (err) {
  process.stderr.write(`bench: ${err.stack ?? err}\n`);
  code = 1;
} finally {
  if (!exiting) {
    exiting = true;
    await cleanup();
  }
}
process.exit(code);
