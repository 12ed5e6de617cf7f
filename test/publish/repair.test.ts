/**
 * `rezfs publish --repair` through the CLI: objects of the current generation that were deleted or damaged in the
 * store come back from the source repository, and `rezfs verify` is clean again. A dry run only says what it would
 * do. A pack that cannot be rebuilt byte for byte (it held a package.py replaced when a variant was added) makes
 * the version be republished whole instead. (No mount: runs once.)
 */
import { readdir, rm, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog, packsOf, readManifest } from '../../src/catalog/index.js';
import { openStore } from '../../src/store/index.js';
import { runCli } from '../support/cli.js';
import { pseudoRandomBytes } from '../support/repo-generator.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';
import { snapshotTree } from '../support/tree.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let storeDir: string;
const store = () => `file://${storeDir}`;
const rezfs = (...args: string[]) => runCli([...args, '--store', store()], { env: { REZFS_PUBLISH_STATE_DIR: join(work.path, 'state'), REZFS_RUNTIME_DIR: join(work.path, 'run') } });

/** The pack keys of a published version, pack 0 first. */
async function packsOfVersion(family: string, version: string): Promise<string[]> {
  const s = openStore(store());
  const record = (await (await Catalog.open(s)).shard(family)).versions[version]!;
  return packsOf(await readManifest(s, record.manifest)).map((p) => p.pack);
}

beforeAll(async () => {
  work = await tempDir('repair');
  repo = join(work.path, 'repo');
  storeDir = join(work.path, 'store');
  await writeTree(repo, {
    'lib/1.0/package.py': packageDefinition('lib', '1.0'),
    'lib/1.0/lib/liblib.so': pseudoRandomBytes(3 * 1024 * 1024 + 17, 1),
    'tool/2.0/package.py': packageDefinition('tool', '2.0'),
    'tool/2.0/bin/tool': { mode: 0o755, data: '#!/bin/sh\necho tool\n' },
    'multi/1.0/package.py': packageDefinition('multi', '1.0', 'variants = [["a"]]\n'),
    'multi/1.0/a/data': pseudoRandomBytes(50_000, 2),
  });
  expect((await rezfs('publish', repo)).code).toBe(0);
  await writeTree(repo, { 'multi/1.0/package.py': packageDefinition('multi', '1.0', 'variants = [["a"], ["b"]]\n'), 'multi/1.0/b/data': pseudoRandomBytes(40_000, 3) });
  expect((await rezfs('publish', repo)).code).toBe(0);
});
afterAll(async () => work?.remove());

describe('publish --repair', () => {
  it('brings back a deleted and a corrupted pack from the source; verify is clean again', async () => {
    const [libPack] = await packsOfVersion('lib', '1.0');
    const [toolPack] = await packsOfVersion('tool', '2.0');
    await rm(join(storeDir, 'packs', libPack!));
    const handle = await open(join(storeDir, 'packs', toolPack!), 'r+');
    await handle.write(Buffer.from('#!/bin/rm -rf\n'), 0, 14, 0); // same size, other bytes
    await handle.close();

    const broken = await rezfs('verify');
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain(`lib/1.0: pack packs/${libPack} is missing`);
    expect(broken.stderr).toContain(`tool/2.0: block 0 of packs/${toolPack} fails its sha256`);

    const before = await snapshotTree(storeDir);
    const dry = await rezfs('publish', repo, '--repair', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`would repair lib/1.0: pack packs/${libPack} is missing`);
    expect(dry.stdout).toContain(`would repair tool/2.0: block 0 of packs/${toolPack} fails its sha256`);
    expect(await snapshotTree(storeDir)).toEqual(before);

    const repaired = await rezfs('publish', repo, '--repair');
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(repaired.stdout).toMatch(new RegExp(`repaired lib/1\\.0: pack packs/${libPack} is missing; rebuilt from .*/lib/1\\.0`));
    expect(repaired.stdout).toMatch(new RegExp(`repaired tool/2\\.0: block 0 of packs/${toolPack} fails its sha256; rebuilt from`));
    expect(repaired.stdout).toMatch(/repaired 2 pack\(s\) in .*; nothing else to publish/);
    // Rebuilt under their own names: the generation is the same, nothing else changed.
    expect(await packsOfVersion('lib', '1.0')).toEqual([libPack]);
    const clean = await rezfs('verify');
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toMatch(/generation 2 .*all good/);
  });

  it('republishes whole a version whose pack held a definition since replaced', async () => {
    const [first, added] = await packsOfVersion('multi', '1.0');
    expect(added).toBeDefined();
    await rm(join(storeDir, 'packs', first!)); // it held the first package.py, which the source no longer has
    const repaired = await rezfs('publish', repo, '--repair');
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(repaired.stdout).toMatch(/repaired multi\/1\.0: .* is missing; republished whole from/);
    expect(repaired.stdout).toMatch(/published 1 packages \(1 republished to repair them; 3 files/);
    expect(await packsOfVersion('multi', '1.0')).toHaveLength(1);
    const clean = await rezfs('verify');
    expect(clean.code, clean.stderr).toBe(0);
  });

  it('brings back a lost manifest, when the source holds what was published', async () => {
    const s = openStore(store());
    const record = (await (await Catalog.open(s)).shard('tool')).versions['2.0']!;
    await rm(join(storeDir, 'manifests', `${record.manifest}.json`));
    expect((await rezfs('verify')).code).toBe(1);
    const repaired = await rezfs('publish', repo, '--repair');
    expect(repaired.code, repaired.stderr).toBe(0);
    // The source gives the very same manifest again (same bytes, same times): same name, same generation.
    expect(repaired.stdout).toMatch(new RegExp(`repaired tool/2\\.0: manifests/${record.manifest}\\.json was lost; rebuilt from`));
    expect((await rezfs('verify')).code).toBe(0);
    // From a source that differs, it refuses rather than publish something else under that name.
    expect(await readdir(join(storeDir, 'manifests'))).toContain(`${record.manifest}.json`);
    await rm(join(storeDir, 'manifests', `${record.manifest}.json`));
    await writeFile(join(repo, 'tool/2.0/bin/tool'), '#!/bin/sh\necho other\n');
    const refused = await rezfs('publish', repo, '--repair');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refused tool\/2\.0: .*differs from what was published, so its lost objects cannot be repaired from it/);
  });
});
