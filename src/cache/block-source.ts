import { DeadlineError, withDeadline } from '../deadline.js';
import { sha256Hex as sha256 } from '../hash.js';
import type { Log } from '../log.js';
import type { ObjectStore } from '../store/index.js';
import type { BlockCache } from './block-cache.js';
import { ByteBudget } from './byte-budget.js';
import { blockSpan, blocksCovering, readaheadRuns, sliceOfBlock, type Span } from './block-math.js';

/** What a reader needs to know about one pack: from its manifest. */
export interface PackRef {
  key: string;
  size: number;
  blockSize: number;
  blocks: readonly string[];
}

/** Blocks being fetched at once, in bytes, unless the mount sets its own budget. */
export const DEFAULT_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_LOAD_DEADLINE_MS = 30_000;
/** The most bytes readahead asks for in one ranged GET: large enough that per-request cost fades. */
const MAX_RUN_BYTES = 8 * 1024 * 1024;

export class IntegrityError extends Error {
  constructor(readonly objectKey: string, readonly blockIndex: number, expected: string, actual: string) {
    super(`block ${blockIndex} of ${objectKey} failed verification: expected sha256 ${expected}, got ${actual}`);
    this.name = 'IntegrityError';
  }
}

export interface BlockSourceStats {
  storeGets: number;
  storeBytes: number;
  memoryHits: number;
  diskHits: number;
}

/**
 * Serves pack bytes block by block: memory, then disk, then a ranged GET (one per block on demand,
 * one per run of blocks for readahead), shared by every concurrent reader of that block. Every
 * block is checked against its sha256 before it is used or cached, whichever way it came in. Blocks
 * being fetched count against a byte budget: demand reads wait for room, readahead is skipped when
 * there is none.
 */
export class BlockSource {
  readonly stats: BlockSourceStats = { storeGets: 0, storeBytes: 0, memoryHits: 0, diskHits: 0 };
  private readonly inFlight = new Map<string, Promise<Buffer>>();
  /** Blocks whose load missed its deadline and is still running: asking again now would only wait again. */
  private readonly overdue = new Map<string, DeadlineError>();

  constructor(
    private readonly store: ObjectStore,
    private readonly memory: BlockCache,
    private readonly disk: BlockCache | undefined,
    private readonly log: Log,
    private readonly budget: ByteBudget = new ByteBudget(DEFAULT_IN_FLIGHT_BYTES),
    /** A block load, however many readers wait on it, gives up after this long; later readers start afresh. */
    private readonly loadDeadlineMs: number = DEFAULT_LOAD_DEADLINE_MS,
  ) {}

  /** Pack bytes [span.start, span.end). */
  async read(pack: PackRef, span: Span): Promise<Buffer> {
    const covering = blocksCovering(span, pack.blockSize);
    if (!covering) return Buffer.alloc(0);
    const indexes = range(covering.first, covering.last);
    const blocks = await Promise.all(indexes.map((index) => this.block(pack, index)));
    const pieces = blocks.map((block, i) => {
      const slice = sliceOfBlock(indexes[i]!, pack.blockSize, span);
      return block.subarray(slice.start, slice.end);
    });
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }

  /**
   * Starts loading blocks in the background (readahead) while the budget has room; failures surface
   * when they are read. Consecutive missing blocks come in one ranged GET.
   */
  prefetch(pack: PackRef, first: number, count: number): void {
    const last = Math.min(first + count, pack.blocks.length) - 1;
    void (async () => {
      const missing: number[] = [];
      for (let index = first; index <= last; index++) {
        const sha = pack.blocks[index]!;
        if (!this.inFlight.has(sha) && !this.overdue.has(sha) && !(await this.memory.get(sha)) && !this.inFlight.has(sha)) missing.push(index);
      }
      const maxRun = Math.max(1, Math.floor(MAX_RUN_BYTES / pack.blockSize));
      for (const run of readaheadRuns(missing, first, count, maxRun)) {
        const sizes = run.map((index) => blockLength(pack, index));
        const total = sizes.reduce((a, b) => a + b, 0);
        // The blocks, plus the run's response until it is cut into them: both are in memory at once.
        if (!this.budget.tryAcquire(2 * total)) return;
        const loads = this.fetchRun(pack, run, () => this.budget.release(total));
        loads.forEach((load, i) => this.track(pack.blocks[run[i]!]!, sizes[i]!, load).catch(() => undefined));
      }
    })();
  }

  private async block(pack: PackRef, index: number): Promise<Buffer> {
    const sha = pack.blocks[index];
    if (sha === undefined) throw new RangeError(`block ${index} is past the end of ${pack.key}`);
    const overdue = this.overdue.get(sha);
    if (overdue) throw overdue;
    const pending = this.inFlight.get(sha);
    if (pending) return pending;
    const inMemory = await this.memory.get(sha);
    if (inMemory) {
      this.stats.memoryHits++;
      return inMemory;
    }
    const raced = this.inFlight.get(sha);
    if (raced) return raced;
    const size = blockLength(pack, index);
    return this.track(sha, size, this.budget.acquire(size).then(() => this.fetch(pack, index, sha)));
  }

  /**
   * Shares one load among concurrent readers. The load has one deadline, from its start: a reader
   * that joins late waits only for what is left of it, never a full deadline of its own. The budget
   * is held until the underlying fetch settles, deadline or not.
   */
  private track(sha: string, size: number, load: Promise<Buffer>): Promise<Buffer> {
    load
      .finally(() => {
        this.budget.release(size);
        this.overdue.delete(sha);
      })
      .catch(() => undefined);
    const shared: Promise<Buffer> = withDeadline(load, this.loadDeadlineMs, `loading block ${sha}`)
      .catch((err: unknown) => {
        // The kernel retries a failed page at once; until this fetch settles, such retries fail at once too.
        if (err instanceof DeadlineError) this.overdue.set(sha, err);
        throw err;
      })
      .finally(() => {
        if (this.inFlight.get(sha) === shared) this.inFlight.delete(sha);
      });
    this.inFlight.set(sha, shared);
    return shared;
  }

  private async fetch(pack: PackRef, index: number, sha: string): Promise<Buffer> {
    const onDisk = await this.fromDisk(sha);
    if (onDisk) return this.keepFromDisk(sha, onDisk);
    return this.keepFetched(sha, await this.fetchVerified(pack, index, sha));
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
        const bytes = await this.store.getRange(pack.key, start, end);
        this.stats.storeGets++;
        this.stats.storeBytes += bytes.length;
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
      if (actual === sha) return this.keepFetched(sha, data);
      this.log.error(`${new IntegrityError(pack.key, index, sha, actual).message} (from ${this.store.url}); fetching it alone`);
      return this.keepFetched(sha, await this.fetchVerified(pack, index, sha));
    });
  }

  private async keepFromDisk(sha: string, data: Buffer): Promise<Buffer> {
    this.stats.diskHits++;
    await this.memory.put(sha, data);
    return data;
  }

  private async keepFetched(sha: string, data: Buffer): Promise<Buffer> {
    await this.memory.put(sha, data);
    if (this.disk) await this.disk.put(sha, data).catch((err: Error) => this.log.warn(`disk cache write failed: ${err.message}`));
    return data;
  }

  /**
   * One ranged GET, checked against the block's hash. Bytes that fail are never used or cached: the
   * read is retried from each replica in turn (a mirror set), or once more from a single store, whose
   * bytes may have been damaged in transit.
   */
  private async fetchVerified(pack: PackRef, index: number, sha: string): Promise<Buffer> {
    const { start, end } = blockSpan(index, pack.blockSize, pack.size);
    const sources = [this.store, ...(this.store.replicas?.() ?? [this.store])];
    let failure: IntegrityError | undefined;
    for (const source of sources) {
      const fetched = await source.getRange(pack.key, start, end);
      this.stats.storeGets++;
      this.stats.storeBytes += fetched.length;
      const actual = sha256(fetched);
      if (actual === sha) return fetched;
      failure = new IntegrityError(pack.key, index, sha, actual);
      this.log.error(`${failure.message} (from ${source.url})`);
    }
    throw failure!;
  }

  /** A disk block that fails its hash (bit rot, a foreign writer) is deleted, never served. */
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

function blockLength(pack: PackRef, index: number): number {
  const { start, end } = blockSpan(index, pack.blockSize, pack.size);
  return end - start;
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}
