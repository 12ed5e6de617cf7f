/** What the S3 and HTTP stores share about HTTP answers: ranges, status codes, network failures. */
import { parseRetryAfter } from './retry.js';
import { ObjectNotFoundError, StoreAccessError, StoreError, StoreMissingError, StoreTimeoutError, TransientStoreError } from './types.js';

/**
 * The requested bytes out of a ranged response. Servers may answer more than was asked (the whole
 * object with HTTP 200, or a wider range); Content-Range says where the body starts.
 */
export function requestedPart(body: Buffer, contentRange: string | undefined, start: number, end: number): Buffer {
  const bodyStart = contentRange ? Number(/^bytes (\d+)-/.exec(contentRange)?.[1] ?? NaN) : 0;
  const from = start - bodyStart;
  if (!Number.isFinite(from) || from < 0 || from > body.length) {
    throw new StoreError(`server answered range ${contentRange ?? '(none)'} for requested bytes ${start}-${end - 1}`);
  }
  return body.subarray(from, from + (end - start));
}

/** S3 error codes that mean "slow down", whatever status carried them. */
const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequestsException', 'RequestThrottled']);
/** S3 error codes that are worth another attempt. */
const TRANSIENT_CODES = new Set([...THROTTLING, 'RequestTimeout', 'InternalError', 'ServiceUnavailable']);

export interface FailedAnswer {
  status: number;
  storeUrl: string;
  key: string;
  /** e.g. "GET" or "HEAD". */
  method: string;
  /** The server's error code (S3 `Code`), if any. */
  code?: string;
  retryAfter?: string;
  /** Where the store takes its credentials from, for the access-denied message. */
  credentialSource?: string;
}

/**
 * A typed error for a non-success answer. Neither the server's message nor the SDK's error object is kept: they
 * may echo request details, and an SDK error leads to the request's headers (a session token among them).
 */
export function errorForStatus(answer: FailedAnswer): StoreError {
  const { status, storeUrl, key, code } = answer;
  const detail = `HTTP ${status}${code ? ` ${code}` : ''}`;
  const what = `${answer.method} ${key}`;
  if (status === 404 && code === 'NoSuchBucket') return new StoreMissingError(storeUrl, 'no such bucket');
  if (status === 404) return new ObjectNotFoundError(storeUrl, key);
  if (status === 401 || status === 403) return new StoreAccessError(storeUrl, what, detail, answer.credentialSource);
  const throttled = status === 503 || status === 429 || (code !== undefined && THROTTLING.has(code));
  if (throttled || status === 408 || (status >= 500 && status !== 501) || (code !== undefined && TRANSIENT_CODES.has(code))) {
    return new TransientStoreError(`${what} at ${storeUrl}: ${detail}`, {
      throttled,
      retryAfterMs: parseRetryAfter(answer.retryAfter, Date.now()),
    });
  }
  return new StoreError(`${what} at ${storeUrl}: ${detail}`);
}

/** Socket-level failures that say nothing about the object: another attempt (or mirror) may succeed. */
const TRANSIENT_NETWORK = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN',
  'EAI_AGAIN', 'ENOTFOUND', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET',
]);

/** TLS verification failures that a site's own CA, trusted through NODE_EXTRA_CA_CERTS, would cure. */
const UNTRUSTED_CERTIFICATE = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);

/**
 * A failure without an HTTP answer, as a store error. Only the error's code and Node's own message are kept
 * (they name hosts and ports, never headers or userinfo); the original is dropped for the same reason.
 */
export function networkError(err: unknown, storeUrl: string, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const e = err as Partial<NodeJS.ErrnoException>;
  const message = `${what} at ${storeUrl}: ${e.code ?? e.name ?? 'error'}${e.message ? ` (${e.message})` : ''}`;
  if (e.name === 'TimeoutError') return new StoreTimeoutError(message); // the AWS SDK's connect timeout
  if (e.code !== undefined && TRANSIENT_NETWORK.has(e.code)) return new TransientStoreError(message);
  if (e.code !== undefined && UNTRUSTED_CERTIFICATE.has(e.code)) {
    return new StoreError(`${message}; if the server's certificate is signed by your own CA, point NODE_EXTRA_CA_CERTS at its PEM bundle`);
  }
  return new StoreError(message);
}

/** A lookup that answers "absent" rather than throwing ObjectNotFoundError (what head() promises). */
export async function unlessNotFound<T>(lookup: Promise<T>): Promise<T | undefined> {
  try {
    return await lookup;
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}
