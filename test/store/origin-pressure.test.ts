import { describe, expect, it } from 'vitest';
import { OriginPressure, retryDelayMs, withRetries, type RetryPolicy } from '../../src/store/retry.js';
import { TransientStoreError } from '../../src/store/index.js';

const policy: RetryPolicy = { maxAttempts: 4, baseDelayMs: 100, throttledBaseDelayMs: 400, maxDelayMs: 5_000, maxRetryAfterMs: 5_000 };
const slowDown = () => new TransientStoreError('503 SlowDown', { throttled: true });
const top = () => 0.999999;

describe('OriginPressure (one mount, one store)', () => {
  it('lets at most maxConcurrentRequests attempts run at once; the rest wait their turn in order', async () => {
    const pressure = new OriginPressure(policy, { maxConcurrentRequests: 2, successesPerStep: 8, maxStep: 8 });
    let running = 0;
    let peak = 0;
    const order: number[] = [];
    const gates: (() => void)[] = [];
    const attempt = (i: number) => () =>
      new Promise<number>((done) => {
        running++;
        peak = Math.max(peak, running);
        order.push(i);
        gates.push(() => {
          running--;
          done(i);
        });
      });
    const all = Promise.all([0, 1, 2, 3, 4].map((i) => pressure.run(attempt(i), async () => {}, top)));
    await new Promise((r) => setImmediate(r));
    expect(pressure.queued).toBe(3);
    while (gates.length > 0 || order.length < 5) {
      gates.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    expect(await all).toEqual([0, 1, 2, 3, 4]);
    expect(peak).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });

  it("shares the backoff: after one request is throttled, another request's first attempt waits too, with its own jitter", async () => {
    const pressure = new OriginPressure(policy);
    const waits: number[] = [];
    const pause = async (ms: number) => void waits.push(ms);
    await expect(pressure.run(() => Promise.reject(slowDown()), pause, top)).rejects.toThrow('SlowDown');
    expect(waits).toEqual([]); // nothing was throttling before
    expect(pressure.backoffStep).toBe(1);
    expect(await pressure.run(async () => 'other', pause, () => 0.5)).toBe('other');
    expect(waits).toEqual([200]); // half of step 1's ceiling (400 ms)
    expect(pressure.stats).toMatchObject({ throttled: 1, pauses: 1, pausedMs: 200 });
  });

  it('steps up per throttling answer (to the cap) and down per successesPerStep successes', async () => {
    const pressure = new OriginPressure(policy, { maxConcurrentRequests: 4, successesPerStep: 2, maxStep: 3 });
    const none = async () => {};
    for (let i = 0; i < 5; i++) await pressure.run(() => Promise.reject(slowDown()), none, top).catch(() => undefined);
    expect(pressure.backoffStep).toBe(3);
    for (let i = 0; i < 4; i++) await pressure.run(async () => i, none, top);
    expect(pressure.backoffStep).toBe(1);
    await pressure.run(() => Promise.reject(new TransientStoreError('reset')), none, top).catch(() => undefined);
    expect(pressure.backoffStep).toBe(1); // only throttling answers count
  });

  it('withRetries through a pressure: a throttled retry waits the shared backoff, not a second jitter of its own', async () => {
    expect(retryDelayMs(policy, 1, slowDown(), top, true)).toBe(0);
    expect(retryDelayMs(policy, 1, slowDown(), top, false)).toBe(399);
    expect(retryDelayMs(policy, 1, new TransientStoreError('x', { throttled: true, retryAfterMs: 1_000 }), top, true)).toBe(1_000);
    const pressure = new OriginPressure(policy);
    const waits: number[] = [];
    let calls = 0;
    const result = await withRetries(policy, async () => (++calls < 3 ? Promise.reject(slowDown()) : 'ok'), {
      pressure,
      sleep: async (ms) => void waits.push(ms),
      random: top,
    });
    expect(result).toBe('ok');
    // retry delay 0, then the pressure's pause: step 1 (< 400 ms), then step 2 (< 800 ms)
    expect(waits).toEqual([0, 399, 0, 799]);
    expect(pressure.stats).toMatchObject({ throttled: 2, retries: 2, pauses: 2 });
  });
});
