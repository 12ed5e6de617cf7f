#!/usr/bin/env node
// @ts-check (scripts/tsconfig.json checks this file: it stays JavaScript to time the built dist/, not a transform of src/)
// rezfs publish benchmark (issue 13): what an incremental publish costs against `find -printf` of the same tree.
//
//   node scripts/bench-publish.mjs [--files 20000] [--reps 3] [--keep]
//
// Generates a repository of --files files (half in one big package, big/1.0.0, the rest in 10 families of
// 1.0.0) under $BENCH_TMPDIR (default /var/tmp), publishes it to a file:// store, then measures, each the median
// of --reps runs with a warm page cache:
//   - `find <repo> -printf '%p %s %T@ %m\n'` (the baseline: one lstat per entry, nothing read);
//   - a no-op republish: with this host's memory (--state-dir), without it (another host: manifests compared),
//     and with --rehash (every file read, as every publish did before incremental publish);
//   - adding one version of 1,000 files; adding one variant (1,000 files) to the big package;
// each in-process (the publish itself) with the bytes it read (/proc/self/io rchar: every byte read(2) returned,
// store documents included), and the no-op as a command too (Node's start-up included). Prints one table and the
// issue's targets: no-op <= 2x find, and no file content read by a no-op.
// Needs a built dist/ (npm run build).
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli/main.js');
if (!existsSync(CLI)) {
  console.error('bench-publish: dist/ is not built: run npm run build first');
  process.exit(2);
}
/** @type {typeof import('../src/publish/index.js')} */
const { publish } = await import(join(ROOT, 'dist/publish/index.js'));
/** @type {typeof import('../src/store/index.js')} */
const { openStore } = await import(join(ROOT, 'dist/store/index.js'));
/** @type {typeof import('../src/log.js')} */
const { silentLog } = await import(join(ROOT, 'dist/log.js'));

const args = process.argv.slice(2);
/** @type {(name: string, fallback: number) => number} */
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const FILES = option('--files', 20_000);
const REPS = option('--reps', 3);
const KEEP = args.includes('--keep');
const SMALL_FAMILIES = 10;
const ADDED_FILES = 1_000;
const MiB = 1024 * 1024;

const work = mkdtempSync(join(process.env.BENCH_TMPDIR ?? '/var/tmp', 'rezfs-bench-publish-'));
const repo = join(work, 'repo');
const storeUrl = `file://${join(work, 'store')}`;
const stateDir = join(work, 'state');
let contentBytes = 0;
let fileCount = 0;

/**
 * `files` files of 1-16 KiB of random bytes in 20 subdirectories of `dir`.
 * @param {string} dir
 * @param {number} files
 */
function writeFiles(dir, files) {
  const buffer = Buffer.alloc(16 * 1024);
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${i % 20}`);
    if (i < 20) mkdirSync(sub, { recursive: true });
    const size = 1024 + ((i * 7919) % (15 * 1024));
    randomFillSync(buffer, 0, size);
    writeFileSync(join(sub, `f${i}.bin`), buffer.subarray(0, size));
    contentBytes += size;
    fileCount++;
  }
}

/**
 * A version directory with `files` files under `sub`, and its package.py.
 * @param {string} family
 * @param {string} version
 * @param {number} files
 */
function writeVersion(family, version, files, sub = 'lib', extra = '') {
  const dir = join(repo, family, version);
  writeFiles(join(dir, sub), files);
  writeFileSync(join(dir, 'package.py'), `name = "${family}"\nversion = "${version}"\n${extra}`);
}

/**
 * What a publish may read of the store besides new content: the index and shards, and the manifest of the version
 * it grows (the biggest one here: big/1.0.0's, with every variant added so far).
 */
function catalogBytes() {
  /** @type {(dir: string) => number[]} */
  const sizes = (dir) => {
    const path = join(work, 'store', dir);
    return existsSync(path) ? readdirSync(path).map((name) => statSync(join(path, name)).size) : [];
  };
  /** @type {(values: number[]) => number} */
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  return sum(sizes('index')) + sum(sizes('families')) + Math.max(0, ...sizes('manifests'));
}

function rchar() {
  return Number(/^rchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN);
}

/** @type {(values: number[]) => number} */
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

/** @typedef {Partial<import('../src/publish/index.js').PublishOptions>} Extra */

/**
 * One in-process publish: its wall time (ms), bytes read and summary.
 * @param {Extra} [options]
 */
async function timedPublish(options = {}) {
  const store = openStore(storeUrl);
  const before = rchar();
  const started = performance.now();
  const summary = await publish(store, { repoDir: repo, selectors: [], log: silentLog, stateDir, ...options });
  const ms = performance.now() - started;
  const read = rchar() - before;
  await store.close();
  return { ms, read, summary };
}

/**
 * @param {number} reps
 * @param {((rep: number) => void) | undefined} prepare
 * @param {Extra} options
 */
async function medianPublish(reps, prepare, options) {
  const runs = [];
  for (let r = 0; r < reps; r++) {
    prepare?.(r);
    runs.push(await timedPublish(options));
  }
  return { ms: median(runs.map((x) => x.ms)), read: median(runs.map((x) => x.read)), summary: /** @type {typeof runs[number]} */ (runs.at(-1)).summary };
}

/**
 * @param {string} command
 * @param {string[]} commandArgs
 */
function timedCommand(command, commandArgs) {
  const started = performance.now();
  const r = spawnSync(command, commandArgs, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${command} ${commandArgs.join(' ')} failed: ${r.stderr}`);
  return performance.now() - started;
}

/** @type {(ms: number) => string} */
const fmtMs = (ms) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);
/** @type {(n: number) => string} */
const fmtBytes = (n) => (n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

try {
  const bigFiles = Math.floor(FILES / 2);
  const smallFiles = Math.floor((FILES - bigFiles) / SMALL_FAMILIES);
  const t = performance.now();
  writeVersion('big', '1.0.0', bigFiles, 'platform-linux', 'variants = [["platform-linux"]]\n');
  for (let f = 0; f < SMALL_FAMILIES; f++) writeVersion(`fam${f}`, '1.0.0', smallFiles);
  console.log(`generated ${fileCount} files (${fmtBytes(contentBytes)}) in ${1 + SMALL_FAMILIES} packages in ${fmtMs(performance.now() - t)}; store ${storeUrl}`);

  const first = await timedPublish();
  console.log(`first publish: ${fmtMs(first.ms)}, read ${fmtBytes(first.read)}: ${first.summary.packages} packages`);
  const content = contentBytes;

  timedCommand('find', [repo, '-printf', '%p %s %T@ %m\n']); // warm the dentry and inode caches
  const find = median(Array.from({ length: REPS }, () => timedCommand('find', [repo, '-printf', '%p %s %T@ %m\n'])));
  const noop = await medianPublish(REPS, undefined, {});
  const otherHost = await medianPublish(REPS, undefined, { stateDir: undefined });
  const rehash = await medianPublish(REPS, undefined, { rehash: true });
  const cli = median(Array.from({ length: REPS }, () => timedCommand(process.execPath, [CLI, 'publish', repo, '--store', storeUrl, '--state-dir', stateDir])));
  for (const r of [noop, otherHost, rehash]) if (r.summary.packages !== 0) throw new Error('a no-op republish published something');

  let before = contentBytes;
  const added = await medianPublish(REPS, (r) => writeVersion('fam0', `1.1.${r}`, ADDED_FILES), {});
  const addedBytes = (contentBytes - before) / REPS;
  const addedRehash = await medianPublish(1, () => writeVersion('fam1', '1.1.0', ADDED_FILES), { rehash: true });
  before = contentBytes;
  const variant = await medianPublish(
    REPS,
    (r) => {
      // rez-release --variants N: the new variant's directory, and package.py rewritten to list it.
      const dir = join(repo, 'big', '1.0.0');
      writeFiles(join(dir, `platform-v${r}`), ADDED_FILES);
      const variants = ['platform-linux', ...Array.from({ length: r + 1 }, (_, i) => `platform-v${i}`)];
      writeFileSync(join(dir, 'package.py'), `name = "big"\nversion = "1.0.0"\nvariants = ${JSON.stringify(variants.map((v) => [v]))}\n`);
    },
    {},
  );
  const variantBytes = (contentBytes - before) / REPS;
  if (variant.summary.changes.grown !== 1) throw new Error('adding a variant did not grow the version');

  /** @type {[string, number, number | undefined, string][]} */
  const rows = [
    ['find -printf of the tree (baseline)', find, undefined, ''],
    ['no-op republish, this host\'s memory', noop.ms, noop.read, `${(noop.ms / find).toFixed(2)}x find`],
    ['no-op republish, another host (manifests compared)', otherHost.ms, otherHost.read, `${(otherHost.ms / find).toFixed(2)}x find`],
    ['no-op republish --rehash (reads every file, as before)', rehash.ms, rehash.read, `${(rehash.ms / noop.ms).toFixed(1)}x the no-op`],
    ['no-op republish as a command (Node start-up included)', cli, undefined, `${(cli / find).toFixed(2)}x find`],
    [`add one version (${ADDED_FILES} files, ${fmtBytes(addedBytes)})`, added.ms, added.read, `read ${(added.read / addedBytes).toFixed(2)}x its bytes`],
    ['add one version --rehash (every file read, as before)', addedRehash.ms, addedRehash.read, `${(addedRehash.ms / added.ms).toFixed(1)}x the incremental`],
    [`add one variant to big/1.0.0 (${ADDED_FILES} files, ${fmtBytes(variantBytes)})`, variant.ms, variant.read, `read ${(variant.read / variantBytes).toFixed(2)}x its bytes`],
  ];
  console.log(`\npublish benchmark: ${FILES} files (${fmtBytes(content)}) in ${1 + SMALL_FAMILIES} packages, file:// store, median of ${REPS}, warm page cache`);
  for (const [what, ms, read, ratio] of rows) {
    console.log(`  ${what.padEnd(58)} ${fmtMs(ms).padStart(9)}  ${read === undefined ? ''.padStart(12) : `read ${fmtBytes(read)}`.padStart(14)}  ${ratio}`);
  }
  /** @type {(ok: boolean, text: string) => void} */
  const target = (ok, text) => console.log(`  target ${ok ? 'MET ' : 'MISSED'} ${text}`);
  console.log('');
  target(noop.ms <= 2 * find, `no-op republish <= 2x find -printf: ${(noop.ms / find).toFixed(2)}x`);
  target(noop.read < content / 1000, `no-op republish reads no file content: ${fmtBytes(noop.read)} read in all, content ${fmtBytes(content)}`);
  // Besides the new files' bytes (read twice: hashed, then packed), a publish may read catalog documents, never
  // other payload.
  const documents = catalogBytes();
  /** @type {(bytes: number) => string} */
  const allowance = (bytes) => `${fmtBytes(bytes)} + catalog ${fmtBytes(documents)}`;
  target(added.read <= 2 * addedBytes + documents, `adding a version reads only its bytes (hash + upload, 2x): ${fmtBytes(added.read)} for ${allowance(addedBytes)}`);
  target(variant.read <= 2 * variantBytes + documents, `adding a variant reads only the new variant: ${fmtBytes(variant.read)} for ${allowance(variantBytes)}`);
} finally {
  if (KEEP) console.log(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}

