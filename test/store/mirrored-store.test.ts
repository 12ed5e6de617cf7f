import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  MirroredStore,
  MirrorsUnavailableError,
  ObjectNotFoundError,
  openStore,
  openStores,
  type ObjectStore,
} from '../../src/store/index.js';
import { storeContract } from '../contract/store-contract.js';
import { CountingStore } from '../support/counting-store.js';
import { startHttpOrigin } from '../support/http-origin.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { digest, failureOf, FAST } from '../support/store-testing.js';

const tempDir = () => mkdtemp(join(tmpdir(), 'rezfs-mirror-'));
const until = async (what: string, condition: () => boolean, timeoutMs = 5_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

// Writes go to the primary and reads come from it while it is healthy: the whole contract holds.
storeContract('mirrored (file primary, file mirror)', async () => {
  const [a, b] = [await tempDir(), await tempDir()];
  return {
    store: openStores(`file://${a}`, [`file://${b}`]),
    conditionalPut: true,
    cleanup: async () => {
      await rm(a, { recursive: true, force: true });
      await rm(b, { recursive: true, force: true });
    },
  };
});

describe('mirrored store: s3 primary, file mirror', () => {
  let server: S3TestServer;
  let saved: NodeJS.ProcessEnv;
  let mirrorDir: string;
  let mirror: CountingStore;
  let store: MirroredStore;
  const body = randomBytes(300 * 1024);
  const primaryGets = () => server.requests.count({ method: 'GET', keyPrefix: 'm/' });

  beforeAll(async () => {
    server = await startS3Server();
    saved = { ...process.env };
    Object.assign(process.env, server.env);
    mirrorDir = await tempDir();
    const seed = openStore(server.storeUrl('m'));
    for (const target of [seed, openStore(`file://${mirrorDir}`)]) {
      await target.put('packs/p', body);
      await target.put('rezfs.json', Buffer.from('{}'));
    }
    await seed.close();
    mirror = new CountingStore(openStore(`file://${mirrorDir}`));
    store = new MirroredStore([openStore(server.storeUrl('m'), { ...FAST, retry: { ...FAST.retry, maxAttempts: 2 } }), mirror], { coolDownMs: 300, maxCoolDownMs: 1_000 });
  });
  afterAll(async () => {
    await store?.close();
    process.env = saved;
    await server?.stop();
    await rm(mirrorDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    server.setInterceptor(null);
    await until('the primary to be healthy', () => store.health()[0]!.healthy);
    mirror.reset();
  });

  it('reads from the primary while it is healthy', async () => {
    const before = primaryGets();
    expect(digest(await store.getRange('packs/p', 10, 20_000))).toBe(digest(body.subarray(10, 20_000)));
    expect(primaryGets() - before).toBe(1);
    expect(mirror.calls).toEqual([]);
  });

  it('fails over on a 503 burst, stays on the mirror, and returns to the primary once it recovers', async () => {
    server.setInterceptor((r) => (r.method === 'GET' || r.method === 'HEAD' ? { status: 503 } : undefined));
    expect(digest(await store.get('packs/p'))).toBe(digest(body));
    expect(mirror.count('get')).toBe(1);
    const [primary, second] = store.health();
    expect(primary).toMatchObject({ healthy: false, failures: 1, lastError: 'GET packs/p at s3://rezfs-test/m/: HTTP 503' });
    expect(second).toMatchObject({ healthy: true, failures: 0 });
    expect(store.candidates()[0]).toBe(mirror);

    // While it is down, reads skip it: no request reaches the primary for them.
    const before = primaryGets();
    for (let i = 0; i < 5; i++) expect(digest(await store.getRange('packs/p', i, i + 1000))).toBe(digest(body.subarray(i, i + 1000)));
    expect(primaryGets()).toBe(before);
    expect(mirror.count('getRange')).toBe(5);

    // Probes find it answering again; reads go back to it.
    server.setInterceptor(null);
    await until('the probe to restore the primary', () => store.health()[0]!.healthy);
    mirror.reset();
    await store.getRange('packs/p', 0, 10);
    expect(primaryGets()).toBe(before + 1);
    expect(mirror.calls).toEqual([]);
  });

  it('fails over from a hung primary within its timeouts', async () => {
    server.setInterceptor((r) => (r.method === 'GET' ? { hang: true } : undefined));
    const started = Date.now();
    expect(digest(await store.getRange('packs/p', 0, 4096))).toBe(digest(body.subarray(0, 4096)));
    expect(Date.now() - started).toBeLessThan(2 * 400 + 1_000); // two attempts of 400 ms, then the mirror
    expect(store.health()[0]!.lastError).toMatch(/no response within 400 ms/);
  });

  it('looks further when a store has not got the object (a lagging mirror), without marking it down', async () => {
    await mirror.put('packs/only-in-mirror', Buffer.from('late'));
    expect((await store.get('packs/only-in-mirror')).toString()).toBe('late');
    expect((await store.head('packs/only-in-mirror'))?.size).toBe(4);
    expect(store.health().every((h) => h.healthy)).toBe(true);
  });

  it('says "not found" only when no store has it', async () => {
    await expect(store.get('packs/nowhere')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(await store.head('packs/nowhere')).toBeUndefined();
    // One store down and the other without it: still "not found" (the mount hides it, the store that answered said so).
    server.setInterceptor(() => ({ status: 500 }));
    await expect(store.getRange('packs/nowhere', 0, 1)).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it('writes to the primary only', async () => {
    await store.put('packs/new', Buffer.from('new'));
    expect(mirror.count('put')).toBe(0);
    expect(await openStore(`file://${mirrorDir}`).head('packs/new')).toBeUndefined();
    expect((await store.get('packs/new')).toString()).toBe('new');
  });
});

describe('mirrored store: every store failing', () => {
  it('lists why each store failed', async () => {
    const store = openStores('http://127.0.0.1:1/a/', ['http://127.0.0.1:1/b/'], FAST);
    const err = await failureOf(store.get('k'));
    expect(err).toBeInstanceOf(MirrorsUnavailableError);
    expect(err.message).toMatch(/^GET k: no store could serve it: GET k at http:\/\/127\.0\.0\.1:1\/a\/: ECONNREFUSED.*; GET k at http:\/\/127\.0\.0\.1:1\/b\/: ECONNREFUSED/);
    await store.close();
  });
});

describe('mirrored store: primary killed mid-read', () => {
  it('completes the read from the mirror', async () => {
    const world = await startHttpOrigin();
    const mirrorDir = await tempDir();
    const body = randomBytes(2 * 1024 * 1024);
    await world.files.put('packs/p', body);
    const mirror = openStore(`file://${mirrorDir}`);
    await mirror.put('packs/p', body);
    const store: ObjectStore = new MirroredStore([openStore(world.url, { ...FAST, retry: { ...FAST.retry, maxAttempts: 2 } }), mirror]);
    // The primary sends half the body, then the process "dies": the proxy goes away, connections and all.
    let arrived: () => void;
    const halfway = new Promise<void>((resolve) => (arrived = resolve));
    world.proxy.setFault(() => {
      setTimeout(() => arrived(), 50);
      return { afterBytes: 1024 * 1024, then: 'stall' };
    });
    const started = Date.now();
    const read = store.get('packs/p');
    await halfway;
    await world.proxy.stop();
    expect(digest(await read)).toBe(digest(body));
    expect(Date.now() - started).toBeLessThan(1_500);
    await store.close();
    await world.stop();
    await rm(mirrorDir, { recursive: true, force: true });
  });
});

describe('openStores', () => {
  it('opens the primary alone without mirrors, and a MirroredStore in priority order with them', async () => {
    const dirs = [await tempDir(), await tempDir()];
    const single = openStores(`file://${dirs[0]}`);
    expect(single).not.toBeInstanceOf(MirroredStore);
    const both = openStores(`file://${dirs[0]}`, [`file://${dirs[1]}`]);
    expect(both).toBeInstanceOf(MirroredStore);
    expect(both.url).toBe(`file://${dirs[0]}`);
    expect((both as MirroredStore).health().map((h) => h.url)).toEqual(dirs.map((d) => `file://${d}`));
    await both.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
});
