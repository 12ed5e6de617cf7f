import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '../hash.js';
import type { BlockCache } from './block-cache.js';

/** Eviction starts above this share of the cap and stops below the lower one. */
const HIGH_WATERMARK = 0.95;
const LOW_WATERMARK = 0.85;
const SHA256 = /^[0-9a-f]{64}$/;
/** After a background eviction that failed or could not make room, the next one waits this long. */
const EVICTION_RETRY_MS = 10_000;
/**
 * At most this many bytes of blocks wait for room in the background: each holds its block's buffer,
 * which the memory cache may already have let go (the process reserve of the memory plan covers it).
 */
const DEFERRED_WRITE_BYTES = 8 * 1024 * 1024;
/**
 * Temp file names: random once per process (mounts in other PID namespaces may share the directory and a pid),
 * then counted, since a random draw per write showed in a cold launch's profile.
 */
const TEMP_PREFIX = `.tmp-${process.pid}-${randomBytes(6).toString('hex')}-`;
let tempFiles = 0;

export interface DiskCacheStats {
  blocks: number;
  bytes: number;
  pinnedBlocks: number;
  pinnedBytes: number;
}

export interface GcResult {
  removedBlocks: number;
  removedBytes: number;
  remainingBytes: number;
}

interface CachedBlock {
  sha256: string;
  path: string;
  size: number;
  lastUsedMs: number;
}

/**
 * Verified blocks on local disk under `<dir>/blocks/<aa>/<sha256>`. Each block is written to a temp
 * file and renamed into place, so a crash never leaves a torn block under its final name, and
 * several mounts can share one directory. The directory is its own index: a block's mtime is its
 * last use (touched on every hit), so LRU order survives unmount, crash and reboot. With a size cap,
 * the least recently used blocks are evicted between the watermarks; pinned ones never are.
 *
 * Eviction never runs on a writer's path: crossing the high watermark starts a pass in the background.
 * A block that would take the cache past its cap meanwhile is handed to a write that waits for that
 * pass in the background (put returns at once; `flushed()` waits for such writes), so the newest blocks
 * are kept as LRU promises; only when more than DEFERRED_WRITE_BYTES wait, or nothing can be evicted
 * (all pinned), is a block not kept (the cap is hard; the block is still served from memory). The same
 * holds until the one scan that learns how full the cache is has finished (`ready()`).
 */
export class DiskBlockCache implements BlockCache {
  private readonly blocksDir: string;
  private readonly pinsDir: string;
  /** Bytes this process believes are cached; learnt by one scan, then kept up to date by its own writes. */
  private used: number | undefined;
  private scanning: Promise<void> | undefined;
  private collecting: Promise<void> | undefined;
  /** No background pass starts before this (epoch ms): one that could not make room is not retried on every write. */
  private nextPassMs = 0;
  /** Blocks this process did not keep because they would have passed the cap; for prefetch's report and status. */
  notKept = 0;
  /** Writes waiting in the background for an eviction pass to make room, and the bytes they hold. */
  private readonly deferred = new Set<Promise<void>>();
  private deferredBytes = 0;
  /** Why the last background eviction failed (a damaged pin file), until one succeeds. */
  lastEvictionError: string | undefined;

  constructor(
    readonly dir: string,
    readonly maxBytes: number = Number.POSITIVE_INFINITY,
    /** For a writer no reader waits on (prefetch): wait for eviction to make room rather than not keep a block. */
    private readonly waitForRoom = false,
  ) {
    this.blocksDir = join(dir, 'blocks');
    this.pinsDir = join(dir, 'pins');
  }

  private pathOf(sha256: string): string {
    return join(this.blocksDir, sha256.slice(0, 2), sha256);
  }

  async get(sha256: string): Promise<Buffer | undefined> {
    try {
      const data = await readFile(this.pathOf(sha256));
      const now = new Date();
      utimes(this.pathOf(sha256), now, now).catch(() => undefined);
      return data;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Writes a block under the cap. Without room, a writer that may wait (prefetch) waits for eviction;
   * any other hands the block to a background write that does (see the class comment) and returns.
   */
  async put(sha256: string, data: Buffer): Promise<void> {
    if (Number.isFinite(this.maxBytes) && !this.reserve(data.length)) {
      if (this.waitForRoom) return (await this.reserveWhenRoom(data.length)) ? this.write(sha256, data) : void this.notKept++;
      if (this.deferredBytes + data.length > DEFERRED_WRITE_BYTES) return void this.notKept++;
      this.deferredBytes += data.length;
      const write = this.reserveWhenRoom(data.length)
        .then((kept) => (kept ? this.write(sha256, data) : void this.notKept++))
        .catch(() => void this.notKept++) // like any block not kept: it is still served, and fetched again later
        .finally(() => {
          this.deferredBytes -= data.length;
          this.deferred.delete(write);
        });
      this.deferred.add(write);
      return;
    }
    await this.write(sha256, data);
  }

  /** Settles once every block handed to a background write is written (or known not to fit). */
  async flushed(): Promise<void> {
    while (this.deferred.size > 0) await Promise.all(this.deferred);
  }

  /** Waits for the scan or eviction passes until `bytes` fit; false when nothing more can be evicted. */
  private async reserveWhenRoom(bytes: number): Promise<boolean> {
    while (await this.roomMade()) if (this.reserve(bytes)) return true;
    return false;
  }

  /** Writes a block already counted against the cap. */
  private async write(sha256: string, data: Buffer): Promise<void> {
    const target = this.pathOf(sha256);
    const dir = join(this.blocksDir, sha256.slice(0, 2));
    const tmp = join(dir, `${TEMP_PREFIX}${++tempFiles}`);
    try {
      // The shard directory nearly always exists: make it only when the write says it is missing.
      await writeFile(tmp, data).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        await mkdir(dir, { recursive: true });
        await writeFile(tmp, data);
      });
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      if (this.used !== undefined) this.used -= data.length;
      throw err;
    }
  }

  async delete(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }

  /** Learns how full the cache is (one scan of its directory); capped writes are kept only once it has. */
  ready(): Promise<void> {
    this.scanning ??= this.scan().then(
      (blocks) => {
        this.used ??= blocks.reduce((n, b) => n + b.size, 0); // a gc meanwhile has counted them already
      },
      (err: unknown) => {
        this.scanning = undefined; // try again at the next write
        throw err;
      },
    );
    return this.scanning;
  }

  /** Settles when the background eviction pass under way, if any, is over. */
  async evicted(): Promise<void> {
    await this.collecting;
  }

  /**
   * Counts a block against the cap before it is written, without waiting for anything (so writes in
   * parallel cannot overbook): false when it would pass the cap. Above the high watermark, a background
   * pass evicts least recently used blocks down to the low one.
   */
  private reserve(bytes: number): boolean {
    if (this.used === undefined) {
      this.ready().catch(() => undefined);
      return false;
    }
    if (this.used + bytes > this.maxBytes * HIGH_WATERMARK) this.evictInBackground();
    if (this.used + bytes > this.maxBytes) return false;
    this.used += bytes;
    return true;
  }

  /** Waits for the scan, or for an eviction pass; true if that freed room (else all that is left is pinned). */
  private async roomMade(): Promise<boolean> {
    if (this.used === undefined) {
      await this.ready();
      return true;
    }
    const before = this.used;
    this.nextPassMs = 0;
    this.evictInBackground();
    await this.collecting;
    return this.used < before;
  }

  private evictInBackground(): void {
    if (this.collecting || Date.now() < this.nextPassMs) return;
    this.collecting = this.gc()
      .then(
        (result) => {
          this.lastEvictionError = undefined;
          // Everything left is pinned or in use: scanning again at once would find the same.
          if (result.remainingBytes > this.maxBytes * HIGH_WATERMARK) this.nextPassMs = Date.now() + EVICTION_RETRY_MS;
        },
        (err: unknown) => {
          this.lastEvictionError = (err as Error).message;
          this.nextPassMs = Date.now() + EVICTION_RETRY_MS;
        },
      )
      .finally(() => (this.collecting = undefined));
  }

  /** Evicts least recently used, unpinned blocks until the cache holds at most `targetBytes`. */
  async gc(targetBytes: number = Math.floor(this.maxBytes * LOW_WATERMARK)): Promise<GcResult> {
    const [blocks, pinned] = await Promise.all([this.scan(), this.pinnedBlocks()]);
    // Blocks this process is still writing are not on disk yet but will be: count them in.
    let remaining = Math.max(blocks.reduce((n, b) => n + b.size, 0), this.used ?? 0);
    const result: GcResult = { removedBlocks: 0, removedBytes: 0, remainingBytes: remaining };
    for (const block of blocks.sort((a, b) => a.lastUsedMs - b.lastUsedMs)) {
      if (remaining <= targetBytes) break;
      if (pinned.has(block.sha256)) continue;
      await rm(block.path, { force: true });
      remaining -= block.size;
      result.removedBlocks++;
      result.removedBytes += block.size;
    }
    result.remainingBytes = remaining;
    // The scan misses blocks still being written; this process's own count misses other mounts'
    // blocks in a shared directory. Each is a lower bound, so the larger one keeps the cap hard.
    this.used = Math.max(remaining, (this.used ?? 0) - result.removedBytes);
    return result;
  }

  async stats(): Promise<DiskCacheStats> {
    const [blocks, pinned] = await Promise.all([this.scan(), this.pinnedBlocks()]);
    const stats: DiskCacheStats = { blocks: 0, bytes: 0, pinnedBlocks: 0, pinnedBytes: 0 };
    for (const block of blocks) {
      stats.blocks++;
      stats.bytes += block.size;
      if (pinned.has(block.sha256)) {
        stats.pinnedBlocks++;
        stats.pinnedBytes += block.size;
      }
    }
    return stats;
  }

  /** Re-hashes every block; a block whose bytes do not match its name is deleted and reported. */
  async verify(): Promise<{ checked: number; removed: string[] }> {
    const removed: string[] = [];
    const blocks = await this.scan();
    for (const block of blocks) {
      const data = await readFile(block.path).catch(() => undefined);
      if (data && sha256Hex(data) !== block.sha256) {
        await rm(block.path, { force: true });
        removed.push(block.sha256);
      }
    }
    return { checked: blocks.length, removed };
  }

  async clear(): Promise<void> {
    await rm(this.blocksDir, { recursive: true, force: true });
    await rm(this.pinsDir, { recursive: true, force: true });
    this.used = 0;
  }

  /** Exempts blocks from eviction under a name (a package, a context) until unpinned. */
  async pin(name: string, shas: readonly string[]): Promise<void> {
    await mkdir(this.pinsDir, { recursive: true });
    const file = join(this.pinsDir, `${encodeURIComponent(name)}.json`);
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify([...new Set(shas)]));
    await rename(tmp, file);
  }

  /** Removes one pin, or all of them without a name; returns how many were removed. */
  async unpin(name?: string): Promise<number> {
    const files = name === undefined ? await this.pinFiles() : [`${encodeURIComponent(name)}.json`];
    let removed = 0;
    for (const file of files) {
      const path = join(this.pinsDir, file);
      if (await stat(path).then(() => true, () => false)) {
        await rm(path, { force: true });
        removed++;
      }
    }
    return removed;
  }

  async pins(): Promise<string[]> {
    return (await this.pinFiles()).map((file) => decodeURIComponent(file.replace(/\.json$/, '')));
  }

  /** The pin files; no pins directory is no pins, any other failure to list it is an error (fail closed). */
  private async pinFiles(): Promise<string[]> {
    const files = await readdir(this.pinsDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    return files.filter((f) => f.endsWith('.json'));
  }

  /**
   * Every pinned block. Fails closed: a pin file that cannot be read or parsed throws (naming it),
   * so eviction stops rather than dropping blocks someone pinned.
   */
  private async pinnedBlocks(): Promise<Set<string>> {
    const pinned = new Set<string>();
    for (const file of await this.pinFiles()) {
      const path = join(this.pinsDir, file);
      let list: unknown;
      try {
        list = JSON.parse(await readFile(path, 'utf8'));
      } catch (err) {
        list = (err as NodeJS.ErrnoException).code === 'ENOENT' ? [] : undefined; // unpinned meanwhile
      }
      if (!Array.isArray(list) || !list.every((sha) => typeof sha === 'string' && SHA256.test(sha))) {
        const name = decodeURIComponent(file.replace(/\.json$/, ''));
        throw new Error(`pin file ${path} is unreadable or damaged, so nothing is evicted from ${this.dir}: pin ${name} again, or remove it with rezfs cache unpin ${name}`);
      }
      for (const sha of list as string[]) pinned.add(sha);
    }
    return pinned;
  }

  private async scan(): Promise<CachedBlock[]> {
    const blocks: CachedBlock[] = [];
    for (const sub of await readdir(this.blocksDir).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.blocksDir, sub)).catch(() => [] as string[])) {
        if (!SHA256.test(name)) continue;
        const path = join(this.blocksDir, sub, name);
        const info = await stat(path).catch(() => undefined);
        if (info) blocks.push({ sha256: name, path, size: info.size, lastUsedMs: info.mtimeMs });
      }
    }
    return blocks;
  }
}
