import { LRUCache } from 'lru-cache';
import type { BlockCache } from './block-cache.js';

/** Verified blocks in process memory, least recently used evicted first, bounded in bytes. */
export class MemoryBlockCache implements BlockCache {
  private readonly lru: LRUCache<string, Buffer>;

  constructor(maxBytes: number) {
    this.lru = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (block) => Math.max(1, block.length),
    });
  }

  async get(sha256: string): Promise<Buffer | undefined> {
    return this.lru.get(sha256);
  }

  async put(sha256: string, data: Buffer): Promise<void> {
    this.lru.set(sha256, data);
  }

  async delete(sha256: string): Promise<void> {
    this.lru.delete(sha256);
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }
}
