import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkHasher, ChunkLayout, HASH_BYTES, unusableChunks } from '../../src/catalog/chunk-hashes.js';
import { ALIGN_MIN_BLOCKS, DEFAULT_CHUNK_SIZE } from '../../src/catalog/schema.js';
import { hashPack, PackUpload, placeInputs } from '../../src/publish/pack.js';
import { readSourceTree } from '../../src/publish/source-tree.js';
import { tempDir, writeTree } from '../support/small-repo.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest();

/** The chunk object as its definition says, computed the plain way, to check the streaming hasher against. */
function expectedObject(pack: Buffer, blockSize: number, chunkSize: number): Buffer {
  const hashes: Buffer[] = [];
  for (let at = 0; at < pack.length; at += chunkSize) hashes.push(sha(pack.subarray(at, at + chunkSize)));
  const perBlock = blockSize / chunkSize;
  const index: Buffer[] = [];
  for (let first = 0; first < hashes.length; first += perBlock) index.push(sha(Buffer.concat(hashes.slice(first, first + perBlock))));
  return Buffer.concat([...hashes, ...index]);
}

describe('chunk object', () => {
  it('is every chunk hash in pack order, then one hash per block of its chunk list, whatever the pieces fed', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5 * 64 + 40 }),
        fc.constantFrom(16, 64),
        fc.array(fc.integer({ min: 1, max: 100 }), { minLength: 1, maxLength: 8 }),
        (size, blockSize, cuts) => {
          const chunkSize = 16;
          const pack = randomBytes(size);
          const layout = new ChunkLayout(size, blockSize, chunkSize);
          const hasher = new ChunkHasher(layout, true);
          for (let at = 0, i = 0; at < size; i++) {
            const n = cuts[i % cuts.length]!;
            hasher.update(pack.subarray(at, at + n));
            at += n;
          }
          const { object, index } = hasher.finish();
          const expected = expectedObject(pack, blockSize, chunkSize);
          expect(hasher.bytes()).toEqual(expected);
          expect(layout.objectSize).toBe(expected.length);
          expect(object).toBe(sha(expected).toString('hex'));
          const indexSpan = layout.indexSpan();
          expect(index).toBe(sha(expected.subarray(indexSpan.start, indexSpan.end)).toString('hex'));
          // Each block's list lies where the layout says, and hashes to its index entry.
          for (let block = 0; block < layout.blocks; block++) {
            const list = layout.listSpan(block);
            const entry = expected.subarray(indexSpan.start + block * HASH_BYTES, indexSpan.start + (block + 1) * HASH_BYTES);
            expect(sha(expected.subarray(list.start, list.end))).toEqual(entry);
          }
        },
      ),
    );
  });

  it('locates chunks: the last one is short and none straddles a block', () => {
    const layout = new ChunkLayout(10 * 64 + 5, 64, 16);
    expect([layout.blocks, layout.chunks, layout.chunksPerBlock]).toEqual([11, 41, 4]);
    expect(layout.chunkAt(63)).toBe(3);
    expect(layout.chunkAt(64)).toBe(4);
    expect(layout.chunkSpan(40)).toEqual({ start: 640, end: 645 });
    expect(layout.listSpan(10)).toEqual({ start: 40 * HASH_BYTES, end: 41 * HASH_BYTES });
    expect(layout.indexSpan()).toEqual({ start: 41 * HASH_BYTES, end: 52 * HASH_BYTES });
  });

  it('refuses a chunk record a reader cannot use', () => {
    const good = { chunkSize: 4096, object: 'a'.repeat(64), index: 'b'.repeat(64) };
    expect(unusableChunks(good, 1 << 20)).toBeUndefined();
    expect(unusableChunks({ ...good, chunkSize: 3000 }, 1 << 20)).toMatch(/does not divide/);
    expect(unusableChunks({ ...good, chunkSize: 0 }, 1 << 20)).toMatch(/does not divide/);
    expect(unusableChunks({ ...good, object: 'nope' }, 1 << 20)).toMatch(/not a sha256/);
  });
});

describe('publish: chunk hashes', () => {
  const BLOCK = 16 * 1024;
  let work: Awaited<ReturnType<typeof tempDir>>;
  const bigFile = randomBytes(ALIGN_MIN_BLOCKS * BLOCK + 5000);

  beforeAll(async () => {
    work = await tempDir('chunk-hashes');
    await writeTree(join(work.path, 'big'), { 'package.py': 'name = "big"\n', 'lib/libbig.so': bigFile, 'lib/small.txt': 'small\n' });
    await writeTree(join(work.path, 'small'), { 'package.py': 'name = "small"\n', 'lib/almost.bin': randomBytes(ALIGN_MIN_BLOCKS * BLOCK - 1) });
  });
  afterAll(async () => work?.remove());

  /** A version directory hashed as one pack, and that pack's upload. */
  async function packOf(dir: string, blockSize: number) {
    const inputs = readSourceTree(join(work.path, dir)).files;
    const { record } = await hashPack(inputs, blockSize, () => false);
    return { record, upload: new PackUpload(placeInputs(inputs, blockSize).placed, record, blockSize) };
  }

  it('go to packs that hold a big file, computed with the block hashes; the upload pass makes the same object', async () => {
    const { record, upload } = await packOf('big', BLOCK);
    const chunks = record.chunks!;
    expect(chunks.chunkSize).toBe(DEFAULT_CHUNK_SIZE);
    const parts: Buffer[] = [];
    for await (const part of upload.stream()) parts.push(Buffer.from(part)); // a copy: the stream reuses its buffer
    const pack = Buffer.concat(parts);
    const object = await upload.chunkObject();
    expect(object).toEqual(expectedObject(pack, BLOCK, DEFAULT_CHUNK_SIZE));
    expect(sha(object).toString('hex')).toBe(chunks.object);
    // Without an upload pass first (the pack was already in the store), the object is made from the files again.
    expect(await upload.chunkObject()).toEqual(object);
  });

  it('are left out of packs of small files only, and of stores of small blocks, which are read in whole blocks', async () => {
    expect((await packOf('small', BLOCK)).record.chunks).toBeUndefined();
    // Blocks no bigger than a chunk are small reads already.
    expect((await packOf('big', DEFAULT_CHUNK_SIZE)).record.chunks).toBeUndefined();
  });
});
