import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

/**
 * Inode numbers (st_ino) as a function of the path: the same path gets the same number in every
 * generation and every mount, which rez relies on (it skips repeated (st_dev, st_ino) pairs). Each
 * binding picks the numbering its kernel interface allows; neither keeps a record of every path ever
 * resolved. Nodes the kernel refers to (FUSE node ids) are the binding's business, not these numbers.
 */
export interface InodeNumbers {
  ino(path: string): number;
}

export const ROOT_INO = 1;

/** The largest integer a double holds exactly: attributes cross into the addon as doubles. */
const INO_BITS_53 = 2 ** 53;

/**
 * 53 bits of the path's hash, no table: for the native binding, whose st_ino is 64 bits wide. Two
 * paths of a tree of a million share a number with a probability of about 1 in 18,000.
 */
export const hashedInodes: InodeNumbers = {
  ino(path) {
    if (path === '/') return ROOT_INO;
    for (let salt = 0; ; salt++) {
      const digest = sha1(salt === 0 ? path : `${salt}\0${path}`);
      const ino = digest.readUInt32LE(0) + (digest.readUInt32LE(4) % (INO_BITS_53 / 2 ** 32)) * 2 ** 32;
      if (ino > ROOT_INO) return ino;
    }
  },
};

/**
 * 32-bit numbers (fuse-native passes no more), where a tree of 100,000 paths would hold collisions:
 * the rare loser of one is rehashed with a salt, which keeps the numbers of the `maxPaths` paths used
 * last unique. Bounded, because fuse-native never says which paths the kernel has forgotten; a path
 * out of the table that comes back gets its hash again, and a salted one may get another number.
 */
export class BoundedInodeTable implements InodeNumbers {
  private readonly byPath: LRUCache<string, number>;
  private readonly taken = new Set<number>([ROOT_INO]);

  constructor(maxPaths: number) {
    this.byPath = new LRUCache<string, number>({ max: maxPaths, dispose: (ino) => this.taken.delete(ino) });
  }

  get size(): number {
    return this.byPath.size;
  }

  ino(path: string): number {
    if (path === '/') return ROOT_INO;
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

function sha1(text: string): Buffer {
  return createHash('sha1').update(text).digest();
}

export function hash32(text: string): number {
  return sha1(text).readUInt32LE(0);
}
