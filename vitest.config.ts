import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';

/**
 * The suite runs as projects so that files that only wait (on mounts, servers, injected latency) share the machine,
 * and the few that need it alone get it:
 *  - `main`: every file on the binding REZFS_FUSE names (default auto: the native one); `fuse-native`: every file
 *    that mounts, again on fuse-native. Both at once, WORKERS files at a time (a serial run keeps ~0.6 of one core
 *    busy: the files wait on I/O, not on the CPU).
 *  - the `exclusive` projects, after them, one file at a time in one worker (singleFork): files that drop the
 *    kernel's caches (which would change what other files' mounts see from the kernel), count kernel requests, or
 *    judge memory, time or chains of requests under load.
 * Vitest has one worker pool for a run (its size is the root `maxWorkers`), runs a group's many-worker files before
 * its single-worker ones, and groups in `groupOrder`.
 * Each file keeps its own servers, ports, temp dirs and mounts, and cleans up in afterAll, so files are independent.
 */
const EXCLUSIVE = [
  'test/native/memcheck.test.ts',
  'test/e2e/native.test.ts',
  'test/e2e/metrics.test.ts',
  'test/faults/load.test.ts',
  // Counts chains of requests, each sent after the one before it answered: a mount starved of CPU lets demand
  // reads overtake its preloads and lengthens them.
  'test/e2e/cold-start.test.ts',
  // Installs /sbin/mount.rezfs for its mount(8) cases and removes it after: one copy of the file at a time.
  'test/e2e/fstab.test.ts',
];
const MOUNTING = ['test/e2e/**/*.test.ts', 'test/faults/**/*.test.ts', 'test/rez/**/*.test.ts'];
/** Files under MOUNTING that never serve a mount (the CLI's refusals, publish): one binding's pass is enough. */
const NEVER_SERVE = ['test/e2e/publish-input.test.ts', 'test/e2e/mistyped-store.test.ts'];
/** Files under MOUNTING that mount each binding themselves, to share the work the bindings have in common. */
const EVERY_BINDING = ['test/rez/rez.test.ts'];
/** Files in flight at once (REZFS_TEST_WORKERS; 1 runs the suite serially). */
const WORKERS = Math.max(1, Math.floor(Number(process.env.REZFS_TEST_WORKERS ?? 3)) || 3);
const MAIN_BINDING = process.env.REZFS_FUSE ?? 'auto';

/**
 * `second`: the pass that repeats the mounting files on fuse-native. It sets REZFS_TEST_SECOND_BINDING, which
 * cases that never reach the binding (test/support/cli.ts `onSecondBinding`) skip on.
 */
function project(name: string, binding: string, include: string[], options: { alone: boolean; second: boolean; exclude?: string[] }): TestProjectInlineConfiguration {
  return {
    test: {
      ...LIMITS,
      name,
      include,
      exclude: options.exclude ?? [],
      env: { REZFS_FUSE: binding, ...(options.second ? { REZFS_TEST_SECOND_BINDING: '1' } : {}) },
      sequence: { groupOrder: options.alone ? 1 : 0 },
      ...(options.alone ? { poolOptions: { forks: { singleFork: true } } } : {}),
    },
  };
}

/** FUSE end-to-end suites mount real filesystems and start servers: give them time. */
const LIMITS = { testTimeout: 120_000, hookTimeout: 180_000 };

export default defineConfig({
  test: {
    // Once for the run (a project that extended the root config would run it again).
    globalSetup: ['test/support/global-setup.ts'],
    maxWorkers: WORKERS,
    minWorkers: 1,
    projects: [
      project('main', MAIN_BINDING, ['test/**/*.test.ts'], { alone: false, second: false, exclude: EXCLUSIVE }),
      project('fuse-native', 'fuse-native', MOUNTING, { alone: false, second: true, exclude: [...EXCLUSIVE, ...NEVER_SERVE, ...EVERY_BINDING] }),
      project('main exclusive', MAIN_BINDING, EXCLUSIVE, { alone: true, second: false }),
      project('fuse-native exclusive', 'fuse-native', EXCLUSIVE.filter((f) => !f.startsWith('test/native/')), { alone: true, second: true }),
    ],
  },
});
