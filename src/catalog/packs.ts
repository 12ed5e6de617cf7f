/**
 * Which pack holds what (decision D6): a version's bytes may sit in several packs, pack 0 being the
 * manifest's own PackRecord fields and pack n >= 1 `addedPacks[n - 1]`. Every reader (the mount, prefetch,
 * verify) takes a file's pack from here, so there is one rule for it. Imports the schema only.
 */
import { CatalogError } from './codec.js';
import type { FileNode, Manifest, PackRecord } from './schema.js';

/** The version's packs in pack-number order. */
export function packsOf(manifest: Manifest): PackRecord[] {
  return [manifest, ...(manifest.addedPacks ?? [])];
}

/** The pack that holds `file`'s bytes; a pack number the manifest lacks is a broken manifest, not pack 0. */
export function packOf(manifest: Manifest, file: FileNode): PackRecord {
  const n = file.pack ?? 0;
  const record = n === 0 ? manifest : manifest.addedPacks?.[n - 1];
  if (!record) throw new CatalogError(`manifest of pack ${manifest.pack} names pack ${n}, which it does not list`);
  return record;
}
