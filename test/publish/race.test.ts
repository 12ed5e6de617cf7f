/**
 * Four publishers racing into one store, 20 times: each round all four CLIs start at once, each publishing its own
 * family's `<own>/<n>.0.0` and a version `shared/<n>.<k>.0` of one family all four write to (so the family shard
 * itself must be merged, not just the index). All must succeed, each round's `rezfs ls` must count every package
 * so far, and at the end every name must be there and `rezfs verify` must pass. Once into a file:// store (whose
 * compare-and-swap is a lock file), once into s3rver, which ignores conditional PUTs: there the publishers must
 * find that out and take turns by lease (catalog/head-writer.ts, store/lease.ts). And three publishers, 10 rounds,
 * into a WebDAV server (Apache mod_dav, If-Match stripped as Artifactory and Nexus ignore it; a dav+ store always
 * takes the lease, since mod_dav's own check is not atomic either).
 * (No mount: this runs once, not once per FUSE binding.)
 */
import { randomInt } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { describeWithDav, startDavServer, type DavServer } from '../support/dav-server.js';
import { useS3Server } from '../support/use-s3-server.js';
import { openStore } from '../../src/store/index.js';
import { pseudoRandomBytes } from '../support/repo-generator.js';
import { packageDefinition, tempDir, writeTree } from '../support/small-repo.js';

const ROUNDS = 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let work: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  work = await tempDir('race');
});
afterAll(async () => {
  await work.remove();
});

/** `rezfs ls [family]`: the first column of each line (`family`, or `family/version`) -> the second. */
async function listing(store: string, env: Record<string, string>, family?: string): Promise<Map<string, string>> {
  const r = await runCli(['ls', ...(family ? [family] : []), '--store', store], { env });
  expect(r.code, `rezfs ls ${family ?? ''}: ${r.stderr}`).toBe(0);
  return new Map(r.stdout.split('\n').filter(Boolean).map((line) => line.split('\t') as [string, string]));
}

interface RaceOptions {
  publishers?: number;
  rounds?: number;
  /** For every CLI run, e.g. the store's credentials. */
  env?: Record<string, string>;
}

/** Runs the race into `store`; returns how many publishes found HEAD moved and merged. */
async function race(store: string, label: string, options: RaceOptions = {}): Promise<number> {
  const rounds = options.rounds ?? ROUNDS;
  // No notifications to mounts of this host (there are none of this store anyway); each side its own state.
  const env = { ...options.env, REZFS_RUNTIME_DIR: join(work.path, 'run') };
  const sides = [
    { name: 'A', repo: join(work.path, label, 'repo-a'), own: 'alpha', sharedMinor: 1 },
    { name: 'B', repo: join(work.path, label, 'repo-b'), own: 'beta', sharedMinor: 2 },
    { name: 'C', repo: join(work.path, label, 'repo-c'), own: 'gamma', sharedMinor: 3 },
    { name: 'D', repo: join(work.path, label, 'repo-d'), own: 'delta', sharedMinor: 4 },
  ].slice(0, options.publishers ?? 4);
  const published: string[] = [];
  let merges = 0;
  const reruns: string[] = [];
  let seed = 1;
  for (let round = 0; round < rounds; round++) {
    const jobs = sides.map((side) => {
      const own = `${side.own}/${round}.0.0`;
      const shared = `shared/${round}.${side.sharedMinor}.0`;
      published.push(own, shared);
      return { side, packages: [own, shared] };
    });
    for (const { side, packages } of jobs) {
      const tree: Record<string, Buffer | string> = {};
      for (const pkg of packages) {
        const [family, version] = pkg.split('/') as [string, string];
        tree[`${pkg}/package.py`] = packageDefinition(family, version, `# published by ${side.name}\n`);
        // Sizes vary so that the publishers reach the compare-and-swap of index/HEAD at varying moments.
        tree[`${pkg}/lib/payload.bin`] = pseudoRandomBytes(randomInt(1, 1_500_000), seed++);
      }
      await writeTree(side.repo, tree);
    }
    // All at once; now and then one a moment later.
    const skew = round % 4 === 3 ? randomInt(0, 150) : 0;
    const publishOne = ({ side, packages }: (typeof jobs)[number]) => {
      const state = ['--state-dir', join(work.path, label, `state-${side.name}`)];
      return runCli(['publish', side.repo, ...packages, '--store', store, ...state], { env, timeoutMs: 120_000 });
    };
    const results = await Promise.all(
      jobs.map(async (job, i) => {
        if (i === 1 && skew) await sleep(skew);
        return publishOne(job);
      }),
    );
    for (const [i, first] of results.entries()) {
      let r = first;
      // s3rver now and then drops a connection under this load (the test proxy answers 502 until the publisher's
      // retries are spent). A publish that fails that way must have lost nothing either: it is run again, as a
      // release hook would be, and the round's checks below still count every package.
      if (r.code !== 0 && /HTTP 5\d\d/.test(r.stderr)) {
        reruns.push(`round ${round}, publisher ${jobs[i]!.side.name}: ${r.stderr.trim()}`);
        r = await publishOne(jobs[i]!);
      }
      expect(r.code, `round ${round}, publisher ${jobs[i]!.side.name}: ${r.stderr}`).toBe(0);
      if (/HEAD moved during publish/.test(r.stderr + r.stdout)) merges++;
    }

    // Every round: each family's version count (a lost package lowers it).
    const families = await listing(store, env);
    const n = round + 1;
    const own = `${n} version${n > 1 ? 's' : ''}`;
    const expected = Object.fromEntries([...sides.map((side) => [side.own, own]), ['shared', `${sides.length * n} versions`]]);
    expect(Object.fromEntries(families), `round ${round}: packages lost`).toEqual(expected);
  }
  const versions = new Set<string>();
  for (const family of [...sides.map((side) => side.own), 'shared']) for (const name of (await listing(store, env, family)).keys()) versions.add(name);
  expect(published.filter((p) => !versions.has(p)), 'packages lost').toEqual([]);
  expect(versions.size).toBe(published.length);
  const verified = await runCli(['verify', '--store', store], { env, timeoutMs: 120_000 });
  expect(verified.code, `rezfs verify: ${verified.stderr}`).toBe(0);
  expect(verified.stdout).toMatch(new RegExp(`: ${sides.length + 1} families, ${published.length} versions, .*all good`));
  console.log(
    `[race ${label}] ${rounds} rounds, ${published.length} packages, ${merges} publish(es) found index/HEAD moved and re-merged` +
      (reruns.length ? `; ${reruns.length} run again after a store 5xx:\n  ${reruns.join('\n  ')}` : ''),
  );
  return merges;
}

describe('concurrent publishers', () => {
  it(`four publishers racing ${ROUNDS} times into one file:// store lose nothing`, async () => {
    // The race was real: in some rounds one publisher lost the compare-and-swap and had to merge.
    expect(await race(`file://${join(work.path, 'file-store')}`, 'file')).toBeGreaterThan(0);
  }, 300_000);

  describe('on s3rver, which ignores conditional PUTs', () => {
    const server = useS3Server();
    it(`four publishers racing ${ROUNDS} times lose nothing: they take turns by lease`, async () => {
      const s3 = server();
      const merges = await race(s3.storeUrl('race'), 's3');
      // Every publisher found out that the store ignores conditions and coordinated through its lease ...
      expect(s3.requests.count({ method: 'PUT', keyMatch: /(^|\/)locks\/catalog\// })).toBeGreaterThanOrEqual(ROUNDS * 4);
      // ... and some found HEAD moved before they held it, and merged.
      expect(merges).toBeGreaterThan(0);
      // Nothing of the coordination stays behind.
      const store = openStore(s3.storeUrl('race'));
      const left: string[] = [];
      for await (const { key } of store.list('locks/')) left.push(key);
      await store.close();
      expect(left).toEqual([]);
    }, 420_000);
  });

  describeWithDav(
    'on a WebDAV server (Apache mod_dav, If-Match stripped as artifact repositories ignore it)',
    () => {
      let dav: DavServer;
      beforeAll(async () => {
        dav = await startDavServer({ conditions: 'ignored' });
      });
      afterAll(async () => {
        await dav?.stop();
      });
      it('three publishers racing 10 times into one dav+http:// store lose nothing: they take turns by lease', async () => {
        const env = { REZFS_HTTP_USER: dav.publisher.user, REZFS_HTTP_PASSWORD: dav.publisher.password };
        const merges = await race(dav.storeUrl('/repo/race'), 'dav', { publishers: 3, rounds: 10, env });
        const claims = (await dav.requests()).filter((r) => r.method === 'PUT' && r.path.startsWith('/repo/race/locks/catalog/'));
        expect(claims.length).toBeGreaterThanOrEqual(10 * 3);
        expect(merges).toBeGreaterThan(0);
        const left = (await readdir(join(dav.dataDir, 'repo', 'race', 'locks'), { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile());
        expect(left.map((e) => e.name)).toEqual([]);
      }, 300_000);
    },
  );
});
