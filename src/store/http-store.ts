import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { errorForStatus, networkError, unlessNotFound } from './responses.js';
import { checkKey, ReadOnlyStoreError, StoreError, StoreTimeoutError, type ListedObject, type ObjectInfo, type ObjectStore } from './types.js';
import { readObjectBody, resilient, type Attempt, type RequestPolicy } from './watchdog.js';

/**
 * `http(s)://[user:password@]host[:port]/prefix`: a read-only store over plain GET and HEAD with Range, so a
 * site can put any caching proxy (nginx, squid, varnish) or a CDN between its hosts and the bucket.
 *
 * node:http rather than fetch: it gives a connect timeout apart from the first-byte one, a keep-alive agent
 * that close() can end, and the body as a byte stream the stall detector watches; with fetch (undici) the
 * connect timeout lives in an Agent that Node 20 does not export.
 *
 * Userinfo becomes Basic auth and is kept out of `url` and of every message. Writes and deletes throw ReadOnlyStoreError.
 * `list()` throws a StoreError: plain HTTP has no standard listing, and mounting never lists.
 * Redirects are not followed (a redirecting server is answered with a StoreError naming the status).
 */
export class HttpStore implements ObjectStore {
  readonly url: string;
  readonly #authorization: string | undefined; // a # field: not shown by util.inspect
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;

  constructor(url: string, private readonly policy: RequestPolicy) {
    const base = new URL(url);
    if (base.username || base.password) {
      const userinfo = `${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`;
      this.#authorization = `Basic ${Buffer.from(userinfo).toString('base64')}`;
    }
    base.username = '';
    base.password = '';
    base.pathname = base.pathname.replace(/\/*$/, '/');
    this.base = base;
    this.url = base.href;
    const secure = base.protocol === 'https:';
    this.request = secure ? https.request : http.request;
    this.agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 64 }) : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  async get(key: string): Promise<Buffer> {
    return this.read(key);
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer> {
    if (end <= start) return Buffer.alloc(0);
    return this.read(key, { start, end });
  }

  private read(key: string, range?: { start: number; end: number }): Promise<Buffer> {
    return this.call('GET', key, async (attempt) => {
      const response = await this.send('GET', key, attempt, range && `bytes=${range.start}-${range.end - 1}`);
      // Like a short file read: a range starting at or past the end is empty, not an error.
      if (range && response.statusCode === 416) {
        response.resume();
        return Buffer.alloc(0);
      }
      if (response.statusCode !== 200 && response.statusCode !== 206) throw this.failed(response, 'GET', key);
      const answer = {
        contentLength: contentLength(response),
        contentRange: response.statusCode === 206 ? response.headers['content-range'] : undefined,
      };
      return readObjectBody(response, attempt, `GET ${key} at ${this.url}`, answer, range);
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    return unlessNotFound(
      this.call('HEAD', key, async (attempt) => {
        const response = await this.send('HEAD', key, attempt);
        response.resume();
        if (response.statusCode !== 200) throw this.failed(response, 'HEAD', key);
        const size = contentLength(response) ?? 0;
        const lastModified = response.headers['last-modified'];
        const modifiedMs = lastModified === undefined ? undefined : Date.parse(lastModified);
        // Any server sends one of the two; a proxy passes the origin's ETag on.
        return {
          size,
          etag: response.headers.etag ?? `${size}-${lastModified ?? ''}`,
          modifiedMs: modifiedMs === undefined || Number.isNaN(modifiedMs) ? undefined : modifiedMs,
        };
      }),
    );
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
    throw new StoreError(`cannot list ${prefix} at ${this.url}: plain HTTP stores have no listing; list the s3:// or file:// store behind it`);
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private call<T>(method: string, key: string, run: (attempt: Attempt) => Promise<T>): Promise<T> {
    const what = `${method} ${key}`;
    return resilient(this.policy, `${what} at ${this.url}`, run, (err) => networkError(err, this.url, what));
  }

  private failed(response: IncomingMessage, method: string, key: string): StoreError {
    response.resume();
    const retryAfter = response.headers['retry-after'];
    return errorForStatus({ status: response.statusCode ?? 0, storeUrl: this.url, key, method, retryAfter });
  }

  /** Sends one request; resolves with the response once its headers are in. */
  private send(method: 'GET' | 'HEAD', key: string, attempt: Attempt, range?: string): Promise<IncomingMessage> {
    const target = new URL(checkKey(key).split('/').map(encodeURIComponent).join('/'), this.base);
    // identity: a compressed body would not be the stored bytes, nor match a byte range.
    const headers: http.OutgoingHttpHeaders = { 'accept-encoding': 'identity' };
    if (this.#authorization) headers.authorization = this.#authorization;
    if (range) headers.range = range;
    return new Promise((resolve, reject) => {
      const request = this.request(target, { method, headers, agent: this.agent, signal: attempt.signal }, (response) => {
        response.on('error', () => undefined); // surfaces through readBody; must never go unhandled
        attempt.responded();
        resolve(response);
      });
      request.on('error', reject);
      request.on('socket', (socket) => {
        if (!socket.connecting) return; // a kept-alive connection
        const ms = this.policy.timeouts.connectTimeoutMs;
        const timer = setTimeout(() => request.destroy(new StoreTimeoutError(`${method} ${key} at ${this.url}: no connection within ${ms} ms`)), ms);
        socket.once('connect', () => clearTimeout(timer));
        request.once('close', () => clearTimeout(timer));
      });
      request.end();
    });
  }
}

function contentLength(response: IncomingMessage): number | undefined {
  const value = response.headers['content-length'];
  return value === undefined ? undefined : Number(value);
}
