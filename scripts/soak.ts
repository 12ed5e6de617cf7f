/**
 * Leak soak for the native binding: a mount (--fuse native) of a 20,000-file tree is walked cold again and again,
 * each round after `echo 2 > /proc/sys/vm/drop_caches` (the kernel forgets every inode, so the next walk looks
 * everything up and reads every file again), until at least --ops lookups + reads (default 1,000,000) have reached
 * the mount. It prints the mount's RSS and the inodes it holds after each round, and a verdict: RSS flat (the last
 * round within 10% + 16 MiB of the first warmed-up round) and forgotten inodes released.
 *
 *   node_modules/.bin/vite-node scripts/soak.ts -- [--ops N] [--fuse native|fuse-native] [--keep]
 *   (root: drop_caches needs it; after `npm run build`)
 *
 * Nothing here serves the mount: it is a `rezfs mount` child (test/support/cli.ts), unmounted on the way out.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mountStore, runCli, runProcess, type MountHandle } from '../test/support/cli.js';
import { rssBytes } from '../test/support/proc.js';

const args = process.argv.slice(2).filter((a) => a !== '--');
const option = (name: string, fallback: string): string => {
  const i = args.indexOf(name);
  return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
};
const OPS = Number(option('--ops', '1000000'));
const FUSE = option('--fuse', 'native');
if (!Number.isInteger(OPS) || OPS < 1) fail('--ops takes a positive whole number, e.g. 1000000');
if (FUSE !== 'native' && FUSE !== 'fuse-native') fail('--fuse takes native or fuse-native');
const WORK = '/var/tmp/rezfs-soak';
const STORE = `file://${join(WORK, 'store')}`;
const env = { REZFS_RUNTIME_DIR: join(WORK, 'run') };
const MiB = 1024 * 1024;

function fail(message: string): never {
  process.stderr.write(`soak: ${message}\n`);
  process.exit(2);
}

interface MountStatus {
  requests: { metadata: number; reads: number };
  kernelInodes?: { lookups: number; held: number };
}

async function status(mnt: string): Promise<MountStatus> {
  const r = await runCli(['status', mnt, '--json'], { env, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`rezfs status failed: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as MountStatus;
}

/** 20 families x 10 versions x 100 files (1-4 KiB) in 10 directories: 20,000 files, 2,200 directories. */
function generate(repo: string): void {
  for (let f = 0; f < 20; f++) {
    for (let v = 0; v < 10; v++) {
      const version = join(repo, `fam${f}`, `1.${v}.0`);
      for (let d = 0; d < 10; d++) mkdirSync(join(version, `dir${d}`), { recursive: true });
      writeFileSync(join(version, 'package.py'), `name = 'fam${f}'\nversion = '1.${v}.0'\n`);
      for (let i = 0; i < 100; i++) writeFileSync(join(version, `dir${i % 10}`, `file${i}.dat`), Buffer.alloc(1024 + ((i * 37) % 3072), i));
    }
  }
}

interface Round {
  lookups: number;
  reads: number;
  held: number | null;
  rss: number;
}

async function main(): Promise<number> {
  rmSync(WORK, { recursive: true, force: true });
  generate(join(WORK, 'repo'));
  const published = await runCli(['publish', join(WORK, 'repo'), '--store', STORE], { env, timeoutMs: 600_000 });
  if (published.code !== 0) throw new Error(`publish failed: ${published.stderr.trim()}`);
  let mount: MountHandle | undefined;
  try {
    mount = await mountStore({ store: STORE, mountpoint: join(WORK, 'mnt'), cacheDir: join(WORK, 'cache'), env, extraArgs: ['--fuse', FUSE, '--memory-limit', '256M'] });
    const mnt = mount.mountpoint;
    const rounds: Round[] = [];
    for (let ops = 0; ops < OPS; ) {
      writeFileSync('/proc/sys/vm/drop_caches', '2');
      const walk = await runProcess('sh', ['-c', 'find "$0" -printf "%s %T@\\n" | wc -l; tar -cf - "$0" | wc -c', mnt], { timeoutMs: 600_000 });
      if (walk.code !== 0) throw new Error(`walk failed: ${walk.stderr.trim()}`);
      const s = await status(mnt);
      const round: Round = { lookups: s.kernelInodes?.lookups ?? s.requests.metadata, reads: s.requests.reads, held: s.kernelInodes?.held ?? null, rss: (await rssBytes(mount.pid)) ?? NaN };
      rounds.push(round);
      ops = round.lookups + round.reads;
      console.log(
        `round ${String(rounds.length).padStart(3)}: ${String(round.lookups).padStart(9)} lookups ${String(round.reads).padStart(9)} reads  ` +
          `held ${String(round.held).padStart(6)} inodes  rss ${(round.rss / MiB).toFixed(1)} MiB`,
      );
    }
    writeFileSync('/proc/sys/vm/drop_caches', '2');
    await new Promise((done) => setTimeout(done, 1000));
    const after = await status(mnt);
    const base = rounds[Math.min(1, rounds.length - 1)]!.rss;
    const last = rounds.at(-1)!;
    const flat = last.rss <= base * 1.1 + 16 * MiB;
    console.log(
      `\n${FUSE}: ${last.lookups + last.reads} lookups + reads in ${rounds.length} rounds; ` +
        `RSS ${(base / MiB).toFixed(1)} MiB after round 2, ${(last.rss / MiB).toFixed(1)} MiB at the end: ${flat ? 'flat' : 'GROWING'}; ` +
        `inodes held after the last drop_caches: ${after.kernelInodes?.held ?? 'n/a'}`,
    );
    return flat ? 0 : 1;
  } finally {
    await mount?.unmount();
    if (!args.includes('--keep')) rmSync(WORK, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
