import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  HttpStore,
  ObjectNotFoundError,
  openStore,
  StoreAccessError,
  StoreTimeoutError,
  StoreUrlError,
  TransientStoreError,
  type ObjectStore,
} from '../../src/store/index.js';
import { startHttpOrigin, type HttpOrigin } from '../support/http-origin.js';
import { digest, expectNoSecrets, failureOf, FAST } from '../support/store-testing.js';

let world: HttpOrigin;
let store: ObjectStore;
const body = randomBytes(256 * 1024);

beforeAll(async () => {
  world = await startHttpOrigin();
  await world.files.put('packs/p', body);
  store = openStore(world.url, FAST);
});
afterAll(async () => {
  await store?.close();
  await world?.stop();
});
beforeEach(() => world.proxy.setFault(null));

/** A fault for the first `n` requests, then none. */
function firstN(n: number, fault: Parameters<HttpOrigin['proxy']['setFault']>[0] & object) {
  let left = n;
  return (req: Parameters<typeof fault>[0]) => (left-- > 0 ? fault(req) : undefined);
}

describe('http:// store under faults', () => {
  it('is an HttpStore and reads through the proxy', async () => {
    expect(store).toBeInstanceOf(HttpStore);
    expect(digest(await store.getRange('packs/p', 1000, 2000))).toBe(digest(body.subarray(1000, 2000)));
  });

  it('retries a 503 burst and returns the right bytes', async () => {
    world.proxy.setFault(firstN(2, () => ({ status: 503 })));
    const before = world.proxy.count();
    expect(digest(await store.get('packs/p'))).toBe(digest(body));
    expect(world.proxy.count() - before).toBe(3);
  });

  it('waits as long as Retry-After says', async () => {
    world.proxy.setFault(firstN(1, () => ({ status: 503, headers: { 'retry-after': '1' } })));
    const started = Date.now();
    expect(digest(await store.getRange('packs/p', 0, 10))).toBe(digest(body.subarray(0, 10)));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
  });

  it('gives up at once when Retry-After is longer than allowed', async () => {
    world.proxy.setFault(() => ({ status: 503, headers: { 'retry-after': '120' } }));
    const before = world.proxy.count();
    const err = await failureOf(store.get('packs/p'));
    expect(err).toBeInstanceOf(TransientStoreError);
    expect(err.message).toBe(`GET packs/p at ${world.url}: HTTP 503`);
    expect(world.proxy.count() - before).toBe(1);
  });

  it('gives up after the last attempt of a lasting outage', async () => {
    world.proxy.setFault(() => ({ status: 500 }));
    const before = world.proxy.count();
    await expect(store.get('packs/p')).rejects.toBeInstanceOf(TransientStoreError);
    expect(world.proxy.count() - before).toBe(3);
  });

  it('does not retry 404, 403, 401 or 412', async () => {
    const before = world.proxy.count();
    await expect(store.get('packs/none')).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(await store.head('packs/none')).toBeUndefined();
    for (const status of [403, 401]) {
      world.proxy.setFault(() => ({ status }));
      const err = await failureOf(store.get('packs/p'));
      expect(err).toBeInstanceOf(StoreAccessError);
      expect(err.message).toContain(`access denied to ${world.url} (HTTP ${status}) for GET packs/p: check the credentials`);
      await expect(store.head('packs/p')).rejects.toBeInstanceOf(StoreAccessError); // not "absent"
    }
    world.proxy.setFault(() => ({ status: 412 }));
    await expect(store.get('packs/p')).rejects.toThrow(/HTTP 412/);
    expect(world.proxy.count() - before).toBe(7);
  });

  it('times out a server that never answers, on every attempt', async () => {
    world.proxy.setFault(() => ({ hang: true }));
    const started = Date.now();
    const err = await failureOf(store.getRange('packs/p', 0, 100));
    expect(err).toBeInstanceOf(StoreTimeoutError);
    expect(err.message).toBe(`GET packs/p at ${world.url}: no response within 400 ms`);
    expect(Date.now() - started).toBeLessThan(3 * 400 + 1_000);
  });

  it('treats a body that stops mid-way as a timeout, and retries it', async () => {
    world.proxy.setFault(firstN(1, () => ({ afterBytes: 64 * 1024, then: 'stall' })));
    const started = Date.now();
    expect(digest(await store.get('packs/p'))).toBe(digest(body));
    expect(Date.now() - started).toBeLessThan(2_000);
    world.proxy.setFault(() => ({ afterBytes: 1024, then: 'stall' }));
    await expect(store.get('packs/p')).rejects.toThrow(/stalled: fewer than 4096 bytes in 300 ms/);
  });

  it('treats a trickle below the minimum rate as a stall, and a slow steady body as fine', async () => {
    world.proxy.setFault(() => ({ trickle: { bytes: 100, everyMs: 50 } }));
    await expect(store.getRange('packs/p', 0, 64 * 1024)).rejects.toBeInstanceOf(StoreTimeoutError);
    world.proxy.setFault(() => ({ trickle: { bytes: 8 * 1024, everyMs: 50 } })); // ~160 KB/s for ~1.6 s: past the first-byte timeout
    expect(digest(await store.get('packs/p'))).toBe(digest(body));
  });

  it('retries a body cut off mid-way', async () => {
    world.proxy.setFault(firstN(2, () => ({ afterBytes: 100_000, then: 'cut' })));
    const before = world.proxy.count();
    expect(digest(await store.get('packs/p'))).toBe(digest(body));
    expect(digest(await store.getRange('packs/p', 5, 200_005))).toBe(digest(body.subarray(5, 200_005)));
    expect(world.proxy.count() - before).toBe(4);
  });

  it('reads a range past the end as empty, like a short file read', async () => {
    expect((await store.getRange('packs/p', body.length, body.length + 10)).length).toBe(0);
    expect(digest(await store.getRange('packs/p', body.length - 3, body.length + 10))).toBe(digest(body.subarray(body.length - 3)));
  });

  it('fails over nothing it cannot reach: a refused connection is transient', async () => {
    const dead = openStore('http://127.0.0.1:1/x/', FAST);
    const err = await failureOf(dead.get('k'));
    expect(err).toBeInstanceOf(TransientStoreError);
    expect(err.message).toMatch(/^GET k at http:\/\/127\.0\.0\.1:1\/x\/: ECONNREFUSED/);
    await dead.close();
  });
});

describe('http:// store credentials', () => {
  const user = 'farm';
  const secret = 'pa55-W0rd-top-SECRET';
  const basic = Buffer.from(`${user}:${secret}`).toString('base64');

  it('sends userinfo as Basic auth and never shows it', async () => {
    const url = world.url.replace('http://', `http://${user}:${secret}@`);
    const authed = openStore(url, FAST);
    expect(authed.url).toBe(world.url);
    expect(inspect(authed, { depth: 10, showHidden: true })).not.toContain(secret);
    expect(inspect(authed, { depth: 10, showHidden: true })).not.toContain(basic);
    world.origin.requests.length = 0;
    expect(await authed.getRange('packs/p', 0, 4)).toEqual(body.subarray(0, 4));
    expect(world.origin.requests[0]?.authorization).toBe(`Basic ${basic}`);

    const failures: Error[] = [await failureOf(authed.get('packs/none'))];
    for (const fault of [{ status: 403 }, { status: 503 }, { hang: true as const }, { afterBytes: 10, then: 'stall' as const }]) {
      world.proxy.setFault(() => fault);
      failures.push(await failureOf(authed.get('packs/p')));
    }
    world.proxy.setFault(null);
    failures.push(await failureOf(authed.put('x', Buffer.from('y'))));
    const dead = openStore(`http://${user}:${secret}@127.0.0.1:1/`, FAST);
    failures.push(await failureOf(dead.get('k')));
    failures.push(await failureOf(Promise.resolve().then(() => openStore(`http://${user}:${secret}@127.0.0.1/?token=${secret}`))));
    failures.push(await failureOf(Promise.resolve().then(() => openStore(`htp:/${user}:${secret}@bad`))));
    for (const err of failures) expectNoSecrets(err, [secret, basic]);
    expect(failures.at(-2)).toBeInstanceOf(StoreUrlError);
    await authed.close();
    await dead.close();
  });
});

describe('redactUrl', () => {
  it('blanks userinfo and queries, even in malformed URLs', async () => {
    const { redactUrl } = await import('../../src/store/index.js');
    expect(redactUrl('http://u:p@host:8/x')).toBe('http://***@host:8/x');
    expect(redactUrl('dav+https://ci:t%40ken@artifacts.example.com/repo/rez')).toBe('dav+https://***@artifacts.example.com/repo/rez');
    expect(redactUrl('https://host/x?X-Amz-Signature=abc#f')).toBe('https://host/x?***');
    expect(redactUrl('htp:/u:p/w@d@bad/x')).toBe('htp:/***@bad/x');
    expect(redactUrl('u:p@host')).toBe('u:***@host');
    expect(redactUrl('s3://bucket/prefix')).toBe('s3://bucket/prefix');
    expect(redactUrl('file:///a/b')).toBe('file:///a/b');
  });
});
