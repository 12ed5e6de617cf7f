import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  Catalog,
  GenerationFloor,
  UntrustedCatalogError,
  checkIndexSignature,
  generateSigningKeys,
  keys,
  readHead,
  signIndex,
} from '../../src/catalog/index.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const pair = () => {
  const k = generateSigningKeys();
  return { ...k, privateKey: createPrivateKey(k.privatePem), publicKey: createPublicKey(k.publicPem) };
};

describe('index signatures', () => {
  const a = pair();
  const b = pair();
  const bytes = Buffer.from('{"format":"1.0.0","generation":3}');

  it('accept the trusted key over the exact bytes', () => {
    expect(() => checkIndexSignature([b.publicKey, a.publicKey], bytes, signIndex(a.privateKey, bytes), 'index x')).not.toThrow();
    expect(signIndex(a.privateKey, bytes).keyId).toBe(a.keyId);
  });

  it('refuse unsigned, untrusted and tampered indexes with a reason', () => {
    expect(() => checkIndexSignature([a.publicKey], bytes, undefined, 'index x')).toThrow(/index x is not signed/);
    expect(() => checkIndexSignature([a.publicKey], bytes, signIndex(b.privateKey, bytes), 'index x')).toThrow(new RegExp(`signed by key ${b.keyId}, which is not trusted`));
    const tampered = Buffer.from(bytes.toString().replace('3', '4'));
    expect(() => checkIndexSignature([a.publicKey], tampered, signIndex(a.privateKey, bytes), 'index x')).toThrow(/does not match its bytes/);
  });
});

describe('signed catalogs', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let store: ObjectStore;
  let repo: string;
  const key = pair();

  beforeEach(async () => {
    work = await tempDir('signing');
    repo = join(work.path, 'repo');
    store = openStore(`file://${join(work.path, 'store')}`);
    await writeTree(repo, { 'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0') });
  });
  afterEach(async () => work.remove());

  it('a mount trusting the key opens what the key signed', async () => {
    await publish(store, { repoDir: repo, selectors: [], log: silentLog, signingKey: key.privateKey });
    const catalog = await Catalog.open(store, { keys: [key.publicKey], minGeneration: 0 });
    expect(catalog.familyNames()).toEqual(['foo']);
  });

  it('refuses an unsigned store and a tampered index', async () => {
    await publish(store, { repoDir: repo, selectors: [], log: silentLog });
    await expect(Catalog.open(store, { keys: [key.publicKey], minGeneration: 0 })).rejects.toThrow(/is not signed/);

    await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0') });
    await publish(store, { repoDir: repo, selectors: [], log: silentLog, signingKey: key.privateKey });
    const head = (await readHead(store))!;
    // Swap in a forged index under the same name: the hash check catches it before the signature does.
    const path = join(work.path, 'store', keys.index(head.indexHash));
    await writeFile(path, (await readFile(path, 'utf8')).replace('"generation":2', '"generation":9'));
    await expect(Catalog.open(store, { keys: [key.publicKey], minGeneration: 0 })).rejects.toThrow(/failed verification/);
  });

  it('refuses a rollback to an older generation than the host has seen', async () => {
    await publish(store, { repoDir: repo, selectors: [], log: silentLog, signingKey: key.privateKey });
    const first = (await readHead(store))!;
    await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0') });
    await publish(store, { repoDir: repo, selectors: [], log: silentLog, signingKey: key.privateKey });

    const floor = new GenerationFloor(join(work.path, 'state'), store.url);
    const current = await Catalog.open(store, { keys: [key.publicKey], minGeneration: await floor.read() });
    await floor.raise(current.index.generation);
    expect(await floor.read()).toBe(2);

    // An attacker with write access puts the old, validly signed HEAD back.
    await store.put(keys.head, Buffer.from(first.indexHash));
    const err = await Catalog.open(store, { keys: [key.publicKey], minGeneration: await floor.read() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UntrustedCatalogError);
    expect((err as Error).message).toMatch(/generation 1, older than generation 2 already seen \(rollback\?\)/);
  });
});
