/**
 * Every command-line option and environment variable of the CLI, parsed and checked in one place.
 *
 * Each option is one OptionSpec: its flag, its environment variable, its default and its parser with
 * bounds. A value is taken from the command line, else from the environment, else from the default, and
 * every error names where the value came from (`REZFS_CACHE_SIZE "0" (--cache-size) ...`), in one line,
 * as bad usage (exit 2). Single-valued options given twice are refused rather than silently taking the
 * last one. Path options are checked up front (a cache dir is created safely, a log file's directory
 * must exist), before a mount goes to the background.
 *
 * Commander only collects what was typed (every value of every occurrence); it neither reads the
 * environment nor applies defaults, so there is one rule for all three. May import cache (memory plan
 * bounds), store (origin limits) and the CLI's own units; nothing below the CLI imports this.
 */
import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import { homedir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
// The modules themselves, not their parts' indexes: the command line reads these constants before it knows which
// command runs, and the indexes load the S3 SDK and the caches (see main.ts).
import { MIN_MEMORY_LIMIT_BYTES } from '../cache/memory-plan.js';
import { DEFAULT_ORIGIN_LIMITS, type OriginLimits } from '../store/retry.js';
import { FUSE_CHOICES, type FuseChoice, type MetricsAddress, type MountConfig } from './mount-config.js';
import { UsageError, formatBytes, parseDuration, parseSize } from './units.js';

export interface OptionSpec {
  flag: `--${string}`;
  /** The value's placeholder in --help, e.g. `<size>`; absent for a switch. */
  value?: `<${string}>`;
  env?: `REZFS_${string}`;
  help: string;
  default?: string;
  /** May be given more than once; its environment variable then holds a comma-separated list. */
  repeatable?: boolean;
}

const MiB = 1024 * 1024;

/** Bounds of option values: outside them a value is refused, not clamped, so nobody is surprised later. */
export const BOUNDS = {
  /** Room for a few blocks of the default block size: below that a disk cache keeps next to nothing. */
  minCacheBytes: 8 * MiB,
  /** The least a mount process runs in (see memory-plan.ts); the most is this machine's memory. */
  minMemoryBytes: MIN_MEMORY_LIMIT_BYTES,
  /** One store attempt takes seconds to time out: a shorter read deadline would fail reads that were about to succeed. */
  minReadTimeoutMs: 1_000,
  /** A read that waits longer than this is a hang, whatever the store. */
  maxReadTimeoutMs: 10 * 60_000,
  /** Polling more often than this only loads the store (0 turns polling off). */
  minRefreshMs: 250,
  maxRefreshMs: 24 * 3_600_000,
  /** One request at a time serialises every cold read; past a few hundred, a farm of mounts is a denial of service. */
  minRequests: 1,
  maxRequests: 256,
} as const;

function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'rezfs');
}

/** The CLI's options; each command adds the ones it takes. */
export const OPTIONS = {
  store: { flag: '--store', value: '<url>', env: 'REZFS_STORE', help: 'store URL: file:///dir, s3://bucket/prefix, dav+https://host/repo/prefix, or https://host/prefix (read-only)' },
  mirror: {
    flag: '--mirror',
    value: '<url>',
    env: 'REZFS_MIRRORS',
    repeatable: true,
    help: 'a store with the same objects, read when the ones before it fail (repeatable, in order)',
  },
  cacheDir: { flag: '--cache-dir', value: '<dir>', env: 'REZFS_CACHE_DIR', help: 'disk cache for payload blocks (created if missing)' },
  cacheSize: { flag: '--cache-size', value: '<size>', env: 'REZFS_CACHE_SIZE', default: '20G', help: 'hard cap of the disk cache (LRU eviction)' },
  memoryLimit: {
    flag: '--memory-limit',
    value: '<size>',
    env: 'REZFS_MEMORY_LIMIT',
    default: '512M',
    help: 'memory of the whole mount process; blocks get what it does not need itself',
  },
  readTimeout: { flag: '--read-timeout', value: '<duration>', env: 'REZFS_READ_TIMEOUT', default: '30s', help: 'anything that cannot be answered by then fails with EIO' },
  refresh: {
    flag: '--refresh',
    value: '<duration>',
    env: 'REZFS_REFRESH',
    default: '30s',
    help: 'look for newly published versions this often (0: only when a local publish says so)',
  },
  allowOther: { flag: '--allow-other', env: 'REZFS_ALLOW_OTHER', help: 'let other users see the mount (needs user_allow_other in /etc/fuse.conf)' },
  foreground: { flag: '--foreground', help: 'serve in this process until SIGINT/SIGTERM' },
  trustKey: { flag: '--trust-key', value: '<file>', env: 'REZFS_TRUST_KEYS', repeatable: true, help: 'serve only catalogs signed by one of these ed25519 public keys' },
  logFile: { flag: '--log-file', value: '<file>', help: 'where a mount logs (default: <cache-dir>/mount.log in the background, stderr in the foreground)' },
  fuse: {
    flag: '--fuse',
    value: '<binding>',
    env: 'REZFS_FUSE',
    default: 'auto',
    help: "FUSE binding: native (libfuse3, rezfs's own), fuse-native (libfuse2), auto (native when built)",
  },
  metrics: { flag: '--metrics', value: '<host:port>', env: 'REZFS_METRICS', help: 'serve Prometheus metrics on http://HOST:PORT/metrics' },
  maxRequests: {
    flag: '--max-requests',
    value: '<n>',
    env: 'REZFS_MAX_REQUESTS',
    default: String(DEFAULT_ORIGIN_LIMITS.maxConcurrentRequests),
    help: 'requests in flight to each store at once (a farm of N mounts sends at most N x this); a quarter, up to 4, is kept for reads that wait',
  },
  recordWindow: {
    flag: '--record-window',
    value: '<duration>',
    env: 'REZFS_RECORD_WINDOW',
    default: '20s',
    help: 'record what each version reads this long after its first use (its startup profile; 0: never)',
  },
  signKey: { flag: '--sign-key', value: '<file>', env: 'REZFS_SIGN_KEY', help: 'sign the new index with this ed25519 private key (rezfs keygen)' },
  stateDir: {
    flag: '--state-dir',
    value: '<dir>',
    env: 'REZFS_PUBLISH_STATE_DIR',
    help: 'where this host remembers which versions it found unchanged (default: <cache dir>/publish)',
  },
  keepGenerations: { flag: '--keep-generations', value: '<n>', default: '1', help: 'generations kept along the chain from the current one' },
  grace: {
    flag: '--grace',
    value: '<duration>',
    default: '7d',
    help: 'unreferenced objects younger than this stay, and generations current within it (at least 1h)',
  },
  ignoredSince: {
    flag: '--ignored-since',
    value: '<duration>',
    help: "also every version rez-pkg-ignore hid this long ago or longer (rez-rm --ignored-since's rule), e.g. 30d",
  },
  from: { flag: '--from', value: '<url>', help: 'store to copy from (any URL, http:// too)' },
  to: { flag: '--to', value: '<url>', help: 'store to copy to: file:// or s3://' },
} as const satisfies Record<string, OptionSpec>;

export type OptionName = keyof typeof OPTIONS;

/** Adds `names` to a command: commander collects every occurrence; reading them is `given()`'s job. */
export function addOptions(command: Command, names: readonly OptionName[]): Command {
  for (const name of names) {
    const spec: OptionSpec = OPTIONS[name];
    const notes = [spec.default !== undefined ? `default ${spec.default}` : '', spec.env ? `env ${spec.env}` : ''].filter(Boolean).join(', ');
    const option = new Option(`${spec.flag}${spec.value ? ` ${spec.value}` : ''}`, `${spec.help}${notes ? ` (${notes})` : ''}`);
    if (spec.value) option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]);
    command.addOption(option);
  }
  return command;
}

/** One value and where it came from, for messages: `--cache-size` or `REZFS_CACHE_SIZE (--cache-size)`. */
export interface Given {
  text: string;
  where: string;
}

/** What a command was given for its options: command line first, then environment, then default. */
export class GivenOptions {
  constructor(private readonly typed: Record<string, unknown>) {}

  static of(command: Command): GivenOptions {
    return new GivenOptions(command.opts());
  }

  /**
   * The value of a single-valued option, or undefined when it has none (no flag, variable or default;
   * `useDefault: false` for a command where the option's default would mean something else).
   */
  one(name: OptionName, useDefault = true): Given | undefined {
    const spec: OptionSpec = OPTIONS[name];
    const typed = this.typed[name] as string[] | undefined;
    if (typed && typed.length > 1) {
      throw new UsageError(`${spec.flag} was given ${typed.length} times (${typed.join(', ')}): give it once`);
    }
    if (typed?.length) return { text: typed[0]!, where: spec.flag };
    const env = spec.env === undefined ? undefined : process.env[spec.env];
    if (env !== undefined && env !== '') return { text: env, where: `${spec.env} (${spec.flag})` };
    return spec.default === undefined || !useDefault ? undefined : { text: spec.default, where: spec.flag };
  }

  required(name: OptionName): Given {
    const given = this.one(name);
    const spec: OptionSpec = OPTIONS[name];
    if (!given) throw new UsageError(`${spec.flag} is required${spec.env ? ` (or set ${spec.env})` : ''}`);
    return given;
  }

  /** Every value of a repeatable option: all on the command line, else the environment's comma-separated list. */
  all(name: OptionName): Given[] {
    const spec: OptionSpec = OPTIONS[name];
    const typed = this.typed[name] as string[] | undefined;
    if (typed?.length) return typed.flatMap((text) => split(text).map((t) => ({ text: t, where: spec.flag })));
    const env = spec.env === undefined ? undefined : process.env[spec.env];
    return split(env ?? '').map((text) => ({ text, where: `${spec.env} (${spec.flag})` }));
  }

  /** A switch: on the command line, or its environment variable set to a boolean word. */
  flag(name: OptionName): boolean {
    const spec: OptionSpec = OPTIONS[name];
    if (this.typed[name] === true) return true;
    const env = spec.env === undefined ? undefined : process.env[spec.env];
    return env === undefined || env === '' ? false : parseBoolean({ text: env, where: `${spec.env} (${spec.flag})` });
  }
}

function split(list: string): string[] {
  return list.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on']);
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off']);

export function parseBoolean(given: Given): boolean {
  const word = given.text.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  throw new UsageError(`${given.where} ${JSON.stringify(given.text)} is not a boolean; use 1/0, true/false or yes/no`);
}

export function parseSizeWithin(given: Given, min: number, max = Number.POSITIVE_INFINITY, why = ''): number {
  const bytes = parseSize(given.where, given.text);
  if (bytes < min) throw new UsageError(`${given.where} ${given.text} is too small: at least ${formatBytes(min)}${why}`);
  if (bytes > max) throw new UsageError(`${given.where} ${given.text} is too big: at most ${formatBytes(max)}${why}`);
  return bytes;
}

export function parseMemoryLimit(given: Given): number {
  const machine = totalmem();
  return parseSizeWithin(given, BOUNDS.minMemoryBytes, machine, ` (a mount needs ${formatBytes(BOUNDS.minMemoryBytes)}; this machine has ${formatBytes(machine)})`);
}

export function parseCacheSize(given: Given): number {
  return parseSizeWithin(given, BOUNDS.minCacheBytes);
}

function parseDurationWithin(given: Given, min: number, max: number, off?: string): number {
  const ms = parseDuration(given.where, given.text);
  if (ms === 0 && off !== undefined) return 0;
  const range = `between ${seconds(min)} and ${seconds(max)}${off !== undefined ? `, or 0 ${off}` : ''}`;
  if (ms < min || ms > max) throw new UsageError(`${given.where} ${given.text} is out of range: use ${range}`);
  return ms;
}

const seconds = (ms: number) =>
  ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : ms % 60_000 === 0 ? `${ms / 60_000}m` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;

export function parseReadTimeout(given: Given): number {
  return parseDurationWithin(given, BOUNDS.minReadTimeoutMs, BOUNDS.maxReadTimeoutMs);
}

export function parseRefresh(given: Given): number {
  return parseDurationWithin(given, BOUNDS.minRefreshMs, BOUNDS.maxRefreshMs, 'to poll only when a local publish says so');
}

/** `HOST:PORT` (`[::1]:9100` for IPv6) for --metrics. */
export function parseMetricsAddress(given: Given): MetricsAddress {
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})$/i.exec(given.text.trim());
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65_535) {
    throw new UsageError(`${given.where} ${JSON.stringify(given.text)} is not HOST:PORT; use e.g. 127.0.0.1:9464 or 0.0.0.0:9464 (all interfaces)`);
  }
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

export function parseFuse(given: Given): FuseChoice {
  const choice = FUSE_CHOICES.find((c) => c === given.text);
  if (!choice) throw new UsageError(`${given.where} ${JSON.stringify(given.text)} is not a FUSE binding; use ${FUSE_CHOICES.join(', ')}`);
  return choice;
}

/** --max-requests: the origin limits of a mount, its demand reserve scaled down with a small cap. */
export function parseMaxRequests(given: Given): OriginLimits {
  const text = given.text.trim();
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < BOUNDS.minRequests || n > BOUNDS.maxRequests) {
    throw new UsageError(`${given.where} ${JSON.stringify(given.text)} is not a request count; use a whole number from ${BOUNDS.minRequests} to ${BOUNDS.maxRequests}`);
  }
  return { ...DEFAULT_ORIGIN_LIMITS, maxConcurrentRequests: n, demandReserve: Math.min(DEFAULT_ORIGIN_LIMITS.demandReserve, Math.floor(n / 4)) };
}

/** How long a mount records what a version reads after its first use; 0 records nothing. */
export function parseRecordWindow(given: Given): number {
  return parseDuration(given.where, given.text);
}

/** Where publish remembers what it found unchanged: --state-dir, or `publish` under the default cache dir. */
export function publishStateDirOf(options: GivenOptions): string {
  return options.one('stateDir')?.text ?? join(defaultCacheDir(), 'publish');
}

/** The cache dir, or its default; `cacheDirectory` checks and creates it. */
export function cacheDirOf(options: GivenOptions): Given {
  return options.one('cacheDir') ?? { text: defaultCacheDir(), where: `${OPTIONS.cacheDir.flag} (default)` };
}

/**
 * A directory to write into, created if missing. Made level by level (never `mkdir -p`, which loops
 * for good under /proc), every failure one line naming the option and the path that failed.
 */
export async function writableDirectory(given: Given): Promise<string> {
  const dir = resolve(given.text);
  const fail = (why: string) => new UsageError(`${given.where} ${dir}: ${why}`);
  const missing: string[] = [];
  for (let at = dir; ; at = dirname(at)) {
    const info = await stat(at).catch((err: NodeJS.ErrnoException) => err);
    if (!(info instanceof Error)) {
      if (!info.isDirectory()) throw fail(at === dir ? 'exists and is not a directory' : `${at} is not a directory`);
      break;
    }
    // ENOTDIR: something above is a file; the walk up finds it and says so.
    if (info.code !== 'ENOENT' && info.code !== 'ENOTDIR') throw fail(`cannot look at ${at} (${info.code ?? info.message})`);
    missing.unshift(at);
    if (dirname(at) === at) break;
  }
  for (const at of missing) {
    await mkdir(at).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw fail(`cannot create ${at} (${err.code ?? err.message})`);
    });
  }
  const made = await stat(dir).catch(() => undefined);
  if (!made?.isDirectory()) throw fail('exists and is not a directory');
  await access(dir, constants.W_OK | constants.X_OK).catch((err: NodeJS.ErrnoException) => {
    throw fail(`not writable (${err.code ?? err.message})`);
  });
  return dir;
}

/** A file to append to: an existing writable file, or a new one in an existing writable directory. */
export async function writableFile(given: Given): Promise<string> {
  const file = resolve(given.text);
  const fail = (why: string) => new UsageError(`${given.where} ${file}: ${why}`);
  const info = await stat(file).catch((err: NodeJS.ErrnoException) => err);
  if (!(info instanceof Error)) {
    if (info.isDirectory()) throw fail('is a directory');
    await access(file, constants.W_OK).catch((err: NodeJS.ErrnoException) => {
      throw fail(`not writable (${err.code ?? err.message})`);
    });
    return file;
  }
  if (info.code !== 'ENOENT') throw fail(`cannot look at it (${info.code ?? info.message})`);
  const parent = dirname(file);
  const dir = await stat(parent).catch(() => undefined);
  if (!dir) throw fail(`directory ${parent} does not exist`);
  if (!dir.isDirectory()) throw fail(`${parent} is not a directory`);
  await access(parent, constants.W_OK | constants.X_OK).catch((err: NodeJS.ErrnoException) => {
    throw fail(`directory ${parent} is not writable (${err.code ?? err.message})`);
  });
  return file;
}

/** Every `rezfs mount` option, parsed, bounded and (paths) checked: what the mount runs with. */
export async function mountOptions(mountpoint: string, given: GivenOptions): Promise<MountConfig> {
  const cacheDir = await writableDirectory(cacheDirOf(given));
  const logFile = given.one('logFile');
  const metrics = given.one('metrics');
  return {
    mountpoint: resolve(mountpoint),
    store: given.required('store').text,
    mirrors: given.all('mirror').map((m) => m.text),
    cacheDir,
    cacheSize: parseCacheSize(given.one('cacheSize')!),
    memoryLimit: parseMemoryLimit(given.one('memoryLimit')!),
    readTimeoutMs: parseReadTimeout(given.one('readTimeout')!),
    refreshMs: parseRefresh(given.one('refresh')!),
    allowOther: given.flag('allowOther'),
    foreground: given.flag('foreground'),
    logFile: logFile === undefined ? undefined : await writableFile(logFile),
    trustKeys: given.all('trustKey').map((k) => k.text),
    fuse: parseFuse(given.one('fuse')!),
    recordWindowMs: parseRecordWindow(given.one('recordWindow')!),
    metrics: metrics === undefined ? undefined : parseMetricsAddress(metrics),
    originLimits: parseMaxRequests(given.one('maxRequests')!),
  };
}
