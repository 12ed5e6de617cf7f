/**
 * What a mount preloads of a pack for a startup profile: the blocks the profile's ranges fall in, or, where a pack
 * has chunk hashes and a block is only touched here and there (a loader's scattered reads of a big binary), just
 * the chunks the ranges fall in. Pure; imports the catalog's document types and block arithmetic.
 */
import { keys, type StartupProfile } from '../catalog/index.js';
import { blockSpan, blocksCovering } from './block-math.js';
import type { PackRef } from './block-source.js';

/**
 * A block whose profile ranges cover less than this share of it is preloaded as chunks. Above it, a whole block
 * costs little more than its chunks and serves any read of it, sequential ones included.
 */
const CHUNKED_BELOW_SHARE = 0.5;

export interface ProfilePlan {
  /** Blocks to preload whole, in order. */
  blocks: number[];
  /** Chunks (of the pack's chunk layout) to preload, in order; none for a pack without usable chunk hashes. */
  chunks: number[];
}

/** The blocks of `pack` that a (checked, see profileProblem) profile's ranges fall in, in order. */
export function profileBlocks(profile: StartupProfile, pack: PackRef): number[] {
  return [...coverage(profile, pack).keys()].sort((a, b) => a - b);
}

/** How to preload what a (checked) profile names of `pack`: whole blocks where it is dense, chunks where sparse. */
export function profilePlan(profile: StartupProfile, pack: PackRef): ProfilePlan {
  const plan: ProfilePlan = { blocks: [], chunks: [] };
  const layout = pack.chunks?.layout;
  for (const [block, ranges] of [...coverage(profile, pack)].sort((a, b) => a[0] - b[0])) {
    const span = blockSpan(block, pack.blockSize, pack.size);
    const covered = ranges.reduce((n, [start, end]) => n + end - start, 0);
    if (!layout || covered >= CHUNKED_BELOW_SHARE * (span.end - span.start)) {
      plan.blocks.push(block);
      continue;
    }
    const chunks = new Set<number>();
    for (const [start, end] of ranges) for (let c = layout.chunkAt(start); c <= layout.chunkAt(end - 1); c++) chunks.add(c);
    plan.chunks.push(...[...chunks].sort((a, b) => a - b));
  }
  return plan;
}

/** Per block the profile touches, the parts of its ranges inside that block (as pack offsets). */
function coverage(profile: StartupProfile, pack: PackRef): Map<number, [number, number][]> {
  const byBlock = new Map<number, [number, number][]>();
  for (const { ranges } of profile.packs.filter((p) => pack.key === keys.pack(p.pack))) {
    for (const [start, end] of ranges) {
      const covering = blocksCovering({ start, end }, pack.blockSize)!;
      for (let i = covering.first; i <= covering.last; i++) {
        const span = blockSpan(i, pack.blockSize, pack.size);
        let parts = byBlock.get(i);
        if (!parts) byBlock.set(i, (parts = []));
        parts.push([Math.max(start, span.start), Math.min(end, span.end)]);
      }
    }
  }
  return byBlock;
}
