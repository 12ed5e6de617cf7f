/**
 * Sub-block hashes of one pack (format 1.2): the layout of a `chunks/<sha256>` object, shared by publish (which
 * writes it), the read path (which range-reads pieces of it) and verify. Pure arithmetic and hashing, no I/O; it
 * imports only node:crypto and the schema.
 *
 * A pack's chunks are its `chunkSize` slices (the last one short); chunkSize divides blockSize, so a chunk never
 * straddles two blocks. The object holds, back to back:
 *   1. every chunk's sha256, in pack order (32 raw bytes each): block b's "chunk list" is one contiguous run of it;
 *   2. the index: for each block, the sha256 of its chunk list (32 raw bytes each).
 * The manifest names the object (sha256 of all of it) and its index (sha256 of section 2), so a reader can fetch
 * the index, then one block's list, then the chunks it needs, each piece verified by the one before, and never
 * the whole object. The index comes last so that a publisher can hash the object while it streams (lists first,
 * the index once every block is done) without holding the lists in memory.
 */
import { createHash, type Hash } from 'node:crypto';
import type { ChunkHashes } from './schema.js';

/** Bytes of one sha256 in the object. */
export const HASH_BYTES = 32;

/** Offsets into a pack's chunk object, from the pack's size, block size and chunk size. */
export class ChunkLayout {
  readonly blocks: number;
  readonly chunks: number;
  readonly chunksPerBlock: number;

  constructor(
    readonly packSize: number,
    readonly blockSize: number,
    readonly chunkSize: number,
  ) {
    this.blocks = Math.ceil(packSize / blockSize);
    this.chunks = Math.ceil(packSize / chunkSize);
    this.chunksPerBlock = blockSize / chunkSize;
  }

  /** Bytes of the whole object. */
  get objectSize(): number {
    return (this.chunks + this.blocks) * HASH_BYTES;
  }

  /** Where the index (one hash per block) lies in the object. */
  indexSpan(): { start: number; end: number } {
    const start = this.chunks * HASH_BYTES;
    return { start, end: start + this.blocks * HASH_BYTES };
  }

  /** Where block `block`'s chunk list lies in the object. */
  listSpan(block: number): { start: number; end: number } {
    const first = block * this.chunksPerBlock;
    return { start: first * HASH_BYTES, end: Math.min(first + this.chunksPerBlock, this.chunks) * HASH_BYTES };
  }

  /** The pack chunk that holds pack byte `offset`. */
  chunkAt(offset: number): number {
    return Math.floor(offset / this.chunkSize);
  }

  /** The pack bytes chunk `chunk` holds. */
  chunkSpan(chunk: number): { start: number; end: number } {
    const start = chunk * this.chunkSize;
    return { start, end: Math.min(start + this.chunkSize, this.packSize) };
  }
}

/**
 * Why a manifest's chunk record cannot be used (a chunk size that does not divide the block size, say), or
 * undefined when it can. A reader that gets a reason reads whole blocks, as for a pack with no chunk hashes.
 */
export function unusableChunks(chunks: ChunkHashes, blockSize: number): string | undefined {
  const { chunkSize } = chunks;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0 || blockSize % chunkSize !== 0) {
    return `chunk size ${String(chunkSize)} does not divide the block size ${blockSize}`;
  }
  if (!/^[0-9a-f]{64}$/.test(chunks.object) || !/^[0-9a-f]{64}$/.test(chunks.index)) return 'its object or index is not a sha256';
  return undefined;
}

/**
 * Hashes a pack's chunks as its bytes stream past and yields the chunk object's hashes, and optionally its
 * bytes: the block hashing pass of publish feeds it, so chunk hashes cost no read of their own.
 */
export class ChunkHasher {
  private readonly object: Hash = createHash('sha256');
  private readonly index: Buffer;
  /** The chunk hashes of the block being hashed: hashed and copied once per block, not once per chunk. */
  private readonly list: Buffer;
  private chunk: Hash = createHash('sha256');
  private chunkFilled = 0;
  private blockFilled = 0;
  private chunksInBlock = 0;
  private chunksDone = 0;
  private blocksDone = 0;
  /** The object's bytes, when kept: its size is known from the layout, so one buffer, filled in place. */
  private readonly kept: Buffer | undefined;

  /** With `keepBytes`, the object's bytes are kept for `bytes()`; without, only its hashes (32 bytes per block). */
  constructor(
    private readonly layout: ChunkLayout,
    keepBytes = false,
  ) {
    this.index = Buffer.alloc(layout.blocks * HASH_BYTES);
    this.list = Buffer.alloc(layout.chunksPerBlock * HASH_BYTES);
    this.kept = keepBytes ? Buffer.alloc(layout.objectSize) : undefined;
  }

  update(data: Buffer): void {
    let rest = data;
    while (rest.length > 0) {
      const take = Math.min(rest.length, this.layout.chunkSize - this.chunkFilled);
      this.chunk.update(rest.subarray(0, take));
      this.chunkFilled += take;
      this.blockFilled += take;
      rest = rest.subarray(take);
      if (this.chunkFilled === this.layout.chunkSize) this.sealChunk();
      if (this.blockFilled === this.layout.blockSize) this.sealBlock();
    }
  }

  /** Seals the last, short chunk and block, and returns what the manifest records besides the chunk size. */
  finish(): { object: string; index: string } {
    if (this.chunkFilled > 0) this.sealChunk();
    if (this.blockFilled > 0) this.sealBlock();
    if (this.chunksDone !== this.layout.chunks || this.blocksDone !== this.layout.blocks) {
      throw new Error(`chunk hasher saw ${this.chunksDone} chunks in ${this.blocksDone} blocks; the pack has ${this.layout.chunks} in ${this.layout.blocks}`);
    }
    this.object.update(this.index);
    if (this.kept) this.index.copy(this.kept, this.layout.indexSpan().start);
    return { object: this.object.digest('hex'), index: createHash('sha256').update(this.index).digest('hex') };
  }

  /** The object's bytes, after finish(); only when constructed with `keepBytes`. */
  bytes(): Buffer {
    if (!this.kept) throw new Error('ChunkHasher was not asked to keep the bytes');
    return this.kept;
  }

  private sealChunk(): void {
    this.chunk.digest().copy(this.list, this.chunksInBlock * HASH_BYTES);
    this.chunksInBlock++;
    this.chunk = createHash('sha256');
    this.chunkFilled = 0;
  }

  private sealBlock(): void {
    const list = this.list.subarray(0, this.chunksInBlock * HASH_BYTES);
    this.object.update(list);
    createHash('sha256').update(list).digest().copy(this.index, this.blocksDone * HASH_BYTES);
    if (this.kept) list.copy(this.kept, this.chunksDone * HASH_BYTES);
    this.chunksDone += this.chunksInBlock;
    this.chunksInBlock = 0;
    this.blocksDone++;
    this.blockFilled = 0;
  }
}
