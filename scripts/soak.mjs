#!/usr/bin/env node
// Leak soak for the native binding: a mount (--fuse native) of a 20,000-file tree is walked cold again and
// again, each round after `echo 2 > /proc/sys/vm/drop_caches` (the kernel forgets every inode, so the next walk
// looks everything up and reads every file again), until at least --ops lookups + reads (default 1,000,000) have
// reached the mount. It prints the mount's RSS and the inodes it holds after each round, and a verdict: RSS flat
// (the last round within 10% + 16 MiB of the first warmed-up round) and forgotten inodes released.
//
//   node scripts/soak.mjs [--ops N] [--fuse native|fuse-native] [--keep]     (root: drop_caches needs it)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const OPS = Number(option('--ops', '1000000'));
const FUSE = option('--fuse', 'native');
const WORK = '/var/tmp/rezfs-soak';
const MNT = join(WORK, 'mnt');
const env = { ...process.env, REZFS_RUNTIME_DIR: join(WORK, 'run') };
const MiB = 1024 * 1024;

const cli = (...a) => execFileSync(process.execPath, [CLI, ...a], { env, encoding: 'utf8', maxBuffer: 1 << 26 });
const status = () => JSON.parse(cli('status', MNT, '--json'));
const rss = (pid) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;

function generate(repo) {
  // 20 families x 10 versions x 100 files (1-4 KiB) in 10 directories: 20,000 files, 2,200 directories.
  for (let f = 0; f < 20; f++) {
    for (let v = 0; v < 10; v++) {
      const version = join(repo, `fam${f}`, `1.${v}.0`);
      for (let d = 0; d < 10; d++) mkdirSync(join(version, `dir${d}`), { recursive: true });
      writeFileSync(join(version, 'package.py'), `name = 'fam${f}'\nversion = '1.${v}.0'\n`);
      for (let i = 0; i < 100; i++) writeFileSync(join(version, `dir${i % 10}`, `file${i}.dat`), Buffer.alloc(1024 + ((i * 37) % 3072), i));
    }
  }
}

rmSync(WORK, { recursive: true, force: true });
mkdirSync(MNT, { recursive: true });
generate(join(WORK, 'repo'));
cli('publish', join(WORK, 'repo'), '--store', `file://${join(WORK, 'store')}`);
const mounted = cli('mount', MNT, '--store', `file://${join(WORK, 'store')}`, '--cache-dir', join(WORK, 'cache'), '--fuse', FUSE, '--memory-limit', '256M');
const pid = Number(/pid (\d+)/.exec(mounted)[1]);

const rows = [];
try {
  let ops = 0;
  for (let round = 1; ops < OPS; round++) {
    writeFileSync('/proc/sys/vm/drop_caches', '2');
    const walk = spawnSync('sh', ['-c', 'find "$0" -printf "%s %T@\\n" | wc -l; tar -cf - "$0" | wc -c', MNT], { encoding: 'utf8' });
    if (walk.status !== 0) throw new Error(`walk failed: ${walk.stderr}`);
    const s = status();
    const lookups = s.kernelInodes?.lookups ?? s.requests.metadata;
    ops = lookups + s.requests.reads;
    rows.push({ round, lookups, reads: s.requests.reads, held: s.kernelInodes?.held ?? null, rss: rss(pid) });
    const r = rows.at(-1);
    console.log(`round ${String(round).padStart(3)}: ${String(r.lookups).padStart(9)} lookups ${String(r.reads).padStart(9)} reads  held ${String(r.held).padStart(6)} inodes  rss ${(r.rss / MiB).toFixed(1)} MiB`);
  }
  writeFileSync('/proc/sys/vm/drop_caches', '2');
  await new Promise((done) => setTimeout(done, 1000));
  const after = status();
  const base = rows[Math.min(1, rows.length - 1)].rss;
  const last = rows.at(-1).rss;
  const flat = last <= base * 1.1 + 16 * MiB;
  console.log(`\n${FUSE}: ${rows.at(-1).lookups + rows.at(-1).reads} lookups + reads in ${rows.length} rounds; ` +
    `RSS ${(base / MiB).toFixed(1)} MiB after round 2, ${(last / MiB).toFixed(1)} MiB at the end: ${flat ? 'flat' : 'GROWING'}; ` +
    `inodes held after the last drop_caches: ${after.kernelInodes?.held ?? 'n/a'}`);
  process.exitCode = flat ? 0 : 1;
} finally {
  spawnSync(process.execPath, [CLI, 'unmount', MNT], { env });
  if (!args.includes('--keep')) rmSync(WORK, { recursive: true, force: true });
}
