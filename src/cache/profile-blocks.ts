/**
 * The blocks of a pack that a startup profile names: what a mount preloads for a version at its first use.
 * Pure; imports the catalog's document types and block arithmetic.
 */
import { keys, type StartupProfile } from '../catalog/index.js';
import { blocksCovering } from './block-math.js';
import type { PackRef } from './block-source.js';

/** The blocks of `pack` that a (checked, see profileProblem) profile's ranges fall in, in order. */
export function profileBlocks(profile: StartupProfile, pack: PackRef): number[] {
  const indexes = new Set<number>();
  for (const { ranges } of profile.packs.filter((p) => pack.key === keys.pack(p.pack))) {
    for (const [start, end] of ranges) {
      const covering = blocksCovering({ start, end }, pack.blockSize)!;
      for (let i = covering.first; i <= covering.last; i++) indexes.add(i);
    }
  }
  return [...indexes].sort((a, b) => a - b);
}
