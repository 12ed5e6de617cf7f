import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/index.js';
import { generationChanges } from '../../src/fs/index.js';
import { silentLog } from '../../src/log.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

/** What a refresh must tell the kernel, computed from two real generations of a file store. */
describe('generationChanges', () => {
  let work: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;
  let store: ObjectStore;

  beforeAll(async () => {
    work = await tempDir('changes');
    repo = join(work.path, 'repo');
    store = openStore(`file://${join(work.path, 'store')}`);
  });
  afterAll(async () => work.remove());

  const generation = async (tree: Parameters<typeof writeTree>[1]) => {
    await writeTree(repo, tree);
    await publish(store, { repoDir: repo, selectors: [], log: silentLog });
    return Catalog.open(store);
  };

  it('names the root, each changed family and each new name, and leaves untouched families alone', async () => {
    const first = await generation({
      'foo/1.0/package.py': packageDefinition('foo', '1.0'),
      'bar/1.0/package.py': packageDefinition('bar', '1.0'),
    });
    expect(await generationChanges(first, first)).toEqual({ dirs: [], files: [], entries: [] });

    const second = await generation({
      'foo/2.0/package.py': packageDefinition('foo', '2.0'),
      'foo/.ignore1.0': '',
      'baz/0.1/package.py': packageDefinition('baz', '0.1'),
    });
    const changes = await generationChanges(first, second);
    expect(changes.dirs.sort()).toEqual(['/', '/foo']);
    const entries = changes.entries.map((e) => `${e.parent} ${e.name}`).sort();
    expect(entries).toEqual(['/ baz', '/foo .ignore1.0', '/foo 2.0']);
    expect(changes.files).toEqual([]);
  });

  it('inside a version that grew, names its listing, its rewritten definition and the new paths only', async () => {
    const first = await generation({
      'grow/1.0/package.py': packageDefinition('grow', '1.0', 'variants = [["a"]]\n'),
      'grow/1.0/a/lib/x': 'x',
      'grow/1.0/_v/a': { link: '../a' },
      'single.py': 'name = "single"\n',
    });
    const second = await generation({
      'grow/1.0/package.py': packageDefinition('grow', '1.0', 'variants = [["a"], ["b"]]\n'),
      'grow/1.0/b/lib/x': 'y',
      'grow/1.0/_v/b': { link: '../b' },
    });
    const changes = await generationChanges(first, second);
    expect(changes.dirs.sort()).toEqual(['/', '/grow', '/grow/1.0', '/grow/1.0/_v']);
    expect(changes.files).toEqual(['/grow/1.0/package.py']);
    expect(changes.entries.map((e) => `${e.parent} ${e.name}`).sort()).toEqual(['/grow 1.0', '/grow/1.0 b', '/grow/1.0 package.py', '/grow/1.0/_v b']);
  });
});
