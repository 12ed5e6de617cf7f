import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimKey, keys, readHead, readIndex, readShard, verifyStore, type Manifest } from '../../src/catalog/index.js';
import { silentLog } from '../../src/log.js';
import { collectGarbage, type GcOptions } from '../../src/maintain/gc.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { runCli, waitFor } from '../support/cli.js';
import { GatedStore } from '../support/gated-store.js';
import { packageDefinition, tempDir, TWO_FAMILIES, writeTree } from '../support/small-repo.js';
import { useS3Server } from '../support/use-s3-server.js';
import { backdate, DAY_MS, fileStorePath, s3rverObjectPath } from '../support/store-ages.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let storeDir: string;
let store: ObjectStore;

const publishRepo = (s: ObjectStore = store) => publish(s, { repoDir: repo, selectors: [], log: silentLog });
const gc = (options: Partial<GcOptions> = {}) => collectGarbage(store, { keepGenerations: 1, graceMs: 7 * DAY_MS, dryRun: false, log: silentLog, ...options });

async function listed(): Promise<string[]> {
  const found: string[] = [];
  for await (const { key } of store.list('')) found.push(key);
  return found.sort();
}

/** The oracle, written apart from the walker: index -> signature?, shards -> manifests -> packs, by hand. */
async function referencedBy(indexHash: string): Promise<Set<string>> {
  const found = new Set([keys.index(indexHash)]);
  if (await store.head(keys.signature(indexHash))) found.add(keys.signature(indexHash));
  const index = await readIndex(store, indexHash);
  for (const { shard } of Object.values(index.families)) {
    found.add(keys.shard(shard));
    for (const record of Object.values((await readShard(store, shard)).versions)) {
      found.add(keys.manifest(record.manifest));
      const manifest = JSON.parse((await store.get(keys.manifest(record.manifest))).toString()) as Manifest;
      found.add(keys.pack(manifest.pack));
    }
  }
  return found;
}

/** Where the backend under test keeps an object's bytes (whose mtime is the object's age). */
let objectFile: (key: string) => string;

async function ageEverything(ageMs: number): Promise<void> {
  await backdate((await listed()).map(objectFile), ageMs);
}

/** Three generations, a publish killed before its HEAD swap, and the temp file of one killed mid-upload. */
async function storeWithHistory(): Promise<{ generations: string[]; orphanPack: string; tempFile: string | undefined }> {
  const generations: string[] = [];
  await publishRepo();
  generations.push((await readHead(store))!.indexHash);
  await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0'), 'foo/2.0.0/lib/x': 'two' });
  await publishRepo();
  generations.push((await readHead(store))!.indexHash);
  await writeTree(repo, { 'bar/2.0/package.py': packageDefinition('bar', '2.0'), 'bar/2.0/data': 'bar two' });
  await publishRepo();
  generations.push((await readHead(store))!.indexHash);

  // A publisher that died just before swapping HEAD: its pack, manifest, shard and index are in the store, unnamed.
  await writeTree(repo, { 'late/1.0/package.py': packageDefinition('late', '1.0'), 'late/1.0/payload': 'never published' });
  const dying: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
    putIfMatch: async () => {
      throw new Error('killed before the swap');
    },
  });
  await expect(publishRepo(dying)).rejects.toThrow(/killed/);
  const current = await referencedBy(generations[2]!);
  const orphanPack = (await listed()).find((k) => k.startsWith('packs/') && !current.has(k))!;
  await rmLate();
  if (!store.url.startsWith('file://')) return { generations, orphanPack, tempFile: undefined };
  const tempFile = 'packs/.tmp-4242-0123456789ab';
  await writeFile(fileStorePath(storeDir, tempFile), Buffer.alloc(4096));
  return { generations, orphanPack, tempFile };
}

/** The source no longer has the interrupted version: nothing would publish it again by accident. */
async function rmLate(): Promise<void> {
  await rm(join(repo, 'late'), { recursive: true, force: true });
}

async function collectsToKeptOnly(): Promise<void> {
  const { generations } = await storeWithHistory();
  await ageEverything(8 * DAY_MS);
  await store.put('other-tool/notes.txt', Buffer.from('not ours'));
  await backdate([objectFile('other-tool/notes.txt')], 30 * DAY_MS);
  const report = await gc();
  expect(report.spared).toEqual([]);
  expect(report.unknown).toBe(1);
  const kept = await referencedBy(generations[2]!);
  expect(await listed()).toEqual([...kept, keys.head, keys.config, 'other-tool/notes.txt'].sort());
  expect(report.deleted.objects).toBe(report.garbage.length);
  const verified = await verifyStore(store, undefined);
  expect(verified.problems).toEqual([]);
  expect(verified.versions).toBe(4);
  // A second run finds nothing more.
  expect((await gc()).garbage).toEqual([]);
}

/** An old store whose only unreferenced pack is one the source (which has the killed version again) will reuse. */
async function orphanToReuse(): Promise<string> {
  const { orphanPack } = await storeWithHistory();
  await ageEverything(8 * DAY_MS);
  await writeTree(repo, { 'late/1.0/package.py': packageDefinition('late', '1.0'), 'late/1.0/payload': 'never published' });
  return orphanPack;
}

/** The killed version made it into the new generation with every object in place. */
async function expectLatePublishedWhole(orphanPack: string): Promise<void> {
  const head = (await readHead(store))!;
  expect((await referencedBy(head.indexHash)).has(orphanPack)).toBe(true);
  expect(await store.head(orphanPack)).toBeDefined();
  const report = await verifyStore(store, undefined);
  expect(report.problems).toEqual([]);
  expect(report.versions).toBe(5);
}

/** Race order 1: gc deletes the orphan after the publisher found it and before it claims it. */
async function gcBeforeClaim(orphanPack: string): Promise<void> {
  const publisherStore = new GatedStore(openStore(store.url));
  const claim = publisherStore.hold('put', (key) => key === claimKey(orphanPack));
  const publishing = publishRepo(publisherStore);
  await claim.reached;
  const report = await gc();
  expect(report.deleted.objects).toBe(report.garbage.length);
  expect(report.garbage.map((o) => o.key)).toContain(orphanPack);
  expect(await store.head(orphanPack)).toBeUndefined();
  claim.open();
  expect((await publishing).generation).toBe(4);
  await expectLatePublishedWhole(orphanPack);
}

beforeEach(async () => {
  work = await tempDir('gc');
  repo = join(work.path, 'repo');
  storeDir = join(work.path, 'store');
  await mkdir(storeDir, { recursive: true });
  store = openStore(`file://${storeDir}`);
  objectFile = (key) => fileStorePath(storeDir, key);
  await writeTree(repo, TWO_FAMILIES);
});
afterEach(async () => work.remove());

describe('rezfs gc', () => {
  it('--dry-run lists exactly the objects no kept generation references, and deletes nothing', async () => {
    const { generations, orphanPack, tempFile } = await storeWithHistory();
    await ageEverything(8 * DAY_MS);
    const all = await listed();
    const kept = await referencedBy(generations[2]!);
    const expected = all.filter((k) => !kept.has(k) && k !== keys.head && k !== keys.config);
    expect(expected).toContain(orphanPack);
    expect(expected).toContain(tempFile);
    expect(expected).toContain(keys.index(generations[0]!));

    const result = await runCli(['gc', '--store', `file://${storeDir}`, '--dry-run']);
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    const printed = lines.filter((l) => l.startsWith('would delete ')).map((l) => l.split(' ')[2]!);
    expect(printed.sort()).toEqual(expected);
    expect(lines.at(-1)).toMatch(new RegExp(`^dry run: would delete ${expected.length} objects \\(.*\\) of ${all.length} in file://.* kept 1 generation\\(s\\) \\(3\\)`));
    expect(await listed()).toEqual(all);
  });

  it('keeps --keep-generations generations along the chain, and every generation current within the grace', async () => {
    const { generations } = await storeWithHistory();
    await ageEverything(8 * DAY_MS);
    const two = await gc({ keepGenerations: 2, dryRun: true });
    expect(two.kept.map((k) => [k.generation, k.why])).toEqual([[3, 'current'], [2, 'kept by --keep-generations']]);
    const keptTwo = new Set([...(await referencedBy(generations[2]!)), ...(await referencedBy(generations[1]!))]);
    expect(two.garbage.map((o) => o.key).sort()).toEqual((await listed()).filter((k) => !keptTwo.has(k) && k !== keys.head && k !== keys.config));

    // Generation 3 is minutes old: generation 2 was current until then, so a mount may still serve it.
    await backdate([objectFile(keys.index(generations[2]!))], 10 * 60_000);
    const grace = await gc({ dryRun: true });
    expect(grace.kept.map((k) => [k.generation, k.why])).toEqual([[3, 'current'], [2, 'current within the grace period']]);
    expect(grace.garbage.map((o) => o.key)).not.toContain(keys.index(generations[1]!));
    expect(grace.garbage.map((o) => o.key)).toContain(keys.index(generations[0]!));
  });

  it('deletes nothing a publish in progress may rely on: unreferenced objects younger than the grace stay', async () => {
    const { orphanPack, tempFile } = await storeWithHistory();
    const report = await gc();
    expect(report.garbage).toEqual([]);
    // The killed publish's pack, manifest, shard and index, and the temp file: all too young to judge.
    expect(report.young.objects).toBe(5);
    expect(await listed()).toContain(orphanPack);
    expect(await listed()).toContain(tempFile);
  });

  it('leaves the store holding only what the kept generations reference, and verify clean', collectsToKeptOnly);

  it('follows the chain through indexes written before format 1.2.0 (no previous) by their write times', async () => {
    const { generations } = await storeWithHistory();
    // Strip `previous` as an old rezfs would have written it: the index of generation 3 no longer names 2.
    const path = fileStorePath(storeDir, keys.index(generations[2]!));
    const legacy = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    delete legacy.previous;
    const { encodeDocument } = await import('../../src/catalog/index.js');
    const doc = encodeDocument(legacy);
    await writeFile(fileStorePath(storeDir, keys.index(doc.hash)), doc.bytes);
    await writeFile(fileStorePath(storeDir, keys.head), doc.hash);
    await ageEverything(8 * DAY_MS);
    // Written in this order: the killed publish's index, generation 3's original, 1, 2, then the legacy HEAD.
    const dyingIndex = (await listed()).find((k) => /^index\/.*\.json$/.test(k) && ![...generations, doc.hash].some((g) => k === keys.index(g)))!;
    await backdate([objectFile(dyingIndex)], 13 * DAY_MS);
    await backdate([objectFile(keys.index(generations[2]!))], 12 * DAY_MS);
    await backdate([objectFile(keys.index(generations[0]!))], 11 * DAY_MS);
    await backdate([objectFile(keys.index(generations[1]!))], 10 * DAY_MS);
    const report = await gc({ keepGenerations: 3, dryRun: true });
    // The legacy HEAD's predecessor by write time is generation 2, whose own `previous` then names generation 1.
    expect(report.kept.map((k) => k.indexHash)).toEqual([doc.hash, generations[1]!, generations[0]!]);
  });

  it('deletes nothing when a kept generation cannot be read whole', async () => {
    const { generations } = await storeWithHistory();
    await ageEverything(8 * DAY_MS);
    const index = await readIndex(store, generations[2]!);
    await rm(objectFile(keys.shard(index.families.bar!.shard)));
    const before = await listed();
    await expect(gc()).rejects.toThrow(/^a kept generation of file:\/\/.* cannot be read whole \(.*not found.*\): gc deleted nothing; run rezfs verify$/);
    expect(await listed()).toEqual(before);
  });

  it('refuses bad options and stores it must not touch: one line, exit 2, store unchanged', async () => {
    await publishRepo();
    const before = await listed();
    const url = `file://${storeDir}`;
    const cases: [string[], RegExp][] = [
      [['--grace', '10m'], /^rezfs: --grace must be at least 60 minutes: a publish in progress relies on/],
      [['--grace', 'soon'], /^rezfs: --grace "soon" is not a duration/],
      [['--keep-generations', '0'], /^rezfs: --keep-generations 0 is not a whole number of at least 1/],
      [['--keep-generations', 'all'], /^rezfs: --keep-generations "all" is not a whole number/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['gc', '--store', url, ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    const http = await runCli(['gc', '--store', 'http://127.0.0.1:9/store']);
    expect(http.code).toBe(2);
    expect(http.stderr).toMatch(/^rezfs: http:\/\/127\.0\.0\.1:9\/store\/ is read-only \(plain HTTP\): use the s3:\/\/, file:\/\/ or dav\+http\(s\):\/\/ store behind it\n$/);
    const empty = join(work.path, 'typo');
    await mkdir(empty);
    const typo = await runCli(['gc', '--store', `file://${empty}`]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/is not a rezfs store/);
    expect(await listed()).toEqual(before);
  });
});

/**
 * The race of issue 13: a publisher finds an old, unreferenced object in the store (here the pack and manifest a
 * killed publish left), skips uploading it and swaps HEAD to a generation that names it, while gc deletes it.
 * GatedStore holds one call of one side at the point the interleaving needs, so each order is run for certain.
 */
describe('rezfs gc racing a publish that reuses an old unreferenced object', () => {
  let orphanPack: string;

  beforeEach(async () => {
    orphanPack = await orphanToReuse();
  });

  it('gc deletes it before the publisher claims it: the publisher uploads it again before its swap', () => gcBeforeClaim(orphanPack));

  it('gc makes its last check after the claim: it spares the object', async () => {
    const gcStore = new GatedStore(openStore(store.url));
    const lastCheck = gcStore.hold('head', (key) => key === orphanPack);
    const collecting = collectGarbage(gcStore, { keepGenerations: 1, graceMs: 7 * DAY_MS, dryRun: false, log: silentLog });
    await lastCheck.reached;
    expect((await publishRepo()).generation).toBe(4);
    lastCheck.open();
    const report = await collecting;
    expect(report.spared).toContainEqual({ key: orphanPack, why: 'claimed by a writer during gc' });
    await expectLatePublishedWhole(orphanPack);
  });

  it('gc checked before the claim and its delete lands after it: the publisher sees it gone after settling', async () => {
    const gcStore = new GatedStore(openStore(store.url));
    const deleting = gcStore.hold('delete', (key) => key === orphanPack);
    const collecting = collectGarbage(gcStore, { keepGenerations: 1, graceMs: 7 * DAY_MS, dryRun: false, log: silentLog });
    await deleting.reached; // checks passed: no claim yet
    const publishing = publishRepo();
    expect(await waitFor(async () => (await store.head(claimKey(orphanPack))) !== undefined, 10_000, 10)).toBe(true);
    deleting.open(); // the delete lands now, well inside the claim's settle time
    const report = await collecting;
    expect(report.spared.map((s) => s.key)).not.toContain(orphanPack);
    expect((await publishing).generation).toBe(4);
    await expectLatePublishedWhole(orphanPack);
  });
});

describe('rezfs gc on an S3 store (s3rver)', () => {
  const server = useS3Server();
  let stores = 0;
  beforeEach(() => {
    const prefix = `gc-${++stores}`;
    store = openStore(server().storeUrl(prefix));
    objectFile = (key) => s3rverObjectPath(server().dataDir, server().bucket, `${prefix}/${key}`);
  });

  it('leaves the store holding only what the kept generations reference, and verify clean', collectsToKeptOnly);

  it('survives the race: gc deletes a reused object before the publisher claims it', async () => gcBeforeClaim(await orphanToReuse()));
});
