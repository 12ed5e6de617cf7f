/**
 * Stock rez, two repositories on REZ_PACKAGES_PATH (a local one with other versions of the same families, then
 * the mount) and a store that stops answering: rez must fail loudly, never resolve the local versions instead (a
 * wrong environment on a render node). Once the store answers again, the mount's versions resolve.
 *
 * Needs rez (`REZ_BIN` or rez on PATH); skipped, saying so, without it.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRez, forceUnmountAll, mountStore, mountsUnder, runCli, runProcess, waitFor, type CliResult, type MountHandle } from '../support/cli.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { packageDefinition, writeTree } from '../support/small-repo.js';

const REZ = findRez();
const SKIP_REASON = REZ ? undefined : 'rez not found: set REZ_BIN to the directory containing the `rez` executable, or put rez on PATH';
if (SKIP_REASON) console.warn(`[test/rez] skipping the frozen-store test: ${SKIP_REASON}`);
const READ_TIMEOUT_MS = 3_000;
/** rez itself, plus the mount's deadline and scheduling slack on 2 shared cores. */
const REZ_BOUND_MS = 30_000;

const greeter = (version: string) => ({
  [`greeter/${version}/package.py`]: packageDefinition('greeter', version, 'requires = ["platform"]\ncommands = "env.PATH.prepend(\'{root}/bin\')"\n'),
  [`greeter/${version}/bin/greet`]: { mode: 0o755, data: `#!/bin/sh\necho greeter ${version}\n` },
});

describe.skipIf(!!SKIP_REASON)(`stock rez with a frozen store behind the mount${SKIP_REASON ? ` (skipped: ${SKIP_REASON})` : ''}`, () => {
  let work = '';
  let s3: S3TestServer;
  let mount: MountHandle;
  let local: string;
  const blob = randomBytes(1024 * 1024 + 17);

  const rez = (args: string[]): Promise<CliResult> =>
    runProcess(REZ!, args, {
      cleanEnv: true,
      cwd: work,
      timeoutMs: 120_000,
      env: {
        HOME: path.join(work, 'home'),
        REZ_PACKAGES_PATH: `${local}:${mount.mountpoint}`,
        REZ_DISABLE_HOME_CONFIG: '1',
        REZ_RESOLVE_CACHING: '0',
        REZ_MEMCACHED_URI: '',
        REZ_COLOR_ENABLED: '0',
      },
    });

  beforeAll(async () => {
    work = await fsp.realpath(await fsp.mkdtemp(path.join(process.env.REZFS_REZ_TEST_DIR ?? '/var/tmp', 'rezfs-frozen-')));
    await fsp.mkdir(path.join(work, 'home'));
    s3 = await startS3Server();
    const published = path.join(work, 'published');
    await writeTree(published, { ...greeter('1.3.0'), 'greeter/1.3.0/blob.bin': blob, 'platform/linux/package.py': packageDefinition('platform', 'linux') });
    local = path.join(work, 'local');
    await writeTree(local, { ...greeter('1.2.0'), 'platform/osx/package.py': packageDefinition('platform', 'osx') });
    const env = { ...s3.env, REZFS_RUNTIME_DIR: path.join(work, 'run') };
    expect((await runCli(['publish', published, '--store', s3.storeUrl('frozen')], { env })).code).toBe(0);
    // A fresh cache, and the store frozen for everything but rezfs.json, HEAD and the index from the start: the
    // mount's background shard preload hangs too, so nothing of the catalog beyond its index is known to it.
    s3.setInterceptor((req) => (/(^|\/)(families|manifests|packs|profiles)\//.test(req.key) ? { hang: true } : undefined));
    mount = await mountStore({
      store: s3.storeUrl('frozen'),
      mountpoint: path.join(work, 'mnt'),
      cacheDir: path.join(work, 'cache'),
      env,
      extraArgs: ['--read-timeout', `${READ_TIMEOUT_MS / 1000}s`],
    });
    s3.setInterceptor(() => ({ hang: true }));
  }, 120_000);

  afterAll(async () => {
    s3?.setInterceptor(null);
    await forceUnmountAll(work ? [work] : []);
    await s3?.stop();
    if (work && mountsUnder(work).length === 0) await fsp.rm(work, { recursive: true, force: true });
  });

  it('the mount answers EIO within --read-timeout for what it cannot load, never "no such file" or an empty family', async () => {
    const ls = await runProcess('ls', ['-1', path.join(mount.mountpoint, 'greeter')], { timeoutMs: 60_000 });
    expect({ code: ls.code, stdout: ls.stdout }, ls.stderr).toEqual({ code: 2, stdout: '' });
    expect(ls.stderr).toMatch(/Input\/output error/);
    expect(ls.durationMs).toBeLessThan(READ_TIMEOUT_MS + 5_000);
    const head = await runProcess('head', ['-c', '100', path.join(mount.mountpoint, 'greeter/1.3.0/blob.bin')], { timeoutMs: 60_000 });
    expect(head.code).not.toBe(0);
    expect(head.stderr).toMatch(/Input\/output error/);
    expect(head.stderr).not.toMatch(/No such file/);
  });

  it('rez env fails loudly, and never resolves the local repository\'s versions instead', async () => {
    for (const request of [['greeter-1.3'], ['greeter'], ['platform']]) {
      const r = await rez(['env', ...request, '--', 'greet']);
      const said = `${r.stdout}\n${r.stderr}`;
      expect(r.code, `rez env ${request.join(' ')} must fail:\n${said}`).not.toBe(0);
      expect(said, `rez env ${request.join(' ')}`).toMatch(/Input\/output error/);
      expect(said, `rez env ${request.join(' ')}`).not.toMatch(/greeter 1\.2\.0/);
      expect(r.durationMs, `rez env ${request.join(' ')}`).toBeLessThan(REZ_BOUND_MS);
    }
  }, 180_000);

  it('once the store answers again, rez resolves the mount\'s version', async () => {
    s3.setInterceptor(null);
    let last: CliResult | undefined;
    // Loads still waiting on a hung request give up at their store timeout; the next one succeeds.
    const resolved = await waitFor(async () => (last = await rez(['env', 'greeter', '--', 'greet'])).stdout.includes('greeter 1.3.0'), 60_000, 1_000);
    expect(resolved, `${last?.stdout}\n${last?.stderr}`).toBe(true);
  }, 120_000);
});
