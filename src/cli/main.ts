#!/usr/bin/env node
/*
 * The command line. Each command's module is imported when that command runs: `rezfs unmount` or `status` then
 * loads a few modules instead of the S3 SDK, the FUSE bindings and the metrics library (about 0.25 s of CPU per
 * process, which farm scripts and the test suite pay hundreds of times).
 */
import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import type { Catalog } from '../catalog/index.js';
import { addOptions, cacheDirOf, GivenOptions, mountOptions, parseCacheSize, parseFuse, parseRecordWindow, publishStateDirOf, writableDirectory } from './options.js';
import type { PublishFlags } from './publish.js';
import { UsageError, parseDuration, parseSize } from './units.js';

function program(): Command {
  const cli = new Command('rezfs')
    .description('Publish rez packages to object storage and mount them as a lazy, read-only package repository')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'rezfs: ')) });

  addOptions(
    cli
      .command('publish')
      .description('upload released packages from a rez repository; incremental and idempotent')
      .argument('<repo-dir>', 'released-package repository (family/version/package.py, family.py, ...)')
      .argument('[packages...]', 'what to publish: <family> or <family>/<version> (default: everything)')
      .option('--allow-unsigned', 'publish unsigned onto a store whose catalog is signed (mounts that trust a key stay behind)')
      .option('--allow-redefine', 'accept a changed package definition of a published version that gains no variant')
      .option('--rehash', 'read and compare every file, trusting neither stat data nor what this host remembers')
      .option('--repair', 'also check every pack of the published versions, and rebuild missing or damaged ones from the repository')
      .option('--dry-run', 'say what would be published (or repaired), change nothing'),
    ['store', 'signKey', 'stateDir'],
  ).action(async (repoDir: string, packages: string[], opts: Omit<PublishFlags, 'store' | 'signKey' | 'stateDir'>, command: Command) => {
    const given = GivenOptions.of(command);
    const { publishCommand } = await import('./publish.js');
    await publishCommand(repoDir, packages, { ...opts, store: given.required('store').text, signKey: given.one('signKey')?.text, stateDir: publishStateDirOf(given) });
  });

  addOptions(
    cli.command('mount').description('mount the store as a read-only rez package repository').argument('<mountpoint>'),
    ['store', 'mirror', 'cacheDir', 'cacheSize', 'memoryLimit', 'readTimeout', 'refresh', 'allowOther', 'foreground', 'trustKey', 'logFile', 'fuse', 'recordWindow', 'metrics', 'maxRequests'],
  ).action(async (mountpoint: string, _opts: unknown, command: Command) => {
    const options = await mountOptions(mountpoint, GivenOptions.of(command));
    const { mountCommand } = await import('./mount.js');
    await mountCommand(options, process.argv.slice(1));
  });

  addOptions(
    cli
      .command('prefetch')
      .description("pull packages' payloads into the disk cache (farm warm-up), from a list or a saved rez context")
      .argument('[packages...]', '<family>-<version> ...')
      .option('--context <file.rxt>', 'every package a saved rez context resolved to (those of other repositories are skipped, and named)')
      .option('--pin', 'exempt them from eviction until rezfs cache unpin'),
    ['store', 'cacheDir', 'cacheSize'],
  ).action(async (packages: string[], opts: { context?: string; pin?: boolean }, command: Command) => {
    const given = GivenOptions.of(command);
    const { prefetchCommand } = await import('./maintenance.js');
    await prefetchCommand(packages, {
      store: given.required('store').text,
      cacheDir: await writableDirectory(cacheDirOf(given)),
      cacheSize: parseCacheSize(given.one('cacheSize')!),
      context: opts.context,
      pin: Boolean(opts.pin),
    });
  });

  addOptions(
    cli
      .command('retire')
      .description('take published versions out of the next catalog generation (what rez-rm does to a directory)')
      .argument('[packages...]', '<family>/<version> or <family>-<version>'),
    ['store', 'ignoredSince', 'signKey'],
  ).action(async (packages: string[], _opts: unknown, command: Command) => {
    const given = GivenOptions.of(command);
    const [{ parsePackageRef }, { readPrivateKey }, { openWritableStore }, { streamLog }, { retire }, { notifyMounts }] = await Promise.all([
      import('./prefetch.js'),
      import('./keys.js'),
      import('../store/index.js'),
      import('../log.js'),
      import('../publish/index.js'),
      import('./registry.js'),
    ]);
    const targets = packages.map(parsePackageRef);
    const ignoredSince = given.one('ignoredSince');
    const ignoredForMs = ignoredSince === undefined ? undefined : parseDuration(ignoredSince.where, ignoredSince.text);
    if (targets.length === 0 && ignoredForMs === undefined) throw new UsageError('nothing to retire: name versions (<family>/<version>) or give --ignored-since');
    const signKey = given.one('signKey');
    const signingKey = signKey === undefined ? undefined : readPrivateKey(signKey.text);
    const store = openWritableStore(given.required('store').text);
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

  addOptions(
    cli
      .command('profile')
      .description('learn what the versions a command uses read at start-up, and publish it for every mount to prefetch')
      .argument('[command...]', 'the command to profile (after --); it runs with REZ_PACKAGES_PATH set to a private mount')
      .option('--from-cache <dir>', 'publish what a mount of the store recorded under this cache dir instead of running a command'),
    ['store', 'signKey', 'recordWindow', 'fuse'],
  ).action(async (command: string[], opts: { fromCache?: string }, cli: Command) => {
    const given = GivenOptions.of(cli);
    const recordWindow = given.one('recordWindow')!;
    parseRecordWindow(recordWindow);
    const fuse = parseFuse(given.one('fuse')!);
    const { profileCommand } = await import('./profile.js');
    await profileCommand({ store: given.required('store').text, signKey: given.one('signKey')?.text, fromCache: opts.fromCache, recordWindow: recordWindow.text, fuse, command });
  });

  addOptions(
    cli.command('cache').description('inspect or trim a disk cache: stats | gc | clear | verify | unpin [<name>]').argument('<action>').argument('[name]'),
    ['cacheDir', 'cacheSize'],
  ).action(async (action: string, name: string | undefined, _opts: unknown, command: Command) => {
    const given = GivenOptions.of(command);
    // A cap here is what gc trims to, so any size goes, and there is no default: gc without one is refused.
    const cap = given.one('cacheSize', false);
    const { cacheCommand } = await import('./maintenance.js');
    await cacheCommand(action, name, { cacheDir: cacheDirOf(given).text, cacheSize: cap === undefined ? undefined : parseSize(cap.where, cap.text) });
  });

  addOptions(cli.command('verify').description('check every object of the current catalog generation against its hash'), ['store', 'trustKey']).action(
    async (_opts: unknown, command: Command) => {
      const given = GivenOptions.of(command);
      const { verifyCommand } = await import('./maintenance.js');
      await verifyCommand(given.required('store').text, given.all('trustKey').map((k) => k.text));
    },
  );

  addOptions(cli.command('gc').description('delete objects that no kept catalog generation references, once older than the grace period'), ['store', 'keepGenerations', 'grace'])
    .option('--dry-run', 'list what would be deleted; delete nothing')
    .action(async (opts: { dryRun?: boolean }, command: Command) => {
      const given = GivenOptions.of(command);
      const keep = given.one('keepGenerations')!;
      if (!/^\d+$/.test(keep.text.trim())) throw new UsageError(`${keep.where} ${JSON.stringify(keep.text)} is not a whole number; use e.g. 3`);
      const grace = given.one('grace')!;
      const { gcCommand } = await import('./maintenance.js');
      await gcCommand({
        store: given.required('store').text,
        keepGenerations: Number(keep.text),
        graceMs: parseDuration(grace.where, grace.text),
        dryRun: Boolean(opts.dryRun),
      });
    });

  addOptions(cli.command('sync').description("copy the source store's current generation to another store (another site's), HEAD last"), ['from', 'to'])
    .option('--force', 'replace a target that has generations of its own, or a newer one')
    .action(async (opts: { force?: boolean }, command: Command) => {
      const given = GivenOptions.of(command);
      const { syncCommand } = await import('./maintenance.js');
      await syncCommand({ from: given.required('from').text, to: given.required('to').text, force: Boolean(opts.force) });
    });

  cli
    .command('keygen')
    .description('make an ed25519 key pair for signing catalogs: <key-file> (private, 0600) and <key-file>.pub')
    .argument('<key-file>')
    .action(async (keyFile: string) => {
      const { generateSigningKeys } = await import('../catalog/index.js');
      const keys = generateSigningKeys();
      try {
        await writeFile(keyFile, keys.privatePem, { mode: 0o600, flag: 'wx' });
        await writeFile(`${keyFile}.pub`, keys.publicPem, { mode: 0o644, flag: 'wx' });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'EEXIST') throw new UsageError(`${e.path} exists; choose another name or remove it`);
        if (e.code === 'ENOENT') throw new UsageError(`cannot write ${e.path}: directory ${dirname(resolve(e.path ?? keyFile))} does not exist`);
        if (e.code !== undefined) throw new UsageError(`cannot write ${e.path ?? keyFile} (${e.code})`);
        throw err;
      }
      process.stdout.write(`wrote ${keyFile} (keep it secret) and ${keyFile}.pub (give it to mounts: --trust-key), key id ${keys.keyId}\n`);
    });

  cli
    .command('unmount')
    .description('unmount a rezfs mount')
    .argument('<mountpoint>')
    .action(async (mountpoint: string) => (await import('./unmount.js')).unmountCommand(mountpoint));

  cli
    .command('status')
    .description('what a running mount serves and how: generation, stores, caches, errors')
    .argument('<mountpoint>')
    .option('--json', 'one JSON document, for monitoring')
    .action(async (mountpoint: string, opts: { json?: boolean }) => {
      const { statusCommand } = await import('./status.js');
      await statusCommand(resolve(mountpoint), Boolean(opts.json));
    });

  addOptions(cli.command('ls').description('list the families in the catalog, or the versions of one family').argument('[family]'), ['store']).action(
    async (family: string | undefined, _opts: unknown, command: Command) => {
      const [{ openStore }, { Catalog }] = await Promise.all([import('../store/index.js'), import('../catalog/index.js')]);
      const store = openStore(GivenOptions.of(command).required('store').text);
      try {
        const catalog = await Catalog.open(store);
        process.stdout.write(family === undefined ? listFamilies(catalog) : await listVersions(catalog, family));
      } finally {
        await store.close();
      }
    },
  );
  return cli;
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
  const { ignoreMarker } = await import('../catalog/index.js');
  if (!catalog.family(family)) throw new UsageError(`no family ${family} in ${catalog.store.url}; run rezfs ls to see what it holds`);
  const shard = await catalog.shard(family);
  // rez hides a version whose `.ignore<version>` file sits in the family directory (rez-pkg-ignore writes it).
  const ignored = (version: string) => shard.extras[ignoreMarker(version)]?.type === 'file';
  const served = Object.entries(shard.versions).map(
    ([version, record]) => `${family}/${version}\tpublished ${new Date(record.publishedMs).toISOString()}${ignored(version) ? '\tignored (rez-pkg-ignore)' : ''}\n`,
  );
  const retired = Object.entries(shard.retired ?? {}).map(([version, tomb]) => `${family}/${version}\tretired ${new Date(tomb.retiredMs).toISOString()}\n`);
  return [...served, ...retired].join('');
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0; // EXIT_OK: exit-codes.ts, which knows the error types of every layer, is loaded for a failure only
  } catch (err) {
    const { EXIT_OK, EXIT_USAGE, exitCodeOf } = await import('./exit-codes.js');
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    process.stderr.write(`rezfs: ${(err as Error).message}\n`);
    return exitCodeOf(err);
  }
}

process.exitCode = await main(process.argv);
// Sockets of the S3 client or the FUSE thread must not keep a finished command alive.
process.exit();
