import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { storeContract } from './store-contract.js';

storeContract('file://', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rezfs-filestore-'));
  return { store: openStore(`file://${dir}`), conditionalPut: true, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

it('file store leaves no temp or lock files behind', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rezfs-filestore-'));
  const store = openStore(`file://${dir}`);
  await store.put('k/one', Buffer.from('x'));
  await store.putIfMatch('k/two', Buffer.from('y'), null);
  expect((await readdir(join(dir, 'k'))).sort()).toEqual(['one', 'two']);
  await rm(dir, { recursive: true, force: true });
});

it('file store takes over the lock of a writer that died on this host at once', async () => {
  const { hostname } = await import('node:os');
  const { writeFile, mkdir } = await import('node:fs/promises');
  const dir = await mkdtemp(join(tmpdir(), 'rezfs-filestore-'));
  const store = openStore(`file://${dir}`);
  await mkdir(join(dir, 'index'), { recursive: true });
  await writeFile(join(dir, 'index', 'HEAD.lock'), `${hostname()} 999999999`); // no such pid
  const started = Date.now();
  expect(await store.putIfMatch('index/HEAD', Buffer.from('x'), null)).toBe(true);
  expect(Date.now() - started).toBeLessThan(2_000);
  await rm(dir, { recursive: true, force: true });
});

it('file store lists the temp file of a write that never finished, so a collector can remove it', async () => {
  const { writeFile, mkdir } = await import('node:fs/promises');
  const dir = await mkdtemp(join(tmpdir(), 'rezfs-filestore-'));
  const store = openStore(`file://${dir}`);
  await store.put('packs/whole', Buffer.from('x'));
  await mkdir(join(dir, 'index'), { recursive: true });
  await writeFile(join(dir, 'packs', '.tmp-4242-abcdef'), Buffer.alloc(100)); // a publisher killed mid-upload
  await writeFile(join(dir, 'index', 'HEAD.lock'), 'host 1');
  const listed = new Map<string, number>();
  for await (const { key, size } of store.list('')) listed.set(key, size);
  expect([...listed].sort()).toEqual([['packs/.tmp-4242-abcdef', 100], ['packs/whole', 1]]);
  await store.delete('packs/.tmp-4242-abcdef');
  expect((await readdir(join(dir, 'packs'))).sort()).toEqual(['whole']);
  await rm(dir, { recursive: true, force: true });
});
