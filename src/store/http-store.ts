import { baseUrl, HttpReadingStore, HttpTransport } from './http-transport.js';
import { ReadOnlyStoreError, StoreError, type ListedObject, type ObjectStore } from './types.js';
import type { RequestPolicy } from './watchdog.js';

/**
 * `http(s)://[user:password@]host[:port]/prefix`: a read-only store over plain GET and HEAD with Range, so a
 * site can put any caching proxy (nginx, squid, varnish) or a CDN between its hosts and the bucket, and a mount can
 * read an artifact repository with read-only credentials (http-credentials.ts). Requests: http-transport.ts.
 *
 * Writes and deletes throw ReadOnlyStoreError (dav+http(s):// is the writable kind, dav-store.ts).
 * `list()` throws a StoreError: plain HTTP has no standard listing, and mounting never lists.
 */
export class HttpStore extends HttpReadingStore implements ObjectStore {
  readonly readOnly = true;

  constructor(url: string, policy: RequestPolicy) {
    super(new HttpTransport(url, baseUrl(url).href, policy));
  }

  async put(): Promise<void> {
    throw new ReadOnlyStoreError(this.url);
  }

  async putStream(): Promise<void> {
    throw new ReadOnlyStoreError(this.url);
  }

  async putIfMatch(): Promise<boolean> {
    throw new ReadOnlyStoreError(this.url);
  }

  async delete(): Promise<void> {
    throw new ReadOnlyStoreError(this.url);
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    throw new StoreError(`cannot list ${prefix} at ${this.url}: plain HTTP stores have no listing; list the s3://, file:// or dav+http(s):// store behind it`);
  }
}
