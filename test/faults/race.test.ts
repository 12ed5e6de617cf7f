/**
 * Two publishers racing into one file:// store, 20 times: each round both CLIs start at once, one publishing
 * `alpha/<n>` and `shared/<n>.1.0`, the other `beta/<n>` and `shared/<n>.2.0` (two new versions of one family: the
 * family shard itself must be merged, not just the index). Both must succeed, and afterwards `rezfs ls` must show
 * every package ever published and `rezfs verify` must pass.
 */
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
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

describe('concurrent publishers', () => {
  it(`two publishers of different packages racing ${ROUNDS} times into one file:// store lose nothing`, async () => {
    const store = `file://${join(work.path, 'store')}`;
    // No notifications to mounts of this host (there are none of this store anyway).
    const env = { REZFS_RUNTIME_DIR: join(work.path, 'run') };
    const sides = [
      { name: 'A', repo: join(work.path, 'repo-a'), own: 'alpha', sharedMinor: 1 },
      { name: 'B', repo: join(work.path, 'repo-b'), own: 'beta', sharedMinor: 2 },
    ];
    const published: string[] = [];
    let merges = 0;
    let seed = 1;
    for (let round = 0; round < ROUNDS; round++) {
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
      // Both at once; now and then one a moment later.
      const skew = round % 4 === 3 ? randomInt(0, 150) : 0;
      const results = await Promise.all(
        jobs.map(async ({ side, packages }, i) => {
          if (i === 1 && skew) await sleep(skew);
          return runCli(['publish', side.repo, ...packages, '--store', store], { env, timeoutMs: 60_000 });
        }),
      );
      for (const [i, r] of results.entries()) {
        expect(r.code, `round ${round}, publisher ${jobs[i]!.side.name}: ${r.stderr}`).toBe(0);
        if (/HEAD moved during publish/.test(r.stderr + r.stdout)) merges++;
      }

      // Every round: each family's version count (a lost package lowers it); at the end, every name.
      const families = await listing(store, env);
      const n = round + 1;
      expect(Object.fromEntries(families), `round ${round}: packages lost`).toEqual({ alpha: `${n} version${n > 1 ? 's' : ''}`, beta: `${n} version${n > 1 ? 's' : ''}`, shared: `${2 * n} versions` });
      const verified = await runCli(['verify', '--store', store], { env, timeoutMs: 60_000 });
      expect(verified.code, `round ${round}: rezfs verify: ${verified.stderr}`).toBe(0);
      expect(verified.stdout).toMatch(new RegExp(`: 3 families, ${published.length} versions, .*all good`));
    }
    const versions = new Set([...(await listing(store, env, 'alpha')).keys(), ...(await listing(store, env, 'beta')).keys(), ...(await listing(store, env, 'shared')).keys()]);
    expect(published.filter((p) => !versions.has(p)), 'packages lost').toEqual([]);
    expect(versions.size).toBe(published.length);
    console.log(`[race] ${ROUNDS} rounds, ${published.length} packages, ${merges} publish(es) found index/HEAD moved and re-merged`);
    // The race was real: in some rounds one publisher lost the compare-and-swap and had to merge.
    expect(merges).toBeGreaterThan(0);
  }, 180_000);
});
