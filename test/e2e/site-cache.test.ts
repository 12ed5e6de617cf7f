import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.js';
import { forceUnmountAll, mountStore, runCli, runProcess, type MountHandle } from '../support/cli.js';
import { findNginx, startNginxCache, type NginxCache } from '../support/nginx.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const NGINX = findNginx();
if (!NGINX) console.warn('[site-cache.test] nginx is not installed (apt-get install nginx-light): the herd test is skipped');

const MOUNTS = 8;
const MiB = 1024 * 1024;
const PREFIX = 'site';
/** The unit a slice cache fetches: a whole document, or one 1 MiB slice of a pack (examples/nginx: `slice 1m`). */
const pieceOf = (r: { key: string; range?: string }) => `${r.key} ${r.range ?? ''}`;

/**
 * A farm starting at once behind the shipped nginx site cache (examples/nginx/rezfs-site-cache.conf): 8 real mounts,
 * each its own process and cold cache, read the same package at the same moment; the origin must see each object
 * (each slice of a pack) about once.
 */
describe.skipIf(!NGINX)('a herd of mounts behind the nginx site cache (skipped without nginx)', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let s3: S3TestServer;
  let nginx: NginxCache;
  const mounts: MountHandle[] = [];
  const files = { 'bin/tool': randomBytes(40_000), 'lib/big.so': randomBytes(6 * MiB + 12_345), 'lib/small.so': randomBytes(300_000) };

  beforeAll(async () => {
    work = await tempDir('site-cache');
    s3 = await startS3Server();
    const repo = join(work.path, 'repo');
    await writeTree(repo, {
      'tool/1.0/package.py': packageDefinition('tool', '1.0'),
      ...Object.fromEntries(Object.entries(files).map(([name, data]) => [`tool/1.0/${name}`, data])),
      'other/2.0/package.py': packageDefinition('other', '2.0'),
      'other/2.0/data.bin': randomBytes(2 * MiB),
    });
    expect((await runCli(['publish', repo, '--store', s3.storeUrl(PREFIX)], { env: s3.env })).code).toBe(0);
    nginx = await startNginxCache(NGINX!, s3.endpoint);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(mounts.map((m) => m.unmount()));
    await forceUnmountAll([work.path]);
    await nginx?.stop();
    await s3?.stop();
    await work?.remove();
  });

  it(`${MOUNTS} cold mounts read one package at once: origin requests and bytes <= 1.1x the unique objects`, async () => {
    s3.requests.reset();
    const store = `${nginx.url}/${s3.bucket}/${PREFIX}/`;
    const started = await Promise.all(
      Array.from({ length: MOUNTS }, (_, i) =>
        mountStore({ store, mountpoint: join(work.path, `mnt${i}`), cacheDir: join(work.path, `cache${i}`), env: { REZFS_RUNTIME_DIR: join(work.path, 'run') }, timeoutMs: 120_000 }),
      ),
    );
    mounts.push(...started);
    // Each node reads the payload in its own process, all at once (sha256sum: what a job's loader does, in short).
    const paths = Object.keys(files).map((name) => `tool/1.0/${name}`);
    const sums = await Promise.all(mounts.map((m) => runProcess('sha256sum', paths, { cwd: m.mountpoint, timeoutMs: 120_000 })));
    const expected = Object.values(files).map((data) => createHash('sha256').update(data).digest('hex'));
    for (const [i, sum] of sums.entries()) {
      expect(sum.code, `mount ${i}: ${sum.stderr}`).toBe(0);
      expect(sum.stdout.split('\n').filter(Boolean).map((line) => line.split(' ')[0])).toEqual(expected);
    }

    const origin = s3.requests.filter((r) => r.key.startsWith(`${PREFIX}/`));
    const pieces = new Set(origin.map(pieceOf));
    const sizes = new Map<string, number>();
    const saved = { ...process.env };
    Object.assign(process.env, s3.env); // this process lists the store with the test server's credentials
    try {
      const direct = openStore(s3.storeUrl(PREFIX));
      for await (const o of direct.list('')) sizes.set(`${PREFIX}/${o.key}`, o.size);
      await direct.close();
    } finally {
      process.env = saved;
    }
    const keys = new Set(origin.map((r) => r.key));
    const uniqueBytes = [...keys].reduce((sum, key) => sum + (sizes.get(key) ?? 0), 0);
    const originBytes = origin.reduce((sum, r) => sum + r.responseBytes, 0);
    const packs = [...keys].filter((key) => key.includes('/packs/'));
    console.log(
      `[site-cache.test] ${MOUNTS} mounts: origin ${origin.length} requests for ${pieces.size} unique objects/slices ` +
        `(${(origin.length / pieces.size).toFixed(2)}x), ${originBytes} bytes for ${uniqueBytes} unique (${(originBytes / uniqueBytes).toFixed(2)}x), ` +
        `${packs.length} pack(s)`,
    );
    // What was read came through the cache in slices, not as whole packs and not per node; other's pack not at all.
    expect(packs).toHaveLength(1);
    expect(origin.filter((r) => r.key === packs[0]).every((r) => r.range !== undefined)).toBe(true);
    expect(origin.filter((r) => r.key === packs[0]).length).toBeLessThanOrEqual(Math.ceil(sizes.get(packs[0]!)! / MiB) + 1);
    expect(origin.length, origin.map(pieceOf).join('\n')).toBeLessThanOrEqual(Math.floor(1.1 * pieces.size));
    expect(originBytes).toBeLessThanOrEqual(1.1 * uniqueBytes);
  }, 300_000);
});
