import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalCopyStore } from '../../src/store/index.js';
import { catalogCopyRules } from '../../src/catalog/index.js';
import { ObjectNotFoundError, StoreError, openStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { tempDir } from '../support/small-repo.js';

const DOC = `manifests/${'a'.repeat(64)}.json`;
let work: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  work = await tempDir('copies');
});
afterAll(async () => work.remove());

/** A store that stopped answering, simulated: the point is what the wrapper does, not how the store fails. */
class DownStore extends CountingStore {
  down = false;
  override get(key: string): Promise<Buffer> {
    return this.down ? Promise.reject(new StoreError(`${key}: connection refused`)) : super.get(key);
  }
  override head(key: string) {
    return this.down ? Promise.reject(new StoreError(`${key}: connection refused`)) : super.head(key);
  }
}

it('keeps immutable documents after one fetch and falls back to the last HEAD when the store is down', async () => {
  const origin = openStore(`file://${join(work.path, 'origin')}`);
  await origin.put(DOC, Buffer.from('{"format":"1.0.0"}'));
  await origin.put('index/HEAD', Buffer.from('b'.repeat(64)));
  const inner = new DownStore(origin);
  const store = new LocalCopyStore(inner, join(work.path, 'copies'), catalogCopyRules);

  expect((await store.get(DOC)).toString()).toBe('{"format":"1.0.0"}');
  expect((await store.get('index/HEAD')).toString()).toBe('b'.repeat(64));
  inner.reset();
  await store.get(DOC);
  expect(inner.count('get')).toBe(0); // served from the copy

  inner.down = true;
  expect((await store.get('index/HEAD')).toString()).toBe('b'.repeat(64));
  expect((await store.head('index/HEAD'))?.etag).toMatch(/^copy-/);
  expect(store.offlineState()).toMatchObject({ offline: true, lastError: expect.stringContaining('connection refused') });
  await expect(store.get(`families/${'c'.repeat(64)}.json`)).rejects.toThrow(/connection refused/); // never copied

  inner.down = false;
  await origin.put('index/HEAD', Buffer.from('d'.repeat(64)));
  const fresh = new LocalCopyStore(inner, join(work.path, 'copies'), catalogCopyRules);
  expect((await fresh.get('index/HEAD')).toString()).toBe('d'.repeat(64));
  expect(fresh.offlineState().offline).toBe(false);
  await expect(fresh.get('index/none')).rejects.toBeInstanceOf(ObjectNotFoundError);
});
