/**
 * The native addon under valgrind's memcheck: a mount served by `node` running inside valgrind gets every
 * operation the addon handles (lookups, negative lookups, getattr, readdir and readdirplus, readlink, reads,
 * xattrs, statfs, forgets after drop_caches, invalidations after a publish, unmount), then the report must show
 * no memory error and no leak whose stack passes through rezfs_fuse.node. Errors in node or V8 themselves are
 * not ours to judge and are left out. Skipped without valgrind (apt install valgrind).
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeBindingAvailable } from '../../src/fs/index.js';
import { CLI_PATH, forceUnmountAll, isMounted, runCli, waitFor } from '../support/cli.js';
import { spawnChild } from '../support/proc.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const exec = promisify(execFile);

function hasValgrind(): boolean {
  try {
    execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const ready = nativeBindingAvailable() && hasValgrind();
if (!ready) console.warn('[memcheck] skipped: needs valgrind and the built native binding (npm run build:native)');

/** The errors of a memcheck XML report whose stack goes through our addon: kind and the first frames. */
function addonErrors(xml: string): string[] {
  const found: string[] = [];
  for (const error of xml.match(/<error>[\s\S]*?<\/error>/g) ?? []) {
    if (!/<obj>[^<]*rezfs_fuse\.node<\/obj>/.test(error)) continue;
    const kind = /<kind>(.*?)<\/kind>/.exec(error)?.[1] ?? '?';
    const frames = [...error.matchAll(/<fn>(.*?)<\/fn>/g)].slice(0, 6).map((m) => m[1]);
    found.push(`${kind}: ${frames.join(' < ')}`);
  }
  return found;
}

describe.skipIf(!ready)('native addon under valgrind memcheck', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;
  let store: string;
  let mnt: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    work = await tempDir('memcheck');
    repo = join(work.path, 'repo');
    store = `file://${join(work.path, 'store')}`;
    mnt = join(work.path, 'mnt');
    env = { ...process.env, REZFS_RUNTIME_DIR: join(work.path, 'run') };
    await writeTree(repo, {
      'foo/1.0/package.py': packageDefinition('foo', '1.0'),
      'foo/1.0/lib/libfoo.so.1': Buffer.alloc(3 * 1024 * 1024 + 17, 7),
      'foo/1.0/lib/libfoo.so': { link: 'libfoo.so.1' },
      'foo/1.0/share/empty': { dir: true },
      'bar/2.0/package.py': packageDefinition('bar', '2.0'),
      'bar/2.0/données été.txt': 'accents\n',
    });
    expect((await runCli(['publish', repo, '--store', store], { env })).code).toBe(0);
    await exec('mkdir', ['-p', mnt]);
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    await work.remove();
  });

  it('serves every operation with no memory error or leak in the addon', async () => {
    const report = join(work.path, 'memcheck.xml');
    const server = spawnChild(
      'valgrind',
      [
        '--tool=memcheck', '--leak-check=full', '--show-leak-kinds=definite,indirect', '--errors-for-leak-kinds=definite,indirect',
        '--xml=yes', `--xml-file=${report}`,
        process.execPath, CLI_PATH, 'mount', mnt, '--store', store, '--cache-dir', join(work.path, 'cache'),
        '--fuse', 'native', '--foreground', '--refresh', '0',
      ],
      { timeoutMs: 600_000, env },
    );
    try {
      expect(await waitFor(() => isMounted(mnt), 240_000, 500)).toBe(true);
      const listing = await exec('find', [mnt, '-printf', '%s %m %l %p\n']);
      expect(listing.stdout).toContain('/foo/1.0/lib/libfoo.so');
      const tar = await exec('sh', ['-c', 'tar -cf - "$0" | wc -c', mnt]);
      expect(Number(tar.stdout)).toBeGreaterThan(3 * 1024 * 1024);
      expect(existsSync(join(mnt, 'foo/1.0/lib/missing.so'))).toBe(false);
      expect(await readFile(join(mnt, 'bar/2.0/données été.txt'), 'utf8')).toBe('accents\n');
      const python = 'import os,sys; m=sys.argv[1]; print(os.listxattr(m+"/foo")); print(os.statvfs(m).f_files)\ntry: os.getxattr(m+"/foo","user.x")\nexcept OSError as e: print(e.errno)';
      expect((await exec('python3', ['-c', python, mnt])).stdout).toBe('[]\n2\n61\n');
      await writeFile('/proc/sys/vm/drop_caches', '2'); // forgets
      await exec('find', [mnt]);
      await writeTree(repo, { 'foo/2.0/package.py': packageDefinition('foo', '2.0') });
      expect((await runCli(['publish', repo, '--store', store], { env })).code).toBe(0); // refresh: invalidations
      expect(await waitFor(() => existsSync(join(mnt, 'foo/2.0/package.py')), 60_000, 250)).toBe(true);
    } finally {
      await runCli(['unmount', mnt], { env });
    }
    const exit = await server.done;
    expect(exit.timedOut).toBe(false);
    const xml = await readFile(report, 'utf8');
    expect(xml).toContain('</valgrindoutput>');
    expect(addonErrors(xml)).toEqual([]);
  }, 600_000);
});
