/**
 * Startup profiles (`profiles/<sha256>.json`, see schema.ts): building one from the reads a mount recorded, and
 * deciding whether a mount may follow one for the version whose record names it.
 *
 * Invariants: a profile's ranges are sorted, non-empty, and do not touch (adjacent ranges are merged), so equal
 * recordings make equal documents; a profile is followed only if it is for exactly this family, version and
 * manifest, names only that manifest's packs and only bytes inside them, and, when the mount trusts keys, is
 * signed by one of them. A profile only steers prefetching: whatever it says, reads return verified bytes.
 * Imports only the catalog's own modules.
 */
import type { KeyObject } from 'node:crypto';
import { FORMAT_VERSION, type Manifest, type ProfilePack, type StartupProfile } from './schema.js';
import { documentSignatureProblem } from './signing.js';
import { packsOf } from './packs.js';

/** What a profile must match: the version it is followed for. */
export interface ProfileTarget {
  family: string;
  version: string;
  manifestHash: string;
  manifest: Manifest;
}

/** Sorted, merged [start, end) ranges: overlapping and touching ones become one. */
export function mergeRanges(ranges: Iterable<readonly [number, number]>): [number, number][] {
  const sorted = [...ranges].filter(([start, end]) => end > start).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged: [number, number][] = [];
  for (const [start, end] of sorted) {
    const last = merged.at(-1);
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  return merged;
}

/** A profile document from recorded reads: per pack hash, the [start, end) ranges read, in any order. */
export function buildProfile(target: Omit<ProfileTarget, 'manifest'>, windowMs: number, reads: ReadonlyMap<string, Iterable<readonly [number, number]>>): StartupProfile {
  const packs: ProfilePack[] = [...reads]
    .map(([pack, ranges]) => ({ pack, ranges: mergeRanges(ranges) }))
    .filter((p) => p.ranges.length > 0)
    .sort((a, b) => (a.pack < b.pack ? -1 : a.pack > b.pack ? 1 : 0));
  return { format: FORMAT_VERSION, family: target.family, version: target.version, manifest: target.manifestHash, windowMs, packs };
}

/** Bytes a profile names, over all its packs. */
export function profileBytes(profile: StartupProfile): number {
  return profile.packs.reduce((n, p) => n + p.ranges.reduce((m, [start, end]) => m + end - start, 0), 0);
}

/** The packs of a manifest by hash, with their sizes. */
function packSizes(manifest: Manifest): Map<string, number> {
  return new Map(packsOf(manifest).map((record) => [record.pack, record.packSize]));
}

/**
 * Why a mount must not follow `profile` for `target` (one short phrase for the log line), or undefined when it may.
 * `trusted`: the mount's trusted keys when it serves a signed catalog only.
 */
export function profileProblem(profile: StartupProfile, target: ProfileTarget, trusted?: readonly KeyObject[]): string | undefined {
  if (profile.family !== target.family || profile.version !== target.version || profile.manifest !== target.manifestHash) {
    return `it is for ${profile.family}/${profile.version} (manifest ${profile.manifest}), not this version`;
  }
  if (!Array.isArray(profile.packs)) return 'it lists no packs';
  const sizes = packSizes(target.manifest);
  for (const { pack, ranges } of profile.packs) {
    const size = sizes.get(pack);
    if (size === undefined) return `it names pack ${pack}, which this version does not have`;
    if (!Array.isArray(ranges)) return `its ranges of pack ${pack} are not a list`;
    let previousEnd = -1;
    for (const range of ranges) {
      const [start, end] = Array.isArray(range) ? range : [];
      if (!Number.isInteger(start) || !Number.isInteger(end) || start! <= previousEnd || end! <= start! || end! > size) {
        return `it names bytes ${JSON.stringify(range)} of pack ${pack}, which are not sorted ranges inside its ${size} bytes`;
      }
      previousEnd = end!;
    }
  }
  if (trusted) {
    const problem = documentSignatureProblem(trusted, profile);
    if (problem) return `it ${problem}, and this mount trusts only signed catalogs`;
  }
  return undefined;
}
