/**
 * Reading a mounted file at chosen places and checking each read against the source's bytes. Async only: the
 * test process often serves the S3 proxy the mount depends on, so it must never block on the mount.
 */
import type { FileHandle } from 'node:fs/promises';
import { expect } from 'vitest';

/** Reads `length` bytes at `offset`, expects exactly the source's bytes there (fewer at the end), returns how many. */
export async function expectBytesAt(handle: FileHandle, source: Buffer, offset: number, length: number): Promise<number> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, offset);
  const expected = source.subarray(offset, offset + length);
  expect(bytesRead, `${offset}+${length}`).toBe(expected.length);
  expect(buffer.subarray(0, bytesRead).equals(expected), `${offset}+${length}`).toBe(true);
  return bytesRead;
}
