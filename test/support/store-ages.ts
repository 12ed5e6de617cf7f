/**
 * Makes store objects look old. Grace periods are days long and the test cannot wait that long, so it moves the
 * objects' modification times back in the backends' own data: a file store's files, or s3rver's object files
 * (s3rver answers Last-Modified from the mtime of `<dataDir>/<bucket>/<key dirs>/<name>._S3rver_object`).
 */
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';

export const DAY_MS = 86_400_000;

/** The file that holds `key` in a file:// store rooted at `root`. */
export function fileStorePath(root: string, key: string): string {
  return join(root, ...key.split('/'));
}

/** The file that holds `key` (the full key, store prefix included) in s3rver's data directory. */
export function s3rverObjectPath(dataDir: string, bucket: string, key: string): string {
  const parts = key.split('/');
  const name = parts.pop()!;
  return join(dataDir, bucket, ...parts, `${name}._S3rver_object`);
}

/** Sets each file's mtime to `ageMs` before now. */
export async function backdate(paths: readonly string[], ageMs: number): Promise<void> {
  const when = new Date(Date.now() - ageMs);
  for (const path of paths) await utimes(path, when, when);
}
