import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileStore } from './file-store.js';
import { S3Store } from './s3-store.js';
import { StoreError, type ObjectStore } from './types.js';

export interface StoreTimeouts {
  connectTimeoutMs: number;
  requestTimeoutMs: number;
}

export const DEFAULT_TIMEOUTS: StoreTimeouts = { connectTimeoutMs: 5_000, requestTimeoutMs: 20_000 };

export class StoreUrlError extends StoreError {
  constructor(url: string, why: string) {
    super(`bad store URL ${JSON.stringify(url)}: ${why}; use file:///abs/dir or s3://bucket/prefix`);
    this.name = 'StoreUrlError';
  }
}

/**
 * Opens a store by URL: `file:///abs/dir`, or `s3://bucket/prefix` (path-style unless
 * REZFS_S3_PATH_STYLE=0, since a custom endpoint is usually MinIO, Ceph or s3rver; AWS itself accepts
 * path-style too).
 */
export function openStore(url: string, timeouts: StoreTimeouts = DEFAULT_TIMEOUTS): ObjectStore {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreUrlError(url, 'not a URL');
  }
  switch (parsed.protocol) {
    case 'file:': {
      const dir = fileURLToPath(parsed);
      if (!isAbsolute(dir)) throw new StoreUrlError(url, 'the directory must be absolute');
      return new FileStore(dir.replace(/\/+$/, '') || '/');
    }
    case 's3:': {
      if (!parsed.hostname) throw new StoreUrlError(url, 'no bucket');
      return new S3Store({
        bucket: parsed.hostname,
        prefix: decodeURIComponent(parsed.pathname.replace(/^\/+/, '')),
        forcePathStyle: process.env.REZFS_S3_PATH_STYLE !== '0',
        ...timeouts,
      });
    }
    default:
      throw new StoreUrlError(url, `unsupported scheme ${parsed.protocol}`);
  }
}
