#!/usr/bin/env node
import { writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { Catalog, generateSigningKeys } from '../catalog/index.js';
import { streamLog } from '../log.js';
import { retire } from '../publish/index.js';
import { openStore, openWritableStore } from '../store/index.js';
import { parsePackageRef } from './prefetch.js';
import { EXIT_OK, EXIT_USAGE, exitCodeOf } from './exit-codes.js';
import { readPrivateKey } from './keys.js';
import { cacheCommand, gcCommand, prefetchCommand, syncCommand, verifyCommand } from './maintenance.js';
import { profileCommand } from './profile.js';
import { notifyMounts } from './registry.js';
import { mountCommand, type FuseChoice } from './mount.js';
import { publishCommand, type PublishFlags } from './publish.js';
import { statusCommand } from './status.js';
import { unmountCommand } from './unmount.js';
import { UsageError, parseDuration, parseSize } from './units.js';

function defaultCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'rezfs');
}

function fuseOption(): Option {
  return new Option('--fuse <binding>', 'FUSE binding: native (libfuse3, rezfs\'s own), fuse-native (libfuse2), auto (native when built)')
    .choices(['auto', 'native', 'fuse-native'])
    .env('REZFS_FUSE')
    .default('auto');
}

function recordWindowOption(): Option {
  return new Option('--record-window <duration>', 'record what each version reads this long after its first use (its startup profile; 0: never)')
    .env('REZFS_RECORD_WINDOW')
    .default('20s');
}

function defaultPublishStateDir(): string {
  return join(defaultCacheDir(), 'publish');
}

function storeOption(): Option {
  return new Option('--store <url>', 'store URL: file:///dir, s3://bucket/prefix, dav+https://host/repo/prefix, or https://host/prefix (read-only)').env('REZFS_STORE').makeOptionMandatory();
}

function cacheDirOption(): Option {
  return new Option('--cache-dir <dir>', 'disk cache for payload blocks').env('REZFS_CACHE_DIR').default(defaultCacheDir());
}

function cacheSizeOption(): Option {
  return new Option('--cache-size <size>', 'hard cap for the disk cache (LRU eviction)').env('REZFS_CACHE_SIZE');
}

/** Repeated --mirror options, or REZFS_MIRRORS as a comma-separated list, in order. */
function collectUrls(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').map((url) => url.trim()).filter((url) => url !== '')];
}

function program(): Command {
  const cli = new Command('rezfs')
    .description('Publish rez packages to object storage and mount them as a lazy, read-only package repository')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'rezfs: ')) });

  cli
    .command('publish')
    .description('upload released packages from a rez repository; incremental and idempotent')
    .argument('<repo-dir>', 'released-package repository (family/version/package.py, family.py, ...)')
    .argument('[packages...]', 'what to publish: <family> or <family>/<version> (default: everything)')
    .addOption(storeOption())
    .addOption(new Option('--sign-key <file>', 'sign the new index with this ed25519 private key (rezfs keygen)').env('REZFS_SIGN_KEY'))
    .addOption(new Option('--allow-unsigned', 'publish unsigned onto a store whose catalog is signed (mounts that trust a key stay behind)'))
    .addOption(new Option('--allow-redefine', 'accept a changed package definition of a published version that gains no variant'))
    .addOption(new Option('--rehash', 'read and compare every file, trusting neither stat data nor what this host remembers'))
    .addOption(new Option('--repair', 'also check every pack of the published versions, and rebuild missing or damaged ones from the repository'))
    .addOption(new Option('--dry-run', 'say what would be published (or repaired), change nothing'))
    .addOption(new Option('--state-dir <dir>', 'where this host remembers which versions it found unchanged').env('REZFS_PUBLISH_STATE_DIR').default(defaultPublishStateDir()))
    .action(async (repoDir: string, packages: string[], opts: PublishFlags) => publishCommand(repoDir, packages, opts));

  cli
    .command('retire')
    .description('take published versions out of the next catalog generation (what rez-rm does to a directory)')
    .argument('[packages...]', '<family>/<version> or <family>-<version>')
    .addOption(storeOption())
    .addOption(new Option('--ignored-since <duration>', "also every version rez-pkg-ignore hid this long ago or longer (rez-rm --ignored-since's rule), e.g. 30d"))
    .addOption(new Option('--sign-key <file>', 'sign the new index with this ed25519 private key (rezfs keygen)').env('REZFS_SIGN_KEY'))
    .action(async (packages: string[], opts: { store: string; ignoredSince?: string; signKey?: string }) => {
      const targets = packages.map(parsePackageRef);
      const ignoredForMs = opts.ignoredSince === undefined ? undefined : parseDuration('--ignored-since', opts.ignoredSince);
      if (targets.length === 0 && ignoredForMs === undefined) throw new UsageError('nothing to retire: name versions (<family>/<version>) or give --ignored-since');
      const signingKey = opts.signKey === undefined ? undefined : readPrivateKey(opts.signKey);
      const store = openWritableStore(opts.store);
      try {
        const log = streamLog((l) => process.stderr.write(l), false);
        const { outcomes, generation } = await retire(store, { targets, ignoredForMs }, { log, signingKey });
        for (const o of outcomes) {
          process.stdout.write(
            o.result === 'retired'
              ? `retired ${o.family}/${o.version} (published ${new Date(o.publishedMs!).toISOString()})\n`
              : `${o.family}/${o.version} was retired already\n`,
          );
        }
        if (generation === undefined) process.stdout.write(`nothing changed in ${store.url}\n`);
        else {
          const told = await notifyMounts(store.url);
          process.stdout.write(`generation ${generation} of ${store.url}${told > 0 ? `; ${told} local mount(s) told to refresh` : ''}\n`);
        }
      } finally {
        await store.close();
      }
    });

  cli
    .command('mount')
    .description('mount the store as a read-only rez package repository')
    .argument('<mountpoint>')
    .addOption(storeOption())
    .addOption(new Option('--mirror <url>', 'a store with the same objects, read when the ones before it fail (repeatable, in order)').env('REZFS_MIRRORS').argParser(collectUrls).default([]))
    .addOption(cacheDirOption())
    .addOption(cacheSizeOption().default('20G'))
    .addOption(new Option('--memory-limit <size>', 'memory of the whole mount process; blocks get what it does not need itself').env('REZFS_MEMORY_LIMIT').default('512M'))
    .addOption(new Option('--read-timeout <duration>', 'a read that cannot be served by then fails with EIO').env('REZFS_READ_TIMEOUT').default('30s'))
    .addOption(new Option('--allow-other', 'let other users see the mount (needs user_allow_other in /etc/fuse.conf)').env('REZFS_ALLOW_OTHER'))
    .addOption(new Option('--foreground', 'serve in this process until SIGINT/SIGTERM'))
    .addOption(new Option('--refresh <duration>', 'look for newly published versions this often (0: only when a local publish says so)').env('REZFS_REFRESH').default('30s'))
    .addOption(new Option('--trust-key <file...>', 'serve only catalogs signed by one of these ed25519 public keys').env('REZFS_TRUST_KEYS'))
    .addOption(new Option('--log-file <file>', 'where a mount logs (default: <cache-dir>/mount.log in the background, stderr in the foreground)'))
    .addOption(fuseOption())
    .addOption(recordWindowOption())
    .action(async (mountpoint: string, opts: Record<string, string | string[] | boolean | undefined>) => {
      await mountCommand(
        {
          mountpoint,
          store: String(opts.store),
          mirrors: opts.mirror as string[],
          cacheDir: String(opts.cacheDir),
          cacheSize: parseSize('--cache-size', String(opts.cacheSize)),
          memoryLimit: parseSize('--memory-limit', String(opts.memoryLimit)),
          readTimeoutMs: parseDuration('--read-timeout', String(opts.readTimeout)),
          allowOther: Boolean(opts.allowOther),
          foreground: Boolean(opts.foreground),
          logFile: opts.logFile === undefined ? undefined : String(opts.logFile),
          trustKeys: trustKeyFiles(opts.trustKey),
          refreshMs: parseDuration('--refresh', String(opts.refresh)),
          fuse: opts.fuse as FuseChoice,
          recordWindowMs: parseDuration('--record-window', String(opts.recordWindow)),
        },
        process.argv.slice(1),
      );
    });

  cli
    .command('profile')
    .description('learn what the versions a command uses read at start-up, and publish it for every mount to prefetch')
    .argument('[command...]', 'the command to profile (after --); it runs with REZ_PACKAGES_PATH set to a private mount')
    .addOption(storeOption())
    .addOption(new Option('--sign-key <file>', 'sign the profiles and the new index with this ed25519 private key').env('REZFS_SIGN_KEY'))
    .option('--from-cache <dir>', 'publish what a mount of the store recorded under this cache dir instead of running a command')
    .addOption(recordWindowOption())
    .addOption(fuseOption())
    .action(async (command: string[], opts: { store: string; signKey?: string; fromCache?: string; recordWindow: string; fuse: string }) => {
      parseDuration('--record-window', opts.recordWindow);
      await profileCommand({ store: opts.store, signKey: opts.signKey, fromCache: opts.fromCache, recordWindow: opts.recordWindow, fuse: opts.fuse, command });
    });

  cli
    .command('prefetch')
    .description('pull packages\' payloads into the disk cache (farm warm-up), from a list or a saved rez context')
    .argument('[packages...]', '<family>-<version> ...')
    .addOption(storeOption())
    .addOption(cacheDirOption())
    .option('--context <file.rxt>', 'every package a saved rez context resolved to')
    .option('--pin', 'exempt them from eviction until rezfs cache unpin')
    .action(async (packages: string[], opts: { store: string; cacheDir: string; context?: string; pin?: boolean }) =>
      prefetchCommand(packages, { ...opts, pin: Boolean(opts.pin) }),
    );

  cli
    .command('cache')
    .description('inspect or trim a disk cache: stats | gc | clear | verify | unpin [<name>]')
    .argument('<action>')
    .argument('[name]')
    .addOption(cacheDirOption())
    .addOption(cacheSizeOption())
    .action(async (action: string, name: string | undefined, opts: { cacheDir: string; cacheSize?: string }) =>
      cacheCommand(action, name, { cacheDir: opts.cacheDir, cacheSize: opts.cacheSize === undefined ? undefined : parseSize('--cache-size', opts.cacheSize) }),
    );

  cli
    .command('verify')
    .description('check every object of the current catalog generation against its hash')
    .addOption(storeOption())
    .addOption(new Option('--trust-key <file...>', 'also require a signature by one of these keys').env('REZFS_TRUST_KEYS'))
    .action(async (opts: { store: string; trustKey?: string | string[] }) => verifyCommand(opts.store, trustKeyFiles(opts.trustKey)));

  cli
    .command('gc')
    .description('delete objects that no kept catalog generation references, once older than the grace period')
    .addOption(storeOption())
    .addOption(new Option('--keep-generations <n>', 'generations kept along the chain from the current one').default('1'))
    .addOption(new Option('--grace <duration>', 'unreferenced objects younger than this stay, and generations current within it (at least 1h)').default('7d'))
    .option('--dry-run', 'list what would be deleted; delete nothing')
    .action(async (opts: { store: string; keepGenerations: string; grace: string; dryRun?: boolean }) => {
      const keepGenerations = Number(opts.keepGenerations);
      if (!/^\d+$/.test(opts.keepGenerations.trim())) throw new UsageError(`--keep-generations ${JSON.stringify(opts.keepGenerations)} is not a whole number; use e.g. 3`);
      await gcCommand({ store: opts.store, keepGenerations, graceMs: parseDuration('--grace', opts.grace), dryRun: Boolean(opts.dryRun) });
    });

  cli
    .command('sync')
    .description("copy the source store's current generation to another store (another site's), HEAD last")
    .requiredOption('--from <url>', 'store to copy from (any URL, http:// too)')
    .requiredOption('--to <url>', 'store to copy to: file:// or s3://')
    .option('--force', 'replace a target that has generations of its own, or a newer one')
    .action(async (opts: { from: string; to: string; force?: boolean }) => syncCommand({ from: opts.from, to: opts.to, force: Boolean(opts.force) }));

  cli
    .command('keygen')
    .description('make an ed25519 key pair for signing catalogs: <key-file> (private, 0600) and <key-file>.pub')
    .argument('<key-file>')
    .action(async (keyFile: string) => {
      const keys = generateSigningKeys();
      try {
        await writeFile(keyFile, keys.privatePem, { mode: 0o600, flag: 'wx' });
        await writeFile(`${keyFile}.pub`, keys.publicPem, { mode: 0o644, flag: 'wx' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${(err as NodeJS.ErrnoException).path} exists; choose another name or remove it`);
        throw err;
      }
      process.stdout.write(`wrote ${keyFile} (keep it secret) and ${keyFile}.pub (give it to mounts: --trust-key), key id ${keys.keyId}\n`);
    });

  cli
    .command('unmount')
    .description('unmount a rezfs mount')
    .argument('<mountpoint>')
    .action(async (mountpoint: string) => unmountCommand(mountpoint));

  cli
    .command('status')
    .description('what a running mount serves and how: generation, stores, caches, errors')
    .argument('<mountpoint>')
    .option('--json', 'one JSON document, for monitoring')
    .action(async (mountpoint: string, opts: { json?: boolean }) => statusCommand(resolve(mountpoint), Boolean(opts.json)));

  cli
    .command('ls')
    .description('list the families in the catalog, or the versions of one family')
    .argument('[family]')
    .addOption(storeOption())
    .action(async (family: string | undefined, opts: { store: string }) => {
      const store = openStore(opts.store);
      try {
        const catalog = await Catalog.open(store);
        process.stdout.write(family === undefined ? listFamilies(catalog) : await listVersions(catalog, family));
      } finally {
        await store.close();
      }
    });
  return cli;
}


/** Repeated --trust-key options, or a comma-separated REZFS_TRUST_KEYS. */
function trustKeyFiles(value: string | string[] | boolean | undefined): string[] {
  if (value === undefined || typeof value === 'boolean') return [];
  return (Array.isArray(value) ? value : value.split(',')).filter((f) => f !== '');
}

function listFamilies(catalog: Catalog): string {
  return catalog
    .familyNames()
    .map((name) => {
      const entry = catalog.family(name)!;
      return `${name}\t${entry.versions} version${entry.versions === 1 ? '' : 's'}\t${new Date(entry.mtimeMs).toISOString()}\n`;
    })
    .join('');
}

async function listVersions(catalog: Catalog, family: string): Promise<string> {
  if (!catalog.family(family)) throw new UsageError(`no family ${family} in ${catalog.store.url}; run rezfs ls to see what it holds`);
  const shard = await catalog.shard(family);
  // rez hides a version whose `.ignore<version>` file sits in the family directory (rez-pkg-ignore writes it).
  const ignored = (version: string) => shard.extras[`.ignore${version}`]?.type === 'file';
  const served = Object.entries(shard.versions).map(
    ([version, record]) => `${family}/${version}\tpublished ${new Date(record.publishedMs).toISOString()}${ignored(version) ? '\tignored (rez-pkg-ignore)' : ''}\n`,
  );
  const retired = Object.entries(shard.retired ?? {}).map(([version, tomb]) => `${family}/${version}\tretired ${new Date(tomb.retiredMs).toISOString()}\n`);
  return [...served, ...retired].join('');
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    process.stderr.write(`rezfs: ${(err as Error).message}\n`);
    return exitCodeOf(err);
  }
}

process.exitCode = await main(process.argv);
// Sockets of the S3 client or the FUSE thread must not keep a finished command alive.
process.exit();
