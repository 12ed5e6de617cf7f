/**
 * vitest globalSetup: make sure dist/ (what the CLI tests run) is built from the current src/.
 *  - src/cli/main.ts missing (src/ still being written): skip with a warning.
 *  - REZFS_SKIP_BUILD=1: skip (e.g. when scripts/setup.sh just built).
 *  - dist/cli/main.js newer than every file under src/ and the tsconfig/package files: skip.
 *  - otherwise `npm run build`; a failed build fails the run (stale dist/ would give misleading results).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function newestMtime(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs;
  for (const name of readdirSync(p)) max = Math.max(max, newestMtime(path.join(p, name)));
  return max;
}

export default function setup(): void {
  const src = path.join(ROOT, 'src');
  const mainTs = path.join(src, 'cli', 'main.ts');
  const mainJs = path.join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(mainTs)) {
    console.warn('[global-setup] src/cli/main.ts does not exist yet: not building dist/ (CLI tests will fail).');
    return;
  }
  if (process.env.REZFS_SKIP_BUILD === '1') {
    console.warn('[global-setup] REZFS_SKIP_BUILD=1: using dist/ as is.');
    return;
  }
  const inputs = [src, path.join(ROOT, 'tsconfig.json'), path.join(ROOT, 'package.json')].filter((p) => existsSync(p));
  const newestInput = Math.max(...inputs.map(newestMtime));
  if (existsSync(mainJs) && statSync(mainJs).mtimeMs >= newestInput) return;

  const started = Date.now();
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) {
    throw new Error(
      `[global-setup] npm run build failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''}):\n${r.stdout}\n${r.stderr}\n` +
        'Fix the build, or set REZFS_SKIP_BUILD=1 to run against the existing dist/.',
    );
  }
  console.log(`[global-setup] built dist/ in ${Date.now() - started} ms`);
}
