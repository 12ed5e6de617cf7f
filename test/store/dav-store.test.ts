/**
 * The dav+http(s):// store beyond the contract: where credentials come from and that they never show, retries of
 * uploads on 5xx (a fault proxy in front of Apache mod_dav), the checksum header, and TLS with a site's own CA.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { credentialsFor, netrcEntry, parseNetrc } from '../../src/store/http-credentials.js';
import { DavStore, openStore, StoreAccessError, TransientStoreError, type ObjectStore } from '../../src/store/index.js';
import { runCli } from '../support/cli.js';
import { describeWithDav, startDavServer, type DavServer } from '../support/dav-server.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startHttpOrigin } from '../support/http-origin.js';
import { tempDir, TWO_FAMILIES, writeTree } from '../support/small-repo.js';
import { digest, expectNoSecrets, failureOf, FAST } from '../support/store-testing.js';

const url = new URL('https://artifacts.example.com/artifactory/rez-local/prod');
const basicOf = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('HTTP credentials', () => {
  it('take the URL first, then REZFS_HTTP_TOKEN, then REZFS_HTTP_USER/PASSWORD, then .netrc', async () => {
    const work = await tempDir('netrc');
    const netrc = join(work.path, 'netrc');
    await writeFile(netrc, 'machine artifacts.example.com login ci password from-netrc\n');
    const env = { NETRC: netrc, REZFS_HTTP_TOKEN: 'tok', REZFS_HTTP_USER: 'env-user', REZFS_HTTP_PASSWORD: 'env-pw' };
    const withUserinfo = new URL(url);
    withUserinfo.username = 'u';
    withUserinfo.password = 'p%40ss';
    expect(credentialsFor(withUserinfo, env)).toEqual({ authorization: basicOf('u', 'p@ss'), source: 'the URL' });
    expect(credentialsFor(url, env)).toEqual({ authorization: 'Bearer tok', source: 'REZFS_HTTP_TOKEN' });
    expect(credentialsFor(url, { ...env, REZFS_HTTP_TOKEN: '' })).toEqual({ authorization: basicOf('env-user', 'env-pw'), source: 'REZFS_HTTP_USER/REZFS_HTTP_PASSWORD' });
    expect(credentialsFor(url, { NETRC: netrc })).toEqual({ authorization: basicOf('ci', 'from-netrc'), source: `${netrc} machine artifacts.example.com` });
    expect(credentialsFor(new URL('https://elsewhere.example.com/'), { NETRC: netrc })).toBeUndefined();
    expect(credentialsFor(url, { NETRC: join(work.path, 'none') })).toBeUndefined();
    await work.remove();
  });

  it('read .netrc as curl does: machine or default, macdef skipped, quotes, comments', () => {
    const text = [
      '# the farm account',
      'machine a.example login alice password "pass word"',
      'macdef init',
      'machine not-an-entry login x password y',
      '',
      'machine B.example',
      '  login bob',
      '  account ignored',
      '  password p\\"q',
      'default login anon password guest',
    ].join('\n');
    expect(parseNetrc(text)).toEqual([
      { machine: 'a.example', login: 'alice', password: 'pass word' },
      { machine: 'B.example', login: 'bob', password: 'p\\"q' },
      { machine: undefined, login: 'anon', password: 'guest' },
    ]);
    expect(netrcEntry(text, 'b.example')?.login).toBe('bob');
    expect(netrcEntry(text, 'c.example')?.login).toBe('anon');
  });

  it('send a Bearer token, never show it, and say where it came from when refused', async () => {
    const world = await startHttpOrigin();
    const token = 'eyJ-very-SECRET-token';
    process.env.REZFS_HTTP_TOKEN = token;
    try {
      await world.files.put('packs/p', Buffer.from('payload'));
      for (const store of [openStore(world.url, FAST), openStore(`dav+${world.url}`, FAST)]) {
        world.origin.requests.length = 0;
        expect((await store.get('packs/p')).toString()).toBe('payload');
        expect(world.origin.requests[0]?.authorization).toBe(`Bearer ${token}`);
        expect(inspect(store, { depth: 10, showHidden: true })).not.toContain(token);
        world.proxy.setFault(() => ({ status: 401 }));
        const denied = await failureOf(store.get('packs/p'));
        world.proxy.setFault(() => ({ status: 503 }));
        const unavailable = await failureOf(store.put('packs/q', Buffer.from('x')));
        world.proxy.setFault(null);
        expect(denied).toBeInstanceOf(StoreAccessError);
        expect(denied.message).toContain('check the credentials (taken from REZFS_HTTP_TOKEN)');
        for (const err of [denied, unavailable]) expectNoSecrets(err, [token]);
        await store.close();
      }
    } finally {
      delete process.env.REZFS_HTTP_TOKEN;
      await world.stop();
    }
  });
});

describeWithDav('dav+http:// store against Apache mod_dav', () => {
  let server: DavServer;
  let proxy: FaultProxy;
  let store: ObjectStore;
  beforeAll(async () => {
    server = await startDavServer();
    proxy = await startFaultProxy(server.origin);
    const { user, password } = server.publisher;
    store = openStore(`dav+${proxy.url.replace('://', `://${user}:${password}@`)}/repo/faults`, FAST);
  });
  afterAll(async () => {
    await store?.close();
    await proxy?.stop();
    await server?.stop();
  });
  beforeEach(() => proxy.setFault(null));

  /** The first `n` requests matching `method` get `status`; everything else passes. */
  const failFirst = (n: number, method: string, status: number) => {
    let left = n;
    proxy.setFault((req) => (req.method === method && left-- > 0 ? { status } : undefined));
  };

  it('is a DavStore and shows no credentials', () => {
    expect(store).toBeInstanceOf(DavStore);
    expect(store.url).toBe(`dav+${proxy.url}/repo/faults/`);
    expect(inspect(store, { depth: 10, showHidden: true })).not.toContain(server.publisher.password);
  });

  it('retries a PUT answered 503, and a streamed one asks its source again', async () => {
    failFirst(2, 'PUT', 503);
    const body = randomBytes(3000);
    await store.put('retried/small', body);
    expect(await store.get('retried/small')).toEqual(body);

    const big = randomBytes(3 * 1024 * 1024 + 17);
    let asked = 0;
    const source = async function* () {
      asked++;
      for (let o = 0; o < big.length; o += 1024 * 1024) yield big.subarray(o, o + 1024 * 1024);
    };
    failFirst(1, 'PUT', 503);
    const sha256 = createHash('sha256').update(big).digest('hex');
    await store.putStream('retried/big', source, { size: big.length, sha256 });
    expect(asked).toBe(2);
    expect(digest(await store.get('retried/big'))).toBe(digest(big));
    const put = (await server.requests()).filter((r) => r.method === 'PUT' && r.path === '/repo/faults/retried/big' && r.status === 201);
    expect(put.map((r) => r.checksum)).toEqual([sha256]);
  });

  it('gives up on a lasting 5xx, and leaves nothing behind', async () => {
    proxy.setFault((req) => (req.method === 'PUT' ? { status: 500 } : undefined));
    const err = await failureOf(store.put('never/there', Buffer.from('x')));
    expect(err).toBeInstanceOf(TransientStoreError);
    expect(err.message).toBe(`PUT never/there at ${store.url}: HTTP 500`);
    proxy.setFault(null);
    expect(await store.head('never/there')).toBeUndefined();
  });

  it('creates missing collections once, however many uploads need them at once', async () => {
    await store.put('exists', Buffer.from('the store itself')); // whatever ran before
    const before = (await server.requests()).length;
    await Promise.all(Array.from({ length: 8 }, (_, i) => store.put(`fresh/deep/dir/${i}`, Buffer.from(String(i)))));
    const mkcols = (await server.requests()).slice(before).filter((r) => r.method === 'MKCOL');
    // Up until one can be made (409: its parent is missing too), then down: each made once, for all eight PUTs.
    expect(mkcols.map((r) => `${r.status} ${r.path}`)).toEqual([
      '409 /repo/faults/fresh/deep/dir/',
      '409 /repo/faults/fresh/deep/',
      '201 /repo/faults/fresh/',
      '201 /repo/faults/fresh/deep/',
      '201 /repo/faults/fresh/deep/dir/',
    ]);
    const listed: string[] = [];
    for await (const { key } of store.list('fresh/')) listed.push(key);
    expect(listed.sort()).toEqual(Array.from({ length: 8 }, (_, i) => `fresh/deep/dir/${i}`));
  });
});

describeWithDav(
  'dav+https:// with a site CA',
  () => {
    let server: DavServer;
    let work: Awaited<ReturnType<typeof tempDir>>;
    beforeAll(async () => {
      server = await startDavServer({ tls: true });
      work = await tempDir('dav-tls');
      await writeTree(join(work.path, 'repo'), TWO_FAMILIES);
    });
    afterAll(async () => {
      await server?.stop();
      await work?.remove();
    });

    it('publishes and lists over TLS when NODE_EXTRA_CA_CERTS names the CA, and says what to do when not', async () => {
      const store = server.storeUrl('/repo/tls');
      const env = { REZFS_HTTP_USER: server.publisher.user, REZFS_HTTP_PASSWORD: server.publisher.password, REZFS_RUNTIME_DIR: join(work.path, 'run') };
      const untrusted = await runCli(['publish', join(work.path, 'repo'), '--store', store], { env });
      expect(untrusted.code).toBe(1);
      expect(untrusted.stderr).toMatch(/^rezfs: GET \S+ at dav\+https:\/\/127\.0\.0\.1:\d+\/repo\/tls\/: \S+ \(self[- ]signed certificate\); if the server's certificate is signed by your own CA, point NODE_EXTRA_CA_CERTS at its PEM bundle\n$/);
      const trusted = { ...env, NODE_EXTRA_CA_CERTS: server.caFile! };
      const published = await runCli(['publish', join(work.path, 'repo'), '--store', store], { env: trusted });
      expect(published.code, published.stderr).toBe(0);
      const listed = await runCli(['ls', '--store', store], { env: trusted });
      expect(listed.stdout).toMatch(/^bar\t1 version\t.*\nfoo\t1 version\t/);
    });
  },
  { tls: true },
);
