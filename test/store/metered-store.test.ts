import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { kindOfKey } from '../../src/catalog/index.js';
import { FileStore } from '../../src/store/file-store.js';
import { MeteredStore, ObjectNotFoundError, StoreTraffic, TransientStoreError, storeErrorKind, type ObjectStore } from '../../src/store/index.js';

const sha = 'a'.repeat(64);

describe('MeteredStore', () => {
  let dir: string;
  let traffic: StoreTraffic;
  let store: ObjectStore;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rezfs-metered-'));
    traffic = new StoreTraffic(kindOfKey);
    store = new MeteredStore(new FileStore(dir), traffic);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const row = (kind: string, operation: string) => [...traffic.rows()].find((r) => r.kind === kind && r.operation === operation);

  it('counts requests and bytes per object kind and operation, and behaves as the store it wraps', async () => {
    await store.put(`packs/${sha}`, Buffer.alloc(1000, 1));
    await store.put('index/HEAD', Buffer.from(sha));
    expect((await store.getRange(`packs/${sha}`, 100, 400)).length).toBe(300);
    expect((await store.getRange(`packs/${sha}`, 0, 10)).length).toBe(10);
    expect((await store.get('index/HEAD')).toString()).toBe(sha);
    expect((await store.head(`packs/${sha}`))?.size).toBe(1000);
    expect(row('pack', 'getRange')).toMatchObject({ store: store.url, requests: 2, bytes: 310, errors: {} });
    expect(row('pack', 'put')).toMatchObject({ requests: 1, bytes: 1000 });
    expect(row('head', 'get')).toMatchObject({ requests: 1, bytes: 64 });
    expect(row('pack', 'head')).toMatchObject({ requests: 1, bytes: 0 });
    expect(traffic.inFlight).toBe(0);
  });

  it('counts a failure by its kind and rethrows the same error', async () => {
    const err = await store.get(`manifests/${sha}.json`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectNotFoundError);
    expect(row('manifest', 'get')).toMatchObject({ requests: 1, errors: { not_found: 1 } });
    expect(storeErrorKind(new TransientStoreError('503', { throttled: true }))).toBe('throttled');
    expect(storeErrorKind(new TransientStoreError('reset'))).toBe('transient');
  });

  it('streams and lists through, counting what passed', async () => {
    async function* chunks() {
      yield Buffer.alloc(5);
      yield Buffer.alloc(7);
    }
    await store.putStream(`families/${sha}.json`, chunks);
    const listed = [];
    for await (const o of store.list('families/')) listed.push(o.key);
    expect(listed).toEqual([`families/${sha}.json`]);
    expect(row('shard', 'put')).toMatchObject({ requests: 1, bytes: 12 });
    expect(row('shard', 'list')).toMatchObject({ requests: 1 });
  });
});

describe('kindOfKey', () => {
  it('names each kind of the store layout', () => {
    expect(kindOfKey('index/HEAD')).toBe('head');
    expect(kindOfKey('rezfs.json')).toBe('config');
    expect(kindOfKey(`index/${sha}.json`)).toBe('index');
    expect(kindOfKey(`index/${sha}.sig`)).toBe('signature');
    expect(kindOfKey(`families/${sha}.json`)).toBe('shard');
    expect(kindOfKey(`manifests/${sha}.json`)).toBe('manifest');
    expect(kindOfKey(`packs/${sha}`)).toBe('pack');
    expect(kindOfKey(`chunks/${sha}`)).toBe('chunks');
    expect(kindOfKey(`claims/packs/${sha}`)).toBe('other');
  });
});
