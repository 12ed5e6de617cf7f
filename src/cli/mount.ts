import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { randomBytes, type KeyObject } from 'node:crypto';
import type { Stats } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { Server } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { BlockSource, ByteBudget, DiskBlockCache, MemoryBlockCache, RecordedProfiles, ReleasedBytes, planMemory } from '../cache/index.js';
import { Catalog, CatalogRefresher, GenerationFloor, catalogCopyRules, kindOfKey, type StartupProfile, type TrustPolicy } from '../catalog/index.js';
import { startControlServer } from './control.js';
import { controlSocketPath, registerMount } from './registry.js';
import { mountStatus } from './status.js';
import { readPublicKey } from './keys.js';
import { FuseNativeBinding, NativeBinding, PackageCosts, RezFs, StartupSets, generationChanges, nativeBindingUnavailable, type FuseBinding, type Mounted } from '../fs/index.js';
import { OWN_LOG_LINE, streamLog, type Log } from '../log.js';
import { LocalCopyStore, OriginPressures, StoreTraffic, openStores, redactUrl, type ObjectStore } from '../store/index.js';
import { UsageError, formatBytes } from './units.js';
import { isBadInput } from './exit-codes.js';
import { withDeadline } from '../deadline.js';
import { MOUNT_TUNING, kernelTimes, readaheadBlocks, type FuseChoice, type MountConfig } from './mount-config.js';
import { readMountTable } from '../mount-table.js';
import { detach, fuseMountpoints } from './unmount.js';

/** The pipe on which a daemonised mount tells its parent it is ready (or why it failed). */
const exec = promisify(execFile);
const READY_FD = 3;
const READY_ENV = 'REZFS_READY_FD';
const READY = 'ready';
/** The prefix of a failure that is bad input (exit 2); any other failure is `error: `. */
const BAD_INPUT = 'usage';

export async function mountCommand(cmd: MountConfig, argv: readonly string[]): Promise<void> {
  const mountpoint = resolve(cmd.mountpoint);
  await refuseIfMounted(mountpoint);
  const info = await statMountpoint(mountpoint);
  if (!info) throw new UsageError(`mountpoint ${mountpoint} does not exist; create it with mkdir -p`);
  if (!info.isDirectory()) throw new UsageError(`mountpoint ${mountpoint} is not a directory`);
  for (const warning of await mountpointWarnings(mountpoint)) process.stderr.write(`rezfs: warning: ${warning}\n`);
  // Bad store URLs and key files are reported here, as bad usage, before the mount goes to the background.
  await openStores(cmd.store, cmd.mirrors).close();
  trustedKeys(cmd);
  const unavailable = cmd.fuse === 'native' ? nativeBindingUnavailable() : undefined;
  if (unavailable) throw new UsageError(`--fuse native: ${unavailable} (needs libfuse3-dev to build); or use --fuse fuse-native`);
  if (cmd.foreground) await serve({ ...cmd, mountpoint });
  else await daemonize({ ...cmd, mountpoint }, argv);
}

/** What is legal but probably not meant: a mount rez will not cache from, or one that hides files. */
async function mountpointWarnings(mountpoint: string): Promise<string[]> {
  const warnings: string[] = [];
  const temp = [...new Set(['/tmp', resolve(tmpdir())])].find((dir) => mountpoint === dir || mountpoint.startsWith(`${dir}/`));
  if (temp) warnings.push(`${mountpoint} is under ${temp}: rez never caches packages from repositories under its temp dir; mount elsewhere (e.g. /mnt/rez) for rez's payload cache`);
  const hidden = await readdir(mountpoint).catch(() => [] as string[]);
  if (hidden.length > 0) warnings.push(`${mountpoint} is not empty: its ${hidden.length} entries are hidden while the store is mounted over them`);
  return warnings;
}

/**
 * Mounting onto a mount would stack a second one over it: jobs would see the other store, `unmount`
 * would remove the top one and the server below would run on unseen. Refused, unless what is there is
 * a dead FUSE mount (its server exited), which is detached as before. Whether it is dead is asked in a
 * child process with a deadline: stat(2) on a live but stuck mount would hang this one.
 */
async function refuseIfMounted(mountpoint: string): Promise<void> {
  const there = (await readMountTable()).filter((m) => m.mountpoint === mountpoint).at(-1); // the top one
  if (!there) return;
  const already = (state: string) =>
    new UsageError(`${mountpoint} is already mounted (${there.fsType} ${there.source}${state}); unmount it first (rezfs unmount ${mountpoint})`);
  if (!there.fsType.startsWith('fuse')) throw already('');
  // A name nobody has looked up: the kernel must ask the server (the mountpoint's own attributes may
  // still be cached after its server died). ENOENT or any answer is a live server; ENOTCONN a dead one.
  const unseen = join(mountpoint, `.rezfs-probe-${randomBytes(8).toString('hex')}`);
  const probe = await exec('stat', ['-c', '%F', unseen], { timeout: MOUNT_TUNING.probeTimeoutMs, killSignal: 'SIGKILL' }).then(
    () => 'live' as const,
    (err: { stderr?: string; killed?: boolean }) => (err.killed ? 'stuck' : /not connected/.test(err.stderr ?? '') ? 'dead' : 'live'),
  );
  if (probe === 'live') throw already('');
  if (probe === 'stuck') throw already(`, not answering within ${MOUNT_TUNING.probeTimeoutMs / 1000} s`);
  process.stderr.write(`rezfs: ${mountpoint} is a dead mount (its server exited); detaching it\n`);
  await detach(mountpoint);
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
async function daemonize(cmd: MountConfig, argv: readonly string[]): Promise<void> {
  const logFile = cmd.logFile ?? resolve(cmd.cacheDir, 'mount.log');
  const log = openSync(logFile, 'a');
  const logStart = fstatSync(log).size;
  // The child parses the same command line: it gets --log-file only where the user gave none (once is the rule).
  const child = spawn(process.execPath, [...process.execArgv, ...argv, '--foreground', ...(cmd.logFile ? [] : ['--log-file', logFile])], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
    env: { ...process.env, [READY_ENV]: String(READY_FD) },
  });
  const waitMs = readyWaitMs(cmd);
  let timer: NodeJS.Timeout | undefined;
  const message = await new Promise<string>((done) => {
    let text = '';
    const pipe = child.stdio[READY_FD] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => (text += chunk));
    pipe.on('end', () => done(text));
    child.on('exit', (code) => done(text || `exited with code ${code} before mounting; see ${logFile}`));
    timer = setTimeout(() => done(`error: the mount process (pid ${child.pid}) did not report ready within ${waitMs / 1000} s; stopped it (see ${logFile})`), waitMs);
  });
  clearTimeout(timer);
  if (!message.startsWith(READY)) await stopChild(child, cmd.mountpoint);
  if (message.startsWith(READY)) {
    child.unref();
    process.stdout.write(`rezfs: mounted ${cmd.store} at ${cmd.mountpoint} (pid ${child.pid}, log ${logFile})\n`);
    return;
  }
  // The child's failure keeps its class: bad input stays exit 2 in the parent. What libfuse or fusermount3 said
  // went to the child's stderr, the log: it is the reason, so it goes into the message.
  const said = readFileSync(logFile)
    .subarray(logStart)
    .toString('utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !OWN_LOG_LINE.test(line) && !line.startsWith('rezfs: '));
  const reason = `${message.replace(/^(error|usage): /, '').trim()}${said.length > 0 ? ` (${said.join('; ')})` : ''}`;
  throw message.startsWith(`${BAD_INPUT}: `) ? new UsageError(reason) : new Error(reason);
}

/**
 * How long a daemonising mount waits for its child: a few catalog reads (each within about the read
 * deadline) and the kernel's start of FUSE. mount(8), fstab and systemd units must not hang on a
 * child that is stuck; with the default --read-timeout this is 80 s, inside systemd's 90 s.
 */
function readyWaitMs(cmd: MountConfig): number {
  return 2 * cmd.readTimeoutMs + MOUNT_TUNING.fuseStartMs;
}

/** A child that failed or is stuck: gone for good (SIGKILL also ends a stopped one), and nothing left mounted by it. */
async function stopChild(child: ChildProcess, mountpoint: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  }
  if ((await fuseMountpoints()).includes(mountpoint)) await detach(mountpoint).catch(() => undefined);
}

async function serve(cmd: MountConfig): Promise<void> {
  const out = logOutput(cmd.logFile);
  const log = countingLog(streamLog(out.write));
  const ready = readyChannel();
  let mounted: Mounted | undefined;
  let refresher: CatalogRefresher | undefined;
  let control: Server | undefined;
  let metricsServer: Server | undefined;
  let unregister: (() => Promise<void>) | undefined;
  /** Writes what the mount still holds for its cache dir: its recordings, disk copies, blocks waiting for room. */
  let drain: (() => Promise<void>) | undefined;
  process.on('SIGHUP', () => {
    out.reopen(); // logrotate has moved the file away: write to a new one under the same name
    log.info(`SIGHUP: reopened ${cmd.logFile ?? 'stderr'}`);
  });
  try {
    const origins = new OriginPressures(cmd.originLimits);
    const traffic = cmd.metrics ? new StoreTraffic(kindOfKey) : undefined;
    // prom-client is loaded by mounts that serve metrics only.
    const metricsModule = cmd.metrics ? await import('./metrics.js') : undefined;
    const metrics = traffic && metricsModule && new metricsModule.MountMetrics(traffic, origins);
    // A file store on a hung NFS server answers by the read deadline too, and frees what the read had reserved then.
    const remote = openStores(cmd.store, cmd.mirrors, { fileDeadlineMs: cmd.readTimeoutMs, traffic, origins });
    const store = LocalCopyStore.forStore(remote, cmd.cacheDir, catalogCopyRules);
    const trust = trustPolicy(store, cmd);
    const catalog = await Catalog.open(store, await trust?.policy());
    await trust?.accepted(catalog);
    preloadShards(catalog, log); // while the kernel mount is set up, and before anyone resolves
    const memory = planMemory(cmd.memoryLimit);
    const memoryCache = new MemoryBlockCache(memory.cacheBytes, new ReleasedBytes(memory.inFlightBytes).release);
    const budget = new ByteBudget(memory.inFlightBytes);
    const disk = new DiskBlockCache(cmd.cacheDir, cmd.cacheSize);
    // Learn how full the disk cache is now, off every read's path; until then blocks are served, not kept.
    disk.ready().catch((err: Error) => log.warn(`disk cache ${cmd.cacheDir}: ${err.message}`));
    const costs = new PackageCosts();
    const blocks = new BlockSource(store, memoryCache, disk, log, { budget, loadDeadlineMs: cmd.readTimeoutMs, onFetched: costs.fetched });
    const binding = chooseBinding(cmd.fuse, log);
    const recorded = new RecordedProfiles(cmd.cacheDir, store.url);
    const startup = new StartupSets(blocks, {
      log,
      ...(cmd.trustKeys.length > 0 ? { trustedKeys: trustedKeys(cmd) } : {}),
      policy: { recordWindowMs: cmd.recordWindowMs },
      ...(cmd.recordWindowMs > 0 ? { onRecorded: (profile: StartupProfile) => recorded.save(profile, log) } : {}),
    });
    drain = async () => {
      startup.flush();
      // Disk copies first: a copy may hand its block to a write that waits for eviction to make room.
      await Promise.all([recorded.idle(), blocks.flushed().then(() => disk.flushed())]);
    };
    const fs = new RezFs(catalog, blocks, {
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      readDeadlineMs: cmd.readTimeoutMs,
      readaheadBlocks: readaheadBlocks(catalog.config.blockSize),
      inodes: binding.inodes,
      log,
      startup,
      onRead: metrics?.observeRead,
      costs,
    });
    mounted = await binding.mount(cmd.mountpoint, fs, {
      source: redactUrl(cmd.store), // as given, so mount -a can match it to its fstab line
      allowOther: cmd.allowOther,
      ...kernelTimes(cmd, binding.invalidatesChanges),
    });
    const activeMount = mounted;
    let shown = catalog;
    log.info(`FUSE binding: ${mounted.binding}`);
    const activeRefresher = new CatalogRefresher(catalog, {
      intervalMs: cmd.refreshMs,
      trust: trust?.policy,
      log,
      onNewGeneration: async (next) => {
        await trust?.accepted(next);
        const changes = activeMount.invalidate ? await generationChanges(fs.current, next) : undefined;
        fs.swapCatalog(next);
        try {
          if (changes) await activeMount.invalidate?.(changes);
        } finally {
          shown = next;
        }
        preloadShards(next, log);
      },
    });
    refresher = activeRefresher;
    refresher.start();
    const started = Date.now();
    const status = () =>
      mountStatus({ cmd, started, store, remote, fs, shown, refresher: activeRefresher, mounted: activeMount, blocks, memoryCache, memoryLimit: memory, budget, startup, costs, errors: log.errors });
    const socket = controlSocketPath(cmd.mountpoint);
    control = await startControlServer(socket, { status, refresh: () => activeRefresher.refreshNow() });
    if (metrics && metricsModule && cmd.metrics) {
      metricsServer = await metricsModule.serveMetrics(cmd.metrics, metrics, status);
      log.info(`metrics on http://${cmd.metrics.host}:${cmd.metrics.port}/metrics`);
    }
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
    metricsServer?.close();
    throw badInput ? new UsageError(reason) : new Error(reason);
  }
  await untilSignalled(mounted, log);
  // What still waits goes to disk, so the next mount on this cache dir has it; not for ever (a hung disk).
  if (drain) await withDeadline(drain(), MOUNT_TUNING.drainWaitMs, `writing what is left to ${cmd.cacheDir}`).catch((err: Error) => log.warn(err.message));
  refresher?.stop();
  control?.close();
  metricsServer?.close();
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

/**
 * Where the mount's own log lines go: the --log-file (reopened on SIGHUP, the way logrotate expects)
 * or stderr. What libraries write to stderr themselves stays with the file the mount started with.
 */
function logOutput(file: string | undefined): { write(line: string): void; reopen(): void } {
  if (file === undefined) return { write: (line) => void process.stderr.write(line), reopen: () => {} };
  const open = () => createWriteStream(file, { flags: 'a' }).on('error', () => undefined);
  let stream = open();
  return {
    write: (line) => void stream.write(line),
    reopen: () => {
      const old = stream;
      stream = open();
      old.end();
    },
  };
}

/** The binding asked for; `auto` falls back to fuse-native only saying why the native one cannot serve. */
function chooseBinding(choice: FuseChoice, log: Log): FuseBinding {
  if (choice === 'fuse-native') return new FuseNativeBinding();
  const unavailable = choice === 'auto' ? nativeBindingUnavailable() : undefined;
  if (!unavailable) return new NativeBinding();
  log.warn(`the native FUSE binding cannot be used (${unavailable}); serving through fuse-native (libfuse2)`);
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

function trustedKeys(cmd: MountConfig): KeyObject[] {
  return cmd.trustKeys.map(readPublicKey);
}

/** What a generation must satisfy: signed by a trusted key, no older than the newest seen before. */
function trustPolicy(store: ObjectStore, cmd: MountConfig): { policy: () => Promise<TrustPolicy>; accepted: (c: Catalog) => Promise<void> } | undefined {
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
    }, MOUNT_TUNING.unmountPollMs);
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
