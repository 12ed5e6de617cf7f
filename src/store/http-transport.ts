/**
 * The HTTP half that the read-only http(s):// store and the writable dav+http(s):// store share: one keep-alive
 * agent, the credentials (http-credentials.ts), each request under the watchdog and retry policy (watchdog.ts,
 * retry.ts) with its answer typed (responses.ts), and the two reads both stores make alike (GET with Range, HEAD).
 *
 * node:http rather than fetch: it gives a connect timeout apart from the first-byte one, a keep-alive agent that
 * close() can end, request and response bodies as byte streams the watchdog can watch, and `Expect: 100-continue`;
 * with fetch (undici) the connect timeout lives in an Agent that Node 20 does not export. TLS trusts Node's roots
 * plus NODE_EXTRA_CA_CERTS (a site's own CA bundle). Redirects are not followed (a StoreError names the status).
 *
 * Invariants: the Authorization value lives in a # field (util.inspect does not show it) and in no message; the
 * `url` given for messages carries no userinfo. Imports store modules only.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { credentialSources, credentialsFor } from './http-credentials.js';
import { errorForStatus, networkError, unlessNotFound } from './responses.js';
import { checkKey, StoreError, StoreTimeoutError, type ObjectInfo } from './types.js';
import { readBody, readObjectBody, resilient, type Attempt, type RequestPolicy } from './watchdog.js';

/** How long a streamed upload waits for `100 Continue` before it sends its body anyway (as curl does). */
const CONTINUE_WAIT_MS = 1_000;

/** A request body: bytes in hand, or a stream of a known length (asked for again on each attempt). */
export type RequestBody = Buffer | { size: number; source: () => AsyncIterable<Buffer> };

/**
 * The S3 dialect of HTTP (s3-store.ts reads this way): each attempt signed (SigV4), path segments encoded as the
 * signature's canonical form wants them (RFC 3986, `!'()*` too), and an error answer's XML body read for its
 * `<Code>`, since S3 tells a missing bucket (NoSuchBucket) from a missing key by it.
 */
export interface S3Dialect {
  /** Headers to send with the signature's added; may throw a StoreError (no credentials). */
  sign(method: string, target: URL, headers: http.OutgoingHttpHeaders): Promise<http.OutgoingHttpHeaders>;
}

/** How much of an error answer is read for its S3 error code: S3's are a few hundred bytes. */
const ERROR_BODY_LIMIT = 16 * 1024;

export interface HttpRequest {
  method: string;
  /** Absolute URL, within the store's origin. */
  target: URL;
  headers?: http.OutgoingHttpHeaders;
  body?: RequestBody;
  range?: { start: number; end: number };
}

/** A store's base URL: without userinfo, ending in `/`. */
export function baseUrl(location: string): URL {
  const base = new URL(location);
  base.username = '';
  base.password = '';
  base.pathname = base.pathname.replace(/\/*$/, '/');
  return base;
}

export class HttpTransport {
  /** The store's base, ending in `/`, without userinfo. */
  readonly base: URL;
  readonly #authorization: string | undefined; // a # field: not shown by util.inspect
  private readonly credentialSource: string;
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;

  /**
   * `location` is the http(s) URL of the store's base (userinfo allowed); `url` is what messages call the store.
   * With `s3`, requests are signed instead of carrying the location's or the environment's credentials.
   */
  constructor(location: string, readonly url: string, readonly policy: RequestPolicy, private readonly s3?: S3Dialect) {
    const credentials = s3 ? undefined : credentialsFor(new URL(location));
    this.#authorization = credentials?.authorization;
    const base = baseUrl(location);
    this.credentialSource = s3 ? 'the AWS credential chain' : credentials ? `taken from ${credentials.source}` : credentialSources(base.hostname);
    this.base = base;
    const secure = base.protocol === 'https:';
    this.request = secure ? https.request : http.request;
    this.agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 64 }) : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  /** The URL of an object key (or, with a trailing `/`, of a collection) under the base. */
  target(key: string): URL {
    const collection = key.endsWith('/');
    const path = collection ? key.slice(0, -1) : key;
    const encode = this.s3 ? strictlyEncoded : encodeURIComponent;
    const encoded = path === '' ? '' : checkKey(path).split('/').map(encode).join('/');
    return new URL(encoded + (collection && path !== '' ? '/' : ''), this.base);
  }

  /**
   * One store operation: attempts under the watchdog, failures typed, transient ones retried per `policy`;
   * `uploadBytes` stretches the deadline of a request that sends a body.
   */
  call<T>(method: string, key: string, run: (attempt: Attempt) => Promise<T>, uploadBytes?: number, policy = this.policy): Promise<T> {
    const what = `${method} ${key}`;
    return resilient(policy, `${what} at ${this.url}`, run, (err) => networkError(err, this.url, what), uploadBytes === undefined ? undefined : { uploadBytes });
  }

  /** The typed error for an answer the caller did not expect (the rest of the body is discarded). */
  failed(response: IncomingMessage, method: string, key: string, code?: string): StoreError {
    response.resume();
    const retryAfter = response.headers['retry-after'];
    return errorForStatus({ status: response.statusCode ?? 0, storeUrl: this.url, key, method, code, retryAfter, credentialSource: this.credentialSource });
  }

  /** Whole object, or bytes [start, end) of it. */
  read(key: string, range?: { start: number; end: number }): Promise<Buffer> {
    return this.call('GET', key, async (attempt) => {
      const response = await this.send({ method: 'GET', target: this.target(key), range }, attempt);
      // Like a short file read: a range starting at or past the end is empty, not an error.
      if (range && response.statusCode === 416) {
        response.resume();
        return Buffer.alloc(0);
      }
      if (response.statusCode !== 200 && response.statusCode !== 206) throw await this.refused(response, key, attempt);
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
        const response = await this.send({ method: 'HEAD', target: this.target(key) }, attempt);
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

  /** A GET's typed error; in the S3 dialect, with the code its body names. */
  private async refused(response: IncomingMessage, key: string, attempt: Attempt): Promise<StoreError> {
    if (!this.s3) return this.failed(response, 'GET', key);
    const body = await readBody(response, attempt, `GET ${key} at ${this.url}`, { limit: ERROR_BODY_LIMIT }).catch(() => Buffer.alloc(0));
    return this.failed(response, 'GET', key, /<Code>([^<]{1,100})<\/Code>/.exec(body.toString('utf8'))?.[1]);
  }

  /** A response body in full, fed to the watchdog (for answers the caller parses, such as a WebDAV listing). */
  body(response: IncomingMessage, attempt: Attempt, what: string): Promise<Buffer> {
    return readBody(response, attempt, `${what} at ${this.url}`, { expectedLength: contentLength(response) });
  }

  /**
   * Sends one request; resolves with the response once its headers are in. A streamed body waits for the server's
   * `100 Continue`, so a refusal (401, 409, 5xx) costs no upload and leaves the source unread; `onSourceError` hears
   * of a source that failed mid-way (the request is then aborted: the server must not keep a partial object).
   */
  async send(req: HttpRequest, attempt: Attempt, onSourceError?: (err: unknown) => void): Promise<IncomingMessage> {
    // identity: a compressed body would not be the stored bytes, nor match a byte range.
    let headers: http.OutgoingHttpHeaders = { 'accept-encoding': 'identity', ...req.headers };
    if (this.#authorization) headers.authorization = this.#authorization;
    if (req.range) headers.range = `bytes=${req.range.start}-${req.range.end - 1}`;
    if (this.s3) headers = await this.s3.sign(req.method, req.target, headers);
    const body = req.body;
    if (body !== undefined) headers['content-length'] = String(Buffer.isBuffer(body) ? body.length : body.size);
    const streamed = body !== undefined && !Buffer.isBuffer(body);
    if (streamed) headers.expect = '100-continue';
    const what = `${req.method} ${req.target.pathname}`;
    return new Promise((resolve, reject) => {
      let started = false;
      const request = this.request(req.target, { method: req.method, headers, agent: this.agent, signal: attempt.signal }, (response) => {
        response.on('error', () => undefined); // surfaces through readBody; must never go unhandled
        clearTimeout(continueTimer);
        // Answered before the body went out: the connection has an unsent body pending, so it cannot be reused.
        if (streamed && !started) response.once('end', () => request.destroy());
        attempt.responded();
        resolve(response);
      });
      request.on('error', reject);
      request.on('socket', (socket) => {
        if (!socket.connecting) return; // a kept-alive connection
        const ms = this.policy.timeouts.connectTimeoutMs;
        const timer = setTimeout(() => request.destroy(new StoreTimeoutError(`${what} at ${this.url}: no connection within ${ms} ms`)), ms);
        socket.once('connect', () => clearTimeout(timer));
        request.once('close', () => clearTimeout(timer));
      });
      let continueTimer: NodeJS.Timeout | undefined;
      if (!streamed) {
        request.end(body);
        return;
      }
      const { size, source } = body as Exclude<RequestBody, Buffer>;
      const start = () => {
        if (started) return;
        started = true;
        clearTimeout(continueTimer);
        void pump(request, exactly(source(), size, what), (err) => {
          onSourceError?.(err);
          request.destroy(err as Error);
        });
      };
      request.once('continue', start);
      continueTimer = setTimeout(start, CONTINUE_WAIT_MS);
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}

/**
 * Writes the source into the request one chunk at a time, each flushed before the next is asked for: a source may
 * hand out views of one reused buffer (ObjectStore.putStream), and a socket keeps a reference to what it queues.
 * A failure of the request itself (reset, timeout, abort) surfaces through the request's own 'error' event.
 */
async function pump(request: http.ClientRequest, source: AsyncIterable<Buffer>, onSourceError: (err: unknown) => void): Promise<void> {
  const chunks = source[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Buffer>;
    try {
      next = await chunks.next();
    } catch (err) {
      onSourceError(err);
      return;
    }
    if (next.done) break;
    const chunk = next.value;
    const written = await new Promise<boolean>((resolve) => request.write(chunk, (err) => resolve(!err)));
    if (!written || request.destroyed) {
      await chunks.return?.(undefined);
      return;
    }
  }
  request.end();
}

/** What both HTTP stores do alike: reads (a mount's every request) and closing. */
export abstract class HttpReadingStore {
  /** The URL the store was opened from, without credentials. */
  readonly url: string;

  constructor(protected readonly http: HttpTransport) {
    this.url = http.url;
  }

  async get(key: string): Promise<Buffer> {
    return this.http.read(key);
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer> {
    if (end <= start) return Buffer.alloc(0);
    return this.http.read(key, { start, end });
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.http.head(key);
  }

  close(): Promise<void> {
    return this.http.close();
  }
}

/** The source's bytes, refused (thrown) the moment they exceed `size` or end short of it. */
async function* exactly(source: AsyncIterable<Buffer>, size: number, what: string): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > size) throw new StoreError(`${what}: the source yielded more than the ${size} bytes announced`);
    yield chunk;
  }
  if (total !== size) throw new StoreError(`${what}: the source yielded ${total} of the ${size} bytes announced`);
}

/** A path segment as SigV4's canonical request has it: RFC 3986, where encodeURIComponent leaves `!'()*` alone. */
export function strictlyEncoded(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function contentLength(response: IncomingMessage): number | undefined {
  const value = response.headers['content-length'];
  return value === undefined ? undefined : Number(value);
}
