/**
 * Publishing to a WebDAV server (Apache mod_dav on 127.0.0.1, Basic auth) through the CLI, as a pipeline TD would:
 * what a wrong password, a missing repository and a repository that takes no uploads say, that they leave the
 * server as it was, and that the read-only account a mount uses cannot publish. (No mount: runs once.)
 */
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { describeWithDav, startDavServer, type DavServer, type DavUser } from '../support/dav-server.js';
import { tempDir, TWO_FAMILIES, writeTree } from '../support/small-repo.js';

/** Every file and directory under `dir` (dotfiles too: a server's temp files would show). */
async function everything(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.map((e) => relative(dir, join(e.parentPath, e.name))).sort();
}

describeWithDav('publish to a WebDAV server (dav+http://)', () => {
  let server: DavServer;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;

  beforeAll(async () => {
    server = await startDavServer();
    work = await tempDir('dav-publish');
    repo = join(work.path, 'repo');
    await writeTree(repo, TWO_FAMILIES);
  });
  afterAll(async () => {
    await server?.stop();
    await work?.remove();
  });

  /** `rezfs publish` with credentials in the environment, where a farm's or CI's secrets go. */
  const publish = (store: string, user: DavUser) =>
    runCli(['publish', repo, '--store', store], {
      env: { REZFS_HTTP_USER: user.user, REZFS_HTTP_PASSWORD: user.password, REZFS_RUNTIME_DIR: join(work.path, 'run'), NETRC: '/nonexistent' },
    });

  it('publishes into a new prefix (creating its collections), and again uploads nothing', async () => {
    const store = server.storeUrl('/repo/studio/rez');
    const first = await publish(store, server.publisher);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^published 2 packages .* to dav\+http:\/\/127\.0\.0\.1:\d+\/repo\/studio\/rez\/ in [\d.]+ s: \d+ objects uploaded/);
    const stored = await everything(join(server.dataDir, 'repo', 'studio', 'rez'));
    expect(stored).toEqual(expect.arrayContaining(['index/HEAD', 'rezfs.json']));
    expect(stored.filter((p) => p.startsWith('packs/') && !p.endsWith('packs'))).toHaveLength(2);

    const before = (await server.requests()).length;
    const again = await publish(store, server.publisher);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^nothing to publish: 2 packages already in .*; 0 objects uploaded/);
    const methods = new Set((await server.requests()).slice(before).map((r) => r.method));
    expect([...methods].filter((m) => m !== 'GET' && m !== 'HEAD')).toEqual([]); // not one PUT, MKCOL or DELETE
    expect(await everything(join(server.dataDir, 'repo', 'studio', 'rez'))).toEqual(stored);
  });

  it('sends the sha256 of every object it uploads, which the server may check', async () => {
    const puts = (await server.requests()).filter((r) => r.method === 'PUT' && r.status < 300);
    expect(puts.length).toBeGreaterThan(0);
    for (const put of puts) {
      const key = put.path.replace(/^\/repo\/studio\/rez\//, '');
      // Content-addressed keys name their sha256; the others (index/HEAD, rezfs.json) carry one all the same.
      const named = /([0-9a-f]{64})(\.json)?$/.exec(key)?.[1];
      expect(put.checksum, put.path).toMatch(/^[0-9a-f]{64}$/);
      if (named && !key.startsWith('signatures/')) expect(put.checksum, put.path).toBe(named);
    }
  });

  /** A refused publish: exit 2, one line naming the store and what to do, the server's files untouched. */
  async function refused(store: string, user: DavUser, line: RegExp): Promise<void> {
    const before = await everything(server.dataDir);
    const r = await publish(store, user);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(line);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).not.toContain(user.password);
    expect(await everything(server.dataDir)).toEqual(before);
  }

  it('wrong credentials: says which credentials were used and what needs them', async () => {
    await refused(
      server.storeUrl('/repo/wrong-password'),
      { user: 'publisher', password: 'not-the-password' },
      /^rezfs: access denied to dav\+http:\/\/127\.0\.0\.1:\d+\/repo\/wrong-password\/ \(HTTP 401\) for GET \S+: check the credentials \(taken from REZFS_HTTP_USER\/REZFS_HTTP_PASSWORD\) and their permissions \(mounting needs GET and HEAD on the prefix, publishing also PUT\)\n$/,
    );
  });

  it('read-only credentials (what a mount gets) cannot publish', async () => {
    // Apache answers 401 to a user its rules do not admit (Artifactory 403): either is access denied.
    await refused(server.storeUrl('/repo/readers-only'), server.reader, /^rezfs: access denied to dav\+http:\/\/127\.0\.0\.1:\d+\/repo\/readers-only\/ \(HTTP 40[13]\) for PUT rezfs\.json: check the credentials/);
  });

  it('a missing repository: names it and says to create it or fix the URL', async () => {
    await refused(
      server.storeUrl('/no-such-repo/rez'),
      server.publisher,
      /^rezfs: cannot write to dav\+http:\/\/127\.0\.0\.1:\d+\/no-such-repo\/rez\/: there is no repository at http:\/\/127\.0\.0\.1:\d+\/no-such-repo\/ \(HTTP 405 to PUT rezfs\.json; HTTP 404 to HEAD \/no-such-repo\/\): check the repository's name in the URL, or create the repository on the server first\n$/,
    );
  });

  it('a repository that answers 405 to PUT: says it takes no uploads, and how to read it instead', async () => {
    await refused(
      server.storeUrl('/mirror/rez'),
      server.publisher,
      /^rezfs: cannot write to dav\+http:\/\/127\.0\.0\.1:\d+\/mirror\/rez\/: the server takes no uploads there \(HTTP 405 to PUT rezfs\.json\): the URL must name a WebDAV share or a local \(hosted\) repository that accepts deploys, not a remote, virtual or read-only one; to only read it, use http:\/\/127\.0\.0\.1:\d+\/mirror\/rez\/\n$/,
    );
  });
});
