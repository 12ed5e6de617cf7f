import { DiskBlockCache } from '../cache/index.js';
import { Catalog, catalogCopyRules, readSignature, verifyStore } from '../catalog/index.js';
import { streamLog } from '../log.js';
import { collectGarbage, type GcReport } from '../maintain/gc.js';
import { syncStores } from '../maintain/sync.js';
import { notifyMounts } from './registry.js';
import { LocalCopyStore, openStore, openWritableStore } from '../store/index.js';
import { readPublicKey } from './keys.js';
import { packagesOfContext, parsePackageRef, prefetch, type PackageRef } from './prefetch.js';
import { progressBar } from './progress.js';
import { UsageError, formatAge, formatBytes } from './units.js';

const out = (line: string) => process.stdout.write(`${line}\n`);
const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

/** `rezfs verify`: exit 1 with one line per problem, or one summary line when all is well. */
export async function verifyCommand(storeUrl: string, trustKeys: string[]): Promise<void> {
  const started = Date.now();
  const store = openStore(storeUrl);
  const bar = progressBar();
  try {
    const trust = trustKeys.length > 0 ? { keys: trustKeys.map(readPublicKey), minGeneration: 0 } : undefined;
    const report = await verifyStore(store, trust, (done, total) => bar.update('verifying', done / total, `${done}/${total} packs`));
    bar.done();
    for (const problem of report.problems) process.stderr.write(`rezfs: ${problem}\n`);
    const what = `generation ${report.generation} of ${store.url}: ${report.families} families, ${report.versions} versions, ${report.packs} packs, ${report.blocks} blocks (${formatBytes(report.bytes)}), ${report.chunks} chunks`;
    if (report.problems.length > 0) throw new Error(`${report.problems.length} problem(s) in ${what}`);
    out(`verified ${what} in ${seconds(started)}: all good`);
  } finally {
    bar.done();
    await store.close();
  }
}

/** `rezfs gc`: one line per object deleted (or, with --dry-run, that would be), then one summary line. */
export async function gcCommand(opts: { store: string; keepGenerations: number; graceMs: number; dryRun: boolean }): Promise<void> {
  const started = Date.now();
  const store = openWritableStore(opts.store);
  const bar = progressBar();
  try {
    const report = await collectGarbage(store, {
      ...opts,
      log: streamLog((line) => process.stderr.write(line), false),
      onProgress: (done, total) => bar.update('deleting', done / total, `${done}/${total} objects`),
    });
    bar.done();
    const now = Date.now();
    const verb = opts.dryRun ? 'would delete' : 'deleted';
    const spared = new Set(report.spared.map((s) => s.key));
    for (const object of report.garbage) {
      if (opts.dryRun || !spared.has(object.key)) {
        out(`${verb} ${object.key} (${formatBytes(object.size)}, written ${formatAge(now - object.modifiedMs)} ago)`);
      }
    }
    out(gcSummary(report, store.url, opts.dryRun, seconds(started)));
  } finally {
    bar.done();
    await store.close();
  }
}

function gcSummary(r: GcReport, url: string, dryRun: boolean, took: string): string {
  const gens = r.kept.map((k) => k.generation);
  const kept = gens.length === 0 ? 'no generation' : `${gens.length} generation(s) (${gens.join(', ')})`;
  const done = dryRun
    ? `dry run: would delete ${r.garbage.length} objects (${formatBytes(r.garbage.reduce((n, o) => n + o.size, 0))})`
    : `deleted ${r.deleted.objects} objects (${formatBytes(r.deleted.bytes)})${r.spared.length > 0 ? `, spared ${r.spared.length} at their last check` : ''}`;
  return (
    `${done} of ${r.listed.objects} in ${url} in ${took}; kept ${kept} and the ${r.referenced} objects they reference, ` +
    `${r.young.objects} unreferenced objects (${formatBytes(r.young.bytes)}) inside the grace period` +
    `${r.unknown > 0 ? `, ${r.unknown} objects of unknown kinds untouched` : ''}`
  );
}

/** `rezfs sync`: one summary line; local mounts of the target are told to refresh when it changed. */
export async function syncCommand(opts: { from: string; to: string; force: boolean }): Promise<void> {
  const started = Date.now();
  const source = openStore(opts.from);
  const target = openWritableStore(opts.to);
  const bar = progressBar();
  try {
    if (source.url === target.url) throw new UsageError(`--from and --to are the same store (${target.url}); name the site store to copy to`);
    const r = await syncStores(source, target, {
      force: opts.force,
      log: streamLog((line) => process.stderr.write(line), false),
      onProgress: (p) => {
        const fraction = p.totalBytes > 0 ? p.doneBytes / p.totalBytes : p.doneObjects / Math.max(1, p.totalObjects);
        bar.update('copying', fraction, `${p.doneObjects}/${p.totalObjects} objects ${formatBytes(p.doneBytes)}/${formatBytes(p.totalBytes)}`);
      },
    });
    bar.done();
    if (!r.changed && r.copied.objects === 0) {
      out(`${target.url} already serves generation ${r.generation} of ${source.url} (${r.objects} objects): nothing copied in ${seconds(started)}`);
      return;
    }
    const told = r.changed ? await notifyMounts(target.url) : 0;
    out(
      `synced generation ${r.generation} from ${source.url} to ${target.url} in ${seconds(started)}: ` +
        `${r.copied.objects} objects copied (${formatBytes(r.copied.bytes)}), ${r.alreadyThere} already there` +
        `${r.previousGeneration !== undefined ? `; it served generation ${r.previousGeneration} before` : ''}` +
        `${told > 0 ? `; ${told} local mount(s) told to refresh` : ''}`,
    );
  } finally {
    bar.done();
    await Promise.all([source.close(), target.close()]);
  }
}

/**
 * `rezfs prefetch`: payloads into the cache dir, and the catalog generation it used kept beside them, the
 * way a mount keeps it, so that a mount of the same store on that cache dir comes up with the store down.
 */
export async function prefetchCommand(
  specs: string[],
  opts: { store: string; cacheDir: string; cacheSize: number; context?: string; pin: boolean },
): Promise<void> {
  const started = Date.now();
  const packages: PackageRef[] = [...specs.map(parsePackageRef), ...(opts.context ? await packagesOfContext(opts.context) : [])];
  if (packages.length === 0) throw new UsageError('nothing to prefetch: name packages (<family>-<version>) or a --context FILE.rxt');
  const remote = openStore(opts.store);
  const store = LocalCopyStore.forStore(remote, opts.cacheDir, catalogCopyRules);
  const bar = progressBar();
  try {
    const catalog = await Catalog.open(store);
    // A mount that trusts signing keys needs the index's signature too; fetching it keeps the copy (if there is one).
    if (catalog.indexHash) await readSignature(store, catalog.indexHash);
    const cache = new DiskBlockCache(opts.cacheDir, opts.cacheSize, true);
    const summary = await prefetch(catalog, cache, packages, {
      pin: opts.pin,
      log: streamLog((line) => process.stderr.write(line), false),
      onProgress: (done, total) => bar.update('prefetch', done / total, `${done}/${total} blocks`),
    });
    bar.done();
    out(
      `prefetched ${summary.packages} packages into ${opts.cacheDir}: ${summary.blocks} blocks, ${summary.fetchedBlocks} fetched ` +
        `(${formatBytes(summary.fetchedBytes)}), ${summary.cachedBlocks} already cached${opts.pin ? ', pinned' : ''} in ${seconds(started)}`,
    );
    if (cache.notKept > 0) {
      throw new Error(
        `${cache.notKept} of ${summary.blocks} blocks could not be kept: ${opts.cacheDir} is at its cap (${formatBytes(opts.cacheSize)})` +
          `${cache.lastEvictionError ? ` and cannot evict: ${cache.lastEvictionError}` : ' and everything else in it is pinned'}; raise --cache-size or unpin (rezfs cache unpin)`,
      );
    }
    if (summary.notInStore.length > 0) {
      const named = summary.notInStore.map((p) => `${p.family}-${p.version}${p.fromContext?.location ? ` (${p.fromContext.location})` : ''}`);
      out(`not in ${store.url}, so not prefetched: ${named.join(', ')}`);
    }
  } finally {
    bar.done();
    await store.close();
  }
}

export async function cacheCommand(action: string, arg: string | undefined, opts: { cacheDir: string; cacheSize?: number }): Promise<void> {
  const cache = new DiskBlockCache(opts.cacheDir, opts.cacheSize);
  switch (action) {
    case 'stats': {
      const s = await cache.stats();
      const pins = await cache.pins();
      out(`${opts.cacheDir}: ${s.blocks} blocks, ${formatBytes(s.bytes)}; pinned ${s.pinnedBlocks} blocks (${formatBytes(s.pinnedBytes)}) by ${pins.length} pin(s)${pins.length ? `: ${pins.join(', ')}` : ''}`);
      return;
    }
    case 'gc': {
      if (opts.cacheSize === undefined) throw new UsageError('cache gc needs --cache-size: the cache is trimmed to 85% of it');
      const r = await cache.gc();
      out(`removed ${r.removedBlocks} blocks (${formatBytes(r.removedBytes)}); ${formatBytes(r.remainingBytes)} left in ${opts.cacheDir}`);
      return;
    }
    case 'clear':
      await cache.clear();
      out(`cleared ${opts.cacheDir}`);
      return;
    case 'verify': {
      const r = await cache.verify();
      for (const sha of r.removed) process.stderr.write(`rezfs: block ${sha} in ${opts.cacheDir} failed verification; removed\n`);
      out(`checked ${r.checked} blocks in ${opts.cacheDir}: ${r.removed.length} bad block(s) removed`);
      return;
    }
    case 'unpin': {
      const removed = await cache.unpin(arg);
      if (arg !== undefined && removed === 0) throw new UsageError(`no pin ${arg} in ${opts.cacheDir}; rezfs cache stats lists them`);
      out(`removed ${removed} pin(s)`);
      return;
    }
    default:
      throw new UsageError(`unknown cache action ${action}; use stats, gc, clear, verify or unpin`);
  }
}
