import { LRUCache } from 'lru-cache';
import type { BlockCache } from './block-cache.js';

/**
 * What an entry costs besides its bytes (the Buffer object, its backing store's header, the LRU's slots): nothing
 * next to a 1 MiB block, but 4 KiB chunks come by the tens of thousands, and the memory plan counts what is held.
 */
const ENTRY_OVERHEAD_BYTES = 256;

/** Verified blocks (and chunks) in process memory, least recently used evicted first, bounded in bytes. */
export class MemoryBlockCache implements BlockCache {
  private readonly lru: LRUCache<string, Buffer>;

  /** `onRelease` hears of every block let go (evicted, deleted or replaced): see released-bytes.ts. */
  constructor(maxBytes: number, onRelease?: (bytes: number) => void) {
    this.lru = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (block) => block.length + ENTRY_OVERHEAD_BYTES,
      ...(onRelease ? { dispose: (block: Buffer) => onRelease(block.length) } : {}),
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
