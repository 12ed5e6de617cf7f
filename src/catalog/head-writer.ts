/**
 * The one way to move `index/HEAD` from the index a writer started from to the one it made (publish, retire,
 * profile, sync): a compare-and-swap, also on stores that ignore conditional writes.
 *
 * Where the store honours `If-None-Match`/`If-Match` (a file store, AWS S3 since 2024, MinIO), the swap is the
 * store's conditional PUT. Where it does not (s3rver, many gateways and WebDAV servers: the condition is dropped
 * and the PUT always wins, so two writers would silently lose one another's generation), the writer first takes
 * the store's catalog lease (store/lease.ts) and keeps it until `close()`; under it, it checks that HEAD still
 * names the index it started from, PUTs HEAD and reads it back (verify-after-swap: a writer that ignores the lease
 * shows up as a lost swap, and the caller merges again). Which kind a store is is asked once per writer: by the
 * store's own `conditionalWrites`, else by a probe (a conditional PUT that must fail, on a throwaway key under
 * `locks/`), which only a writer about to swap pays.
 *
 * Imports the store and this layer's HEAD reader.
 */
import { randomBytes } from 'node:crypto';
import { acquireLease, LEASE_PREFIX, removeClaim, type Lease, type LeasePolicy, type ObjectStore } from '../store/index.js';
import { readHeadHash, type Head } from './catalog.js';
import { keys } from './schema.js';

/** The lease every writer of a store's catalog takes where conditional writes are ignored. */
export const CATALOG_LEASE = 'catalog';

export interface HeadWriterOptions {
  /** Told once when another writer holds the catalog lease and this one waits. */
  onWait?: (holder: string) => void;
  lease?: Partial<LeasePolicy>;
}

export class HeadWriter {
  private honoured: Promise<boolean> | undefined;
  private lease: Lease | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly options: HeadWriterOptions = {},
  ) {}

  /** Points HEAD at `indexHash` if it still names `expected` (undefined: no HEAD yet); false when it moved. */
  async swap(indexHash: string, expected: Head | undefined): Promise<boolean> {
    const body = Buffer.from(indexHash);
    if (await (this.honoured ??= conditionalWritesHonoured(this.store))) return this.store.putIfMatch(keys.head, body, expected?.etag ?? null);
    this.lease ??= await acquireLease(this.store, CATALOG_LEASE, { policy: this.options.lease, onWait: this.options.onWait });
    if ((await readHeadHash(this.store)) !== expected?.indexHash) return false;
    // Last, right before the PUT: what is left unguarded is that one request (see store/lease.ts).
    await this.lease.confirm();
    await this.store.put(keys.head, body);
    return (await readHeadHash(this.store)) === indexHash;
  }

  /** Whether this writer coordinates by lease (known once it swapped). */
  get leased(): boolean {
    return this.lease !== undefined;
  }

  /** Releases the lease, if one was taken. */
  async close(): Promise<void> {
    const lease = this.lease;
    this.lease = undefined;
    await lease?.release();
  }
}

/**
 * Whether `store` honours conditional writes: its own word, else a probe. The probe writes a throwaway object,
 * tries to create it again with `If-None-Match: *` (which must fail) and deletes it.
 */
export async function conditionalWritesHonoured(store: ObjectStore): Promise<boolean> {
  if (store.conditionalWrites !== undefined) return store.conditionalWrites === 'honoured';
  const probe = `${LEASE_PREFIX}probe/${randomBytes(8).toString('hex')}`;
  await store.put(probe, Buffer.from('probe'));
  try {
    return !(await store.putIfMatch(probe, Buffer.from('probe again'), null));
  } finally {
    // A probe left behind (the store kept failing the delete) is a few bytes under locks/, which nothing reads.
    await removeClaim(store, probe);
  }
}
