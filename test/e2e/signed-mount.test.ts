import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forceUnmountAll, mountStore, runCli, withoutWarnings } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

describe('signed catalogs through the CLI', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let store: string;
  let repo: string;

  beforeAll(async () => {
    work = await tempDir('signed');
    repo = join(work.path, 'repo');
    store = `file://${join(work.path, 'store')}`;
    await writeTree(repo, { 'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0') });
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    await work.remove();
  });

  it('keygen writes a private key only its owner can read, and refuses to overwrite', async () => {
    const made = await runCli(['keygen', join(work.path, 'release.key')]);
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/key id [0-9a-f]{16}/);
    expect((await stat(join(work.path, 'release.key'))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(work.path, 'release.key.pub'), 'utf8')).toMatch(/BEGIN PUBLIC KEY/);
    const again = await runCli(['keygen', join(work.path, 'release.key')]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/release\.key exists/);
    expect((await runCli(['keygen', join(work.path, 'other.key')])).code).toBe(0);
  });

  it('a mount with --trust-key serves a signed store and refuses one signed by another key', async () => {
    const published = await runCli(['publish', repo, '--store', store, '--sign-key', join(work.path, 'release.key')]);
    expect(published.code, published.stderr).toBe(0);
    const mount = await mountStore({ store, mountpoint: join(work.path, 'mnt'), cacheDir: join(work.path, 'cache'), extraArgs: ['--trust-key', join(work.path, 'release.key.pub')] });
    expect(await readFile(join(mount.mountpoint, 'foo/1.0.0/package.py'), 'utf8')).toBe(packageDefinition('foo', '1.0.0'));
    await mount.unmount();

    const refused = await runCli(['mount', join(work.path, 'mnt'), '--store', store, '--cache-dir', join(work.path, 'cache2'), '--trust-key', join(work.path, 'other.key.pub')]);
    expect(refused.code).toBe(1);
    expect(withoutWarnings(refused.stderr)).toMatch(/^rezfs: cannot mount .*: index [0-9a-f]{64} in file:\/\/.* is signed by key [0-9a-f]{16}, which is not trusted\n$/);
  });

  it('a key file that is not a key is bad input', async () => {
    const bad = await runCli(['publish', repo, '--store', store, '--sign-key', join(work.path, 'release.key.pub')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/release\.key\.pub is not an ed25519 private key/);
    const missing = await runCli(['mount', join(work.path, 'mnt'), '--store', store, '--trust-key', join(work.path, 'nope.pub')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read key .*nope\.pub \(ENOENT\)/);
  });
});
