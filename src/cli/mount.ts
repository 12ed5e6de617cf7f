import { spawn } from 'node:child_process';
import { closeSync, createWriteStream, openSync, writeSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import type { Stats } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import type { Server } from 'node:net';
import { resolve } from 'node:path';
import { BlockSource, ByteBudget, DiskBlockCache, LocalCopyStore, MemoryBlockCache, RecordedProfiles, planMemory } from '../cache/index.js';
import { Catalog, CatalogRefresher, GenerationFloor, catalogCopyRules, type StartupProfile, type TrustPolicy } from '../catalog/index.js';
import { startControlServer } from './control.js';
import { controlSocketPath, registerMount } from './registry.js';
import { mountStatus } from './status.js';
import { readPublicKey } from './keys.js';
import { FuseNativeBinding, NativeBinding, RezFs, StartupSets, generationChanges, nativeBindingAvailable, type FuseBinding, type Mounted } from '../fs/index.js';
import { streamLog, type Log } from '../log.js';
import { openStores, redactUrl, type ObjectStore } from '../store/index.js';
import { UsageError, formatBytes } from './units.js';
import { isBadInput } from './exit-codes.js';
import { detach, fuseMountpoints } from './unmount.js';

export interface MountCommand {
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
}

export type FuseChoice = 'auto' | 'native' | 'fuse-native';

/** The pipe on which a daemonised mount tells its parent it is ready (or why it failed). */
const READY_FD = 3;
const READY_ENV = 'REZFS_READY_FD';
const READY = 'ready';
/** The prefix of a failure that is bad input (exit 2); any other failure is `error: `. */
const BAD_INPUT = 'usage';
const UNMOUNT_POLL_MS = 1_000;
/**
 * How far ahead of a sequential reader blocks are fetched, at most: room for several 8 MiB GETs in flight, so
 * the store is not idle while the reader drains what came. The memory budget still decides what is fetched.
 */
const READAHEAD_BYTES = 32 * 1024 * 1024;

export async function mountCommand(cmd: MountCommand, argv: readonly string[]): Promise<void> {
  const mountpoint = resolve(cmd.mountpoint);
  const info = await statMountpoint(mountpoint);
  if (!info) throw new UsageError(`mountpoint ${mountpoint} does not exist; create it with mkdir -p`);
  if (!info.isDirectory()) throw new UsageError(`mountpoint ${mountpoint} is not a directory`);
  await mkdir(cmd.cacheDir, { recursive: true });
  // Bad store URLs and key files are reported here, as bad usage, before the mount goes to the background.
  await openStores(cmd.store, cmd.mirrors).close();
  trustedKeys(cmd);
  if (cmd.fuse === 'native' && !nativeBindingAvailable()) {
    throw new UsageError('--fuse native: the native binding is not built; run npm run build:native (needs libfuse3-dev) or use --fuse fuse-native');
  }
  if (cmd.foreground) await serve({ ...cmd, mountpoint });
  else await daemonize({ ...cmd, mountpoint }, argv);
}

/**
 * The mountpoint's stat; a dead mount left by a killed server ("Transport endpoint is not
 * connected") is detached first, so a crashed mount can simply be mounted again.
 */
async function statMountpoint(mountpoint: string): Promise<Stats | undefined> {
  try {
    return await stat(mountpoint);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOTCONN') return undefined;
    process.stderr.write(`rezfs: ${mountpoint} is a dead mount (its server exited); detaching it\n`);
    await detach(mountpoint);
    return stat(mountpoint).catch(() => undefined);
  }
}

/** Re-runs this command in the foreground, detached, and returns once it reports the mount usable. */
async function daemonize(cmd: MountCommand, argv: readonly string[]): Promise<void> {
  const logFile = cmd.logFile ?? resolve(cmd.cacheDir, 'mount.log');
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...process.execArgv, ...argv, '--foreground', '--log-file', logFile], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
    env: { ...process.env, [READY_ENV]: String(READY_FD) },
  });
  const message = await new Promise<string>((done) => {
    let text = '';
    const pipe = child.stdio[READY_FD] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => (text += chunk));
    pipe.on('end', () => done(text));
    child.on('exit', (code) => done(text || `exited with code ${code} before mounting; see ${logFile}`));
  });
  if (message.startsWith(READY)) {
    child.unref();
    process.stdout.write(`rezfs: mounted ${cmd.store} at ${cmd.mountpoint} (pid ${child.pid}, log ${logFile})\n`);
    return;
  }
  // The child's failure keeps its class: bad input stays exit 2 in the parent.
  const reason = message.replace(/^(error|usage): /, '').trim();
  throw message.startsWith(`${BAD_INPUT}: `) ? new UsageError(reason) : new Error(reason);
}

async function serve(cmd: MountCommand): Promise<void> {
  const out = cmd.logFile ? createWriteStream(cmd.logFile, { flags: 'a' }) : process.stderr;
  const log = countingLog(streamLog((line) => out.write(line)));
  const ready = readyChannel();
  let mounted: Mounted | undefined;
  let refresher: CatalogRefresher | undefined;
  let control: Server | undefined;
  let unregister: (() => Promise<void>) | undefined;
  /** Writes what the mount still holds for its cache dir: its recordings, disk copies of background loads. */
  let drain: (() => Promise<void>) | undefined;
  process.on('SIGHUP', () => void refresher?.refreshNow()); // a local publish: look now
  try {
    const remote = openStores(cmd.store, cmd.mirrors);
    const store = LocalCopyStore.forStore(remote, cmd.cacheDir, catalogCopyRules);
    const trust = trustPolicy(store, cmd);
    const catalog = await Catalog.open(store, await trust?.policy());
    await trust?.accepted(catalog);
    preloadShards(catalog, log); // while the kernel mount is set up, and before anyone resolves
    const memory = planMemory(cmd.memoryLimit);
    const memoryCache = new MemoryBlockCache(memory.cacheBytes);
    const budget = new ByteBudget(memory.inFlightBytes);
    const blocks = new BlockSource(store, memoryCache, new DiskBlockCache(cmd.cacheDir, cmd.cacheSize), log, budget, cmd.readTimeoutMs);
    const recorded = new RecordedProfiles(cmd.cacheDir, store.url);
    const startup = new StartupSets(blocks, {
      log,
      ...(cmd.trustKeys.length > 0 ? { trustedKeys: trustedKeys(cmd) } : {}),
      policy: { recordWindowMs: cmd.recordWindowMs },
      ...(cmd.recordWindowMs > 0 ? { onRecorded: (profile: StartupProfile) => recorded.save(profile, log) } : {}),
    });
    drain = async () => {
      startup.flush();
      await Promise.all([recorded.idle(), blocks.flushed()]);
    };
    const fs = new RezFs(catalog, blocks, {
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      readDeadlineMs: cmd.readTimeoutMs,
      readaheadBlocks: Math.max(1, Math.floor(READAHEAD_BYTES / catalog.config.blockSize)),
      log,
      startup,
    });
    const binding = chooseBinding(cmd.fuse);
    // Without invalidation the kernel's timeouts alone decide when new versions show: keep them within the interval.
    const cacheSec = (limit: number) =>
      cmd.refreshMs > 0 && !binding.invalidatesChanges ? Math.min(limit, Math.max(1, Math.floor(cmd.refreshMs / 1000))) : limit;
    mounted = await binding.mount(cmd.mountpoint, fs, {
      source: redactUrl(cmd.store), // as given, so mount -a can match it to its fstab line
      allowOther: cmd.allowOther,
      attrTimeoutSec: cacheSec(300),
      negativeTimeoutSec: cacheSec(60),
      operationTimeoutMs: cmd.readTimeoutMs + 5_000,
    });
    const activeMount = mounted;
    log.info(`FUSE binding: ${mounted.binding}`);
    const activeRefresher = new CatalogRefresher(catalog, {
      intervalMs: cmd.refreshMs,
      trust: trust?.policy,
      log,
      onNewGeneration: async (next) => {
        await trust?.accepted(next);
        const changes = activeMount.invalidate ? await generationChanges(fs.current, next) : undefined;
        fs.swapCatalog(next);
        if (changes) await activeMount.invalidate?.(changes);
        preloadShards(next, log);
      },
    });
    refresher = activeRefresher;
    refresher.start();
    const started = Date.now();
    const status = () =>
      mountStatus({ cmd, started, store, remote, fs, refresher: activeRefresher, mounted: activeMount, blocks, memoryCache, memoryLimit: memory, budget, startup, errors: log.errors });
    const socket = controlSocketPath(cmd.mountpoint);
    control = await startControlServer(socket, { status, refresh: () => activeRefresher.refreshNow() });
    unregister = await registerMount({ pid: process.pid, mountpoint: cmd.mountpoint, store: store.url, socket });
    const offline = store.offlineState();
    if (offline.offline) {
      log.warn(`no store answered (${offline.lastError}); serving generation ${catalog.index.generation} from the local copy, cached data only, until a store answers`);
    }
    log.info(
      `mounted ${store.url} generation ${catalog.index.generation} (${catalog.familyNames().length} families) at ${cmd.mountpoint}; ` +
        `memory limit ${formatBytes(cmd.memoryLimit)} (${formatBytes(memory.cacheBytes)} cached blocks, ${formatBytes(memory.inFlightBytes)} in flight), disk cache ${cmd.cacheDir} (cap ${formatBytes(cmd.cacheSize)})`,
    );
    ready.send(`${READY}\n`);
  } catch (err) {
    const reason = `cannot mount ${cmd.mountpoint}: ${(err as Error).message}`;
    log.error(reason);
    const badInput = isBadInput(err);
    ready.send(`${badInput ? BAD_INPUT : 'error'}: ${reason}\n`);
    await mounted?.unmount();
    control?.close();
    throw badInput ? new UsageError(reason) : new Error(reason);
  }
  await untilSignalled(mounted, log);
  await drain?.();
  refresher?.stop();
  control?.close();
  await unregister?.();
}

/** Loads a generation's shards in the background (see Catalog.preloadShards) and logs one line about it. */
function preloadShards(catalog: Catalog, log: Log): void {
  const started = Date.now();
  void catalog.preloadShards().then((result) => {
    const what = `generation ${catalog.index.generation}`;
    if (result.skipped) log.info(`shards of ${what} not preloaded: ${result.skipped}`);
    else if (result.failed > 0) log.warn(`preloading shards of ${what}: ${result.failed} failed (they load on demand): ${result.firstError}`);
    else if (result.loaded > 0) log.info(`preloaded ${result.loaded} shards of ${what} in ${Date.now() - started} ms`);
  });
}

function chooseBinding(choice: FuseChoice): FuseBinding {
  if (choice === 'fuse-native') return new FuseNativeBinding();
  if (choice === 'native' || nativeBindingAvailable()) return new NativeBinding();
  return new FuseNativeBinding();
}

/** A log that also counts its errors, for `rezfs status`. */
function countingLog(inner: Log): Log & { readonly errors: number } {
  let errors = 0;
  return {
    info: inner.info,
    warn: inner.warn,
    error: (message) => {
      errors++;
      inner.error(message);
    },
    get errors() {
      return errors;
    },
  };
}

function trustedKeys(cmd: MountCommand): KeyObject[] {
  return cmd.trustKeys.map(readPublicKey);
}

/** What a generation must satisfy: signed by a trusted key, no older than the newest seen before. */
function trustPolicy(store: ObjectStore, cmd: MountCommand): { policy: () => Promise<TrustPolicy>; accepted: (c: Catalog) => Promise<void> } | undefined {
  if (cmd.trustKeys.length === 0) return undefined;
  const keys = trustedKeys(cmd);
  const floor = new GenerationFloor(cmd.cacheDir, store.url);
  return {
    policy: async () => ({ keys, minGeneration: await floor.read() }),
    accepted: (catalog) => floor.raise(catalog.index.generation),
  };
}

function readyChannel(): { send(message: string): void } {
  const fd = process.env[READY_ENV];
  delete process.env[READY_ENV];
  if (fd === undefined) return { send: () => {} };
  // Synchronous, so a failure's reason reaches the parent even though the process exits right after.
  return {
    send: (message) => {
      writeSync(Number(fd), message);
      closeSync(Number(fd));
    },
  };
}

/**
 * Serves until SIGINT/SIGTERM (which unmount cleanly) or until someone else unmounts the
 * filesystem (`rezfs unmount`, `fusermount -u`, `umount`), then returns so the process can exit.
 */
async function untilSignalled(mounted: Mounted, log: Log): Promise<void> {
  await new Promise<void>((done) => {
    const watch = setInterval(() => {
      fuseMountpoints().then((points) => {
        if (points.includes(mounted.mountpoint)) return;
        log.info(`${mounted.mountpoint} was unmounted; exiting`);
        clearInterval(watch);
        done();
      }, () => undefined);
    }, UNMOUNT_POLL_MS);
    const stop = (signal: string) => {
      clearInterval(watch);
      log.info(`${signal}: unmounting ${mounted.mountpoint}`);
      mounted.unmount().then(done, (err: Error) => {
        log.error(`unmount failed: ${err.message}`);
        done();
      });
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
