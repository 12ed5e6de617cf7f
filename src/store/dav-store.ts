/**
 * `dav+http(s)://host/repo/prefix`: a writable store on a WebDAV share or a generic artifact repository
 * (Artifactory generic or local repositories, Nexus raw hosted ones, Apache mod_dav, nginx dav). Chosen by the
 * explicit `dav+` scheme, so that a plain http(s):// store stays read-only.
 *
 * What it asks of the server, and why:
 *   - GET with Range and HEAD (as the http(s):// store: http-transport.ts) — all a mount ever sends;
 *   - PUT to deploy, with Content-Length and `X-Checksum-Sha256` (Artifactory refuses a body that does not match;
 *     others ignore it). Large objects go in one streamed PUT behind `Expect: 100-continue` (a refusal costs no
 *     upload), under a deadline scaled by their size (watchdog.ts uploadAllowanceMs), retried on 5xx like any request;
 *   - MKCOL only when a PUT answers 409 (RFC 4918: a parent collection is missing; Artifactory and Nexus create
 *     folders themselves, mod_dav does not), for the missing collections from the top down;
 *   - DELETE for `rezfs gc` and the publishers' lease; PROPFIND (Depth 1, collection by collection) for listing,
 *     which gc, sync's target and that lease need (never a mount);
 *   - If-Match / If-None-Match on PUT: ignored by most artifact repositories; honoured by mod_dav (for its own
 *     ETags) but checked before the write, not atomically with it, so two PUTs racing on one ETag can both succeed
 *     (three at once on one object: more than one winner in 11 of 30 tries). putIfMatch refuses a stale writer,
 *     never a concurrent one; so the store says its conditional writes are not to be relied on, and writers of
 *     `index/HEAD` take turns by lease (catalog/head-writer.ts, store/lease.ts).
 *
 * Invariants: readers never see a partial object (servers store a PUT whole; an upload whose source fails is
 * aborted, and its partial body discarded); a write the server refuses for good (no such repository, a read-only
 * repository) is a WriteRefusedError that says which, never retried. Imports store modules and sax (XML).
 */
import { sha256Hex } from '../hash.js';
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import sax from 'sax';
import { baseUrl, HttpReadingStore, HttpTransport, type RequestBody } from './http-transport.js';
import { StoreError, WriteRefusedError, type ListedObject, type ObjectStore, type PutStreamOptions } from './types.js';
import type { RequestPolicy } from './watchdog.js';

/** Answers to a write that say the server will not store anything there, whatever is retried. */
const REFUSALS = new Set([400, 404, 405, 501]);
/** How long putIfMatch waits for a just-written object's weak ETag to become strong (mod_dav: one second). */
const WEAK_ETAG_WAIT_MS = 2_000;
const WEAK_ETAG_POLL_MS = 200;

const PROPFIND_BODY = Buffer.from(
  '<?xml version="1.0" encoding="utf-8"?>\n' +
    '<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>\n',
);

/** One member of a PROPFIND answer. */
export interface DavEntry {
  /** The member's path as the server sent it (`href`), percent-decoded. */
  path: string;
  collection: boolean;
  size: number;
  modifiedMs: number;
}

type UploadOutcome = 'stored' | 'changed';

export class DavStore extends HttpReadingStore implements ObjectStore {
  /** As far as a writer may rely on them (module comment): writers of index/HEAD take the catalog lease. */
  readonly conditionalWrites = 'ignored';
  /** Collections being created, so that concurrent PUTs into a new directory send one MKCOL. */
  private readonly creating = new Map<string, Promise<void>>();

  /** `url` is the dav+http(s):// URL (userinfo allowed). */
  constructor(url: string, policy: RequestPolicy) {
    const location = url.replace(/^dav\+/i, '');
    super(new HttpTransport(location, `dav+${baseUrl(location).href}`, policy));
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.upload(key, body, checksum(sha256Hex(body)));
  }

  /** With a known size, one streamed PUT; without, the bytes are gathered first (the server needs their length). */
  async putStream(key: string, source: () => AsyncIterable<Buffer>, options: PutStreamOptions = {}): Promise<void> {
    if (options.size === undefined) {
      const chunks: Buffer[] = [];
      for await (const chunk of source()) chunks.push(Buffer.from(chunk)); // copied: a source may reuse its buffer
      return this.put(key, Buffer.concat(chunks));
    }
    await this.upload(key, { size: options.size, source }, options.sha256 === undefined ? {} : checksum(options.sha256));
  }

  async putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
    let condition: Record<string, string>;
    if (expected === null) condition = { 'if-none-match': '*' };
    else {
      const etag = await this.comparableEtag(key, expected);
      if (etag === undefined) return false;
      condition = { 'if-match': etag };
    }
    return (await this.upload(key, body, { ...checksum(sha256Hex(body)), ...condition })) === 'stored';
  }

  async delete(key: string): Promise<void> {
    const once = { ...this.http.policy, retry: { ...this.http.policy.retry, maxAttempts: 1 } };
    await this.http.call(
      'DELETE',
      key,
      async (attempt) => {
        const response = await this.http.send({ method: 'DELETE', target: this.http.target(key) }, attempt);
        const status = response.statusCode ?? 0;
        if ((status >= 200 && status < 300) || status === 404) return drained(response, undefined);
        if (REFUSALS.has(status)) {
          response.resume();
          throw await this.refusal(status, 'DELETE', key);
        }
        throw this.http.failed(response, 'DELETE', key);
      },
      undefined,
      once,
    );
  }

  /** A walk over the collections under the prefix, one PROPFIND (Depth 1) each. */
  async *list(prefix: string): AsyncIterable<ListedObject> {
    yield* this.walk(prefix.slice(0, prefix.lastIndexOf('/') + 1), prefix);
  }

  private async *walk(collection: string, prefix: string): AsyncIterable<ListedObject> {
    const basePath = decodeURIComponent(this.http.base.pathname);
    const self = basePath + collection;
    for (const entry of await this.members(collection)) {
      if (!entry.path.startsWith(basePath) || entry.path.replace(/\/$/, '') === self.replace(/\/$/, '')) continue;
      const key = entry.path.slice(basePath.length).replace(/\/$/, '');
      if (entry.collection) {
        const sub = `${key}/`;
        if (sub.startsWith(prefix) || prefix.startsWith(sub)) yield* this.walk(sub, prefix);
      } else if (key.startsWith(prefix)) {
        yield { key, size: entry.size, modifiedMs: entry.modifiedMs };
      }
    }
  }

  /** The members of a collection (key '' or ending in `/`), itself included; none when it does not exist. */
  private members(collection: string): Promise<DavEntry[]> {
    const what = collection === '' ? '/' : collection;
    return this.http.call('PROPFIND', what, async (attempt) => {
      const target = this.http.target(collection);
      const headers = { depth: '1', 'content-type': 'application/xml; charset=utf-8' };
      const response = await this.http.send({ method: 'PROPFIND', target, headers, body: PROPFIND_BODY }, attempt);
      const status = response.statusCode ?? 0;
      if (status === 404) return drained(response, []);
      if (status === 405 || status === 501) {
        response.resume();
        throw new StoreError(
          `cannot list ${what} at ${this.url}: the server answers PROPFIND with HTTP ${status} (no WebDAV listing); ` +
            'publishers need one for their lease, and rezfs gc and sync to this store to walk it: enable WebDAV (PROPFIND) on the repository',
        );
      }
      if (status !== 207) throw this.http.failed(response, 'PROPFIND', what);
      return parseMultistatus(await this.http.body(response, attempt, `PROPFIND ${what}`), target);
    });
  }

  /**
   * One PUT, with the collections it needs created if the server says they are missing (409). Resolves 'changed'
   * when a condition failed (412).
   */
  private async upload(key: string, body: RequestBody, headers: Record<string, string>): Promise<UploadOutcome> {
    const size = Buffer.isBuffer(body) ? body.length : body.size;
    for (let madeParents = false; ; madeParents = true) {
      let sourceError: unknown;
      const outcome = await this.http
        .call(
          'PUT',
          key,
          async (attempt) => {
            sourceError = undefined;
            const request = { method: 'PUT', target: this.http.target(key), headers: { 'content-type': 'application/octet-stream', ...headers }, body };
            const response = await this.http.send(request, attempt, (err) => (sourceError = err));
            return this.putAnswer(response, key, madeParents);
          },
          size,
        )
        .catch((err: unknown) => {
          throw sourceError ?? err;
        });
      if (outcome !== 'no parent') return outcome;
      await this.ensureCollection(parentPath(this.http.target(key).pathname));
    }
  }

  private async putAnswer(response: IncomingMessage, key: string, madeParents: boolean): Promise<UploadOutcome | 'no parent'> {
    const status = response.statusCode ?? 0;
    if (status >= 200 && status < 300) return drained(response, 'stored');
    if (status === 412) return drained(response, 'changed');
    if (status === 409 && !madeParents) return drained(response, 'no parent');
    if (REFUSALS.has(status)) {
      response.resume();
      throw await this.refusal(status, 'PUT', key);
    }
    throw this.http.failed(response, 'PUT', key);
  }

  /** Creates the collection at `path` (absolute, ending in `/`) and, first, any missing above it. */
  private ensureCollection(path: string): Promise<void> {
    let pending = this.creating.get(path);
    if (!pending) {
      pending = this.makeCollection(path).finally(() => this.creating.delete(path));
      this.creating.set(path, pending);
    }
    return pending;
  }

  private async makeCollection(path: string): Promise<void> {
    let status: number;
    try {
      status = await this.mkcol(path);
      if (status === 409 && path !== '/') {
        await this.ensureCollection(parentPath(path));
        status = await this.mkcol(path);
      }
    } catch (err) {
      // mod_dav looks for the collection before it creates it, not atomically with it: of publishers racing to make
      // one, a loser can be answered 403 for a collection that another has just made.
      if (await this.isCollection(path)) return;
      throw err;
    }
    // 201 made it; 405 is RFC 4918's answer for a collection that exists already (another writer's, just now).
    if (status === 201 || status === 405 || (await this.isCollection(path))) return;
    throw await this.refusal(status, 'MKCOL', path);
  }

  /** Whether the collection at `path` exists now (HEAD answers 2xx); false when that is unknown too. */
  private async isCollection(path: string): Promise<boolean> {
    const status = await this.headStatus(new URL(path, this.http.base));
    return status !== undefined && status >= 200 && status < 300;
  }

  /** The status a HEAD of `target` is answered with, or undefined when it is not answered. */
  private headStatus(target: URL): Promise<number | undefined> {
    return this.http
      .call('HEAD', target.pathname, async (attempt) => {
        const response = await this.http.send({ method: 'HEAD', target }, attempt);
        response.resume();
        return response.statusCode;
      })
      .catch(() => undefined);
  }

  private mkcol(path: string): Promise<number> {
    return this.http.call('MKCOL', path, async (attempt) => {
      const response = await this.http.send({ method: 'MKCOL', target: new URL(path, this.http.base) }, attempt);
      const status = response.statusCode ?? 0;
      if (status === 201 || status === 405 || status === 409 || REFUSALS.has(status)) return drained(response, status);
      throw this.http.failed(response, 'MKCOL', path);
    });
  }

  /**
   * Why a write was refused for good, told apart by one more question: does the collection the store's URL sits
   * in exist? If not, the URL names no repository; if so, that repository takes no uploads.
   */
  private async refusal(status: number, method: string, key: string): Promise<WriteRefusedError> {
    const parent = new URL('..', this.http.base);
    const answered = `HTTP ${status} to ${method} ${key}`;
    const parentStatus = await this.headStatus(parent);
    const exists = parentStatus !== 404 && parentStatus !== 410; // unknown: say what is sure
    if (!exists) {
      return new WriteRefusedError(
        this.url,
        `there is no repository at ${parent.href} (${answered}; HTTP 404 to HEAD ${parent.pathname}): check the repository's name in the URL, or create the repository on the server first`,
      );
    }
    return new WriteRefusedError(
      this.url,
      `the server takes no uploads there (${answered}): the URL must name a WebDAV share or a local (hosted) repository that accepts deploys, ` +
        `not a remote, virtual or read-only one; to only read it, use ${this.url.replace(/^dav\+/, '')}`,
    );
  }

  /**
   * The ETag to send in If-Match. mod_dav calls an ETag weak for the first second after a write (the file could
   * change again within its mtime's resolution), and If-Match compares strongly: a weak tag never matches. So wait
   * until the server calls the same version strong; undefined when the object changed meanwhile.
   */
  private async comparableEtag(key: string, expected: string): Promise<string | undefined> {
    if (!expected.startsWith('W/')) return expected;
    const deadline = Date.now() + WEAK_ETAG_WAIT_MS;
    while (Date.now() < deadline) {
      await sleep(WEAK_ETAG_POLL_MS);
      const now = (await this.head(key))?.etag;
      if (now === expected) continue;
      return now === expected.slice(2) ? now : undefined;
    }
    return expected; // a server whose tags stay weak: let it judge
  }
}

/** Drains an answer whose body says nothing more than its status. */
function drained<T>(response: IncomingMessage, value: T): T {
  response.resume();
  return value;
}

function checksum(sha256: string): Record<string, string> {
  return { 'x-checksum-sha256': sha256 };
}

/** `/a/b/c` or `/a/b/c/` -> `/a/b/`. */
function parentPath(path: string): string {
  const trimmed = path.replace(/\/$/, '');
  return trimmed.slice(0, trimmed.lastIndexOf('/') + 1) || '/';
}

/**
 * The members of a WebDAV `multistatus` answer (RFC 4918 §14.16), by namespace (servers choose their own prefixes).
 * `hrefs` may be paths or absolute URLs; they are resolved against the request's URL and percent-decoded.
 */
export function parseMultistatus(xml: Buffer, requested: URL): DavEntry[] {
  const parser = sax.parser(true, { xmlns: true, trim: false });
  const entries: DavEntry[] = [];
  const open: string[] = [];
  let current: { href?: string; collection: boolean; size?: number; modifiedMs?: number } | undefined;
  let text = '';
  let failure: Error | undefined;
  parser.onerror = (err) => {
    failure ??= err;
    parser.resume();
  };
  parser.onopentag = (tag) => {
    const { uri, local } = tag as sax.QualifiedTag;
    const name = uri === 'DAV:' ? local : `{${uri}}${local}`;
    open.push(name);
    text = '';
    if (name === 'response') current = { collection: false };
    else if (name === 'collection' && current && open.at(-2) === 'resourcetype') current.collection = true;
  };
  parser.ontext = (chunk) => (text += chunk);
  parser.oncdata = (chunk) => (text += chunk);
  parser.onclosetag = () => {
    const name = open.pop();
    const value = text.trim();
    text = '';
    if (!current) return;
    if (name === 'href' && open.at(-1) === 'response') current.href = value;
    else if (name === 'getcontentlength' && value !== '') current.size = Number(value);
    else if (name === 'getlastmodified' && value !== '') current.modifiedMs = Date.parse(value);
    else if (name === 'response') {
      if (current.href !== undefined) {
        entries.push({
          path: decodeURIComponent(new URL(current.href, requested).pathname),
          collection: current.collection,
          size: current.size ?? 0,
          modifiedMs: Number.isFinite(current.modifiedMs) ? current.modifiedMs! : 0,
        });
      }
      current = undefined;
    }
  };
  parser.write(xml.toString('utf8')).close();
  if (failure) throw new StoreError(`unreadable WebDAV listing from ${requested.origin}: ${failure.message.split('\n')[0]}`);
  return entries;
}
