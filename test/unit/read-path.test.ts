import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../../src/cache/byte-budget.js';
import { MemoryBlockCache } from '../../src/cache/memory-cache.js';
import { PROCESS_RESERVE_BYTES, planMemory } from '../../src/cache/memory-plan.js';
import { ReadaheadWindow } from '../../src/cache/readahead.js';
import { ReleasedBytes } from '../../src/cache/released-bytes.js';

const MiB = 1024 * 1024;

describe('ReadaheadWindow', () => {
  it('grows while reads are sequential and resets on a jump', () => {
    const w = new ReadaheadWindow(1, 8);
    expect(w.onRead(0, 100)).toBe(1);
    expect(w.onRead(100, 100)).toBe(2);
    expect(w.onRead(200, 100)).toBe(4);
    expect(w.onRead(300, 100)).toBe(8);
    expect(w.onRead(400, 100)).toBe(8);
    expect(w.onRead(50_000, 100)).toBe(0);
    expect(w.onRead(50_100, 100)).toBe(1);
  });

  it('with slack, takes a small forward gap as sequential (a pack read file after file), never a step back', () => {
    const w = new ReadaheadWindow(1, 8, 4096);
    expect(w.onRead(0, 100)).toBe(1);
    expect(w.onRead(1100, 100)).toBe(2); // 1000 bytes skipped (a file served inline)
    expect(w.onRead(1200 + 4096, 10)).toBe(4);
    expect(w.onRead(1200 + 4096 + 10 + 4097, 10)).toBe(0);
    expect(w.onRead(0, 10)).toBe(0);
    expect(new ReadaheadWindow(1, 8, 4096).onRead(100, 10)).toBe(0); // slack only once reading is sequential
  });

  it('follows interleaved sequential readers each with its own window and run', () => {
    const w = new ReadaheadWindow(1, 8);
    expect(w.onRead(0, 100)).toBe(1);
    expect(w.onRead(10_000, 100)).toBe(0); // a second reader begins: a new run, not the end of the first
    expect(w.onRead(100, 100)).toBe(2);
    expect(w.run).toEqual({ start: 0, end: 200 });
    expect(w.onRead(10_100, 100)).toBe(1);
    expect(w.run).toEqual({ start: 10_000, end: 10_200 });
    expect(w.onRead(200, 100)).toBe(4);
  });

  it('takes a request that arrives a little late as a run of its own, leaving the one it lags sequential', () => {
    const w = new ReadaheadWindow(1, 8, 4096);
    w.onRead(0, 4096);
    expect(w.onRead(2 * 4096, 4096)).toBe(2); // page 1 not here yet: within the slack
    expect(w.onRead(4096, 4096)).toBe(0); // page 1, late
    expect(w.onRead(3 * 4096, 4096)).toBe(4);
  });

  it('forgets the reader it heard from longest ago when more come than it follows', () => {
    const w = new ReadaheadWindow(1, 8, 0, 2);
    w.onRead(0, 100);
    w.onRead(1000, 100);
    w.onRead(2000, 100); // the reader at 0 is forgotten
    expect(w.onRead(1100, 100)).toBe(1);
    expect(w.onRead(100, 100)).toBe(0);
  });

  it('treats a first read that does not start at 0 as random', () => {
    expect(new ReadaheadWindow(1, 8).onRead(4096, 10)).toBe(0);
  });
});

describe('ByteBudget', () => {
  it('refuses optional work when full and queues demand until room is released', async () => {
    const budget = new ByteBudget(10);
    expect(budget.tryAcquire(6)).toBe(true);
    expect(budget.tryAcquire(6)).toBe(false);
    let granted = false;
    const waiting = budget.acquire(6).then(() => (granted = true));
    await Promise.resolve();
    expect(granted).toBe(false);
    expect(budget.tryAcquire(1)).toBe(false); // no jumping the queue
    budget.release(6);
    await waiting;
    expect(granted).toBe(true);
    expect(budget.inUse).toBe(6);
  });

  it('lets a request bigger than the budget through alone', async () => {
    const budget = new ByteBudget(4);
    await budget.acquire(10);
    expect(budget.inUse).toBe(10);
    budget.release(10);
    expect(budget.inUse).toBe(0);
  });

  it('grants waiters in order as room frees', async () => {
    const budget = new ByteBudget(3);
    await budget.acquire(3);
    const order: number[] = [];
    const a = budget.acquire(2).then(() => order.push(1));
    const b = budget.acquire(1).then(() => order.push(2));
    budget.release(3);
    await Promise.all([a, b]);
    expect(order).toEqual([1, 2]);
    expect(budget.inUse).toBe(3);
  });
});

describe('ByteBudget, background work', () => {
  it('gives background work only room no demand read waits for, even a demand read that came later', async () => {
    const budget = new ByteBudget(4);
    await budget.acquire(4);
    const order: string[] = [];
    const behind = budget.acquireBehind(2).then(() => order.push('background'));
    const demand = budget.acquire(2).then(() => order.push('demand'));
    expect(budget.tryAcquire(1)).toBe(false); // readahead never overtakes waiting background work either
    budget.release(2);
    await demand;
    expect(order).toEqual(['demand']);
    budget.release(2);
    await behind;
    expect(order).toEqual(['demand', 'background']);
    expect(budget.inUse).toBe(4);
  });

  it('starts background work at once when there is room and nobody waits', async () => {
    const budget = new ByteBudget(4);
    await budget.acquireBehind(3);
    expect(budget.inUse).toBe(3);
  });
});

describe('planMemory', () => {
  it('keeps cached plus in-flight blocks within the limit less the process reserve', () => {
    for (const limit of [256 * MiB, 512 * MiB, 2048 * MiB]) {
      const plan = planMemory(limit);
      expect(plan.cacheBytes + plan.inFlightBytes).toBe(limit - PROCESS_RESERVE_BYTES);
      expect(plan.inFlightBytes).toBeLessThanOrEqual(64 * MiB);
      expect(plan.cacheBytes).toBeGreaterThan(0);
    }
  });

  it('still leaves room for a few blocks under a tiny limit', () => {
    const plan = planMemory(16 * MiB);
    expect(plan.inFlightBytes).toBeGreaterThanOrEqual(4 * MiB);
    expect(plan.cacheBytes).toBeGreaterThan(0);
  });
});

describe('ReleasedBytes (collecting the blocks the memory cache lets go)', () => {
  const tick = () => new Promise((resolve) => setImmediate(resolve));

  it('asks for one collection per threshold of blocks evicted, deleted or replaced, never from inside the cache call', async () => {
    let collections = 0;
    const released = new ReleasedBytes(3 * MiB, () => collections++);
    const cache = new MemoryBlockCache(2 * MiB + 1024, released.release);
    for (let i = 0; i < 5; i++) await cache.put(`block${i}`, Buffer.alloc(MiB)); // holds 2: 3 evicted
    expect(collections).toBe(0); // asked for on the next turn, not inside put()
    await tick();
    expect(collections).toBe(1);
    await cache.delete('block4');
    await cache.put('block3', Buffer.alloc(MiB)); // replaces: the old buffer is let go
    await cache.put('block5', Buffer.alloc(MiB));
    await tick();
    expect(collections).toBe(1); // 2 MiB released since: under the threshold
    await cache.put('block6', Buffer.alloc(MiB));
    await tick();
    expect(collections).toBe(2);
  });

  it('asks once for a burst, however many thresholds it crosses before the collection runs', async () => {
    let collections = 0;
    const released = new ReleasedBytes(MiB, () => collections++);
    for (let i = 0; i < 10; i++) released.release(MiB);
    await tick();
    expect(collections).toBe(1);
  });

  it('reaches V8 for real without --expose-gc', async () => {
    const released = new ReleasedBytes(1);
    released.release(1);
    await tick(); // throws inside setImmediate if gc() could not be had
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined(); // and without putting gc on the global object
  });
});
