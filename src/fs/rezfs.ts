import { LRUCache } from 'lru-cache';
import { ReadaheadWindow, packRef, readableLength, readsChunks, type BlockSource, type PackRef } from '../cache/index.js';
import type { Catalog, DirNode, FamilyShard, FileNode, InlineEntry, InlineFile, Manifest, PackRecord, TreeNode, VersionRecord } from '../catalog/index.js';
import { countSubdirs, keys, packOf, packsOf } from '../catalog/index.js';
import type { Log } from '../log.js';
import { FsError } from './errors.js';
import { hashedInodes, type InodeNumbers } from './inodes.js';
import { childPath, splitPath } from './paths.js';
import type { PackageCosts } from './package-costs.js';
import type { StartupSets } from './startup-sets.js';
import { withDeadline } from '../deadline.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const O_ACCMODE = 0o3;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const W_OK = 2;
const X_OK = 1;
/** Files read without open whose readahead state is kept; a reader beyond that starts its window anew. */
const UNOPENED_FILES = 1024;

export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  size: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  blocks: number;
}

export interface DirEntry {
  name: string;
  attr: Attr;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

export interface RezFsOptions {
  uid: number;
  gid: number;
  /** A read that cannot be answered by then fails with EIO instead of hanging the caller. */
  readDeadlineMs: number;
  /** The most blocks a sequential reader gets fetched ahead of it. */
  readaheadBlocks: number;
  /** st_ino of each path, as the binding numbers them (default: the path's 53-bit hash). */
  inodes?: InodeNumbers;
  log: Log;
  /** Told when a version is first looked into and of every pack read: startup sets are learned and preloaded. */
  startup?: StartupSets;
  /** Told how long each payload read took (seconds) and whether it failed: a latency histogram's feed. */
  onRead?: (seconds: number, failed: boolean) => void;
  /** Told which store objects each version's payload is in, and how long its reads took: its cold cost. */
  costs?: PackageCosts;
}

/** What a path names, resolved against the catalog. */
type Resolved =
  | { kind: 'root' }
  | { kind: 'family'; family: string }
  | { kind: 'inline'; entry: InlineEntry }
  | { kind: 'version'; record: VersionRecord }
  | { kind: 'tree'; node: TreeNode; manifest: Manifest };

type OpenFile =
  | { kind: 'inline'; data: Buffer }
  | { kind: 'pack'; pack: PackRef; packHash: string; manifest: Manifest; node: FileNode; readahead: ReadaheadWindow; packageName: string };

/**
 * The filesystem's semantics, independent of any FUSE binding: a read-only view of the catalog as
 * a released-package repository (`/<family>/<version>/...`). Every method either resolves or throws
 * an FsError carrying the errno the kernel should see.
 *
 * Unknown is never absent: a family or version the catalog names, whose shard or manifest cannot be
 * loaded within the read deadline, fails with EIO (and is logged). It never looks empty or missing,
 * because rez would then resolve another package from the next repository on its path. ENOENT is
 * only ever the answer for what a loaded document says is not there. Each operation has one deadline,
 * from its start, however many documents it needs.
 */
export class RezFs {
  private readonly handles = new Map<number, OpenFile>();
  /** Files read without an open (the kernel opens them itself): their state, per path. */
  private readonly unopened = new LRUCache<string, { catalog: Catalog; file: OpenFile }>({ max: UNOPENED_FILES });
  /**
   * Readahead per pack, in pack offsets: whoever reads a version's files in order (tar, cp -r, rez's
   * payload cache) reads its pack front to back, one small file after the other.
   */
  private readonly packReaders = new LRUCache<string, ReadaheadWindow>({ max: UNOPENED_FILES });
  private readonly inlineData = new WeakMap<InlineFile, Buffer>();
  /** By pack record (a manifest's own, or one of its addedPacks): built once, so a bad chunk record warns once. */
  private readonly packs = new WeakMap<PackRecord, PackRef>();
  /** A version's top-level names as a set: a version may hold thousands, and every path below it is checked. */
  private readonly versionNames = new WeakMap<readonly string[], ReadonlySet<string>>();
  private nextHandle = 1;
  /** Requests that reached this process (the kernel answers the rest from its caches). */
  readonly stats = { metadata: 0, opens: 0, reads: 0, readBytes: 0, readErrors: 0 };

  constructor(
    private catalog: Catalog,
    private readonly blocks: BlockSource,
    private readonly options: RezFsOptions,
  ) {}

  /**
   * Serves a new generation from now on. Every operation works on the generation current when it
   * started, so a listing changes atomically; open files keep the generation they were opened in.
   */
  swapCatalog(next: Catalog): void {
    this.catalog = next;
  }

  get current(): Catalog {
    return this.catalog;
  }

  async getattr(path: string): Promise<Attr> {
    this.stats.metadata++;
    const catalog = this.catalog;
    return this.attrOf(catalog, path, await this.resolve(catalog, path, this.deadline()));
  }

  /** A directory's entries, `.` and `..` first as on a local filesystem. */
  async readdir(path: string): Promise<DirEntry[]> {
    this.stats.metadata++;
    const catalog = this.catalog;
    const until = this.deadline();
    const parent = path === '/' ? '/' : path.slice(0, path.lastIndexOf('/')) || '/';
    const attrAt = async (p: string) => this.attrOf(catalog, p, await this.resolve(catalog, p, until));
    const [self, up, children] = await Promise.all([attrAt(path), attrAt(parent), this.children(catalog, path, until)]);
    return [{ name: '.', attr: self }, { name: '..', attr: up }, ...children];
  }

  private async children(catalog: Catalog, path: string, until: number, known?: Resolved): Promise<DirEntry[]> {
    const resolved = known ?? (await this.resolve(catalog, path, until));
    const entry = (name: string, target: Resolved): DirEntry => ({ name, attr: this.attrOf(catalog, childPath(path, name), target) });
    switch (resolved.kind) {
      case 'root':
        return [
          ...catalog.familyNames().map((family) => entry(family, { kind: 'family', family })),
          ...catalog.rootFileNames().map((name) => entry(name, { kind: 'inline', entry: catalog.rootFile(name)! })),
        ];
      case 'family': {
        const shard = await this.shardOf(catalog, resolved.family, until);
        // An unversioned package: the family directory is the package's own tree.
        if (shard.unversioned) return this.children(catalog, path, until, { kind: 'version', record: shard.unversioned });
        return [
          ...Object.entries(shard.versions).map(([version, record]) => entry(version, { kind: 'version', record })),
          ...Object.entries(shard.extras).map(([name, extra]) => entry(name, { kind: 'inline', entry: extra })),
        ];
      }
      case 'version': {
        const manifest = await this.manifestOf(catalog, resolved.record, path, until);
        return Object.entries(manifest.root.entries).map(([name, node]) => entry(name, { kind: 'tree', node, manifest }));
      }
      case 'tree':
        if (resolved.node.type !== 'dir') throw new FsError('ENOTDIR');
        return Object.entries(resolved.node.entries).map(([name, node]) =>
          entry(name, { kind: 'tree', node, manifest: resolved.manifest }),
        );
      case 'inline':
        throw new FsError('ENOTDIR');
    }
  }

  async readlink(path: string): Promise<string> {
    this.stats.metadata++;
    const resolved = await this.resolve(this.catalog, path, this.deadline());
    const node = resolved.kind === 'tree' ? resolved.node : resolved.kind === 'inline' ? resolved.entry : undefined;
    if (node?.type !== 'symlink') throw new FsError('EINVAL', `${path} is not a symlink`);
    return node.target;
  }

  async open(path: string, flags: number): Promise<number> {
    if ((flags & O_ACCMODE) !== 0 || (flags & (O_CREAT | O_TRUNC)) !== 0) throw new FsError('EROFS');
    const resolved = await this.resolve(this.catalog, path, this.deadline());
    const file = this.openFile(resolved, path);
    const handle = this.nextHandle++;
    this.handles.set(handle, file);
    this.stats.opens++;
    return handle;
  }

  async read(handle: number, offset: number, length: number): Promise<Buffer> {
    const file = this.handles.get(handle);
    if (!file) throw new FsError('EBADF');
    return this.readFile(file, offset, length);
  }

  /** A read by path, for kernels that open files themselves; each path keeps its readahead state. */
  async readAt(path: string, offset: number, length: number): Promise<Buffer> {
    const catalog = this.catalog;
    let known = this.unopened.get(path);
    if (known?.catalog !== catalog) {
      known = { catalog, file: this.openFile(await this.resolve(catalog, path, this.deadline()), path) };
      this.unopened.set(path, known);
    }
    return this.readFile(known.file, offset, length);
  }

  private async readFile(file: OpenFile, offset: number, length: number): Promise<Buffer> {
    this.stats.reads++;
    if (file.kind === 'inline') return file.data.subarray(offset, offset + readableLength(file.data.length, offset, length));
    const n = readableLength(file.node.size, offset, length);
    if (n === 0) return Buffer.alloc(0);
    const span = { start: file.node.offset + offset, end: file.node.offset + offset + n };
    const ahead = file.readahead.onRead(offset, n);
    const packAhead = this.packReader(file.pack).onRead(span.start, n);
    const sparse = readsChunks({ run: file.readahead.run, fileSize: file.node.size, blockSize: file.pack.blockSize });
    // Within the file for its own reader; on through the pack when files are being read in pack order.
    if (!sparse && (ahead > 0 || packAhead > 0)) {
      this.readAhead(file.pack, span.end, Math.max(ahead, packAhead), packAhead > ahead ? file.pack.size : file.node.offset + file.node.size);
    }
    this.options.startup?.packRead(file.manifest, file.packHash, span.start, span.end);
    const started = performance.now();
    try {
      const reading = sparse ? this.blocks.readChunks(file.pack, span) : this.blocks.read(file.pack, span);
      const data = await withDeadline(reading, this.options.readDeadlineMs, `reading ${file.pack.key}`);
      this.stats.readBytes += data.length;
      this.readTook(file, (performance.now() - started) / 1000, false);
      return data;
    } catch (err) {
      this.readTook(file, (performance.now() - started) / 1000, true);
      this.options.log.error(`read failed: ${(err as Error).message}`);
      this.stats.readErrors++;
      throw new FsError('EIO', (err as Error).message);
    }
  }

  release(handle: number): void {
    this.handles.delete(handle);
  }

  async access(path: string, mode: number): Promise<void> {
    const attr = await this.getattr(path);
    if (mode & W_OK) throw new FsError('EROFS');
    if (mode & X_OK && (attr.mode & 0o111) === 0) throw new FsError('EACCES');
  }

  /** No extended attributes exist; answering fast keeps copytree and ls -l cheap. */
  async getxattr(path: string): Promise<never> {
    await this.resolve(this.catalog, path, this.deadline());
    throw new FsError('ENODATA');
  }

  async listxattr(path: string): Promise<string[]> {
    await this.resolve(this.catalog, path, this.deadline());
    return [];
  }

  statfs(): StatFs {
    const files = this.catalog.familyNames().length;
    return { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files, ffree: 0, favail: 0, namemax: 255 };
  }

  /** When an operation starting now must have its answer. */
  private deadline(): number {
    return Date.now() + this.options.readDeadlineMs;
  }

  /** What `path` names; the documents it needs are loaded by `until` (epoch ms), or it fails with EIO. */
  private async resolve(catalog: Catalog, path: string, until: number): Promise<Resolved> {
    const [family, version, ...rest] = splitPath(path);
    if (family === undefined) return { kind: 'root' };
    if (!catalog.family(family)) {
      const file = catalog.rootFile(family);
      if (file && version === undefined) return { kind: 'inline', entry: file };
      throw new FsError(file ? 'ENOTDIR' : 'ENOENT');
    }
    if (version === undefined) return { kind: 'family', family };
    const shard = await this.shardOf(catalog, family, until);
    if (shard.unversioned) return this.resolveInVersion(catalog, shard.unversioned, [version, ...rest], path, until);
    const record = Object.hasOwn(shard.versions, version) ? shard.versions[version] : undefined;
    if (!record) {
      const extra = Object.hasOwn(shard.extras, version) ? shard.extras[version] : undefined;
      if (extra && rest.length === 0) return { kind: 'inline', entry: extra };
      throw new FsError(extra ? 'ENOTDIR' : 'ENOENT');
    }
    if (rest.length === 0) return { kind: 'version', record };
    return this.resolveInVersion(catalog, record, rest, path, until);
  }

  /** A path below a version directory (or an unversioned package's family directory): `rest` is non-empty. */
  private async resolveInVersion(catalog: Catalog, record: VersionRecord, rest: string[], path: string, until: number): Promise<Resolved> {
    if (record.names && !this.namesOf(record.names).has(rest[0]!)) throw new FsError('ENOENT'); // no manifest needed to say so
    // package.py and package.yaml come from the shard: a resolve never waits on a manifest.
    const definition = rest.length === 1 && Object.hasOwn(record.definitions, rest[0]!) ? record.definitions[rest[0]!] : undefined;
    if (definition) return { kind: 'inline', entry: definition };
    const manifest = await this.manifestOf(catalog, record, path, until);
    return { kind: 'tree', node: walk(manifest.root, rest), manifest };
  }

  private attrOf(catalog: Catalog, path: string, resolved: Resolved): Attr {
    const ino = (this.options.inodes ?? hashedInodes).ino(path);
    const dir = (mode: number, mtimeMs: number, subdirs: number) => this.attr(ino, S_IFDIR | mode, 4096, mtimeMs, 2 + subdirs);
    switch (resolved.kind) {
      case 'root':
        return dir(0o755, catalog.index.createdMs, catalog.familyNames().length);
      case 'family': {
        const indexed = catalog.family(resolved.family)!;
        return dir(0o755, indexed.mtimeMs, indexed.subdirs ?? indexed.versions);
      }
      case 'version':
        return dir(resolved.record.mode, resolved.record.mtimeMs, resolved.record.subdirs);
      case 'inline':
        return resolved.entry.type === 'file'
          ? this.attr(ino, S_IFREG | resolved.entry.mode, this.inline(resolved.entry).length, resolved.entry.mtimeMs, 1)
          : this.linkAttr(ino, resolved.entry.target, resolved.entry.mtimeMs);
      case 'tree': {
        const node = resolved.node;
        if (node.type === 'dir') return dir(node.mode, node.mtimeMs, countSubdirs(node));
        if (node.type === 'file') return this.attr(ino, S_IFREG | node.mode, node.size, node.mtimeMs, 1);
        return this.linkAttr(ino, node.target, node.mtimeMs);
      }
    }
  }

  private linkAttr(ino: number, target: string, mtimeMs: number): Attr {
    return this.attr(ino, S_IFLNK | 0o777, Buffer.byteLength(target), mtimeMs, 1);
  }

  private attr(ino: number, mode: number, size: number, mtimeMs: number, nlink: number): Attr {
    return { ino, mode, nlink, size, uid: this.options.uid, gid: this.options.gid, mtimeMs, blocks: Math.ceil(size / 512) };
  }

  private readTook(file: Extract<OpenFile, { kind: 'pack' }>, seconds: number, failed: boolean): void {
    this.options.onRead?.(seconds, failed);
    this.options.costs?.read(file.packageName, seconds);
  }

  /** `resolved`, opened for reading by `path`. */
  private openFile(resolved: Resolved, path: string): OpenFile {
    if (resolved.kind === 'inline' && resolved.entry.type === 'file') return { kind: 'inline', data: this.inline(resolved.entry) };
    if (resolved.kind === 'tree' && resolved.node.type === 'file') {
      const { manifest, node } = resolved;
      const record = packOf(manifest, node);
      const pack = this.packRefOf(manifest, record);
      // A short forward skip keeps a sequential reader sequential: the kernel skips pages it has cached (those a
      // random reader left: a few pages each). Not much more: random reads landing that close would pass too.
      const slack = pack.blockSize / 8;
      const readahead = new ReadaheadWindow(1, Math.max(1, this.options.readaheadBlocks), slack);
      return { kind: 'pack', pack, packHash: record.pack, manifest, node, readahead, packageName: packageName(path) };
    }
    throw new FsError(resolved.kind === 'tree' && resolved.node.type === 'symlink' ? 'ELOOP' : 'EISDIR');
  }

  /** Sequential readers get the blocks after their read fetched before they ask, up to `limit` (a pack offset). */
  private readAhead(pack: PackRef, packOffset: number, blocks: number, limit: number): void {
    if (packOffset >= limit) return;
    const next = Math.ceil(packOffset / pack.blockSize);
    const last = Math.floor((limit - 1) / pack.blockSize);
    if (next <= last) this.blocks.prefetch(pack, next, Math.min(blocks, last - next + 1));
  }

  /** One PackRef per pack record: every open of its files shares it (and a warning about it is logged once). */
  private packRefOf(manifest: Manifest, record: PackRecord): PackRef {
    let pack = this.packs.get(record);
    if (!pack) {
      pack = packRef(manifest, record, this.options.log);
      this.packs.set(record, pack);
    }
    return pack;
  }

  private packReader(pack: PackRef): ReadaheadWindow {
    let window = this.packReaders.get(pack.key);
    if (!window) {
      // A small gap (a file served inline, like package.py) does not end a front-to-back reading. One stream: with
      // a block of slack, following several would read ahead for files read in an order unrelated to the pack's.
      window = new ReadaheadWindow(1, Math.max(1, this.options.readaheadBlocks), pack.blockSize, 1);
      this.packReaders.set(pack.key, window);
    }
    return window;
  }

  private namesOf(names: readonly string[]): ReadonlySet<string> {
    let set = this.versionNames.get(names);
    if (!set) {
      set = new Set(names);
      this.versionNames.set(names, set);
    }
    return set;
  }

  private inline(file: InlineFile): Buffer {
    let data = this.inlineData.get(file);
    if (!data) {
      data = Buffer.from(file.data, 'base64');
      this.inlineData.set(file, data);
    }
    return data;
  }

  /** A family's shard; a family the index names whose shard cannot be had by `until` is EIO, never empty. */
  private async shardOf(catalog: Catalog, family: string, until: number): Promise<FamilyShard> {
    try {
      return await withDeadline(catalog.shard(family), until - Date.now(), `loading the shard of ${family}`);
    } catch (err) {
      const shard = catalog.family(family)?.shard ?? '?';
      throw this.unavailable(`family ${family}: its shard ${keys.shard(shard)} could not be loaded`, err);
    }
  }

  /** The manifest of the version `path` lies in: whoever needs it is looking inside the version (its first use). */
  private async manifestOf(catalog: Catalog, record: VersionRecord, path: string, until: number): Promise<Manifest> {
    const [family, version] = splitPath(path) as [string, string];
    let manifest: Manifest;
    this.options.startup?.versionLooked(catalog, record);
    try {
      manifest = await withDeadline(catalog.versionManifest(record), until - Date.now(), `loading manifest ${record.manifest}`);
    } catch (err) {
      throw this.unavailable(`${path}: manifest ${keys.manifest(record.manifest)} could not be loaded`, err);
    }
    const packs = packsOf(manifest).map((pack) => this.packRefOf(manifest, pack));
    this.options.costs?.versionOpened(record.manifest, packageName(path), () => packs.flatMap((pack) => (pack.chunks ? [pack.key, pack.chunks.key] : [pack.key])));
    this.options.startup?.versionOpened(catalog, { family, version, record }, manifest, packs);
    return manifest;
  }

  /** A document the catalog names could not be loaded: logged, and EIO for the caller. */
  private unavailable(what: string, err: unknown): FsError {
    const message = `${what}: ${(err as Error).message}`;
    this.options.log.error(message);
    return new FsError('EIO', message);
  }
}

function walk(root: DirNode, parts: string[]): TreeNode {
  let node: TreeNode = root;
  for (const part of parts) {
    if (node.type !== 'dir') throw new FsError('ENOTDIR');
    const child: TreeNode | undefined = Object.hasOwn(node.entries, part) ? node.entries[part] : undefined;
    if (!child) throw new FsError('ENOENT');
    node = child;
  }
  return node;
}

/** The package a path lies in, the way rez names it: `family-version` (a version directory's first two names). */
function packageName(path: string): string {
  const [family, version] = splitPath(path);
  return version === undefined ? family ?? '' : `${family}-${version}`;
}
