/**
 * Watching processes through /proc (never through a mount): state (R, S, D, Z, ...), resident memory, and spawning
 * children whose pid the test needs while they run.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { waitFor } from '../../src/deadline.js';

/** The state letter of /proc/<pid>/stat (R, S, D, Z, T, I, ...), or undefined once the process is gone. */
export async function procState(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) || undefined;
  } catch {
    return undefined;
  }
}

/** A memory figure of /proc/<pid>/status in bytes (VmRSS resident now, VmHWM its peak), or undefined once it is gone. */
export async function statusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number | undefined> {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** VmRSS of a process in bytes, or undefined once it is gone. */
export function rssBytes(pid: number): Promise<number | undefined> {
  return statusBytes(pid, 'VmRSS');
}

/**
 * A process's memory as /proc/PID/smaps_rollup counts it: `rss` (every resident page it maps, shared ones whole),
 * `pss` (shared pages divided among the processes mapping them: what N such processes cost a machine, N x pss) and
 * `private` (pages only it maps). The node binary's text is most of a small process's RSS and is shared by every
 * process running it. Undefined once the process is gone.
 */
export async function memoryBytes(pid: number): Promise<{ rss: number; pss: number; private: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
    const m = { rss: kb('Rss'), pss: kb('Pss'), private: kb('Private_Clean') + kb('Private_Dirty') };
    return Object.values(m).every(Number.isFinite) ? m : undefined;
  } catch {
    return undefined;
  }
}

/** utime + stime of a process, in ms (from /proc/<pid>/stat, in clock ticks of 10 ms); NaN once it is gone. */
export function cpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/**
 * Waits (at most 20 s) until process `pid` has used under 20 ms of CPU in 500 ms (/proc counts 10 ms ticks): a
 * mount that has finished what a run left it doing (disk-cache writes, the startup set it recorded). False when it
 * never went quiet.
 */
export function untilCpuQuiet(pid: number): Promise<boolean> {
  let last = Number.NaN; // the first look only takes the baseline
  return waitFor(
    () => {
      const now = cpuMs(pid);
      const quiet = now - last < 20;
      last = now;
      return quiet;
    },
    20_000,
    500,
  );
}

/** CPU time the whole machine has spent busy (not idle, not waiting on I/O), in ms summed over cores, from /proc/stat. */
export function machineBusyMs(): number {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = ticks;
  return (user! + nice! + system! + irq! + softirq! + steal!) * 10;
}

/** Writes dirty pages back, then empties the page cache, dentries and inodes (root only): what "cold" means here. */
export async function dropCaches(): Promise<void> {
  await promisify(execFile)('sync', [], { timeout: 60_000 });
  await writeFile('/proc/sys/vm/drop_caches', '3');
}

/** What the kernel says a process waits in, for messages (e.g. `fuse_wait_answer`, `folio_wait_bit_common`). */
export async function wchan(pid: number): Promise<string> {
  return readFile(`/proc/${pid}/wchan`, 'utf8').catch(() => '?');
}

/** Read and write system calls a process has made so far (/proc/<pid>/io syscr + syscw), or undefined. */
export async function syscalls(pid: number): Promise<number | undefined> {
  try {
    const io = await readFile(`/proc/${pid}/io`, 'utf8');
    const r = /^syscr: (\d+)$/m.exec(io);
    const w = /^syscw: (\d+)$/m.exec(io);
    return r && w ? Number(r[1]) + Number(w[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples the state of watched pids every `intervalMs` and keeps, per pid, the longest time it was seen in D
 * (uninterruptible sleep) within one system call: a streak ends when the process is seen in another state or has
 * completed a read or write in between (a reader blocking briefly on read after read is not stuck).
 */
export class StateWatch {
  private readonly pids = new Map<number, { label: string; dSince?: number; dCalls?: number; longestD: number; wchan?: string }>();
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;
  samples = 0;

  constructor(private readonly intervalMs = 200) {}

  watch(pid: number, label: string): void {
    if (!this.pids.has(pid)) this.pids.set(pid, { label, longestD: 0 });
  }

  start(): void {
    this.timer ??= setInterval(() => void this.sample(), this.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sample();
  }

  private async sample(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const now = Date.now();
      await Promise.all(
        [...this.pids].map(async ([pid, p]) => {
          const [state, calls] = await Promise.all([procState(pid), syscalls(pid)]);
          if (state === 'D') {
            if (p.dSince === undefined || calls !== p.dCalls) {
              p.dSince = now;
              p.dCalls = calls;
            }
            if (now - p.dSince > p.longestD) {
              p.longestD = now - p.dSince;
              p.wchan = await wchan(pid);
            }
          } else {
            p.dSince = undefined;
            p.dCalls = undefined;
          }
        }),
      );
      this.samples++;
    } finally {
      this.sampling = false;
    }
  }

  /** Watched processes seen in D state for longer than `ms` at a stretch, for messages. */
  longerThan(ms: number): string[] {
    return [...this.pids].filter(([, p]) => p.longestD > ms).map(([pid, p]) => `${p.label} (pid ${pid}): ${p.longestD} ms in D, in ${p.wchan}`);
  }

  longestD(): number {
    return Math.max(0, ...[...this.pids.values()].map((p) => p.longestD));
  }
}

export interface Child<T> {
  pid: number;
  /** Resolves once the process exited: its exit code (-1 for a signal), stdout, stderr and runtime. */
  done: Promise<{ code: number; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number; timedOut: boolean; result?: T }>;
}

/**
 * Spawns a command (no shell) and hands back its pid at once. After `timeoutMs` it is sent SIGKILL (the timeout is
 * reported). `parse` turns stdout into a result when the process exits 0 or 1.
 */
export function spawnChild<T = unknown>(command: string, args: string[], opts: { timeoutMs: number; env?: NodeJS.ProcessEnv; cwd?: string; parse?: (stdout: string) => T }): Child<T> {
  const started = Date.now();
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs);
  const done = new Promise<Awaited<Child<T>['done']>>((resolve) => {
    child.on('error', (e) => {
      stderr += `spawn error: ${e.message}\n`;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let result: T | undefined;
      if (opts.parse && (code === 0 || code === 1)) {
        try {
          result = opts.parse(stdout);
        } catch {
          result = undefined;
        }
      }
      resolve({ code: code ?? -1, signal, stdout, stderr, ms: Date.now() - started, timedOut, ...(result !== undefined ? { result } : {}) });
    });
  });
  if (child.pid === undefined) {
    // spawn failed synchronously; 'close' still fires
    return { pid: -1, done };
  }
  return { pid: child.pid, done };
}
