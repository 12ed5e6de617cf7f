/**
 * Repair (`rezfs publish --repair`): a version whose source still matches what was published gets every pack
 * that is missing or damaged in the store rebuilt from the source, byte for byte, under its own hash, so that
 * mounts on this generation (and on older ones naming the same pack) read it again without a new generation.
 *
 * A pack is rebuilt from the manifest's layout: each file the manifest places in it, read from the source at its
 * offset, zeros between. The rebuilt bytes must hash to the pack's name before the store keeps them. A pack that
 * also held bytes no file names any more (a package.py replaced when a variant was added) cannot be rebuilt that
 * way; the caller then republishes the version from the source as one new pack instead. A pack's chunk object is
 * rebuilt with it.
 * Imports the catalog and store, and pack.ts.
 */
import { join } from 'node:path';
import { keys, packDamage, packOf, packsOf, type DirNode, type Manifest, type PackRecord } from '../catalog/index.js';
import type { ObjectStore } from '../store/index.js';
import { PublishInputError } from './errors.js';
import { PackUpload, type PlacedInput } from './pack.js';

export interface PackDamage {
  record: PackRecord;
  /** What is wrong with it, for the report. */
  problem: string;
}

/** The version's packs that are missing, of the wrong size or whose bytes fail a hash. */
export async function damagedPacks(store: ObjectStore, manifest: Manifest): Promise<PackDamage[]> {
  const damaged: PackDamage[] = [];
  for (const record of packsOf(manifest)) {
    const { problems } = await packDamage(store, manifest.blockSize, record);
    if (problems.length > 0) damaged.push({ record, problem: problems.join(', ') });
  }
  return damaged;
}

/**
 * Writes `record`'s pack again from the version's source directory. False when the source cannot give its exact
 * bytes (a file changed, or the pack holds bytes no file accounts for); nothing is written then.
 */
export async function rebuildPack(store: ObjectStore, manifest: Manifest, record: PackRecord, versionDir: string): Promise<boolean> {
  const placed: PlacedInput[] = [];
  const collect = (dir: DirNode, path: string) => {
    for (const [name, node] of Object.entries(dir.entries)) {
      if (node.type === 'dir') collect(node, join(path, name));
      else if (node.type === 'file' && packOf(manifest, node) === record) placed.push({ path: join(path, name), size: node.size, offset: node.offset });
    }
  };
  collect(manifest.root, versionDir);
  try {
    // Overwrites a damaged object with its one right content: the key is that content's hash. The pack's chunk
    // object (format 1.2) comes from the same bytes.
    const upload = new PackUpload(placed, record, manifest.blockSize);
    await store.putStream(keys.pack(record.pack), () => upload.stream(), { size: record.packSize, sha256: record.pack });
    if (record.chunks) await store.put(keys.chunks(record.chunks.object), await upload.chunkObject());
    return true;
  } catch (err) {
    if (err instanceof PublishInputError) return false;
    throw err;
  }
}
