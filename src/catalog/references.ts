/**
 * Every object a catalog generation references (decision D2): the one walk that `gc` (what to keep), `sync` (what
 * to copy, and in which order) and `verify` (what to check) share, so that an object kind added to the catalog is
 * added here once and all three follow.
 *
 * A generation is its index; the index names family shards (and has a signature beside it when the store is
 * signed), shards name manifests (of their versions, or of their unversioned package) and startup profiles (a
 * profile names nothing to follow: its ranges point into packs its manifest names), manifests name packs (one or
 * several, decision D6) and their chunk hashes (format 1.2). Root files (single-file families) live inside the
 * index and name nothing. A walker visits each object once however many generations or versions name it, checks
 * every document against its hash before reading what it names, and never lists the store (a walk works on a
 * read-only http:// store too).
 *
 * Adding a kind: a row in OBJECT_KINDS (its key prefix, and where it goes in dependency order) and the place in
 * `walk` where its parent names it.
 *
 * Imports the store interface and the catalog's documents only.
 */
import type { ObjectStore } from '../store/index.js';
import { Documents, readIndex } from './catalog.js';
import { packsOf } from './packs.js';
import { keys, type CatalogIndex, type ChunkHashes, type FamilyShard, type Manifest, type VersionRecord } from './schema.js';
import { inParallel } from '../parallel.js';

export type ObjectKind = 'pack' | 'chunks' | 'manifest' | 'profile' | 'shard' | 'signature' | 'index';

/**
 * The kinds in dependency order: what an object names comes before it. A copy that goes in this order (and swaps
 * `index/HEAD` last) never holds a document whose children are missing. `prefix` is where a kind's keys live; a
 * collector deletes nothing outside these prefixes.
 */
export const OBJECT_KINDS: readonly { kind: ObjectKind; prefix: string }[] = [
  { kind: 'pack', prefix: 'packs/' },
  { kind: 'chunks', prefix: 'chunks/' },
  { kind: 'manifest', prefix: 'manifests/' },
  { kind: 'profile', prefix: 'profiles/' },
  { kind: 'shard', prefix: 'families/' },
  { kind: 'signature', prefix: 'index/' },
  { kind: 'index', prefix: 'index/' },
];

/**
 * What a key holds, for accounting (metrics by object kind): a kind of OBJECT_KINDS, the two mutable objects
 * (`head`, `config`), or `other` (claims, locks, leftovers).
 */
export function kindOfKey(key: string): ObjectKind | 'head' | 'config' | 'other' {
  if (key === keys.head) return 'head';
  if (key === keys.config) return 'config';
  if (key.startsWith('index/')) return key.endsWith('.sig') ? 'signature' : 'index';
  return OBJECT_KINDS.find((k) => key.startsWith(k.prefix))?.kind ?? 'other';
}

export function dependencyRank(kind: ObjectKind): number {
  return OBJECT_KINDS.findIndex((k) => k.kind === kind);
}

interface RefBase {
  key: string;
  /** Who names it, for messages: `family/version`, `family`, or `index <hash>`. */
  where: string;
}

/** One referenced object, with what its parent document says about it. */
export type ObjectRef =
  | (RefBase & { kind: 'index' | 'shard' | 'manifest' | 'chunks' | 'profile'; sha256: string })
  /** Not content-addressed: it signs its index's bytes, and a trusting reader checks it against them. */
  | (RefBase & { kind: 'signature'; size: number })
  | (RefBase & { kind: 'pack'; sha256: string; size: number; blockSize: number; blocks: readonly string[]; chunks?: ChunkHashes });

export interface WalkVisitor {
  /** Each object, once per walker, as soon as its parent has named it. */
  object?(ref: ObjectRef): void;
  /** Each shard read (once per walker). */
  shard?(family: string, shard: FamilyShard): void;
  /** Each version of each shard read, with its manifest. */
  version?(where: string, record: VersionRecord, manifest: Manifest): void;
  /**
   * A document that cannot be read or fails its hash; the walk goes on without what it would have named.
   * Without this hook the walk throws instead: a collector must not act on a graph it could not read whole.
   */
  problem?(where: string, err: Error): void;
}

export interface WalkOptions {
  /** Documents read at once. */
  concurrency: number;
  /**
   * Parsed documents, shared with other walkers: documents are named by their hash, so two walks over different
   * stores holding the same generation (a sync's source and target) read each shared document once.
   */
  documents: Documents;
}

export const DEFAULT_WALK_OPTIONS: Omit<WalkOptions, 'documents'> = { concurrency: 16 };

export class CatalogWalker {
  private readonly seen = new Set<string>();
  private readonly documents: Documents;
  private readonly options: Omit<WalkOptions, 'documents'>;

  constructor(
    private readonly store: ObjectStore,
    options: Partial<WalkOptions> = {},
  ) {
    const { documents, ...rest } = options;
    this.documents = documents ?? new Documents();
    this.options = { ...DEFAULT_WALK_OPTIONS, ...rest };
  }

  /** Keys of every object visited so far, over all walks of this walker. */
  get keys(): ReadonlySet<string> {
    return this.seen;
  }

  /**
   * Visits the generation whose index is `indexHash` (what earlier walks visited is not visited again) and
   * returns its index. The index itself must load: without it there is no generation to speak of.
   */
  async walk(indexHash: string, visitor: WalkVisitor = {}): Promise<CatalogIndex> {
    const index = await readIndex(this.store, indexHash);
    const where = `index ${indexHash}`;
    if (!this.first({ kind: 'index', key: keys.index(indexHash), sha256: indexHash, where }, visitor)) return index;
    const signature = await this.store.head(keys.signature(indexHash));
    if (signature) this.first({ kind: 'signature', key: keys.signature(indexHash), size: signature.size, where }, visitor);
    const families = Object.entries(index.families);
    await inParallel(families, this.options.concurrency, async ([family, entry]) => {
      if (!this.first({ kind: 'shard', key: keys.shard(entry.shard), sha256: entry.shard, where: family }, visitor)) return;
      const shard = await this.load(family, visitor, () => this.documents.shards.get(this.store, entry.shard));
      if (!shard) return;
      visitor.shard?.(family, shard);
      const versions: [string, VersionRecord][] = Object.entries(shard.versions).map(([version, record]) => [`${family}/${version}`, record]);
      if (shard.unversioned) versions.push([family, shard.unversioned]);
      await inParallel(versions, this.options.concurrency, async ([versionWhere, record]) => {
        await this.walkVersion(versionWhere, record, visitor);
      });
    });
    return index;
  }

  private async walkVersion(where: string, record: VersionRecord, visitor: WalkVisitor): Promise<void> {
    if (record.profile) this.first({ kind: 'profile', key: keys.profile(record.profile), sha256: record.profile, where }, visitor);
    const fresh = this.first({ kind: 'manifest', key: keys.manifest(record.manifest), sha256: record.manifest, where }, visitor);
    // A manifest seen before was (or is being) read by its first version; only the visitor wants it again.
    if (!fresh && !visitor.version) return;
    const manifest = await this.load(where, visitor, () => this.documents.manifests.get(this.store, record.manifest), fresh);
    if (!manifest) return;
    visitor.version?.(where, record, manifest);
    for (const { pack, packSize, blocks, chunks } of packsOf(manifest)) {
      this.first({ kind: 'pack', key: keys.pack(pack), sha256: pack, size: packSize, blockSize: manifest.blockSize, blocks, chunks, where }, visitor);
      if (chunks) this.first({ kind: 'chunks', key: keys.chunks(chunks.object), sha256: chunks.object, where }, visitor);
    }
  }

  /** Marks `ref` visited; false when it was already. */
  private first(ref: ObjectRef, visitor: WalkVisitor): boolean {
    if (this.seen.has(ref.key)) return false;
    this.seen.add(ref.key);
    visitor.object?.(ref);
    return true;
  }

  /** A document, or undefined when it failed and the visitor takes problems (reported once, by its first reader). */
  private async load<T>(where: string, visitor: WalkVisitor, read: () => Promise<T>, report = true): Promise<T | undefined> {
    try {
      return await read();
    } catch (err) {
      if (!visitor.problem) throw err;
      if (report) visitor.problem(where, err as Error);
      return undefined;
    }
  }
}
