import type { DirNode } from './schema.js';

/** Subdirectories of a directory: a directory's link count is 2 plus this. */
export function countSubdirs(dir: DirNode): number {
  let count = 0;
  for (const child of Object.values(dir.entries)) if (child.type === 'dir') count++;
  return count;
}

/** Blocks a pack of `packSize` bytes is cut into (the last one may be short). */
export function blockCount(packSize: number, blockSize: number): number {
  return Math.ceil(packSize / blockSize);
}
