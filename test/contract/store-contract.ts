import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectNotFoundError, type ObjectStore } from '../../src/store/index.js';

export interface StoreUnderTest {
  store: ObjectStore;
  /** Whether the backend honours conditional PUT (s3rver ignores If-Match / If-None-Match). */
  conditionalPut: boolean;
  cleanup(): Promise<void>;
}

/** Compare big buffers by hash: a failing toEqual on megabytes makes the diff, not the test, the problem. */
const digest = (b: Buffer) => `${b.length}:${createHash('sha256').update(b).digest('hex')}`;

async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let o = 0; o < data.length; o += size) yield data.subarray(o, o + size);
}

/** The behaviour every ObjectStore must have, run against each implementation. */
export function storeContract(name: string, open: () => Promise<StoreUnderTest>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let subject: StoreUnderTest;
    let store: ObjectStore;
    beforeAll(async () => {
      subject = await open();
      store = subject.store;
    });
    afterAll(async () => {
      await subject?.store.close();
      await subject?.cleanup();
    });

    it('round-trips an object and reports its size', async () => {
      const body = randomBytes(1000);
      await store.put('a/b/one', body);
      expect(await store.get('a/b/one')).toEqual(body);
      expect((await store.head('a/b/one'))?.size).toBe(1000);
    });

    it('reports missing objects as absent', async () => {
      expect(await store.head('missing/x')).toBeUndefined();
      await expect(store.get('missing/x')).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(store.getRange('missing/x', 0, 10)).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    it('serves exact byte ranges, including one byte at 0 and the tail', async () => {
      const body = randomBytes(5000);
      await store.put('ranges', body);
      for (const [start, end] of [[0, 1], [0, 5000], [1, 2], [100, 4097], [4999, 5000], [4000, 5000]] as const) {
        expect(await store.getRange('ranges', start, end), `${start}-${end}`).toEqual(body.subarray(start, end));
      }
      expect((await store.getRange('ranges', 10, 10)).length).toBe(0);
    });

    it('streams a multi-part object in', async () => {
      const body = randomBytes(20 * 1024 * 1024 + 123);
      await store.putStream('big', chunksOf(body, 1024 * 1024));
      expect((await store.head('big'))?.size).toBe(body.length);
      expect(await store.getRange('big', 9 * 1024 * 1024 - 5, 9 * 1024 * 1024 + 5)).toEqual(body.subarray(9 * 1024 * 1024 - 5, 9 * 1024 * 1024 + 5));
      expect(digest(await store.get('big'))).toBe(digest(body));
    });

    it('streams an empty and a small object in', async () => {
      await store.putStream('empty', chunksOf(Buffer.alloc(0), 1));
      expect(await store.get('empty')).toEqual(Buffer.alloc(0));
      await store.putStream('small', chunksOf(Buffer.from('hello'), 2));
      expect((await store.get('small')).toString()).toBe('hello');
    });

    it('writes nothing when the stream source fails', async () => {
      async function* failing(): AsyncGenerator<Buffer> {
        yield randomBytes(9 * 1024 * 1024);
        yield randomBytes(9 * 1024 * 1024);
        throw new Error('source changed');
      }
      await expect(store.putStream('never', failing())).rejects.toThrow(/source changed/);
      expect(await store.head('never')).toBeUndefined();
      async function* failingSmall(): AsyncGenerator<Buffer> {
        yield Buffer.from('x');
        throw new Error('source changed');
      }
      await expect(store.putStream('never-small', failingSmall())).rejects.toThrow(/source changed/);
      expect(await store.head('never-small')).toBeUndefined();
    });

    it('changes the etag when the bytes change', async () => {
      await store.put('tagged', Buffer.from('one'));
      const first = (await store.head('tagged'))!.etag;
      await store.put('tagged', Buffer.from('two'));
      expect((await store.head('tagged'))!.etag).not.toBe(first);
    });

    it('compare-and-swaps', async () => {
      expect(await store.putIfMatch('cas', Buffer.from('v1'), null)).toBe(true);
      const v1 = (await store.head('cas'))!.etag;
      expect(await store.putIfMatch('cas', Buffer.from('v2'), v1)).toBe(true);
      expect((await store.get('cas')).toString()).toBe('v2');
      if (!subject.conditionalPut) return; // the backend cannot refuse; the rest needs a real S3 or file store
      expect(await store.putIfMatch('cas', Buffer.from('v3'), v1)).toBe(false);
      expect(await store.putIfMatch('cas', Buffer.from('v3'), null)).toBe(false);
      expect((await store.get('cas')).toString()).toBe('v2');
    });

    it('lists every key under a prefix', async () => {
      await store.put('list/x/1', Buffer.from('1'));
      await store.put('list/x/2', Buffer.from('2'));
      await store.put('list/y/deep/3', Buffer.from('3'));
      await store.put('listing-not', Buffer.from('4'));
      const keys: string[] = [];
      for await (const key of store.list('list/')) keys.push(key);
      expect(keys.sort()).toEqual(['list/x/1', 'list/x/2', 'list/y/deep/3']);
    });
  });
}
