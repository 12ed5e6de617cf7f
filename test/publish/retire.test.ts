import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog, readHead, verifyStore } from '../../src/catalog/index.js';
import type { Log } from '../../src/log.js';
import { publish, PublishInputError, retire } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { runCli } from '../support/cli.js';
import { GREETER_AND_OTHER, packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let store: ObjectStore;
const log: Log = { info: () => {}, warn: () => {}, error: () => {} };

const publishRepo = (selectors: string[] = []) => publish(store, { repoDir: repo, selectors, log });

async function listed(): Promise<string[]> {
  const found: string[] = [];
  for await (const { key } of store.list('')) found.push(key);
  return found.sort();
}

async function versionsOf(family: string): Promise<string[]> {
  const catalog = await Catalog.open(store);
  return Object.keys((await catalog.shard(family)).versions).sort();
}

beforeEach(async () => {
  work = await tempDir('retire');
  repo = join(work.path, 'repo');
  store = openStore(`file://${join(work.path, 'store')}`);
  await writeTree(repo, GREETER_AND_OTHER);
  await publishRepo();
});
afterEach(async () => work.remove());

describe('rezfs retire', () => {
  it('takes a version out of the next generation and remembers it was retired', async () => {
    const result = await retire(store, { targets: [{ family: 'greeter', version: '1.1.0' }] }, { log });
    expect(result.generation).toBe(2);
    expect(result.outcomes).toMatchObject([{ family: 'greeter', version: '1.1.0', result: 'retired' }]);
    expect(await versionsOf('greeter')).toEqual(['1.0.0']);
    const catalog = await Catalog.open(store);
    expect(catalog.family('greeter')!.versions).toBe(1);
    expect(Object.keys((await catalog.shard('greeter')).retired ?? {})).toEqual(['1.1.0']);
    expect((await verifyStore(store, undefined)).problems).toEqual([]);
  });

  it('keeps a family whose last version is retired, empty, as rez-rm leaves its directory', async () => {
    await retire(store, { targets: [{ family: 'other', version: '2.0' }] }, { log });
    const catalog = await Catalog.open(store);
    expect(catalog.familyNames()).toContain('other');
    expect(catalog.family('other')!.versions).toBe(0);
  });

  it('refuses a family or version the catalog never had, changing nothing; a retired one again is no change', async () => {
    const before = await listed();
    await expect(retire(store, { targets: [{ family: 'greeter', version: '9.9' }] }, { log })).rejects.toThrow(PublishInputError);
    await expect(retire(store, { targets: [{ family: 'greeter', version: '1.0.0' }, { family: 'nope', version: '1' }] }, { log })).rejects.toThrow(
      /^nope\/1: no family nope in file:\/\/.*; rezfs ls lists the families$/,
    );
    expect(await listed()).toEqual(before);
    await retire(store, { targets: [{ family: 'greeter', version: '1.1.0' }] }, { log });
    const head = await readHead(store);
    const again = await retire(store, { targets: [{ family: 'greeter', version: '1.1.0' }] }, { log });
    expect(again).toMatchObject({ generation: undefined, outcomes: [{ result: 'already retired' }] });
    expect(await readHead(store)).toEqual(head);
  });

  it('a whole-repository publish of a source that still holds it does not bring it back; naming it does', async () => {
    await retire(store, { targets: [{ family: 'greeter', version: '1.1.0' }] }, { log });
    await writeTree(repo, { 'greeter/1.2.0/package.py': packageDefinition('greeter', '1.2.0') });
    const summary = await publishRepo();
    expect(summary.packages).toBe(1);
    expect(await versionsOf('greeter')).toEqual(['1.0.0', '1.2.0']);
    expect(summary.notes).toContainEqual(expect.stringMatching(/^greeter\/1\.1\.0 was retired on .*: not published again; name it as greeter\/1\.1\.0 to publish it again$/));
    // Other publishes into the family keep the tombstone.
    expect(Object.keys((await (await Catalog.open(store)).shard('greeter')).retired ?? {})).toEqual(['1.1.0']);
    expect((await publishRepo(['greeter'])).generation).toBeUndefined();

    const restored = await publishRepo(['greeter/1.1.0']);
    expect(restored.packages).toBe(1);
    expect(await versionsOf('greeter')).toEqual(['1.0.0', '1.1.0', '1.2.0']);
    expect((await (await Catalog.open(store)).shard('greeter')).retired).toBeUndefined();
  });

  it('after rez-rm, publish says which versions the source no longer has, and leaves them', async () => {
    await rm(join(repo, 'greeter', '1.0.0'), { recursive: true });
    await rm(join(repo, 'other'), { recursive: true });
    const summary = await publishRepo();
    expect(summary.generation).toBeUndefined();
    expect(summary.notes.sort()).toEqual([
      expect.stringMatching(/^greeter\/1\.0\.0 is in file:\/\/.* but not in the source \(rez-rm\?\): it stays; rezfs retire greeter\/1\.0\.0 --store file:\/\/.* takes it out$/),
      expect.stringMatching(/^other\/2\.0 is in file:\/\/.* but not in the source/),
    ]);
    expect(await versionsOf('greeter')).toEqual(['1.0.0', '1.1.0']);
    // Publishing one version names nothing else.
    await writeTree(repo, { 'greeter/2.0.0/package.py': packageDefinition('greeter', '2.0.0') });
    expect((await publishRepo(['greeter/2.0.0'])).notes).toEqual([]);
  });

  it('--ignored-since retires what rez-pkg-ignore hid that long ago, as rez-rm --ignored-since does', async () => {
    const day = 86_400;
    const now = Math.floor(Date.now() / 1000);
    await writeTree(repo, { 'greeter/.ignore1.0.0': '' }, now - 40 * day);
    await writeTree(repo, { 'greeter/.ignore1.1.0': '' }, now - 2 * day);
    await publishRepo();
    const result = await retire(store, { targets: [], ignoredForMs: 30 * day * 1000 }, { log });
    expect(result.outcomes.map((o) => `${o.family}/${o.version}`)).toEqual(['greeter/1.0.0']);
    expect(await versionsOf('greeter')).toEqual(['1.1.0']);
    expect((await retire(store, { targets: [], ignoredForMs: 30 * day * 1000 }, { log })).generation).toBeUndefined();
  });

  it('through the CLI: one line per version, bad input one line and exit 2', async () => {
    const url = store.url;
    const env = { REZFS_RUNTIME_DIR: join(work.path, 'run') };
    const ok = await runCli(['retire', 'greeter-1.1.0', 'other/2.0', '--store', url], { env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^retired greeter\/1\.1\.0 \(published .*\)\nretired other\/2\.0 \(published .*\)\ngeneration 2 of file:\/\/.*\n$/);
    const ls = await runCli(['ls', 'greeter', '--store', url], { env });
    expect(ls.stdout).toMatch(/^greeter\/1\.0\.0\tpublished .*\ngreeter\/1\.1\.0\tretired .*\n$/);
    const before = await listed();
    for (const [args, message] of [
      [['retire', 'greeter/7', '--store', url], /^rezfs: greeter\/7: no version 7 of greeter in file:\/\/.*; rezfs ls greeter lists its versions\n$/],
      [['retire', 'greeter', '--store', url], /^rezfs: "greeter" is not a package; use <family>-<version>/],
      [['retire', '--store', url], /^rezfs: nothing to retire: name versions \(<family>\/<version>\) or give --ignored-since\n$/],
      [['retire', '--ignored-since', 'a while', '--store', url], /^rezfs: --ignored-since "a while" is not a duration/],
      [['retire', 'greeter/1.0.0', '--store', 'http://127.0.0.1:9/x'], /^rezfs: http:\/\/127\.0\.0\.1:9\/x\/ is read-only/],
    ] as const) {
      const r = await runCli([...args], { env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(await listed()).toEqual(before);
  });
});
