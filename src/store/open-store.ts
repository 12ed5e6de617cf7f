import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_FILE_DEADLINE_MS, FileStore } from './file-store.js';
import { DavStore } from './dav-store.js';
import { HttpStore } from './http-store.js';
import { MeteredStore, type StoreTraffic } from './metered-store.js';
import { MirroredStore, type MirrorOptions } from './mirrored-store.js';
import { DEFAULT_RETRY, OriginPressure, type OriginPressures, type RetryPolicy } from './retry.js';
import { S3Store } from './s3-store.js';
import { ReadOnlyStoreError, StoreError, type ObjectStore } from './types.js';
import { DEFAULT_TIMEOUTS, type RequestPolicy, type StoreTimeouts } from './watchdog.js';

export interface OpenStoreOptions {
  /** Network stores only; unset fields keep DEFAULT_TIMEOUTS. */
  timeouts?: Partial<StoreTimeouts>;
  /** file:// stores only: how long one read may take (default DEFAULT_FILE_DEADLINE_MS). */
  fileDeadlineMs?: number;
  /** Network stores only; unset fields keep DEFAULT_RETRY. */
  retry?: Partial<RetryPolicy>;
  /** Network stores only: share turn-taking and backoff with every other store opened with the same registry. */
  origins?: OriginPressures;
}

export interface OpenStoresOptions extends OpenStoreOptions {
  mirror?: Partial<MirrorOptions>;
  /** Count every request to each store (each mirror on its own) here. */
  traffic?: StoreTraffic;
}

/**
 * Attempts per request of each store in a mirror set (unless `retry.maxAttempts` says otherwise): the other
 * stores are the further attempts, and failing over beats waiting on a sick store.
 */
export const MIRRORED_MAX_ATTEMPTS = 2;

export class StoreUrlError extends StoreError {
  constructor(url: string, why: string) {
    super(`bad store URL ${JSON.stringify(redactUrl(url))}: ${why}; use file:///abs/dir, s3://bucket/prefix, http(s)://host/prefix (read-only) or dav+http(s)://host/repo/prefix`);
    this.name = 'StoreUrlError';
  }
}

/**
 * A URL fit for messages: userinfo and query (where passwords and tokens live) blanked, even in a malformed URL
 * (everything up to the last `@` goes, after the scheme if there is one).
 */
export function redactUrl(url: string): string {
  return url.replace(/[?#].*$/, '?***').replace(/^([a-z][a-z0-9+.-]*:\/*)?[^?]*@/i, '$1***@');
}

/**
 * Opens a store by URL: `file:///abs/dir`; `s3://bucket/prefix` (path-style unless REZFS_S3_PATH_STYLE=0, since
 * a custom endpoint is usually MinIO, Ceph or s3rver; AWS itself accepts path-style too); read-only,
 * `http(s)://[user:password@]host[:port]/prefix`; or `dav+http(s)://host/repo/prefix`, a WebDAV share or artifact
 * repository (dav-store.ts).
 */
export function openStore(url: string, options: OpenStoreOptions = {}): ObjectStore {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreUrlError(url, 'not a URL');
  }
  const retry = { ...DEFAULT_RETRY, ...options.retry };
  const policy: RequestPolicy = {
    timeouts: { ...DEFAULT_TIMEOUTS, ...options.timeouts },
    retry,
    pressure: options.origins && new OriginPressure(retry, options.origins.limits),
  };
  const pressured = <T extends ObjectStore>(store: T): T => {
    if (policy.pressure) options.origins?.add(store.url, policy.pressure);
    return store;
  };
  switch (parsed.protocol) {
    case 'file:': {
      // file://srv/x names host "srv": a local directory needs three slashes.
      if (parsed.hostname !== '' && parsed.hostname !== 'localhost') {
        throw new StoreUrlError(url, `"${parsed.hostname}" is read as a host name; a directory needs three slashes: file:///${parsed.hostname}${parsed.pathname}`);
      }
      const dir = fileURLToPath(parsed);
      if (!isAbsolute(dir)) throw new StoreUrlError(url, 'the directory must be absolute');
      return new FileStore(dir.replace(/\/+$/, '') || '/', { deadlineMs: options.fileDeadlineMs ?? DEFAULT_FILE_DEADLINE_MS });
    }
    case 's3:': {
      if (!parsed.hostname) throw new StoreUrlError(url, 'no bucket');
      return pressured(new S3Store({
        bucket: parsed.hostname,
        prefix: decodeURIComponent(parsed.pathname.replace(/^\/+/, '')),
        forcePathStyle: process.env.REZFS_S3_PATH_STYLE !== '0',
        ...policy,
      }));
    }
    case 'http:':
    case 'https:':
      if (parsed.search || parsed.hash) throw new StoreUrlError(url, 'a query or fragment is not supported');
      return pressured(new HttpStore(url, policy));
    case 'dav+http:':
    case 'dav+https:':
      if (parsed.search || parsed.hash) throw new StoreUrlError(url, 'a query or fragment is not supported');
      if (!parsed.hostname) throw new StoreUrlError(url, 'no host');
      return pressured(new DavStore(url, policy));
    default:
      throw new StoreUrlError(url, `unsupported scheme ${parsed.protocol}`);
  }
}

/** The directory a file:// store URL (as FileStore.url spells it) names; undefined for any other store. */
export function localDirectoryOf(url: string): string | undefined {
  return url.startsWith('file://') ? url.slice('file://'.length) : undefined;
}

/**
 * A store to write to or delete from: an http(s):// URL is refused at once (ReadOnlyStoreError), before a command
 * does any work that would be lost.
 */
export function openWritableStore(url: string, options: OpenStoreOptions = {}): ObjectStore {
  const store = openStore(url, options);
  if (store.readOnly) throw new ReadOnlyStoreError(store.url);
  return store;
}

/**
 * The store a mount reads: `primary` alone, or with `mirrors` (in priority order) a MirroredStore that fails
 * over between them.
 */
export function openStores(primary: string, mirrors: readonly string[] = [], options: OpenStoresOptions = {}): ObjectStore {
  const { traffic } = options;
  const open = (url: string, memberOptions: OpenStoreOptions) => {
    const store = openStore(url, memberOptions);
    return traffic ? new MeteredStore(store, traffic) : store;
  };
  if (mirrors.length === 0) return open(primary, options);
  const memberOptions = { ...options, retry: { maxAttempts: MIRRORED_MAX_ATTEMPTS, ...options.retry } };
  return new MirroredStore(
    [primary, ...mirrors].map((url) => open(url, memberOptions)),
    options.mirror,
  );
}
