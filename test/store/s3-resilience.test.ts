import { CompleteMultipartUploadCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openStore, StoreAccessError, StoreTimeoutError, TransientStoreError, type ObjectStore } from '../../src/store/index.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { digest, expectNoSecrets, failureOf, FAST } from '../support/store-testing.js';

let server: S3TestServer;
let saved: NodeJS.ProcessEnv;
let store: ObjectStore;
const body = randomBytes(512 * 1024);
const gets = () => server.requests.count({ method: 'GET', keyPrefix: 'res/packs/' });
const slowDown = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';

beforeAll(async () => {
  server = await startS3Server();
  saved = { ...process.env };
  Object.assign(process.env, server.env);
  store = openStore(server.storeUrl('res'), FAST);
  await store.put('packs/p', body);
});
afterAll(async () => {
  await store?.close();
  process.env = saved;
  await server?.stop();
});
beforeEach(() => server.setInterceptor(null));

/** Intercept the first `n` GETs of packs, then let everything through. */
function firstGets(n: number, result: ReturnType<Parameters<S3TestServer['setInterceptor']>[0] & object>) {
  let left = n;
  server.setInterceptor((r) => (r.method === 'GET' && r.key.startsWith('res/packs/') && left-- > 0 ? result : undefined));
}

describe('s3:// store under faults', () => {
  it('a multipart completion whose answer is lost counts once the object is there whole', async () => {
    // The first completion never gets an answer, but the server completes the upload all the same (done here
    // behind the proxy's back); the client's retries then fail for want of the upload (s3rver says 500). 20 MiB: three parts.
    const big = randomBytes(20 * 1024 * 1024);
    const direct = new S3Client({ endpoint: server.directEndpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    // A part's ETag is the MD5 of its bytes (8 MiB parts).
    const Parts = [0, 1, 2].map((i) => ({ PartNumber: i + 1, ETag: `"${createHash('md5').update(big.subarray(i * 8 << 20, (i + 1) * 8 << 20)).digest('hex')}"` }));
    let completions = 0;
    let behindTheBack: Promise<unknown> | undefined;
    server.setInterceptor((r) => {
      if (r.method !== 'POST' || r.key !== 'res/big' || !/uploadId=/.test(r.query)) return undefined;
      if (++completions > 1) return undefined;
      const UploadId = new URLSearchParams(r.query).get('uploadId')!;
      behindTheBack = direct.send(new CompleteMultipartUploadCommand({ Bucket: server.bucket, Key: 'res/big', UploadId, MultipartUpload: { Parts } }));
      return { hang: true };
    });
    try {
      await store.putStream('big', async function* () {
        for (let o = 0; o < big.length; o += 1024 * 1024) yield big.subarray(o, o + 1024 * 1024);
      });
    } finally {
      await behindTheBack;
      direct.destroy();
    }
    expect(completions).toBeGreaterThanOrEqual(2);
    // The retries really failed for want of the upload (s3rver answers 500, as in the issue): the path under test.
    expect(server.requests.filter({ method: 'POST', keyPrefix: 'res/big' }).map((r) => r.status)).toContain(500);
    expect(digest(await store.get('big'))).toBe(digest(big));
  }, 30_000);

  it('retries a 503 SlowDown burst (our policy, not the SDK: one request per attempt)', async () => {
    firstGets(2, { status: 503, body: slowDown });
    const before = gets();
    expect(digest(await store.getRange('packs/p', 1, 100_001))).toBe(digest(body.subarray(1, 100_001)));
    expect(gets() - before).toBe(3);
  });

  it('honours Retry-After', async () => {
    firstGets(1, { status: 503, body: slowDown, headers: { 'retry-after': '1' } });
    const started = Date.now();
    await store.getRange('packs/p', 0, 10);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
  });

  it('gives up after its attempts with a transient error naming the store and the code', async () => {
    firstGets(100, { status: 500, body: '<Error><Code>InternalError</Code></Error>' });
    const before = gets();
    const err = await failureOf(store.get('packs/p'));
    expect(err).toBeInstanceOf(TransientStoreError);
    expect(err.message).toBe('GET packs/p at s3://rezfs-test/res/: HTTP 500 InternalError');
    expect(gets() - before).toBe(3);
  });

  it('does not retry access denied, and says what to check', async () => {
    firstGets(100, { status: 403, body: '<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>' });
    const before = gets();
    const err = await failureOf(store.get('packs/p'));
    expect(err).toBeInstanceOf(StoreAccessError);
    expect(err.message).toMatch(/^access denied to s3:\/\/rezfs-test\/res\/ \(HTTP 403 AccessDenied\) for GET packs\/p: check the credentials/);
    expect(gets() - before).toBe(1);
  });

  it('times out a hung request on every attempt', async () => {
    firstGets(100, { hang: true });
    const started = Date.now();
    const err = await failureOf(store.getRange('packs/p', 0, 10));
    expect(err).toBeInstanceOf(StoreTimeoutError);
    expect(err.message).toBe('GET packs/p at s3://rezfs-test/res/: no response within 400 ms');
    expect(Date.now() - started).toBeLessThan(3 * 400 + 1_000);
  });

  it('times out a hung HEAD and PUT too', async () => {
    server.setInterceptor(() => ({ hang: true }));
    await expect(store.head('packs/p')).rejects.toBeInstanceOf(StoreTimeoutError);
    await expect(store.put('packs/q', Buffer.from('q'))).rejects.toBeInstanceOf(StoreTimeoutError);
  });
});

describe('s3:// store with a broken body (fault proxy in front)', () => {
  let proxy: FaultProxy;
  let viaProxy: ObjectStore;
  beforeAll(async () => {
    proxy = await startFaultProxy(server.endpoint);
    process.env.AWS_ENDPOINT_URL = proxy.url; // the SDK reads it when it first sends
    viaProxy = openStore(server.storeUrl('res'), FAST);
  });
  afterAll(async () => {
    await viaProxy?.close();
    await proxy?.stop();
    process.env.AWS_ENDPOINT_URL = server.endpoint;
  });

  it('retries a body that stalls or is cut off, and returns the right bytes', async () => {
    for (const fault of [{ afterBytes: 100_000, then: 'stall' as const }, { afterBytes: 100_000, then: 'cut' as const }]) {
      let left = 1;
      proxy.setFault((req) => (req.method === 'GET' && left-- > 0 ? fault : undefined));
      const before = gets();
      expect(digest(await viaProxy.get('packs/p')), fault.then).toBe(digest(body));
      expect(gets() - before, fault.then).toBe(2);
    }
  });

  it('fails a body that always stalls with a timeout', async () => {
    proxy.setFault(() => ({ afterBytes: 10, then: 'stall' }));
    await expect(viaProxy.getRange('packs/p', 0, 200_000)).rejects.toThrow(/GET packs\/p at s3:\/\/rezfs-test\/res\/: stalled/);
  });
});

describe('s3:// store credentials', () => {
  it('never puts the secret key or session token in an error', async () => {
    const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCY-TOP-SECRET';
    const token = 'FwoGZXIvYXdzEJr-SESSION-TOKEN-SECRET';
    const env = { ...process.env };
    process.env.AWS_SECRET_ACCESS_KEY = secret;
    process.env.AWS_SESSION_TOKEN = token;
    const leaky = openStore(server.storeUrl('res'), FAST);
    const failures: Error[] = [];
    try {
      failures.push(await failureOf(leaky.get('packs/none-such'))); // s3rver refuses the signature, or 404
      for (const result of [{ status: 403, body: '<Error><Code>AccessDenied</Code></Error>' }, { status: 503, body: slowDown }, { hang: true as const }]) {
        server.setInterceptor(() => result);
        failures.push(await failureOf(leaky.get('packs/p')));
        failures.push(await failureOf(leaky.put('packs/x', Buffer.from('x'))));
      }
    } finally {
      server.setInterceptor(null);
      process.env = env;
      await leaky.close();
    }
    for (const err of failures) expectNoSecrets(err, [secret, token]);
    expect(failures.map((e) => e.name)).toContain('StoreAccessError');
  });
});
