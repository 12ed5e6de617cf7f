import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const exec = promisify(execFile);
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/** Bad input: exit 2, one line naming the path and the problem, and the store's index/HEAD untouched. */
describe('publish refuses bad input', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let storeDir: string;
  let head: Buffer;
  let repo: string;

  beforeAll(async () => {
    work = await tempDir('badinput');
    await chmod(work.path, 0o755); // the unreadable-file case publishes as an unprivileged user
    storeDir = join(work.path, 'store');
    const good = join(work.path, 'good');
    await writeTree(good, { 'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0') });
    const first = await runCli(['publish', good, '--store', `file://${storeDir}`]);
    expect(first.code).toBe(0);
    head = await readFile(join(storeDir, 'index/HEAD'));
    await exec('chmod', ['-R', 'a+rwX', storeDir]);
  });
  afterAll(async () => work?.remove());

  beforeEach(async () => {
    repo = join(work.path, `repo-${Math.random().toString(36).slice(2)}`);
    await writeTree(repo, {
      'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0'),
      'bar/2.0/package.py': packageDefinition('bar', '2.0'),
      'bar/2.0/lib/ok.txt': 'fine',
    });
  });

  async function expectRefused(args: string[], pattern: RegExp, options: { uid?: number; gid?: number } = {}): Promise<void> {
    const result = await runCli(['publish', ...args, '--store', `file://${storeDir}`], options);
    expect(result.code, result.stderr).toBe(2);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
    expect(result.stdout).toBe('');
    expect((await readFile(join(storeDir, 'index/HEAD'))).equals(head)).toBe(true);
  }

  it('a missing repository directory', async () => {
    await expectRefused([join(work.path, 'nowhere')], /^rezfs: \/.*\/nowhere: no such directory/);
  });

  it('a version directory without package.py or package.yaml', async () => {
    await mkdir(join(repo, 'bar', '3.0', 'lib'), { recursive: true });
    await expectRefused([repo], /bar\/3\.0: version directory has neither package\.py nor package\.yaml/);
  });

  it('a FIFO', async () => {
    await exec('mkfifo', [join(repo, 'bar/2.0/lib/pipe')]);
    await expectRefused([repo], /bar\/2\.0\/lib\/pipe: a FIFO cannot be published/);
  });

  it('a socket', async () => {
    const path = join(repo, 'bar/2.0/lib/sock');
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      await expectRefused([repo], /bar\/2\.0\/lib\/sock: a socket cannot be published/);
    } finally {
      server.close();
    }
  });

  it.skipIf(!isRoot)('a device file', async () => {
    await exec('mknod', [join(repo, 'bar/2.0/lib/null'), 'c', '1', '3']);
    await expectRefused([repo], /bar\/2\.0\/lib\/null: a device file cannot be published/);
  });

  it('a file name that is not valid UTF-8', async () => {
    await writeFile(Buffer.concat([Buffer.from(join(repo, 'bar/2.0/lib/')), Buffer.from([0x66, 0xff, 0x6f])]), 'x');
    await expectRefused([repo], /bar\/2\.0\/lib\/f\uFFFDo: file name is not valid UTF-8/);
  });

  // Root reads everything, so the unreadable file is published by an unprivileged user.
  it.skipIf(!isRoot)('an unreadable file', async () => {
    await exec('chmod', ['-R', 'a+rX', repo]);
    await chmod(join(repo, 'bar/2.0/lib/ok.txt'), 0o000);
    await expectRefused([repo], /bar\/2\.0\/lib\/ok\.txt: cannot read \(EACCES\)/, { uid: NOBODY, gid: NOBODY });
  });

  it('an unknown selector', async () => {
    await expectRefused([repo, 'nope'], /nope: no such package family in the repository/);
  });

  it('a store URL it cannot use', async () => {
    const result = await runCli(['publish', repo, '--store', 'ftp://host/x']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^rezfs: bad store URL "ftp:\/\/host\/x": unsupported scheme ftp:; use file:\/\/\/abs\/dir, s3:\/\/bucket\/prefix or http\(s\):\/\/host\/prefix\n$/);
  });

  it('still publishes once the input is fixed', async () => {
    await rm(join(repo, 'foo'), { recursive: true });
    const result = await runCli(['publish', repo, '--store', `file://${storeDir}`]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^published 1 packages/);
  });
});
