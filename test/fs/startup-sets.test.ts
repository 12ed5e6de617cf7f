/**
 * Startup sets, kernel-free (issue 12): a mount records what a version reads from its first use, a published
 * profile is followed at the version's first use (its blocks preloaded, coalesced, before anyone reads them), a
 * small version is preloaded whole, and every kind of bad profile is ignored with one log line while reads stay
 * exact. Stores are real (file://) behind a request counter; the only fault injected by hand is a store that
 * fails a ranged GET once (a real store cannot be made to fail one request on demand).
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockSource, ByteBudget, DiskBlockCache, MemoryBlockCache, packRef } from '../../src/cache/index.js';
import {
  Catalog,
  buildProfile,
  encodeDocument,
  generateSigningKeys,
  keys,
  loadPrivateKey,
  loadPublicKey,
  signDocument,
  verifyStore,
  type StartupProfile,
} from '../../src/catalog/index.js';
import { RezFs, StartupSets } from '../../src/fs/index.js';
import { silentLog, type Log } from '../../src/log.js';
import { attachProfiles, publish } from '../../src/publish/index.js';
import { updateCatalog } from '../../src/publish/catalog-update.js';
import { DEFAULT_RETRY, OriginPressure, openStore, type ObjectStore } from '../../src/store/index.js';
import { waitFor } from '../support/cli.js';
import { CountingStore } from '../support/counting-store.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const BLOCK = 4096;
const BIG = randomBytes(64 * BLOCK); // 64 blocks
const O_RDONLY = 0;

let work: Awaited<ReturnType<typeof tempDir>>;
let storeDir: string;
let raw: ObjectStore;
let repo: string;

interface Harness {
  fs: RezFs;
  startup: StartupSets;
  store: CountingStore;
  recorded: StartupProfile[];
  warnings: string[];
}

async function harness(options: { trusted?: boolean; recordWindowMs?: number; source?: ObjectStore } = {}): Promise<Harness> {
  const store = new CountingStore(options.source ?? raw);
  const catalog = await Catalog.open(store);
  const warnings: string[] = [];
  const log: Log = { ...silentLog, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };
  const blocks = new BlockSource(store, new MemoryBlockCache(1 << 24), undefined, log, { budget: new ByteBudget(1 << 24) });
  const recorded: StartupProfile[] = [];
  const startup = new StartupSets(blocks, {
    log,
    policy: { recordWindowMs: options.recordWindowMs ?? 60_000, wholePackBytes: 8 * BLOCK },
    ...(options.trusted ? { trustedKeys: [loadPublicKey(signing.publicPem, 'test key')] } : {}),
    onRecorded: (p) => recorded.push(p),
  });
  const fs = new RezFs(catalog, blocks, { uid: 0, gid: 0, readDeadlineMs: 5_000, readaheadBlocks: 1, log, startup });
  store.reset();
  return { fs, startup, store, recorded, warnings };
}

async function read(fs: RezFs, path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await fs.open(path, O_RDONLY);
  try {
    return await fs.read(handle, offset, length);
  } finally {
    fs.release(handle);
  }
}

/** Scattered reads of the big file, as a loader's: offsets in blocks. */
const READS = [0, 7, 8, 30, 31, 32, 50, 63];

async function readScattered(fs: RezFs): Promise<void> {
  for (const block of READS) {
    const data = await read(fs, '/app/1.0/lib/libapp.so', block * BLOCK + 10, 100);
    expect(data.equals(BIG.subarray(block * BLOCK + 10, block * BLOCK + 110))).toBe(true);
  }
}

/** Records app/1.0's startup set on a fresh harness, returning the profile. */
async function recordApp(): Promise<StartupProfile> {
  const h = await harness();
  await readScattered(h.fs);
  h.startup.flush();
  return h.recorded.find((p) => p.family === 'app')!;
}

/** Names `profile` (uploaded as is) in app/1.0's record, with no check: how a buggy or foreign tool could. */
async function attachRaw(bytes: Buffer, hash: string): Promise<void> {
  await raw.put(keys.profile(hash), bytes);
  await updateCatalog(
    raw,
    async (draft) => {
      const shard = structuredClone((await draft.shard('app'))!);
      shard.versions['1.0']!.profile = hash;
      draft.setShard(shard);
    },
    { log: silentLog },
  );
}

const signing = generateSigningKeys();

beforeAll(async () => {
  work = await tempDir('startup-sets');
  storeDir = join(work.path, 'store');
  repo = join(work.path, 'repo');
  await writeTree(repo, {
    'app/1.0/package.py': packageDefinition('app', '1.0'),
    'app/1.0/lib/libapp.so': BIG,
    'app/1.0/python/app/__init__.py': 'X = 1\n',
    'lib/1.0/package.py': packageDefinition('lib', '1.0'),
    'lib/1.0/python/lib/__init__.py': 'Y = 2\n',
  });
  raw = openStore(`file://${storeDir}`);
  await raw.put(keys.config, Buffer.from(JSON.stringify({ format: '1.0.0', blockSize: BLOCK })));
  await publish(raw, { repoDir: repo, selectors: [], log: silentLog });
});
afterAll(async () => work?.remove());

describe('recording', () => {
  it('records the pack ranges a version reads from its first use, merged, and nothing for a version only resolved', async () => {
    const h = await harness();
    await h.fs.readAt('/lib/1.0/package.py', 0, 100); // a resolve reads package.py: not a use of the payload
    await readScattered(h.fs);
    h.startup.flush();
    expect(h.recorded.map((p) => `${p.family}/${p.version}`)).toEqual(['app/1.0']);
    const [profile] = h.recorded;
    const app = (await (await Catalog.open(raw)).shard('app')).versions['1.0']!;
    expect(profile!.manifest).toBe(app.manifest);
    const ranges = profile!.packs[0]!.ranges;
    expect(ranges).toHaveLength(READS.length);
    expect(ranges.every(([s, e]) => e - s === 100)).toBe(true);
    expect(ranges).toEqual([...ranges].sort((a, b) => a[0] - b[0]));
  });

  it('stops recording a version when its window closes', async () => {
    const h = await harness({ recordWindowMs: 50 });
    await read(h.fs, '/app/1.0/lib/libapp.so', 0, 100);
    await new Promise((r) => setTimeout(r, 120));
    await read(h.fs, '/app/1.0/lib/libapp.so', 40 * BLOCK, 100);
    h.startup.flush();
    expect(h.recorded).toHaveLength(1);
    expect(h.recorded[0]!.packs[0]!.ranges).toHaveLength(1);
    expect(h.recorded[0]!.windowMs).toBeLessThanOrEqual(120);
  });
});

describe('following a profile', () => {
  it('preloads the blocks of a published profile at the version\'s first use, coalesced, so that the reads find them', async () => {
    const summary = await attachProfiles(raw, [await recordApp()], { log: silentLog });
    expect(summary.attached).toHaveLength(1);
    const h = await harness();
    await h.fs.getattr('/app/1.0/lib/libapp.so'); // first use: nothing read yet
    await h.startup.idle();
    const preloadGets = h.store.count('getRange', 'packs/');
    // Blocks 0, 7-8, 30-32, 50, 63: five runs of consecutive blocks, one ranged GET each.
    expect(preloadGets).toBe(5);
    expect(h.startup.stats).toMatchObject({ profilesFollowed: 1, profilesIgnored: 0, preloadedBlocks: READS.length });
    await readScattered(h.fs);
    expect(h.store.count('getRange', 'packs/')).toBe(preloadGets);
    expect(h.warnings).toEqual([]);
  });

  it('preloads a small version whole at its first use when it has no profile', async () => {
    const h = await harness();
    await h.fs.readdir('/lib/1.0/python/lib');
    await h.startup.idle();
    expect(h.store.count('getRange', 'packs/')).toBe(1);
    expect((await read(h.fs, '/lib/1.0/python/lib/__init__.py', 0, 100)).toString()).toBe('Y = 2\n');
    expect(h.store.count('getRange', 'packs/')).toBe(1);
  });
});

/**
 * A big file read here and there (16 KiB blocks of four 4 KiB chunks, so the pack has chunk hashes): a profile of
 * it preloads only the chunks it names, with their lists and the chunk index, and every read, the one at offset 0
 * that reads through whole blocks included, is then served from them.
 */
describe('following a profile of scattered reads: chunks, not blocks', () => {
  const CHUNKED_BLOCK = 16 * 1024;
  const CHUNK = 4096;
  const SCATTERED = randomBytes(40 * CHUNKED_BLOCK + 777);
  /**
   * Blocks read 100 bytes of, 10 bytes in: one chunk each, none next to another. Block 0's read is 6,000 bytes, too
   * long for a small random read, so it goes through whole blocks: two chunks.
   */
  const TOUCHED = [0, 9, 10, 20, 21, 33, 39];
  const CHUNKS_TOUCHED = TOUCHED.length + 1;
  let chunked: ObjectStore;

  async function readTouched(fs: RezFs): Promise<void> {
    for (const block of TOUCHED) {
      const at = block * CHUNKED_BLOCK + 10;
      const length = block === 0 ? 6000 : 100;
      expect((await read(fs, '/big/1.0/lib/libbig.so', at, length)).equals(SCATTERED.subarray(at, at + length))).toBe(true);
    }
  }

  /** The chunked store, holding every ranged GET of the pack until `release()`. */
  class HeldStore extends CountingStore {
    held = 0;
    release = () => {};
    private readonly gate = new Promise<void>((open) => (this.release = open));
    override getRange(key: string, start: number, end: number): Promise<Buffer> {
      if (!key.startsWith('packs/')) return super.getRange(key, start, end);
      this.held++;
      return this.gate.then(() => super.getRange(key, start, end));
    }
  }

  beforeAll(async () => {
    const source = join(work.path, 'chunked-repo');
    // 200 small files besides the big one: a manifest too big to be inlined in the shard record.
    const notes = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`big/1.0/share/notes/note-${i}.txt`, `note ${i}\n`]));
    await writeTree(source, { 'big/1.0/package.py': packageDefinition('big', '1.0'), 'big/1.0/lib/libbig.so': SCATTERED, ...notes });
    chunked = openStore(`file://${join(work.path, 'chunked-store')}`);
    await chunked.put(keys.config, Buffer.from(JSON.stringify({ format: '1.0.0', blockSize: CHUNKED_BLOCK })));
    await publish(chunked, { repoDir: source, selectors: [], log: silentLog });
    const recording = await harness({ source: chunked });
    await readTouched(recording.fs);
    recording.startup.flush();
    expect((await attachProfiles(chunked, recording.recorded, { log: silentLog })).attached).toHaveLength(1);
  });

  it('fetches the chunks the profile names in one wave, and the reads need nothing more', async () => {
    const h = await harness({ source: chunked });
    await h.fs.getattr('/big/1.0/lib/libbig.so');
    await h.startup.idle();
    expect(h.startup.stats).toMatchObject({ profilesFollowed: 1, preloadedBlocks: 0, preloadedChunks: CHUNKS_TOUCHED });
    expect(h.store.count('getRange', 'packs/')).toBe(TOUCHED.length); // block 0's two chunks in one
    expect(h.store.rangeBytes('packs/')).toBe(CHUNKS_TOUCHED * CHUNK); // against 7 x 16 KiB for the blocks
    expect(h.store.count('getRange', 'chunks/')).toBe(2); // the chunk index, and every list in one
    const before = h.store.calls.length;
    await readTouched(h.fs);
    expect(h.store.calls.slice(before)).toEqual([]);
    expect(h.warnings).toEqual([]);
  });

  it('serves a reader that comes while the chunks are still on their way from those loads', async () => {
    const held = new HeldStore(chunked);
    const h = await harness({ source: held });
    await h.fs.getattr('/big/1.0/lib/libbig.so');
    expect(await waitFor(() => held.held === TOUCHED.length, 5_000)).toBe(true); // the preload's GETs, held
    const reading = readTouched(h.fs);
    held.release();
    await reading;
    await h.startup.idle();
    expect(held.count('getRange', 'packs/')).toBe(TOUCHED.length);
    expect(held.rangeBytes('packs/')).toBe(CHUNKS_TOUCHED * CHUNK);
    expect(h.warnings).toEqual([]);
  });

  it('fetches the profile alongside the manifest, not after it', async () => {
    const version = (await (await Catalog.open(chunked)).shard('big')).versions['1.0']!;
    expect(version.inlineManifest).toBeUndefined();
    let release = () => {};
    const gate = new Promise<void>((open) => (release = open));
    class HeldManifests extends CountingStore {
      override get(key: string): Promise<Buffer> {
        return key.startsWith('manifests/') ? gate.then(() => super.get(key)) : super.get(key);
      }
    }
    const held = new HeldManifests(chunked);
    const h = await harness({ source: held });
    const looking = h.fs.getattr('/big/1.0/lib/libbig.so');
    expect(await waitFor(() => held.count('get', 'profiles/') === 1, 5_000)).toBe(true); // the manifest still held
    expect(held.count('get', 'manifests/')).toBe(0);
    release();
    await looking;
    await h.startup.idle();
    expect(h.startup.stats).toMatchObject({ profilesFollowed: 1, preloadedChunks: CHUNKS_TOUCHED });
    expect(held.count('get', 'profiles/')).toBe(1);
  });

  it('fetches no chunk of a block the disk cache holds (a cache filled by rezfs prefetch)', async () => {
    const catalog = await Catalog.open(chunked);
    const manifest = await catalog.versionManifest((await catalog.shard('big')).versions['1.0']!);
    const pack = packRef(manifest, manifest, silentLog);
    const disk = new DiskBlockCache(join(work.path, 'chunked-cache'));
    const filler = new BlockSource(chunked, new MemoryBlockCache(1 << 24), disk, silentLog);
    await filler.preload(pack, TOUCHED);
    await filler.flushed();
    const store = new CountingStore(chunked);
    const blocks = new BlockSource(store, new MemoryBlockCache(1 << 24), disk, silentLog);
    const wanted = TOUCHED.map((block) => (block * CHUNKED_BLOCK) / CHUNK);
    expect(await blocks.preloadChunks(pack, wanted)).toBe(0);
    expect(store.calls).toEqual([]);
    expect(blocks.stats.diskHits).toBe(TOUCHED.length); // the blocks came into memory instead
  });
});

describe('bad profiles are ignored with one log line, and reads stay exact', () => {
  async function expectIgnored(reason: RegExp, options: { trusted?: boolean } = {}): Promise<void> {
    const h = await harness(options);
    await h.fs.getattr('/app/1.0/lib/libapp.so');
    await h.startup.idle();
    expect(h.warnings).toHaveLength(1);
    expect(h.warnings[0]).toMatch(/startup profile profiles\/[0-9a-f]{64}\.json of app\/1\.0 ignored: /);
    expect(h.warnings[0]).toMatch(reason);
    expect(h.startup.stats).toMatchObject({ profilesFollowed: 0, profilesIgnored: 1, preloadedBlocks: 0 });
    expect(h.store.count('getRange', 'packs/')).toBe(0);
    await readScattered(h.fs);
  }

  it('a profile naming ranges that do not exist', async () => {
    const good = await recordApp();
    const pack = good.packs[0]!.pack;
    const bad: StartupProfile = { ...good, packs: [{ pack, ranges: [[0, 100], [BIG.length + 4096, BIG.length + 8192]] }] };
    const doc = encodeDocument(bad);
    await attachRaw(doc.bytes, doc.hash);
    await expectIgnored(/not sorted ranges inside its \d+ bytes/);
    expect((await verifyStore(raw, undefined)).problems).toEqual([expect.stringMatching(/^app\/1\.0: startup profile [0-9a-f]{64}: it names bytes/)]);
    const otherPack = encodeDocument({ ...good, packs: [{ pack: '0'.repeat(64), ranges: [[0, 100]] }] });
    await attachRaw(otherPack.bytes, otherPack.hash);
    await expectIgnored(/names pack 0{64}, which this version does not have/);
  });

  it('a corrupt or truncated profile', async () => {
    const doc = encodeDocument(await recordApp());
    await attachRaw(doc.bytes, doc.hash);
    await writeFile(join(storeDir, keys.profile(doc.hash)), doc.bytes.subarray(0, doc.bytes.length - 20)); // truncated
    await expectIgnored(/failed verification/);
    await writeFile(join(storeDir, keys.profile(doc.hash)), Buffer.from('{"format": "1.2.0", "packs": ['));
    await expectIgnored(/failed verification/);
  });

  it('a profile for another version', async () => {
    const lib = await harness();
    await read(lib.fs, '/lib/1.0/python/lib/__init__.py', 0, 100);
    lib.startup.flush();
    const doc = encodeDocument(lib.recorded[0]!);
    await attachRaw(doc.bytes, doc.hash);
    await expectIgnored(/it is for lib\/1\.0 \(manifest [0-9a-f]{64}\), not this version/);
  });

  it('an unsigned profile on a signed store (a signed one is followed)', async () => {
    const profile = await recordApp();
    const unsigned = encodeDocument(profile);
    await attachRaw(unsigned.bytes, unsigned.hash);
    await expectIgnored(/is not signed, and this mount trusts only signed catalogs/, { trusted: true });
    const foreign = encodeDocument(signDocument(loadPrivateKey(generateSigningKeys().privatePem, 'other'), profile));
    await attachRaw(foreign.bytes, foreign.hash);
    await expectIgnored(/signed by key [0-9a-f]{16}, which is not trusted/, { trusted: true });

    const signed = encodeDocument(signDocument(loadPrivateKey(signing.privatePem, 'test key'), profile));
    await attachRaw(signed.bytes, signed.hash);
    const h = await harness({ trusted: true });
    await h.fs.getattr('/app/1.0/lib/libapp.so');
    await h.startup.idle();
    expect(h.startup.stats.profilesFollowed).toBe(1);
    expect(h.warnings).toEqual([]);
  });
});

describe('attaching profiles', () => {
  it('skips a recording whose version now has another manifest, and attaching the same profiles again changes nothing', async () => {
    const profile = await recordApp();
    const stale = buildProfile({ family: 'app', version: '1.0', manifestHash: 'f'.repeat(64) }, 1000, new Map([[profile.packs[0]!.pack, [[0, 10] as [number, number]]]]));
    const first = await attachProfiles(raw, [profile, stale], { log: silentLog });
    expect(first.attached).toHaveLength(1);
    expect(first.skipped).toEqual([`app/1.0: recorded through manifest ${'f'.repeat(64)}, but the version now has ${profile.manifest}`]);
    const again = await attachProfiles(raw, [profile], { log: silentLog });
    expect(again.generation).toBeUndefined();
  });
});

/**
 * The store's turns (OriginPressure, as every network store of a mount uses) go to demand reads before preloads: a
 * reader arriving while a profile's preload fills the link starts at once, and a reader that needs a block a queued
 * preload would fetch promotes that preload past the others. The store holds each ranged GET until the test lets
 * it go (a real store cannot be paused per request).
 */
describe('preloads below demand reads at the store', () => {
  class TurnTakingStore extends CountingStore {
    readonly pressure = new OriginPressure(DEFAULT_RETRY, { maxConcurrentRequests: 2, demandReserve: 1, successesPerStep: 8, maxStep: 8 });
    /** Ranged GETs that got a turn, by first byte, with their release. */
    readonly started: { start: number; go: () => void }[] = [];
    override getRange(key: string, start: number, end: number): Promise<Buffer> {
      return this.pressure.run(
        async () => {
          await new Promise<void>((go) => this.started.push({ start, go }));
          return super.getRange(key, start, end);
        },
        async () => {},
        Math.random,
      );
    }
  }
  const settle = () => new Promise((r) => setTimeout(r, 20));

  it('sends a demand read ahead of queued preload runs, and promotes the queued run a reader joins', async () => {
    const store = new TurnTakingStore(raw);
    const catalog = await Catalog.open(store);
    const version = (await catalog.shard('app')).versions['1.0']!;
    const manifest = await catalog.versionManifest(version);
    const pack = packRef(manifest, manifest, silentLog); // its first pack: the manifest's own record
    const blocks = new BlockSource(store, new MemoryBlockCache(1 << 24), undefined, silentLog, { budget: new ByteBudget(1 << 24) });
    const preloaded = blocks.preload(pack, [0, 10, 20, 30, 40]); // five runs: one GET each, one slot for all of them
    await settle();
    expect(store.started.map((g) => g.start)).toEqual([0]);
    const demand = blocks.read(pack, { start: 50 * BLOCK, end: 50 * BLOCK + 10 });
    await settle();
    expect(store.started.map((g) => g.start)).toEqual([0, 50 * BLOCK]); // the reserved slot: no wait behind preloads
    const joined = blocks.read(pack, { start: 40 * BLOCK, end: 40 * BLOCK + 10 }); // block 40's run is last in line
    await settle();
    store.started[0]!.go(); // the first preload's slot frees: block 40's run has it, ahead of blocks 10, 20 and 30
    await settle();
    expect(store.started.map((g) => g.start)).toEqual([0, 50 * BLOCK, 40 * BLOCK]);
    for (let i = 0; i < 10; i++) {
      for (const g of store.started.splice(0)) g.go();
      await settle();
    }
    expect((await demand).equals(await raw.getRange(pack.key, 50 * BLOCK, 50 * BLOCK + 10))).toBe(true);
    expect((await joined).equals(await raw.getRange(pack.key, 40 * BLOCK, 40 * BLOCK + 10))).toBe(true);
    expect(await preloaded).toBe(5);
  });
});
