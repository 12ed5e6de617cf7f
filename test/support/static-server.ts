/**
 * A minimal static HTTP origin for the http(s):// store tests: GET and HEAD of the files under a directory, one
 * byte range per request (`bytes=a-b`, `bytes=a-`, `bytes=-n`; 416 when unsatisfiable), a strong ETag that changes
 * with each write (size, mtime, inode: a file store's rename makes a new inode), a request log.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface StaticRequest {
  method: string;
  /** Decoded URL path, e.g. `/packs/ab12`. */
  path: string;
  range?: string;
  authorization?: string;
  status?: number;
}

export interface StaticServer {
  /** e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  requests: StaticRequest[];
  stop(): Promise<void>;
}

/** [start, end] inclusive for a single-range header against `size`; undefined = ignore; null = unsatisfiable. */
export function parseRange(header: string | undefined, size: number): [number, number] | undefined | null {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  const [start, end] = m[1] === '' ? [Math.max(0, size - Number(m[2])), size - 1] : [Number(m[1]), m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)];
  return start >= size || start > end ? null : [start, end];
}

export async function startStaticServer(root: string): Promise<StaticServer> {
  const requests: StaticRequest[] = [];
  const server = http.createServer((req, res) => {
    const entry: StaticRequest = { method: req.method ?? 'GET', path: decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname) };
    if (req.headers.range) entry.range = req.headers.range;
    if (req.headers.authorization) entry.authorization = req.headers.authorization;
    requests.push(entry);
    const answer = (status: number, headers: http.OutgoingHttpHeaders = {}) => {
      entry.status = status;
      res.writeHead(status, headers);
    };
    const file = path.join(root, entry.path);
    if (entry.path.split('/').includes('..') || (entry.method !== 'GET' && entry.method !== 'HEAD')) {
      answer(400);
      res.end();
      return;
    }
    stat(file).then(
      (info) => {
        if (!info.isFile()) throw new Error('not a file');
        const common = { etag: `"${info.size.toString(16)}-${info.mtimeMs.toString(16)}-${info.ino.toString(16)}"`, 'accept-ranges': 'bytes' };
        const range = parseRange(entry.range, info.size);
        if (range === null) {
          answer(416, { ...common, 'content-range': `bytes */${info.size}` });
          res.end();
          return;
        }
        const [start, end] = range ?? [0, info.size - 1];
        const headers = { ...common, 'content-length': String(Math.max(0, end - start + 1)) };
        if (range) answer(206, { ...headers, 'content-range': `bytes ${start}-${end}/${info.size}` });
        else answer(200, headers);
        if (entry.method === 'HEAD' || info.size === 0) res.end();
        else createReadStream(file, { start, end }).pipe(res);
      },
      () => {
        answer(404, { 'content-length': '0' });
        res.end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
