import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCopyStore, MirroredStore, ObjectNotFoundError, openStore, readVerified, type ObjectStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';

class Rejected extends Error {}

let dir: string;
const stores: CountingStore[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rezfs-verified-'));
  for (const name of ['a', 'b', 'c']) {
    const store = new CountingStore(openStore(`file://${join(dir, name)}`));
    await store.put('k', Buffer.from(name));
    stores.push(store);
  }
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Reads `k` accepting only `want`, and says which stores were asked, in order. */
async function asked(store: ObjectStore, want: string): Promise<{ value: string | Error; asked: string[] }> {
  const order: string[] = [];
  const rejected: string[] = [];
  const value = await readVerified(
    store,
    async (source) => {
      const bytes = await source.get('k');
      order.push(bytes.toString());
      return bytes;
    },
    (bytes) => {
      if (bytes.toString() !== want) throw new Rejected(`got ${bytes.toString()}`);
      return bytes.toString();
    },
    Rejected,
    (_, source) => rejected.push(source.url),
  ).catch((err: Error) => err);
  return { value, asked: order };
}

describe('readVerified: the one policy for bytes that fail their check', () => {
  it('asks a single store once more (transit damage), then gives up with the rejection', async () => {
    expect(await asked(stores[0]!, 'a')).toEqual({ value: 'a', asked: ['a'] });
    const failed = await asked(stores[0]!, 'z');
    expect(failed.asked).toEqual(['a', 'a']);
    expect(failed.value).toBeInstanceOf(Rejected);
  });

  it('asks each member of a mirror set once, never the first one twice', async () => {
    const mirror = new MirroredStore(stores);
    expect((await asked(mirror, 'c')).asked).toEqual(['a', 'b', 'c']);
    expect((await asked(mirror, 'z')).asked).toEqual(['a', 'b', 'c']);
  });

  it('through a local copy: what the copy layer answered (here it had none, so the first member), then the store behind it and its other members', async () => {
    const copy = new LocalCopyStore(new MirroredStore(stores), join(dir, 'copy'), { immutable: () => false, mutable: () => false });
    expect((await asked(copy, 'z')).asked).toEqual(['a', 'a', 'b', 'c']);
  });

  it('ends at once on an answer that is not a failed check', async () => {
    const missing = await readVerified(stores[0]!, (s) => s.get('absent'), (b) => b, Rejected, () => undefined).catch((err: Error) => err);
    expect(missing).toBeInstanceOf(ObjectNotFoundError);
    let reads = 0;
    const broken = await readVerified(
      stores[0]!,
      (s) => (reads++, s.get('k')),
      () => {
        throw new TypeError('a bug, not bad bytes');
      },
      Rejected,
      () => undefined,
    ).catch((err: Error) => err);
    expect(broken).toBeInstanceOf(TypeError);
    expect(reads).toBe(1);
  });
});
