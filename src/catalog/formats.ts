/**
 * Which format each document declares (decision D5): 1.2.0 unless it uses a feature that a 1.x reader would
 * misread silently, then 2.0.0, which 1.x readers refuse loudly ("install a rezfs that matches the store").
 * Writers set `format` from here and nowhere else. Imports the schema only.
 */
import { FORMAT_2, FORMAT_VERSION, type CatalogIndex, type FamilyShard, type Manifest } from './schema.js';

/** A manifest with added packs: a 1.x reader would read every file from pack 0. */
export function manifestFormat(manifest: Pick<Manifest, 'addedPacks'>): string {
  return (manifest.addedPacks?.length ?? 0) > 0 ? FORMAT_2 : FORMAT_VERSION;
}

/** An index with root files (single-file families): a 1.x reader would serve the root without them. */
export function indexFormat(index: Pick<CatalogIndex, 'files'>): string {
  return Object.keys(index.files ?? {}).length > 0 ? FORMAT_2 : FORMAT_VERSION;
}

/** A shard of an unversioned package: a 1.x reader would serve the family empty. */
export function shardFormat(shard: Pick<FamilyShard, 'unversioned'>): string {
  return shard.unversioned ? FORMAT_2 : FORMAT_VERSION;
}
