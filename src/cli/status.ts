import type { BlockSource, ByteBudget, MemoryBlockCache, MemoryPlan } from '../cache/index.js';
import type { Catalog, CatalogRefresher } from '../catalog/index.js';
import type { Mounted, PackageCosts, RezFs, StartupSets } from '../fs/index.js';
import type { LocalCopyStore, ObjectStore } from '../store/index.js';
import type { MountConfig } from './mount-config.js';
import { requestControl } from './control.js';
import { findMount } from './registry.js';
import { UsageError, formatBytes } from './units.js';

export interface StatusParts {
  cmd: MountConfig;
  started: number;
  store: LocalCopyStore;
  remote: ObjectStore;
  fs: RezFs;
  /**
   * The generation the mount shows: swapped in and, on a binding that invalidates, dropped from the kernel's caches.
   * Between the two, `fs.current` is newer than what a reader of the mount may still see.
   */
  shown: Catalog;
  refresher: CatalogRefresher;
  mounted: Mounted;
  blocks: BlockSource;
  memoryCache: MemoryBlockCache;
  memoryLimit: MemoryPlan;
  budget: ByteBudget;
  startup: StartupSets;
  costs: PackageCosts;
  errors: number;
}

/** Packages `rezfs status` names as the costliest cold (the metrics name twice as many). */
export const COSTLIEST_SHOWN = 10;

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
const ratio = (part: number, whole: number) => (whole === 0 ? null : Number((part / whole).toFixed(4)));

/** Everything `rezfs status` reports, as one JSON-able document (monitoring reads the same). */
export async function mountStatus(p: StatusParts) {
  const catalog = p.shown;
  const offline = p.store.offlineState();
  const { memoryHits, diskHits, storeGets, storeBytes, chunkReads } = p.blocks.stats;
  const blockLoads = memoryHits + diskHits + storeGets;
  const health = p.remote.health?.();
  const stores = health
    ? health.map((h) => ({ url: h.url, healthy: h.healthy, failures: h.failures, downSince: iso(h.downSinceMs), lastError: h.lastError ?? null }))
    : [{ url: p.remote.url, healthy: !offline.offline, failures: null, downSince: iso(offline.sinceMs), lastError: offline.lastError ?? null }];
  return {
    mountpoint: p.cmd.mountpoint,
    pid: process.pid,
    uptimeSec: Math.round((Date.now() - p.started) / 1000),
    store: p.store.url,
    offline: offline.offline,
    offlineSince: iso(offline.sinceMs),
    generation: catalog.index.generation,
    index: catalog.indexHash ?? null,
    catalogCreated: iso(catalog.index.createdMs),
    catalogAgeSec: Math.round((Date.now() - catalog.index.createdMs) / 1000),
    families: catalog.familyNames().length,
    refreshSec: p.cmd.refreshMs / 1000,
    /** The last look for a new generation, and why it failed while it keeps failing (the mount serves the last good one). */
    refresh: { lastCheck: iso(p.refresher.lastCheckMs), lastError: p.refresher.lastError ?? null },
    stores,
    fuse: p.mounted.binding,
    requests: { ...p.fs.stats, note: 'what the kernel answered from its caches never reaches rezfs' },
    /** Inodes the kernel holds and lookups it was granted (native binding only; forget lowers `held`). */
    kernelInodes: p.mounted.kernelInodes?.() ?? null,
    cache: {
      memory: { bytes: p.memoryCache.bytes, limit: p.memoryLimit.cacheBytes, hits: memoryHits, hitRatio: ratio(memoryHits, blockLoads) },
      disk: { dir: p.cmd.cacheDir, cap: p.cmd.cacheSize, hits: diskHits, hitRatio: ratio(diskHits, blockLoads) },
      store: { gets: storeGets, bytes: storeBytes, ratio: ratio(storeGets, blockLoads) },
      /** Reads of blocks served from 4 KiB chunks instead (small random reads of big files). */
      chunkReads,
      inFlightBytes: p.budget.inUse,
    },
    /** Startup sets: profiles followed or ignored, small versions preloaded whole, blocks preloaded, recordings kept. */
    startup: { ...p.startup.stats },
    /** The versions that cost the most payload bytes from the store (and read time): what to prefetch or profile first. */
    costliest: p.costs.top(2 * COSTLIEST_SHOWN),
    errors: p.errors,
    rssBytes: process.memoryUsage.rss(),
  };
}

export type MountStatus = Awaited<ReturnType<typeof mountStatus>>;

/** `rezfs status <mountpoint> [--json]`: asks the mount over its control socket. */
export async function statusCommand(mountpoint: string, json: boolean): Promise<void> {
  const record = await findMount(mountpoint);
  if (!record) throw new UsageError(`no running rezfs mount at ${mountpoint}`);
  const s = (await requestControl(record.socket, 'status')) as MountStatus;
  if (json) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return;
  }
  const { cache } = s;
  const pct = (v: number | null | undefined) => (v == null ? '-' : `${(v * 100).toFixed(1)}%`);
  const lines = [
    `${s.mountpoint}: ${s.store} generation ${s.generation} (${s.families} families, published ${s.catalogCreated}), pid ${s.pid}, up ${s.uptimeSec} s`,
    s.offline ? `OFFLINE since ${s.offlineSince}: serving the local copy of the catalog and cached data only` : 'online',
    ...s.stores.map((st) => `  store ${st.url}: ${st.healthy ? 'healthy' : `down (${st.lastError})`}`),
    ...(s.refresh.lastError ? [`  REFRESH FAILING (last tried ${s.refresh.lastCheck}): ${s.refresh.lastError}`] : []),
    `  memory cache ${formatBytes(cache.memory.bytes)} of ${formatBytes(cache.memory.limit)}, hits ${pct(cache.memory.hitRatio)}; disk hits ${pct(cache.disk.hitRatio)}; store ${cache.store.gets} GETs (${formatBytes(cache.store.bytes)}); ${cache.chunkReads} reads from chunks`,
    `  FUSE binding ${s.fuse}; requests that reached rezfs: ${s.requests.metadata} metadata, ${s.requests.reads} reads`,
    `  startup sets: ${s.startup.profilesFollowed} profiles followed, ${s.startup.profilesIgnored} ignored, ${s.startup.wholePacks} small versions whole; ${s.startup.preloadedBlocks} blocks and ${s.startup.preloadedChunks} chunks preloaded; ${s.startup.recorded} recorded`,
    ...(s.costliest.length > 0
      ? [`  costliest cold: ${s.costliest.slice(0, COSTLIEST_SHOWN).map((c) => `${c.package} ${formatBytes(c.coldBytes)} in ${c.storeGets} GETs, read ${c.readSeconds.toFixed(2)} s`).join('; ')}`]
      : []),
    `  errors logged: ${s.errors}; rss ${formatBytes(s.rssBytes)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
