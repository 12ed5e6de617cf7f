import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forceUnmountAll, mountStore, runCli, runProcess, type MountHandle } from '../support/cli.js';
import { freePort } from '../support/ports.js';
import { sampleSum, scrape } from '../support/prom.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const MOUNTS = 3;
const MiB = 1024 * 1024;
const SLOW_DOWN = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';

/**
 * A store that throttles a farm: the S3 server's proxy (its status interceptor) answers 503 SlowDown to the first
 * request for every object (every range of a pack) and to every 5th request besides. Each mount reads its own
 * copy of the store (its own prefix), so every mount is certain to meet 503s. Every mount's reads must complete
 * with the right bytes, and each mount's shared backoff must show in its metrics.
 */
describe('mounts against a store answering 503 SlowDown', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let s3: S3TestServer;
  const mounts: MountHandle[] = [];
  const payload = randomBytes(5 * MiB + 999);

  beforeAll(async () => {
    work = await tempDir('throttle');
    s3 = await startS3Server();
    const repo = join(work.path, 'repo');
    await writeTree(repo, { 'tool/1.0/package.py': packageDefinition('tool', '1.0'), 'tool/1.0/lib/big.so': payload, 'tool/1.0/bin/tool': randomBytes(50_000) });
    for (let i = 0; i < MOUNTS; i++) expect((await runCli(['publish', repo, '--store', s3.storeUrl(`farm${i}`)], { env: s3.env })).code).toBe(0);
  }, 60_000);
  afterAll(async () => {
    s3?.setInterceptor(null);
    await Promise.all(mounts.map((m) => m.unmount()));
    await forceUnmountAll(work ? [work.path] : []);
    await s3?.stop();
    await work?.remove();
  });

  it(`${MOUNTS} mounts read everything through the 503s; the backoff shows in each mount's metrics`, async () => {
    const seen = new Map<string, number>();
    let requests = 0;
    let injected = 0;
    s3.setInterceptor((r) => {
      if (!r.key.startsWith('farm')) return undefined;
      const piece = `${r.method} ${r.key} ${r.range ?? ''}`;
      const asked = (seen.get(piece) ?? 0) + 1;
      seen.set(piece, asked);
      if (asked > 1 && ++requests % 5 !== 0) return undefined;
      injected++;
      return { status: 503, body: SLOW_DOWN, headers: { 'content-type': 'application/xml' } };
    });
    const ports = await Promise.all(Array.from({ length: MOUNTS }, () => freePort()));
    mounts.push(
      ...(await Promise.all(
        ports.map((port, i) =>
          mountStore({
            store: s3.storeUrl(`farm${i}`),
            mountpoint: join(work.path, `mnt${i}`),
            cacheDir: join(work.path, `cache${i}`),
            env: { ...s3.env, REZFS_RUNTIME_DIR: join(work.path, 'run') },
            extraArgs: ['--metrics', `127.0.0.1:${port}`, '--read-timeout', '60s'],
            timeoutMs: 120_000,
          }),
        ),
      )),
    );
    const sums = await Promise.all(mounts.map((m) => runProcess('sha256sum', ['tool/1.0/lib/big.so', 'tool/1.0/bin/tool'], { cwd: m.mountpoint, timeoutMs: 120_000 })));
    const big = createHash('sha256').update(payload).digest('hex');
    for (const [i, sum] of sums.entries()) {
      expect(sum.code, `mount ${i}: ${sum.stderr}`).toBe(0);
      expect(sum.stdout.split(' ')[0]).toBe(big);
    }

    const texts = await Promise.all(ports.map((port) => scrape(`http://127.0.0.1:${port}/metrics`)));
    const per = texts.map((t) => ({
      throttled: sampleSum(t, 'rezfs_store_throttled_total'),
      errors: sampleSum(t, 'rezfs_store_errors_total', { error: 'throttled' }),
      retries: sampleSum(t, 'rezfs_store_retries_total'),
      pauses: sampleSum(t, 'rezfs_store_backoff_pauses_total'),
      pausedSec: sampleSum(t, 'rezfs_store_backoff_seconds_total'),
      readErrors: sampleSum(t, 'rezfs_errors_total', { kind: 'read' }),
    }));
    console.log(`[throttle.test] ${injected} 503s injected; per mount: ${JSON.stringify(per)}`);
    for (const [i, m] of per.entries()) {
      expect(m.throttled, `mount ${i} saw 503s`).toBeGreaterThan(0);
      expect(m.retries, `mount ${i} retried`).toBeGreaterThanOrEqual(m.throttled);
      expect(m.pauses, `mount ${i} paused for its shared backoff`).toBeGreaterThan(0);
      expect(m.pausedSec).toBeGreaterThan(0);
      expect(m.errors, 'no request failed for good: every 503 was retried through').toBe(0);
      expect(m.readErrors).toBe(0);
    }
    expect(per.reduce((sum, m) => sum + m.throttled, 0)).toBe(injected);
  }, 300_000);
});
