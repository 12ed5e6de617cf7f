import { createHash } from 'node:crypto';

export const ROOT_INO = 1;

/**
 * Inode numbers as a stable function of the path: the same path gets the same number in every
 * generation and every mount, which rez relies on (it skips repeated (st_dev, st_ino) pairs).
 * fuse-native passes inode numbers as 32 bits, so collisions are possible in a big tree; the
 * rare loser of a collision is rehashed with a salt, which keeps numbers unique within a mount.
 */
export class InodeTable {
  private readonly byPath = new Map<string, number>([['/', ROOT_INO]]);
  private readonly taken = new Set<number>([ROOT_INO]);

  ino(path: string): number {
    const known = this.byPath.get(path);
    if (known !== undefined) return known;
    for (let salt = 0; ; salt++) {
      const candidate = hash32(salt === 0 ? path : `${salt}\0${path}`);
      if (candidate > ROOT_INO && !this.taken.has(candidate)) {
        this.byPath.set(path, candidate);
        this.taken.add(candidate);
        return candidate;
      }
    }
  }
}

export function hash32(text: string): number {
  return createHash('sha1').update(text).digest().readUInt32LE(0);
}
