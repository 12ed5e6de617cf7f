/**
 * vitest globalSetup: make sure dist/ (what the CLI tests run) is built from the current src/.
 *  - src/cli/main.ts missing (src/ still being written): skip with a warning.
 *  - REZFS_SKIP_BUILD=1: skip (e.g. when scripts/setup.sh just built).
 *  - otherwise scripts/setup.sh without its apt step, which builds only what changed (dist/ when src/ did, the
 *    addon when native/ did); a failed build fails the run (stale dist/ would give misleading results).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export default function setup(): void {
  const src = path.join(ROOT, 'src');
  const mainTs = path.join(src, 'cli', 'main.ts');
  if (!existsSync(mainTs)) {
    console.warn('[global-setup] src/cli/main.ts does not exist yet: not building dist/ (CLI tests will fail).');
    return;
  }
  if (process.env.REZFS_SKIP_BUILD === '1') {
    console.warn('[global-setup] REZFS_SKIP_BUILD=1: using dist/ as is.');
    return;
  }
  // The one build policy (scripts/setup.sh): rebuilds dist/ and the addon only where their sources changed.
  const started = Date.now();
  const r = spawnSync('bash', [path.join(ROOT, 'scripts', 'setup.sh')], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, REZFS_SKIP_APT: '1' },
  });
  if (r.status !== 0) {
    throw new Error(
      `[global-setup] scripts/setup.sh failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n${r.stdout}\n${r.stderr}\n` +
        'Fix the build, or set REZFS_SKIP_BUILD=1 to run against the existing dist/.',
    );
  }
  if (/building/.test(r.stdout)) console.log(`[global-setup] built what changed in ${Date.now() - started} ms`);
}
