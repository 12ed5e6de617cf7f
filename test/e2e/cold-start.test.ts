/**
 * Cold start over a network (issue 12), with real processes: s3rver behind the latency proxy (40 ms to the first
 * byte of every response), a fresh `rezfs mount` with an empty cache dir, stock rez. What is asserted is counted at
 * the proxy: how many catalog requests are in flight at once, the longest serial chain of requests, the methods
 * sent (and faults made at the store: a profile served cut short, profiles written raw that a mount must refuse). Needs rez (REZ_BIN or rez on PATH); skipped, saying so, without it.
 */
import type { KeyObject } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog, encodeDocument, generateSigningKeys, keys, loadPrivateKey, type StartupProfile } from '../../src/catalog/index.js';
import { silentLog } from '../../src/log.js';
import { updateCatalog } from '../../src/publish/catalog-update.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
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
let localLaunch = '';

async function freshMount(store: string, extraArgs: string[] = []): Promise<MountHandle> {
  const id = `m${++mounts}`;
  return mountStore({ store, mountpoint: path.join(work, id), cacheDir: path.join(work, `${id}-cache`), env, extraArgs: ['--fuse', FUSE, ...extraArgs] });
}

function rezEnv(packagesPath: string, args: string[]) {
  return runRez(['env', ...args], { rez: REZ!, packagesPath, cleanEnv: true, cwd: work, timeoutMs: 180_000, env: isolatedRezEnv(path.join(work, 'home'), packagesPath) });
}

async function launch(packagesPath: string): Promise<string> {
  const r = await rezEnv(packagesPath, [...repo.launchRequest, '--', ...repo.launchCommand]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

/** A cold launch on a fresh mount of `prefix` (its own, empty cache dir): what it printed and what the proxy saw. */
async function coldLaunch(prefix: string, extraArgs: string[] = []): Promise<{ printed: string; cacheDir: string; requests: ProxiedRequest[] }> {
  proxy.reset();
  const mount = await freshMount(s3.storeUrl(prefix), extraArgs);
  try {
    return { printed: await launch(mount.mountpoint), cacheDir: path.join(work, `m${mounts}-cache`), requests: proxy.requests() };
  } finally {
    await mount.unmount();
  }
}

const packs = (requests: ProxiedRequest[]) => trafficStats(requests.filter((r) => r.path.includes('/packs/')));

/**
 * The store at `url` opened in this process with the test server's credentials (through its counting proxy). The S3
 * client reads them at its first request, so they stay in this process's environment until `close`.
 */
function openAs(url: string): { store: ObjectStore; close: () => Promise<void> } {
  const saved = { ...process.env };
  Object.assign(process.env, s3.env);
  const store = openStore(url);
  return {
    store,
    close: async () => {
      await store.close();
      process.env = saved;
    },
  };
}

/** Names profile `hash` in a version's record, unchecked (as a buggy or foreign tool could), in a new generation. */
async function nameProfile(store: ObjectStore, family: string, version: string, hash: string, signingKey?: KeyObject): Promise<void> {
  await updateCatalog(
    store,
    async (draft) => {
      const shard = structuredClone((await draft.shard(family))!);
      shard.versions[version]!.profile = hash;
      draft.setShard(shard);
    },
    { log: silentLog, ...(signingKey ? { signingKey } : {}) },
  );
}

describe.skipIf(SKIP !== undefined)(`a cold mount behind ${LATENCY_MS} ms of latency`, () => {
  beforeAll(async () => {
    await mkdir(work, { recursive: true });
    // The app's pack (32 MiB) is too big to be preloaded whole: without a profile, its scattered reads wait on the store.
    repo = generateStartupRepo(path.join(work, 'repo'), { families: 34, versions: 2, appModules: 60, bigBinaries: [32 << 20], scatteredReads: 48 });
    s3 = await startS3Server();
    proxy = await startLatencyProxy(s3.endpoint);
    env = { ...s3.env, AWS_ENDPOINT_URL: proxy.url };
    for (const prefix of ['cold', 'profiled']) {
      const published = await runCli(['publish', repo.root, '--store', s3.storeUrl(prefix)], { env, timeoutMs: 120_000 });
      expect(published.code, published.stderr).toBe(0);
    }
    localLaunch = await launch(repo.root);
    expect(localLaunch).toMatch(/^app-start: \d+ modules, \d+ bytes read, sha256 [0-9a-f]{64}$/);
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

  it('follows a profile recorded by one mount: a second mount with an empty cache reads the same bytes in far fewer waves', async () => {
    const first = await coldLaunch('profiled');
    expect(first.printed).toBe(localLaunch);
    const attached = await runCli(['profile', '--store', s3.storeUrl('profiled'), '--from-cache', first.cacheDir], { env, timeoutMs: 60_000 });
    expect(attached.code, attached.stderr).toBe(0);
    expect(attached.stdout).toMatch(/^profiled \d+ versions \(.* of startup reads\) into s3:\/\/.*generation \d+/);

    const second = await coldLaunch('profiled');
    expect(second.printed).toBe(localLaunch); // the same modules and the same bytes of the binaries, hash for hash
    const before = packs(first.requests);
    const after = packs(second.requests);
    console.log(`[cold-start] payload GETs without a profile: ${before.requests}, chain ${before.chain}, peak ${before.peakInFlight}; with: ${after.requests}, chain ${after.chain}, peak ${after.peakInFlight}; whole launch chain ${trafficStats(first.requests).chain} -> ${trafficStats(second.requests).chain}`);
    expect(before.chain).toBeGreaterThanOrEqual(20);
    expect(after.chain).toBeLessThanOrEqual(before.chain / 3);
    expect(after.peakInFlight).toBeGreaterThanOrEqual(8);
    expect(trafficStats(second.requests).chain).toBeLessThan(trafficStats(first.requests).chain / 2);
    expect([...first.requests, ...second.requests].every((r) => r.method === 'GET' || r.method === 'HEAD')).toBe(true);
  });

  it('ignores a truncated profile with one log line, and the launch reads the same bytes', async () => {
    // The store answers the profile's GET with a cut-short body, as a broken transfer or cache would.
    s3.setInterceptor((r) => (r.method === 'GET' && r.key.includes('/profiles/') ? { status: 200, body: '{"format":"1.2.0","family":"app","packs":[', headers: { 'content-type': 'application/json' } } : undefined));
    let launched: Awaited<ReturnType<typeof coldLaunch>>;
    try {
      launched = await coldLaunch('profiled');
    } finally {
      s3.setInterceptor(null);
    }
    expect(launched.printed).toBe(localLaunch);
    // Asked for (a document failing its hash is asked for once more, from the store itself rather than a copy).
    expect(launched.requests.filter((r) => r.path.includes('/profiles/')).length).toBeGreaterThanOrEqual(1);
    const lines = (await readFile(path.join(launched.cacheDir, 'mount.log'), 'utf8')).split('\n').filter((l) => l.includes('startup profile'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/startup profile profiles\/[0-9a-f]{64}\.json of app\/[^ ]+ ignored: /);
  });

  it('ignores a profile naming bytes its pack lacks, one for another version, and an unsigned one on a signed store, with one log line each; the launches read the same bytes', async () => {
    const [family, version] = repo.appDir.split('/') as [string, string];
    const lib = repo.libraryFamilies[0]!;
    // The test process writes to the store as a foreign tool could: raw profiles named in the app's record.
    const { store, close } = openAs(s3.storeUrl('profiled'));
    const keysDir = path.join(work, 'keys');
    await mkdir(keysDir, { recursive: true });
    const signing = generateSigningKeys();
    await writeFile(path.join(keysDir, 'k.pem'), signing.privatePem, { mode: 0o600 });
    await writeFile(path.join(keysDir, 'k.pub'), signing.publicPem);
    const signingKey = loadPrivateKey(signing.privatePem, 'test key');
    const signed = await runCli(['publish', repo.root, '--store', s3.storeUrl('signed'), '--sign-key', path.join(keysDir, 'k.pem')], { env, timeoutMs: 120_000 });
    expect(signed.code, signed.stderr).toBe(0);
    const { store: signedStore, close: closeSigned } = openAs(s3.storeUrl('signed'));
    try {
      let catalog = await Catalog.open(store);
      if (!(await catalog.shard(family)).versions[version]?.profile) {
        // Run alone (vitest -t): record and attach the app's profile the way the test before this one does.
        const first = await coldLaunch('profiled');
        const attached = await runCli(['profile', '--store', s3.storeUrl('profiled'), '--from-cache', first.cacheDir], { env, timeoutMs: 60_000 });
        expect(attached.code, attached.stderr).toBe(0);
        catalog = await Catalog.open(store);
      }
      const profile = await catalog.profile((await catalog.shard(family)).versions[version]!.profile!);
      const libShard = await catalog.shard(lib);
      const [libVersion, libRecord] = Object.entries(libShard.versions)[0]!;
      const signedApp = (await (await Catalog.open(signedStore)).shard(family)).versions[version]!; // the same payload: its packs, by hash
      const cases: { what: string; target: ObjectStore; doc: StartupProfile; reason: RegExp; args: string[] }[] = [
        {
          what: 'bytes its pack lacks',
          target: store,
          doc: { ...profile, packs: [{ pack: profile.packs[0]!.pack, ranges: [[0, 100], [2 ** 40, 2 ** 40 + 4096]] }] },
          reason: /not sorted ranges inside its \d+ bytes/,
          args: [],
        },
        { what: 'another version', target: store, doc: { ...profile, family: lib, version: libVersion, manifest: libRecord.manifest }, reason: /it is for .* not this version/, args: [] },
        { what: 'unsigned, on a signed store', target: signedStore, doc: { ...profile, manifest: signedApp.manifest }, reason: /is not signed, and this mount trusts only signed catalogs/, args: ['--trust-key', path.join(keysDir, 'k.pub')] },
      ];
      for (const c of cases) {
        const doc = encodeDocument(c.doc);
        await c.target.put(keys.profile(doc.hash), doc.bytes);
        await nameProfile(c.target, family, version, doc.hash, c.target === signedStore ? signingKey : undefined);
        const launched = await coldLaunch(c.target === signedStore ? 'signed' : 'profiled', c.args);
        expect(launched.printed, c.what).toBe(localLaunch);
        const lines = (await readFile(path.join(launched.cacheDir, 'mount.log'), 'utf8')).split('\n').filter((l) => l.includes('startup profile'));
        expect(lines, c.what).toHaveLength(1);
        expect(lines[0], c.what).toMatch(new RegExp(`startup profile profiles/${doc.hash}\\.json of ${family}/${version} ignored: `));
        expect(lines[0], c.what).toMatch(c.reason);
        expect(launched.requests.every((r) => r.method === 'GET' || r.method === 'HEAD')).toBe(true);
      }
      await nameProfile(store, family, version, encodeDocument(profile).hash); // as it was, for the tests after this one
    } finally {
      await closeSigned();
      await close();
    }
  });

  it('prefetch --context loads a saved context in a few waves, many GETs in flight, startup sets first', async () => {
    const rxt = path.join(work, 'job.rxt');
    const saved = await rezEnv(repo.root, [...repo.launchRequest, '--output', rxt]);
    expect(saved.code, saved.stderr).toBe(0);
    proxy.reset();
    const cacheDir = path.join(work, 'prefetch-cache');
    const prefetched = await runCli(['prefetch', '--context', rxt, '--store', s3.storeUrl('profiled'), '--cache-dir', cacheDir], { env, timeoutMs: 120_000 });
    expect(prefetched.code, prefetched.stderr).toBe(0);
    expect(prefetched.stdout).toMatch(new RegExp(`^prefetched ${repo.resolvedPackages + 1} packages`));
    const requests = proxy.requests();
    const payload = packs(requests);
    const { chain } = trafficStats(requests);
    console.log(`[cold-start] prefetch: ${requests.length} requests, chain ${chain}, payload peak in flight ${payload.peakInFlight}`);
    // Catalog (2 waves), shards, manifests and profiles (a wave each), then the blocks side by side, not in a row.
    expect(chain).toBeLessThanOrEqual(requests.length / 4);
    expect(payload.peakInFlight).toBeGreaterThanOrEqual(8);
    // The app's startup set (its profile's blocks) is asked for before the rest of its pack.
    const app = requests.filter((r) => r.path.includes('/packs/') && r.range && Number(/bytes=(\d+)/.exec(r.range)![1]) > 0);
    const profile = requests.find((r) => r.path.includes('/profiles/'));
    expect(profile).toBeDefined();
    expect(app.length).toBeGreaterThan(0);
    const mount = await mountStore({ store: s3.storeUrl('profiled'), mountpoint: path.join(work, 'prefetched'), cacheDir, env, extraArgs: ['--fuse', FUSE] });
    try {
      proxy.reset();
      expect(await launch(mount.mountpoint)).toBe(localLaunch);
      expect(packs(proxy.requests()).requests).toBe(0); // everything it reads was prefetched
    } finally {
      await mount.unmount();
    }
  });

  it('rezfs profile runs a command on a private mount and publishes what the versions it used read', async () => {
    const run = await runCli(['profile', '--store', s3.storeUrl('cold'), '--', REZ!, 'env', ...repo.launchRequest, '--', ...repo.launchCommand], {
      env: { ...env, ...isolatedRezEnv(path.join(work, 'home'), repo.root) },
      timeoutMs: 180_000,
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(localLaunch); // the command's own output comes through
    const versions = Number(/profiled (\d+) versions/.exec(run.stdout)?.[1]);
    expect(versions).toBeGreaterThan(30); // the app and the libraries it imports
    const profiled = await coldLaunch('cold');
    expect(profiled.printed).toBe(localLaunch);
    expect(profiled.requests.filter((r) => r.path.includes('/profiles/'))).toHaveLength(1); // the app's; the libraries are small: preloaded whole
    expect(packs(profiled.requests).chain).toBeLessThanOrEqual(10);
  });
});
