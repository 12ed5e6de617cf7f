import { createHash, randomBytes, randomInt } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, forceUnmountAll, mountStore, onSecondBinding, runCli, runProcess, waitFor } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let work: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  work = await tempDir('crash');
});
afterAll(async () => {
  await forceUnmountAll([work.path]);
  await work.remove();
});

describe('crash safety', () => {
  // No mount: publish alone, in the first binding's pass.
  it.skipIf(onSecondBinding)('a publish killed at any moment leaves a valid catalog, and a rerun finishes the job (20 rounds)', async () => {
    const store = `file://${join(work.path, 'store')}`;
    const repo = join(work.path, 'repo');
    const expected: string[] = [];
    for (let round = 0; round < 20; round++) {
      const files: Record<string, Buffer | string> = {};
      for (let p = 0; p < 3; p++) {
        const name = `fam${round}_${p}`;
        files[`${name}/1.0.${round}/package.py`] = packageDefinition(name, `1.0.${round}`);
        files[`${name}/1.0.${round}/lib/payload.bin`] = randomBytes(randomInt(1, 3 * 1024 * 1024));
        expected.push(`${name}/1.0.${round}`);
      }
      await writeTree(repo, files);
      const child = spawn(process.execPath, [CLI_PATH, 'publish', repo, '--store', store], { stdio: 'ignore' });
      const exited = new Promise((r) => child.once('exit', r));
      await new Promise((r) => setTimeout(r, randomInt(0, 400)));
      child.kill('SIGKILL');
      await exited;
      const afterKill = await runCli(['verify', '--store', store]);
      // Killed before its first write, the first publish leaves no store at all: verify says so, never "all good".
      const noStoreYet = round === 0 && !existsSync(join(work.path, 'store', 'rezfs.json'));
      if (noStoreYet) expect(afterKill.stderr).toMatch(/is not a rezfs store/);
      expect(afterKill.code, `round ${round} after kill: ${afterKill.stderr}`).toBe(noStoreYet ? 2 : 0);
      const rerun = await runCli(['publish', repo, '--store', store]);
      expect(rerun.code, rerun.stderr).toBe(0);
      const verified = await runCli(['verify', '--store', store]);
      expect(verified.code, `round ${round} after rerun: ${verified.stderr}`).toBe(0);
    }
    const listing = await runCli(['ls', '--store', store]);
    const families = listing.stdout.trim().split('\n').map((line) => line.split('\t')[0]);
    expect(families.length).toBe(60);
    for (const pkg of expected) expect(families).toContain(pkg.split('/')[0]);
  }, 600_000);

  it('a mount killed during heavy reads can be mounted again on the same path and reads resume (10 rounds)', async () => {
    const store = `file://${join(work.path, 'mstore')}`;
    const repo = join(work.path, 'mrepo');
    const big = randomBytes(24 * 1024 * 1024);
    await writeTree(repo, { 'big/1.0/package.py': packageDefinition('big', '1.0'), 'big/1.0/data.bin': big });
    expect((await runCli(['publish', repo, '--store', store])).code).toBe(0);
    const mountpoint = join(work.path, 'mmnt');
    const cacheDir = join(work.path, 'mcache');
    for (let round = 0; round < 10; round++) {
      const mount = await mountStore({ store, mountpoint, cacheDir });
      // Heavy reads from other processes while the server dies under them.
      const readers = Array.from({ length: 3 }, () => runProcess('sha256sum', [join(mountpoint, 'big/1.0/data.bin')], { timeoutMs: 60_000 }));
      await new Promise((r) => setTimeout(r, randomInt(20, 300)));
      process.kill(mount.pid, 'SIGKILL');
      const results = await Promise.all(readers);
      for (const r of results) {
        expect(r.timedOut).toBe(false); // no reader hangs on a dead mount
        if (r.code === 0) expect(r.stdout.split(' ')[0]).toBe(sha(big));
      }
      await waitFor(async () => {
        try {
          process.kill(mount.pid, 0);
          return false;
        } catch {
          return true;
        }
      }, 5_000);
      const again = await mountStore({ store, mountpoint, cacheDir });
      try {
        expect(sha(await readFile(join(again.mountpoint, 'big/1.0/data.bin')))).toBe(sha(big));
      } finally {
        await again.unmount();
      }
    }
    const cacheCheck = await runCli(['cache', 'verify', '--cache-dir', cacheDir]);
    expect(cacheCheck.stdout).toMatch(/: 0 bad block\(s\) removed/);
    expect((await stat(mountpoint)).isDirectory()).toBe(true);
  }, 600_000);
});
