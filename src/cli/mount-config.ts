/**
 * What a mount runs with, in one place, as mountpoint-s3 keeps its fs/config.rs: `MountConfig` is what
 * options.ts fills from flags, the environment and fstab options (each bounded and checked there, one
 * line per bad value), `MOUNT_TUNING` the tunables no flag sets, each with its default and why, and the
 * derivations a mount makes from both (kernel cache times, readahead in blocks). Types only from the
 * layers below; nothing here does I/O.
 */
import type { MountOptions } from '../fs/index.js';
import type { OriginLimits } from '../store/index.js';

export const FUSE_CHOICES = ['auto', 'native', 'fuse-native'] as const;
export type FuseChoice = (typeof FUSE_CHOICES)[number];

/** Where `--metrics` listens. */
export interface MetricsAddress {
  host: string;
  port: number;
}

export interface MountConfig {
  mountpoint: string;
  store: string;
  /** Stores with the same objects, in priority order after `store` (--mirror). */
  mirrors: string[];
  cacheDir: string;
  /** Hard cap of the disk cache, in bytes. */
  cacheSize: number;
  memoryLimit: number;
  readTimeoutMs: number;
  allowOther: boolean;
  foreground: boolean;
  logFile: string | undefined;
  /** Public key files; when given, only catalogs signed by one of them are served. */
  trustKeys: string[];
  /** How often to look for a new generation; 0 never (a publish on this host still notifies). */
  refreshMs: number;
  fuse: FuseChoice;
  /** How long after a version's first use its reads are recorded (its startup profile); 0 records nothing. */
  recordWindowMs: number;
  /** Where to serve Prometheus metrics (--metrics), if anywhere. */
  metrics: MetricsAddress | undefined;
  /** How hard the mount may press each store (--max-requests). */
  originLimits: OriginLimits;
}

export interface MountTuning {
  /**
   * How far ahead of a sequential reader blocks are fetched, at most: room for several 8 MiB GETs in flight, so
   * the store is not idle while the reader drains what came. The memory budget still decides what is fetched.
   */
  readaheadBytes: number;
  /** How long the kernel may trust the root's and families' entries and attributes (a publish adds versions). */
  attrTimeoutSec: number;
  /** How long the kernel may remember that a family or version is missing (a publish may add it). */
  negativeTimeoutSec: number;
  /**
   * How much longer than the read deadline a kernel request may stay unanswered before the binding fails it
   * itself: the read deadline answers first, this only catches a request nobody answers.
   */
  operationGraceMs: number;
  /** How long a look at whatever is mounted at the mountpoint may take before it counts as stuck. */
  probeTimeoutMs: number;
  /** How long a stopping mount waits for what it still writes to its cache dir (recordings, blocks waiting for room). */
  drainWaitMs: number;
  /** Time for the kernel to start a FUSE session and answer its first requests, on a loaded host. */
  fuseStartMs: number;
  /** How often a foreground mount looks whether it was unmounted from outside. */
  unmountPollMs: number;
}

export const MOUNT_TUNING: Readonly<MountTuning> = Object.freeze({
  readaheadBytes: 32 * 1024 * 1024,
  attrTimeoutSec: 300,
  negativeTimeoutSec: 60,
  operationGraceMs: 5_000,
  probeTimeoutMs: 5_000,
  drainWaitMs: 10_000,
  fuseStartMs: 20_000,
  unmountPollMs: 1_000,
});

/** Blocks of `blockSize` a sequential reader may have fetched ahead: at least one. */
export function readaheadBlocks(blockSize: number, tuning: Readonly<MountTuning> = MOUNT_TUNING): number {
  return Math.max(1, Math.floor(tuning.readaheadBytes / blockSize));
}

/**
 * The kernel's cache times and the binding's own deadline. Without invalidation (a binding that cannot tell the
 * kernel what a new generation changed) the kernel's timeouts alone decide when new versions show: they are kept
 * within the refresh interval.
 */
export function kernelTimes(
  config: Pick<MountConfig, 'refreshMs' | 'readTimeoutMs'>,
  invalidatesChanges: boolean,
  tuning: Readonly<MountTuning> = MOUNT_TUNING,
): Pick<MountOptions, 'attrTimeoutSec' | 'negativeTimeoutSec' | 'operationTimeoutMs'> {
  const within = (limit: number) =>
    config.refreshMs > 0 && !invalidatesChanges ? Math.min(limit, Math.max(1, Math.floor(config.refreshMs / 1000))) : limit;
  return {
    attrTimeoutSec: within(tuning.attrTimeoutSec),
    negativeTimeoutSec: within(tuning.negativeTimeoutSec),
    operationTimeoutMs: config.readTimeoutMs + tuning.operationGraceMs,
  };
}
