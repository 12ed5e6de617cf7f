import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { sha256Hex } from '../hash.js';
import { isRunning } from '../pid.js';
import { checkKey, ObjectNotFoundError, StoreError, StoreTimeoutError, type ListedObject, type ObjectInfo, type ObjectStore } from './types.js';

const LOCK_STALE_MS = 30_000;
/** How long a read of a file store may take unless the opener says otherwise. */
export const DEFAULT_FILE_DEADLINE_MS = 30_000;
/**
 * Reads still running past their deadline (a hung NFS server: the syscall never returns) before new
 * ones fail at once. Each holds a thread of libuv's pool (4 by default, shared with the disk cache)
 * and its buffer (at most a readahead run, 8 MiB): bounded, they leave the rest of the process going.
 */
const MAX_OVERDUE = 2;

export interface FileStoreOptions {
  /** A read (get, getRange, head) not answered by then fails with StoreTimeoutError, whatever the syscall does. */
  deadlineMs: number;
}

/**
 * A store in a local (or NFS) directory: the embedded default, no server needed. Reads have a
 * deadline like a network store's requests: a caller is answered by then, and what it had reserved
 * for the read (the block source's byte budget) is released then too. The read itself may still be
 * running; at most MAX_OVERDUE such reads are allowed before further reads fail at once.
 */
export class FileStore implements ObjectStore {
  readonly url: string;
  /** putIfMatch holds a lock file around its check and write. */
  readonly conditionalWrites = 'honoured';
  private overdue = 0;

  constructor(
    private readonly root: string,
    private readonly options: FileStoreOptions = { deadlineMs: DEFAULT_FILE_DEADLINE_MS },
  ) {
    this.url = `file://${root}`;
  }

  private pathOf(key: string): string {
    return join(this.root, ...checkKey(key).split('/'));
  }

  get(key: string): Promise<Buffer> {
    return this.bounded(`GET ${key}`, async () => {
      try {
        return await readFile(this.pathOf(key));
      } catch (err) {
        throw this.translate(err, key);
      }
    });
  }

  getRange(key: string, start: number, end: number): Promise<Buffer> {
    return this.bounded(`GET ${key} [${start}, ${end})`, () => this.readRange(key, start, end));
  }

  private async readRange(key: string, start: number, end: number): Promise<Buffer> {
    let handle;
    try {
      handle = await open(this.pathOf(key), 'r');
    } catch (err) {
      throw this.translate(err, key);
    }
    try {
      const buffer = Buffer.alloc(Math.max(0, end - start));
      let filled = 0;
      while (filled < buffer.length) {
        const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, start + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      return buffer.subarray(0, filled);
    } finally {
      await handle.close();
    }
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.bounded(`HEAD ${key}`, () => this.info(key));
  }

  private async info(key: string): Promise<ObjectInfo | undefined> {
    try {
      const info = await stat(this.pathOf(key));
      // Content-derived etag: objects here are small (index/HEAD) or content-addressed.
      const etag = info.size <= 64 * 1024 ? sha256Hex(await readFile(this.pathOf(key))) : `${info.size}-${info.mtimeMs}`;
      return { size: info.size, etag, modifiedMs: info.mtimeMs };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.translate(err, key);
    }
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.writeAtomically(key, async (tmp) => writeFile(tmp, body));
  }

  /** Each chunk is written before the next is asked for: the source may reuse its buffer. */
  async putStream(key: string, source: () => AsyncIterable<Buffer>): Promise<void> {
    await this.writeAtomically(key, async (tmp) => {
      const handle = await open(tmp, 'w');
      try {
        for await (const chunk of source()) {
          for (let written = 0; written < chunk.length; ) written += (await handle.write(chunk, written, chunk.length - written)).bytesWritten;
        }
      } finally {
        await handle.close();
      }
    });
  }

  async putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
    return this.withLock(key, async () => {
      const current = await this.head(key);
      if ((current?.etag ?? null) !== expected) return false;
      await this.put(key, body);
      return true;
    });
  }

  /** Temp files of writes that never finished are listed too (under their own `.tmp-` names); locks are not. */
  async *list(prefix: string): AsyncIterable<ListedObject> {
    // A prefix is a string prefix, not a directory: walk from the last whole directory it names.
    const dir = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    for await (const object of this.walk(dir === '' ? this.root : this.pathOf(dir))) {
      if (object.key.startsWith(prefix)) yield object;
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await rm(this.pathOf(key), { force: true });
    } catch (err) {
      throw new StoreError(`deleting ${key} from ${this.url}: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {}

  private async *walk(dir: string): AsyncIterable<ListedObject> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    for (const entry of entries) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) yield* this.walk(full);
      else if (entry.isFile() && !isLockFile(entry.name)) {
        const info = await stat(full).catch(() => undefined); // gone meanwhile: not listed
        if (info) yield { key: relative(this.root, full).split(sep).join('/'), size: info.size, modifiedMs: info.mtimeMs };
      }
    }
  }

  /** Temp file in the target directory, then rename: a crash leaves either nothing or the whole object. */
  private async writeAtomically(key: string, write: (tmp: string) => Promise<unknown>): Promise<void> {
    const target = this.pathOf(key);
    await mkdir(dirname(target), { recursive: true });
    const tmp = join(dirname(target), `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await write(tmp);
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * An exclusive lock file beside the object. It names its holder (host and pid): a holder on this
   * host that no longer runs (a killed publisher) is stale at once; one elsewhere after LOCK_STALE_MS.
   */
  private async withLock<T>(key: string, body: () => Promise<T>): Promise<T> {
    const lock = `${this.pathOf(key)}.lock`;
    await mkdir(dirname(lock), { recursive: true });
    const deadline = Date.now() + 2 * LOCK_STALE_MS;
    for (;;) {
      try {
        await writeFile(lock, `${hostname()} ${process.pid}`, { flag: 'wx' });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (await isStaleLock(lock)) {
          // Rename first, so that of several waiters only one takes a stale lock away.
          const aside = `${lock}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
          await rename(lock, aside).then(() => rm(aside, { force: true }), () => undefined);
        } else if (Date.now() > deadline) throw new StoreError(`timed out waiting for lock ${lock}`);
        else await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 50));
      }
    }
    try {
      return await body();
    } finally {
      await rm(lock, { force: true });
    }
  }

  /** Runs one read under the store's deadline (see MAX_OVERDUE). */
  private bounded<T>(what: string, read: () => Promise<T>): Promise<T> {
    const { deadlineMs } = this.options;
    if (this.overdue >= MAX_OVERDUE) {
      return Promise.reject(
        new StoreTimeoutError(`${what} at ${this.url}: ${this.overdue} earlier reads are still unanswered after ${deadlineMs} ms (a hung NFS server?); failing at once until they return`),
      );
    }
    return new Promise<T>((resolve, reject) => {
      let late = false;
      const timer = setTimeout(() => {
        late = true;
        this.overdue++;
        reject(new StoreTimeoutError(`${what} at ${this.url}: no answer within ${deadlineMs} ms`));
      }, deadlineMs);
      const settled = () => {
        clearTimeout(timer);
        if (late) this.overdue--;
        return !late;
      };
      read().then(
        (value) => settled() && resolve(value),
        (err: unknown) => settled() && reject(err),
      );
    });
  }

  private translate(err: unknown, key: string): Error {
    if (isNotFound(err)) return new ObjectNotFoundError(this.url, key);
    return new StoreError(`reading ${key} from ${this.url}: ${(err as Error).message}`, { cause: err });
  }
}

async function isStaleLock(lock: string): Promise<boolean> {
  const [holder, info] = await Promise.all([readFile(lock, 'utf8').catch(() => ''), stat(lock).catch(() => undefined)]);
  if (!info) return false; // gone already: just try again
  const [host, pid] = holder.split(' ');
  if (host === hostname() && pid !== undefined && !isRunning(Number(pid))) return true;
  return Date.now() - info.mtimeMs > LOCK_STALE_MS;
}

/** `<key>.lock` and the `.lock.stale-*` name a lock is moved to before removal: the lock's business, not objects. */
function isLockFile(name: string): boolean {
  return /\.lock(\.stale-[^/]*)?$/.test(name);
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
