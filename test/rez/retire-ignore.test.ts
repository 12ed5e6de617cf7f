/**
 * Taking versions away, the ways a pipeline TD does it, with stock rez on one side and a mount that stays up on the
 * other: `rez-pkg-ignore` in the release directory (published, rez on the mount hides the version too, `rezfs ls`
 * marks it), `rezfs retire` (the mount drops the version at its next refresh, and a later publish of a source
 * that still has it does not bring it back), and `rez-rm` (publish says the store still has it; retire removes it).
 *
 * Needs rez (`REZ_BIN` or `rez` on PATH); skipped, saying so, without it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRez, forceUnmountAll, mountStore, runCli, runProcess, waitFor, type MountHandle } from '../support/cli.js';
import { writeTree } from '../support/small-repo.js';

const REZ = findRez();
if (!REZ) console.warn('[test/rez] skipping retire/ignore tests: rez not found (set REZ_BIN to the directory containing rez)');

function greeter(version: string): Record<string, string | { mode: number; data: string }> {
  return {
    [`greeter/${version}/package.py`]: `name = "greeter"\nversion = "${version}"\ntools = ["greet"]\ndef commands():\n    env.PATH.append("{root}/bin")\n`,
    [`greeter/${version}/bin/greet`]: { mode: 0o755, data: `#!/bin/sh\necho greeter ${version}\n` },
  };
}

describe.skipIf(!REZ)('retire and ignore with stock rez', () => {
  let work: string;
  let repo: string;
  let url: string;
  let mount: MountHandle;
  const env = () => ({ REZFS_RUNTIME_DIR: join(work, 'run') });

  /** rez with nothing from the caller's configuration, against one repository. */
  const rez = (root: string, ...args: string[]) =>
    runProcess(REZ!, args, {
      cleanEnv: true,
      timeoutMs: 120_000,
      env: { HOME: join(work, 'home'), REZ_PACKAGES_PATH: root, REZ_DISABLE_HOME_CONFIG: '1', REZ_RESOLVE_CACHING: '0', REZ_MEMCACHED_URI: '', REZ_COLOR_ENABLED: '0' },
    });
  const search = async (root: string) => (await rez(root, 'search', 'greeter', '--type', 'package')).stdout.trim().split('\n').filter(Boolean);
  const greet = async (root: string, request = 'greeter') => (await rez(root, 'env', request, '--', 'greet')).stdout.trim();
  const publish = async () => {
    const r = await runCli(['publish', repo, '--store', url], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    return r;
  };
  /** The mount, up all along, has caught up with the store (it refreshes every 500 ms). */
  const mountShows = (versions: string[]) => waitFor(async () => JSON.stringify(await search(mount.mountpoint)) === JSON.stringify(versions.map((v) => `greeter-${v}`)), 20_000, 250);

  beforeAll(async () => {
    work = await mkdtemp('/var/tmp/rezfs-retire-');
    repo = join(work, 'repo');
    url = `file://${join(work, 'store')}`;
    await writeTree(repo, { ...greeter('1.0.0'), ...greeter('1.1.0'), ...greeter('1.2.0') });
    await publish();
    mount = await mountStore({ store: url, mountpoint: join(work, 'mnt'), cacheDir: join(work, 'cache'), env: env(), extraArgs: ['--refresh', '500ms'] });
  });
  afterAll(async () => {
    await forceUnmountAll([work]);
    await rm(work, { recursive: true, force: true });
  });

  it('rez-pkg-ignore in the release directory, published: rez on the mount ignores the version, rezfs ls marks it', async () => {
    expect(await search(mount.mountpoint)).toEqual(['greeter-1.0.0', 'greeter-1.1.0', 'greeter-1.2.0']);
    const ignored = await rez(repo, 'pkg-ignore', 'greeter-1.2.0', repo);
    expect(ignored.code, ignored.stderr).toBe(0);
    await publish();
    expect(await mountShows(['1.0.0', '1.1.0'])).toBe(true);
    expect(await search(mount.mountpoint)).toEqual(await search(repo));
    expect(await greet(mount.mountpoint)).toBe('greeter 1.1.0');
    expect(await greet(repo)).toBe('greeter 1.1.0');
    const ls = await runCli(['ls', 'greeter', '--store', url], { env: env() });
    expect(ls.stdout).toMatch(/^greeter\/1\.0\.0\tpublished [^\t]*\ngreeter\/1\.1\.0\tpublished [^\t]*\ngreeter\/1\.2\.0\tpublished [^\t]*\tignored \(rez-pkg-ignore\)\n$/);
  });

  it('rezfs retire: the mount drops the version at its next refresh; publishing the source again does not bring it back', async () => {
    const retired = await runCli(['retire', 'greeter-1.1.0', '--store', url], { env: env() });
    expect(retired.code, retired.stderr).toBe(0);
    expect(await mountShows(['1.0.0'])).toBe(true);
    expect(await greet(mount.mountpoint)).toBe('greeter 1.0.0');
    const request = await rez(mount.mountpoint, 'env', 'greeter-1.1.0', '--', 'greet');
    expect(request.code).not.toBe(0);

    const again = await publish();
    expect(again.stderr).toMatch(/greeter\/1\.1\.0 was retired on .*: not published again; name it as greeter\/1\.1\.0 to publish it again/);
    expect(again.stdout).toMatch(/^nothing to publish/);
    expect(await search(mount.mountpoint)).toEqual(['greeter-1.0.0']);
  });

  it('rez-rm, then publish: the store keeps the version and publish says so; retire takes it out', async () => {
    const removed = await rez(repo, 'rm', '-p', 'greeter-1.0.0', repo);
    expect(removed.code, removed.stderr).toBe(0);
    const published = await publish();
    expect(published.stderr).toMatch(/greeter\/1\.0\.0 is in file:\/\/.* but not in the source \(rez-rm\?\): it stays; rezfs retire greeter\/1\.0\.0 --store file:\/\/.* takes it out/);
    expect(await search(mount.mountpoint)).toEqual(['greeter-1.0.0']);
    expect((await runCli(['retire', 'greeter/1.0.0', '--store', url], { env: env() })).code).toBe(0);
    expect(await mountShows([])).toBe(true);
    // The source still holds 1.1.0, which the store retired (and 1.2.0, ignored in both).
    expect(await search(repo)).toEqual(['greeter-1.1.0']);
  });
});
