/**
 * Fast self-tests of the test support code. Independent of src/ and dist/.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { chmod, lstat, lutimes, mkdtemp, readFile, readdir, readlink, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findMount, pidAlive, readMountTable, runCli, waitFor } from './cli.js';
import { addPackage, generateRepo, rezVariantHash, type RepoSummary } from './repo-generator.js';
import { startS3Server, type S3TestServer } from './s3-server.js';
import { diffTrees, FAMILY_DIRS, snapshotTree, treeStats, type TreeEntry } from './tree.js';

const tmpDirs: string[] = [];
async function tmp(prefix: string): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), `rezfs-support-${prefix}-`));
  tmpDirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
});

describe('repo-generator', () => {
  let a: string;
  let summary: RepoSummary;
  let snapA: TreeEntry[];

  beforeAll(async () => {
    a = await tmp('repo-a');
    summary = await generateRepo(a, { seed: 7 });
    snapA = await snapshotTree(a);
  });

  it('is deterministic for a given seed, different for another seed', async () => {
    const b = await tmp('repo-b');
    await generateRepo(b, { seed: 7 });
    expect(diffTrees(snapA, await snapshotTree(b))).toEqual([]);

    const c = await tmp('repo-c');
    await generateRepo(c, { seed: 8 });
    expect(diffTrees(snapA, await snapshotTree(c)).length).toBeGreaterThan(0);
  });

  it('meets the size and shape requirements', () => {
    const stats = treeStats(snapA);
    expect(summary.families.length).toBeGreaterThanOrEqual(20);
    for (const f of summary.families) {
      expect(summary.packages.filter((p) => p.family === f).length).toBeGreaterThanOrEqual(3);
    }
    expect(summary.fileCount).toBeGreaterThanOrEqual(1000);
    expect(stats.files).toBe(summary.fileCount);
    expect(stats.dirs).toBe(summary.dirCount);
    expect(stats.symlinks).toBe(summary.symlinkCount);
    expect(stats.bytes).toBe(summary.totalBytes);
    expect(summary.notable.bigFile.size).toBeGreaterThan(2 * 1024 * 1024);
    expect(snapA.some((e) => e.type === 'file' && e.size === 0)).toBe(true);
    expect(snapA.every((e) => Number.isInteger(e.mtimeSec))).toBe(true);
    expect(summary.packages.some((p) => p.format === 'yaml')).toBe(true);
    expect(summary.packages.some((p) => p.hashedVariants)).toBe(true);
  });

  it('produces the notable entries', async () => {
    const n = summary.notable;
    const abs = (p: string) => path.join(a, p);
    const byPath = new Map(snapA.map((e) => [e.path, e]));

    const [so, so1, real] = n.soChain;
    expect(await readlink(abs(so))).toBe(path.basename(so1));
    expect(await readlink(abs(so1))).toBe(path.basename(real));
    expect(byPath.get(real)?.type).toBe('file');

    expect(await readlink(abs(n.absoluteSymlink))).toBe(n.absoluteSymlinkTarget);
    expect(path.isAbsolute(n.absoluteSymlinkTarget)).toBe(true);
    expect(byPath.get(n.dirSymlink)?.type).toBe('symlink');
    expect(byPath.get(n.danglingSymlink)?.type).toBe('symlink');

    expect(byPath.get(n.executable)?.mode).toBe(0o755);
    expect((await readFile(abs(n.executable), 'utf8')).startsWith('#!')).toBe(true);
    expect(byPath.get(n.readOnlyFile)?.mode).toBe(0o444);
    for (const d of n.emptyDirs) expect(await readdir(abs(d))).toEqual([]);

    expect(n.unicodeFile).toContain('données été.txt');
    expect(byPath.get(n.unicodeFile)?.type).toBe('file');
    expect(byPath.get(n.emojiFile)?.type).toBe('file');
    expect(byPath.get(n.spacedFile)?.type).toBe('file');

    expect((await lstat(abs(n.ignoreMarker))).isFile()).toBe(true);
    expect(path.basename(n.ignoreMarker)).toBe(`.ignore${n.ignoredPackage.version}`);

    const hash = path.basename(n.hashedVariantDir);
    expect(hash).toMatch(/^[0-9a-f]{40}$/);
    expect(await readlink(abs(n.hashedVariantLink))).toBe(`../${hash}`);
    expect(rezVariantHash(['python-3.9'])).toBe(hash); // usd's first variant

    expect(n.blockBoundaryFiles.map((f) => f.size)).toEqual([1048575, 1048576, 1048577, 2097152]);
    expect(await readFile(abs(n.packageYaml), 'utf8')).toMatch(/^name: /);
    const py = await readFile(path.join(a, 'usd', '23.11', 'package.py'), 'utf8');
    expect(py).toContain("name = 'usd'");
    expect(py).toContain("version = '23.11'");
    expect(py).toContain("variants = [['python-3.9'], ['python-3.10'], ['python-3.11']]");
    expect(py).toContain('hashed_variants = True');
  });

  it('creates the big package and can add a package later', async () => {
    const d = await tmp('repo-big');
    const s = await generateRepo(d, { seed: 3, bigPackage: true, bigPackageMiB: 4 });
    const big = s.bigPackage!;
    expect(big.smallFile.size).toBe(10 * 1024);
    expect(big.totalBytes).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    expect(s.families).toContain('bigpkg');

    const added = await addPackage(d, 'hello_new', '0.1.0', { mtime: 1_750_000_000 });
    const st = await lstat(path.join(d, added.executable));
    expect(st.mode & 0o777).toBe(0o755);
    expect(Math.floor(st.mtimeMs / 1000)).toBe(1_750_000_000);
  });
});

describe('tree diff', () => {
  it('detects changed mode, size, content, target, type, presence and mtime; honours ignore rules', async () => {
    const d = await tmp('tree');
    const mk = async (root: string) => {
      await generateSmall(root);
      return snapshotTree(root);
    };
    const left = path.join(d, 'left');
    const right = path.join(d, 'right');
    const before = await mk(left);
    await mk(right);
    expect(diffTrees(before, await snapshotTree(right))).toEqual([]);

    await chmod(path.join(right, 'fam/1.0/bin/tool'), 0o644);
    await writeFile(path.join(right, 'fam/1.0/data.txt'), 'changed content, longer\n');
    await writeFile(path.join(right, 'fam/1.0/same-size.txt'), 'HELLO\n');
    await unlink(path.join(right, 'fam/1.0/lib/libx.so'));
    await symlink('libx.so.2', path.join(right, 'fam/1.0/lib/libx.so'));
    await unlink(path.join(right, 'fam/1.0/gone.txt'));
    await writeFile(path.join(right, 'fam/1.0/new.txt'), 'new\n');
    await rm(path.join(right, 'fam/1.0/dir-or-file'), { recursive: true });
    await writeFile(path.join(right, 'fam/1.0/dir-or-file'), '');
    for (const p of ['fam/1.0/data.txt', 'fam/1.0/same-size.txt', 'fam/1.0/new.txt', 'fam/1.0/dir-or-file']) {
      await utimes(path.join(right, p), 1_600_000_000, 1_600_000_000);
    }
    await utimes(path.join(right, 'fam/1.0'), 1_600_000_000, 1_600_000_000);
    await utimes(path.join(right, 'fam/1.0/lib'), 1_600_000_000, 1_600_000_000);
    await utimes(path.join(right, 'fam'), 1_650_000_000, 1_650_000_000);

    const after = await snapshotTree(right);
    const diffs = diffTrees(before, after, { labels: ['src', 'mount'] });
    const has = (re: RegExp) => expect(diffs.some((x) => re.test(x)), `${re} in\n${diffs.join('\n')}`).toBe(true);
    has(/^fam\/1\.0\/bin\/tool: mode 0755 != 0644$/);
    has(/^fam\/1\.0\/data\.txt: size 6 != 24$/);
    has(/^fam\/1\.0\/data\.txt: sha256 /);
    has(/^fam\/1\.0\/same-size\.txt: sha256 /);
    has(/^fam\/1\.0\/lib\/libx\.so: target "libx\.so\.1" != "libx\.so\.2"$/);
    has(/^missing in mount: fam\/1\.0\/gone\.txt/);
    has(/^missing in src: fam\/1\.0\/new\.txt/);
    has(/^fam\/1\.0\/dir-or-file: type dir != file$/);
    has(/^fam: mtimeSec /);
    expect(diffs.some((x) => /same-size\.txt: size/.test(x))).toBe(false);

    const filtered = diffTrees(before, after, {
      ignore: [
        { paths: FAMILY_DIRS, fields: ['mtimeSec'] },
        { paths: /^fam\/1\.0/, fields: ['mtimeSec', 'presence'] },
        { paths: 'fam/1.0/bin/tool', fields: ['mode'] },
      ],
    });
    expect(filtered.some((x) => x.startsWith('fam:'))).toBe(false);
    expect(filtered.some((x) => x.includes('missing'))).toBe(false);
    expect(filtered.some((x) => x.includes('bin/tool'))).toBe(false);
    expect(filtered.some((x) => x.includes('data.txt: size'))).toBe(true);

    expect(diffTrees(before, after, { max: 2 })).toHaveLength(3);
  });
});

async function generateSmall(root: string): Promise<void> {
  const { mkdir } = await import('node:fs/promises');
  const p = (x: string) => path.join(root, x);
  await mkdir(p('fam/1.0/bin'), { recursive: true });
  await mkdir(p('fam/1.0/lib'), { recursive: true });
  await mkdir(p('fam/1.0/dir-or-file'), { recursive: true });
  await writeFile(p('fam/1.0/package.py'), "name = 'fam'\nversion = '1.0'\n");
  await writeFile(p('fam/1.0/bin/tool'), '#!/bin/sh\necho tool\n');
  await chmod(p('fam/1.0/bin/tool'), 0o755);
  await writeFile(p('fam/1.0/data.txt'), 'hello\n');
  await writeFile(p('fam/1.0/same-size.txt'), 'hello\n');
  await writeFile(p('fam/1.0/gone.txt'), 'bye\n');
  await writeFile(p('fam/1.0/lib/libx.so.1'), 'x');
  await symlink('libx.so.1', p('fam/1.0/lib/libx.so'));
  for (const x of ['fam/1.0/package.py', 'fam/1.0/bin/tool', 'fam/1.0/data.txt', 'fam/1.0/same-size.txt', 'fam/1.0/gone.txt', 'fam/1.0/lib/libx.so.1', 'fam/1.0/bin', 'fam/1.0/lib', 'fam/1.0/dir-or-file', 'fam/1.0', 'fam']) {
    await utimes(p(x), 1_700_000_000, 1_700_000_000);
  }
  // The link's own time too: two trees made a second apart (a loaded machine) must still compare equal.
  await lutimes(p('fam/1.0/lib/libx.so'), 1_700_000_000, 1_700_000_000);
}

describe('s3 test server', () => {
  let s3: S3TestServer;
  let client: S3Client;

  beforeAll(async () => {
    s3 = await startS3Server();
    client = new S3Client({
      endpoint: s3.env.AWS_ENDPOINT_URL,
      region: s3.env.AWS_REGION,
      credentials: { accessKeyId: s3.env.AWS_ACCESS_KEY_ID!, secretAccessKey: s3.env.AWS_SECRET_ACCESS_KEY! },
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 1,
    });
  });
  afterAll(async () => {
    client?.destroy();
    const pid = s3?.pid;
    await s3?.stop();
    if (pid) expect(await waitFor(() => !pidAlive(pid), 5000)).toBe(true);
  });

  it('puts, gets ranges and counts requests through the proxy', async () => {
    const body = Buffer.from(Array.from({ length: 100 }, (_, i) => i));
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'packs/abc', Body: body }));
    s3.requests.reset();

    const r = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'packs/abc', Range: 'bytes=10-19' }));
    const got = Buffer.from(await r.Body!.transformToByteArray());
    expect(got).toEqual(body.subarray(10, 20));

    expect(s3.requests.count()).toBe(1);
    expect(s3.requests.count({ method: 'GET', keyPrefix: 'packs/' })).toBe(1);
    expect(s3.requests.count({ method: 'GET', keyPrefix: 'index/' })).toBe(0);
    expect(s3.requests.count({ keyMatch: /(^|\/)packs\// })).toBe(1);
    const [req] = s3.requests.all();
    expect(req).toMatchObject({ method: 'GET', bucket: s3.bucket, key: 'packs/abc', path: `/${s3.bucket}/packs/abc`, range: 'bytes=10-19', status: 206 });
    expect(req!.responseBytes).toBe(10);
  });

  it('lists with continuation tokens (needs --openssl-legacy-provider) and decodes keys', async () => {
    for (const k of ['list/a', 'list/b', 'list/c d é']) {
      await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: k, Body: k }));
    }
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const r = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'list/', MaxKeys: 1, ContinuationToken: token }));
      keys.push(...(r.Contents ?? []).map((o) => o.Key!));
      token = r.NextContinuationToken;
    } while (token);
    expect(keys).toEqual(['list/a', 'list/b', 'list/c d é']);
    expect(s3.requests.count((q) => q.method === 'PUT' && q.key === 'list/c d é')).toBe(1);
  });

  it('documents s3rver quirks: Range bytes=0-0 returns the whole object; If-None-Match on PUT is ignored', async () => {
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'quirk/x', Body: 'abcdef' }));
    const r = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'quirk/x', Range: 'bytes=0-0' }));
    expect(await r.Body!.transformToString()).toBe('abcdef');
    // A conditional create of an existing key "succeeds" on s3rver (real S3 answers 412).
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'quirk/x', Body: 'zz', IfNoneMatch: '*' }));
    const r2 = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'quirk/x' }));
    expect(await r2.Body!.transformToString()).toBe('zz');
  });

  it('can inject faults', async () => {
    s3.setInterceptor((q) => (q.key === 'packs/abc' ? { status: 503, body: '<Error><Code>SlowDown</Code></Error>' } : undefined));
    try {
      await expect(client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'packs/abc' }))).rejects.toThrow();
      expect(s3.requests.filter({ keyPrefix: 'packs/abc', status: 503 }).at(-1)?.intercepted).toBe(true);
    } finally {
      s3.setInterceptor(null);
    }
    const ok = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'packs/abc' }));
    expect((await ok.Body!.transformToByteArray()).length).toBe(100);
  });
});

describe('cli helpers', () => {
  it('runs a script, captures output and exit code, and times out', async () => {
    const d = await tmp('cli');
    const script = path.join(d, 'fake.mjs');
    await writeFile(
      script,
      `const [mode] = process.argv.slice(2);
if (mode === 'ok') { console.log('pid ' + process.pid); console.error('warn'); process.exit(3); }
if (mode === 'hang') { setInterval(() => {}, 1000); }
if (mode === 'daemon') {
  const { spawn } = await import('node:child_process');
  // Bad daemonization: the grandchild inherits our stdout. runCli must still return when we exit.
  const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 2500)'], { detached: true, stdio: ['ignore', 'inherit', 'inherit'] });
  c.unref();
  console.log('pid ' + c.pid);
  process.exit(0);
}
`,
    );
    const ok = await runCli(['ok'], { script, env: { FOO: 'bar' } });
    expect(ok.code).toBe(3);
    expect(ok.stdout).toMatch(/^pid \d+/);
    expect(ok.stderr).toBe('warn\n');

    const hang = await runCli(['hang'], { script, timeoutMs: 300 });
    expect(hang.timedOut).toBe(true);
    expect(hang.code).toBe(-1);
    expect(hang.signal).toBe('SIGTERM');

    const started = Date.now();
    const daemon = await runCli(['daemon'], { script });
    expect(daemon.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(3500);
    const pid = Number(/pid (\d+)/.exec(daemon.stdout)![1]);
    expect(await waitFor(() => !pidAlive(pid), 8000)).toBe(true);
  });

  it('reads the mount table without touching mounts', () => {
    const table = readMountTable();
    expect(table.some((m) => m.mountpoint === '/')).toBe(true);
    expect(findMount('/')?.mountpoint).toBe('/');
    expect(findMount(path.join(tmpdir(), 'definitely-not-mounted-rezfs'))).toBeUndefined();
  });
});
