/**
 * Startup profiles a mount recorded, kept under its cache dir (`profiles/<store id>/<manifest>.json`, one per
 * version, the newest recording replacing the older), until `rezfs profile` publishes them. Each store's lie apart,
 * as the catalog copies do, since one cache dir may serve mounts of several stores. Files are written whole (temp
 * file, then rename); failing to keep one is logged, never an error: a recording is an optimisation.
 * Imports the catalog's document types and node: only.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalJson, parseVersioned, type StartupProfile } from '../catalog/index.js';
import { sha256Hex } from '../hash.js';
import type { Log } from '../log.js';

export class RecordedProfiles {
  private readonly dir: string;
  private writing: Promise<void> = Promise.resolve();

  constructor(cacheDir: string, storeUrl: string) {
    this.dir = join(cacheDir, 'profiles', sha256Hex(storeUrl).slice(0, 16));
  }

  /** Queues one recording to be written; `idle()` waits for every queued write. */
  save(profile: StartupProfile, log: Log): void {
    this.writing = this.writing.then(async () => {
      const target = join(this.dir, `${profile.manifest}.json`);
      const tmp = `${target}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
      try {
        await mkdir(this.dir, { recursive: true });
        await writeFile(tmp, canonicalJson(profile));
        await rename(tmp, target);
      } catch (err) {
        await rm(tmp, { force: true });
        log.warn(`could not keep the startup profile of ${profile.family}/${profile.version}: ${(err as Error).message}`);
      }
    });
  }

  idle(): Promise<void> {
    return this.writing;
  }

  /** Every recording kept for this store; unreadable files are skipped and named in `unreadable`. */
  async list(): Promise<{ profiles: StartupProfile[]; unreadable: string[] }> {
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}\.json$/.test(n));
    const profiles: StartupProfile[] = [];
    const unreadable: string[] = [];
    for (const name of names.sort()) {
      const path = join(this.dir, name);
      try {
        profiles.push(parseVersioned<StartupProfile>(path, await readFile(path)));
      } catch (err) {
        unreadable.push(`${path}: ${(err as Error).message}`);
      }
    }
    return { profiles, unreadable };
  }
}
