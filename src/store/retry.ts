import { setTimeout as sleep } from 'node:timers/promises';
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
 * on top keeps clients told the same thing from coming back in step.
 */
export function retryDelayMs(policy: RetryPolicy, failed: number, err: unknown, random: () => number): number | undefined {
  if (!(err instanceof TransientStoreError) || failed >= policy.maxAttempts) return undefined;
  const jitter = backoffMs(policy, failed, err.throttled, random);
  if (err.retryAfterMs === undefined) return jitter;
  return err.retryAfterMs > policy.maxRetryAfterMs ? undefined : err.retryAfterMs + jitter;
}

export interface RetryHooks {
  sleep?: (ms: number) => Promise<unknown>;
  random?: () => number;
  /** Called before each pause, e.g. to log. */
  onRetry?: (err: unknown, failedAttempt: number, delayMs: number) => void;
}

/** Runs `operation` until it succeeds or `retryDelayMs` says stop; rethrows the last error. */
export async function withRetries<T>(policy: RetryPolicy, operation: (attempt: number) => Promise<T>, hooks: RetryHooks = {}): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (err) {
      const delay = retryDelayMs(policy, attempt, err, hooks.random ?? Math.random);
      if (delay === undefined) throw err;
      hooks.onRetry?.(err, attempt, delay);
      await (hooks.sleep ?? sleep)(delay);
    }
  }
}
