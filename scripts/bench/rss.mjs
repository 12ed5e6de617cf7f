// The memory bound under a long read (issue 14, item 10): one 822 MiB file published to s3rver on 127.0.0.1, read
// cold through a mount with a small --memory-limit, once front to back and then by 4 readers at once, through each
// FUSE adapter. Prints, per adapter, the mount's peak RSS (VmHWM, and the highest VmRSS sampled every 100 ms)
// against --memory-limit + 64 MiB (the README's promise). Run through scripts/bench-rss.sh.
//   node scripts/bench/rss.mjs --tmp <dir> [--limit 200M] [--mib 822] [--fuse native,fuse-native]
//
// Rules as in bench.mjs: nothing here serves a mount; every command runs as a child with a timeout; only pids this
// run started (or that rezfs mount reported) are signalled; every mount is unmounted on the way out.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bigFilePackage } from './data.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const S3RVER_MAIN = join(ROOT, 'test', 'support', 's3rver-main.cjs');
const NATIVE_ADDON = join(ROOT, 'native', 'build', 'Release', 'rezfs_fuse.node');
const MiB = 1024 * 1024;
const BUCKET = 'rss';
/** What the README promises above --memory-limit. */
const SLACK_MIB = 64;

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const TMP = arg('--tmp');
const LIMIT = arg('--limit', '200M');
const FILE_MIB = Number(arg('--mib', '822'));
const ADAPTERS = arg('--fuse', 'native,fuse-native').split(',').filter((a) => a !== 'native' || existsSync(NATIVE_ADDON));
if (!TMP) throw new Error('--tmp <dir> is required (scripts/bench-rss.sh passes it)');
const limitMiB = Number(/^(\d+)M$/i.exec(LIMIT)?.[1] ?? NaN);
if (!Number.isFinite(limitMiB)) throw new Error(`--limit takes NNNM, e.g. 200M; got ${LIMIT}`);

const log = (msg) => process.stderr.write(`[rss ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const started = new Set();
const mounted = new Set();

function run(cmd, argv, { timeoutMs = 600_000, env } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    started.add(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      started.delete(child.pid);
      resolve({ code, stdout, stderr });
    });
  });
}

const status = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

async function startS3() {
  const dataDir = join(TMP, 's3');
  mkdirSync(dataDir, { recursive: true });
  const child = spawn(process.execPath, ['--openssl-legacy-provider', S3RVER_MAIN, dataDir, BUCKET], { stdio: ['pipe', 'pipe', 'pipe'] });
  started.add(child.pid);
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
  });
  Object.assign(process.env, {
    AWS_ENDPOINT_URL: `http://127.0.0.1:${port}`,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED',
    AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  });
  return child;
}

async function measure(adapter, big) {
  const mnt = join(TMP, `mnt-${adapter}`);
  const cacheDir = join(TMP, `cache-${adapter}`);
  mkdirSync(mnt, { recursive: true });
  const m = await run(process.execPath, [CLI, 'mount', mnt, '--store', `s3://${BUCKET}/rss`, '--cache-dir', cacheDir, '--memory-limit', LIMIT, '--fuse', adapter, '--refresh', '0']);
  const pid = Number(/pid (\d+)/.exec(m.stdout)?.[1]);
  if (m.code !== 0 || !pid) throw new Error(`mount failed: ${m.stderr}`);
  started.add(pid);
  mounted.add(mnt);
  let sampled = 0;
  const sampler = setInterval(() => {
    try {
      sampled = Math.max(sampled, status(pid, 'VmRSS'));
    } catch {
      /* gone */
    }
  }, 100);
  try {
    await run('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
    const file = join(mnt, 'big', '1.0.0', 'data', big);
    const t = performance.now();
    const seq = await run('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M'], { timeoutMs: 1_800_000 });
    if (seq.code !== 0) throw new Error(`dd: ${seq.stderr}`);
    const seqSeconds = (performance.now() - t) / 1000;
    const afterSequential = status(pid, 'VmHWM');
    await run('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
    const quarter = Math.floor(FILE_MIB / 4);
    const parallel = await run('bash', ['-c', `for i in 0 1 2 3; do dd if='${file}' of=/dev/null bs=128k skip=$((i * ${quarter} * 8)) count=$((${quarter} * 8)) 2>/dev/null & done; wait`], { timeoutMs: 1_800_000 });
    if (parallel.code !== 0) throw new Error(`parallel dd: ${parallel.stderr}`);
    return { adapter, seqSeconds, afterSequential, hwm: status(pid, 'VmHWM'), sampled };
  } finally {
    clearInterval(sampler);
    await run(process.execPath, [CLI, 'unmount', mnt]);
    mounted.delete(mnt);
    for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((resolve) => setTimeout(resolve, 100));
    if (!existsSync(`/proc/${pid}`)) started.delete(pid);
  }
}

async function main() {
  mkdirSync(TMP, { recursive: true });
  const s3 = await startS3();
  try {
    const repo = join(TMP, 'repo');
    log(`generating a ${FILE_MIB} MiB file`);
    bigFilePackage(repo, 'big', 'big.bin', FILE_MIB * MiB);
    log('publishing it to s3rver');
    const published = await run(process.execPath, [CLI, 'publish', repo, '--store', `s3://${BUCKET}/rss`], { timeoutMs: 1_800_000 });
    if (published.code !== 0) throw new Error(`publish failed: ${published.stderr}`);
    const rows = [];
    for (const adapter of ADAPTERS) {
      log(`reading it through a ${adapter} mount with --memory-limit ${LIMIT}`);
      rows.push(await measure(adapter, 'big.bin'));
    }
    const bound = limitMiB + SLACK_MIB;
    console.log(`${FILE_MIB} MiB read cold through one mount, --memory-limit ${LIMIT} (bound: limit + ${SLACK_MIB} MiB = ${bound} MiB)`);
    console.log('adapter       sequential read   peak RSS after it   peak RSS (+4 readers)   sampled max   vs bound');
    for (const r of rows) {
      const ok = Math.max(r.hwm, r.sampled) <= bound;
      console.log(
        `${r.adapter.padEnd(13)} ${`${(FILE_MIB / r.seqSeconds).toFixed(0)} MiB/s`.padEnd(17)} ${`${r.afterSequential.toFixed(0)} MiB`.padEnd(19)} ` +
          `${`${r.hwm.toFixed(0)} MiB`.padEnd(23)} ${`${r.sampled.toFixed(0)} MiB`.padEnd(13)} ${(Math.max(r.hwm, r.sampled) / bound).toFixed(2)}x ${ok ? 'ok' : 'OVER'}`,
      );
    }
    process.exitCode = rows.every((r) => Math.max(r.hwm, r.sampled) <= bound) ? 0 : 1;
  } finally {
    for (const mnt of mounted) await run('umount', ['-l', mnt]);
    s3.stdin.end();
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const pid of started) {
      // Only what is still ours: a pid that exited may have been reused.
      const cmdline = existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
      if (cmdline.includes('s3rver-main') || cmdline.includes(CLI)) process.kill(pid, 'SIGTERM');
    }
  }
}

await main();
