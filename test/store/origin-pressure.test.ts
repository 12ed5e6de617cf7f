import { describe, expect, it } from 'vitest';
import { OriginPressure, retryDelayMs, withRetries, type RetryPolicy } from '../../src/store/retry.js';
import { TransientStoreError } from '../../src/store/index.js';
import { BackgroundTicket, inBackground } from '../../src/store/background.js';

const policy: RetryPolicy = { maxAttempts: 4, baseDelayMs: 100, throttledBaseDelayMs: 400, maxDelayMs: 5_000, maxRetryAfterMs: 5_000 };
const slowDown = () => new TransientStoreError('503 SlowDown', { throttled: true });
const top = () => 0.999999;

describe('OriginPressure (one mount, one store)', () => {
  it('lets at most maxConcurrentRequests attempts run at once; the rest wait their turn in order', async () => {
    const pressure = new OriginPressure(policy, { maxConcurrentRequests: 2, demandReserve: 1, successesPerStep: 8, maxStep: 8 });
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
    const pressure = new OriginPressure(policy, { maxConcurrentRequests: 4, demandReserve: 1, successesPerStep: 2, maxStep: 3 });
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

  describe('demand before background', () => {
    /** Attempts that each hold their slot until released by name; `started` lists them as they get a turn. */
    function harness(max: number, reserve: number) {
      const pressure = new OriginPressure(policy, { maxConcurrentRequests: max, demandReserve: reserve, successesPerStep: 8, maxStep: 8 });
      const started: string[] = [];
      const finish = new Map<string, () => void>();
      const send = (name: string) =>
        pressure.run(() => new Promise<string>((done) => (started.push(name), finish.set(name, () => done(name)))), async () => {}, top);
      const background = (name: string, ticket = new BackgroundTicket()) => inBackground(ticket, () => send(name));
      const settle = () => new Promise((r) => setImmediate(r));
      const release = async (name: string) => {
        finish.get(name)!();
        await settle();
      };
      return { pressure, started, send, background, settle, release };
    }

    it('keeps demandReserve slots from background requests: a demand request arriving behind a full preload starts at once', async () => {
      const h = harness(4, 1);
      for (const name of ['b1', 'b2', 'b3', 'b4', 'b5']) void h.background(name);
      await h.settle();
      expect(h.started).toEqual(['b1', 'b2', 'b3']); // the fourth slot is kept for demand
      void h.send('d1');
      await h.settle();
      expect(h.started).toEqual(['b1', 'b2', 'b3', 'd1']);
      expect(h.pressure.queued).toBe(2);
    });

    it('hands a freed slot to waiting demand before waiting background, whatever arrived first', async () => {
      const h = harness(2, 0);
      void h.background('b1');
      void h.background('b2');
      void h.background('b3');
      await h.settle();
      void h.send('d1');
      void h.send('d2');
      await h.settle();
      expect(h.started).toEqual(['b1', 'b2']);
      await h.release('b1');
      expect(h.started).toEqual(['b1', 'b2', 'd1']);
      await h.release('b2');
      expect(h.started).toEqual(['b1', 'b2', 'd1', 'd2']);
      await h.release('d1');
      expect(h.started.at(-1)).toBe('b3'); // background again once no demand waits
    });

    it('moves a background request to the demand queue when a reader promotes its ticket', async () => {
      const h = harness(2, 0);
      const tickets = [new BackgroundTicket(), new BackgroundTicket(), new BackgroundTicket()];
      void h.background('b1', tickets[0]);
      void h.background('b2', tickets[1]);
      void h.background('b3', tickets[2]);
      void h.background('b4');
      await h.settle();
      void h.send('d1');
      await h.settle();
      tickets[2]!.promote(); // a reader needs b3's bytes: it goes behind d1, before b4
      await h.release('b1');
      await h.release('b2');
      expect(h.started).toEqual(['b1', 'b2', 'd1', 'b3']);
    });

    it('sends a promoted ticket\'s later requests as demand, and never leaves background with no slot at all', async () => {
      const ticket = new BackgroundTicket();
      ticket.promote();
      const h = harness(1, 4); // a reserve as large as the cap still leaves background one slot
      void h.background('b1');
      await h.settle();
      expect(h.started).toEqual(['b1']);
      void h.background('p1', ticket);
      void h.background('b2');
      await h.settle();
      await h.release('b1');
      expect(h.started).toEqual(['b1', 'p1']);
    });
  });
});

