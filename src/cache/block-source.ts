import { ChunkLayout, HASH_BYTES, keys, unusableChunks, type Manifest, type PackRecord } from '../catalog/index.js';
import { DeadlineError, withDeadline } from '../deadline.js';
import { sha256Hex as sha256 } from '../hash.js';
import type { Log } from '../log.js';
import { BackgroundTicket, inBackground, ObjectNotFoundError, readVerified, type ObjectStore } from '../store/index.js';
import type { BlockCache } from './block-cache.js';
import { ByteBudget } from './byte-budget.js';
import { WriteBehind, type WriteBehindConfig } from './write-behind.js';
import { blockSpan, blocksCovering, coalesce, consecutiveRuns, readaheadRuns, sliceOfBlock, type Span } from './block-math.js';

/** What a reader needs to know about one pack: from its manifest. */
export interface PackRef {
  key: string;
  size: number;
  blockSize: number;
  blocks: readonly string[];
  /** Where its chunk hashes are (format 1.2), when it has usable ones: small random reads then fetch chunks. */
  chunks?: PackChunks;
}

export interface PackChunks {
  /** The `chunks/` object's key. */
  key: string;
  /** sha256 of the object's index section. */
  index: string;
  layout: ChunkLayout;
}

/**
 * The reader's view of one of a manifest's packs (see packOf / packsOf in the catalog). Chunk hashes it cannot use
 * are left out, with a warning: whole blocks are read.
 */
export function packRef(manifest: Pick<Manifest, 'blockSize'>, record: PackRecord, log: Log): PackRef {
  const { blockSize } = manifest;
  const pack: PackRef = { key: keys.pack(record.pack), size: record.packSize, blockSize, blocks: record.blocks };
  const { chunks } = record;
  if (!chunks) return pack;
  const unusable = unusableChunks(chunks, blockSize);
  if (unusable) {
    log.warn(`${pack.key}: chunk hashes ignored (${unusable}); small reads fetch whole blocks`);
    return pack;
  }
  return { ...pack, chunks: { key: keys.chunks(chunks.object), index: chunks.index, layout: new ChunkLayout(record.packSize, blockSize, chunks.chunkSize) } };
}

/** Blocks being fetched at once, in bytes, unless the mount sets its own budget. */
export const DEFAULT_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_LOAD_DEADLINE_MS = 30_000;
/** Background GETs (preload) in flight at once: enough to fill a high-latency link, few enough to leave sockets to readers. */
export const DEFAULT_BACKGROUND_GETS = 32;
/** The most bytes readahead asks for in one ranged GET: large enough that per-request cost fades. */
const MAX_RUN_BYTES = 8 * 1024 * 1024;
/**
 * The most bytes a background preload asks for in one ranged GET. A run's blocks are usable only once its whole
 * response is in, and preloads run many GETs side by side: smaller runs put the first blocks in readers' hands sooner.
 */
const MAX_PRELOAD_RUN_BYTES = 2 * 1024 * 1024;
/**
 * Of a block, the most bytes between two preloaded chunks (or chunk lists) fetched in one ranged GET, gap and all
 * (256 KiB of a 1 MiB block): at the latencies of object storage a request costs more than that many bytes on the
 * wire, and fewer requests go out in fewer waves.
 */
const MAX_PRELOAD_GAP_SHARE = 1 / 4;

/** Which piece of an object a load is for: its kind and its number among its kind (a block, a chunk...). */
export interface Piece {
  kind: 'block' | 'chunk' | 'chunk list' | 'chunk index';
  index: number;
}

export class IntegrityError extends Error {
  constructor(readonly objectKey: string, readonly piece: Piece, expected: string, actual: string) {
    super(`${piece.kind === 'chunk index' ? piece.kind : `${piece.kind} ${piece.index}`} of ${objectKey} failed verification: expected sha256 ${expected}, got ${actual}`);
    this.name = 'IntegrityError';
  }
}

/** How a BlockSource loads; every field has a default. */
export interface BlockSourceOptions {
  /** Bytes of pieces being fetched at once (default DEFAULT_IN_FLIGHT_BYTES); the memory plan sizes it. */
  budget?: ByteBudget;
  /** A load, however many readers wait on it, gives up after this long; later readers start afresh. */
  loadDeadlineMs?: number;
  /** Background GETs (preload) in flight at once (default DEFAULT_BACKGROUND_GETS). */
  backgroundGets?: number;
  /** Told of every ranged GET's bytes by object key: what each package costs cold (fs/package-costs.ts). */
  onFetched?: (objectKey: string, bytes: number) => void;
  /** When small pieces get their disk copies (default DEFAULT_WRITE_BEHIND). */
  writeBehind?: WriteBehindConfig;
}

export interface BlockSourceStats {
  storeGets: number;
  storeBytes: number;
  memoryHits: number;
  diskHits: number;
  /** Reads served from chunks instead of whole blocks. */
  chunkReads: number;
}

/**
 * Serves pack bytes block by block: memory, then disk, then a ranged GET (one per block on demand,
 * one per run of blocks for readahead), shared by every concurrent reader of that block. Small
 * random reads of a pack with chunk hashes (readChunks) fetch only the 4 KiB chunks they need, in
 * one ranged GET per run of adjacent chunks, with the chunk hashes they are checked against (the
 * pack's chunk index once, then one list per block touched) fetched in parallel with them.
 *
 * Invariants: every piece (block, chunk, chunk list, chunk index) is checked against its sha256
 * before it is used or cached, whichever way it came in; the caches hold only such pieces, each
 * under its own hash, so a chunk never stands in for a block. Pieces being fetched count against a
 * byte budget: demand reads wait for room, readahead is skipped when there is none, background
 * preloads wait behind demand reads. A background load (readahead, preload) answers no one: a reader
 * that joined one that failed loads the block itself, and its lateness never marks the block overdue
 * (D4). A pack whose chunk hashes fail verification is read in whole blocks from then on.
 */
export class BlockSource {
  readonly stats: BlockSourceStats = { storeGets: 0, storeBytes: 0, memoryHits: 0, diskHits: 0, chunkReads: 0 };
  /** Loads under way: blocks, indexes and lists by their sha256, chunks by where they lie (their hash may not be known yet). */
  private readonly inFlight = new Map<string, Promise<Buffer>>();
  /** Loads that missed their deadline and are still running: asking again now would only wait again. */
  private readonly overdue = new Map<string, DeadlineError>();
  /** Chunk objects whose hashes failed verification: their packs are read in whole blocks. */
  private readonly badChunkObjects = new Set<string>();
  /** Disk copies of chunks and chunk lists, written once the mount is quiet (see keepSmall). */
  private readonly smallWrites: WriteBehind | undefined;
  /**
   * Loads in `inFlight` that are background work (readahead, preload): their failure is no reader's answer. A
   * preload's requests are background requests to the store (store/background.ts) under a ticket that a reader
   * joining the load promotes.
   */
  private readonly backgroundLoads = new WeakMap<Promise<Buffer>, BackgroundTicket | undefined>();
  /** Disk writes nobody waits for (background loads, small pieces): `flushed()` waits for them. */
  private readonly diskWrites = new Set<Promise<void>>();
  /** Background GETs in flight (preload), as a semaphore of slots. */
  private readonly backgroundSlots: ByteBudget;

  private readonly budget: ByteBudget;
  private readonly loadDeadlineMs: number;
  private readonly onFetched: ((objectKey: string, bytes: number) => void) | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly memory: BlockCache,
    private readonly disk: BlockCache | undefined,
    private readonly log: Log,
    options: BlockSourceOptions = {},
  ) {
    this.budget = options.budget ?? new ByteBudget(DEFAULT_IN_FLIGHT_BYTES);
    this.loadDeadlineMs = options.loadDeadlineMs ?? DEFAULT_LOAD_DEADLINE_MS;
    this.backgroundSlots = new ByteBudget(options.backgroundGets ?? DEFAULT_BACKGROUND_GETS);
    this.onFetched = options.onFetched;
    this.smallWrites = disk && new WriteBehind(disk, log, options.writeBehind);
  }

  /** Pack bytes [span.start, span.end), in whole blocks. */
  async read(pack: PackRef, span: Span): Promise<Buffer> {
    const covering = blocksCovering(span, pack.blockSize);
    if (!covering) return Buffer.alloc(0);
    return joined(await Promise.all(range(covering.first, covering.last).map((index) => this.blockPart(pack, index, span))));
  }

  /**
   * The part of `span` in block `index`: from its chunks when they are all loading or in memory and the block is not
   * (a startup set preloaded them), else from the block.
   */
  private async blockPart(pack: PackRef, index: number, span: Span): Promise<Buffer> {
    const chunks = pack.chunks;
    const block = blockSpan(index, pack.blockSize, pack.size);
    const part = { start: Math.max(span.start, block.start), end: Math.min(span.end, block.end) };
    if (chunks && !this.badChunkObjects.has(chunks.key) && (await this.chunksAtHand(pack, chunks, index, part))) {
      return this.partOfBlock(pack, chunks, index, part);
    }
    return slice(await this.block(pack, index), sliceOfBlock(index, pack.blockSize, span));
  }

  /** True when block `index` is neither loading nor in memory but every chunk holding `part` of it is. */
  private async chunksAtHand(pack: PackRef, chunks: PackChunks, index: number, part: Span): Promise<boolean> {
    const sha = pack.blocks[index]!;
    if (this.inFlight.has(sha) || (await this.memory.get(sha))) return false;
    const { layout } = chunks;
    let list: Buffer | undefined;
    for (let chunk = layout.chunkAt(part.start); chunk <= layout.chunkAt(part.end - 1); chunk++) {
      if (this.inFlight.has(chunkKey(pack, chunk))) continue;
      list ??= await this.memoryChunkList(chunks, index);
      if (!list || !(await this.memory.get(hashAt(list, chunk - index * layout.chunksPerBlock)))) return false;
    }
    return true;
  }

  /**
   * Pack bytes [span.start, span.end) for a small random read: a block in memory, on its way or on
   * disk serves it; otherwise its chunks do. A pack without (usable) chunk hashes is read in whole blocks.
   */
  async readChunks(pack: PackRef, span: Span): Promise<Buffer> {
    const chunks = pack.chunks;
    const covering = blocksCovering(span, pack.blockSize);
    if (!chunks || !covering || this.badChunkObjects.has(chunks.key)) return this.read(pack, span);
    const parts = await Promise.all(
      range(covering.first, covering.last).map((index) => {
        const block = blockSpan(index, pack.blockSize, pack.size);
        return this.partOfBlock(pack, chunks, index, { start: Math.max(span.start, block.start), end: Math.min(span.end, block.end) });
      }),
    );
    return joined(parts);
  }

  /**
   * Starts loading blocks in the background (readahead) while the budget has room; failures surface
   * when they are read. Consecutive missing blocks come in one ranged GET.
   */
  prefetch(pack: PackRef, first: number, count: number): void {
    const last = Math.min(first + count, pack.blocks.length) - 1;
    void (async () => {
      const missing = await this.missing(pack, range(first, last));
      for (const run of readaheadRuns(missing, first, count, maxRunBlocks(pack, MAX_RUN_BYTES))) {
        const total = runLength(pack, run);
        // The blocks, plus the run's response until it is cut into them: both are in memory at once.
        if (!this.budget.tryAcquire(2 * total)) return;
        this.startRun(pack, run, total).catch(() => undefined);
      }
    })();
  }

  /**
   * Loads blocks in the background, below demand reads in priority: the one engine behind startup sets and
   * `rezfs prefetch`. Consecutive missing blocks come in one ranged GET (at most MAX_PRELOAD_RUN_BYTES); at most
   * `backgroundGets` such GETs are in flight for all callers together, first come first served, and each waits for
   * budget room that no demand read wants, so it delays no reader. Resolves once every block has settled, with how
   * many were loaded; never rejects (a failure is no one's answer: a reader of that block loads it again). Its GETs
   * are background requests: the store's turns go to demand first, until a reader joins one of them.
   */
  async preload(pack: PackRef, indexes: readonly number[]): Promise<number> {
    const runs = consecutiveRuns(await this.missing(pack, [...new Set(indexes)].sort((a, b) => a - b)), maxRunBlocks(pack, MAX_PRELOAD_RUN_BYTES));
    const loaded = await Promise.all(
      runs.map((run) => {
        const ticket = new BackgroundTicket();
        return inBackground(ticket, () => this.preloadRun(pack, run, ticket));
      }),
    );
    return loaded.reduce((a, b) => a + b, 0);
  }

  /**
   * Loads chunks of a pack in the background (the scattered parts of a big binary a startup profile names), with
   * the chunk lists they are checked against and the pack's chunk index, all at once: one ranged GET per group of
   * nearby chunks and one per group of nearby lists (gaps up to MAX_PRELOAD_GAP_SHARE of a block fetched and
   * dropped), each under a background slot and budget room no demand read wants, like `preload`. Chunks at hand,
   * and those of blocks at hand, are skipped. Resolves with how many chunks were loaded; a failed fetch is no one's
   * answer (a reader loads that chunk again). A reader of one of these chunks joins its load and promotes the whole
   * pack's preload to demand.
   */
  async preloadChunks(pack: PackRef, wanted: readonly number[]): Promise<number> {
    const chunks = pack.chunks;
    if (!chunks || this.badChunkObjects.has(chunks.key) || wanted.length === 0) return 0;
    const { layout } = chunks;
    const ticket = new BackgroundTicket();
    return inBackground(ticket, async () => {
      const lists = new Map<number, Promise<Buffer>>();
      const listsToFetch: number[] = [];
      const toFetch: number[] = [];
      for (const [block, inBlock] of byBlock(wanted, layout)) {
        const sha = pack.blocks[block];
        if (sha === undefined) throw new RangeError(`chunk ${inBlock[0]} is past the end of ${pack.key}`);
        // A block on disk comes into memory, as `preload` takes it: the chunks would only be fetched again.
        if (this.inFlight.has(sha) || (await this.memory.get(sha)) || (await this.diskHit(sha))) continue;
        const local = await this.localChunkList(chunks, block);
        const missing: number[] = [];
        for (const chunk of inBlock) {
          const hash = local && hashAt(local, chunk - block * layout.chunksPerBlock);
          const atHand = this.inFlight.has(chunkKey(pack, chunk)) || (hash && ((await this.memory.get(hash)) ?? (await this.diskHit(hash))));
          if (!atHand) missing.push(chunk);
        }
        if (missing.length === 0) continue;
        toFetch.push(...missing);
        const pendingList = this.inFlight.get(listKey(chunks, block));
        if (local || pendingList) lists.set(block, local ? Promise.resolve(local) : pendingList!);
        else listsToFetch.push(block);
      }
      if (listsToFetch.length > 0) {
        const chunkIndex = this.chunkIndex(chunks);
        chunkIndex.catch(() => undefined); // awaited by each list's check
        for (const group of coalesce(listsToFetch, (block) => layout.listSpan(block), pack.blockSize * MAX_PRELOAD_GAP_SHARE, MAX_PRELOAD_RUN_BYTES)) {
          const { start, end, held } = extent(group, (block) => layout.listSpan(block));
          const response = this.backgroundGet(chunks.key, start, end, held);
          for (const block of group) {
            const span = layout.listSpan(block);
            const load = (async () => this.checkedList(chunks, block, Buffer.from((await response).subarray(span.start - start, span.end - start)), chunkIndex))();
            lists.set(block, this.track(listKey(chunks, block), span.end - span.start, load, { ticket }));
          }
        }
      }
      const hashOf = async (chunk: number) => {
        const block = Math.floor(chunk / layout.chunksPerBlock);
        return hashAt(await lists.get(block)!, chunk - block * layout.chunksPerBlock);
      };
      const loads: Promise<Buffer>[] = [];
      for (const run of coalesce(toFetch, (chunk) => layout.chunkSpan(chunk), pack.blockSize * MAX_PRELOAD_GAP_SHARE, MAX_PRELOAD_RUN_BYTES)) {
        const { start, end, held } = extent(run, (chunk) => layout.chunkSpan(chunk));
        loads.push(...this.cutChunks(pack, layout, run, this.backgroundGet(pack.key, start, end, held), start, hashOf, { ticket }));
      }
      const loaded = await Promise.all(loads.map((load) => load.then(() => 1, () => 0)));
      return loaded.reduce<number>((a, b) => a + b, 0);
    });
  }

  /**
   * One ranged GET of background work (preloadChunks): it waits for a background slot and for budget room no demand
   * read wants, for the response and `held` (what the pieces cut from it hold until they settle), and gives the
   * slot and the response's room back with the response.
   */
  private async backgroundGet(key: string, start: number, end: number, held: number): Promise<Buffer> {
    await this.backgroundSlots.acquire(1);
    try {
      await this.budget.acquireBehind(end - start + held);
      try {
        return await this.getRange(this.store, key, start, end);
      } finally {
        this.budget.release(end - start);
      }
    } finally {
      this.backgroundSlots.release(1);
    }
  }

  /** Settles once every disk write started so far has (a process about to exit, `rezfs prefetch`). */
  async flushed(): Promise<void> {
    await this.smallWrites?.flushed();
    while (this.diskWrites.size > 0) await Promise.all(this.diskWrites);
  }

  /** One run under one background slot, held until its response is in (not while its blocks are verified and cached). */
  private async preloadRun(pack: PackRef, run: number[], ticket: BackgroundTicket): Promise<number> {
    await this.backgroundSlots.acquire(1);
    let parts: number[][] = [];
    try {
      const total = runLength(pack, run);
      await this.budget.acquireBehind(2 * total);
      // Readers may have started some of these blocks while this run waited: fetch only what is still missing.
      const still = await this.missing(pack, run);
      this.budget.release(2 * (total - runLength(pack, still)));
      parts = consecutiveRuns(still, run.length);
    } finally {
      if (parts.length === 0) this.backgroundSlots.release(1);
    }
    let responses = parts.length;
    const responded = () => --responses === 0 && this.backgroundSlots.release(1);
    const loaded = await Promise.all(parts.map((part) => this.startRun(pack, part, runLength(pack, part), responded, ticket).catch(() => [])));
    return loaded.reduce((n, blocks) => n + blocks.length, 0);
  }

  /** Blocks (of `indexes`, in order) neither in memory nor being loaded: those a background load should fetch. */
  private async missing(pack: PackRef, indexes: readonly number[]): Promise<number[]> {
    const missing: number[] = [];
    for (const index of indexes) {
      const sha = pack.blocks[index];
      if (sha === undefined) throw new RangeError(`block ${index} is past the end of ${pack.key}`);
      if (!this.inFlight.has(sha) && !this.overdue.has(sha) && !(await this.memory.get(sha)) && !this.inFlight.has(sha)) missing.push(index);
    }
    return missing;
  }

  /** A background run whose budget (2 x `total`) is held: half is given back with the response, the rest block by block. */
  private startRun(pack: PackRef, run: number[], total: number, responded?: () => void, ticket?: BackgroundTicket): Promise<Buffer[]> {
    const loads = this.fetchRun(pack, run, () => {
      this.budget.release(total);
      responded?.();
    });
    return Promise.all(loads.map((load, i) => this.track(pack.blocks[run[i]!]!, blockLength(pack, run[i]!), load, { ticket })));
  }

  private block(pack: PackRef, index: number): Promise<Buffer> {
    const sha = pack.blocks[index];
    if (sha === undefined) throw new RangeError(`block ${index} is past the end of ${pack.key}`);
    return this.piece(pack.key, blockSpan(index, pack.blockSize, pack.size), sha, { kind: 'block', index });
  }

  /**
   * One content-addressed piece of an object (a block, a chunk index, a chunk list): memory, a load
   * already under way, disk, then a verified ranged GET.
   */
  private async piece(key: string, span: Span, sha: string, what: Piece): Promise<Buffer> {
    const overdue = this.overdue.get(sha);
    if (overdue) throw overdue;
    const pending = this.inFlight.get(sha);
    if (pending) return this.join(pending, () => this.piece(key, span, sha, what));
    const inMemory = await this.memory.get(sha);
    if (inMemory) {
      this.stats.memoryHits++;
      return inMemory;
    }
    const raced = this.inFlight.get(sha);
    if (raced) return this.join(raced, () => this.piece(key, span, sha, what));
    const size = span.end - span.start;
    return this.track(sha, size, this.budget.acquire(size).then(() => this.fetch(key, span, sha, what)));
  }

  /**
   * A reader joins a load in flight. A background load becomes urgent (its requests still waiting for a turn at the
   * store go ahead of other background work); when it fails, the reader loads on its own account (`again`).
   */
  private join(load: Promise<Buffer>, again: () => Promise<Buffer>): Promise<Buffer> {
    if (!this.backgroundLoads.has(load)) return load;
    this.backgroundLoads.get(load)?.promote();
    return load.catch(again);
  }

  /** Pack bytes `part`, all inside block `index`: from the whole block when it is at hand, else from chunks. */
  private async partOfBlock(pack: PackRef, chunks: PackChunks, index: number, part: Span): Promise<Buffer> {
    const sha = pack.blocks[index]!;
    const pending = this.inFlight.get(sha);
    const block = (pending && this.join(pending, () => this.block(pack, index))) ?? (await this.memoryHit(sha)) ?? (await this.diskHit(sha));
    if (block) return slice(await block, sliceOfBlock(index, pack.blockSize, part));
    this.stats.chunkReads++;
    try {
      return await this.fromChunks(pack, chunks, index, part);
    } catch (err) {
      // Chunk hashes that are damaged or gone (a partial copy of the store) leave the pack's blocks as good as ever.
      const hashesFailed = (err instanceof IntegrityError && err.objectKey === chunks.key) || (err instanceof ObjectNotFoundError && err.key === chunks.key);
      if (!hashesFailed) throw err;
      this.log.error(`${(err as Error).message}: ${pack.key} is read in whole blocks from now on`);
      this.badChunkObjects.add(chunks.key);
      return slice(await this.block(pack, index), sliceOfBlock(index, pack.blockSize, part));
    }
  }

  /**
   * The chunks holding `part` of block `index`. What is cached can only be looked up by hash, so with
   * the block's chunk list at hand the cached chunks are used and the rest fetched; without it, the
   * list and the chunks are fetched at once, and the chunks checked when the list is in.
   */
  private async fromChunks(pack: PackRef, chunks: PackChunks, index: number, part: Span): Promise<Buffer> {
    const { layout } = chunks;
    const first = layout.chunkAt(part.start);
    const last = layout.chunkAt(part.end - 1);
    const local = await this.localChunkList(chunks, index);
    const list = local ? Promise.resolve(local) : this.chunkList(chunks, index);
    list.catch(() => undefined); // awaited below, by each chunk's load; a failure must not go unhandled first
    const firstOfBlock = index * layout.chunksPerBlock;
    const hashOf = (listBytes: Buffer, chunk: number) => hashAt(listBytes, chunk - firstOfBlock);
    const loads = new Map<number, Promise<Buffer>>();
    const missing: number[] = [];
    for (let chunk = first; chunk <= last; chunk++) {
      const overdue = this.overdue.get(chunkKey(pack, chunk));
      if (overdue) throw overdue;
      const pending = this.inFlight.get(chunkKey(pack, chunk));
      const joined = pending && this.join(pending, async () => this.chunkAlone(pack, layout, chunk, hashOf(await list, chunk)));
      const cached = joined ?? (local && ((await this.memoryHit(hashOf(local, chunk))) ?? (await this.diskHit(hashOf(local, chunk)))));
      if (cached) loads.set(chunk, Promise.resolve(cached));
      else missing.push(chunk);
    }
    for (const run of consecutiveRuns(missing)) {
      this.fetchChunkRun(pack, layout, run, list, hashOf).forEach((load, i) => loads.set(run[i]!, load));
    }
    const data = await Promise.all(range(first, last).map((chunk) => loads.get(chunk)!));
    const from = layout.chunkSpan(first).start;
    return slice(joined(data), { start: part.start - from, end: part.end - from });
  }

  /**
   * Adjacent chunks in one ranged GET, one load per chunk, each checked against its hash once `list`
   * (the block's chunk list) is in; a chunk that fails is fetched again on its own.
   */
  private fetchChunkRun(pack: PackRef, layout: ChunkLayout, run: number[], list: Promise<Buffer>, hashOf: (list: Buffer, chunk: number) => string): Promise<Buffer>[] {
    const start = layout.chunkSpan(run[0]!).start;
    const end = layout.chunkSpan(run.at(-1)!).end;
    const total = end - start;
    // The chunks, plus the response until it is cut into them: both are in memory at once.
    const response = this.budget.acquire(2 * total).then(() => this.getRange(this.store, pack.key, start, end));
    response.finally(() => this.budget.release(total)).catch(() => undefined);
    return this.cutChunks(pack, layout, run, response, start, async (chunk) => hashOf(await list, chunk));
  }

  /**
   * One chunk in a ranged GET of its own, checked against its hash `sha` and kept: for a reader whose background
   * load failed, and for a chunk whose slice of a run failed verification.
   */
  private async chunkAlone(pack: PackRef, layout: ChunkLayout, chunk: number, sha: string): Promise<Buffer> {
    return this.keepSmall(sha, await this.fetchVerified(pack.key, layout.chunkSpan(chunk), sha, { kind: 'chunk', index: chunk }));
  }

  /**
   * Chunks `wanted` cut out of `response` (pack bytes from `start` on), one tracked load each (the caller holds
   * budget for their sizes), each checked against its hash (`hashOf`, known once its block's list is in) and kept;
   * one that fails is fetched again on its own.
   */
  private cutChunks(
    pack: PackRef,
    layout: ChunkLayout,
    wanted: readonly number[],
    response: Promise<Buffer>,
    start: number,
    hashOf: (chunk: number) => Promise<string>,
    background?: { ticket: BackgroundTicket },
  ): Promise<Buffer>[] {
    return wanted.map((chunk) => {
      const span = layout.chunkSpan(chunk);
      const load = (async () => {
        const bytes = await response;
        const sha = await hashOf(chunk);
        const data = Buffer.from(bytes.subarray(span.start - start, span.end - start)); // own copy: the cache counts each chunk alone
        const actual = sha256(data);
        if (actual === sha) return this.keepSmall(sha, data);
        this.log.error(`${new IntegrityError(pack.key, { kind: 'chunk', index: chunk }, sha, actual).message} (from ${this.store.url}); fetching it alone`);
        return this.chunkAlone(pack, layout, chunk, sha);
      })();
      return this.track(chunkKey(pack, chunk), span.end - span.start, load, background);
    });
  }

  /** Block `block`'s chunk list as fetched, checked against the pack's chunk index and kept; fetched again alone when it fails. */
  private async checkedList(chunks: PackChunks, block: number, bytes: Buffer, chunkIndex: Promise<Buffer>): Promise<Buffer> {
    const piece: Piece = { kind: 'chunk list', index: block };
    const sha = hashAt(await chunkIndex, block);
    const actual = sha256(bytes);
    if (actual === sha) return this.keepSmall(sha, bytes);
    this.log.error(`${new IntegrityError(chunks.key, piece, sha, actual).message} (from ${this.store.url}); fetching it alone`);
    return this.keepSmall(sha, await this.fetchVerified(chunks.key, chunks.layout.listSpan(block), sha, piece));
  }

  /** Block `index`'s chunk list when its pack's index and the list are in memory. */
  private async memoryChunkList(chunks: PackChunks, index: number): Promise<Buffer | undefined> {
    const chunkIndex = await this.memory.get(chunks.index);
    return chunkIndex && this.memory.get(hashAt(chunkIndex, index));
  }

  /** Block `index`'s chunk list when its pack's index and the list are in memory or on disk, without a GET. */
  private async localChunkList(chunks: PackChunks, index: number): Promise<Buffer | undefined> {
    const chunkIndex = (await this.memory.get(chunks.index)) ?? (await this.diskHit(chunks.index));
    if (!chunkIndex) return undefined;
    const sha = hashAt(chunkIndex, index);
    return (await this.memoryHit(sha)) ?? (await this.diskHit(sha));
  }

  /**
   * Block `index`'s chunk list, checked against the pack's chunk index. When the index is not at hand
   * either, both come in at once (two ranged GETs of the chunk object in parallel).
   */
  private async chunkList(chunks: PackChunks, index: number): Promise<Buffer> {
    const { layout } = chunks;
    const listSpan = layout.listSpan(index);
    const pending = this.inFlight.get(listKey(chunks, index));
    if (pending) return this.join(pending, () => this.chunkList(chunks, index));
    const cachedIndex = await this.memory.get(chunks.index);
    if (cachedIndex) return this.piece(chunks.key, listSpan, hashAt(cachedIndex, index), { kind: 'chunk list', index });
    const size = listSpan.end - listSpan.start;
    const raw = this.budget.acquire(size).then(() => this.getRange(this.store, chunks.key, listSpan.start, listSpan.end));
    const chunkIndex = this.chunkIndex(chunks);
    chunkIndex.catch(() => undefined); // awaited after `raw`: the budget is released only after it was taken
    const load = (async () => this.checkedList(chunks, index, await raw, chunkIndex))();
    return this.track(listKey(chunks, index), size, load);
  }

  /** A pack's chunk index (one hash per block's chunk list), checked against the manifest's hash of it. */
  private chunkIndex(chunks: PackChunks): Promise<Buffer> {
    return this.piece(chunks.key, chunks.layout.indexSpan(), chunks.index, { kind: 'chunk index', index: 0 });
  }

  /**
   * Shares one load among concurrent readers. The load has one deadline, from its start: a reader
   * that joins late waits only for what is left of it, never a full deadline of its own. The budget
   * is held until the underlying fetch settles, deadline or not.
   */
  private track(key: string, size: number, load: Promise<Buffer>, background?: { ticket?: BackgroundTicket }): Promise<Buffer> {
    load
      .finally(() => {
        this.budget.release(size);
        this.overdue.delete(key);
      })
      .catch(() => undefined);
    const shared: Promise<Buffer> = withDeadline(load, this.loadDeadlineMs, `loading ${key}`)
      .catch((err: unknown) => {
        // The kernel retries a failed page at once; until this fetch settles, such retries fail at once too.
        // Not for a background load: its lateness is no reader's answer.
        if (err instanceof DeadlineError && !background) this.overdue.set(key, err);
        throw err;
      })
      .finally(() => {
        if (this.inFlight.get(key) === shared) this.inFlight.delete(key);
      });
    this.inFlight.set(key, shared);
    if (background) this.backgroundLoads.set(shared, background.ticket);
    return shared;
  }

  private async fetch(key: string, span: Span, sha: string, what: Piece): Promise<Buffer> {
    const onDisk = await this.fromDisk(sha);
    if (onDisk) return this.keepFromDisk(sha, onDisk);
    return this.keepFetched(sha, await this.fetchVerified(key, span, sha, what));
  }

  /**
   * Consecutive blocks in one ranged GET (from the first to the last block not on disk), one promise
   * per block. A block whose slice fails verification is fetched again on its own, the way a single
   * block would be.
   */
  private fetchRun(pack: PackRef, run: number[], responseDone: () => void): Promise<Buffer>[] {
    const shas = run.map((index) => pack.blocks[index]!);
    const loaded = (async () => {
      const onDisk = await Promise.all(shas.map((sha) => this.fromDisk(sha)));
      const missing = run.filter((_, i) => !onDisk[i]);
      const fetched = new Map<number, Buffer>();
      if (missing.length > 0) {
        const start = blockSpan(missing[0]!, pack.blockSize, pack.size).start;
        const end = blockSpan(missing.at(-1)!, pack.blockSize, pack.size).end;
        const bytes = await this.getRange(this.store, pack.key, start, end);
        for (const index of missing) {
          const span = blockSpan(index, pack.blockSize, pack.size);
          fetched.set(index, Buffer.from(bytes.subarray(span.start - start, span.end - start))); // own copy: the cache counts each block alone
        }
      }
      return { onDisk, fetched };
    })();
    loaded.finally(responseDone).catch(() => undefined);
    return run.map(async (index, i) => {
      const { onDisk, fetched } = await loaded;
      const sha = shas[i]!;
      if (onDisk[i]) return this.keepFromDisk(sha, onDisk[i]!);
      const data = fetched.get(index)!;
      const actual = sha256(data);
      // A run is background work: its blocks are usable once in memory, and their disk copies hold up no one.
      if (actual === sha) return this.keepFetched(sha, data, false);
      const piece: Piece = { kind: 'block', index };
      this.log.error(`${new IntegrityError(pack.key, piece, sha, actual).message} (from ${this.store.url}); fetching it alone`);
      return this.keepFetched(sha, await this.fetchVerified(pack.key, blockSpan(index, pack.blockSize, pack.size), sha, piece), false);
    });
  }

  private async memoryHit(sha: string): Promise<Buffer | undefined> {
    const data = await this.memory.get(sha);
    if (data) this.stats.memoryHits++;
    return data;
  }

  /** A verified piece from disk, now in memory too. */
  private async diskHit(sha: string): Promise<Buffer | undefined> {
    const data = await this.fromDisk(sha);
    return data && this.keepFromDisk(sha, data);
  }

  private async keepFromDisk(sha: string, data: Buffer): Promise<Buffer> {
    this.stats.diskHits++;
    await this.memory.put(sha, data);
    return data;
  }

  private async keepFetched(sha: string, data: Buffer, waitForDisk = true): Promise<Buffer> {
    await this.memory.put(sha, data);
    const write = this.writeToDisk(sha, data);
    if (waitForDisk) await write;
    return data;
  }

  /** A disk copy, tracked until written (flushed() waits for it); a failure is a warning: the copy is a convenience. */
  private writeToDisk(sha: string, data: Buffer): Promise<void> | undefined {
    if (!this.disk) return undefined;
    const write: Promise<void> = this.disk
      .put(sha, data)
      .catch((err: Error) => this.log.warn(`disk cache write failed: ${err.message}`))
      .finally(() => this.diskWrites.delete(write));
    this.diskWrites.add(write);
    return write;
  }

  /**
   * Keeps a small piece (a chunk, a chunk list) in memory at once and on disk once the mount is quiet: a 4 KiB
   * read must not wait for a file to be written (that takes longer than the read), nor a start-up share the
   * cores with a thousand file creations (write-behind.ts).
   */
  private keepSmall(sha: string, data: Buffer): Promise<Buffer> {
    this.smallWrites?.add(sha, data);
    return this.memory.put(sha, data).then(() => data);
  }

  private async getRange(source: ObjectStore, key: string, start: number, end: number): Promise<Buffer> {
    const bytes = await source.getRange(key, start, end);
    this.stats.storeGets++;
    this.stats.storeBytes += bytes.length;
    this.onFetched?.(key, bytes.length);
    return bytes;
  }

  /**
   * One ranged GET, checked against the piece's hash, under the one verified-read policy
   * (store/verified-read.ts): bytes that fail are never used or cached.
   */
  private fetchVerified(key: string, span: Span, sha: string, what: Piece): Promise<Buffer> {
    return readVerified(
      this.store,
      (source) => this.getRange(source, key, span.start, span.end),
      (fetched) => {
        const actual = sha256(fetched);
        if (actual !== sha) throw new IntegrityError(key, what, sha, actual);
        return fetched;
      },
      IntegrityError,
      (failure, source) => this.log.error(`${failure.message} (from ${source.url})`),
    );
  }

  /** A disk piece that fails its hash (bit rot, a foreign writer) is deleted, never served. */
  private async fromDisk(sha: string): Promise<Buffer | undefined> {
    if (!this.disk) return undefined;
    const data = await this.disk.get(sha).catch(() => undefined);
    if (!data) return undefined;
    if (sha256(data) === sha) return data;
    this.log.warn(`disk cache block ${sha} failed verification; deleted`);
    await this.disk.delete(sha).catch(() => undefined);
    return undefined;
  }
}

/** Sorted chunks grouped by the block they lie in, in order. */
function byBlock(sorted: readonly number[], layout: ChunkLayout): Map<number, number[]> {
  const blocks = new Map<number, number[]>();
  for (const chunk of sorted) {
    const block = Math.floor(chunk / layout.chunksPerBlock);
    let inBlock = blocks.get(block);
    if (!inBlock) blocks.set(block, (inBlock = []));
    inBlock.push(chunk);
  }
  return blocks;
}

/** The bytes one ranged GET spans for a run of items, and the bytes of the items themselves (gaps left out). */
function extent(run: readonly number[], spanOf: (item: number) => Span): { start: number; end: number; held: number } {
  const spans = run.map(spanOf);
  return { start: spans[0]!.start, end: spans.at(-1)!.end, held: spans.reduce((n, span) => n + span.end - span.start, 0) };
}

/** Where a chunk list load is tracked: by place, since its hash is not known until the chunk index is in. */
function listKey(chunks: PackChunks, block: number): string {
  return `${chunks.key}#list${block}`;
}

/** Where a chunk load is tracked: by place, since its hash is not known until its block's list is in. */
function chunkKey(pack: PackRef, chunk: number): string {
  return `${pack.key}#chunk${chunk}`;
}

/** The `i`th sha256 of a run of raw hashes (a chunk list, a chunk index), as hex. */
function hashAt(hashes: Buffer, i: number): string {
  return hashes.toString('hex', i * HASH_BYTES, (i + 1) * HASH_BYTES);
}

function slice(data: Buffer, span: Span): Buffer {
  return data.subarray(span.start, span.end);
}

function joined(pieces: Buffer[]): Buffer {
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

function maxRunBlocks(pack: PackRef, maxBytes: number): number {
  return Math.max(1, Math.floor(maxBytes / pack.blockSize));
}

function runLength(pack: PackRef, run: readonly number[]): number {
  return run.reduce((n, index) => n + blockLength(pack, index), 0);
}

function blockLength(pack: PackRef, index: number): number {
  const { start, end } = blockSpan(index, pack.blockSize, pack.size);
  return end - start;
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}
