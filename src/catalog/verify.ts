import { createHash } from 'node:crypto';
import { sha256Hex } from '../hash.js';
import type { ObjectStore } from '../store/index.js';
import { profileProblem } from './profile.js';
import { Catalog, type TrustPolicy } from './catalog.js';
import { ChunkLayout, HASH_BYTES, unusableChunks } from './chunk-hashes.js';
import { encodeDocument } from './codec.js';
import { packOf, packsOf } from './packs.js';
import { CatalogWalker, type ObjectRef } from './references.js';
import { blockCount } from './tree.js';
import { keys, type DirNode, type Manifest, type PackRecord, type VersionRecord } from './schema.js';

export interface VerifyReport {
  generation: number;
  families: number;
  versions: number;
  packs: number;
  blocks: number;
  /** Chunks checked against their hashes (packs with chunk hashes, format 1.2). */
  chunks: number;
  bytes: number;
  problems: string[];
}

/**
 * Checks the current generation end to end: the index (and its signature, given a trust policy), every shard,
 * every manifest, every block of every pack (and every chunk, where a pack has chunk hashes), that inline package
 * definitions equal the bytes in the packs, and that every startup profile fits the version naming it (and is
 * signed, given a trust policy).
 * The objects are the ones the shared walker (references.ts) finds; problems are collected, one line each,
 * rather than stopping at the first.
 */
export async function verifyStore(store: ObjectStore, trust: TrustPolicy | undefined, onPack?: (done: number, total: number) => void): Promise<VerifyReport> {
  const catalog = await Catalog.open(store, trust);
  const report: VerifyReport = { generation: catalog.index.generation, families: 0, versions: 0, packs: 0, blocks: 0, chunks: 0, bytes: 0, problems: [] };
  if (catalog.indexHash === undefined) return report;
  const packs: PackCheck[] = [];
  const profiles: { where: string; record: VersionRecord; manifest: Manifest }[] = [];
  const laidOut = new Set<string>(); // manifests whose layout was checked: once each, however many versions share one
  report.families = catalog.familyNames().length;
  await new CatalogWalker(store).walk(catalog.indexHash, {
    object: (ref) => {
      if (ref.kind === 'pack') packs.push(ref);
    },
    shard: (family, shard) => {
      if (shard.name !== family) report.problems.push(`family ${family}: its shard names itself ${shard.name}`);
    },
    version: (where, record, manifest) => {
      report.versions++;
      if (record.inlineManifest && encodeDocument(record.inlineManifest).hash !== record.manifest) {
        report.problems.push(`${where}: the shard's inline manifest differs from manifest ${record.manifest}`);
      }
      if (record.profile) profiles.push({ where, record, manifest });
      for (const [name, inline] of Object.entries(record.definitions)) {
        const node = manifest.root.entries[name];
        if (node?.type !== 'file' || node.sha256 !== sha256Hex(Buffer.from(inline.data, 'base64'))) {
          report.problems.push(`${where}/${name}: the shard's copy differs from the one in the pack`);
        }
      }
      if (!laidOut.has(record.manifest)) report.problems.push(...layoutProblems(where, manifest));
      laidOut.add(record.manifest);
    },
    problem: (where, err) => report.problems.push(`${where}: ${err.message}`),
  });
  for (const { where, record, manifest } of profiles) {
    const [family, version] = where.split('/') as [string, string];
    const profile = await catalog.profile(record.profile!).catch((err: Error) => void report.problems.push(`${where}: ${err.message}`));
    const problem = profile && profileProblem(profile, { family, version, manifestHash: record.manifest, manifest }, trust?.keys);
    if (problem) report.problems.push(`${where}: startup profile ${record.profile}: ${problem}`);
  }
  let done = 0;
  for (const pack of packs) {
    report.problems.push(...(await packProblems(store, pack, report)));
    onPack?.(++done, packs.length);
  }
  return report;
}

/** Every file lies inside its pack and each pack's block list covers it exactly. */
export function layoutProblems(where: string, manifest: Manifest): string[] {
  const problems: string[] = [];
  for (const record of packsOf(manifest)) {
    const expectedBlocks = blockCount(record.packSize, manifest.blockSize);
    if (record.blocks.length !== expectedBlocks) {
      problems.push(`${where}: manifest lists ${record.blocks.length} blocks for the ${record.packSize}-byte pack ${record.pack} of ${manifest.blockSize}-byte blocks (expected ${expectedBlocks})`);
    }
  }
  const walk = (dir: DirNode, path: string) => {
    for (const [name, node] of Object.entries(dir.entries)) {
      if (node.type === 'dir') walk(node, `${path}/${name}`);
      else if (node.type === 'file') {
        let record: PackRecord;
        try {
          record = packOf(manifest, node);
        } catch (err) {
          problems.push(`${where}${path}/${name}: ${(err as Error).message}`);
          continue;
        }
        if (node.offset < 0 || node.offset + node.size > record.packSize) {
          problems.push(`${where}${path}/${name}: bytes ${node.offset}+${node.size} lie outside the ${record.packSize}-byte pack ${record.pack}`);
        }
      }
    }
  };
  walk(manifest.root, '');
  return problems;
}

type PackCheck = Extract<ObjectRef, { kind: 'pack' }>;
/** What checking a pack needs of its record (the walker's refs hold the block list read-only). */
type PackCheckRecord = Omit<PackRecord, 'blocks'> & { blocks: readonly string[] };

async function packProblems(store: ObjectStore, check: PackCheck, report: VerifyReport): Promise<string[]> {
  const record: PackCheckRecord = { pack: check.sha256, packSize: check.size, blocks: check.blocks, chunks: check.chunks };
  const { read, problems } = await packDamage(store, check.blockSize, record, {
    onBlock: (bytes) => {
      report.blocks++;
      report.bytes += bytes;
    },
    onChunks: (n) => (report.chunks += n),
  });
  if (read) report.packs++;
  return problems.map((problem) => `${check.where}: ${problem}`);
}

/**
 * What is wrong with a pack in the store, one line per problem naming the object (none: it is whole): missing, of
 * another size than its record says, blocks that fail their hash, a whole that fails the pack's, and (format 1.2) a
 * chunk object, chunk list or chunk that fails its own. Reads every block (`read`: it was there to read).
 */
export async function packDamage(
  store: ObjectStore,
  blockSize: number,
  record: PackCheckRecord,
  counts: { onBlock?: (bytes: number) => void; onChunks?: (n: number) => void } = {},
): Promise<{ read: boolean; problems: string[] }> {
  const key = keys.pack(record.pack);
  const info = await store.head(key).catch(() => undefined);
  if (!info) return { read: false, problems: [`pack ${key} is missing`] };
  if (info.size !== record.packSize) return { read: false, problems: [`pack ${key} has ${info.size} bytes, the manifest says ${record.packSize}`] };
  const whole = createHash('sha256');
  const problems: string[] = [];
  const chunks = await chunkChecker(store, key, record, blockSize, problems);
  for (let index = 0; index < record.blocks.length; index++) {
    const start = index * blockSize;
    const block = await store.getRange(key, start, Math.min(start + blockSize, record.packSize));
    whole.update(block);
    counts.onBlock?.(block.length);
    if (sha256Hex(block) !== record.blocks[index]) problems.push(`block ${index} of ${key} fails its sha256`);
    if (chunks) counts.onChunks?.(chunks(index, block));
  }
  if (problems.length === 0 && whole.digest('hex') !== record.pack) problems.push(`pack ${key} fails its sha256`);
  return { read: true, problems };
}

/**
 * Checks a pack's chunk object (its hash, its index's hash) and returns a check of one block: its chunk list
 * against the index, its chunks against the list; it returns how many chunks it checked. Undefined when the
 * pack has no chunk hashes, or they cannot be used (then reported).
 */
async function chunkChecker(
  store: ObjectStore,
  packKey: string,
  record: PackCheckRecord,
  blockSize: number,
  problems: string[],
): Promise<((block: number, bytes: Buffer) => number) | undefined> {
  const { chunks, packSize: size } = record;
  if (!chunks) return undefined;
  const key = keys.chunks(chunks.object);
  const unusable = unusableChunks(chunks, blockSize);
  if (unusable) {
    problems.push(`chunk hashes of ${packKey} unusable: ${unusable}`);
    return undefined;
  }
  const layout = new ChunkLayout(size, blockSize, chunks.chunkSize);
  const object = await store.get(key).catch(() => undefined);
  if (!object) {
    problems.push(`chunk object ${key} is missing`);
    return undefined;
  }
  const indexSpan = layout.indexSpan();
  const index = object.subarray(indexSpan.start, indexSpan.end);
  if (object.length !== layout.objectSize || sha256Hex(object) !== chunks.object || sha256Hex(index) !== chunks.index) {
    problems.push(`chunk object ${key} fails its sha256 (or its index does)`);
    return undefined;
  }
  return (block, bytes) => {
    const list = layout.listSpan(block);
    if (sha256Hex(object.subarray(list.start, list.end)) !== index.toString('hex', block * HASH_BYTES, (block + 1) * HASH_BYTES)) {
      problems.push(`the chunk list of block ${block} in ${key} fails its sha256`);
      return 0;
    }
    let checked = 0;
    for (let offset = 0; offset < bytes.length; offset += layout.chunkSize, checked++) {
      const at = list.start + checked * HASH_BYTES;
      if (sha256Hex(bytes.subarray(offset, offset + layout.chunkSize)) !== object.toString('hex', at, at + HASH_BYTES)) {
        problems.push(`chunk ${block * layout.chunksPerBlock + checked} of ${packKey} fails its sha256`);
      }
    }
    return checked;
  };
}
