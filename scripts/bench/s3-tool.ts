// S3 helper for scripts/bench: raw baselines and bulk copies, straight through @aws-sdk/client-s3, in a process of its
// own (vite-node scripts/bench/s3-tool.ts -- <command> ...) so its CPU and memory are not the driver's. Endpoint and
// credentials come from the AWS_* environment (as for rezfs itself). Prints one JSON line; every timing in it
// (`seconds`) is of the S3 work alone, the process's start-up excluded.
//   get <bucket> <key>                         one GetObject, body streamed and discarded   -> {bytes, seconds}
//   get-keep <bucket> <key> <dir> <block>      one GetObject, body cut into <block>-byte blocks, each sha256-hashed
//                                              and written to <dir>: what any verifying, caching reader must do,
//                                              without FUSE                                  -> {bytes, seconds}
//   multipart <bucket> <key> <file>            CreateMultipartUpload + UploadPart (8 MiB parts, 4 in flight) + Complete
//                                                                                            -> {bytes, parts, seconds}
//   put-dir <bucket> <prefix> <dir> [inflight [markers]]  every file below <dir> as <prefix>/<relative path>;
//                                              with `markers`, every directory also as an empty <prefix>/<dir>/ object
//                                                                                            -> {objects, bytes, seconds}
//   rm <bucket> <prefix>                       delete every object under <prefix>                -> {objects}
//   ls <bucket> <prefix>                       [{key, size}] of every object under <prefix>
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Readable } from 'node:stream';

/** What `get`, `get-keep` and `multipart` print. */
export interface Transfer {
  bytes: number;
  seconds: number;
  parts?: number;
}
/** What `put-dir` prints. */
export interface Copy {
  objects: number;
  bytes: number;
  seconds: number;
}
/** One entry of what `ls` prints. */
export interface Listed {
  key: string;
  size: number;
}

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const PART_SIZE = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 4;

const client = new S3Client({
  forcePathStyle: true,
  region: process.env.AWS_REGION ?? 'us-east-1',
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});

async function get(bucket: string, key: string): Promise<Transfer> {
  const t0 = performance.now();
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  let bytes = 0;
  for await (const chunk of res.Body as Readable) bytes += (chunk as Buffer).length;
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

async function getKeep(bucket: string, key: string, dir: string, blockSize: string): Promise<Transfer> {
  const size = Number(blockSize);
  await mkdir(dir, { recursive: true });
  const t0 = performance.now();
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const writes = new Set<Promise<void>>();
  const keep = async (block: Buffer) => {
    const name = createHash('sha256').update(block).digest('hex');
    const write = writeFile(join(dir, name), block).finally(() => writes.delete(write));
    writes.add(write);
    if (writes.size >= 8) await Promise.race(writes);
  };
  let bytes = 0;
  let block = Buffer.allocUnsafe(size);
  let filled = 0;
  for await (const chunk of res.Body as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    for (let at = 0; at < chunk.length; ) {
      const n = chunk.copy(block, filled, at);
      at += n;
      filled += n;
      if (filled === size) {
        await keep(block);
        block = Buffer.allocUnsafe(size);
        filled = 0;
      }
    }
  }
  if (filled > 0) await keep(block.subarray(0, filled));
  await Promise.all(writes);
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

/** The file in PART_SIZE buffers, in order. */
async function* parts(file: string): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    pending.push(chunk);
    size += chunk.length;
    while (size >= PART_SIZE) {
      const all = Buffer.concat(pending);
      yield all.subarray(0, PART_SIZE);
      pending = [all.subarray(PART_SIZE)];
      size = pending[0]!.length;
    }
  }
  if (size > 0) yield Buffer.concat(pending);
}

async function multipart(bucket: string, key: string, file: string): Promise<Transfer> {
  const t0 = performance.now();
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const done: { PartNumber: number; ETag: string | undefined }[] = [];
  const inFlight = new Set<Promise<void>>();
  let number = 0;
  let bytes = 0;
  for await (const body of parts(file)) {
    if (inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(inFlight);
    const PartNumber = ++number;
    bytes += body.length;
    const task = client
      .send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber, Body: body }))
      .then((r) => {
        done.push({ PartNumber, ETag: r.ETag });
      })
      .finally(() => inFlight.delete(task));
    inFlight.add(task);
  }
  await Promise.all(inFlight);
  done.sort((a, b) => a.PartNumber - b.PartNumber);
  await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: done } }));
  return { bytes, parts: number, seconds: (performance.now() - t0) / 1000 };
}

/** Files below `dir`, and each directory as `<path>/` (for its marker object). */
async function* walk(dir: string, markers: boolean): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (markers) yield `${path}/`;
      yield* walk(path, markers);
    } else if (entry.isFile()) yield path;
  }
}

async function pool<T>(items: AsyncIterable<T> | Iterable<T>, limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const it: AsyncIterator<T> | Iterator<T> = Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : items[Symbol.iterator]();
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let next = await it.next(); !next.done; next = await it.next()) await work(next.value);
    }),
  );
}

async function putDir(bucket: string, prefix: string, dir: string, inflight = '32', markers = ''): Promise<Copy> {
  const t0 = performance.now();
  let objects = 0;
  let bytes = 0;
  // With `markers`, directories get an empty `dir/` marker object, as s3fs and the S3 console create them: s3rver's delimiter
  // listing (which s3fs and rclone use) does not find keys nested below a level that has no object of its own.
  await pool(walk(dir, markers === 'markers'), Number(inflight), async (path) => {
    const marker = path.endsWith('/');
    const body = marker ? Buffer.alloc(0) : await readFile(path);
    const key = `${prefix.replace(/\/+$/, '')}/${relative(dir, path)}${marker ? '/' : ''}`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    objects++;
    bytes += body.length;
  });
  return { objects, bytes, seconds: (performance.now() - t0) / 1000 };
}

async function rm(bucket: string, prefix: string): Promise<{ objects: number }> {
  let objects = 0;
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    await pool((page.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : [])), 16, async (Key) => {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
      objects++;
    });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { objects };
}

async function ls(bucket: string, prefix: string): Promise<Listed[]> {
  const objects: Listed[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? []) objects.push({ key: o.Key ?? '', size: o.Size ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return objects;
}

type Command = (...args: string[]) => Promise<unknown>;
const commands: Record<string, Command> = { get, 'get-keep': getKeep, multipart, 'put-dir': putDir, rm, ls };
const [command, ...args] = process.argv.slice(2).filter((a) => a !== '--');
const run = command === undefined ? undefined : commands[command];
if (!run) {
  process.stderr.write(`usage: s3-tool.ts get|get-keep|multipart|put-dir|rm|ls ...\n`);
  process.exit(2);
}
try {
  const result = await run(...args);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  client.destroy();
} catch (err) {
  process.stderr.write(`s3-tool ${command}: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(1);
}
