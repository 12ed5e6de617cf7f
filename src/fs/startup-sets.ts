/**
 * Startup sets: what a package version reads in its first seconds, learned and fetched ahead (issue 12).
 *
 * When something first looks inside a version (a stat, a listing, an open below `/<family>/<version>/`; reading
 * package.py to resolve does not count), this module
 *  - when the version's pack is small, preloads all of it (a small package is read whole soon enough);
 *  - else follows the version's published startup profile, if its shard record names one: fetches the document, checks
 *    it (profileProblem: right version, real ranges, signed when the mount trusts keys) and preloads the blocks its
 *    ranges fall in, or only their chunks where a block of a big file is read here and there (profilePlan), in
 *    parallel and below demand reads (BlockSource.preload, preloadChunks); a profile that fails any check is
 *    ignored with one log line;
 *  - and records, for `recordWindowMs`, the pack ranges the filesystem reads from that version: the recording is
 *    handed to `onRecorded` (the mount keeps it under its cache dir; `rezfs profile` publishes it).
 * Python's start-up lists every directory on sys.path before it reads a module, so the first looks at all the
 * versions a command uses come within moments of each other, and their startup sets travel in one wave.
 *
 * Invariants: background work never answers a reader (BlockSource.preload's failures are nobody's, D4); each
 * version is opened once per manifest; recording is bounded per version. Kernel-free; imports catalog and cache.
 */
import type { KeyObject } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { profilePlan, type BlockSource, type PackRef } from '../cache/index.js';
import { buildProfile, keys, profileProblem, type Catalog, type Manifest, type StartupProfile, type VersionRecord } from '../catalog/index.js';
import type { Log } from '../log.js';

export interface StartupSetPolicy {
  /** Reads of a version are recorded for this long after its first use. */
  recordWindowMs: number;
  /** A version whose pack is at most this big is preloaded whole at its first use (its profile is not fetched). */
  wholePackBytes: number;
  /** A recording stops at this many separate ranges (a version read all over is not a startup set). */
  maxRanges: number;
}

export const DEFAULT_STARTUP_SETS: StartupSetPolicy = { recordWindowMs: 20_000, wholePackBytes: 4 * 1024 * 1024, maxRanges: 10_000 };

export interface StartupSetOptions {
  policy?: Partial<StartupSetPolicy>;
  log: Log;
  /** A mount that trusts only signed catalogs follows only profiles signed by one of these keys. */
  trustedKeys?: readonly KeyObject[];
  /** Each finished recording: its window closed, it filled up, or the mount is stopping. */
  onRecorded?: (profile: StartupProfile) => void;
}

/** For `rezfs status`. */
export interface StartupSetStats {
  profilesFollowed: number;
  profilesIgnored: number;
  wholePacks: number;
  preloadedBlocks: number;
  /** Chunks of big files' sparsely read blocks preloaded instead of their blocks. */
  preloadedChunks: number;
  recorded: number;
}

export interface OpenedVersion {
  family: string;
  version: string;
  record: VersionRecord;
}

interface Recording {
  target: OpenedVersion;
  startedMs: number;
  ranges: Map<string, [number, number][]>;
  count: number;
  timer: NodeJS.Timeout;
}

/** Versions remembered as opened (each is opened once); beyond that an old one may be opened, and fetched, again. */
const OPENED_VERSIONS = 16_384;

export class StartupSets {
  readonly stats: StartupSetStats = { profilesFollowed: 0, profilesIgnored: 0, wholePacks: 0, preloadedBlocks: 0, preloadedChunks: 0, recorded: 0 };
  private readonly policy: StartupSetPolicy;
  private readonly opened = new LRUCache<string, true>({ max: OPENED_VERSIONS });
  private readonly recordings = new Map<Manifest, Recording>();
  /** Profiles being fetched and blocks being preloaded. */
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly blocks: BlockSource,
    private readonly options: StartupSetOptions,
  ) {
    this.policy = { ...DEFAULT_STARTUP_SETS, ...options.policy };
  }

  /**
   * The first look inside a version (read through `packs`, its manifest's packs in order): its startup set starts
   * loading, its recording window opens.
   */
  versionOpened(catalog: Catalog, target: OpenedVersion, manifest: Manifest, packs: readonly PackRef[]): void {
    const hash = target.record.manifest;
    if (this.opened.has(hash)) return;
    this.opened.set(hash, true);
    this.startRecording(target, manifest);
    const profile = target.record.profile;
    if (packs.reduce((n, pack) => n + pack.size, 0) <= this.policy.wholePackBytes) {
      // Whole, at once: its profile could only name part of it, one round trip later.
      this.stats.wholePacks++;
      for (const pack of packs) this.track(this.preload(pack, pack.blocks.map((_, i) => i)));
    } else if (profile) this.track(this.follow(catalog, target, manifest, packs, profile));
  }

  /**
   * Something is about to look inside a version whose manifest must be fetched first: the startup profile its
   * record names is fetched alongside the manifest, not one round trip after it (versionOpened then finds it in).
   */
  versionLooked(catalog: Catalog, record: VersionRecord): void {
    if (!record.profile || record.inlineManifest || this.opened.has(record.manifest)) return;
    catalog.profile(record.profile).catch(() => undefined); // a failure is reported when versionOpened follows it
  }

  /** Settles once every profile fetch and preload started so far has. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending);
  }

  /** Pack bytes [start, end) the filesystem read for a version opened through `manifest`. */
  packRead(manifest: Manifest, pack: string, start: number, end: number): void {
    const recording = this.recordings.get(manifest);
    if (!recording) return;
    let ranges = recording.ranges.get(pack);
    if (!ranges) recording.ranges.set(pack, (ranges = []));
    const last = ranges.at(-1);
    if (last && start >= last[0] && start <= last[1]) last[1] = Math.max(last[1], end); // a sequential reader
    else {
      ranges.push([start, end]);
      if (++recording.count >= this.policy.maxRanges) this.finish(manifest);
    }
  }

  /** Ends every recording now (the mount is stopping): what was read so far is the profile. */
  flush(): void {
    for (const manifest of [...this.recordings.keys()]) this.finish(manifest);
  }

  private startRecording(target: OpenedVersion, manifest: Manifest): void {
    if (!this.options.onRecorded) return;
    const timer = setTimeout(() => this.finish(manifest), this.policy.recordWindowMs);
    timer.unref();
    this.recordings.set(manifest, { target, startedMs: Date.now(), ranges: new Map(), count: 0, timer });
  }

  private finish(manifest: Manifest): void {
    const recording = this.recordings.get(manifest);
    if (!recording) return;
    this.recordings.delete(manifest);
    clearTimeout(recording.timer);
    const { family, version, record } = recording.target;
    const windowMs = Math.min(this.policy.recordWindowMs, Date.now() - recording.startedMs);
    const profile = buildProfile({ family, version, manifestHash: record.manifest }, windowMs, recording.ranges);
    if (profile.packs.length === 0) return;
    this.stats.recorded++;
    this.options.onRecorded?.(profile);
  }

  private async follow(catalog: Catalog, target: OpenedVersion, manifest: Manifest, packs: readonly PackRef[], hash: string): Promise<void> {
    const where = `startup profile ${keys.profile(hash)} of ${target.family}/${target.version}`;
    let profile: StartupProfile;
    try {
      profile = await catalog.profile(hash);
    } catch (err) {
      this.ignore(`${where} ignored: ${(err as Error).message}`);
      return;
    }
    const problem = profileProblem(profile, { family: target.family, version: target.version, manifestHash: target.record.manifest, manifest }, this.options.trustedKeys);
    if (problem) return this.ignore(`${where} ignored: ${problem}`);
    this.stats.profilesFollowed++;
    await Promise.all(
      packs.flatMap((pack) => {
        const plan = profilePlan(profile, pack);
        return [this.preload(pack, plan.blocks), this.preloadChunks(pack, plan.chunks)];
      }),
    );
  }

  private track(work: Promise<void>): void {
    const settled = work.catch((err: unknown) => this.options.log.warn(`startup set: ${(err as Error).message}`)).finally(() => this.pending.delete(settled));
    this.pending.add(settled);
  }

  private async preload(pack: PackRef, indexes: number[]): Promise<void> {
    this.stats.preloadedBlocks += await this.blocks.preload(pack, indexes);
  }

  private async preloadChunks(pack: PackRef, chunks: number[]): Promise<void> {
    this.stats.preloadedChunks += await this.blocks.preloadChunks(pack, chunks);
  }

  private ignore(message: string): void {
    this.stats.profilesIgnored++;
    this.options.log.warn(message);
  }
}
