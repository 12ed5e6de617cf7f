/**
 * A studio without S3: publish a generated released repository to a WebDAV server (Apache mod_dav on 127.0.0.1,
 * Basic auth), mount it with the read-only account (credentials from a .netrc, as on a farm node), and use the
 * mount through the kernel. The server's access log shows what the mount asked for: only GET and HEAD.
 * (That a republish uploads nothing is shown once, without a mount, in test/publish/dav-publish.test.ts.)
 */
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { forceUnmountAll, mountStore, runCli, type MountHandle } from '../support/cli.js';
import { describeWithDav, startDavServer, type DavServer } from '../support/dav-server.js';
import { generateRepo, type RepoSummary } from '../support/repo-generator.js';
import { tempDir } from '../support/small-repo.js';
import { FAMILY_DIRS, diffTrees, snapshotTree } from '../support/tree.js';

describeWithDav('publish to and mount from a WebDAV server (dav+http://)', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: RepoSummary;
  let server: DavServer;
  let mount: MountHandle;
  let mnt: string;
  let store: string;
  let env: Record<string, string>;
  let mountedAt: number;

  beforeAll(async () => {
    work = await tempDir('e2e-dav');
    repo = await generateRepo(join(work.path, 'repo'), { bigPackage: true, bigPackageMiB: 12 });
    server = await startDavServer();
    store = server.storeUrl('/repo/rez');
    const netrc = join(work.path, 'netrc');
    // The farm's read-only account; the publisher's password comes from the environment instead (CI's secrets).
    await fsp.writeFile(netrc, `machine 127.0.0.1\n  login ${server.reader.user}\n  password ${server.reader.password}\n`, { mode: 0o600 });
    env = { NETRC: netrc, REZFS_RUNTIME_DIR: join(work.path, 'run') };

    const published = await runCli(['publish', repo.root, '--store', store], {
      env: { ...env, REZFS_HTTP_USER: server.publisher.user, REZFS_HTTP_PASSWORD: server.publisher.password },
      timeoutMs: 300_000,
    });
    expect(published.stderr).toBe('');
    expect(published.code).toBe(0);
    expect(published.stdout).toMatch(new RegExp(`^published ${repo.versionCount} packages \\(`));
    mnt = join(work.path, 'mnt');
    mountedAt = (await server.requests()).length;
    mount = await mountStore({ store, mountpoint: mnt, cacheDir: join(work.path, 'cache'), env });
  }, 600_000);

  afterAll(async () => {
    await mount?.unmount();
    await forceUnmountAll([work.path]);
    await server?.stop();
    await work?.remove();
  });

  it('shows the same tree as the source: names, types, modes, sizes, mtimes, targets, bytes', async () => {
    const [source, mounted] = await Promise.all([snapshotTree(repo.root), snapshotTree(mnt)]);
    expect(mounted.length).toBe(source.length);
    const diffs = diffTrees(source, mounted, { labels: ['source', 'mount'], ignore: [{ paths: FAMILY_DIRS, fields: ['mtimeSec'] }] });
    expect(diffs).toEqual([]);
    expect((await fsp.readdir(mnt)).sort()).toEqual(repo.families);
  });

  it('asked the server for nothing but GET and HEAD, as the read-only account', async () => {
    const asked = (await server.requests()).slice(mountedAt);
    expect(asked.filter((r) => r.path.startsWith('/repo/rez/packs/')).length).toBeGreaterThan(0); // it did read payload
    expect(asked.filter((r) => r.method !== 'GET' && r.method !== 'HEAD')).toEqual([]);
    expect(asked.filter((r) => r.status === 401 || r.status === 403)).toEqual([]);
  });
});
