import { blockCount } from '../cache/block-math.js';
import { createHash } from 'node:crypto';
import { sha256Hex } from '../hash.js';
import type { ObjectStore } from '../store/index.js';
import { Catalog, type TrustPolicy } from './catalog.js';
import { keys, type DirNode, type Manifest } from './schema.js';

export interface VerifyReport {
  generation: number;
  families: number;
  versions: number;
  packs: number;
  blocks: number;
  bytes: number;
  problems: string[];
}

/**
 * Checks the current generation end to end: the index (and its signature, given a trust policy),
 * every shard, every manifest, every block of every pack, and that inline package definitions equal
 * the bytes in the packs. Problems are collected, one line each, rather than stopping at the first.
 */
export async function verifyStore(store: ObjectStore, trust: TrustPolicy | undefined, onPack?: (done: number, total: number) => void): Promise<VerifyReport> {
  const catalog = await Catalog.open(store, trust);
  const report: VerifyReport = { generation: catalog.index.generation, families: 0, versions: 0, packs: 0, blocks: 0, bytes: 0, problems: [] };
  const manifests = new Map<string, string>(); // manifest hash -> first version naming it
  for (const family of catalog.familyNames()) {
    report.families++;
    const shard = await catalog.shard(family).catch((err: Error) => void report.problems.push(`family ${family}: ${err.message}`));
    if (!shard) continue;
    if (shard.name !== family) report.problems.push(`family ${family}: its shard names itself ${shard.name}`);
    for (const [version, record] of Object.entries(shard.versions)) {
      report.versions++;
      const where = `${family}/${version}`;
      const manifest = await catalog.manifest(record.manifest).catch((err: Error) => void report.problems.push(`${where}: ${err.message}`));
      if (!manifest) continue;
      for (const [name, inline] of Object.entries(record.definitions)) {
        const node = manifest.root.entries[name];
        if (node?.type !== 'file' || node.sha256 !== sha256Hex(Buffer.from(inline.data, 'base64'))) {
          report.problems.push(`${where}/${name}: the shard's copy differs from the one in the pack`);
        }
      }
      report.problems.push(...layoutProblems(where, manifest));
      if (!manifests.has(record.manifest)) manifests.set(record.manifest, where);
    }
  }
  let done = 0;
  for (const [hash, where] of manifests) {
    const manifest = await catalog.manifest(hash);
    report.problems.push(...(await packProblems(store, where, manifest, report)));
    onPack?.(++done, manifests.size);
  }
  return report;
}

/** Every file lies inside the pack and the block list covers the pack exactly. */
export function layoutProblems(where: string, manifest: Manifest): string[] {
  const problems: string[] = [];
  const expectedBlocks = blockCount(manifest.packSize, manifest.blockSize);
  if (manifest.blocks.length !== expectedBlocks) {
    problems.push(`${where}: manifest lists ${manifest.blocks.length} blocks for a ${manifest.packSize}-byte pack of ${manifest.blockSize}-byte blocks (expected ${expectedBlocks})`);
  }
  const walk = (dir: DirNode, path: string) => {
    for (const [name, node] of Object.entries(dir.entries)) {
      if (node.type === 'dir') walk(node, `${path}/${name}`);
      else if (node.type === 'file' && (node.offset < 0 || node.offset + node.size > manifest.packSize)) {
        problems.push(`${where}${path}/${name}: bytes ${node.offset}+${node.size} lie outside the ${manifest.packSize}-byte pack`);
      }
    }
  };
  walk(manifest.root, '');
  return problems;
}

async function packProblems(store: ObjectStore, where: string, manifest: Manifest, report: VerifyReport): Promise<string[]> {
  const key = keys.pack(manifest.pack);
  const info = await store.head(key).catch(() => undefined);
  if (!info) return [`${where}: pack ${key} is missing`];
  if (info.size !== manifest.packSize) return [`${where}: pack ${key} has ${info.size} bytes, the manifest says ${manifest.packSize}`];
  report.packs++;
  const whole = createHash('sha256');
  const problems: string[] = [];
  for (let index = 0; index < manifest.blocks.length; index++) {
    const start = index * manifest.blockSize;
    const block = await store.getRange(key, start, Math.min(start + manifest.blockSize, manifest.packSize));
    whole.update(block);
    report.blocks++;
    report.bytes += block.length;
    if (sha256Hex(block) !== manifest.blocks[index]) problems.push(`${where}: block ${index} of ${key} fails its sha256`);
  }
  if (problems.length === 0 && whole.digest('hex') !== manifest.pack) problems.push(`${where}: pack ${key} fails its sha256`);
  return problems;
}
