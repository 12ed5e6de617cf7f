/**
 * One native mount's request handling, without the kernel: the addon (native/rezfs_fuse.c) hands over
 * node-based requests and this translates them into RezFs's path-based calls, and the replies back.
 * All of the binding's policy lives here (node ids and lookup counts, forget, answer-once with a
 * deadline, per-entry cache times, listings kept between chunks, invalidations one at a time), so
 * test/fs/native-server.test.ts drives it through a recording addon, as go-fuse tests its
 * filesystems with the notify callbacks stubbed. native-binding.ts loads the real addon.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LRUCache } from 'lru-cache';
import type { Catalog } from '../catalog/index.js';
import type { MountOptions } from './binding.js';
import { cacheSeconds, type CacheTimeouts } from './cache-policy.js';
import type { TreeChanges } from './changes.js';
import { Errno, errnoOf } from './errors.js';
import { raiseKernelReadahead } from './kernel-readahead.js';
import { childPath } from './paths.js';
import type { Attr, RezFs } from './rezfs.js';

const exec = promisify(execFile);

/**
 * Request codes, as native/rezfs_fuse.c numbers them. The addon exports its own table (`ops`) and
 * loadNativeAddon refuses an addon whose numbers differ, so the two cannot drift apart unnoticed.
 */
export const Op = {
  Lookup: 1,
  Forget: 2,
  Getattr: 3,
  Readlink: 4,
  Read: 5,
  Readdir: 6,
  Readdirplus: 7,
  Statfs: 8,
  Getxattr: 9,
  Listxattr: 10,
  Init: 11,
  Exited: 12,
} as const;
export type Op = (typeof Op)[keyof typeof Op];

declare const sessionBrand: unique symbol;
export type Session = { readonly [sessionBrand]: true };
/** `extra` is the name for lookup/getxattr and [ino, nlookup, ...] pairs for forget. */
export type Handler = (op: Op, req: number, ino: number, a: number, b: number, extra: string | number[] | undefined) => void;

/** The addon's surface (native/rezfs_fuse.c); attributes travel as ATTR_FIELDS doubles each. */
export interface Addon {
  /** The addon's operation codes, by the names Op uses (lower case). */
  readonly ops: Readonly<Record<string, number>>;
  mount(mountpoint: string, options: string, handler: Handler): Session;
  unmount(session: Session): number;
  replyErr(session: Session, req: number, errno: number): void;
  replyEntry(session: Session, req: number, attr: Float64Array | null, attrTimeout: number, entryTimeout: number): void;
  replyAttr(session: Session, req: number, attr: Float64Array, timeout: number): void;
  replyBuf(session: Session, req: number, data: Buffer): void;
  replyReadlink(session: Session, req: number, target: string): void;
  replyXattrSize(session: Session, req: number, size: number): void;
  replyStatfs(session: Session, req: number, fields: number[]): void;
  replyDir(
    session: Session, req: number, plus: boolean, size: number, offset: number,
    names: string[], attrs: Float64Array, attrTimeout: number, entryTimeout: number,
  ): number;
  notifyInval(session: Session, ino: number, name: string | undefined): Promise<number>;
}

/** Attributes as the addon reads them: st_ino, mode, nlink, uid, gid, size, blocks, mtime (ms), then the FUSE node id. */
export const ATTR_FIELDS = 9;
const NODE_FIELD = 8;
/** FUSE's node id of the root; the kernel never forgets it. */
const ROOT_NODE = 1;
/** The least a readdirplus entry takes in the kernel's buffer (fuse_entry_out and fuse_dirent, before the name). */
const MIN_DIRENTPLUS_BYTES = 152;
/** How long an unmount waits for the kernel to let go before the caller moves on. */
const EXIT_WAIT_MS = 5_000;
const INIT_WAIT_MS = 10_000;
/** The addon's max_read, in KiB: how far the kernel should read ahead in one request. */
const MAX_READ_KIB = 1024;

interface Listing {
  catalog: Catalog;
  names: string[];
  attrs: Float64Array;
}

/**
 * One mount's request handling: translates node-based requests into RezFs's path-based calls.
 *
 * Node ids are handed out here, one per path the kernel was told about, and freed when the kernel
 * forgets the last lookup of it: what this process holds per path is bounded by what the kernel
 * holds, however many paths a long run resolves. st_ino (what stat shows and rez compares) is the
 * path's stable hash and does not depend on the node id.
 */
export class NativeServer {
  private session: Session | undefined;
  /** The kernel's nodes: node id to path, with the lookups the kernel holds (forget lowers them). */
  private readonly nodes = new Map<number, { path: string; lookups: number }>([[ROOT_NODE, { path: '/', lookups: 1 }]]);
  private readonly nodeByPath = new Map<string, number>([['/', ROOT_NODE]]);
  private nextNode = ROOT_NODE + 1;
  /** Whole listings by directory, kept between the chunks the kernel reads a big directory in. */
  private readonly listings = new LRUCache<string, Listing>({ max: 64 });
  private readonly timeouts: CacheTimeouts;
  private lookups = 0;
  private readonly initialised = deferred();
  private readonly exited = deferred();

  constructor(
    private readonly addon: Addon,
    private readonly fs: RezFs,
    private readonly options: MountOptions,
  ) {
    this.timeouts = { attrTimeoutSec: options.attrTimeoutSec, negativeTimeoutSec: options.negativeTimeoutSec };
  }

  async start(mountpoint: string): Promise<void> {
    const mountOptions = [
      'ro',
      'default_permissions',
      'subtype=rezfs',
      // libfuse splits options at commas; keep a URL's commas from ending the option.
      `fsname=${this.options.source.replace(/,/g, '%2C')}`,
      ...(this.options.allowOther ? ['allow_other'] : []),
    ];
    this.session = this.addon.mount(mountpoint, mountOptions.join(','), this.handle);
    const timer = setTimeout(() => this.initialised.reject(new Error(`the kernel did not start ${mountpoint} within ${INIT_WAIT_MS} ms`)), INIT_WAIT_MS);
    try {
      await this.initialised.promise;
    } finally {
      clearTimeout(timer);
    }
    await raiseKernelReadahead(mountpoint, MAX_READ_KIB);
  }

  private stopping: Promise<void> | undefined;

  stop(mountpoint: string): Promise<void> {
    this.stopping ??= (async () => {
      const errno = this.addon.unmount(this.session!);
      if (errno === Errno.EPERM) await exec('fusermount3', ['-u', '-z', mountpoint]);
      // A lazy unmount ends the session once the last open file closes; don't wait for that forever.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.exited.promise, new Promise<void>((done) => (timer = setTimeout(done, EXIT_WAIT_MS)))]);
      clearTimeout(timer);
    })();
    return this.stopping;
  }

  /**
   * Drops what the kernel cached about `changes`, so a new generation shows at once. One at a time:
   * each may wait for a lookup in flight, and must not hold several of libuv's pool threads meanwhile.
   */
  async invalidate(changes: TreeChanges): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.listings.clear();
    const targets = [
      ...changes.entries.map(({ parent, name }) => ({ path: parent, name })),
      ...[...changes.dirs, ...changes.files].map((path) => ({ path, name: undefined })),
    ];
    for (const { path, name } of targets) {
      const node = this.nodeByPath.get(path);
      if (node !== undefined) await this.addon.notifyInval(session, node, name); // else the kernel holds nothing of it
    }
  }

  private readonly handle: Handler = (op, req, ino, a, b, extra) => {
    switch (op) {
      case Op.Init:
        this.initialised.resolve();
        return;
      case Op.Exited:
        this.exited.resolve();
        return;
      case Op.Forget:
        this.forget(extra as number[]);
        return;
      case Op.Statfs: {
        const s = this.fs.statfs();
        this.addon.replyStatfs(this.session!, req, [s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.namemax]);
        return;
      }
    }
    const path = this.nodes.get(ino)?.path;
    if (path === undefined) {
      this.addon.replyErr(this.session!, req, Errno.ENOENT); // a node the kernel forgot: nothing to answer for
      return;
    }
    switch (op) {
      case Op.Lookup:
        return this.lookup(req, childPath(path, extra as string));
      case Op.Getattr:
        return this.answer(req, this.fs.getattr(path), (attr) => this.addon.replyAttr(this.session!, req, encode([attr]), this.seconds(path, true)));
      case Op.Readlink:
        return this.answer(req, this.fs.readlink(path), (target) => this.addon.replyReadlink(this.session!, req, target));
      case Op.Read:
        return this.answer(req, this.fs.readAt(path, a, b), (data) => this.addon.replyBuf(this.session!, req, data));
      case Op.Readdir:
      case Op.Readdirplus:
        return this.answer(req, this.listing(path), (listing) => this.replyDir(req, path, listing, op === Op.Readdirplus, b, a));
      case Op.Getxattr:
        return this.answer(req, this.fs.getxattr(path), () => this.addon.replyErr(this.session!, req, Errno.ENODATA));
      case Op.Listxattr:
        return this.answer(req, this.fs.listxattr(path), (names) => this.replyXattrList(req, names, a));
      default:
        this.addon.replyErr(this.session!, req, Errno.ENOSYS);
    }
  };

  private lookup(req: number, path: string): void {
    this.answer(
      req,
      this.fs.getattr(path).then(
        (attr) => attr,
        (err: unknown) => {
          if (errnoOf(err) === Errno.ENOENT) return undefined;
          throw err;
        },
      ),
      (attr) => {
        const seconds = this.seconds(path, attr !== undefined);
        if (!attr) {
          this.addon.replyEntry(this.session!, req, null, seconds, seconds);
          return;
        }
        const node = this.nodeOf(path);
        try {
          const encoded = encode([attr]);
          encoded[NODE_FIELD] = node;
          this.addon.replyEntry(this.session!, req, encoded, seconds, seconds);
          this.counted(node);
        } finally {
          this.dropIfUnheld(node);
        }
      },
    );
  }

  private replyDir(req: number, path: string, listing: Listing, plus: boolean, size: number, offset: number): void {
    const seconds = this.seconds(childPath(path, listing.names[2] ?? '_'), true);
    if (!plus) {
      this.addon.replyDir(this.session!, req, plus, size, offset, listing.names, listing.attrs, seconds, seconds);
      return;
    }
    // Each entry but "." and ".." sent with its attributes counts as a lookup the kernel will forget: give the
    // entries that may fit in this reply their node ids, count those sent, free those that did not fit.
    const first = Math.max(offset, 2);
    const end = Math.min(listing.names.length, offset + Math.ceil(size / MIN_DIRENTPLUS_BYTES));
    const nodes: number[] = [];
    for (let i = first; i < end; i++) {
      const node = this.nodeOf(childPath(path, listing.names[i]!));
      listing.attrs[i * ATTR_FIELDS + NODE_FIELD] = node;
      nodes.push(node);
    }
    try {
      const added = this.addon.replyDir(this.session!, req, plus, size, offset, listing.names, listing.attrs, seconds, seconds);
      for (let i = first; i < offset + added; i++) this.counted(nodes[i - first]!);
    } finally {
      for (const node of nodes) this.dropIfUnheld(node);
    }
  }

  private replyXattrList(req: number, names: string[], size: number): void {
    const list = Buffer.from(names.map((name) => `${name}\0`).join(''));
    if (size === 0) this.addon.replyXattrSize(this.session!, req, list.length);
    else if (size < list.length) this.addon.replyErr(this.session!, req, Errno.ERANGE);
    else this.addon.replyBuf(this.session!, req, list);
  }

  private async listing(path: string): Promise<Listing> {
    const catalog = this.fs.current;
    const cached = this.listings.get(path);
    if (cached?.catalog === catalog) return cached;
    const entries = await this.fs.readdir(path);
    const listing = { catalog, names: entries.map((e) => e.name), attrs: encode(entries.map((e) => e.attr)) };
    this.listings.set(path, listing);
    return listing;
  }

  /** How long the kernel may keep what it was told about `path` (a failed load is an error: it keeps nothing). */
  private seconds(path: string, exists: boolean): number {
    return cacheSeconds(path, exists, this.timeouts);
  }

  get kernelInodes(): { held: number; lookups: number } {
    return { held: this.nodes.size, lookups: this.lookups };
  }

  /** The node id of `path`: the one the kernel holds, else a new one (dropped again unless a lookup is counted). */
  private nodeOf(path: string): number {
    let node = this.nodeByPath.get(path);
    if (node === undefined) {
      node = this.nextNode++;
      this.nodes.set(node, { path, lookups: 0 });
      this.nodeByPath.set(path, node);
    }
    return node;
  }

  /** The kernel was sent `node` in a reply that counts as a lookup. */
  private counted(node: number): void {
    this.lookups++;
    this.nodes.get(node)!.lookups++;
  }

  private dropIfUnheld(node: number): void {
    const entry = this.nodes.get(node);
    if (!entry || entry.lookups > 0) return;
    this.nodes.delete(node);
    this.nodeByPath.delete(entry.path);
  }

  private forget(pairs: number[]): void {
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const node = pairs[i]!;
      const entry = this.nodes.get(node);
      if (!entry || node === ROOT_NODE) continue;
      entry.lookups -= pairs[i + 1]!;
      if (entry.lookups <= 0) {
        entry.lookups = 0;
        this.dropIfUnheld(node);
      }
    }
  }

  /** Replies once: with `reply` on success, with the errno on failure, with EIO past the deadline. */
  private answer<T>(req: number, work: Promise<T>, reply: (value: T) => void): void {
    let settled = false;
    const fail = (errno: number) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.addon.replyErr(this.session!, req, errno);
    };
    const timer = setTimeout(() => fail(Errno.EIO), this.options.operationTimeoutMs);
    work.then(
      (value) => {
        if (settled) return;
        try {
          reply(value);
          settled = true;
          clearTimeout(timer);
        } catch {
          fail(Errno.EIO);
        }
      },
      (err: unknown) => fail(errnoOf(err)),
    );
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { promise, resolve, reject };
}

function encode(attrs: readonly Attr[]): Float64Array {
  const out = new Float64Array(attrs.length * ATTR_FIELDS);
  attrs.forEach((attr, i) => {
    out.set([attr.ino, attr.mode, attr.nlink, attr.uid, attr.gid, attr.size, attr.blocks, attr.mtimeMs, 0], i * ATTR_FIELDS);
  });
  return out;
}
