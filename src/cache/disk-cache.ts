import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlockCache } from './block-cache.js';

/**
 * Verified blocks on local disk under `<dir>/blocks/<aa>/<sha256>`. Each block is written to a temp
 * file and renamed into place, so a crash never leaves a torn block under its final name, and
 * several mounts can share one directory.
 */
export class DiskBlockCache implements BlockCache {
  private readonly blocksDir: string;

  constructor(readonly dir: string) {
    this.blocksDir = join(dir, 'blocks');
  }

  private pathOf(sha256: string): string {
    return join(this.blocksDir, sha256.slice(0, 2), sha256);
  }

  async get(sha256: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.pathOf(sha256));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async put(sha256: string, data: Buffer): Promise<void> {
    const target = this.pathOf(sha256);
    const dir = join(this.blocksDir, sha256.slice(0, 2));
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await writeFile(tmp, data);
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async delete(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }
}
