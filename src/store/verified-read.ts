import type { ObjectStore } from './types.js';

/**
 * The one policy for bytes that fail their check (a hash): they are never used, and the read is asked of the
 * next source: the store itself first (which may answer from a local copy), then each of its replicas once (a
 * mirror set's other members); a store without replicas is asked once more, since bytes can be damaged in transit.
 * Errors other than a failed check (not found, unreachable) end the read at once: they are the store's answer.
 *
 * `read` fetches from one source; `check` returns the accepted value or throws a `rejection` (anything else it
 * throws propagates). When every source's bytes fail, the last rejection is thrown, after `reject` was told of
 * each one (a log line naming the source).
 */
export async function readVerified<T, E extends Error>(
  store: ObjectStore,
  read: (source: ObjectStore) => Promise<Buffer>,
  check: (bytes: Buffer) => T,
  rejection: abstract new (...args: never[]) => E,
  reject: (failure: E, source: ObjectStore) => void,
): Promise<T> {
  const replicas = store.replicas?.();
  const sources = replicas === undefined || replicas.length === 0 ? [store, store] : [store, ...replicas];
  let last: E | undefined;
  for (const source of sources) {
    const bytes = await read(source);
    try {
      return check(bytes);
    } catch (err) {
      if (!(err instanceof rejection)) throw err;
      last = err;
      reject(err, source);
    }
  }
  throw last!;
}
