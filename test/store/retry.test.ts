import { describe, expect, it } from 'vitest';
import { backoffMs, DEFAULT_RETRY, exponentialMs, parseRetryAfter, retryDelayMs, withRetries, type RetryPolicy } from '../../src/store/retry.js';
import { ObjectNotFoundError, StoreAccessError, StoreError, StoreTimeoutError, TransientStoreError } from '../../src/store/index.js';

const policy: RetryPolicy = { maxAttempts: 4, baseDelayMs: 100, throttledBaseDelayMs: 400, maxDelayMs: 1_000, maxRetryAfterMs: 5_000 };
const top = () => 0.999999; // the jitter's ceiling, near enough
const bottom = () => 0;

describe('backoff', () => {
  it('doubles from the base and stops at the cap', () => {
    expect([1, 2, 3, 4, 5, 10].map((n) => exponentialMs(100, 1_000, n))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(exponentialMs(100, 1_000, 0)).toBe(100);
  });

  it('is full jitter: anywhere from 0 up to the ceiling', () => {
    expect(backoffMs(policy, 1, false, bottom)).toBe(0);
    expect(backoffMs(policy, 1, false, top)).toBe(99);
    expect(backoffMs(policy, 3, false, () => 0.5)).toBe(200);
    expect(backoffMs(policy, 9, false, top)).toBe(999);
  });

  it('starts higher when the server said it is overloaded', () => {
    expect(backoffMs(policy, 1, true, top)).toBe(399);
    expect(backoffMs(policy, 3, true, top)).toBe(999);
  });
});

describe('Retry-After', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  it('reads delta-seconds and HTTP dates', () => {
    expect(parseRetryAfter('3', now)).toBe(3_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:05 GMT', now)).toBe(5_000);
  });

  it('treats a past date as now and nonsense as absent', () => {
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:00:00 GMT', now)).toBe(0);
    for (const bad of [undefined, '', '-1', '1.5', 'soon', '12abc']) expect(parseRetryAfter(bad, now), String(bad)).toBeUndefined();
  });
});

describe('retry decisions', () => {
  it('retries transient failures, timeouts included, until the attempts are spent', () => {
    expect(retryDelayMs(policy, 1, new TransientStoreError('503'), top)).toBe(99);
    expect(retryDelayMs(policy, 3, new StoreTimeoutError('stalled'), top)).toBe(399);
    expect(retryDelayMs(policy, 4, new TransientStoreError('503'), top)).toBeUndefined();
  });

  it('never retries what another attempt cannot fix', () => {
    for (const err of [new ObjectNotFoundError('s3://b/', 'k'), new StoreAccessError('s3://b/', 'GET k', 'HTTP 403'), new StoreError('HTTP 412'), new Error('bug')]) {
      expect(retryDelayMs(policy, 1, err, top), err.message).toBeUndefined();
    }
  });

  it('waits at least Retry-After, plus jitter, and gives up on a longer one than allowed', () => {
    expect(retryDelayMs(policy, 1, new TransientStoreError('503', { retryAfterMs: 2_000, throttled: true }), bottom)).toBe(2_000);
    expect(retryDelayMs(policy, 1, new TransientStoreError('503', { retryAfterMs: 2_000, throttled: true }), top)).toBe(2_399);
    expect(retryDelayMs(policy, 1, new TransientStoreError('503', { retryAfterMs: 5_001 }), bottom)).toBeUndefined();
  });

  it('has sane defaults', () => {
    expect(DEFAULT_RETRY.maxAttempts).toBeGreaterThan(1);
    expect(DEFAULT_RETRY.maxDelayMs).toBeGreaterThanOrEqual(DEFAULT_RETRY.throttledBaseDelayMs);
  });
});

describe('withRetries', () => {
  it('retries a transient failure after the computed pause, then returns', async () => {
    const pauses: number[] = [];
    const seen: number[] = [];
    const result = await withRetries(
      policy,
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 3) throw new TransientStoreError('503', { throttled: attempt === 2 });
        return 'ok';
      },
      { sleep: async (ms) => pauses.push(ms), random: top },
    );
    expect(result).toBe('ok');
    expect(seen).toEqual([1, 2, 3]);
    expect(pauses).toEqual([99, 799]);
  });

  it('rethrows the last error once the attempts are spent, and a permanent one at once', async () => {
    let calls = 0;
    const sleep = async () => undefined;
    await expect(withRetries(policy, async () => (calls++, Promise.reject(new StoreTimeoutError('t'))), { sleep })).rejects.toBeInstanceOf(StoreTimeoutError);
    expect(calls).toBe(4);
    calls = 0;
    await expect(withRetries(policy, async () => (calls++, Promise.reject(new ObjectNotFoundError('u', 'k'))), { sleep })).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(calls).toBe(1);
  });

  it('reports each retry', async () => {
    const retries: [number, number][] = [];
    await withRetries(policy, async (n) => (n === 1 ? Promise.reject(new TransientStoreError('x')) : 1), {
      sleep: async () => undefined,
      random: bottom,
      onRetry: (_err, failed, delay) => retries.push([failed, delay]),
    });
    expect(retries).toEqual([[1, 0]]);
  });
});
