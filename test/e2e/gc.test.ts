import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CatalogWalker, keys, readHead } from '../../src/catalog/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { forceUnmountAll, mountStore, runCli } from '../support/cli.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';
import { backdate, DAY_MS, fileStorePath } from '../support/store-ages.js';
import { snapshotTree } from '../support/tree.js';

/**
 * gc against a store a mount still serves an older generation of: within the grace period that generation is kept
 * whole (the mount reads every file, payload only it references included); once it has been replaced for longer
 * than the grace, gc leaves exactly what the kept generation references.
 */
describe('rezfs gc and a mount on the previous generation', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;
  let storeDir: string;
  let url: string;
  let store: ObjectStore;
  let env: Record<string, string>;

  beforeAll(async () => {
    work = await tempDir('gc-e2e');
    repo = join(work.path, 'repo');
    storeDir = join(work.path, 'store');
    url = `file://${storeDir}`;
    store = openStore(url);
    env = { REZFS_RUNTIME_DIR: join(work.path, 'run') };
    await writeTree(repo, {
      'tool/1.0/package.py': packageDefinition('tool', '1.0'),
      'tool/1.0/lib/payload.bin': randomBytes(2 * 1024 * 1024 + 3),
      'tool/2.0/package.py': packageDefinition('tool', '2.0'),
      'tool/2.0/lib/payload.bin': randomBytes(1024 * 1024),
      'util/1.0/package.py': packageDefinition('util', '1.0'),
      'util/1.0/share/notes.txt': 'notes',
    });
    expect((await runCli(['publish', repo, '--store', url], { env })).code).toBe(0);
  });
  afterAll(async () => {
    await forceUnmountAll([work.path]);
    await store?.close();
    await work?.remove();
  });

  async function listed(): Promise<string[]> {
    const found: string[] = [];
    for await (const { key } of store.list('')) found.push(key);
    return found.sort();
  }

  it('keeps the generation a mount still serves within the grace, and only the kept one after it', async () => {
    // A mount that never refreshes: it serves generation 1 until it is remounted.
    const old = await mountStore({ store: url, mountpoint: join(work.path, 'old'), cacheDir: join(work.path, 'cache-old'), env, extraArgs: ['--refresh', '0'] });
    const retired = await runCli(['retire', 'tool/1.0', '--store', url], { env: { REZFS_RUNTIME_DIR: join(work.path, 'nobody') } });
    expect(retired.code, retired.stderr).toBe(0);
    const generation2 = (await readHead(store))!.indexHash;
    // Everything is old but generation 2's index: generation 1 was current until moments ago.
    await backdate((await listed()).filter((k) => k !== keys.index(generation2)).map((k) => fileStorePath(storeDir, k)), 8 * DAY_MS);

    const dry = await runCli(['gc', '--store', url, '--dry-run'], { env });
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^dry run: would delete 0 objects \(0 B\) of \d+ in .* kept 2 generation\(s\) \(2, 1\)/);
    const kept = await runCli(['gc', '--store', url], { env });
    expect(kept.code, kept.stderr).toBe(0);
    // The mount reads all of generation 1, tool/1.0's payload (which only it references) included, byte for byte.
    const seen = await snapshotTree(old.mountpoint);
    const source = await snapshotTree(repo);
    expect(seen.map((e) => [e.path, e.sha256 ?? e.type])).toEqual(source.map((e) => [e.path, e.sha256 ?? e.type]));
    await old.unmount();

    // A week on: generation 1 is past the grace. gc leaves only what generation 2 references.
    await backdate([fileStorePath(storeDir, keys.index(generation2))], 8 * DAY_MS);
    const collected = await runCli(['gc', '--store', url], { env });
    expect(collected.code, collected.stderr).toBe(0);
    expect(collected.stdout).toMatch(/deleted packs\/[0-9a-f]{64} \(2\.0 MiB, written 8\.0 d ago\)/);
    const walker = new CatalogWalker(store);
    await walker.walk(generation2);
    expect(await listed()).toEqual([...walker.keys, keys.head, keys.config].sort());
    const verify = await runCli(['verify', '--store', url], { env });
    expect(verify.code, verify.stderr).toBe(0);
    const fresh = await mountStore({ store: url, mountpoint: join(work.path, 'new'), cacheDir: join(work.path, 'cache-new'), env });
    try {
      const now = await snapshotTree(fresh.mountpoint);
      expect(now.map((e) => e.path)).toEqual(source.map((e) => e.path).filter((p) => !p.startsWith('tool/1.0')));
    } finally {
      await fresh.unmount();
    }
  });
});
