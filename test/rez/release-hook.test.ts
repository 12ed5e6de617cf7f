/**
 * rez's release model end to end, with stock rez: a package with two variants is released as two separate
 * releases (`rez-release --variants 0`, then `--variants 1`, as two build hosts would), each publishing through the
 * documented release hook (examples/rez/rezconfig.py, used as is; `rezfs` on PATH through the documented symlink).
 * A mount of the store is up all along: after each release both the released variants resolve and run through it,
 * and the mounted version is byte for byte (and mode for mode) the release directory. Then the other way rez puts
 * packages in a repository: `rez-build --install --prefix DIR`, every variant at once and no release hook, and a
 * `rezfs publish DIR` by hand.
 *
 * Needs rez (`REZ_BIN` or PATH) and git (rez-release wants a VCS); skipped, saying so, without them.
 * Under /var/tmp: rez treats repositories under its tmpdir (/tmp) as temporary.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, REPO_ROOT, findRez, forceUnmountAll, mountStore, runCli, runProcess, waitFor, type MountHandle } from '../support/cli.js';
import { snapshotTree } from '../support/tree.js';

const exec = promisify(execFile);
const REZ = findRez();
const GIT = ['/usr/bin/git', '/bin/git'].find((g) => existsSync(g));
const SKIP_REASON = !REZ ? 'rez not found: set REZ_BIN to the directory containing `rez`, or put rez on PATH' : !GIT ? 'git not found (rez-release needs a VCS)' : undefined;
if (SKIP_REASON) console.warn(`[test/rez/release-hook] skipping: ${SKIP_REASON}`);

let work = '';
let mount: MountHandle | undefined;
const dirs = () => ({
  src: path.join(work, 'src', 'multi'),
  release: path.join(work, 'release'),
  store: `file://${path.join(work, 'store')}`,
  mnt: path.join(work, 'mnt'),
  bin: path.join(work, 'bin'),
});

/** The site config of this test; the release hook is the README's example, appended as a second config file. */
function rezEnv(packagesPath: string): Record<string, string> {
  const d = dirs();
  return {
    HOME: path.join(work, 'home'),
    PATH: `${d.bin}:${path.dirname(REZ!)}:/usr/local/bin:/usr/bin:/bin`,
    REZ_CONFIG_FILE: `${path.join(work, 'site-rezconfig.py')}:${path.join(REPO_ROOT, 'examples/rez/rezconfig.py')}`,
    REZ_PACKAGES_PATH: packagesPath,
    REZ_DISABLE_HOME_CONFIG: '1',
    REZ_RESOLVE_CACHING: '0',
    REZ_COLOR_ENABLED: '0',
    // Where the hook's `rezfs publish` publishes (the example leaves the store to the environment).
    REZFS_STORE: d.store,
    REZFS_PUBLISH_STATE_DIR: path.join(work, 'publish-state'),
    REZFS_RUNTIME_DIR: path.join(work, 'run'),
    GIT_AUTHOR_NAME: 'releaser',
    GIT_AUTHOR_EMAIL: 'releaser@example.com',
    GIT_COMMITTER_NAME: 'releaser',
    GIT_COMMITTER_EMAIL: 'releaser@example.com',
  };
}

const rezTool = (name: string) => path.join(path.dirname(REZ!), `rez-${name}`);

async function release(variant: number): Promise<string> {
  const d = dirs();
  const args = ['--variants', String(variant), '--no-message', ...(variant > 0 ? ['--ignore-existing-tag'] : [])];
  const r = await runProcess(rezTool('release'), args, { cleanEnv: true, env: rezEnv(d.release), cwd: d.src, timeoutMs: 180_000 });
  expect(r.code, `rez-release --variants ${variant}:\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout + r.stderr;
}

/** `rez env multi dep-<n> -- multi-tool` through the mount. */
async function runThroughMount(dep: number): Promise<string> {
  const r = await runProcess(REZ!, ['env', 'multi', `dep-${dep}`, '--', 'multi-tool'], { cleanEnv: true, env: rezEnv(dirs().mnt), cwd: work, timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim();
}

/** The mounted version equals the released one: names, types, modes, sizes, mtimes, bytes, symlink targets. */
async function expectMountedAsReleased(): Promise<void> {
  const d = dirs();
  const [released, mounted] = await Promise.all([snapshotTree(path.join(d.release, 'multi/1.0.0')), snapshotTree(path.join(d.mnt, 'multi/1.0.0'))]);
  expect(mounted).toEqual(released);
}

describe.skipIf(SKIP_REASON !== undefined)('packages rez put in a repository: rez-release one variant at a time through the documented hook, and rez-build --install', () => {
  beforeAll(async () => {
    work = await fsp.mkdtemp(path.join(process.env.REZFS_REZ_TEST_DIR ?? '/var/tmp', 'rezfs-release-'));
    const d = dirs();
    // `rezfs` on PATH the way the README says: a symlink to the built CLI.
    await fsp.mkdir(d.bin, { recursive: true });
    await fsp.symlink(CLI_PATH, path.join(d.bin, 'rezfs'));
    await fsp.writeFile(
      path.join(work, 'site-rezconfig.py'),
      [
        `packages_path = [${JSON.stringify(d.release)}]`,
        `release_packages_path = ${JSON.stringify(d.release)}`,
        `local_packages_path = ${JSON.stringify(path.join(work, 'local'))}`,
        // A release repository with no remote: rez's git plugin must not ask for an upstream.
        'plugins = {"release_vcs": {"git": {"allow_no_upstream": True}}}',
        '',
      ].join('\n'),
    );
    // Two dependencies to vary on, published and mounted like any package.
    for (const v of ['1', '2']) {
      await fsp.mkdir(path.join(d.release, 'dep', v), { recursive: true });
      await fsp.writeFile(path.join(d.release, 'dep', v, 'package.py'), `name = "dep"\nversion = "${v}"\n`);
    }
    expect((await runCli(['publish', d.release, '--store', d.store], { env: rezEnv(d.release) })).code).toBe(0);
    mount = await mountStore({ store: d.store, mountpoint: d.mnt, cacheDir: path.join(work, 'cache'), extraArgs: ['--refresh', '1s'], env: { REZFS_RUNTIME_DIR: path.join(work, 'run') } });

    // The package: two variants, a custom build that installs an executable naming its variant.
    await fsp.mkdir(d.src, { recursive: true });
    await fsp.writeFile(
      path.join(d.src, 'package.py'),
      [
        'name = "multi"',
        'version = "1.0.0"',
        'variants = [["dep-1"], ["dep-2"]]',
        'build_command = "sh {root}/build.sh {install}"',
        'def commands():',
        '    env.PATH.append("{root}/bin")',
        '',
      ].join('\n'),
    );
    await fsp.writeFile(
      path.join(d.src, 'build.sh'),
      [
        '[ "$1" = install ] || exit 0',
        'mkdir -p "$REZ_BUILD_INSTALL_PATH/bin"',
        `printf '#!/bin/sh\\necho multi variant %s\\n' "$REZ_BUILD_VARIANT_INDEX" > "$REZ_BUILD_INSTALL_PATH/bin/multi-tool"`,
        'chmod 755 "$REZ_BUILD_INSTALL_PATH/bin/multi-tool"',
        '',
      ].join('\n'),
    );
    await fsp.writeFile(path.join(d.src, '.gitignore'), 'build/\n');
    const git = (...args: string[]) => exec(GIT!, args, { cwd: d.src, env: rezEnv(d.release) });
    await git('init', '-q');
    await git('add', '-A');
    await git('commit', '-qm', 'multi 1.0.0');
  }, 180_000);

  afterAll(async () => {
    await mount?.unmount().catch(() => undefined);
    await forceUnmountAll(work ? [work] : []);
    if (work) await fsp.rm(work, { recursive: true, force: true });
  });

  it('variant 0, then variant 1: each release is published by the hook and served by the mount that was up all along', async () => {
    const d = dirs();
    const first = await release(0);
    expect(first).toMatch(/running command: rezfs publish .*release multi\/1\.0\.0/);
    expect(first).toMatch(/published 1 packages/);
    expect(await waitFor(() => existsSync(path.join(d.mnt, 'multi/1.0.0/dep-1/bin/multi-tool')), 20_000)).toBe(true);
    expect(await runThroughMount(1)).toBe('multi variant 0');
    await expectMountedAsReleased();

    const second = await release(1);
    expect(second).toMatch(/published 1 packages \(1 with new variants/);
    // The same mount shows the grown version once it has the new generation (at once: the publish told it).
    const releasedDefinition = await fsp.readFile(path.join(d.release, 'multi/1.0.0/package.py'));
    const servesNew = async () => (await fsp.readFile(path.join(d.mnt, 'multi/1.0.0/package.py')).catch(() => Buffer.alloc(0))).equals(releasedDefinition);
    expect(await waitFor(servesNew, 20_000, 200)).toBe(true);
    expect(await runThroughMount(2)).toBe('multi variant 1');
    expect(await runThroughMount(1)).toBe('multi variant 0');
    await expectMountedAsReleased();
    const verified = await runCli(['verify', '--store', d.store]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/2 families, 3 versions, 4 packs/); // dep-1, dep-2, multi's first and added pack
  }, 600_000);

  it('rez-build --install --prefix DIR (every variant in one build, no hook), then rezfs publish DIR: the mount serves the install', async () => {
    const d = dirs();
    const installed = path.join(work, 'installed');
    const build = await runProcess(rezTool('build'), ['--install', '--prefix', installed], { cleanEnv: true, env: rezEnv(d.release), cwd: d.src, timeoutMs: 180_000 });
    expect(build.code, `rez-build --install:\n${build.stdout}\n${build.stderr}`).toBe(0);
    const store = `file://${path.join(work, 'store-installed')}`;
    const published = await runCli(['publish', installed, '--store', store], { env: rezEnv(d.release) });
    expect(published.code, published.stderr).toBe(0);
    expect(published.stdout).toMatch(/published 1 packages/);
    const mnt = path.join(work, 'mnt-installed');
    const installMount = await mountStore({ store, mountpoint: mnt, cacheDir: path.join(work, 'cache-installed'), env: { REZFS_RUNTIME_DIR: path.join(work, 'run') } });
    try {
      expect(await snapshotTree(path.join(mnt, 'multi/1.0.0'))).toEqual(await snapshotTree(path.join(installed, 'multi/1.0.0')));
      // multi from the mount (first on the path), dep from the release repository.
      for (const dep of [1, 2]) {
        const env = rezEnv(`${mnt}:${d.release}`);
        const r = await runProcess(REZ!, ['env', 'multi', `dep-${dep}`, '--', 'sh', '-c', 'multi-tool; echo "$REZ_MULTI_ROOT"'], { cleanEnv: true, env, cwd: work, timeoutMs: 120_000 });
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.trim().split('\n')).toEqual([`multi variant ${dep - 1}`, path.join(mnt, 'multi/1.0.0', `dep-${dep}`)]);
      }
      // The same install published again: nothing new, nothing uploaded.
      const again = await runCli(['publish', installed, '--store', store], { env: rezEnv(d.release) });
      expect(again.stdout).toMatch(/^nothing to publish: 1 packages already in/);
    } finally {
      await installMount.unmount();
    }
  }, 300_000);
});
