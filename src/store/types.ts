/** What a store knows about one object without reading it. */
export interface ObjectInfo {
  size: number;
  /** Opaque version tag for compare-and-swap; changes whenever the object's bytes do. */
  etag: string;
}

/**
 * The one interface every backend (local directory, S3, HTTP) implements. Keys are `/`-separated
 * relative paths such as `index/HEAD` or `packs/<sha256>`. Stores know nothing of catalogs or FUSE.
 */
export interface ObjectStore {
  /** The URL the store was opened from, without credentials: safe to log. */
  readonly url: string;
  /** Whole object; throws ObjectNotFoundError when absent. */
  get(key: string): Promise<Buffer>;
  /** Bytes [start, end) of an object; throws ObjectNotFoundError when absent. */
  getRange(key: string, start: number, end: number): Promise<Buffer>;
  /** Size and etag, or undefined when absent. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Writes an object whole; readers never see a partial object. */
  put(key: string, body: Buffer): Promise<void>;
  /**
   * Streams an object in. If the source throws, nothing is written under `key`: this is how a
   * publisher refuses to commit bytes whose hash no longer matches.
   */
  putStream(key: string, source: AsyncIterable<Buffer>): Promise<void>;
  /**
   * Compare-and-swap: writes only if the object's current etag is `expected` (or, with `null`,
   * if it does not exist). Returns false when another writer got there first.
   */
  putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean>;
  /** Every key under a prefix, in no particular order. */
  list(prefix: string): AsyncIterable<string>;
  /** Releases sockets and handles. */
  close(): Promise<void>;
}

export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
  }
}

export class ObjectNotFoundError extends StoreError {
  constructor(readonly storeUrl: string, readonly key: string) {
    super(`${key} not found in ${storeUrl}`);
    this.name = 'ObjectNotFoundError';
  }
}

/** A store that cannot take writes (an http:// mirror) throws this from put*. */
export class ReadOnlyStoreError extends StoreError {
  constructor(readonly storeUrl: string) {
    super(`${storeUrl} is read-only: publish to an s3:// or file:// store`);
    this.name = 'ReadOnlyStoreError';
  }
}
