import type { Readable } from 'node:stream';
import { requestedPart } from './responses.js';
import { withRetries, type OriginPressure, type RetryPolicy } from './retry.js';
import { StoreTimeoutError, TransientStoreError, type StoreError } from './types.js';

/** Per-attempt limits of a network store request: a request never waits on a dead or crawling peer. */
export interface StoreTimeouts {
  /** TCP connect. */
  connectTimeoutMs: number;
  /** From sending the request to the response headers (for uploads, plus the time the body may take; see below). */
  firstByteTimeoutMs: number;
  /** A body that brings fewer than `stallMinBytes` in any `stallWindowMs` is stalled: a timeout like any other. */
  stallWindowMs: number;
  stallMinBytes: number;
}

/**
 * With DEFAULT_RETRY's 4 attempts a dead-silent store costs about 4 x 5 s plus backoff, inside the mount's
 * default 30 s read deadline; a mirror set (2 attempts per store) fails over in about 10 s.
 */
export const DEFAULT_TIMEOUTS: StoreTimeouts = {
  connectTimeoutMs: 5_000,
  firstByteTimeoutMs: 5_000,
  stallWindowMs: 5_000,
  stallMinBytes: 8 * 1024,
};

/**
 * Judges consecutive windows of `windowMs`: a whole window with fewer than `minBytes` is a stall. Pure (time is
 * passed in) so the rule is testable without a network; a partial window is never judged.
 */
export class StallDetector {
  private windowStart: number;
  private bytes = 0;

  constructor(private readonly windowMs: number, private readonly minBytes: number, nowMs: number) {
    this.windowStart = nowMs;
  }

  record(bytes: number): void {
    this.bytes += bytes;
  }

  stalled(nowMs: number): boolean {
    if (nowMs - this.windowStart < this.windowMs) return false;
    if (this.bytes < this.minBytes) return true;
    this.windowStart = nowMs;
    this.bytes = 0;
    return false;
  }
}

/** What a guarded request reports to its watchdog, and how the watchdog stops it. */
export interface Attempt {
  readonly signal: AbortSignal;
  /** The response headers are in: the first-byte timer stops and the stall detector starts. */
  responded(): void;
  /** Body bytes arrived. */
  received(bytes: number): void;
}

/**
 * How long an upload may take to be answered: the first-byte timeout plus the time `bytes` need at the slowest
 * rate that is not a stall. Upload progress is invisible through the SDK, so this bound stands in for the detector.
 */
export function uploadAllowanceMs(timeouts: StoreTimeouts, bytes: number): number {
  return timeouts.firstByteTimeoutMs + Math.ceil(bytes / timeouts.stallMinBytes) * timeouts.stallWindowMs;
}

/**
 * The slowest rate at which a server may put an uploaded object together (CompleteMultipartUpload: s3rver, for
 * one, copies every part into place before it answers) without being taken for dead.
 */
export const ASSEMBLY_MIN_BYTES_PER_SECOND = 8 * 1024 * 1024;

/** How long a request that makes the server assemble `bytes` (a multipart completion) may take to be answered. */
export function assemblyAllowanceMs(timeouts: StoreTimeouts, bytes: number): number {
  return timeouts.firstByteTimeoutMs + Math.ceil((bytes / ASSEMBLY_MIN_BYTES_PER_SECOND) * 1000);
}

/**
 * Runs one request attempt under a first-byte timer and, once it has responded, a stall detector. Either
 * aborts `attempt.signal`; the attempt then fails with the StoreTimeoutError naming `what`, whatever error the
 * aborted I/O raised.
 */
export async function guarded<T>(timeouts: StoreTimeouts, what: string, run: (attempt: Attempt) => Promise<T>, firstByteMs = timeouts.firstByteTimeoutMs): Promise<T> {
  const controller = new AbortController();
  const stop = (message: string) => controller.abort(new StoreTimeoutError(`${what}: ${message}`));
  const firstByte = setTimeout(() => stop(`no response within ${firstByteMs} ms`), firstByteMs);
  let stallCheck: NodeJS.Timeout | undefined;
  let detector: StallDetector | undefined;
  const attempt: Attempt = {
    signal: controller.signal,
    responded() {
      clearTimeout(firstByte);
      if (detector) return;
      detector = new StallDetector(timeouts.stallWindowMs, timeouts.stallMinBytes, Date.now());
      // Checked several times per window so a stall is caught within about 1.25 windows.
      stallCheck = setInterval(() => {
        if (detector!.stalled(Date.now())) {
          stop(`stalled: fewer than ${timeouts.stallMinBytes} bytes in ${timeouts.stallWindowMs} ms`);
        }
      }, Math.max(1, timeouts.stallWindowMs / 4));
    },
    received(bytes) {
      detector?.record(bytes);
    },
  };
  try {
    return await run(attempt);
  } catch (err) {
    throw controller.signal.aborted ? (controller.signal.reason as Error) : err;
  } finally {
    clearTimeout(firstByte);
    clearInterval(stallCheck);
  }
}

/**
 * Reads a response body, feeding the watchdog. Stops early once `limit` bytes are in (a server that ignored
 * Range need not send the rest). A body that ends short of `expectedLength` is truncated: transient.
 */
export async function readBody(body: Readable, attempt: Attempt, what: string, options: { expectedLength?: number; limit?: number } = {}): Promise<Buffer> {
  const onAbort = () => body.destroy();
  attempt.signal.addEventListener('abort', onAbort, { once: true });
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      attempt.received(chunk.length);
      chunks.push(chunk);
      total += chunk.length;
      if (options.limit !== undefined && total >= options.limit) return Buffer.concat(chunks, total); // loop exit destroys the body
    }
  } finally {
    attempt.signal.removeEventListener('abort', onAbort);
  }
  if (options.expectedLength !== undefined && total !== options.expectedLength) {
    throw new TransientStoreError(`${what}: body truncated at ${total} of ${options.expectedLength} bytes`);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}

/** The body of a GET: the whole object, or bytes [start, end) of it. */
export async function readObjectBody(
  body: Readable,
  attempt: Attempt,
  what: string,
  answer: { contentLength: number | undefined; contentRange: string | undefined },
  range?: { start: number; end: number },
): Promise<Buffer> {
  if (!range) return readBody(body, attempt, what, { expectedLength: answer.contentLength });
  // A server that ignored Range (plain HTTP servers may; s3rver does for bytes=0-0) sends from byte 0: `end` bytes do.
  const limit = answer.contentRange === undefined ? range.end : undefined;
  const bytes = await readBody(body, attempt, what, { expectedLength: answer.contentLength, limit });
  return requestedPart(bytes, answer.contentRange, range.start, range.end);
}

export interface RequestPolicy {
  timeouts: StoreTimeouts;
  retry: RetryPolicy;
  /** Shared with the mount's other requests to this store: turn-taking and backoff (see OriginPressure). */
  pressure?: OriginPressure;
}

/** What stretches a request's first-byte timeout: a body it sends, or an object the server must assemble. */
export interface RequestWork {
  uploadBytes?: number;
  assembledBytes?: number;
}

/** The first-byte timeout of a request doing `work`. */
export function firstByteAllowanceMs(timeouts: StoreTimeouts, work: RequestWork = {}): number {
  const upload = work.uploadBytes === undefined ? timeouts.firstByteTimeoutMs : uploadAllowanceMs(timeouts, work.uploadBytes);
  const assembly = work.assembledBytes === undefined ? timeouts.firstByteTimeoutMs : assemblyAllowanceMs(timeouts, work.assembledBytes);
  return Math.max(upload, assembly);
}

/**
 * One store operation: each attempt under the watchdog, its failure typed by `translate`, transient failures
 * retried per the policy. `work` stretches the first-byte timeout (see firstByteAllowanceMs).
 */
export function resilient<T>(
  policy: RequestPolicy,
  what: string,
  run: (attempt: Attempt) => Promise<T>,
  translate: (err: unknown) => StoreError,
  work?: RequestWork,
): Promise<T> {
  const firstByteMs = firstByteAllowanceMs(policy.timeouts, work);
  return withRetries(
    policy.retry,
    () =>
      guarded(policy.timeouts, what, run, firstByteMs).catch((err: unknown) => {
        throw translate(err);
      }),
    { pressure: policy.pressure },
  );
}
