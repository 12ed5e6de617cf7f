import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { generateSigningKeys } from '../../src/catalog/index.js';
import { cliCopy, runCli } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';
import { snapshotTree, type TreeEntry } from '../support/tree.js';

const exec = promisify(execFile);
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/**
 * What publish refuses. A problem in one version refuses that version: it is named on its own line, the rest is
 * published, exit 1. A problem with the command itself (where to publish from or to) is one line, exit 2, and the
 * store is left byte for byte as it was.
 */
describe('publish refuses bad input', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let pristine: string;
  let storeDir: string;
  let before: TreeEntry[];
  let repo: string;
  const storeUrl = () => `file://${storeDir}`;

  beforeAll(async () => {
    work = await tempDir('badinput');
    await chmod(work.path, 0o755); // the unreadable-file case publishes as an unprivileged user
    pristine = join(work.path, 'pristine');
    const good = join(work.path, 'good');
    await writeTree(good, { 'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0') });
    const first = await runCli(['publish', good, '--store', `file://${pristine}`]);
    expect(first.code).toBe(0);
    await exec('chmod', ['-R', 'a+rwX', pristine]);
  });
  afterAll(async () => work?.remove());

  beforeEach(async () => {
    const id = Math.random().toString(36).slice(2);
    repo = join(work.path, `repo-${id}`);
    storeDir = join(work.path, `store-${id}`);
    await cp(pristine, storeDir, { recursive: true, preserveTimestamps: true });
    await mkdir(`${storeDir}.state`, { mode: 0o777 });
    await chmod(`${storeDir}.state`, 0o777);
    before = await snapshotTree(storeDir);
    await writeTree(repo, {
      'foo/1.0.0/package.py': packageDefinition('foo', '1.0.0'),
      'bar/2.0/package.py': packageDefinition('bar', '2.0'),
      'bar/2.0/lib/ok.txt': 'fine',
    });
  });

  // This host's memory of what it published is per test (and writable for the unprivileged case).
  const publishing = (args: string[], options: { uid?: number; gid?: number; store?: string; script?: string; cwd?: string } = {}) =>
    runCli(['publish', ...args, '--store', options.store ?? storeUrl(), '--state-dir', `${storeDir}.state`], options);

  /** The command is refused: exit 2, one line, the store byte for byte unchanged. */
  async function expectRefused(args: string[], pattern: RegExp, options: { store?: string } = {}): Promise<void> {
    const result = await publishing(args, options);
    expect(result.code, result.stderr).toBe(2);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines, result.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
    expect(result.stdout).toBe('');
    expect(await snapshotTree(storeDir)).toEqual(before);
  }

  /** One version is refused: its line, then the count, exit 1; with nothing else new, the store is unchanged. */
  async function expectVersionRefused(pattern: RegExp, options: { uid?: number; gid?: number; script?: string; cwd?: string } = {}): Promise<void> {
    const result = await publishing([repo], options);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr.trimEnd().split('\n'), result.stderr).toEqual([expect.stringMatching(pattern), 'rezfs: 1 refused (named above); everything else is published']);
    expect(result.stdout).toMatch(/^nothing to publish: 1 packages already in /);
    expect(await snapshotTree(storeDir)).toEqual(before);
  }

  it('a missing repository directory', async () => {
    await expectRefused([join(work.path, 'nowhere')], /^rezfs: \/.*\/nowhere: no such directory/);
  });

  it('a version directory given as the repository', async () => {
    await expectRefused([join(repo, 'bar/2.0')], /^rezfs: \/.*\/bar\/2\.0: holds a package definition: it is a package, not a repository/);
  });

  it('a family directory given as the repository', async () => {
    await expectRefused([join(repo, 'bar')], /^rezfs: \/.*\/bar: is a package family directory \(2\.0\/package\.py defines bar\); give the repository that holds it$/);
  });

  it('a store inside the repository', async () => {
    const inside = join(repo, 'store');
    await cp(storeDir, inside, { recursive: true, preserveTimestamps: true });
    storeDir = inside;
    before = await snapshotTree(storeDir);
    await expectRefused([repo], /^rezfs: \/.*\/store: the store is inside the repository \/.*; put it outside/);
  });

  it('a read-only store, before the repository is scanned', async () => {
    // The repository does not even exist: the store is refused first.
    const result = await runCli(['publish', join(work.path, 'nowhere'), '--store', 'http://127.0.0.1:9/store']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('rezfs: http://127.0.0.1:9/store/ is read-only (plain HTTP): use the s3://, file:// or dav+http(s):// store behind it\n');
  });

  it('an unsigned publish onto a signed store, unless --allow-unsigned', async () => {
    const key = join(work.path, `key-${Math.random().toString(36).slice(2)}`);
    await writeFile(key, generateSigningKeys().privatePem, { mode: 0o600 });
    expect((await publishing([repo, '--sign-key', key])).code).toBe(0); // the store is signed from now on
    before = await snapshotTree(storeDir);
    await writeTree(repo, { 'bar/3.0/package.py': packageDefinition('bar', '3.0') });
    await expectRefused([repo], /^rezfs: file:\/\/\/.*: its catalog is signed: sign with --sign-key KEY \(or pass --allow-unsigned/);
    const signed = await publishing([repo, '--sign-key', key]);
    expect(signed.code, signed.stderr).toBe(0);
    await writeTree(repo, { 'bar/4.0/package.py': packageDefinition('bar', '4.0') });
    expect((await publishing([repo, '--allow-unsigned'])).code).toBe(0);
  });

  it('a version directory without package.py or package.yaml: refused, the others published', async () => {
    await mkdir(join(repo, 'bar', '3.0', 'lib'), { recursive: true });
    const result = await publishing([repo]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^rezfs: refused bar\/3\.0: \/.*\/bar\/3\.0: version directory has neither package\.py nor package\.yaml\n/);
    expect(result.stdout).toMatch(/^published 1 packages/);
  });

  it('a FIFO', async () => {
    await exec('mkfifo', [join(repo, 'bar/2.0/lib/pipe')]);
    await expectVersionRefused(/^rezfs: refused bar\/2\.0: \/.*\/bar\/2\.0\/lib\/pipe: a FIFO cannot be published/);
  });

  it('a socket', async () => {
    const path = join(repo, 'bar/2.0/lib/sock');
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      await expectVersionRefused(/bar\/2\.0\/lib\/sock: a socket cannot be published/);
    } finally {
      server.close();
    }
  });

  it.skipIf(!isRoot)('a device file', async () => {
    await exec('mknod', [join(repo, 'bar/2.0/lib/null'), 'c', '1', '3']);
    await expectVersionRefused(/bar\/2\.0\/lib\/null: a device file cannot be published/);
  });

  it('a file name that is not valid UTF-8', async () => {
    await writeFile(Buffer.concat([Buffer.from(join(repo, 'bar/2.0/lib/')), Buffer.from([0x66, 0xff, 0x6f])]), 'x');
    await expectVersionRefused(/bar\/2\.0\/lib\/f\uFFFDo: file name is not valid UTF-8/);
  });

  // Root reads everything, so the unreadable file is published by an unprivileged user.
  it.skipIf(!isRoot)('an unreadable file', async () => {
    await exec('chmod', ['-R', 'a+rX', repo]);
    await exec('chmod', ['-R', 'a+rwX', storeDir]);
    await chmod(join(repo, 'bar/2.0/lib/ok.txt'), 0o000);
    before = await snapshotTree(storeDir);
    // The checkout may be out of nobody's reach (a clone in root's 0700 home): run a copy nobody can enter.
    const copy = await cliCopy({ native: false });
    try {
      await expectVersionRefused(/bar\/2\.0\/lib\/ok\.txt: cannot read \(EACCES\)/, { uid: NOBODY, gid: NOBODY, script: copy.cli, cwd: copy.root });
    } finally {
      await copy.remove();
    }
  });

  it('an unknown selector', async () => {
    await expectRefused([repo, 'nope'], /nope: no such package family in the repository/);
  });

  it('a store URL it cannot use', async () => {
    const result = await runCli(['publish', repo, '--store', 'ftp://host/x']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^rezfs: bad store URL "ftp:\/\/host\/x": unsupported scheme ftp:; use file:\/\/\/abs\/dir, s3:\/\/bucket\/prefix, http\(s\):\/\/host\/prefix \(read-only\) or dav\+http\(s\):\/\/host\/repo\/prefix\n$/);
  });

  it('still publishes once the input is fixed', async () => {
    await rm(join(repo, 'foo'), { recursive: true });
    const result = await publishing([repo]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^published 1 packages/);
  });
});
