/**
 * Packs: a set of source files laid out back to back (the files of a directory adjacent, so one block serves
 * many small neighbours; big files block-aligned, see packLayout), hashed per file, per block, per 4 KiB chunk (a
 * pack holding a big file, format 1.2) and whole in one pass, then streamed to the store again under the whole
 * hash, checked against it on the way; the upload pass makes the pack's `chunks/` object from the same bytes.
 *
 * Invariants: bytes are read through pooled, reused buffers (no allocation per chunk: publishing used to spend
 * 41% of its CPU collecting garbage), so a consumer of a pack stream must be done with a chunk when it
 * asks for the next (ObjectStore.putStream promises that). A file whose size or bytes change between listing,
 * hashing and streaming fails the pack with a PublishInputError naming it. Imports the catalog's schema types.
 */
import { createHash, type Hash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { ALIGN_MIN_BLOCKS, ChunkHasher, ChunkLayout, DEFAULT_CHUNK_SIZE, type PackRecord } from '../catalog/index.js';
import { PublishInputError } from './errors.js';

const READ_CHUNK = 1024 * 1024;
/** Read buffers not in use, kept for the next pass (a few: uploads run a handful of packs at once). */
const idleBuffers: Buffer[] = [];
const IDLE_BUFFERS_KEPT = 8;

/** Runs `use` with a read buffer that no one else touches meanwhile, and keeps it for the next caller. */
async function* withBuffer<T>(use: (buffer: Buffer) => AsyncGenerator<T>): AsyncGenerator<T> {
  const buffer = idleBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_CHUNK);
  try {
    yield* use(buffer);
  } finally {
    if (idleBuffers.length < IDLE_BUFFERS_KEPT) idleBuffers.push(buffer);
  }
}
/** What a pack needs of a source file: where to read it and how many bytes it has. */
export interface PackInput {
  path: string;
  size: number;
}

/** Where each file starts in a pack of `blockSize` blocks, and the pack's size: back to back, big files aligned. */
export function packLayout(sizes: readonly number[], blockSize: number): { offsets: number[]; packSize: number } {
  const offsets: number[] = [];
  let end = 0;
  for (const size of sizes) {
    const start = size >= ALIGN_MIN_BLOCKS * blockSize ? Math.ceil(end / blockSize) * blockSize : end;
    offsets.push(start);
    end = start + size;
  }
  return { offsets, packSize: end };
}

export interface HashedPack {
  record: PackRecord;
  /** Per input, in order: where it starts in the pack and the sha256 of its bytes. */
  files: { offset: number; sha256: string }[];
  /** The bytes of the inputs `keep` asked for (package definitions, which shards carry inline), by input index. */
  kept: Map<number, Buffer>;
}

/**
 * Packs holding a big file get chunk hashes: the files whose random reads would fetch whole blocks. Not with
 * blocks no bigger than a chunk (or not made of whole chunks): those are read whole anyway.
 */
function chunkLayoutOf(sizes: readonly number[], packSize: number, blockSize: number): ChunkLayout | undefined {
  const chunksFit = blockSize > DEFAULT_CHUNK_SIZE && blockSize % DEFAULT_CHUNK_SIZE === 0;
  const big = sizes.some((size) => size >= ALIGN_MIN_BLOCKS * blockSize);
  return chunksFit && big ? new ChunkLayout(packSize, blockSize, DEFAULT_CHUNK_SIZE) : undefined;
}

/** Reads `inputs` once, in order, and hashes them as one pack (its chunks too, when it holds a big file). */
export async function hashPack(
  inputs: readonly PackInput[],
  blockSize: number,
  keep: (index: number) => boolean,
  onBytes?: (n: number) => void,
): Promise<HashedPack> {
  const { offsets, packSize } = packLayout(inputs.map((f) => f.size), blockSize);
  const layout = chunkLayoutOf(inputs.map((f) => f.size), packSize, blockSize);
  const chunks = layout && new ChunkHasher(layout);
  const blocks = new BlockHasher(blockSize);
  const whole = createHash('sha256');
  const files: HashedPack['files'] = [];
  const kept = new Map<number, Buffer>();
  let end = 0;
  for (const [i, input] of inputs.entries()) {
    const padding = zeros(offsets[i]! - end);
    whole.update(padding);
    blocks.update(padding);
    chunks?.update(padding);
    const fileHash = createHash('sha256');
    const parts: Buffer[] = [];
    for await (const chunk of withBuffer((buffer) => readExactly(input, buffer))) {
      fileHash.update(chunk);
      whole.update(chunk);
      blocks.update(chunk);
      chunks?.update(chunk);
      if (keep(i)) parts.push(Buffer.from(chunk)); // a copy: the buffer is reused
      onBytes?.(chunk.length);
    }
    files.push({ offset: offsets[i]!, sha256: fileHash.digest('hex') });
    if (keep(i)) kept.set(i, Buffer.concat(parts));
    end = offsets[i]! + input.size;
  }
  const record: PackRecord = { pack: whole.digest('hex'), packSize, blocks: blocks.finish() };
  if (layout && chunks) record.chunks = { chunkSize: layout.chunkSize, ...chunks.finish() };
  return { record, files, kept };
}

/** A file's sha256, read through one reused buffer. */
export async function fileSha256(input: PackInput): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of withBuffer((buffer) => readExactly(input, buffer))) hash.update(chunk);
  return hash.digest('hex');
}

/** A file at its place in a pack. */
export interface PlacedInput extends PackInput {
  offset: number;
}

/** Where packLayout puts each input. */
export function placeInputs(inputs: readonly PackInput[], blockSize: number): { placed: PlacedInput[]; packSize: number } {
  const { offsets, packSize } = packLayout(inputs.map((f) => f.size), blockSize);
  return { placed: inputs.map((input, i) => ({ ...input, offset: offsets[i]! })), packSize };
}

/**
 * A pack's bytes, read from the sources at their places (zeros between them, up to `packSize`), for upload: the
 * stream fails (so the store commits nothing) if they do not hash to `expected`. Chunks are views of a reused
 * buffer. `chunks` sees every byte too.
 */
export async function* packStream(
  placed: readonly PlacedInput[],
  packSize: number,
  expected: string,
  onBytes?: (n: number) => void,
  chunks?: ChunkHasher,
): AsyncGenerator<Buffer> {
  const whole = createHash('sha256');
  const emit = (chunk: Buffer) => {
    whole.update(chunk);
    chunks?.update(chunk);
    onBytes?.(chunk.length);
    return chunk;
  };
  let end = 0;
  for (const input of [...placed].sort((a, b) => a.offset - b.offset)) {
    for (let gap = input.offset - end; gap > 0; gap -= READ_CHUNK) yield emit(zeros(Math.min(gap, READ_CHUNK)));
    for await (const chunk of withBuffer((buffer) => readExactly(input, buffer))) yield emit(chunk);
    end = input.offset + input.size;
  }
  for (let gap = packSize - end; gap > 0; gap -= READ_CHUNK) yield emit(zeros(Math.min(gap, READ_CHUNK)));
  if (whole.digest('hex') !== expected) throw filesChanged(placed);
}

/**
 * One pack on its way to the store: its bytes, and when its record has chunk hashes its `chunks/` object, made from
 * the upload pass's bytes (the object is 1/128 of the pack: kept only from that pass to its own upload), or, when
 * the pack was already in the store, by reading the sources once more. Either is refused unless it hashes to what
 * the record says.
 */
export class PackUpload {
  private made: Buffer | undefined;

  constructor(
    private readonly placed: readonly PlacedInput[],
    private readonly record: PackRecord,
    private readonly blockSize: number,
  ) {}

  async *stream(onBytes?: (n: number) => void): AsyncGenerator<Buffer> {
    const hasher = this.hasher();
    yield* packStream(this.placed, this.record.packSize, this.record.pack, onBytes, hasher);
    if (hasher) this.made = this.checked(hasher);
  }

  async chunkObject(): Promise<Buffer> {
    const made = this.made;
    this.made = undefined;
    if (made) return made;
    const hasher = this.hasher();
    if (!hasher) throw new Error(`pack ${this.record.pack} has no chunk hashes`);
    for await (const bytes of packStream(this.placed, this.record.packSize, this.record.pack, undefined, hasher)) void bytes;
    return this.checked(hasher);
  }

  private hasher(): ChunkHasher | undefined {
    const { chunks, packSize } = this.record;
    return chunks && new ChunkHasher(new ChunkLayout(packSize, this.blockSize, chunks.chunkSize), true);
  }

  private checked(hasher: ChunkHasher): Buffer {
    const { object, index } = hasher.finish();
    if (object !== this.record.chunks!.object || index !== this.record.chunks!.index) throw filesChanged(this.placed);
    return hasher.bytes();
  }
}

function filesChanged(placed: readonly PackInput[]): PublishInputError {
  return new PublishInputError(placed[0]?.path ?? '(empty package)', 'package files changed while publishing; retry when they are stable');
}

let zeroBlock = Buffer.alloc(0);
/** `n` zero bytes, from one shared buffer that nobody writes to. */
function zeros(n: number): Buffer {
  if (zeroBlock.length < n) zeroBlock = Buffer.alloc(Math.max(n, READ_CHUNK));
  return zeroBlock.subarray(0, n);
}

/** A file's bytes as views of `buffer`, refusing a file that cannot be read or whose size changed since it was listed. */
async function* readExactly(input: PackInput, buffer: Buffer): AsyncGenerator<Buffer> {
  let handle;
  try {
    handle = await open(input.path, 'r');
  } catch (err) {
    throw cannotRead(input.path, err);
  }
  try {
    let seen = 0;
    for (;;) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(buffer, 0, buffer.length, seen));
      } catch (err) {
        throw cannotRead(input.path, err);
      }
      if (bytesRead === 0) break;
      seen += bytesRead;
      if (seen > input.size) break;
      yield buffer.subarray(0, bytesRead);
    }
    if (seen !== input.size) throw new PublishInputError(input.path, 'file changed size while publishing; retry when it is stable');
  } finally {
    await handle.close();
  }
}

function cannotRead(path: string, err: unknown): PublishInputError {
  return new PublishInputError(path, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
}

/** sha256 of each fixed-size slice of a byte stream. */
export class BlockHasher {
  private readonly hashes: string[] = [];
  private current: Hash = createHash('sha256');
  private filled = 0;

  constructor(private readonly blockSize: number) {}

  update(chunk: Buffer): void {
    let rest = chunk;
    while (rest.length > 0) {
      const take = Math.min(rest.length, this.blockSize - this.filled);
      this.current.update(rest.subarray(0, take));
      this.filled += take;
      rest = rest.subarray(take);
      if (this.filled === this.blockSize) this.seal();
    }
  }

  finish(): string[] {
    if (this.filled > 0) this.seal();
    return this.hashes;
  }

  private seal(): void {
    this.hashes.push(this.current.digest('hex'));
    this.current = createHash('sha256');
    this.filled = 0;
  }
}
