import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ObjectNotFoundError, ReadOnlyStoreError, StoreError, type ListedObject, type ObjectStore } from '../../src/store/index.js';

export interface StoreUnderTest {
  store: ObjectStore;
  /** Puts the objects the read tests read: the store itself unless it is read-only (then e.g. the file store it serves). */
  writer?: ObjectStore;
  /** Whether the backend honours conditional PUT (s3rver ignores If-Match / If-None-Match). */
  conditionalPut: boolean;
  cleanup(): Promise<void>;
}

/** Compare big buffers by hash: a failing toEqual on megabytes makes the diff, not the test, the problem. */
const digest = (b: Buffer) => `${b.length}:${createHash('sha256').update(b).digest('hex')}`;

async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let o = 0; o < data.length; o += size) yield data.subarray(o, o + size);
}

/** Opens the subject once for the enclosing describe block. */
function subjectOf(open: () => Promise<StoreUnderTest>): { store: ObjectStore; writer: ObjectStore; conditionalPut: boolean } {
  let subject: StoreUnderTest | undefined;
  beforeAll(async () => {
    subject = await open();
  });
  afterAll(async () => {
    await subject?.store.close();
    if (subject?.writer && subject.writer !== subject.store) await subject.writer.close();
    await subject?.cleanup();
  });
  return {
    get store() {
      return subject!.store;
    },
    get writer() {
      return subject!.writer ?? subject!.store;
    },
    get conditionalPut() {
      return subject!.conditionalPut;
    },
  };
}

/** What every store must read back, whoever wrote it. */
function readHalf(s: { store: ObjectStore; writer: ObjectStore }): void {
  it('round-trips an object and reports its size', async () => {
    const body = randomBytes(1000);
    await s.writer.put('a/b/one', body);
    expect(await s.store.get('a/b/one')).toEqual(body);
    expect((await s.store.head('a/b/one'))?.size).toBe(1000);
  });

  it("reads keys whose characters a URL or a request signature encodes: space, +, %, !'()*, ~, non-ASCII", async () => {
    const key = "odd/a b+c%d/x!y'z(1)*~é.txt";
    const body = randomBytes(300);
    await s.writer.put(key, body);
    expect(await s.store.get(key)).toEqual(body);
    expect(await s.store.getRange(key, 10, 20)).toEqual(body.subarray(10, 20));
    expect((await s.store.head(key))?.size).toBe(300);
  });

  it('reports missing objects as absent', async () => {
    expect(await s.store.head('missing/x')).toBeUndefined();
    await expect(s.store.get('missing/x')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await expect(s.store.getRange('missing/x', 0, 10)).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('serves exact byte ranges, including one byte at 0 and the tail', async () => {
    const body = randomBytes(5000);
    await s.writer.put('ranges', body);
    for (const [start, end] of [[0, 1], [0, 5000], [1, 2], [100, 4097], [4999, 5000], [4000, 5000]] as const) {
      expect(await s.store.getRange('ranges', start, end), `${start}-${end}`).toEqual(body.subarray(start, end));
    }
    expect((await s.store.getRange('ranges', 10, 10)).length).toBe(0);
  });

  it('reads a large object whole and in ranges', async () => {
    const body = randomBytes(20 * 1024 * 1024 + 123);
    await s.writer.putStream('big', () => chunksOf(body, 1024 * 1024), { size: body.length, sha256: createHash('sha256').update(body).digest('hex') });
    expect((await s.store.head('big'))?.size).toBe(body.length);
    expect(await s.store.getRange('big', 9 * 1024 * 1024 - 5, 9 * 1024 * 1024 + 5)).toEqual(body.subarray(9 * 1024 * 1024 - 5, 9 * 1024 * 1024 + 5));
    expect(digest(await s.store.get('big'))).toBe(digest(body));
  });

  it('reads an empty and a small object', async () => {
    await s.writer.putStream('empty', () => chunksOf(Buffer.alloc(0), 1));
    expect(await s.store.get('empty')).toEqual(Buffer.alloc(0));
    await s.writer.putStream('small', () => chunksOf(Buffer.from('hello'), 2));
    expect((await s.store.get('small')).toString()).toBe('hello');
  });

  it('changes the etag when the bytes change', async () => {
    await s.writer.put('tagged', Buffer.from('one'));
    const first = (await s.store.head('tagged'))!.etag;
    await s.writer.put('tagged', Buffer.from('two'));
    expect((await s.store.head('tagged'))!.etag).not.toBe(first);
  });
}

/** What a writable store must do besides. */
function writeHalf(s: { store: ObjectStore; conditionalPut: boolean }): void {
  it('writes nothing when the stream source fails', async () => {
    const { store } = s;
    async function* failing(): AsyncGenerator<Buffer> {
      yield randomBytes(9 * 1024 * 1024);
      yield randomBytes(9 * 1024 * 1024);
      throw new Error('source changed');
    }
    // Announced as longer than it gets: a store that streams with a length up front must still write nothing.
    await expect(store.putStream('never', failing, { size: 27 * 1024 * 1024 })).rejects.toThrow(/source changed/);
    expect(await store.head('never')).toBeUndefined();
    async function* failingSmall(): AsyncGenerator<Buffer> {
      yield Buffer.from('x');
      throw new Error('source changed');
    }
    await expect(store.putStream('never-small', failingSmall)).rejects.toThrow(/source changed/);
    expect(await store.head('never-small')).toBeUndefined();
  });

  it('is done with each streamed chunk when it asks for the next: a source may reuse one buffer', async () => {
    const { store } = s;
    const body = randomBytes(20 * 1024 * 1024 + 4321); // several multipart parts on S3
    const reused = Buffer.alloc(1024 * 1024);
    async function* oneBuffer(): AsyncGenerator<Buffer> {
      for (let o = 0; o < body.length; o += reused.length) {
        const n = body.copy(reused, 0, o, Math.min(o + reused.length, body.length));
        yield reused.subarray(0, n);
        reused.fill(0xee); // what a reused buffer looks like by the time a late reader gets to it
      }
    }
    await store.putStream('reused', oneBuffer);
    expect(digest(await store.get('reused'))).toBe(digest(body));
  });

  it('compare-and-swaps', async () => {
    const { store } = s;
    expect(await store.putIfMatch('cas', Buffer.from('v1'), null)).toBe(true);
    const v1 = (await store.head('cas'))!.etag;
    expect(await store.putIfMatch('cas', Buffer.from('v2'), v1)).toBe(true);
    expect((await store.get('cas')).toString()).toBe('v2');
    if (!s.conditionalPut) return; // the backend cannot refuse; the rest needs a real S3 or file store
    expect(await store.putIfMatch('cas', Buffer.from('v3'), v1)).toBe(false);
    expect(await store.putIfMatch('cas', Buffer.from('v3'), null)).toBe(false);
    expect((await store.get('cas')).toString()).toBe('v2');
  });

  it('lists every key under a prefix, with its size and when it was written', async () => {
    const { store } = s;
    const before = Date.now();
    await store.put('list/x/1', Buffer.from('1'));
    await store.put('list/x/2', Buffer.from('22'));
    await store.put('list/y/deep/3', Buffer.from('333'));
    await store.put('listing-not', Buffer.from('4'));
    const after = Date.now();
    const listed: ListedObject[] = [];
    for await (const object of store.list('list/')) listed.push(object);
    listed.sort((a, b) => a.key.localeCompare(b.key));
    expect(listed.map((o) => [o.key, o.size])).toEqual([['list/x/1', 1], ['list/x/2', 2], ['list/y/deep/3', 3]]);
    // S3 dates have whole seconds; the store's clock is this host's here.
    for (const { modifiedMs } of listed) {
      expect(modifiedMs).toBeGreaterThan(before - 2_000);
      expect(modifiedMs).toBeLessThan(after + 2_000);
    }
    const partial: string[] = [];
    for await (const { key } of store.list('list/x/')) partial.push(key);
    expect(partial.sort()).toEqual(['list/x/1', 'list/x/2']);
  });

  it('reports when an object was written', async () => {
    const before = Date.now();
    await s.store.put('aged', Buffer.from('x'));
    const { modifiedMs } = (await s.store.head('aged'))!;
    expect(modifiedMs).toBeGreaterThan(before - 2_000);
    expect(modifiedMs).toBeLessThan(Date.now() + 2_000);
  });

  it('deletes an object; deleting what is gone is no error', async () => {
    const { store } = s;
    await store.put('doomed/a', Buffer.from('a'));
    await store.put('doomed/b', Buffer.from('b'));
    await store.delete('doomed/a');
    expect(await store.head('doomed/a')).toBeUndefined();
    await expect(store.get('doomed/a')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect((await store.get('doomed/b')).toString()).toBe('b');
    await store.delete('doomed/a');
    await store.delete('never/was');
    const left: string[] = [];
    for await (const { key } of store.list('doomed/')) left.push(key);
    expect(left).toEqual(['doomed/b']);
  });
}

/** The behaviour every writable ObjectStore must have, run against each implementation. */
export function storeContract(name: string, open: () => Promise<StoreUnderTest>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    const subject = subjectOf(open);
    readHalf(subject);
    writeHalf(subject);
  });
}

/** The read half, for a read-only store (http://) reading what `writer` put; writes must be refused. */
export function readOnlyStoreContract(name: string, open: () => Promise<StoreUnderTest>): void {
  describe(`ObjectStore contract, read-only: ${name}`, () => {
    const subject = subjectOf(open);
    readHalf(subject);

    it('refuses writes, deletes, and listing with a clear error', async () => {
      const { store } = subject;
      await expect(store.put('w', Buffer.from('x'))).rejects.toBeInstanceOf(ReadOnlyStoreError);
      await expect(store.putStream('w', () => chunksOf(Buffer.from('x'), 1))).rejects.toBeInstanceOf(ReadOnlyStoreError);
      await expect(store.putIfMatch('w', Buffer.from('x'), null)).rejects.toBeInstanceOf(ReadOnlyStoreError);
      await expect(store.delete('ranges')).rejects.toBeInstanceOf(ReadOnlyStoreError);
      const listing = async () => {
        for await (const key of store.list('')) void key;
      };
      await expect(listing()).rejects.toBeInstanceOf(StoreError);
      await expect(listing()).rejects.toThrow(/no listing/);
    });
  });
}
