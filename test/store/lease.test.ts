/**
 * The catalog lease and the head writer on s3rver, a real S3 server that ignores conditional PUTs (the reason
 * they exist), and on a file store, which honours them. Kernel-free; the 4-publisher race over the CLI is in
 * test/publish/race.test.ts.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conditionalWritesHonoured, HeadWriter, keys, readHead } from '../../src/catalog/index.js';
import { acquireLease, LeaseError, openStore, type ObjectStore } from '../../src/store/index.js';
import { useS3Server } from '../support/use-s3-server.js';
import { tempDir } from '../support/small-repo.js';

const FAST = { ttlMs: 3_000, renewEveryMs: 250, pollMs: 30, waitMs: 30_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hash = (c: string) => c.repeat(64);

async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const { key } of store.list(prefix)) found.push(key);
  return found.sort();
}

describe('on s3rver (conditional PUTs ignored)', () => {
  const server = useS3Server();
  let n = 0;
  const freshStore = () => openStore(server().storeUrl(`lease-${n++}`));

  it('the probe finds that the store ignores conditional writes, and leaves nothing behind', async () => {
    const store = freshStore();
    // The fault itself: a create-only PUT onto an existing key succeeds.
    await store.put('x', Buffer.from('1'));
    expect(await store.putIfMatch('x', Buffer.from('2'), null)).toBe(true);
    expect(await conditionalWritesHonoured(store)).toBe(false);
    expect(await keysUnder(store, 'locks/')).toEqual([]);
  });

  it('a head writer still swaps only from the HEAD it started from', async () => {
    const store = freshStore();
    const first = new HeadWriter(store);
    const second = new HeadWriter(store);
    try {
      expect(await first.swap(hash('a'), undefined)).toBe(true);
      await first.close();
      // The second writer also started from "no HEAD": its swap must fail, though the store would take the PUT.
      expect(await second.swap(hash('b'), undefined)).toBe(false);
      expect((await readHead(store))?.indexHash).toBe(hash('a'));
      expect(await second.swap(hash('b'), await readHead(store))).toBe(true);
      expect(second.leased).toBe(true);
    } finally {
      await first.close();
      await second.close();
    }
    expect((await readHead(store))?.indexHash).toBe(hash('b'));
    expect(await keysUnder(store, 'locks/')).toEqual([]);
  });

  it('six writers racing for the lease hold it one at a time', async () => {
    const store = freshStore();
    let holding = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const lease = await acquireLease(store, 'catalog', { policy: FAST });
        holding++;
        most = Math.max(most, holding);
        // A read-modify-write that loses an update if two hold the lease at once.
        const count = Number((await store.get('counter').catch(() => Buffer.from('0'))).toString());
        await sleep(40);
        await store.put('counter', Buffer.from(String(count + 1)));
        order.push(i);
        holding--;
        await lease.release();
      }),
    );
    expect(most).toBe(1);
    expect((await store.get('counter')).toString()).toBe('6');
    expect(order.sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(await keysUnder(store, 'locks/')).toEqual([]);
  });

  it('a crashed writer\'s claim is taken away once it has not changed for the ttl; a live holder renews', async () => {
    const store = freshStore();
    await store.put('locks/catalog/crashed-host-1-000000', Buffer.from('{}'));
    const started = performance.now();
    const waitedFor: string[] = [];
    const lease = await acquireLease(store, 'catalog', { policy: FAST, onWait: (holder) => waitedFor.push(holder) });
    expect(performance.now() - started).toBeGreaterThanOrEqual(FAST.ttlMs);
    expect(waitedFor).toEqual(['crashed-host-1-000000']);
    expect(await keysUnder(store, 'locks/')).toEqual([lease.key]);

    // Held past several ttls, it is renewed, so a contender waits (and gives up here, after its wait).
    const contender = acquireLease(store, 'catalog', { policy: { ...FAST, waitMs: 2 * FAST.ttlMs } });
    await expect(contender).rejects.toThrow(LeaseError);
    await lease.confirm();
    await lease.release();
  });

  it('a holder whose claim was taken away fails its confirm, and does not bring the claim back', async () => {
    const store = freshStore();
    const lease = await acquireLease(store, 'catalog', { policy: FAST });
    await store.delete(lease.key);
    await expect(lease.confirm()).rejects.toThrow(/lost the lease .*is gone/);
    await sleep(3 * FAST.renewEveryMs);
    expect(await keysUnder(store, 'locks/')).toEqual([]);
    await lease.release();
  });
});

describe('on a file store (conditional PUTs honoured)', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    work = await tempDir('lease');
  });
  afterAll(async () => work.remove());

  it('needs no lease: the store says so, and a probe agrees', async () => {
    const store = openStore(`file://${join(work.path, 'store')}`);
    expect(await conditionalWritesHonoured(store)).toBe(true);
    // Without its own word, the probe finds the same.
    const unknown = Object.create(store, { conditionalWrites: { value: undefined } }) as ObjectStore;
    expect(await conditionalWritesHonoured(unknown)).toBe(true);
    const writer = new HeadWriter(store);
    expect(await writer.swap(hash('c'), undefined)).toBe(true);
    expect(await writer.swap(hash('d'), undefined)).toBe(false);
    expect(writer.leased).toBe(false);
    expect(await store.head(keys.head)).toBeDefined();
    expect(await keysUnder(store, 'locks/')).toEqual([]);
  });
});
