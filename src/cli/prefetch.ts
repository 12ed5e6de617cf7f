import { readFile } from 'node:fs/promises';
import { BlockSource, ByteBudget, MemoryBlockCache, blockSpan, packRef, profileBlocks, type DiskBlockCache, type PackRef } from '../cache/index.js';
import { packsOf, profileProblem, type Catalog, type StartupProfile } from '../catalog/index.js';
import type { Log } from '../log.js';
import { UsageError } from './units.js';

export interface PackageRef {
  family: string;
  version: string;
}

export interface PrefetchSummary {
  packages: number;
  blocks: number;
  fetchedBlocks: number;
  fetchedBytes: number;
  cachedBlocks: number;
}

/** `family-1.2.3` (rez's qualified name; family names hold no `-`) or `family/1.2.3`. */
export function parsePackageRef(text: string): PackageRef {
  const match = /^([^/-]+)[-/](.+)$/.exec(text);
  if (!match) throw new UsageError(`${JSON.stringify(text)} is not a package; use <family>-<version>, e.g. maya-2024.1`);
  return { family: match[1]!, version: match[2]! };
}

/** The packages a saved rez context (`rez env --output FILE.rxt`, `rez-context`) resolved to. */
export async function packagesOfContext(file: string): Promise<PackageRef[]> {
  let data: { resolved_packages?: { variables?: { name?: unknown; version?: unknown } }[] };
  try {
    data = JSON.parse(await readFile(file, 'utf8')) as typeof data;
  } catch (err) {
    throw new UsageError(`${file} is not a rez context (.rxt) file: ${(err as Error).message}`);
  }
  const refs = (data.resolved_packages ?? []).map((p) => p.variables ?? {});
  if (refs.length === 0 || refs.some((v) => typeof v.name !== 'string' || typeof v.version !== 'string')) {
    throw new UsageError(`${file} lists no resolved packages; save one with rez env <request> --output ${file}`);
  }
  return refs.map((v) => ({ family: v.name as string, version: v.version as string }));
}

/**
 * Pulls whole package payloads into the disk cache: the farm warm-up before a job starts. The catalog documents
 * of every package load in parallel (one wave of shards, one of manifests and profiles), then the blocks through
 * the mount's own background engine (BlockSource.preload: consecutive blocks in ranged GETs, many in flight):
 * every package's startup set first, as its published profile names it, then the rest. Blocks already cached are
 * checked and kept; with `pin`, they are exempt from eviction.
 */
export async function prefetch(
  catalog: Catalog,
  cache: DiskBlockCache,
  packages: readonly PackageRef[],
  options: { pin: boolean; log: Log; onProgress?: (done: number, total: number) => void },
): Promise<PrefetchSummary> {
  const ofPackages = await Promise.all(packages.map((ref) => packsOfPackage(catalog, ref, options.log)));
  const packs = ofPackages.flat();
  // No memory cache to speak of: prefetched blocks are for the disk, not for this short-lived process.
  const blocks = new BlockSource(catalog.store, new MemoryBlockCache(1), cache, options.log, new ByteBudget(IN_FLIGHT_BYTES));
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
  // Startup sets first, so that a job could start on the mount while the rest still comes.
  await Promise.all(packs.map(({ pack, startup }) => load(pack, startup)));
  await Promise.all(packs.flatMap(({ pack, startup }) => chunks(pack.blocks.map((_, i) => i).filter((i) => !startup.includes(i))).map((c) => load(pack, c))));
  await blocks.flushed();
  // One pin per package, covering each of its packs.
  if (options.pin) for (const ofPackage of ofPackages) await cache.pin(ofPackage[0]!.name, ofPackage.flatMap(({ pack }) => pack.blocks));
  return {
    packages: packages.length,
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

/** A package's packs, each with the blocks of its startup set (from its published profile, when it has a usable one). */
async function packsOfPackage(catalog: Catalog, { family, version }: PackageRef, log: Log): Promise<{ name: string; pack: PackRef; startup: number[] }[]> {
  if (!catalog.family(family)) throw new UsageError(`no family ${family} in ${catalog.store.url}`);
  const shard = await catalog.shard(family);
  const record = Object.hasOwn(shard.versions, version) ? shard.versions[version] : undefined;
  if (!record) throw new UsageError(`no version ${version} of ${family} in ${catalog.store.url}`);
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
