/**
 * A forwarding ObjectStore that counts what passes through it: requests, bytes and failures per store, object kind
 * and operation, and the requests in flight. Metrics (src/cli/metrics.ts) read the counters when scraped, so
 * nothing here knows Prometheus, and a mount pays a map lookup per request, not a metrics call.
 *
 * Invariants: behaviour is the inner store's, byte for byte and error for error (a metered store is only ever
 * seen in the counters); each call is counted once, when it ends, as the caller sees it (retries inside the inner
 * store are its own business). Object kinds come from the caller's
 * `kindOf` (the catalog knows what a key holds; a store does not). May import: base, and this part.
 */
import { ForwardingStore } from './forwarding-store.js';
import { ObjectNotFoundError, StoreAccessError, StoreTimeoutError, TransientStoreError, type ListedObject, type ObjectInfo, type ObjectStore, type PutStreamOptions } from './types.js';

export type StoreOperation = 'get' | 'getRange' | 'head' | 'put' | 'list' | 'delete';

/** Why a request failed, as a label: few values, each one a different thing for an operator to do. */
export type StoreErrorKind = 'not_found' | 'timeout' | 'throttled' | 'transient' | 'access' | 'other';

export function storeErrorKind(err: unknown): StoreErrorKind {
  if (err instanceof ObjectNotFoundError) return 'not_found';
  if (err instanceof StoreTimeoutError) return 'timeout';
  if (err instanceof TransientStoreError) return err.throttled ? 'throttled' : 'transient';
  if (err instanceof StoreAccessError) return 'access';
  return 'other';
}

/** The counts of one (store, object kind, operation). */
export interface TrafficRow {
  readonly store: string;
  readonly kind: string;
  readonly operation: StoreOperation;
  /** Calls that ended, failed ones included. */
  requests: number;
  /** Body bytes received (reads) or sent (writes). */
  bytes: number;
  errors: Partial<Record<StoreErrorKind, number>>;
}

/** The counters every MeteredStore of one mount adds to. */
export class StoreTraffic {
  private readonly table = new Map<string, TrafficRow>();
  /** Calls started and not yet ended, over all stores. */
  inFlight = 0;

  constructor(readonly kindOf: (key: string) => string) {}

  rows(): IterableIterator<TrafficRow> {
    return this.table.values();
  }

  row(store: string, key: string, operation: StoreOperation): TrafficRow {
    const kind = this.kindOf(key);
    const id = `${store}\n${kind}\n${operation}`;
    let row = this.table.get(id);
    if (!row) {
      row = { store, kind, operation, requests: 0, bytes: 0, errors: {} };
      this.table.set(id, row);
    }
    return row;
  }
}

function countError(row: TrafficRow, err: unknown): void {
  const kind = storeErrorKind(err);
  row.errors[kind] = (row.errors[kind] ?? 0) + 1;
}

export class MeteredStore extends ForwardingStore {
  constructor(
    inner: ObjectStore,
    private readonly traffic: StoreTraffic,
  ) {
    super(inner);
  }

  /** Runs one call, counted under `key`'s row once it ends; `bytesOf` says how many body bytes it moved. */
  private async metered<T>(key: string, operation: StoreOperation, call: () => Promise<T>, bytesOf: (result: T) => number = () => 0): Promise<T> {
    const row = this.traffic.row(this.url, key, operation);
    this.traffic.inFlight++;
    try {
      const result = await call();
      row.bytes += bytesOf(result);
      return result;
    } catch (err) {
      countError(row, err);
      throw err;
    } finally {
      row.requests++;
      this.traffic.inFlight--;
    }
  }

  override get(key: string): Promise<Buffer> {
    return this.metered(key, 'get', () => this.inner.get(key), (b) => b.length);
  }

  override getRange(key: string, start: number, end: number): Promise<Buffer> {
    return this.metered(key, 'getRange', () => this.inner.getRange(key, start, end), (b) => b.length);
  }

  override head(key: string): Promise<ObjectInfo | undefined> {
    return this.metered(key, 'head', () => this.inner.head(key));
  }

  override put(key: string, body: Buffer): Promise<void> {
    return this.metered(key, 'put', () => this.inner.put(key, body), () => body.length);
  }

  override putStream(key: string, source: () => AsyncIterable<Buffer>, options?: PutStreamOptions): Promise<void> {
    let sent = 0;
    // The store may run the source more than once (a retried upload): count the run that it finished with.
    const counted = () => {
      sent = 0;
      return (async function* () {
        for await (const chunk of source()) {
          sent += chunk.length;
          yield chunk;
        }
      })();
    };
    return this.metered(key, 'put', () => this.inner.putStream(key, counted, options), () => sent);
  }

  override putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
    return this.metered(key, 'put', () => this.inner.putIfMatch(key, body, expected), () => body.length);
  }

  override async *list(prefix: string): AsyncIterable<ListedObject> {
    const row = this.traffic.row(this.url, prefix, 'list');
    row.requests++;
    try {
      yield* this.inner.list(prefix);
    } catch (err) {
      countError(row, err);
      throw err;
    }
  }

  override delete(key: string): Promise<void> {
    return this.metered(key, 'delete', () => this.inner.delete(key));
  }
}
