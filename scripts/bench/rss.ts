/**
 * The memory bound under a long read (issue 14, item 10), run through scripts/bench-rss.sh (which owns the
 * last-resort cleanup): one 822 MiB file published to s3rver on 127.0.0.1, read cold through a mount with a small
 * --memory-limit, once front to back and then by 4 readers at once, through each FUSE binding. Prints, per
 * binding, the mount's peak RSS (VmHWM, and the highest VmRSS sampled every 100 ms) against --memory-limit +
 * 64 MiB (the README's promise).
 *   vite-node scripts/bench/rss.ts -- --tmp <dir> [--limit 200M] [--mib 822] [--fuse native,fuse-native]
 *
 * Nothing here serves a mount: every mount is a `rezfs mount` child (test/support/cli.ts), unmounted on the way
 * out; the S3 server is test/support/s3-server.ts's, read directly (its counting proxy bypassed).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { forceUnmountAll, mountStore, runCli, runProcess, type MountHandle } from '../../test/support/cli.js';
import { dropCaches, statusBytes } from '../../test/support/proc.js';
import { startS3Server, type S3TestServer } from '../../test/support/s3-server.js';
import { bigFilePackage } from './data.js';

const NATIVE_ADDON = join(import.meta.dirname, '..', '..', 'native', 'build', 'Release', 'rezfs_fuse.node');
const MiB = 1024 * 1024;
/** What the README promises above --memory-limit. */
const SLACK_MIB = 64;

const args = process.argv.slice(2).filter((a) => a !== '--');
const arg = (name: string, fallback?: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const TMP = arg('--tmp') ?? fail('--tmp <dir> is required (scripts/bench-rss.sh passes it)');
const LIMIT = arg('--limit', '200M')!;
const FILE_MIB = Number(arg('--mib', '822'));
const BINDINGS = arg('--fuse', 'native,fuse-native')!.split(',').filter((b) => b !== 'native' || existsSync(NATIVE_ADDON));
const limitMiB = Number(/^(\d+)M$/i.exec(LIMIT)?.[1] ?? NaN);
if (!Number.isFinite(limitMiB)) fail(`--limit takes NNNM, e.g. 200M; got ${LIMIT}`);
if (!Number.isInteger(FILE_MIB) || FILE_MIB < 4) fail('--mib takes a whole number of MiB, at least 4');

function fail(message: string): never {
  process.stderr.write(`bench-rss: ${message}\n`);
  process.exit(2);
}

const log = (msg: string) => process.stderr.write(`[rss ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
/** A /proc/<pid>/status memory figure in MiB (NaN once the process is gone). */
const statusMiB = async (pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> => ((await statusBytes(pid, field)) ?? NaN) / MiB;

interface Row {
  binding: string;
  seqSeconds: number;
  afterSequential: number;
  hwm: number;
  sampled: number;
}

async function measure(s3: S3TestServer, env: Record<string, string>, binding: string, big: string): Promise<Row> {
  let mount: MountHandle | undefined;
  let sampled = 0;
  let sampler: NodeJS.Timeout | undefined;
  try {
    mount = await mountStore({
      store: s3.storeUrl('rss'),
      mountpoint: join(TMP, `mnt-${binding}`),
      cacheDir: join(TMP, `cache-${binding}`),
      env,
      extraArgs: ['--memory-limit', LIMIT, '--fuse', binding, '--refresh', '0'],
    });
    const pid = mount.pid;
    sampler = setInterval(() => void statusMiB(pid, 'VmRSS').then((now) => (sampled = Math.max(sampled, now || 0))), 100);
    await dropCaches();
    const file = join(mount.mountpoint, 'big', '1.0.0', 'data', big);
    const t = performance.now();
    const seq = await runProcess('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M'], { timeoutMs: 1_800_000 });
    if (seq.code !== 0) throw new Error(`dd: ${seq.stderr}`);
    const seqSeconds = (performance.now() - t) / 1000;
    const afterSequential = await statusMiB(pid, 'VmHWM');
    await dropCaches();
    const quarter = Math.floor(FILE_MIB / 4);
    const parallel = await runProcess('bash', ['-c', `for i in 0 1 2 3; do dd if='${file}' of=/dev/null bs=128k skip=$((i * ${quarter} * 8)) count=$((${quarter} * 8)) 2>/dev/null & done; wait`], {
      timeoutMs: 1_800_000,
    });
    if (parallel.code !== 0) throw new Error(`parallel dd: ${parallel.stderr}`);
    return { binding, seqSeconds, afterSequential, hwm: await statusMiB(pid, 'VmHWM'), sampled };
  } finally {
    clearInterval(sampler);
    await mount?.unmount();
  }
}

async function main(): Promise<number> {
  mkdirSync(TMP, { recursive: true });
  const s3 = await startS3Server({ bucket: 'rss' });
  // Straight to s3rver: the counting proxy would put its own copies of 822 MiB through this process.
  const env = { ...s3.env, AWS_ENDPOINT_URL: s3.directEndpoint };
  try {
    const repo = join(TMP, 'repo');
    log(`generating a ${FILE_MIB} MiB file`);
    bigFilePackage(repo, 'big', 'big.bin', FILE_MIB * MiB);
    log('publishing it to s3rver');
    const published = await runCli(['publish', repo, '--store', s3.storeUrl('rss')], { env, timeoutMs: 1_800_000 });
    if (published.code !== 0) throw new Error(`publish failed: ${published.stderr}`);
    const rows: Row[] = [];
    for (const binding of BINDINGS) {
      log(`reading it through a ${binding} mount with --memory-limit ${LIMIT}`);
      rows.push(await measure(s3, env, binding, 'big.bin'));
    }
    const bound = limitMiB + SLACK_MIB;
    const peak = (r: Row) => Math.max(r.hwm, r.sampled);
    console.log(`${FILE_MIB} MiB read cold through one mount, --memory-limit ${LIMIT} (bound: limit + ${SLACK_MIB} MiB = ${bound} MiB)`);
    console.log('binding       sequential read   peak RSS after it   peak RSS (+4 readers)   sampled max   vs bound');
    for (const r of rows) {
      console.log(
        `${r.binding.padEnd(13)} ${`${(FILE_MIB / r.seqSeconds).toFixed(0)} MiB/s`.padEnd(17)} ${`${r.afterSequential.toFixed(0)} MiB`.padEnd(19)} ` +
          `${`${r.hwm.toFixed(0)} MiB`.padEnd(23)} ${`${r.sampled.toFixed(0)} MiB`.padEnd(13)} ${(peak(r) / bound).toFixed(2)}x ${peak(r) <= bound ? 'ok' : 'OVER'}`,
      );
    }
    return rows.every((r) => peak(r) <= bound) ? 0 : 1;
  } finally {
    await forceUnmountAll([TMP]);
    await s3.stop();
  }
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    process.stderr.write(`bench-rss: ${(err as Error).stack ?? String(err)}\n`);
    await forceUnmountAll([TMP]);
    process.exit(1);
  },
);
