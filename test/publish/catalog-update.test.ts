import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog, FORMAT_VERSION, generateSigningKeys, keys, loadPrivateKey, loadPublicKey, readHead, readSignature, checkIndexSignature, type FamilyShard } from '../../src/catalog/index.js';
import { silentLog } from '../../src/log.js';
import { updateCatalog, type CatalogDraft } from '../../src/publish/catalog-update.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { tempDir } from '../support/small-repo.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let store: ObjectStore;

beforeEach(async () => {
  work = await tempDir('catalog-update');
  store = openStore(`file://${join(work.path, 'store')}`);
});
afterEach(async () => work.remove());

/** A shard with bare version records: the transaction never looks inside them. */
function shard(name: string, versions: string[]): FamilyShard {
  const record = { mode: 0o755, mtimeMs: 0, subdirs: 0, names: [], publishedMs: 0, definitions: {}, manifest: '0'.repeat(64), content: '1'.repeat(64) };
  return { format: FORMAT_VERSION, name, versions: Object.fromEntries(versions.map((v) => [v, record])), extras: {} };
}

const addVersion = (family: string, version: string) => async (draft: CatalogDraft) => {
  const current = await draft.shard(family);
  draft.setShard(shard(family, [...Object.keys(current?.versions ?? {}), version]));
};

const update = (edit: (draft: CatalogDraft) => Promise<void>, s: ObjectStore = store) => updateCatalog(s, edit, { log: silentLog });

describe('the catalog transaction', () => {
  it('makes one generation per change and none for an edit that changes nothing', async () => {
    expect(await update(addVersion('foo', '1.0'))).toMatchObject({ generation: 1, merges: 0 });
    const head = await readHead(store);
    const counting = new CountingStore(store);
    // The same shard again, and a removal of a family that is not there: no new index, no write at all.
    const same = await update(async (draft) => {
      draft.setShard(shard('foo', ['1.0']));
      draft.removeFamily('nope');
    }, counting);
    expect(same.generation).toBeUndefined();
    expect(counting.count('put')).toBe(0);
    expect(await readHead(store)).toEqual(head);
    expect(await update(addVersion('foo', '2.0'))).toMatchObject({ generation: 2 });
    const catalog = await Catalog.open(store);
    expect(Object.keys((await catalog.shard('foo')).versions)).toEqual(['1.0', '2.0']);
  });

  it('removes a family from the next generation', async () => {
    await update(addVersion('foo', '1.0'));
    await update(addVersion('bar', '1.0'));
    await update(async (draft) => draft.removeFamily('foo'));
    const catalog = await Catalog.open(store);
    expect(catalog.familyNames()).toEqual(['bar']);
    expect(catalog.index.generation).toBe(3);
  });

  it('re-runs the edit on the newer index when HEAD moved, keeping the other writer\'s change', async () => {
    await update(addVersion('foo', '1.0'));
    let raced = false;
    const racing = new (class extends CountingStore {
      override async putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
        if (key === keys.head && !raced) {
          raced = true;
          await update(addVersion('foo', '1.1')); // another writer, into the same family
        }
        return super.putIfMatch(key, body, expected);
      }
    })(store);
    const bases: number[] = [];
    const result = await update(async (draft) => {
      bases.push(draft.base.generation);
      await addVersion('foo', '2.0')(draft);
    }, racing);
    expect(result).toMatchObject({ generation: 3, merges: 1 });
    expect(bases).toEqual([1, 2]);
    const catalog = await Catalog.open(store);
    expect(Object.keys((await catalog.shard('foo')).versions).sort()).toEqual(['1.0', '1.1', '2.0']);
  });

  it('signs the new index when given a key', async () => {
    const pair = generateSigningKeys();
    const result = await updateCatalog(store, addVersion('foo', '1.0'), { log: silentLog, signingKey: loadPrivateKey(pair.privatePem, 'test key') });
    const bytes = await store.get(keys.index(result.indexHash!));
    expect(() => checkIndexSignature([loadPublicKey(pair.publicPem, 'test key')], bytes, undefined, 'x')).toThrow(/not signed/);
    const signature = await readSignature(store, result.indexHash!);
    expect(() => checkIndexSignature([loadPublicKey(pair.publicPem, 'test key')], bytes, signature, 'x')).not.toThrow();
  });

  it('gives up after its attempts when HEAD always moves, leaving HEAD as the other writers left it', async () => {
    await update(addVersion('foo', '1.0'));
    let n = 0;
    const busy = new (class extends CountingStore {
      override async putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
        if (key === keys.head) await update(addVersion('foo', `1.${++n}`));
        return super.putIfMatch(key, body, expected);
      }
    })(store);
    await expect(updateCatalog(busy, addVersion('foo', '9.0'), { log: silentLog, policy: { swapAttempts: 3, backoffStepMs: 0 } })).rejects.toThrow(/after 3 attempts/);
    const versions = Object.keys((await (await Catalog.open(store)).shard('foo')).versions);
    expect(versions).not.toContain('9.0');
    expect(versions).toHaveLength(4);
  });
});
