import { describe, expect, it } from 'vitest';
import { blockSpan, blocksCovering, coalesce, readableLength, readaheadRuns, sliceOfBlock } from '../../src/cache/block-math.js';
import type { PackRef } from '../../src/cache/block-source.js';
import { profileBlocks, profilePlan } from '../../src/cache/profile-blocks.js';
import { ChunkLayout, keys, type StartupProfile } from '../../src/catalog/index.js';
import { blockCount } from '../../src/catalog/tree.js';

describe('block math', () => {
  it('clamps reads to the end of the file', () => {
    expect(readableLength(10, 0, 4)).toBe(4);
    expect(readableLength(10, 8, 4)).toBe(2);
    expect(readableLength(10, 10, 4)).toBe(0);
    expect(readableLength(10, 50, 4)).toBe(0);
    expect(readableLength(0, 0, 4096)).toBe(0);
    expect(readableLength(10, 2, 0)).toBe(0);
  });

  it('finds the blocks covering a span, including exact boundaries', () => {
    expect(blocksCovering({ start: 0, end: 1 }, 4)).toEqual({ first: 0, last: 0 });
    expect(blocksCovering({ start: 0, end: 4 }, 4)).toEqual({ first: 0, last: 0 });
    expect(blocksCovering({ start: 3, end: 5 }, 4)).toEqual({ first: 0, last: 1 });
    expect(blocksCovering({ start: 4, end: 8 }, 4)).toEqual({ first: 1, last: 1 });
    expect(blocksCovering({ start: 1, end: 13 }, 4)).toEqual({ first: 0, last: 3 });
    expect(blocksCovering({ start: 5, end: 5 }, 4)).toBeUndefined();
  });

  it('gives each block its pack span, the last one short', () => {
    expect(blockSpan(0, 4, 10)).toEqual({ start: 0, end: 4 });
    expect(blockSpan(2, 4, 10)).toEqual({ start: 8, end: 10 });
    expect(blockCount(10, 4)).toBe(3);
    expect(blockCount(8, 4)).toBe(2);
    expect(blockCount(0, 4)).toBe(0);
  });

  it('slices the overlap of a block and a span', () => {
    expect(sliceOfBlock(0, 4, { start: 3, end: 9 })).toEqual({ start: 3, end: 4 });
    expect(sliceOfBlock(1, 4, { start: 3, end: 9 })).toEqual({ start: 0, end: 4 });
    expect(sliceOfBlock(2, 4, { start: 3, end: 9 })).toEqual({ start: 0, end: 1 });
  });

  it('reassembles any span from its block slices', () => {
    const pack = Buffer.from(Array.from({ length: 37 }, (_, i) => i));
    const blockSize = 5;
    for (let start = 0; start < pack.length; start++) {
      for (let end = start + 1; end <= pack.length; end++) {
        const span = { start, end };
        const { first, last } = blocksCovering(span, blockSize)!;
        const pieces = [];
        for (let i = first; i <= last; i++) {
          const b = blockSpan(i, blockSize, pack.length);
          const s = sliceOfBlock(i, blockSize, span);
          pieces.push(pack.subarray(b.start, b.end).subarray(s.start, s.end));
        }
        expect(Buffer.concat(pieces)).toEqual(pack.subarray(start, end));
      }
    }
  });
});

describe('readaheadRuns', () => {
  it('waits until half the window is missing, unless the next block itself is', () => {
    expect(readaheadRuns([13], 6, 8, 8)).toEqual([]);
    expect(readaheadRuns([11, 12, 13], 6, 8, 8)).toEqual([]);
    expect(readaheadRuns([10, 11, 12, 13], 6, 8, 8)).toEqual([[10, 11, 12, 13]]);
    expect(readaheadRuns([6], 6, 8, 8)).toEqual([[6]]);
    expect(readaheadRuns([], 6, 8, 8)).toEqual([]);
  });

  it('groups consecutive blocks into runs no longer than the limit, and breaks at gaps', () => {
    expect(readaheadRuns([0, 1, 2, 3, 4], 0, 16, 2)).toEqual([[0, 1], [2, 3], [4]]);
    expect(readaheadRuns([3, 4, 6, 7, 9], 3, 8, 8)).toEqual([[3, 4], [6, 7], [9]]);
  });
});

describe('coalesce', () => {
  const span = (i: number) => ({ start: i * 10, end: i * 10 + 4 }); // items 4 bytes long, 6 bytes apart

  it('joins items whose gap is at most the limit, while the run stays within its byte bound', () => {
    expect(coalesce([0, 1, 2, 5, 6], span, 6, 100)).toEqual([[0, 1, 2], [5, 6]]);
    expect(coalesce([0, 1, 2, 5, 6], span, 5, 100)).toEqual([[0], [1], [2], [5], [6]]);
    expect(coalesce([0, 1, 2, 3], span, 6, 24)).toEqual([[0, 1, 2], [3]]); // [0, 24) fits, [0, 34) does not
    expect(coalesce([], span, 6, 100)).toEqual([]);
  });
});

describe('profilePlan', () => {
  const block = 16;
  const pack = (withChunks: boolean): PackRef => ({
    key: keys.pack('a'.repeat(64)),
    size: 4 * block + 5,
    blockSize: block,
    blocks: ['0', '1', '2', '3', '4'].map((c) => c.repeat(64)),
    ...(withChunks ? { chunks: { key: 'chunks/x', index: 'b'.repeat(64), layout: new ChunkLayout(4 * block + 5, block, 4) } } : {}),
  });
  const profile = (ranges: [number, number][]): StartupProfile => ({ format: '1.2.0', family: 'f', version: '1', manifest: 'c'.repeat(64), windowMs: 1, packs: [{ pack: 'a'.repeat(64), ranges }] });

  it('preloads a block whole where the profile covers half of it or more, and only the chunks it touches elsewhere', () => {
    // Block 0: 8 of 16 bytes (whole). Block 1: bytes 17-18 (chunk 4). Block 2: nothing. Blocks 3 and 4: one range
    // across both, 3 bytes of block 3 (chunk 15) and all 5 of the short block 4 (whole).
    const ranges: [number, number][] = [[0, 8], [17, 19], [61, 69]];
    expect(profilePlan(profile(ranges), pack(true))).toEqual({ blocks: [0, 4], chunks: [4, 15] });
    expect(profilePlan(profile(ranges), pack(false))).toEqual({ blocks: [0, 1, 3, 4], chunks: [] });
    expect(profileBlocks(profile(ranges), pack(true))).toEqual([0, 1, 3, 4]);
  });
});
