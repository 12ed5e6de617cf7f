/**
 * Issue 6, "Must show": rezfs across a studio, end to end, through mounts served by other processes.
 *
 * One released repository (12 tool packages, a `studio` package requiring 9 of them, 6 x 4 MiB `bulk` versions, a
 * `hello` package) is published once to a file:// store and replicated object by object into S3 servers (s3rver
 * behind a counting proxy, see test/support/s3-server.ts), so every store holds the same objects. Each block below
 * shows one claim of the issue; the ones that need rez run stock rez against the mount when it is installed.
 * Everything lives under /var/tmp: rez treats repositories under its tmpdir (/tmp) as temporary.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, readdir, lstat, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRez, forceUnmountAll, mountStore, runCli, runProcess, waitFor, type CliResult, type MountHandle } from '../support/cli.js';
import { findNginx, startNginxCache, type NginxCache } from '../support/nginx.js';
import { pseudoRandomBytes, pseudoText, seedFrom } from '../support/repo-generator.js';
import { startS3Server, untilQuiet, type RecordedRequest, type S3TestServer } from '../support/s3-server.js';
import { packageDefinition, writeTree, type Entry } from '../support/small-repo.js';

const MiB = 1024 * 1024;
const REZ = findRez();
const NGINX = findNginx();
if (!REZ) console.warn('[studio.test] rez not found (REZ_BIN or PATH): the rez steps are skipped');
if (!NGINX) console.warn('[studio.test] nginx is not installed (apt-get install nginx-light): the site-proxy test is skipped');

const TOOLS = Array.from({ length: 12 }, (_, i) => `tool${String(i).padStart(2, '0')}`);
/** What `studio` requires: with it, a 10-package context. */
const STUDIO_TOOLS = TOOLS.slice(0, 9);
const BULK_VERSIONS = ['1.0.0', '2.0.0', '3.0.0', '4.0.0', '5.0.0', '6.0.0'];
const PREFIX = 'prod';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let work = '';
let repo = '';
let fileStore = '';
/** Relative path in the repository -> content, for every regular file published. */
const files = new Map<string, Buffer>();
/** `tool00 <sha256>` lines: what studio-check prints. */
const toolOutputs = new Map<string, string>();

function rezPackage(name: string, version: string, requires: string[] = []): string {
  return packageDefinition(
    name,
    version,
    `requires = ${JSON.stringify(requires)}\ntools = ["${name}"]\n\ndef commands():\n    env.PATH.append("{root}/bin")\n`,
  );
}

function studioRepo(): Record<string, Entry> {
  const tree: Record<string, Entry> = {};
  for (const tool of TOOLS) {
    const dir = `${tool}/1.0.0`;
    tree[`${dir}/package.py`] = rezPackage(tool, '1.0.0');
    const blob = pseudoRandomBytes(1.5 * MiB, seedFrom('studio', tool));
    tree[`${dir}/data/blob.bin`] = blob;
    const parts = [blob];
    for (let i = 0; i < 20; i++) {
      const text = pseudoText(1024 + ((i * 977) % 7000), seedFrom('studio', tool, i), 'py');
      tree[`${dir}/lib/file_${String(i).padStart(2, '0')}.py`] = text;
      parts.push(text);
    }
    // The payload tool: reads its package's payload through the mount and prints its checksum.
    tree[`${dir}/bin/${tool}`] = {
      mode: 0o755,
      data: `#!/bin/sh\nset -e\nroot=$(cd "$(dirname "$0")/.." && pwd)\nprintf '${tool} %s\\n' "$(cat "$root"/data/blob.bin "$root"/lib/file_*.py | sha256sum | cut -d' ' -f1)"\n`,
    };
    toolOutputs.set(tool, `${tool} ${sha256(Buffer.concat(parts))}`);
  }
  tree['studio/1.0.0/package.py'] = rezPackage('studio', '1.0.0', STUDIO_TOOLS);
  tree['studio/1.0.0/bin/studio-check'] = {
    mode: 0o755,
    data: `#!/bin/sh\nset -e\nfor t in ${STUDIO_TOOLS.join(' ')}; do "$t"; done\n`,
  };
  for (const version of BULK_VERSIONS) {
    tree[`bulk/${version}/package.py`] = rezPackage('bulk', version);
    tree[`bulk/${version}/data/bulk.bin`] = pseudoRandomBytes(4 * MiB, seedFrom('bulk', version));
  }
  Object.assign(tree, helloPackage('1.0.0'));
  return tree;
}

function helloPackage(version: string): Record<string, Entry> {
  return {
    [`hello/${version}/package.py`]: rezPackage('hello', version),
    [`hello/${version}/bin/hello`]: { mode: 0o755, data: `#!/bin/sh\necho "hello ${version}"\n` },
  };
}

function remember(tree: Record<string, Entry>): void {
  for (const [path, entry] of Object.entries(tree)) {
    if (typeof entry === 'string' || Buffer.isBuffer(entry)) files.set(path, Buffer.from(entry));
    else if ('data' in entry) files.set(path, Buffer.from(entry.data));
  }
}

/** Every file of these packages (`family/version`), as repository-relative paths. */
const filesOf = (...packages: string[]) => [...files.keys()].filter((p) => packages.some((pkg) => p.startsWith(`${pkg}/`))).sort();

/** Copies every object of the file store into `server` under PREFIX, straight to s3rver (not counted). */
async function replicate(server: S3TestServer): Promise<void> {
  const root = fileStore.replace(/^file:\/\//, '');
  const walk = async (dir: string): Promise<string[]> =>
    (await Promise.all((await readdir(dir, { withFileTypes: true })).map((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)])))).flat();
  for (const file of await walk(root)) {
    const key = relative(root, file);
    if (key.split('/').some((part) => part.startsWith('.tmp-')) || key.endsWith('.lock')) continue;
    const r = await fetch(`${server.directEndpoint}/${server.bucket}/${PREFIX}/${key}`, { method: 'PUT', body: await readFile(file) });
    if (!r.ok) throw new Error(`replicating ${key}: ${r.status} ${await r.text()}`);
  }
}

/** Reads `paths` through `mnt` one after the other (the test process only waits on the other process's answers). */
async function readAll(mnt: string, paths: string[]): Promise<string[]> {
  const bad: string[] = [];
  for (const p of paths) {
    const got = await readFile(join(mnt, p));
    if (sha256(got) !== sha256(files.get(p)!)) bad.push(p);
  }
  return bad;
}

/** Walks a directory tree through the mount (metadata only: family shards and manifests, no payload). */
async function walkTree(dir: string): Promise<number> {
  let n = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    n++;
    await lstat(join(dir, entry.name));
    if (entry.isDirectory()) n += await walkTree(join(dir, entry.name));
  }
  return n;
}

/** pread until `buf` is full or the file ends. */
async function readFully(file: Awaited<ReturnType<typeof open>>, buf: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await file.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

const isPackGet = (r: RecordedRequest) => r.method === 'GET' && r.key.startsWith(`${PREFIX}/packs/`);

/** Bytes ranged GETs fetched in all, and how many distinct bytes of their objects those were. */
function fetchedBytes(gets: readonly RecordedRequest[]): { fetched: number; distinct: number } {
  const spans = new Map<string, [number, number][]>();
  let fetched = 0;
  for (const r of gets) {
    const m = /^bytes=(\d+)-(\d+)$/.exec(r.range ?? '');
    if (!m) throw new Error(`pack GET without a simple range: ${r.key} ${r.range}`);
    const span: [number, number] = [Number(m[1]), Number(m[2]) + 1];
    fetched += span[1] - span[0];
    spans.set(r.key, [...(spans.get(r.key) ?? []), span]);
  }
  let distinct = 0;
  for (const list of spans.values()) {
    let end = 0;
    for (const [start, stop] of list.sort((x, y) => x[0] - y[0])) {
      distinct += Math.max(0, stop - Math.max(start, end));
      end = Math.max(end, stop);
    }
  }
  return { fetched, distinct };
}

/** Stock rez, with nothing from the caller's rez config and no resolve caching. */
function rez(packagesPath: string, args: string[]): Promise<CliResult> {
  return runProcess(REZ!, args, {
    cleanEnv: true,
    cwd: work,
    timeoutMs: 120_000,
    env: {
      HOME: join(work, 'home'),
      REZ_PACKAGES_PATH: packagesPath,
      REZ_LOCAL_PACKAGES_PATH: join(work, 'local-packages'),
      REZ_DISABLE_HOME_CONFIG: '1',
      REZ_RESOLVE_CACHING: '0',
      REZ_MEMCACHED_URI: '',
      REZ_COLOR_ENABLED: '0',
    },
  });
}

/** The kernel stamps files from a clock that may lag the real time by a tick: a margin for that. */
const FILE_CLOCK_SLACK_MS = 20;

/**
 * Bytes under `<cache-dir>/blocks` (finished blocks, and temp files being written) that were on disk at one
 * moment. A walk of the shard directories is not a snapshot: it can count a block evicted early in the walk
 * together with one written later in it, which never coexisted. Each file was there from its ctime (the rename
 * that put it in place, or its last write) until the walk saw it, so only files whose spans overlap are added up;
 * the largest such sum is the answer.
 */
async function cacheUse(cacheDir: string): Promise<{ blocks: number; temp: number }> {
  const seen: { size: number; from: number; until: number; temp: boolean }[] = [];
  const top = join(cacheDir, 'blocks');
  for (const sub of await readdir(top).catch(() => [] as string[])) {
    for (const name of await readdir(join(top, sub)).catch(() => [] as string[])) {
      const until = Date.now();
      const info = await stat(join(top, sub, name)).catch(() => undefined);
      if (info) seen.push({ size: info.size, from: info.ctimeMs + FILE_CLOCK_SLACK_MS, until, temp: name.startsWith('.tmp-') });
    }
  }
  let most = { blocks: 0, temp: 0 };
  for (const { until: moment } of seen) {
    const use = { blocks: 0, temp: 0 };
    for (const file of seen) if (file.from <= moment && moment <= file.until) use[file.temp ? 'temp' : 'blocks'] += file.size;
    if (use.blocks + use.temp > most.blocks + most.temp) most = use;
  }
  return most;
}

let s3: S3TestServer;
/** Per-mount runtime dirs: a publish here must not notify these mounts (they must find new versions themselves). */
const mountEnv = (server: S3TestServer, name: string) => ({ ...server.env, REZFS_RUNTIME_DIR: join(work, 'run', name) });
const mnt = (name: string) => join(work, 'mnt', name);
const cache = (name: string) => join(work, 'cache', name);

beforeAll(async () => {
  work = await mkdtemp('/var/tmp/rezfs-studio-');
  repo = join(work, 'repo');
  const tree = studioRepo();
  await writeTree(repo, tree);
  remember(tree);
  fileStore = `file://${join(work, 'store')}`;
  const published = await runCli(['publish', repo, '--store', fileStore], { timeoutMs: 120_000 });
  expect(published.code, published.stderr).toBe(0);
  s3 = await startS3Server();
  await replicate(s3);
});

afterAll(async () => {
  await forceUnmountAll(work ? [work] : []);
  await s3?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('disk cache cap', () => {
  const cap = 8 * MiB;
  const cacheDir = () => cache('cap');
  const mountArgs = () => ({ store: s3.storeUrl(PREFIX), mountpoint: mnt('cap'), cacheDir: cacheDir(), env: mountEnv(s3, 'cap'), extraArgs: ['--cache-size', '8M', '--refresh', '0'] });
  const bulk = BULK_VERSIONS.map((v) => `bulk/${v}/data/bulk.bin`); // 24 MiB = 3 x the cap
  let max = { blocks: 0, temp: 0, total: 0 };

  beforeAll(async () => {
    const mount = await mountStore(mountArgs());
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const use = await cacheUse(cacheDir());
        if (use.blocks + use.temp > max.total) max = { ...use, total: use.blocks + use.temp };
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      expect(await readAll(mount.mountpoint, bulk)).toEqual([]);
    } finally {
      sampling = false;
      await sampler;
      await mount.unmount();
    }
  });

  it('reading 3x the cap through the mount never puts the cache over the cap (sampled every 50 ms)', async () => {
    await new Promise((r) => setTimeout(r, 2 * FILE_CLOCK_SLACK_MS)); // the mount is gone: let every file's span begin
    const after = await cacheUse(cacheDir());
    console.log(`[studio.test] cache cap ${cap} B: max sampled ${max.total} B (${max.blocks} in blocks, ${max.temp} being written); after the run ${after.blocks} B`);
    expect(after.blocks).toBeLessThanOrEqual(cap);
    expect(max.total, `the cache went over its cap: ${JSON.stringify(max)}`).toBeLessThanOrEqual(cap);
  });

  it('after a remount on the same cache dir, re-reading the last-read file makes no store request', async () => {
    const last = bulk.at(-1)!;
    // Read once more on its own: the bulk run above may have left it unkept. Its blocks' disk writes queue behind
    // evictions, and past 8 MiB queued (a loaded machine) a block is served but not kept (disk-cache.ts).
    const first = await mountStore(mountArgs());
    try {
      expect(await readAll(first.mountpoint, [last])).toEqual([]);
    } finally {
      await first.unmount(); // drains the disk writes
    }
    const mount = await mountStore(mountArgs()); // starts warm
    try {
      await stat(join(mount.mountpoint, last)); // metadata (shard, manifest, profile) may come from the store
      await untilQuiet(s3.requests); // the background ones too: under load they land after the stat returns
      s3.requests.reset();
      expect(await readAll(mount.mountpoint, [last])).toEqual([]);
      const asked = s3.requests.all().map((r) => `${r.method} ${r.path}`);
      expect(asked, `re-reading the last-read file after a remount asked the store: ${asked.join(', ')}`).toEqual([]);
    } finally {
      await mount.unmount();
    }
  });
});

describe('one cache directory, two mounts', () => {
  it('two mounts read overlapping packages in parallel: right bytes, each block fetched about once, no corruption', async () => {
    const cacheDir = cache('shared');
    const packages = TOOLS.map((t) => `${t}/1.0.0`);
    const [a, b] = await Promise.all(
      ['shared-a', 'shared-b'].map((name) => mountStore({ store: s3.storeUrl(PREFIX), mountpoint: mnt(name), cacheDir, env: mountEnv(s3, name), extraArgs: ['--refresh', '0'] })),
    );
    try {
      s3.requests.reset();
      // Both read every package, in opposite orders: they meet in the middle, where both may fetch a block at once.
      const [badA, badB] = await Promise.all([
        readAll(a!.mountpoint, filesOf(...packages)),
        readAll(b!.mountpoint, filesOf(...[...packages].reverse()).reverse()),
      ]);
      expect(badA).toEqual([]);
      expect(badB).toEqual([]);
      // Readahead may fetch a pack's blocks in one ranged GET or several: count bytes, not requests. Bytes fetched
      // twice (both mounts loading one block at once) stay within 4 blocks in all.
      const gets = s3.requests.filter(isPackGet);
      const { fetched, distinct } = fetchedBytes(gets);
      console.log(`[studio.test] two mounts, one cache: ${gets.length} pack GETs, ${fetched} bytes for ${distinct} distinct bytes`);
      expect(new Set(gets.map((r) => r.key)).size).toBe(packages.length);
      expect(fetched - distinct, 'bytes downloaded twice').toBeLessThanOrEqual(4 * 1024 * 1024);
    } finally {
      await Promise.all([a!.unmount(), b!.unmount()]);
    }
    const verified = await runCli(['cache', 'verify', '--cache-dir', cacheDir]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/: 0 bad block\(s\) removed/);
  });
});

describe('prefetch, then the store goes away', () => {
  let server: S3TestServer;
  beforeAll(async () => {
    server = await startS3Server();
    await replicate(server);
  });
  afterAll(async () => server?.stop());

  it('a prefetched 10-package context is read, resolved and run from the mount with zero store requests', async () => {
    const cacheDir = cache('prefetch');
    const mount = await mountStore({ store: server.storeUrl(PREFIX), mountpoint: mnt('prefetch'), cacheDir, env: mountEnv(server, 'prefetch'), extraArgs: ['--refresh', '0'] });
    try {
      const rxt = join(work, 'studio.rxt');
      if (REZ) {
        const saved = await rez(mount.mountpoint, ['env', 'studio', '--output', rxt]);
        expect(saved.code, saved.stderr).toBe(0);
      } else {
        const resolved = ['studio', ...STUDIO_TOOLS].map((name) => ({ key: 'filesystem.variant', variables: { name, version: '1.0.0', index: null } }));
        await writeFile(rxt, JSON.stringify({ resolved_packages: resolved }));
      }
      const context = (JSON.parse(await readFile(rxt, 'utf8')) as { resolved_packages: { variables: { name: string; version: string } }[] }).resolved_packages;
      const packages = context.map((p) => `${p.variables.name}/${p.variables.version}`).sort();
      expect(packages).toEqual(['studio', ...STUDIO_TOOLS].map((n) => `${n}/1.0.0`).sort());

      const prefetched = await runCli(['prefetch', '--context', rxt, '--store', server.storeUrl(PREFIX), '--cache-dir', cacheDir, '--pin'], { env: server.env });
      expect(prefetched.code, prefetched.stderr).toBe(0);
      expect(prefetched.stdout).toMatch(/^prefetched 10 packages/);
      // The mount has listed those families (as rez's resolve did) and their package trees: metadata, no payload.
      for (const pkg of packages) expect(await walkTree(join(mount.mountpoint, pkg))).toBeGreaterThan(0);

      process.kill(server.pid, 'SIGKILL'); // the S3 server dies; its proxy stays up to count what still comes
      await waitFor(async () => (await fetch(`${server.endpoint}/${server.bucket}/${PREFIX}/rezfs.json`)).status === 502, 5_000);
      server.requests.reset();

      expect(await readAll(mount.mountpoint, filesOf(...packages))).toEqual([]);
      if (REZ) {
        const ran = await rez(mount.mountpoint, ['env', 'studio', '--', 'studio-check']);
        expect(ran.code, ran.stderr).toBe(0);
        expect(ran.stdout.trim().split('\n')).toEqual(STUDIO_TOOLS.map((t) => toolOutputs.get(t)));
        const fromContext = await rez(mount.mountpoint, ['env', '--input', rxt, '--', 'tool03']); // the saved context itself
        expect(fromContext.code, fromContext.stderr).toBe(0);
        expect(fromContext.stdout.trim()).toBe(toolOutputs.get('tool03'));
        console.log('[studio.test] store stopped: rez env studio -- studio-check and rez env --input <context> -- tool03 ran from the mount');
      }
      expect(server.requests.all(), 'requests to the stopped store').toEqual([]);
    } finally {
      await mount.unmount();
    }
  });
});

describe.skipIf(!NGINX)('nginx as a site cache in front of the S3 server (skipped without nginx)', () => {
  let proxy: NginxCache;
  beforeAll(async () => {
    proxy = await startNginxCache(NGINX!, s3.endpoint);
  });
  afterAll(async () => proxy?.stop());

  it('two mounts with separate caches read the same package: the second is served by nginx, the origin sees no new GET', async () => {
    const store = `${proxy.url}/${s3.bucket}/${PREFIX}`;
    const pkg = filesOf('tool10/1.0.0');
    const immutableGets = () => s3.requests.count((r) => r.method === 'GET' && /^prod\/(packs|manifests|families|index\/[0-9a-f]{64})/.test(r.key));
    const readThrough = async (name: string) => {
      const mount = await mountStore({ store, mountpoint: mnt(name), cacheDir: cache(name), env: { REZFS_RUNTIME_DIR: join(work, 'run', name) }, extraArgs: ['--refresh', '0'] });
      try {
        expect(await readAll(mount.mountpoint, pkg)).toEqual([]);
      } finally {
        await mount.unmount();
      }
    };
    s3.requests.reset();
    await readThrough('site-a');
    const packGets = s3.requests.count(isPackGet);
    expect(packGets, await proxy.errorLog()).toBeGreaterThan(0);
    const before = immutableGets();
    await readThrough('site-b');
    expect(s3.requests.count(isPackGet)).toBe(packGets);
    expect(immutableGets(), 'GETs of immutable objects at the origin for the second mount').toBe(before);
  });
});

describe('mirrors: the primary store dies mid-read', () => {
  let server: S3TestServer;
  beforeAll(async () => {
    server = await startS3Server();
    await replicate(server);
  });
  afterAll(async () => server?.stop());

  const mountWithMirror = (name: string) =>
    mountStore({ store: server.storeUrl(PREFIX), mountpoint: mnt(name), cacheDir: cache(name), env: mountEnv(server, name), extraArgs: ['--mirror', fileStore, '--refresh', '0'] });

  /**
   * Reads `path` while the primary fails under it: its first pack GET is answered, every later one is `failing`
   * (hangs), or is held back while `fail` runs (the server is killed). Returns how long the read took after that.
   */
  async function readAcrossFailure(mount: MountHandle, path: string, mode: 'hang' | 'kill'): Promise<number> {
    let seen = 0;
    let failedAt = 0;
    server.setInterceptor((r) => {
      if (!isPackGet(r) || ++seen === 1) return undefined;
      if (mode === 'hang') {
        failedAt ||= Date.now();
        return { hang: true };
      }
      return { delayMs: 1_000 };
    });
    const reading = readFile(join(mount.mountpoint, path));
    if (mode === 'kill') {
      expect(await waitFor(() => seen >= 2, 10_000)).toBe(true);
      failedAt = Date.now();
      await server.stop(); // proxy and s3rver: connections reset, then refused
    }
    const data = await reading;
    expect(failedAt, 'the primary never failed under the read').toBeGreaterThan(0);
    expect(sha256(data)).toBe(sha256(files.get(path)!));
    return Date.now() - failedAt;
  }

  it('a primary that stops answering (requests hang): the read completes from the mirror within the failover timeout', async () => {
    const mount = await mountWithMirror('mirror-hang');
    try {
      const elapsed = await readAcrossFailure(mount, 'bulk/2.0.0/data/bulk.bin', 'hang');
      console.log(`[studio.test] primary hung: read completed from the mirror ${elapsed} ms later`);
      // Two attempts of 5 s (first-byte timeout) per store, plus backoff: "a mirror set fails over in about 10 s".
      expect(elapsed).toBeLessThan(15_000);
    } finally {
      server.setInterceptor(null);
      await mount.unmount();
    }
  });

  it('a primary that is killed: the read completes from the mirror at once', async () => {
    const mount = await mountWithMirror('mirror-kill');
    try {
      const elapsed = await readAcrossFailure(mount, 'bulk/3.0.0/data/bulk.bin', 'kill');
      console.log(`[studio.test] primary killed: read completed from the mirror ${elapsed} ms later`);
      expect(elapsed).toBeLessThan(5_000); // refused connections fail fast: no timeout to wait out
    } finally {
      await mount.unmount();
    }
  });
});

describe('live refresh', () => {
  it('a version published while a mount is up shows within the refresh interval; open files keep reading their generation', async () => {
    const refreshSec = 2;
    const mount = await mountStore({ store: s3.storeUrl(PREFIX), mountpoint: mnt('refresh'), cacheDir: cache('refresh'), env: mountEnv(s3, 'refresh'), extraArgs: ['--refresh', `${refreshSec}s`] });
    try {
      const path = 'bulk/4.0.0/data/bulk.bin';
      const reader = await open(join(mount.mountpoint, path));
      const half = 2 * MiB;
      const first = Buffer.alloc(half);
      expect(await readFully(reader, first, 0)).toBe(half);
      if (REZ) expect((await rez(mount.mountpoint, ['env', 'hello', '--', 'hello'])).stdout.trim()).toBe('hello 1.0.0');

      const added = helloPackage('2.0.0');
      await writeTree(repo, added);
      remember(added);
      // Another runtime dir: this publish does not signal the mount, which must find the new generation by polling.
      const published = await runCli(['publish', repo, 'hello', '--store', s3.storeUrl(PREFIX)], { env: { ...s3.env, REZFS_RUNTIME_DIR: join(work, 'run', 'publisher') } });
      expect(published.code, published.stderr).toBe(0);
      expect(published.stdout).not.toMatch(/told to refresh/);
      const publishedAt = Date.now();
      const visible = await waitFor(async () => (await readdir(join(mount.mountpoint, 'hello'))).includes('2.0.0'), 15_000, 100);
      const elapsed = Date.now() - publishedAt;
      console.log(`[studio.test] new version visible ${elapsed} ms after the publish (refresh ${refreshSec} s)`);
      expect(visible).toBe(true);
      expect(elapsed).toBeLessThanOrEqual(refreshSec * 1000 + 1_000);
      expect(await readFile(join(mount.mountpoint, 'hello/2.0.0/bin/hello'), 'utf8')).toBe('#!/bin/sh\necho "hello 2.0.0"\n');
      if (REZ) {
        const ran = await rez(mount.mountpoint, ['env', 'hello', '--', 'hello']);
        expect(ran.code, ran.stderr).toBe(0);
        expect(ran.stdout.trim()).toBe('hello 2.0.0');
        console.log('[studio.test] rez env hello -- hello ran hello 2.0.0 after the refresh');
      }

      const rest = Buffer.alloc(4 * MiB - half);
      expect(await readFully(reader, rest, half)).toBe(rest.length);
      await reader.close();
      expect(sha256(Buffer.concat([first, rest]))).toBe(sha256(files.get(path)!));
    } finally {
      await mount.unmount();
    }
  });
});
