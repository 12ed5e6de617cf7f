import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { ObjectNotFoundError, StoreError, type ObjectInfo, type ObjectStore } from './types.js';

const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 4;

export interface S3StoreOptions {
  bucket: string;
  prefix: string;
  /** Path-style addressing (`endpoint/bucket/key`) for MinIO, Ceph and s3rver. */
  forcePathStyle: boolean;
  /** Per-request timeouts in milliseconds. */
  connectTimeoutMs: number;
  requestTimeoutMs: number;
}

/**
 * An S3-compatible bucket. Endpoint, region and credentials come from the standard AWS chain
 * (AWS_ENDPOINT_URL, AWS_REGION, profiles, environment, instance roles).
 */
export class S3Store implements ObjectStore {
  readonly url: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix === '' ? '' : `${options.prefix.replace(/\/+$/, '')}/`;
    this.url = `s3://${options.bucket}/${this.prefix}`;
    // The locked SDK supports Node 20; its notice about future releases is not for rezfs's users.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({
      forcePathStyle: options.forcePathStyle,
      region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
      // Checksums only where S3 requires them: S3-compatible servers differ in what else they accept.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: options.connectTimeoutMs, requestTimeout: options.requestTimeoutMs },
      maxAttempts: 3,
    });
  }

  private keyOf(key: string): string {
    return this.prefix + key;
  }

  async get(key: string): Promise<Buffer> {
    return this.fetch(key);
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer> {
    if (end <= start) return Buffer.alloc(0);
    return this.fetch(key, start, end);
  }

  private async fetch(key: string, start?: number, end?: number): Promise<Buffer> {
    const ranged = start !== undefined && end !== undefined;
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.keyOf(key),
          Range: ranged ? `bytes=${start}-${end - 1}` : undefined,
        }),
      );
      if (!response.Body) throw new StoreError(`empty response for ${key} from ${this.url}`);
      const bytes = await response.Body.transformToByteArray();
      const body = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength); // a view, not a copy
      return ranged ? requestedPart(body, response.ContentRange, start, end) : body;
    } catch (err) {
      throw this.translate(err, key);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key) }));
      return { size: response.ContentLength ?? 0, etag: response.ETag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.translate(err, key);
    }
  }

  async put(key: string, body: Buffer): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key), Body: body }));
    } catch (err) {
      throw this.translate(err, key);
    }
  }

  /** Small objects in one PUT; large ones as a multipart upload that is aborted if the source fails. */
  async putStream(key: string, source: AsyncIterable<Buffer>): Promise<void> {
    const parts = partition(source, PART_SIZE);
    const first = await parts.next();
    const second = first.done ? undefined : await parts.next();
    if (first.done || second?.done) {
      await this.put(key, first.done ? Buffer.alloc(0) : first.value);
      return;
    }
    const created = await this.client
      .send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.keyOf(key) }))
      .catch((err: unknown) => {
        throw this.translate(err, key);
      });
    const uploadId = created.UploadId;
    try {
      const completed: CompletedPart[] = [];
      const inFlight = new Set<Promise<void>>();
      let partNumber = 0;
      const upload = (body: Buffer) => {
        const number = ++partNumber;
        const task = this.client
          .send(new UploadPartCommand({ Bucket: this.bucket, Key: this.keyOf(key), UploadId: uploadId, PartNumber: number, Body: body }))
          .then((res) => {
            completed.push({ PartNumber: number, ETag: res.ETag });
          })
          .finally(() => inFlight.delete(task));
        inFlight.add(task);
      };
      upload(first.value);
      upload(second!.value as Buffer);
      for (let next = await parts.next(); !next.done; next = await parts.next()) {
        if (inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(inFlight);
        upload(next.value);
      }
      await Promise.all(inFlight);
      completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: this.keyOf(key),
          UploadId: uploadId,
          MultipartUpload: { Parts: completed },
        }),
      );
    } catch (err) {
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.keyOf(key), UploadId: uploadId }))
        .catch(() => undefined);
      throw err instanceof StoreError || !(err instanceof S3ServiceException) ? err : this.translate(err, key);
    }
  }

  async putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.keyOf(key),
          Body: body,
          ...(expected === null ? { IfNoneMatch: '*' } : { IfMatch: expected }),
        }),
      );
      return true;
    } catch (err) {
      const status = (err as S3ServiceException).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) return false;
      throw this.translate(err, key);
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    let token: string | undefined;
    do {
      const page = await this.client
        .send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.keyOf(prefix), ContinuationToken: token }))
        .catch((err: unknown) => {
          throw this.translate(err, prefix);
        });
      for (const object of page.Contents ?? []) {
        if (object.Key) yield object.Key.slice(this.prefix.length);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private translate(err: unknown, key: string): Error {
    if (err instanceof StoreError) return err;
    if (isNotFound(err)) return new ObjectNotFoundError(this.url, key);
    const status = (err as S3ServiceException).$metadata?.httpStatusCode;
    const detail = status ? `HTTP ${status} ${(err as Error).name}` : (err as Error).message;
    return new StoreError(`${key} at ${this.url}: ${detail}`, { cause: err });
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as S3ServiceException;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

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

/** Regroups a byte stream into buffers of exactly `size` bytes (the last one shorter). */
async function* partition(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    let rest = chunk;
    while (pendingBytes + rest.length >= size) {
      const take = size - pendingBytes;
      pending.push(rest.subarray(0, take));
      yield Buffer.concat(pending);
      rest = rest.subarray(take);
      pending = [];
      pendingBytes = 0;
    }
    if (rest.length > 0) {
      pending.push(rest);
      pendingBytes += rest.length;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending);
}
