import { splitPath } from './paths.js';

/** "Forever" for the kernel: what is inside a published version changes only when a variant is added to it. */
export const IMMUTABLE_SEC = 365 * 24 * 3600;

export interface CacheTimeouts {
  /** For the root, families and versions' own entries: they change when a generation adds versions. */
  attrTimeoutSec: number;
  /** For names found missing in the root or a family: a later generation may add them. */
  negativeTimeoutSec: number;
}

/**
 * How long the kernel may keep what it learned about `path`: its attributes and directory entry
 * (`exists`), or that nothing is there. Paths below a version (`/<family>/<version>/...`) change only
 * when a variant is added to the version, and a binding that keeps them for good is then told exactly
 * what changed (generationChanges).
 */
export function cacheSeconds(path: string, exists: boolean, timeouts: CacheTimeouts): number {
  if (splitPath(path).length >= 3) return IMMUTABLE_SEC;
  return exists ? timeouts.attrTimeoutSec : timeouts.negativeTimeoutSec;
}
