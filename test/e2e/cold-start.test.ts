/**
 * Cold start over a network (issue 12), with real processes: s3rver behind the latency proxy (40 ms to the first
 * byte of every response), a fresh `rezfs mount` with an empty cache dir, stock rez. What is asserted is counted at
 * the proxy: how many catalog requests are in flight at once, the longest serial chain of requests, the methods
 * sent. Needs rez (REZ_BIN or rez on PATH); skipped, saying so, without it.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRez, forceUnmountAll, isolatedRezEnv, mountStore, runCli, runRez, type MountHandle } from '../support/cli.js';
import { startLatencyProxy, trafficStats, type LatencyProxy, type ProxiedRequest } from '../support/latency-proxy.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { generateStartupRepo, type StartupRepo } from '../support/startup-repo.js';

const REZ = findRez();
const SKIP = REZ ? undefined : 'rez not found: set REZ_BIN to the directory containing `rez`, or put rez on PATH';
if (SKIP) console.warn(`[test/e2e/cold-start] skipping: ${SKIP}`);
/** Long enough that requests sent together overlap at the proxy even when a loaded host issues them slowly. */
const LATENCY_MS = 40;
const FUSE = process.env.REZFS_FUSE ?? 'auto';

// rez treats repositories under its tmpdir (/tmp) as temporary: keep everything under /var/tmp.
const work = path.join(process.env.REZFS_REZ_TEST_DIR ?? '/var/tmp', `rezfs-cold-start-${process.pid}`);
let s3: S3TestServer;
let proxy: LatencyProxy;
let env: Record<string, string>;
let repo: StartupRepo;
let mounts = 0;

async function freshMount(store: string): Promise<MountHandle> {
  const id = `m${++mounts}`;
  return mountStore({ store, mountpoint: path.join(work, id), cacheDir: path.join(work, `${id}-cache`), env, extraArgs: ['--fuse', FUSE] });
}

function rezEnv(packagesPath: string, args: string[]) {
  return runRez(['env', ...args], { rez: REZ!, packagesPath, cleanEnv: true, cwd: work, timeoutMs: 180_000, env: isolatedRezEnv(path.join(work, 'home'), packagesPath) });
}

describe.skipIf(SKIP !== undefined)(`a cold mount behind ${LATENCY_MS} ms of latency`, () => {
  beforeAll(async () => {
    await mkdir(work, { recursive: true });
    repo = generateStartupRepo(path.join(work, 'repo'), { families: 34, versions: 2, appModules: 40, bigBinaries: [3 << 20], scatteredReads: 12 });
    s3 = await startS3Server();
    proxy = await startLatencyProxy(s3.endpoint);
    env = { ...s3.env, AWS_ENDPOINT_URL: proxy.url };
    const published = await runCli(['publish', repo.root, '--store', s3.storeUrl('cold')], { env, timeoutMs: 120_000 });
    expect(published.code, published.stderr).toBe(0);
    proxy.setShape({ firstByteMs: LATENCY_MS });
  });
  afterAll(async () => {
    await forceUnmountAll([work]);
    await proxy?.stop();
    await s3?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('resolves a request over 30 families with its catalog fetches >= 8 in flight and a chain of <= 10', async () => {
    expect(repo.resolvedPackages).toBeGreaterThan(30);
    const local = await rezEnv(repo.root, [...repo.resolveRequest, '--', 'printenv', 'REZ_USED_RESOLVE']);
    expect(local.code, local.stderr).toBe(0);
    proxy.reset();
    const mount = await freshMount(s3.storeUrl('cold'));
    let requests: ProxiedRequest[] = [];
    try {
      const resolved = await rezEnv(mount.mountpoint, [...repo.resolveRequest, '--', 'true']);
      expect(resolved.code, resolved.stderr).toBe(0);
      requests = proxy.requests();
      // Then what it resolved (printenv runs a program: the dynamic loader looks into every version's lib dir).
      const onMount = await rezEnv(mount.mountpoint, [...repo.resolveRequest, '--', 'printenv', 'REZ_USED_RESOLVE']);
      expect(onMount.stdout).toBe(local.stdout);
      expect(onMount.stdout.split(' ')).toHaveLength(repo.resolvedPackages);
    } finally {
      await mount.unmount();
    }
    const catalog = trafficStats(requests.filter((r) => /\/(families|index)\/|rezfs\.json$/.test(r.path)));
    expect(catalog.byKind['GET families']).toBeGreaterThan(30);
    expect(catalog.peakInFlight).toBeGreaterThanOrEqual(8);
    // Mount (2 waves), then the shards in waves of 16: nothing waits one round trip per family.
    expect(trafficStats(requests).chain).toBeLessThanOrEqual(10);
    expect(requests.every((r) => r.method === 'GET' || r.method === 'HEAD')).toBe(true);
  });
});
