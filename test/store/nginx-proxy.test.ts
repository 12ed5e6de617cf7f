import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { findNginx, startNginxCache, type NginxCache } from '../support/nginx.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { digest } from '../support/store-testing.js';

const nginx = findNginx();
if (!nginx) console.warn('[nginx-proxy.test] nginx is not installed (apt-get install nginx-light): the site-proxy test is skipped');

const MiB = 1024 * 1024;

describe.skipIf(!nginx)('http:// store behind an nginx proxy_cache in front of the S3 server (skipped without nginx)', () => {
  let server: S3TestServer;
  let proxy: NginxCache;
  let saved: NodeJS.ProcessEnv;
  const pack = randomBytes(3 * MiB + 12_345);
  const shard = Buffer.from('{"versions":{}}');
  const originGets = (key: string) => server.requests.count({ method: 'GET', keyPrefix: `site/${key}` });

  beforeAll(async () => {
    server = await startS3Server();
    saved = { ...process.env };
    Object.assign(process.env, server.env);
    const publisher = openStore(server.storeUrl('site'));
    await publisher.put('packs/p1', pack);
    await publisher.put('families/f1.json', shard);
    await publisher.put('index/HEAD', Buffer.from('h1'));
    await publisher.close();
    // s3rver serves anonymous path-style GETs, like a public-read bucket.
    proxy = await startNginxCache(nginx!, server.endpoint);
  });
  afterAll(async () => {
    await proxy?.stop();
    process.env = saved;
    await server?.stop();
  });

  /** What a mount reads for one package: the pointer, a shard, and 1 MiB blocks of the pack. */
  async function mountStyleRead(store: ObjectStore): Promise<void> {
    expect((await store.get('index/HEAD')).toString()).toBe('h1');
    expect(await store.get('families/f1.json')).toEqual(shard);
    for (let block = 0; block * MiB < pack.length; block++) {
      const [start, end] = [block * MiB, Math.min(pack.length, (block + 1) * MiB)];
      expect(digest(await store.getRange('packs/p1', start, end)), `block ${block}`).toBe(digest(pack.subarray(start, end)));
    }
    expect(digest(await store.getRange('packs/p1', MiB - 10, MiB + 10))).toBe(digest(pack.subarray(MiB - 10, MiB + 10))); // across slices
  }

  it('serves a second mount-style read from the proxy: the origin sees no new GET for immutable objects', async () => {
    const first = openStore(`${proxy.url}/${server.bucket}/site/`);
    await mountStyleRead(first);
    await first.close();
    const [packGets, shardGets, headGets] = [originGets('packs/'), originGets('families/'), originGets('index/HEAD')];
    expect(packGets, await proxy.errorLog()).toBeGreaterThan(0);

    const second = openStore(`${proxy.url}/${server.bucket}/site/`); // another host: its own caches are cold
    await mountStyleRead(second);
    expect(originGets('packs/')).toBe(packGets);
    expect(originGets('families/')).toBe(shardGets);
    expect(originGets('index/HEAD')).toBe(headGets); // the mutable pointer too, for the 5 s the site config allows
    await second.close();
  });
});
