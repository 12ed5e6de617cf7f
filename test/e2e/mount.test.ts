import { createHash, randomInt } from 'node:crypto';
import { constants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forceUnmountAll, mountStore, runCli, runProcess, type MountHandle } from '../support/cli.js';
import { addPackage, generateRepo, type RepoSummary } from '../support/repo-generator.js';
import { expectBytesAt } from '../support/reads.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { tempDir } from '../support/small-repo.js';
import { FAMILY_DIRS, diffTrees, snapshotTree } from '../support/tree.js';

/**
 * What a user does: publish a generated released repository, mount it with the CLI (served by another
 * process, as in production), and use the mount through the kernel. Run over file:// and over s3://
 * (s3rver on 127.0.0.1 behind a counting proxy).
 */

let work: Awaited<ReturnType<typeof tempDir>>;
let repo: RepoSummary;
let s3: S3TestServer;

beforeAll(async () => {
  work = await tempDir('e2e');
  repo = await generateRepo(join(work.path, 'repo'), { bigPackage: true, bigPackageMiB: 50 });
  s3 = await startS3Server();
}, 300_000);

afterAll(async () => {
  await forceUnmountAll([work.path]);
  await s3?.stop();
  await work?.remove();
});

interface Target {
  kind: 'file' | 's3';
  store: () => string;
  env: () => Record<string, string>;
  /** Keys as the request log records them. */
  packGets: () => number;
}

const targets: Target[] = [
  { kind: 'file', store: () => `file://${join(work.path, 'store')}`, env: () => ({}), packGets: () => NaN },
  {
    kind: 's3',
    store: () => s3.storeUrl('e2e'),
    env: () => s3.env,
    packGets: () => s3.requests.count({ method: 'GET', keyPrefix: 'e2e/packs/' }),
  },
];

describe.each(targets)('publish and mount over $kind', (target) => {
  let mount: MountHandle;
  let mnt: string;
  const cli = (args: string[]) => runCli(args, { env: target.env(), timeoutMs: 300_000 });

  beforeAll(async () => {
    const published = await cli(['publish', repo.root, '--store', target.store()]);
    expect(published.stderr).toBe('');
    expect(published.code).toBe(0);
    expect(published.stdout).toMatch(new RegExp(`^published ${repo.versionCount} packages \\(`));
    mnt = join(work.path, `mnt-${target.kind}`);
    mount = await mountStore({ store: target.store(), mountpoint: mnt, cacheDir: join(work.path, `cache-${target.kind}`), env: target.env() });
  }, 600_000);

  afterAll(async () => mount?.unmount());

  it('shows the same tree as the source: names, types, modes, sizes, mtimes, targets, bytes', async () => {
    const [source, mounted] = await Promise.all([snapshotTree(repo.root), snapshotTree(mnt)]);
    expect(mounted.length).toBe(source.length);
    // A family directory's mtime on the mount is its last publish time (rez's resolve cache reads it).
    const diffs = diffTrees(source, mounted, { labels: ['source', 'mount'], ignore: [{ paths: FAMILY_DIRS, fields: ['mtimeSec'] }] });
    expect(diffs).toEqual([]);
    const families = await fsp.readdir(mnt);
    expect(families.sort()).toEqual(repo.families);
  });

  it('returns exact bytes for random reads across blocks and past the end', async () => {
    const file = repo.notable.bigFile;
    const source = await fsp.readFile(join(repo.root, file.path));
    const handle = await fsp.open(join(mnt, file.path), 'r');
    try {
      const MiB = 1024 * 1024;
      const cases: [number, number][] = [[0, 1], [MiB - 1, 2], [MiB - 100, MiB + 200], [2 * MiB - 3, 7], [file.size - 10, 100], [file.size, 10], [file.size + 5000, 10]];
      for (let i = 0; i < 60; i++) cases.push([randomInt(file.size), randomInt(1, 3 * MiB)]);
      for (const [offset, length] of cases) await expectBytesAt(handle, source, offset, length);
    } finally {
      await handle.close();
    }
    for (const boundary of repo.notable.blockBoundaryFiles) {
      const [a, b] = await Promise.all([fsp.readFile(join(repo.root, boundary.path)), fsp.readFile(join(mnt, boundary.path))]);
      expect(sha(b)).toBe(sha(a));
    }
  });

  it('runs executables and follows the .so chain', async () => {
    // Through sh: spawn() blocks this process until execve returns, and the mount may need this process's S3 proxy.
    const ran = await runProcess('sh', ['-c', '"$0"', join(mnt, repo.notable.executable)], { timeoutMs: 30_000 });
    expect(ran.stdout.trim()).toBe(repo.notable.executableOutput);
    const [so, so1, real] = repo.notable.soChain;
    expect(await fsp.realpath(join(mnt, so))).toBe(join(mnt, real));
    expect(await fsp.readlink(join(mnt, so1))).toBe(await fsp.readlink(join(repo.root, so1)));
    expect(await fsp.readlink(join(mnt, repo.notable.absoluteSymlink))).toBe(repo.notable.absoluteSymlinkTarget);
  });

  it('refuses every kind of write with EROFS', async () => {
    const pkg = join(mnt, repo.packages[0]!.dir);
    const file = join(pkg, 'package.py');
    const attempts: [string, () => Promise<unknown>][] = [
      ['write', () => fsp.writeFile(file, 'x')],
      ['append', () => fsp.appendFile(file, 'x')],
      ['create', () => fsp.writeFile(join(pkg, 'new-file'), 'x')],
      ['mkdir', () => fsp.mkdir(join(pkg, 'new-dir'))],
      ['unlink', () => fsp.unlink(file)],
      ['rmdir', () => fsp.rmdir(pkg)],
      ['rename', () => fsp.rename(file, join(pkg, 'moved.py'))],
      ['chmod', () => fsp.chmod(file, 0o777)],
      ['truncate', () => fsp.truncate(file, 0)],
      ['symlink', () => fsp.symlink('package.py', join(pkg, 'link'))],
      ['utimes', () => fsp.utimes(file, 1, 1)],
      ['open rw', () => fsp.open(file, constants.O_RDWR)],
    ];
    for (const [name, attempt] of attempts) {
      await expect(attempt(), name).rejects.toMatchObject({ code: 'EROFS' });
    }
    expect(await fsp.readFile(file, 'utf8')).toBe(await fsp.readFile(join(repo.root, repo.packages[0]!.dir, 'package.py'), 'utf8'));
  });

  it('answers ENOENT for missing paths and ENODATA for xattrs', async () => {
    await expect(fsp.stat(join(mnt, 'settings.yaml'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fsp.stat(join(mnt, repo.families[0]!, 'package.py'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fsp.stat(join(mnt, 'no-such-family', '1.0'))).rejects.toMatchObject({ code: 'ENOENT' });
    const attr = await runProcess('python3', ['-c', `import os,sys\ntry:\n  os.getxattr(sys.argv[1], 'user.nope')\nexcept OSError as e:\n  print(e.errno)\nprint(os.listxattr(sys.argv[1]))`, join(mnt, repo.packages[0]!.dir, 'package.py')], { timeoutMs: 30_000 });
    expect(attr.stdout.trim().split('\n')).toEqual(['61', '[]']);
  });

  // Requests are counted at the S3 server's proxy, so this one runs over s3:// only.
  it.skipIf(target.kind !== 's3')('is lazy: listing and package.py fetch no payload; a 10 KiB file costs at most 2 blocks', async () => {
    const fresh = await mountStore({ store: target.store(), mountpoint: join(work.path, 'mnt-lazy'), cacheDir: join(work.path, 'cache-lazy'), env: target.env() });
    try {
      s3.requests.reset();
      const families = await fsp.readdir(fresh.mountpoint);
      for (const family of families) await fsp.readdir(join(fresh.mountpoint, family));
      for (const pkg of repo.packages) {
        const definition = pkg.format === 'py' ? 'package.py' : 'package.yaml';
        expect(await fsp.readFile(join(fresh.mountpoint, pkg.dir, definition), 'utf8')).toBe(await fsp.readFile(join(repo.root, pkg.dir, definition), 'utf8'));
      }
      expect(target.packGets()).toBe(0);
      expect(s3.requests.count({ method: 'GET', keyPrefix: 'e2e/manifests/' })).toBe(0);

      const small = repo.bigPackage!.smallFile;
      const [fromMount, fromSource] = await Promise.all([fsp.readFile(join(fresh.mountpoint, small.path)), fsp.readFile(join(repo.root, small.path))]);
      expect(fromMount.equals(fromSource)).toBe(true);
      expect(target.packGets()).toBeGreaterThanOrEqual(1);
      expect(target.packGets()).toBeLessThanOrEqual(2);
      for (const r of s3.requests.filter({ method: 'GET', keyPrefix: 'e2e/packs/' })) expect(r.range).toMatch(/^bytes=\d+-\d+$/);
      // Least privilege: a mount only reads objects (GET, HEAD); it never lists, writes or deletes.
      const methods = new Set(s3.requests.all().map((r) => (r.query.includes('list-type') ? 'LIST' : r.method)));
      expect([...methods].sort()).toEqual(['GET', 'HEAD'].filter((m) => methods.has(m)));
    } finally {
      await fresh.unmount();
    }
  });

  it('republishing uploads nothing; a new version uploads only its payload, its shard, the index and HEAD', async () => {
    const storeKeys = async () => {
      const listed = await cli(['ls', '--store', target.store()]);
      return listed.stdout;
    };
    const before = await storeKeys();
    if (target.kind === 's3') s3.requests.reset();
    const again = await cli(['publish', repo.root, '--store', target.store()]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^nothing to publish: \d+ packages already in .*; 0 objects uploaded/);
    if (target.kind === 's3') expect(s3.requests.count({ method: 'PUT' })).toBe(0);
    expect(await storeKeys()).toBe(before);

    const family = repo.packages[0]!.family;
    const extraRepo = join(work.path, `repo-extra-${target.kind}`);
    await fsp.cp(join(repo.root, family), join(extraRepo, family), { recursive: true, verbatimSymlinks: true });
    await addPackage(extraRepo, family, '99.0.0');
    if (target.kind === 's3') s3.requests.reset();
    const added = await cli(['publish', extraRepo, `${family}/99.0.0`, '--store', target.store()]);
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/^published 1 packages .*: 5 objects uploaded/);
    if (target.kind === 's3') {
      const puts = s3.requests.filter({ method: 'PUT' }).map((r) => r.key.replace(/^e2e\//, '').replace(/[0-9a-f]{64}/, '<hash>'));
      expect(puts.filter((key) => !key.startsWith('locks/')).sort()).toEqual(['families/<hash>.json', 'index/<hash>.json', 'index/HEAD', 'manifests/<hash>.json', 'packs/<hash>']);
      // s3rver ignores conditional PUTs: the publisher found that out (a probe: a PUT, then a create-only PUT that
      // succeeds) and swapped HEAD under the catalog lease (one claim); it deleted all three.
      const coordination = puts.filter((key) => key.startsWith('locks/'));
      expect(coordination.map((key) => key.split('/').slice(0, 2).join('/')).sort()).toEqual(['locks/catalog', 'locks/probe', 'locks/probe']);
      expect(new Set(s3.requests.filter({ method: 'DELETE' }).map((r) => r.key.replace(/^e2e\//, '')))).toEqual(new Set(coordination));
    }
    const versions = await cli(['ls', family, '--store', target.store()]);
    expect(versions.stdout).toContain(`${family}/99.0.0`);
  });
});

function sha(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
