import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ALIGN_MIN_BLOCKS,
  ChunkHasher,
  ChunkLayout,
  DEFAULT_CHUNK_SIZE,
  FORMAT_VERSION,
  canonicalJson,
  sha256Hex,
  type ChunkHashes,
  type DirNode,
  type FileNode,
  type Manifest,
  type TreeNode,
} from '../catalog/index.js';
import { PublishInputError } from './errors.js';
import { describeSpecial, utf8Names } from './scan.js';

const READ_CHUNK = 1024 * 1024;

/** A file's place in the pack: where to read it from, the zero bytes before it, and the manifest node to fill in. */
interface PackedFile {
  path: string;
  node: FileNode;
  paddingBefore: number;
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

export interface BuiltPackage {
  manifest: Manifest;
  /** Hash of the tree without mtimes: equal for a harmless re-copy, different for any real change. */
  content: string;
  /** The bytes of `package.py` / `package.yaml`, which shards carry inline. */
  definitions: Record<string, Buffer>;
  fileCount: number;
  /** Streams the pack again from the source files, failing if any byte changed since hashing. */
  packStream(onBytes?: (n: number) => void): AsyncIterable<Buffer>;
  /**
   * The bytes of the pack's `chunks/` object (when the manifest has chunk hashes). A packStream that ran to the
   * end made them on the way, and they are handed out once; otherwise (the pack was already in the store) the
   * source files are read again.
   */
  chunkObject?: () => Promise<Buffer>;
}

/**
 * Packs holding a big file get chunk hashes: the files whose random reads would fetch whole blocks. Not with
 * blocks no bigger than a chunk (or not made of whole chunks): those are read whole anyway.
 */
function wantsChunks(sizes: readonly number[], blockSize: number): boolean {
  const chunksFit = blockSize > DEFAULT_CHUNK_SIZE && blockSize % DEFAULT_CHUNK_SIZE === 0;
  return chunksFit && sizes.some((size) => size >= ALIGN_MIN_BLOCKS * blockSize);
}

/**
 * Walks one version directory, lays its files out back to back (the files of a directory adjacent,
 * so one block serves many small neighbours; big files block-aligned, see packLayout), and hashes
 * each file, each block, each chunk (packs with a big file) and the whole pack in one pass.
 */
export async function buildPackage(
  dir: string,
  blockSize: number,
  definitionNames: readonly string[],
  onBytes?: (n: number) => void,
): Promise<BuiltPackage> {
  const files: PackedFile[] = [];
  const root = await readTree(dir, files);
  const { offsets, packSize } = packLayout(files.map((f) => f.node.size), blockSize);
  let end = 0;
  files.forEach((file, i) => {
    file.node.offset = offsets[i]!;
    file.paddingBefore = file.node.offset - end;
    end = file.node.offset + file.node.size;
  });
  const blocks = new BlockHasher(blockSize);
  const chunkLayout = wantsChunks(files.map((f) => f.node.size), blockSize) ? new ChunkLayout(packSize, blockSize, DEFAULT_CHUNK_SIZE) : undefined;
  const chunks = chunkLayout ? new ChunkHasher(chunkLayout) : undefined;
  const whole = createHash('sha256');
  const definitions: Record<string, Buffer> = {};
  for (const file of files) {
    const fileHash = createHash('sha256');
    const definition = definitionNames.find((name) => root.entries[name] === file.node);
    const kept: Buffer[] = [];
    const padding = Buffer.alloc(file.paddingBefore);
    whole.update(padding);
    blocks.update(padding);
    chunks?.update(padding);
    for await (const chunk of readExactly(file)) {
      if (definition) kept.push(chunk);
      fileHash.update(chunk);
      whole.update(chunk);
      blocks.update(chunk);
      chunks?.update(chunk);
      onBytes?.(chunk.length);
    }
    file.node.sha256 = fileHash.digest('hex');
    if (definition) definitions[definition] = Buffer.concat(kept);
  }
  const packHash = whole.digest('hex');
  const manifest: Manifest = { format: FORMAT_VERSION, blockSize, pack: packHash, packSize, blocks: blocks.finish(), root };
  const built = { manifest, content: sha256Hex(canonicalJson(withoutTimes(root))), definitions, fileCount: files.length };
  if (!chunkLayout || !chunks) return { ...built, packStream: (onStreamed) => verifiedPack(files, packHash, undefined, onStreamed) };
  manifest.chunks = { chunkSize: chunkLayout.chunkSize, ...chunks.finish() };
  const made = new ChunkObjects(files, packHash, chunkLayout, manifest.chunks);
  return { ...built, packStream: (onStreamed) => made.packStream(onStreamed), chunkObject: () => made.take() };
}

/**
 * A chunked pack's upload pass: it rebuilds the chunk object from the bytes it streams (the lists are 1/128
 * of the pack: kept only from this pass to the object's upload, never for every package of a publish at once).
 */
class ChunkObjects {
  private made: Buffer | undefined;

  constructor(
    private readonly files: PackedFile[],
    private readonly packHash: string,
    private readonly layout: ChunkLayout,
    private readonly expected: ChunkHashes,
  ) {}

  async *packStream(onBytes?: (n: number) => void): AsyncGenerator<Buffer> {
    const hasher = new ChunkHasher(this.layout, true);
    yield* verifiedPack(this.files, this.packHash, hasher, onBytes);
    this.made = this.checked(hasher);
  }

  async take(): Promise<Buffer> {
    const made = this.made;
    this.made = undefined;
    if (made) return made;
    const hasher = new ChunkHasher(this.layout, true);
    for await (const bytes of verifiedPack(this.files, this.packHash, hasher)) void bytes;
    return this.checked(hasher);
  }

  private checked(hasher: ChunkHasher): Buffer {
    const { object, index } = hasher.finish();
    if (object !== this.expected.object || index !== this.expected.index) {
      throw new PublishInputError(this.files[0]?.path ?? '(empty package)', 'package files changed while publishing; retry when they are stable');
    }
    return hasher.bytes();
  }
}

async function readTree(dir: string, files: PackedFile[]): Promise<DirNode> {
  const info = await lstat(dir);
  const node: DirNode = { type: 'dir', mode: info.mode & 0o7777, mtimeMs: Math.floor(info.mtimeMs), entries: {} };
  const subdirs: string[] = [];
  for (const name of await utf8Names(dir)) {
    const path = join(dir, name);
    const entry = await lstat(path);
    if (entry.isDirectory()) {
      subdirs.push(name);
    } else if (entry.isFile()) {
      const file: FileNode = { type: 'file', mode: entry.mode & 0o7777, mtimeMs: Math.floor(entry.mtimeMs), size: entry.size, offset: 0, sha256: '' };
      node.entries[name] = file;
      files.push({ path, node: file, paddingBefore: 0 });
    } else if (entry.isSymbolicLink()) {
      node.entries[name] = { type: 'symlink', mtimeMs: Math.floor(entry.mtimeMs), target: await readlink(path) };
    } else {
      throw new PublishInputError(path, `${describeSpecial(entry)} cannot be published; remove it from the package`);
    }
  }
  for (const name of subdirs) node.entries[name] = await readTree(join(dir, name), files);
  return node;
}

/** A file's bytes, refusing a file that cannot be read or whose size changed since it was listed. */
async function* readExactly(file: PackedFile): AsyncGenerator<Buffer> {
  let seen = 0;
  try {
    for await (const chunk of createReadStream(file.path, { highWaterMark: READ_CHUNK }) as AsyncIterable<Buffer>) {
      seen += chunk.length;
      if (seen > file.node.size) break;
      yield chunk;
    }
  } catch (err) {
    throw new PublishInputError(file.path, `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (seen !== file.node.size) throw new PublishInputError(file.path, 'file changed size while publishing; retry when it is stable');
}

/** The pack's bytes from the source files, checked against its hash at the end; `chunks` sees every byte too. */
async function* verifiedPack(files: PackedFile[], expected: string, chunks?: ChunkHasher, onBytes?: (n: number) => void): AsyncGenerator<Buffer> {
  const whole = createHash('sha256');
  for (const file of files) {
    if (file.paddingBefore > 0) {
      const padding = Buffer.alloc(file.paddingBefore);
      whole.update(padding);
      chunks?.update(padding);
      onBytes?.(padding.length);
      yield padding;
    }
    for await (const chunk of readExactly(file)) {
      whole.update(chunk);
      chunks?.update(chunk);
      onBytes?.(chunk.length);
      yield chunk;
    }
  }
  if (whole.digest('hex') !== expected) {
    throw new PublishInputError(files[0]?.path ?? '(empty package)', 'package files changed while publishing; retry when they are stable');
  }
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

function withoutTimes(node: TreeNode): unknown {
  if (node.type === 'dir') {
    return { type: 'dir', mode: node.mode, entries: Object.fromEntries(Object.entries(node.entries).map(([k, v]) => [k, withoutTimes(v)])) };
  }
  if (node.type === 'file') return { type: 'file', mode: node.mode, size: node.size, sha256: node.sha256 };
  return { type: 'symlink', target: node.target };
}
