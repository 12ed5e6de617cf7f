/**
 * The one catalog transaction (decision D3). Every change to what a store serves — publishing versions,
 * retiring them, attaching a profile — is the same five steps: read `index/HEAD` and its index, edit the index
 * and family shards, upload the documents the edit made, sign the new index when a key is given, and swap HEAD
 * to it. When the swap finds that HEAD moved (another writer got there first), the edit runs again on the newer
 * index, so concurrent writers merge instead of overwriting each other. The swap is a compare-and-swap also on
 * stores that ignore conditional writes (catalog/head-writer.ts: there, writers take turns by lease, and an edit
 * that lost a swap runs again while its writer holds the lease, so it cannot lose twice).
 *
 * Invariants: HEAD is written last, and only to an index whose shards (and, by the caller's contract, the
 * manifests and packs those name) are all in the store. An edit may run several times, each time on a fresh
 * draft of a newer index: it must derive everything from the draft it is given (it may upload payload objects
 * it finds missing; they are content-addressed, so a repeat is harmless). An edit that changes nothing makes
 * no new generation.
 *
 * Imports the catalog (documents, keys, signing) and the store; knows nothing of repositories or packs.
 */
import type { KeyObject } from 'node:crypto';
import {
  EMPTY_INDEX,
  canonicalJson,
  defaultStoreConfig,
  encodeDocument,
  HeadWriter,
  indexFormat,
  keys,
  readHead,
  readIndex,
  readShard,
  readSignature,
  readStoreConfig,
  shardFormat,
  signIndex,
  type CatalogIndex,
  type FamilyShard,
  type Head,
  type InlineFile,
  type StoreConfig,
} from '../catalog/index.js';
import type { Log } from '../log.js';
import type { LeasePolicy, ObjectStore } from '../store/index.js';
import { PublishInputError } from './errors.js';
import { Uploads } from './uploads.js';

export interface CatalogUpdatePolicy {
  /** Swaps tried before giving up (each failed one re-runs the edit on the newer index). */
  swapAttempts: number;
  /** Upper bound of the random pause before attempt n is n times this: racing writers spread out. */
  backoffStepMs: number;
  /** The catalog lease on stores that ignore conditional writes (store/lease.ts). */
  lease: Partial<LeasePolicy>;
}

export const DEFAULT_CATALOG_UPDATE_POLICY: CatalogUpdatePolicy = { swapAttempts: 20, backoffStepMs: 25, lease: {} };

export interface CatalogUpdateOptions {
  log: Log;
  /** Signs each new index (ed25519) so that mounts with --trust-key accept it. */
  signingKey?: KeyObject;
  /** Write an unsigned index onto a store whose catalog is signed (every mount that trusts a key then stays behind). */
  allowUnsigned?: boolean;
  /** Where uploads are counted; the caller's, when it uploaded payload too and reports one total. */
  uploads?: Uploads;
  policy?: Partial<CatalogUpdatePolicy>;
}

export interface CatalogUpdateResult {
  /** The new generation, or undefined when the edit changed nothing (HEAD untouched). */
  generation: number | undefined;
  indexHash: string | undefined;
  /** The index HEAD names now: the new one, or when nothing changed the one the edit saw. */
  index: CatalogIndex;
  /** How often HEAD had moved under this writer and the edit ran again. */
  merges: number;
}

/** What an edit sees and changes: the index HEAD named when this attempt began, and the next one being built. */
export class CatalogDraft {
  private readonly next: CatalogIndex;
  private readonly shards = new Map<string, FamilyShard | undefined>();

  constructor(
    readonly store: ObjectStore,
    /** The index this attempt edits (EMPTY_INDEX for a store nothing was published to). */
    readonly base: CatalogIndex,
    /** Its hash, which the next index names as `previous` (undefined for the first generation). */
    baseHash: string | undefined,
    /** This attempt's time: the new index's creation time and every changed family's mtime. */
    readonly nowMs: number,
    private readonly loadShard: (hash: string) => Promise<FamilyShard>,
  ) {
    this.next = { ...structuredClone(base), generation: base.generation + 1, createdMs: nowMs };
    if (baseHash) this.next.previous = baseHash;
    else delete this.next.previous;
  }

  /** The family's shard as the draft has it now (an edit's own change included), or undefined when absent. */
  async shard(family: string): Promise<FamilyShard | undefined> {
    if (this.shards.has(family)) return this.shards.get(family);
    const entry = Object.hasOwn(this.next.families, family) ? this.next.families[family] : undefined;
    return entry ? this.loadShard(entry.shard) : undefined;
  }

  familyNames(): string[] {
    return Object.keys(this.next.families).sort();
  }

  /** The shard's hash as the draft stores it. */
  static shardHash(shard: FamilyShard): string {
    return encodeDocument({ ...shard, format: shardFormat(shard) }).hash;
  }

  /**
   * Puts `shard` in place of its family's current one (a shard equal to the current one changes nothing); its
   * format is set here from what it holds.
   */
  setShard(shard: FamilyShard): void {
    shard = { ...shard, format: shardFormat(shard) };
    const { hash } = encodeDocument(shard);
    if (Object.hasOwn(this.next.families, shard.name) && this.next.families[shard.name]!.shard === hash) return;
    this.shards.set(shard.name, shard);
    this.next.families[shard.name] = { shard: hash, mtimeMs: this.nowMs, versions: Object.keys(shard.versions).length };
    if (shard.unversioned) this.next.families[shard.name]!.subdirs = shard.unversioned.subdirs;
  }

  /** Drops a family from the next generation. */
  removeFamily(family: string): void {
    if (!Object.hasOwn(this.next.families, family)) return;
    delete this.next.families[family];
    this.shards.set(family, undefined);
  }

  /** A file at the repository's root (a single-file family), as the draft has it now. */
  rootFile(name: string): InlineFile | undefined {
    const files = this.next.files ?? {};
    return Object.hasOwn(files, name) ? files[name] : undefined;
  }

  /** Puts a root file in place, or with undefined removes it. */
  setRootFile(name: string, entry: InlineFile | undefined): void {
    const files = { ...(this.next.files ?? {}) };
    if (entry) files[name] = entry;
    else delete files[name];
    if (Object.keys(files).length > 0) this.next.files = files;
    else delete this.next.files;
  }

  /** The shards this draft made (to upload) and the index it amounts to. */
  result(): { shards: FamilyShard[]; index: CatalogIndex } {
    const shards = [...this.shards.values()].filter((s): s is FamilyShard => s !== undefined);
    return { shards, index: { ...this.next, format: indexFormat(this.next) } };
  }

  /** Whether the next index says anything the base did not (generation, creation time and lineage aside). */
  get changed(): boolean {
    const comparable = (index: CatalogIndex) => canonicalJson({ ...index, format: undefined, generation: undefined, createdMs: undefined, previous: undefined });
    return !comparable(this.base).equals(comparable(this.next));
  }
}

/**
 * Runs `edit` on a draft of the current index and makes the result the store's new generation: shards, index and
 * signature uploaded, then a compare-and-swap of `index/HEAD`; on a lost swap, again from the newer index.
 */
export async function updateCatalog(
  store: ObjectStore,
  edit: (draft: CatalogDraft) => Promise<void>,
  options: CatalogUpdateOptions,
): Promise<CatalogUpdateResult> {
  const policy = { ...DEFAULT_CATALOG_UPDATE_POLICY, ...options.policy };
  const uploads = options.uploads ?? new Uploads(store);
  const shardCache = new Map<string, Promise<FamilyShard>>();
  const loadShard = (hash: string) => {
    let shard = shardCache.get(hash);
    if (!shard) {
      shard = readShard(store, hash);
      shard.catch(() => shardCache.delete(hash));
      shardCache.set(hash, shard);
    }
    return shard;
  };

  let head = await readHead(store);
  await checkSigning(store, head, options, uploads);
  const heads = new HeadWriter(store, {
    lease: policy.lease,
    onWait: (holder) => options.log.info(`waiting for the catalog lease of ${store.url} (held by ${holder}): this store ignores conditional writes, so writers take turns`),
  });
  try {
    for (let attempt = 0; attempt < policy.swapAttempts; attempt++) {
      const base = head ? await readIndex(store, head.indexHash) : EMPTY_INDEX;
      const draft = new CatalogDraft(store, base, head?.indexHash, Date.now(), loadShard);
      await edit(draft);
      if (!draft.changed) return { generation: undefined, indexHash: head?.indexHash, index: base, merges: attempt };
      const { shards, index } = draft.result();
      for (const shard of shards) {
        const doc = encodeDocument(shard);
        await uploads.ifMissing(keys.shard(doc.hash), doc.bytes);
      }
      const indexDoc = encodeDocument(index);
      await uploads.ifMissing(keys.index(indexDoc.hash), indexDoc.bytes);
      if (options.signingKey) await uploads.put(keys.signature(indexDoc.hash), canonicalJson(signIndex(options.signingKey, indexDoc.bytes)));
      await uploads.secure();
      if (await heads.swap(indexDoc.hash, head)) {
        uploads.count(indexDoc.hash.length);
        return { generation: index.generation, indexHash: indexDoc.hash, index, merges: attempt };
      }
      options.log.warn('index/HEAD moved during publish (another publisher); merging and retrying');
      // Under a lease nobody else moves HEAD now: merge at once.
      if (!heads.leased) await pause(Math.random() * policy.backoffStepMs * (attempt + 1));
      head = await readHead(store);
    }
  } finally {
    await heads.close();
  }
  throw new Error(`could not update ${keys.head} after ${policy.swapAttempts} attempts: too many concurrent publishers`);
}

/**
 * A store whose catalog is signed (rezfs.json says so, or its current index has a signature) takes only signed
 * indexes: an unsigned one would leave every mount that trusts a key on the old generation for good. Refused
 * before anything is written, unless `allowUnsigned`. A signing writer records in rezfs.json that the store is
 * signed (decision D7), so that later writers know without looking.
 */
export async function checkSigning(
  store: ObjectStore,
  head: Head | undefined,
  options: Pick<CatalogUpdateOptions, 'signingKey' | 'allowUnsigned'>,
  uploads?: Uploads,
  config?: StoreConfig,
): Promise<void> {
  config ??= await readStoreConfig(store);
  if (options.signingKey) {
    if (config?.signed !== true && uploads) await uploads.put(keys.config, canonicalJson({ ...(config ?? defaultStoreConfig()), signed: true }));
    return;
  }
  if (options.allowUnsigned) return;
  const signed = config?.signed === true || (head !== undefined && (await readSignature(store, head.indexHash)) !== undefined);
  if (signed) {
    throw new PublishInputError(store.url, 'its catalog is signed: sign with --sign-key KEY (or pass --allow-unsigned, and every mount that trusts a key stays on its last signed generation)');
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
