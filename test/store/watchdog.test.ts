import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { StoreTimeoutError, TransientStoreError } from '../../src/store/index.js';
import { ASSEMBLY_MIN_BYTES_PER_SECOND, firstByteAllowanceMs, guarded, readBody, StallDetector, uploadAllowanceMs, type Attempt, type StoreTimeouts } from '../../src/store/watchdog.js';

describe('StallDetector', () => {
  it('judges only whole windows', () => {
    const d = new StallDetector(1_000, 100, 0);
    expect(d.stalled(999)).toBe(false); // nothing yet, but the window is not over
    expect(d.stalled(1_000)).toBe(true);
  });

  it('passes a window with enough bytes and judges the next one afresh', () => {
    const d = new StallDetector(1_000, 100, 0);
    d.record(60);
    d.record(40);
    expect(d.stalled(1_000)).toBe(false);
    d.record(99); // the bytes of the last window do not carry over
    expect(d.stalled(1_500)).toBe(false);
    expect(d.stalled(2_000)).toBe(true);
  });

  it('catches a trickle: some bytes, too few', () => {
    const d = new StallDetector(1_000, 100, 0);
    for (let t = 100; t <= 1_000; t += 100) d.record(5);
    expect(d.stalled(1_000)).toBe(true);
  });
});

describe('guarded', () => {
  const timeouts: StoreTimeouts = { connectTimeoutMs: 1_000, firstByteTimeoutMs: 100, stallWindowMs: 100, stallMinBytes: 10 };
  const never = (signal: AbortSignal) => new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));

  it('aborts an attempt without a response after the first-byte timeout, as a StoreTimeoutError', async () => {
    const started = Date.now();
    const err = await guarded(timeouts, 'GET k at http://h/', (a) => never(a.signal)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreTimeoutError);
    expect((err as Error).message).toBe('GET k at http://h/: no response within 100 ms');
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('aborts a body that stalls after the headers', async () => {
    const err = await guarded(timeouts, 'GET k', (a) => {
      a.responded();
      a.received(5);
      return never(a.signal);
    }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^GET k: stalled: fewer than 10 bytes in 100 ms$/);
  });

  it('lets a slow but steady body run past the first-byte timeout', async () => {
    const result = await guarded(timeouts, 'GET k', async (a) => {
      a.responded();
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 30));
        a.received(10);
      }
      return 'done';
    });
    expect(result).toBe('done');
  });

  it('passes other failures through untouched', async () => {
    const boom = new Error('boom');
    await expect(guarded(timeouts, 'GET k', async () => Promise.reject(boom))).rejects.toBe(boom);
  });

  it('gives an upload time for its bytes at the slowest rate that is not a stall', () => {
    expect(uploadAllowanceMs(timeouts, 0)).toBe(100);
    expect(uploadAllowanceMs(timeouts, 25)).toBe(100 + 3 * 100);
  });

  it('gives a multipart completion time in proportion to the object the server assembles', () => {
    expect(firstByteAllowanceMs(timeouts)).toBe(100);
    expect(firstByteAllowanceMs(timeouts, { assembledBytes: 10 * ASSEMBLY_MIN_BYTES_PER_SECOND })).toBe(100 + 10_000);
    expect(firstByteAllowanceMs(timeouts, { uploadBytes: 25 })).toBe(uploadAllowanceMs(timeouts, 25));
  });
});

describe('readBody', () => {
  const attempt = (): Attempt & { bytes: number } => ({
    signal: new AbortController().signal,
    bytes: 0,
    responded() {},
    received(n) {
      this.bytes += n;
    },
  });
  const chunks = () => Readable.from([Buffer.from('abc'), Buffer.from('def'), Buffer.from('ghi')]);

  it('collects the body and reports every byte to the watchdog', async () => {
    const a = attempt();
    expect((await readBody(chunks(), a, 'GET k', { expectedLength: 9 })).toString()).toBe('abcdefghi');
    expect(a.bytes).toBe(9);
  });

  it('calls a body that ends short of its Content-Length truncated, and transient', async () => {
    const err = await readBody(chunks(), attempt(), 'GET k', { expectedLength: 12 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransientStoreError);
    expect((err as Error).message).toBe('GET k: body truncated at 9 of 12 bytes');
  });

  it('stops reading once it has `limit` bytes', async () => {
    const a = attempt();
    expect((await readBody(chunks(), a, 'GET k', { expectedLength: 9, limit: 4 })).toString()).toBe('abcdef');
    expect(a.bytes).toBe(6);
  });
});
