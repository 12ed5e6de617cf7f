import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CatalogWalker, generateSigningKeys, keys, loadPrivateKey, loadPublicKey, readHead, verifyStore } from '../../src/catalog/index.js';
import { silentLog } from '../../src/log.js';
import { SyncRefusedError, syncStores } from '../../src/maintain/sync.js';
import { publish } from '../../src/publish/index.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { runCli } from '../support/cli.js';
import { CountingStore } from '../support/counting-store.js';
import { useS3Server } from '../support/use-s3-server.js';
import { packageDefinition, tempDir, TWO_FAMILIES, writeTree } from '../support/small-repo.js';
import { backdate, DAY_MS, fileStorePath } from '../support/store-ages.js';

let work: Awaited<ReturnType<typeof tempDir>>;
let repo: string;
let sourceDir: string;
let source: ObjectStore;
let target: ObjectStore;

const publishTo = (store: ObjectStore, signingKey?: ReturnType<typeof loadPrivateKey>) => publish(store, { repoDir: repo, selectors: [], log: silentLog, signingKey });
const sync = (options: { force?: boolean } = {}, to: ObjectStore = target) => syncStores(source, to, { force: false, log: silentLog, ...options });

async function listed(store: ObjectStore): Promise<string[]> {
  const found: string[] = [];
  for await (const { key } of store.list('')) found.push(key);
  return found.sort();
}

async function referenced(store: ObjectStore): Promise<string[]> {
  const walker = new CatalogWalker(store);
  await walker.walk((await readHead(store))!.indexHash);
  return [...walker.keys, keys.head, keys.config].sort();
}

/** The pack of foo/1.0.0 in the source. */
async function packOfFoo(): Promise<string | undefined> {
  let pack: string | undefined;
  await new CatalogWalker(source).walk((await readHead(source))!.indexHash, { object: (ref) => void (ref.kind === 'pack' && ref.where === 'foo/1.0.0' && (pack = ref.sha256)) });
  return pack;
}

beforeEach(async () => {
  work = await tempDir('sync');
  repo = join(work.path, 'repo');
  sourceDir = join(work.path, 'source');
  source = openStore(`file://${sourceDir}`);
  target = openStore(`file://${join(work.path, 'target')}`);
  await writeTree(repo, { ...TWO_FAMILIES, 'foo/1.0.0/lib/big': Buffer.alloc(3 * 1024 * 1024 + 7, 'x') });
});
afterEach(async () => work.remove());

describe('rezfs sync', () => {
  it('copies a signed generation whole: the target holds what it references, signature included, and verifies', async () => {
    const keyPair = generateSigningKeys();
    await publishTo(source, loadPrivateKey(keyPair.privatePem, 'key'));
    const report = await sync();
    expect(report).toMatchObject({ generation: 1, alreadyThere: 0, changed: true, previousGeneration: undefined });
    expect(report.copied.objects).toBe(report.objects);
    expect(await listed(target)).toEqual(await referenced(source));
    expect(await listed(target)).toContain(keys.signature((await readHead(source))!.indexHash));
    const verified = await verifyStore(target, { keys: [loadPublicKey(keyPair.publicPem, 'pub')], minGeneration: 0 });
    expect(verified.problems).toEqual([]);
    expect(verified.versions).toBe(2);
  });

  it('copies the chunk hashes of packs that have them (format 1.2), so the target verifies every chunk', async () => {
    await source.put(keys.config, Buffer.from(JSON.stringify({ format: '1.2.0', blockSize: 16 * 1024 })));
    await publishTo(source);
    await sync();
    const chunkObjects = (await listed(target)).filter((k) => k.startsWith('chunks/'));
    expect(chunkObjects).toHaveLength(1); // foo's pack holds the big file; bar's holds none
    expect(await listed(target)).toEqual(await referenced(source));
    const verified = await verifyStore(target, undefined);
    expect(verified.problems).toEqual([]);
    expect(verified.chunks).toBe(Math.ceil((await target.head(keys.pack((await packOfFoo())!)))!.size / 4096));
  });

  it('copies in dependency order, HEAD last, and only what the target lacks; a rerun copies nothing', async () => {
    await publishTo(source);
    await sync();
    await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0'), 'foo/2.0.0/lib/x': 'two' });
    await publishTo(source);
    // The target's objects are old: those its own generation references need no claim against gc (no 15 s wait).
    await backdate((await listed(target)).map((k) => fileStorePath(join(work.path, 'target'), k)), 8 * DAY_MS);
    const counting = new CountingStore(target);
    const started = Date.now();
    const report = await sync({}, counting);
    expect(Date.now() - started).toBeLessThan(10_000);
    // The new version's pack and manifest, foo's new shard, the new index (bar's shard is shared).
    expect(report).toMatchObject({ generation: 2, previousGeneration: 1, objects: 9, alreadyThere: 5, changed: true });
    const puts = counting.calls.filter((c) => c.op === 'put').map((c) => c.key.split('/')[0] + (c.key === keys.head ? '/HEAD' : ''));
    expect(puts).toEqual(['packs', 'manifests', 'families', 'index', 'index/HEAD']);
    const again = await sync();
    expect(again).toMatchObject({ copied: { objects: 0, bytes: 0 }, changed: false, alreadyThere: 9 });
    const refsNow = await referenced(source);
    // Generation 1's index and foo shard stay (sync never deletes; gc does).
    const holds = await listed(target);
    expect(holds.filter((k) => !refsNow.includes(k)).map((k) => k.split('/')[0]).sort()).toEqual(['families', 'index']);
    expect(refsNow.filter((k) => !holds.includes(k))).toEqual([]);
  });

  it('resumes: what an interrupted sync copied is not sent again, and a missing object is copied even at the same HEAD', async () => {
    await publishTo(source);
    await sync();
    const pack = (await listed(target)).find((k) => k.startsWith('packs/'))!;
    await target.delete(pack);
    const report = await sync();
    expect(report).toMatchObject({ copied: { objects: 1 }, changed: false });
    expect((await verifyStore(target, undefined)).problems).toEqual([]);
  });

  it('refuses a source pack that fails its hash: nothing of it reaches the target, HEAD unchanged', async () => {
    await publishTo(source);
    const walker = new CatalogWalker(source);
    let big = '';
    await walker.walk((await readHead(source))!.indexHash, { object: (ref) => ref.kind === 'pack' && ref.size > 1e6 && (big = ref.key) });
    const path = fileStorePath(sourceDir, big);
    const bytes = await readFile(path);
    bytes[bytes.length - 1]! ^= 1; // the last range is the one that fails
    await writeFile(path, bytes);
    await expect(sync({}, target)).rejects.toThrow(new RegExp(`${big} in file://.* fails its sha256 .*: not copied; run rezfs verify on the source`));
    expect(await target.head(big)).toBeUndefined();
    expect(await readHead(target)).toBeUndefined();
  });

  it('refuses a target with a generation of its own, or a newer one, unless forced', async () => {
    await publishTo(source);
    await sync();
    // Someone publishes to the site store directly.
    await writeTree(repo, { 'local/1/package.py': packageDefinition('local', '1') });
    await publishTo(target);
    const before = await listed(target);
    const headBefore = await readHead(target);
    await expect(sync()).rejects.toThrow(SyncRefusedError);
    await expect(sync()).rejects.toThrow(/will not follow .*: it serves generation 2 \(index [0-9a-f]{64}\), which file:\/\/.* does not have: something was published to it directly; publish to the source instead, or pass --force/);
    expect(await listed(target)).toEqual(before);
    expect(await readHead(target)).toEqual(headBefore);

    const forced = await sync({ force: true });
    expect(forced).toMatchObject({ generation: 1, previousGeneration: 2, changed: true });
    expect((await readHead(target))!.indexHash).toBe((await readHead(source))!.indexHash);
  });

  it('refuses a target newer than the source (the source was rolled back), unless forced', async () => {
    await publishTo(source);
    const first = (await readHead(source))!.indexHash;
    await writeTree(repo, { 'foo/2.0.0/package.py': packageDefinition('foo', '2.0.0') });
    await publishTo(source);
    await sync();
    await writeFile(fileStorePath(sourceDir, keys.head), first); // HEAD restored from an old backup
    await expect(sync()).rejects.toThrow(/will not follow .*: it serves generation 2, newer than the source's 1; publish to the source instead, or pass --force/);
    expect((await sync({ force: true })).generation).toBe(1);
  });

  it('guards through the CLI: one line, exit 2, target unchanged', async () => {
    const env = { REZFS_RUNTIME_DIR: join(work.path, 'run') }; // no other mount on this host is told anything
    await publishTo(source);
    const targetDir = join(work.path, 'target');
    await mkdir(targetDir, { recursive: true });
    const cases: [string[], RegExp][] = [
      [['--from', source.url, '--to', 'http://127.0.0.1:9/site'], /^rezfs: http:\/\/127\.0\.0\.1:9\/site\/ is read-only \(plain HTTP\): use the s3:\/\/, file:\/\/ or dav\+http\(s\):\/\/ store behind it\n$/],
      [['--from', source.url, '--to', source.url], /^rezfs: --from and --to are the same store \(file:\/\/.*\); name the site store to copy to\n$/],
      [['--from', `file://${join(work.path, 'typo')}`, '--to', target.url], /^rezfs: file:\/\/.*typo is not a rezfs store: it holds neither rezfs\.json nor index\/HEAD \(a mistyped bucket, prefix or directory\? publish to it first to create it\)\n$/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(['sync', ...args], { env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    expect(await listed(target)).toEqual([]);
    const ok = await runCli(['sync', '--from', source.url, '--to', target.url], { env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^synced generation 1 from file:\/\/.* to file:\/\/.* in .* s: 7 objects copied \(3\.0 MiB\), 0 already there\n$/);
    const again = await runCli(['sync', '--from', source.url, '--to', target.url], { env });
    expect(again.stdout).toMatch(/^file:\/\/.* already serves generation 1 of file:\/\/.* \(7 objects\): nothing copied in /);
  });
});

describe('rezfs sync to an S3 store (s3rver)', () => {
  const server = useS3Server();

  it('copies the generation to the bucket, which then verifies clean', async () => {
    await publishTo(source);
    const bucket = openStore(server().storeUrl('site-b'));
    const report = await sync({}, bucket);
    expect(report.copied.objects).toBe(report.objects);
    expect(await listed(bucket)).toEqual(await referenced(source));
    expect((await verifyStore(bucket, undefined)).problems).toEqual([]);
    await bucket.close();
  });
});
