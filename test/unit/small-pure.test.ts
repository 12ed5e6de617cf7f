import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson, checkFormat, decodeDocument, encodeDocument } from '../../src/catalog/codec.js';
import { UsageError, formatBytes, parseDuration, parseSize } from '../../src/cli/units.js';
import { FsError } from '../../src/fs/errors.js';
import { BoundedInodeTable, hashedInodes, ROOT_INO } from '../../src/fs/inodes.js';
import { splitPath } from '../../src/fs/paths.js';
import { ALIGN_MIN_BLOCKS } from '../../src/catalog/schema.js';
import { BlockHasher, packLayout } from '../../src/publish/pack.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('BlockHasher', () => {
  it('hashes fixed-size slices whatever the chunking', () => {
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) % 256));
    const expected = [0, 256, 512, 768].map((o) => sha(data.subarray(o, o + 256)));
    for (const chunk of [1, 3, 255, 256, 257, 1000]) {
      const hasher = new BlockHasher(256);
      for (let o = 0; o < data.length; o += chunk) hasher.update(data.subarray(o, o + chunk));
      expect(hasher.finish()).toEqual(expected);
    }
  });

  it('gives no blocks for no bytes and one for a partial block', () => {
    expect(new BlockHasher(8).finish()).toEqual([]);
    const h = new BlockHasher(8);
    h.update(Buffer.from('abc'));
    expect(h.finish()).toEqual([sha(Buffer.from('abc'))]);
  });
});

describe('packLayout', () => {
  const big = ALIGN_MIN_BLOCKS * 16;

  it('puts small files back to back', () => {
    expect(packLayout([3, 20, 0, 5], 16)).toEqual({ offsets: [0, 3, 23, 23], packSize: 28 });
  });

  it('starts a file of ALIGN_MIN_BLOCKS blocks or more on the next block boundary', () => {
    expect(packLayout([3, big, 5, big - 1, big + 1], 16)).toEqual({
      offsets: [0, 16, 16 + big, 21 + big, 32 + 2 * big],
      packSize: 33 + 3 * big,
    });
  });

  it('adds no padding where a big file already starts on a boundary', () => {
    expect(packLayout([big, big, 16, big], 16)).toEqual({ offsets: [0, big, 2 * big, 2 * big + 16], packSize: 3 * big + 16 });
    expect(packLayout([], 16)).toEqual({ offsets: [], packSize: 0 });
  });
});

describe('documents', () => {
  it('serialize canonically so equal content has one hash', () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: [3, { f: 1, e: 0 }] } }).toString()).toBe('{"a":{"c":[3,{"e":0,"f":1}],"d":2},"b":1}');
    expect(encodeDocument({ x: 1, y: 2 }).hash).toBe(encodeDocument({ y: 2, x: 1 }).hash);
  });

  it('refuse bytes that do not match their hash', () => {
    const doc = encodeDocument({ format: '1.0.0', n: 1 });
    expect(decodeDocument('manifest x', doc.hash, doc.bytes)).toEqual({ format: '1.0.0', n: 1 });
    const tampered = Buffer.from(doc.bytes.toString().replace('1}', '2}'));
    expect(() => decodeDocument('manifest x', doc.hash, tampered)).toThrow(/manifest x failed verification/);
  });

  it('accept the majors this rezfs reads and refuse another', () => {
    expect(() => checkFormat('store', '1.4.2')).not.toThrow();
    expect(() => checkFormat('manifest', '2.0.0')).not.toThrow();
    expect(() => checkFormat('store', '3.0.0')).toThrow(/format 3\.0\.0, this rezfs reads formats 1\.x and 2\.x: install a rezfs/);
    expect(() => checkFormat('store', 'banana')).toThrow(/no valid format/);
  });
});

describe('paths and inodes', () => {
  it('splits kernel paths', () => {
    expect(splitPath('/')).toEqual([]);
    expect(splitPath('/a/b c/é')).toEqual(['a', 'b c', 'é']);
    expect(() => splitPath(`/${'x'.repeat(256)}`)).toThrow(FsError);
  });

  it('numbers inodes as a pure function of the path, 53 bits wide, for the native binding', () => {
    expect(hashedInodes.ino('/')).toBe(ROOT_INO);
    const paths = Array.from({ length: 200_000 }, (_, i) => `/fam${i % 200}/${i}/file`);
    const numbers = paths.map((p) => hashedInodes.ino(p));
    expect(new Set(numbers).size).toBe(paths.length);
    expect(numbers.every((n) => Number.isSafeInteger(n) && n > ROOT_INO)).toBe(true);
    expect(numbers.some((n) => n > 2 ** 32)).toBe(true); // not squeezed into 32 bits
    expect(hashedInodes.ino(paths[5]!)).toBe(numbers[5]);
  });

  it('numbers inodes in 32 bits for fuse-native, unique among the paths used last, in a table that stays bounded', () => {
    const a = new BoundedInodeTable(20_000);
    const b = new BoundedInodeTable(20_000);
    expect(a.ino('/')).toBe(ROOT_INO);
    const paths = Array.from({ length: 20_000 }, (_, i) => `/fam${i % 200}/${i}/file`);
    const numbers = paths.map((p) => a.ino(p));
    expect(new Set(numbers).size).toBe(paths.length);
    expect(numbers.every((n) => n < 2 ** 32)).toBe(true);
    expect(paths.map((p) => b.ino(p))).toEqual(numbers);
    // A long run resolves far more paths than it keeps: the table does not grow past its bound.
    for (let i = 0; i < 300_000; i++) a.ino(`/other${i % 300}/${i}/x`);
    expect(a.size).toBe(20_000);
    expect(a.ino(paths[5]!)).toBe(numbers[5]); // its hash again: unsalted numbers come back the same
  });
});

describe('option values', () => {
  it('parse sizes and durations', () => {
    expect(parseSize('--x', '512M')).toBe(512 * 1024 ** 2);
    expect(parseSize('--x', '20G')).toBe(20 * 1024 ** 3);
    expect(parseSize('--x', '1.5K')).toBe(1536);
    expect(parseSize('--x', '4096')).toBe(4096);
    expect(() => parseSize('--memory-limit', 'lots')).toThrow(UsageError);
    expect(parseDuration('--x', '30s')).toBe(30_000);
    expect(parseDuration('--x', '250ms')).toBe(250);
    expect(parseDuration('--x', '2m')).toBe(120_000);
    expect(parseDuration('--x', '5')).toBe(5_000);
    expect(() => parseDuration('--read-timeout', 'soon')).toThrow(/--read-timeout "soon"/);
    expect(formatBytes(3 * 1024 * 1024)).toBe('3.0 MiB');
  });
});

describe('ranged S3 responses', () => {
  it('takes the requested bytes whatever the server sent', async () => {
    const { requestedPart } = await import('../../src/store/s3-store.js');
    const whole = Buffer.from('0123456789');
    expect(requestedPart(Buffer.from('3456'), 'bytes 3-6/10', 3, 7).toString()).toBe('3456');
    expect(requestedPart(whole, undefined, 0, 1).toString()).toBe('0');
    expect(requestedPart(whole, 'bytes 0-9/10', 4, 6).toString()).toBe('45');
    expect(requestedPart(Buffer.from('23456789'), 'bytes 2-9/10', 4, 12).toString()).toBe('456789');
    expect(() => requestedPart(Buffer.from('56'), 'bytes 5-6/10', 3, 5)).toThrow(/answered range bytes 5-6\/10/);
  });
});
