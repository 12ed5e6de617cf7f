import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHead } from '../../src/catalog/index.js';
import { requestControl } from '../../src/cli/control.js';
import { controlSocketPath } from '../../src/cli/registry.js';
import type { MountStatus } from '../../src/cli/status.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { CLI_PATH, forceUnmountAll, mountStore, runCli, waitFor, type MountHandle } from '../support/cli.js';
import { spawnChild } from '../support/proc.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';
import { sha256File, snapshotTree } from '../support/tree.js';

/**
 * Replication to a site store (s3rver, its PUTs slowed by the proxy so a sync takes seconds) while a mount of that
 * store is up: the mount sees the old generation or the new one whole at every poll, and a sync killed with SIGKILL
 * and run again finishes. A poll is several system calls; one that a generation swap fell inside (the mount's status
 * names another generation after it than before) may mix the two honestly, so only polls within one generation count.
 */
describe('rezfs sync onto a store a mount is serving', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let server: S3TestServer;
  let repo: string;
  let source: string;
  let target: string;
  let targetStore: ObjectStore;
  let mount: MountHandle;
  let env: Record<string, string>;
  let saved: NodeJS.ProcessEnv;

  const cli = (args: string[]) => runCli(args, { env, timeoutMs: 120_000 });

  beforeAll(async () => {
    work = await tempDir('sync-e2e');
    server = await startS3Server();
    env = { ...server.env, REZFS_RUNTIME_DIR: join(work.path, 'run') };
    saved = { ...process.env };
    Object.assign(process.env, env); // the S3 credentials, and the mount's runtime dir for its control socket
    repo = join(work.path, 'repo');
    source = `file://${join(work.path, 'source')}`;
    target = server.storeUrl('site');
    targetStore = openStore(target);
    await writeTree(repo, {
      'alpha/1.0/package.py': packageDefinition('alpha', '1.0'),
      'alpha/1.0/lib/data.bin': randomBytes(300_000),
      'beta/1.0/package.py': packageDefinition('beta', '1.0'),
      'beta/1.0/bin/beta': { mode: 0o755, data: '#!/bin/sh\necho beta\n' },
    });
    expect((await cli(['publish', repo, '--store', source])).code).toBe(0);
    expect((await cli(['sync', '--from', source, '--to', target])).code).toBe(0);
    mount = await mountStore({ store: target, mountpoint: join(work.path, 'mnt'), cacheDir: join(work.path, 'cache'), env, extraArgs: ['--refresh', '300ms'] });
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    await targetStore?.close();
    if (saved) process.env = saved;
    await server?.stop();
    await work?.remove();
  });

  /** The versions a mount shows, each checked against the source tree: every listed file reads, byte for byte. */
  async function poll(): Promise<string[]> {
    const versions: string[] = [];
    for (const family of (await readdir(mount.mountpoint)).sort()) {
      for (const version of (await readdir(join(mount.mountpoint, family))).sort()) {
        const seen = await snapshotTree(join(mount.mountpoint, family, version));
        const expected = await snapshotTree(join(repo, family, version));
        expect(seen.map((e) => [e.path, e.sha256]), `${family}/${version}`).toEqual(expected.map((e) => [e.path, e.sha256]));
        versions.push(`${family}/${version}`);
      }
    }
    return versions;
  }

  /** The generation the mount shows, from its control socket (the test runs with the mount's runtime dir). */
  async function shownGeneration(): Promise<number> {
    const status = (await requestControl(controlSocketPath(mount.mountpoint), 'status')) as MountStatus;
    return status.generation;
  }

  /** A poll within one generation, or undefined when a swap fell inside it. */
  async function pollWithin(): Promise<{ generation: number; versions: string[] } | undefined> {
    const generation = await shownGeneration();
    const versions = await poll();
    return (await shownGeneration()) === generation ? { generation, versions } : undefined;
  }

  it('a mount of the target polled throughout a sync sees the old or the new generation, whole', async () => {
    await writeTree(repo, {
      'alpha/2.0/package.py': packageDefinition('alpha', '2.0'),
      'alpha/2.0/lib/data.bin': randomBytes(2 * 1024 * 1024 + 11),
      'gamma/1.0/package.py': packageDefinition('gamma', '1.0'),
      'gamma/1.0/share/table.csv': randomBytes(700_000).toString('hex'),
      'beta/1.1/package.py': packageDefinition('beta', '1.1'),
    });
    expect((await cli(['publish', repo, '--store', source])).code).toBe(0);
    const before = ['alpha/1.0', 'beta/1.0'];
    const after = ['alpha/1.0', 'alpha/2.0', 'beta/1.0', 'beta/1.1', 'gamma/1.0'];
    expect(await poll()).toEqual(before);

    server.setInterceptor((r) => (r.method === 'PUT' && r.key.startsWith('site/') ? { delayMs: 250 } : undefined));
    const sync = spawnChild(process.execPath, [CLI_PATH, 'sync', '--from', source, '--to', target], { timeoutMs: 120_000, env: { ...process.env, ...env } });
    let finished = false;
    void sync.done.then(() => (finished = true));
    const seen: string[][] = [];
    let straddled = 0;
    while (!finished) {
      const within = await pollWithin();
      if (within) seen.push(within.versions);
      else straddled++;
    }
    server.setInterceptor(null);
    const result = await sync.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^synced generation 2 from .*: 10 objects copied .*, 4 already there; it served generation 1 before; 1 local mount\(s\) told to refresh\n$/);
    expect(await waitFor(async () => (await poll()).length === after.length, 5_000)).toBe(true);
    seen.push(await poll());

    expect(seen.length).toBeGreaterThan(5);
    expect(straddled).toBeLessThanOrEqual(1); // one swap, so at most one poll around it
    for (const versions of seen) expect([before, after], versions.join(' ')).toContainEqual(versions);
    expect(seen[0]).toEqual(before);
    expect(seen.at(-1)).toEqual(after);
  });

  it('a sync killed with SIGKILL mid-copy leaves the target on its generation; run again, it finishes and verifies', async () => {
    const headBefore = await readHead(targetStore);
    await writeTree(repo, {
      'delta/1.0/package.py': packageDefinition('delta', '1.0'),
      'delta/1.0/lib/a.bin': randomBytes(3 * 1024 * 1024),
      'delta/2.0/package.py': packageDefinition('delta', '2.0'),
      'delta/2.0/lib/b.bin': randomBytes(3 * 1024 * 1024),
      'delta/3.0/package.py': packageDefinition('delta', '3.0'),
      'delta/3.0/lib/c.bin': randomBytes(3 * 1024 * 1024),
      'delta/4.0/package.py': packageDefinition('delta', '4.0'),
      'delta/4.0/lib/d.bin': randomBytes(3 * 1024 * 1024),
    });
    expect((await cli(['publish', repo, '--store', source])).code).toBe(0);

    // Packs slow, the rest slower than the kill: the sync is killed between its first copied pack and HEAD.
    server.setInterceptor((r) => (r.method === 'PUT' && r.key.startsWith('site/') ? { delayMs: r.key.startsWith('site/packs/') ? 1_500 : 3_000 } : undefined));
    server.requests.reset();
    const sync = spawnChild(process.execPath, [CLI_PATH, 'sync', '--from', source, '--to', target], { timeoutMs: 120_000, env: { ...process.env, ...env } });
    const copiedPack = () => server.requests.count({ method: 'PUT', keyPrefix: 'site/packs/', status: 200 }) > 0;
    expect(await waitFor(copiedPack, 60_000)).toBe(true);
    process.kill(sync.pid, 'SIGKILL');
    const killed = await sync.done;
    server.setInterceptor(null);
    expect(killed.signal).toBe('SIGKILL');
    expect(await readHead(targetStore)).toEqual(headBefore);
    expect((await poll()).some((v) => v.startsWith('delta/'))).toBe(false);

    const rerun = await cli(['sync', '--from', source, '--to', target]);
    expect(rerun.code, rerun.stderr).toBe(0);
    const already = Number(/, (\d+) already there/.exec(rerun.stdout)?.[1]);
    expect(already).toBeGreaterThan(13); // generation 2's 13 objects that generation 3 keeps, and what the killed sync copied
    const verify = await cli(['verify', '--store', target]);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/^verified generation 3 of .*: 4 families, 9 versions, 9 packs, .*: all good\n$/);
    expect(await waitFor(async () => (await poll()).filter((v) => v.startsWith('delta/')).length === 4, 5_000)).toBe(true);
    expect(await sha256File(join(mount.mountpoint, 'delta/4.0/lib/d.bin'))).toBe(await sha256File(join(repo, 'delta/4.0/lib/d.bin')));
    expect((await readFile(join(mount.mountpoint, 'delta/1.0/package.py'), 'utf8'))).toBe(packageDefinition('delta', '1.0'));
  });
});
