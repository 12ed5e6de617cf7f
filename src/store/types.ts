/** What a store knows about one object without reading it. */
export interface ObjectInfo {
  size: number;
  /** Opaque version tag for compare-and-swap; changes whenever the object's bytes do. */
  etag: string;
  /** When the object was last written, by the store's clock (epoch ms); undefined when the store does not say. */
  modifiedMs?: number;
}

/** One object of a listing: what a collector needs to judge it without a request per object. */
export interface ListedObject {
  key: string;
  size: number;
  /** When it was last written, by the store's clock (epoch ms). */
  modifiedMs: number;
}

/** What a writer may know of a stream's bytes before it sends them. */
export interface PutStreamOptions {
  /** How many bytes the source yields: a store that sends a length up front (and scales its deadline by it) uses it. */
  size?: number;
  /** Their sha256 (hex): a store whose server checks uploads against a checksum header sends it. */
  sha256?: string;
}

/** How one store behind a store (a mirror set's member) is doing, for `rezfs status`. */
export interface StoreHealth {
  url: string;
  healthy: boolean;
  /** Consecutive failures (requests or probes) since it last answered. */
  failures: number;
  /** When it was last marked down (epoch ms), while it is down. */
  downSinceMs: number | undefined;
  lastError: string | undefined;
}

/**
 * The one interface every backend (local directory, S3, HTTP) implements. Keys are `/`-separated
 * relative paths such as `index/HEAD` or `packs/<sha256>`. Stores know nothing of catalogs or FUSE.
 */
export interface ObjectStore {
  /** The URL the store was opened from, without credentials: safe to log. */
  readonly url: string;
  /** True for a store that refuses every write (an http:// mirror): writers refuse it before they start. */
  readonly readOnly?: boolean;
  /**
   * Whether `putIfMatch` really is conditional here. Undefined: unknown, and a writer that needs to know probes
   * (catalog/head-writer.ts); 'ignored' (the condition is dropped, the PUT always wins) makes writers coordinate
   * by lease instead (store/lease.ts).
   */
  readonly conditionalWrites?: 'honoured' | 'ignored';
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
   * publisher refuses to commit bytes whose hash no longer matches. A store is done with each chunk
   * when it asks for the next, so a source may hand out views of one reused buffer. `source` is called once per
   * attempt: a store that must send the bytes again (an upload retried after a 5xx) asks for them again.
   */
  putStream(key: string, source: () => AsyncIterable<Buffer>, options?: PutStreamOptions): Promise<void>;
  /**
   * Compare-and-swap: writes only if the object's current etag is `expected` (or, with `null`,
   * if it does not exist). Returns false when another writer got there first.
   */
  putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean>;
  /**
   * Every object under a prefix, in no particular order, including leftovers of writes that never finished
   * (a file store's temp files): a collector must see them to remove them.
   */
  list(prefix: string): AsyncIterable<ListedObject>;
  /**
   * Removes an object; one that is already gone is no error. One attempt, never retried: a caller that must know
   * how late a delete can land (the garbage collector, see catalog/gc-protocol.ts) gets one request's deadline.
   */
  delete(key: string): Promise<void>;
  /** Releases sockets and handles. */
  close(): Promise<void>;
  /**
   * The stores that hold the same objects, in order of preference (a mirror set's members). A reader
   * whose bytes fail verification tries them in turn; a single store has none.
   */
  replicas?(): readonly ObjectStore[];
  /** The health of each store a store fails over between (a mirror set's members); undefined for a single store. */
  health?(): readonly StoreHealth[] | undefined;
}

/** A key as the interface defines it: `/`-separated, no empty, `.` or `..` segment (those would escape the prefix). */
export function checkKey(key: string): string {
  if (key.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new StoreError(`invalid object key ${JSON.stringify(key)}`);
  }
  return key;
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

/**
 * The store itself does not exist (an S3 bucket that is not there), as opposed to one object in it: every key
 * would be "not found", so a reader that took this for absence would see an empty store.
 */
export class StoreMissingError extends StoreError {
  constructor(readonly storeUrl: string, why: string) {
    super(`${storeUrl} does not exist (${why}): check the store URL`);
    this.name = 'StoreMissingError';
  }
}

/** A store that cannot take writes (an http:// mirror) throws this from put*. */
export class ReadOnlyStoreError extends StoreError {
  constructor(readonly storeUrl: string) {
    super(`${storeUrl} is read-only (plain HTTP): use the s3://, file:// or dav+http(s):// store behind it`);
    this.name = 'ReadOnlyStoreError';
  }
}

/**
 * 401/403: retrying cannot help. The message names the store, never the credentials; `source` says where this kind
 * of store takes them from.
 */
export class StoreAccessError extends StoreError {
  constructor(readonly storeUrl: string, what: string, detail: string, source?: string) {
    super(
      `access denied to ${storeUrl} (${detail}) for ${what}: check the credentials${source ? ` (${source})` : ''} and their permissions ` +
        '(mounting needs GET and HEAD on the prefix, publishing also PUT)',
    );
    this.name = 'StoreAccessError';
  }
}

/**
 * A server that will not store objects where the URL points (no such repository, a read-only or virtual one, a
 * path outside the WebDAV share): the store as given cannot be written to, whatever is retried.
 */
export class WriteRefusedError extends StoreError {
  constructor(readonly storeUrl: string, why: string) {
    super(`cannot write to ${storeUrl}: ${why}`);
    this.name = 'WriteRefusedError';
  }
}

/**
 * A failure that may pass: 5xx, throttling, a reset or refused connection, a truncated body, a timeout.
 * The only kind of error a store retries (and the kind a mirror set fails over on).
 */
export class TransientStoreError extends StoreError {
  /** How long the server asked us to wait (Retry-After), if it did. */
  readonly retryAfterMs: number | undefined;
  /** The server said it is overloaded (503, 429, SlowDown): back off harder. */
  readonly throttled: boolean;

  constructor(message: string, options: { retryAfterMs?: number; throttled?: boolean } = {}) {
    super(message);
    this.name = 'TransientStoreError';
    this.retryAfterMs = options.retryAfterMs;
    this.throttled = options.throttled ?? false;
  }
}

/** No response in time, or too few bytes for too long. */
export class StoreTimeoutError extends TransientStoreError {
  constructor(message: string) {
    super(message);
    this.name = 'StoreTimeoutError';
  }
}
