import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forceUnmountAll, isMounted, runCli, withoutWarnings } from '../support/cli.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

/** A mistyped bucket, prefix or directory is an error, never an empty store (a monitoring check must not say "all good"). */
describe('a store URL that names no rezfs store', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let s3: S3TestServer;
  let env: Record<string, string>;

  beforeAll(async () => {
    work = await tempDir('mistyped');
    s3 = await startS3Server();
    env = { ...s3.env, REZFS_RUNTIME_DIR: join(work.path, 'run') };
    const repo = join(work.path, 'repo');
    await writeTree(repo, { 'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0') });
    expect((await runCli(['publish', repo, '--store', s3.storeUrl('prod')], { env })).code).toBe(0);
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    await s3?.stop();
    await work?.remove();
  });

  const cases = () => [
    { url: 's3://no-such-bucket/prod', says: /^rezfs: (cannot mount \S+: )?s3:\/\/no-such-bucket\/prod\/ does not exist \(no such bucket\): check the store URL\n$/ },
    { url: s3.storeUrl('no-such-prefix'), says: /^rezfs: (cannot mount \S+: )?s3:\/\/rezfs-test\/no-such-prefix\/ is not a rezfs store: it holds neither rezfs\.json nor index\/HEAD/ },
    { url: `file://${join(work.path, 'nonexistent')}`, says: /^rezfs: (cannot mount \S+: )?file:\/\/\S+\/nonexistent is not a rezfs store/ },
  ];

  it('ls, verify and prefetch say so in one line and exit 2', async () => {
    for (const { url, says } of cases()) {
      for (const args of [['ls'], ['ls', 'foo'], ['verify'], ['prefetch', 'foo-1.0.0', '--cache-dir', join(work.path, 'cache')]]) {
        const r = await runCli([...args, '--store', url], { env });
        expect({ code: r.code, stdout: r.stdout }, `${args[0]} ${url}: ${r.stderr}`).toEqual({ code: 2, stdout: '' });
        expect(r.stderr, `${args[0]} ${url}`).toMatch(says);
      }
    }
    const good = await runCli(['ls', '--store', s3.storeUrl('prod')], { env });
    expect(good.stdout, good.stderr).toMatch(/^foo\t1 version\t/);
  });

  it('mount refuses it with exit 2 and leaves nothing mounted', async () => {
    const mnt = join(work.path, 'mnt');
    await mkdir(mnt, { recursive: true });
    for (const { url, says } of cases()) {
      const r = await runCli(['mount', mnt, '--store', url, '--cache-dir', join(work.path, 'mount-cache')], { env, timeoutMs: 60_000 });
      expect(r.code, `${url}: ${r.stderr}`).toBe(2);
      expect(withoutWarnings(r.stderr), url).toMatch(says);
      expect(isMounted(mnt), url).toBe(false);
    }
  });

  it('publish cannot create a bucket: it says so, exit 2; a new directory or prefix it does create', async () => {
    const repo = join(work.path, 'repo');
    const r = await runCli(['publish', repo, '--store', 's3://no-such-bucket/prod'], { env });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^rezfs: s3:\/\/no-such-bucket\/prod\/ does not exist \(no such bucket\)/);
    const dir = join(work.path, 'new-store');
    expect((await runCli(['publish', repo, '--store', `file://${dir}`], { env })).code).toBe(0);
    expect((await readdir(dir)).sort()).toEqual(['families', 'index', 'manifests', 'packs', 'rezfs.json']);
  });

  it('a store with rezfs.json and nothing published yet is an empty store, not an error', async () => {
    const dir = join(work.path, 'empty-store');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'rezfs.json'), JSON.stringify({ format: '1.1.0', blockSize: 1048576 }));
    const r = await runCli(['ls', '--store', `file://${dir}`], { env });
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});
