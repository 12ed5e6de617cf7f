import { setTimeout as sleep } from 'node:timers/promises';
import { backgroundTicket, type BackgroundTicket } from './background.js';
import { TransientStoreError } from './types.js';

/** How a network store retries one operation. Only TransientStoreError is ever retried. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** Backoff ceiling before jitter for the first retry; doubles each retry. */
  baseDelayMs: number;
  /** The same for throttling answers (503, 429, SlowDown): an overloaded server needs air. */
  throttledBaseDelayMs: number;
  /** No computed backoff exceeds this. */
  maxDelayMs: number;
  /** A server asking for a longer Retry-After is given up on at once: a mirror, or the caller's deadline, does better. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 4,
  baseDelayMs: 100,
  throttledBaseDelayMs: 500,
  maxDelayMs: 5_000,
  maxRetryAfterMs: 10_000,
};

/** `base * 2^(n-1)`, capped: the n-th step of an exponential ladder (n >= 1). */
export function exponentialMs(baseMs: number, capMs: number, n: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, n - 1));
}

/**
 * "Full jitter" backoff before retry number `retry` (1 for the first): uniform in [0, ceiling). Spreads the
 * retries of many clients hit by one outage instead of synchronising them.
 */
export function backoffMs(policy: RetryPolicy, retry: number, throttled: boolean, random: () => number): number {
  const base = throttled ? policy.throttledBaseDelayMs : policy.baseDelayMs;
  return Math.floor(random() * exponentialMs(base, policy.maxDelayMs, retry));
}

/**
 * A Retry-After header in milliseconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
 * Undefined when absent or unparseable; a date in the past is 0.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return undefined; // "1.5", "-3": neither delta-seconds nor a date
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/**
 * How long to wait before attempt `failed + 1`, or undefined to give up: the error is not transient, the
 * attempts are spent, or the server wants a longer pause than we allow. Retry-After is a floor; the jitter
 * on top keeps clients told the same thing from coming back in step. With `shared` backoff (an OriginPressure)
 * a throttling answer gets no jitter of its own here: the pressure's pause before the next attempt is it.
 */
export function retryDelayMs(policy: RetryPolicy, failed: number, err: unknown, random: () => number, shared = false): number | undefined {
  if (!(err instanceof TransientStoreError) || failed >= policy.maxAttempts) return undefined;
  const jitter = shared && err.throttled ? 0 : backoffMs(policy, failed, err.throttled, random);
  if (err.retryAfterMs === undefined) return jitter;
  return err.retryAfterMs > policy.maxRetryAfterMs ? undefined : err.retryAfterMs + jitter;
}

/** How hard one mount may press one store. */
export interface OriginLimits {
  /** Requests in flight to the store at once; more wait their turn (a farm of N mounts sends at most N x this). */
  maxConcurrentRequests: number;
  /**
   * Of those, the slots background requests (store/background.ts) never take, so a demand read that arrives while
   * preloads fill the link starts at once instead of waiting a round trip behind them.
   */
  demandReserve: number;
  /** Successes in a row that lower the shared backoff by one step after the store throttled. */
  successesPerStep: number;
  /** The highest backoff step (its ceiling is throttledBaseDelayMs x 2^(step-1), capped by maxDelayMs). */
  maxStep: number;
}

export const DEFAULT_ORIGIN_LIMITS: OriginLimits = { maxConcurrentRequests: 16, demandReserve: 4, successesPerStep: 8, maxStep: 8 };

/** What an OriginPressure did so far (metrics read it). */
export interface PressureStats {
  /** Throttling answers (503, 429, SlowDown) seen. */
  throttled: number;
  /** Attempts that first waited out the shared backoff, and for how long in all. */
  pauses: number;
  pausedMs: number;
  /** Attempts after a failed one. */
  retries: number;
}

/**
 * One mount's view of one store's load, shared by every request the mount sends it: at most
 * `maxConcurrentRequests` in flight, and, once the store throttles, a backoff that every attempt (first ones too)
 * waits out before it is sent. The backoff's ceiling is shared — it grows one step per throttling answer and falls
 * one step per `successesPerStep` successes — while each attempt draws its own wait uniformly below it ("full
 * jitter"), so a herd that was told to slow down slows down as a whole and does not come back in step.
 *
 * Turns go to demand requests first, in order of arrival; background requests (sent under a BackgroundTicket) get
 * a turn only when no demand request waits and `demandReserve` slots stay free. A freed slot is handed straight
 * to the next in line, so a request arriving meanwhile cannot jump the queue.
 */
export class OriginPressure {
  readonly stats: PressureStats = { throttled: 0, pauses: 0, pausedMs: 0, retries: 0 };
  private step = 0;
  private successes = 0;
  private active = 0;
  private readonly demandQueue: (() => void)[] = [];
  private readonly backgroundQueue: (() => void)[] = [];

  constructor(
    private readonly policy: RetryPolicy,
    private readonly limits: OriginLimits = DEFAULT_ORIGIN_LIMITS,
  ) {}

  /** The shared backoff step now (0: the store is not throttling us). */
  get backoffStep(): number {
    return this.step;
  }

  /** Requests waiting for a turn. */
  get queued(): number {
    return this.demandQueue.length + this.backgroundQueue.length;
  }

  /** Runs one attempt in its turn, after the shared backoff. */
  async run<T>(attempt: () => Promise<T>, pause: (ms: number) => Promise<unknown>, random: () => number): Promise<T> {
    if (this.step > 0) {
      const waitMs = Math.floor(random() * exponentialMs(this.policy.throttledBaseDelayMs, this.policy.maxDelayMs, this.step));
      this.stats.pauses++;
      this.stats.pausedMs += waitMs;
      await pause(waitMs);
    }
    await this.turn(backgroundTicket());
    try {
      const result = await attempt();
      if (this.step > 0 && ++this.successes >= this.limits.successesPerStep) {
        this.step--;
        this.successes = 0;
      }
      return result;
    } catch (err) {
      if (err instanceof TransientStoreError && err.throttled) {
        this.stats.throttled++;
        this.step = Math.min(this.limits.maxStep, this.step + 1);
        this.successes = 0;
      }
      throw err;
    } finally {
      this.active--;
      this.handOver();
    }
  }

  /** Resolves once this request holds a slot (counted in `active`). */
  private turn(ticket: BackgroundTicket | undefined): Promise<void> {
    if (ticket ? this.backgroundMayGo() : this.demandMayGo()) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise<void>((go) => {
      if (!ticket) {
        this.demandQueue.push(go);
        return;
      }
      this.backgroundQueue.push(go);
      // A reader now waits on this request: it queues as demand from here on, behind the demand already waiting.
      ticket.onPromote(() => {
        const at = this.backgroundQueue.indexOf(go);
        if (at < 0) return; // it already had its turn
        this.backgroundQueue.splice(at, 1);
        this.demandQueue.push(go);
        this.handOver();
      });
    });
  }

  private demandMayGo(): boolean {
    return this.demandQueue.length === 0 && this.active < this.limits.maxConcurrentRequests;
  }

  private backgroundMayGo(): boolean {
    return this.demandQueue.length === 0 && this.backgroundQueue.length === 0 && this.active < this.backgroundShare();
  }

  /** Slots background requests may hold: never none, or a preload nobody promotes would wait for good. */
  private backgroundShare(): number {
    return Math.max(1, this.limits.maxConcurrentRequests - this.limits.demandReserve);
  }

  /** Gives free slots to waiting requests: demand first, background only within its share. */
  private handOver(): void {
    for (;;) {
      let go: (() => void) | undefined;
      if (this.active < this.limits.maxConcurrentRequests) go = this.demandQueue.shift();
      if (!go && this.demandQueue.length === 0 && this.active < this.backgroundShare()) go = this.backgroundQueue.shift();
      if (!go) return;
      this.active++;
      go();
    }
  }
}

/** A mount's OriginPressure per store, by the store's URL, so each store (each mirror) is judged on its own. */
export class OriginPressures {
  private readonly byUrl = new Map<string, OriginPressure>();

  constructor(readonly limits: OriginLimits = DEFAULT_ORIGIN_LIMITS) {}

  add(url: string, pressure: OriginPressure): void {
    this.byUrl.set(url, pressure);
  }

  entries(): IterableIterator<[string, OriginPressure]> {
    return this.byUrl.entries();
  }
}

export interface RetryHooks {
  sleep?: (ms: number) => Promise<unknown>;
  random?: () => number;
  /** Called before each pause, e.g. to log. */
  onRetry?: (err: unknown, failedAttempt: number, delayMs: number) => void;
  /** The mount-wide turn-taking and shared backoff every attempt goes through, if any. */
  pressure?: OriginPressure;
}

/** Runs `operation` until it succeeds or `retryDelayMs` says stop; rethrows the last error. */
export async function withRetries<T>(policy: RetryPolicy, operation: (attempt: number) => Promise<T>, hooks: RetryHooks = {}): Promise<T> {
  const { pressure } = hooks;
  const pause = hooks.sleep ?? sleep;
  const random = hooks.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return await (pressure ? pressure.run(() => operation(attempt), pause, random) : operation(attempt));
    } catch (err) {
      const delay = retryDelayMs(policy, attempt, err, random, pressure !== undefined);
      if (delay === undefined) throw err;
      hooks.onRetry?.(err, attempt, delay);
      if (pressure) pressure.stats.retries++;
      await pause(delay);
    }
  }
}
