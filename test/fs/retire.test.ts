/**
 * What a mount that stays up does when a version is retired, without a kernel: RezFs and the refresher wired as
 * `rezfs mount` wires them (src/cli/mount.ts). The real-mount, stock-rez version of this is
 * test/rez/retire-ignore.test.ts; this one pins the details rez cannot see (ENOENT rather than EIO, what the kernel
 * is told to forget, an open file reading on).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockSource, MemoryBlockCache } from '../../src/cache/index.js';
import { Catalog, CatalogRefresher } from '../../src/catalog/index.js';
import { FsError, RezFs, generationChanges, type TreeChanges } from '../../src/fs/index.js';
import { silentLog } from '../../src/log.js';
import { publish, retire } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { GREETER_AND_OTHER, packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const O_RDONLY = 0;

describe('a mounted RezFs when versions are retired', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;
  let store: ObjectStore;
  let fs: RezFs;
  let refresher: CatalogRefresher;
  /** What each refresh told the kernel to drop. */
  const told: TreeChanges[] = [];

  const names = async (path: string) => (await fs.readdir(path)).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort();
  const errnoOf = async (work: Promise<unknown>) => work.then(() => 'no error', (err: unknown) => (err instanceof FsError ? err.code : String(err)));
  const publishRepo = () => publish(store, { repoDir: repo, selectors: [], log: silentLog });

  beforeAll(async () => {
    work = await tempDir('retire-fs');
    repo = join(work.path, 'repo');
    store = openStore(`file://${join(work.path, 'store')}`);
    await writeTree(repo, GREETER_AND_OTHER);
    await publishRepo();
    const catalog = await Catalog.open(store);
    fs = new RezFs(catalog, new BlockSource(store, new MemoryBlockCache(1 << 20), undefined, silentLog), {
      uid: 1000,
      gid: 1000,
      readDeadlineMs: 5_000,
      readaheadBlocks: 0,
      log: silentLog,
    });
    refresher = new CatalogRefresher(catalog, {
      intervalMs: 0,
      log: silentLog,
      onNewGeneration: async (next) => {
        told.push(await generationChanges(fs.current, next));
        fs.swapCatalog(next);
      },
    });
  });
  afterAll(async () => work.remove());

  it('stops listing the version at the next refresh, answers ENOENT for it, and tells the kernel to forget it', async () => {
    expect(await names('/greeter')).toEqual(['1.0.0', '1.1.0']);
    const open = await fs.open('/greeter/1.1.0/bin/greet', O_RDONLY);

    await retire(store, { targets: [{ family: 'greeter', version: '1.1.0' }] }, { log: silentLog });
    expect(await names('/greeter')).toEqual(['1.0.0', '1.1.0']); // until it refreshes, the mount serves its generation
    await refresher.refreshNow();

    expect(fs.current.index.generation).toBe(2);
    expect(await names('/greeter')).toEqual(['1.0.0']);
    // Known to be gone, so ENOENT (rez then looks no further), never EIO.
    expect(await errnoOf(fs.getattr('/greeter/1.1.0'))).toBe('ENOENT');
    expect(await errnoOf(fs.getattr('/greeter/1.1.0/package.py'))).toBe('ENOENT');
    expect(told.at(-1)!.dirs.sort()).toEqual(['/', '/greeter']);
    expect(told.at(-1)!.entries).toEqual([{ parent: '/greeter', name: '1.1.0' }]);
    // A process that had the file open reads on: its generation's payload is still in the store (gc waits).
    expect((await fs.read(open, 0, 100)).toString()).toBe('hello 1.1.0');
    fs.release(open);
    expect((await fs.getattr('/greeter/1.0.0/package.py')).size).toBeGreaterThan(0);
  });

  it('keeps it away after a whole-repository publish of a source that still holds it', async () => {
    await writeTree(repo, { 'greeter/1.2.0/package.py': packageDefinition('greeter', '1.2.0') });
    await publishRepo();
    await refresher.refreshNow();
    expect(await names('/greeter')).toEqual(['1.0.0', '1.2.0']);
    expect(await errnoOf(fs.getattr('/greeter/1.1.0'))).toBe('ENOENT');
  });

  it('serves a family whose last version was retired as an empty directory, as rez-rm leaves it', async () => {
    await retire(store, { targets: [{ family: 'other', version: '2.0' }] }, { log: silentLog });
    await refresher.refreshNow();
    expect(await names('/')).toEqual(['greeter', 'other']);
    expect(await names('/other')).toEqual([]);
    expect(await errnoOf(fs.getattr('/other/2.0'))).toBe('ENOENT');
    expect(told.at(-1)!.entries).toEqual([{ parent: '/other', name: '2.0' }]);
  });
});
