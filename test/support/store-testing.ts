import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import { expect } from 'vitest';
import type { OpenStoreOptions } from '../../src/store/index.js';

/** Timeouts and backoff small enough that fault tests take a second, large enough for a loaded CI host. */
export const FAST: OpenStoreOptions = {
  timeouts: { connectTimeoutMs: 1_000, firstByteTimeoutMs: 400, stallWindowMs: 300, stallMinBytes: 4 * 1024 },
  retry: { maxAttempts: 3, baseDelayMs: 10, throttledBaseDelayMs: 20, maxDelayMs: 100, maxRetryAfterMs: 3_000 },
};

/** Neither the message nor anything reachable from the error (cause, fields) holds any of `secrets`. */
export function expectNoSecrets(err: unknown, secrets: readonly string[]): void {
  expect(err).toBeInstanceOf(Error);
  const everything = `${(err as Error).message}\n${inspect(err, { depth: 20, showHidden: true })}`;
  for (const secret of secrets) expect(everything, 'a secret leaked into an error').not.toContain(secret);
}

/** The rejection of `p` (fails the test if it resolves). */
export async function failureOf(p: Promise<unknown>): Promise<Error> {
  const outcome = await p.then(
    () => undefined,
    (err: unknown) => err as Error,
  );
  if (!outcome) throw new Error('expected a failure');
  return outcome;
}

/** Compare big buffers by length and hash: toEqual on megabytes is slow, and its diff useless. */
export const digest = (b: Buffer): string => `${b.length}:${createHash('sha256').update(b).digest('hex')}`;
