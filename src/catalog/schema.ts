/**
 * The catalog's on-store documents. Everything but `index/HEAD` is stored under the sha256 of its
 * bytes and never changes. Times are integer milliseconds since the epoch.
 */

/** `rezfs.json`: the store's format version; a client refuses a store of another major version. */
export interface StoreConfig {
  format: string;
  blockSize: number;
  /**
   * Format 1.2: the store's catalog is signed, so an unsigned publish would strand every mount that trusts a key
   * (they refuse the new generation); publish refuses one unless told otherwise.
   */
  signed?: boolean;
}

/** `index/<sha256>.json`: enough to list the root without loading any shard. */
export interface CatalogIndex {
  format: string;
  generation: number;
  createdMs: number;
  families: Record<string, IndexedFamily>;
  /**
   * Format 1.2.0: the index this one replaced at `index/HEAD` (absent for the first generation and in indexes
   * written before 1.2.0). The chain of generations that `rezfs gc --keep-generations` keeps.
   */
  previous?: string;
  /**
   * Format 2.0: files at the repository's root, i.e. single-file families (`<family>.py` / `<family>.yaml`, one
   * or many versions inside). An index that has them says format 2.0.0: a 1.x mount would silently lack them.
   */
  files?: Record<string, InlineFile>;
}

export interface IndexedFamily {
  shard: string;
  /** Latest publish into this family: the family directory's mtime, read by rez's resolve cache. */
  mtimeMs: number;
  versions: number;
  /**
   * Format 1.2: subdirectories of the family directory that are not versions (an unversioned package's), for
   * its link count without the shard.
   */
  subdirs?: number;
}

/** `families/<sha256>.json`: one family's versions with their package definitions inline. */
export interface FamilyShard {
  format: string;
  name: string;
  versions: Record<string, VersionRecord>;
  /** Entries of the family directory that are not versions, e.g. `.ignore<version>` markers. */
  extras: Record<string, InlineEntry>;
  /**
   * Format 1.2.0: versions taken out of the catalog by `rezfs retire`, by version. Not served; a publish of the whole
   * repository does not bring them back (naming one, `<family>/<version>`, does).
   */
  retired?: Record<string, RetiredVersion>;
  /**
   * Format 2.0: the family directory is itself one unversioned package (`<family>/package.py`), whose tree is
   * this record's manifest; `versions` and `extras` are then empty. A shard that has it says format 2.0.0: a 1.x
   * mount would silently serve the family empty.
   */
  unversioned?: VersionRecord;
}

/** Format 1.2.0: what is remembered of a retired version. */
export interface RetiredVersion {
  retiredMs: number;
  /** Its VersionRecord.content: whether a source's copy is the version that was retired. */
  content: string;
}

export interface VersionRecord {
  mode: number;
  mtimeMs: number;
  /** Subdirectories of the version directory, for its link count without loading the manifest. */
  subdirs: number;
  /**
   * Names in the version directory, so that probes for what is not there (rez looks for
   * `release.yaml` and `.metadata` in every version it loads) answer without the manifest.
   * Absent in shards written before format 1.1.
   */
  names?: string[];
  publishedMs: number;
  /** `package.py` and/or `package.yaml`, served without touching the manifest or the pack. */
  definitions: Record<string, InlineFile>;
  manifest: string;
  /**
   * Format 1.2.0: the manifest itself, when it is small, so that a mount looks inside the version without a round
   * trip. Its canonical JSON hashes to `manifest`, which stays in the store for older mounts (they ignore this).
   */
  inlineManifest?: Manifest;
  /** Format 1.2.0: the hash of this version's startup profile (`profiles/<hash>.json`), when one was published. */
  profile?: string;
  /** Hash of the tree without mtimes: tells a harmless re-copy from a real change on republish. */
  content: string;
}

export interface InlineFile {
  type: 'file';
  mode: number;
  mtimeMs: number;
  data: string; // base64
}

export interface InlineLink {
  type: 'symlink';
  mtimeMs: number;
  target: string;
}

export type InlineEntry = InlineFile | InlineLink;

/** One pack of a version: its bytes' hash (and key), size and block hashes. */
export interface PackRecord {
  pack: string;
  packSize: number;
  /** sha256 of each blockSize slice of the pack, in order. */
  blocks: string[];
  /**
   * Format 1.2: hashes of the pack's 4 KiB slices, so a small random read fetches and verifies only what it
   * reads. Only on packs holding a big file; readers without it (or older than 1.2) read whole blocks.
   */
  chunks?: ChunkHashes;
}

/**
 * `manifests/<sha256>.json`: one package version's tree and where each file's bytes sit. The manifest's own
 * PackRecord fields are pack 0, the pack of the version's first publish.
 */
export interface Manifest extends PackRecord {
  format: string;
  blockSize: number;
  root: DirNode;
  /**
   * Format 2.0: packs added to the version after its first publish (a variant released later, a deliberate
   * redefinition), so that what was published before is neither read nor uploaded again. Pack n >= 1 is
   * `addedPacks[n - 1]`. A manifest that has them says format 2.0.0: a 1.x reader, which would read every file
   * from pack 0, refuses it instead.
   */
  addedPacks?: PackRecord[];
}

/** Format 1.2: where a pack's chunk hashes are (a `chunks/<object>` object; layout in chunk-hashes.ts). */
export interface ChunkHashes {
  /** Bytes per chunk; divides blockSize. */
  chunkSize: number;
  /** sha256 of the whole `chunks/` object: its key. */
  object: string;
  /** sha256 of the object's index section (one hash per block, of that block's chunk hashes). */
  index: string;
}

export interface DirNode {
  type: 'dir';
  mode: number;
  mtimeMs: number;
  entries: Record<string, TreeNode>;
}

export interface FileNode {
  type: 'file';
  mode: number;
  mtimeMs: number;
  size: number;
  /** Where the file's bytes start in its pack. */
  offset: number;
  /** Format 2.0: the pack holding the file's bytes (see Manifest.addedPacks); absent means pack 0. */
  pack?: number;
  sha256: string;
}

export interface LinkNode {
  type: 'symlink';
  mtimeMs: number;
  target: string;
}

export type TreeNode = DirNode | FileNode | LinkNode;

/**
 * `profiles/<sha256>.json` (format 1.2.0): what one package version's start-up read, recorded by a mount (`rezfs
 * profile`), so that every mount can fetch it in parallel at the version's first use. Named from the version's
 * shard record; it steers prefetching only, never what a read returns (blocks are verified as always).
 */
export interface StartupProfile {
  format: string;
  family: string;
  version: string;
  /** The manifest the ranges were read through: a profile fits exactly one payload. */
  manifest: string;
  /** How long after the version's first use reads were recorded, in ms. */
  windowMs: number;
  /** Per pack of the manifest (named by its hash), the byte ranges [start, end) read: sorted, not touching. */
  packs: ProfilePack[];
  /** Over the canonical JSON of the profile without this field; present when published to a signed catalog. */
  signature?: DocumentSignature;
}

export interface ProfilePack {
  pack: string;
  ranges: [number, number][];
}

/** An ed25519 signature by the key `keyId` names (see signing.ts). */
export interface DocumentSignature {
  keyId: string;
  signature: string; // base64
}

/** What this rezfs writes to documents that use no 2.0 feature; 1.x readers read them. */
export const FORMAT_VERSION = '1.2.0';
/** What it writes to a document that a 1.x reader would misread silently (see Manifest.addedPacks). */
export const FORMAT_2 = '2.0.0';
/** Majors this rezfs reads; newer minors only add optional fields. */
export const READABLE_MAJORS: readonly number[] = [1, 2];
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;
/**
 * Files of at least this many blocks are "big": they start on a block boundary in their pack, and (format 1.2)
 * their packs get chunk hashes. The kernel then reads them in whole blocks (one block per read, served without
 * copying), and the same file in two versions has the same block hashes, so caches keyed by block share them;
 * the zero padding before such a file costs under 1/8 of its size. Reads scattered over them fetch chunks.
 */
export const ALIGN_MIN_BLOCKS = 8;
/** The page size: what the kernel asks a FUSE daemon for on a small random read (measured: 4 KiB per pread). */
export const DEFAULT_CHUNK_SIZE = 4096;

export const keys = {
  config: 'rezfs.json',
  head: 'index/HEAD',
  index: (hash: string) => `index/${hash}.json`,
  signature: (hash: string) => `index/${hash}.sig`,
  shard: (hash: string) => `families/${hash}.json`,
  manifest: (hash: string) => `manifests/${hash}.json`,
  pack: (hash: string) => `packs/${hash}`,
  chunks: (hash: string) => `chunks/${hash}`,
  profile: (hash: string) => `profiles/${hash}.json`,
} as const;

/** Catalog documents never change once written; a local copy of one is as good as the store's. */
export const catalogCopyRules = {
  immutable: (key: string) => /^(index\/[0-9a-f]{64}\.(json|sig)|families\/[0-9a-f]{64}\.json|(manifests|profiles)\/[0-9a-f]{64}\.json)$/.test(key),
  mutable: (key: string) => key === keys.head || key === keys.config,
};

/** The family-directory file by which rez (`rez-pkg-ignore`) hides a version from resolves. */
export function ignoreMarker(version: string): string {
  return `.ignore${version}`;
}
