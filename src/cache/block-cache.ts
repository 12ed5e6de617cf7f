/**
 * A place to keep verified pack blocks, keyed by the block's sha256. Blocks are immutable, so a
 * cache never needs invalidation, only eviction. Implementations store bytes; they do not verify
 * them (BlockSource does, on every way in).
 */
export interface BlockCache {
  get(sha256: string): Promise<Buffer | undefined>;
  put(sha256: string, data: Buffer): Promise<void>;
  delete(sha256: string): Promise<void>;
}
