import { readFile } from 'node:fs/promises';
import { BlockSource, ByteBudget, MemoryBlockCache, blockSpan, packRef, profileBlocks, type DiskBlockCache, type PackRef } from '../cache/index.js';
import { packsOf, profileProblem, type Catalog, type StartupProfile } from '../catalog/index.js';
import type { Log } from '../log.js';
import { isRunning } from '../pid.js';
import { UsageError, formatBytes } from './units.js';

export interface PackageRef {
  family: string;
  version: string;
  /**
   * Set for a package a saved rez context resolved: where rez found it (the context's `location`, if it says).
   * A context may hold packages of other repositories on REZ_PACKAGES_PATH; those are skipped, and named.
   */
  fromContext?: { location: string | undefined };
}

export interface PrefetchSummary {
  packages: number;
  /** Packages of the context that the store does not hold (rez found them in another repository). */
  notInStore: PackageRef[];
  blocks: number;
  fetchedBlocks: number;
  fetchedBytes: number;
  cachedBlocks: number;
}

/** The pin a prefetch without --pin holds while it runs, followed by its pid. */
const RUN_PIN = '.prefetching-';

/** `family-1.2.3` (rez's qualified name; family names hold no `-`) or `family/1.2.3`. */
export function parsePackageRef(text: string): PackageRef {
  const match = /^([^/-]+)[-/](.+)$/.exec(text);
  if (!match) throw new UsageError(`${JSON.stringify(text)} is not a package; use <family>-<version>, e.g. maya-2024.1`);
  return { family: match[1]!, version: match[2]! };
}

/** The packages a saved rez context (`rez env --output FILE.rxt`, `rez-context`) resolved to. */
export async function packagesOfContext(file: string): Promise<PackageRef[]> {
  let data: { resolved_packages?: { variables?: { name?: unknown; version?: unknown; location?: unknown } }[] };
  try {
    data = JSON.parse(await readFile(file, 'utf8')) as typeof data;
  } catch (err) {
    throw new UsageError(`${file} is not a rez context (.rxt) file: ${(err as Error).message}`);
  }
  const refs = (data.resolved_packages ?? []).map((p) => p.variables ?? {});
  if (refs.length === 0 || refs.some((v) => typeof v.name !== 'string' || typeof v.version !== 'string')) {
    throw new UsageError(`${file} lists no resolved packages; save one with rez env <request> --output ${file}`);
  }
  return refs.map((v) => ({
    family: v.name as string,
    version: v.version as string,
    fromContext: { location: typeof v.location === 'string' ? v.location : undefined },
  }));
}

/**
 * Pulls whole package payloads into the disk cache: the farm warm-up before a job starts. The catalog documents
 * of every package load in parallel (one wave of shards, one of manifests and profiles), then the blocks through
 * the mount's own background engine (BlockSource.preload: consecutive blocks in ranged GETs, many in flight):
 * every package's startup set first, as its published profile names it, then the rest. Blocks already cached are
 * checked and kept; with `pin`, they are exempt from eviction. It keeps to the cache's cap: more than fits is
 * refused up front. A package named on the command line must be in the store; one from a context may come from
 * another repository and is skipped (and reported). A family the store names whose shard cannot be loaded is an
 * error either way: unknown is not absent.
 */
export async function prefetch(
  catalog: Catalog,
  cache: DiskBlockCache,
  packages: readonly PackageRef[],
  options: { pin: boolean; log: Log; onProgress?: (done: number, total: number) => void },
): Promise<PrefetchSummary> {
  const ofPackages = await Promise.all(packages.map((ref) => packsOfPackage(catalog, ref, options.log)));
  const notInStore = packages.filter((_, i) => ofPackages[i] === undefined);
  const found = ofPackages.filter((p): p is PackToLoad[] => p !== undefined);
  const packs = found.flat();
  const bytes = packs.reduce((n, { pack }) => n + pack.size, 0);
  if (bytes > cache.maxBytes) {
    throw new UsageError(`the packages take ${formatBytes(bytes)}, more than the cache's cap of ${formatBytes(cache.maxBytes)} (--cache-size): prefetch fewer, or raise it`);
  }
  // Pinned before they are fetched, so that making room for the last blocks never evicts the first ones; without
  // --pin only while this runs (a run that was killed leaves its pin behind: the next run removes it). One pin per
  // package, covering each of its packs.
  for (const stale of (await cache.pins()).filter((pin) => pin.startsWith(RUN_PIN) && !isRunning(Number(pin.slice(RUN_PIN.length))))) await cache.unpin(stale);
  const runPin = `${RUN_PIN}${process.pid}`;
  if (options.pin) for (const ofPackage of found) await cache.pin(ofPackage[0]!.name, ofPackage.flatMap(({ pack }) => pack.blocks));
  else await cache.pin(runPin, packs.flatMap(({ pack }) => pack.blocks));
  // No memory cache to speak of: prefetched blocks are for the disk, not for this short-lived process.
  const blocks = new BlockSource(catalog.store, new MemoryBlockCache(1), cache, options.log, { budget: new ByteBudget(IN_FLIGHT_BYTES) });
  const total = packs.reduce((n, { pack }) => n + pack.blocks.length, 0);
  let done = 0;
  const load = async (pack: PackRef, indexes: number[]) => {
    if (indexes.length === 0) return;
    // A preload never fails (its failures are nobody's answer): blocks that did not come are read, and fail, here.
    if ((await blocks.preload(pack, indexes)) < indexes.length) {
      await Promise.all(indexes.map((i) => blocks.read(pack, blockSpan(i, pack.blockSize, pack.size))));
    }
    options.onProgress?.((done += indexes.length), total);
  };
  try {
    // Startup sets first, so that a job could start on the mount while the rest still comes.
    await Promise.all(packs.map(({ pack, startup }) => load(pack, startup)));
    await Promise.all(packs.flatMap(({ pack, startup }) => chunks(pack.blocks.map((_, i) => i).filter((i) => !startup.includes(i))).map((c) => load(pack, c))));
    await blocks.flushed();
  } finally {
    if (!options.pin) await cache.unpin(runPin);
  }
  return {
    packages: found.length,
    notInStore,
    blocks: total,
    fetchedBlocks: total - blocks.stats.diskHits,
    fetchedBytes: blocks.stats.storeBytes,
    cachedBlocks: blocks.stats.diskHits,
  };
}

/** Blocks fetched at once, in bytes (each GET holds twice its size until its blocks are cut out of it). */
const IN_FLIGHT_BYTES = 64 * 1024 * 1024;
/** Blocks per preload call beyond the startup set: progress is reported as each such chunk is in. */
const CHUNK_BLOCKS = 16;

function chunks(indexes: number[]): number[][] {
  return Array.from({ length: Math.ceil(indexes.length / CHUNK_BLOCKS) }, (_, i) => indexes.slice(i * CHUNK_BLOCKS, (i + 1) * CHUNK_BLOCKS));
}

interface PackToLoad {
  name: string;
  pack: PackRef;
  startup: number[];
}

/**
 * A package's packs, each with the blocks of its startup set (from its published profile, when it has a usable
 * one); undefined for a context's package the store does not hold (rez found it in another repository).
 */
async function packsOfPackage(catalog: Catalog, ref: PackageRef, log: Log): Promise<PackToLoad[] | undefined> {
  const { family, version } = ref;
  const known = catalog.family(family) !== undefined;
  // A family the index names is loaded (and fails loudly if it cannot be); only what it says is absent is absent.
  const shard = known ? await catalog.shard(family) : undefined;
  const record = shard && Object.hasOwn(shard.versions, version) ? shard.versions[version] : undefined;
  if (!record) {
    if (ref.fromContext) return undefined;
    throw new UsageError(known ? `no version ${version} of ${family} in ${catalog.store.url}` : `no family ${family} in ${catalog.store.url}`);
  }
  const manifest = await catalog.versionManifest(record);
  const packs = packsOf(manifest).map((pack) => packRef(manifest, pack, log));
  let profile: StartupProfile | undefined;
  if (record.profile) {
    const loaded = await catalog.profile(record.profile).catch((err: Error) => void log.warn(`${family}-${version}: its startup profile is ignored: ${err.message}`));
    const problem = loaded && profileProblem(loaded, { family, version, manifestHash: record.manifest, manifest });
    if (problem) log.warn(`${family}-${version}: its startup profile is ignored: ${problem}`);
    else if (loaded) profile = loaded;
  }
  return packs.map((pack) => ({ name: `${family}-${version}`, pack, startup: profile ? profileBlocks(profile, pack) : [] }));
}
