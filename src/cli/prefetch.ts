import { readFile } from 'node:fs/promises';
import { BlockSource, ByteBudget, MemoryBlockCache, blockSpan, packRef, type DiskBlockCache, type PackRef } from '../cache/index.js';
import { Catalog } from '../catalog/index.js';
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

const BLOCKS_IN_FLIGHT = 8;

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
 * Pulls whole package payloads into the disk cache, several blocks at once: the farm warm-up before
 * a job starts. Blocks already cached are checked and kept; with `pin`, they are exempt from eviction.
 */
export async function prefetch(
  catalog: Catalog,
  cache: DiskBlockCache,
  packages: readonly PackageRef[],
  options: { pin: boolean; log: Log; onProgress?: (done: number, total: number) => void },
): Promise<PrefetchSummary> {
  const packs: { name: string; pack: PackRef }[] = [];
  for (const { family, version } of packages) {
    const name = `${family}-${version}`;
    if (!catalog.family(family)) throw new UsageError(`no family ${family} in ${catalog.store.url}`);
    const record = (await catalog.shard(family)).versions[version];
    if (!record) throw new UsageError(`no version ${version} of ${family} in ${catalog.store.url}`);
    const manifest = await catalog.versionManifest(record);
    packs.push({ name, pack: packRef(manifest, options.log) });
  }
  // No memory cache: prefetched blocks are for the disk, not for this short-lived process.
  const blocks = new BlockSource(catalog.store, new MemoryBlockCache(1), cache, options.log, new ByteBudget(BLOCKS_IN_FLIGHT * catalog.config.blockSize));
  const work = packs.flatMap(({ pack }) => pack.blocks.map((_, index) => ({ pack, index })));
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < work.length) {
      const { pack, index } = work[next++]!;
      await blocks.read(pack, blockSpan(index, pack.blockSize, pack.size));
      options.onProgress?.(++done, work.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(BLOCKS_IN_FLIGHT, work.length) }, worker));
  if (options.pin) for (const { name, pack } of packs) await cache.pin(name, pack.blocks);
  return {
    packages: packs.length,
    blocks: work.length,
    fetchedBlocks: blocks.stats.storeGets,
    fetchedBytes: blocks.stats.storeBytes,
    cachedBlocks: blocks.stats.diskHits,
  };
}
