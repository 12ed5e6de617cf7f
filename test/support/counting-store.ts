import type { ListedObject, ObjectInfo, ObjectStore, PutStreamOptions } from '../../src/store/index.js';

/** A real store with a request log in front: tests assert what the mount or the publisher asked for. */
export class CountingStore implements ObjectStore {
  /** Every request in order; a ranged GET with the bytes it asked for. */
  readonly calls: { op: string; key: string; bytes?: number }[] = [];

  constructor(private readonly inner: ObjectStore) {}

  get url(): string {
    return this.inner.url;
  }

  get readOnly(): boolean {
    return this.inner.readOnly ?? false;
  }

  get conditionalWrites(): ObjectStore['conditionalWrites'] {
    return this.inner.conditionalWrites;
  }

  reset(): void {
    this.calls.length = 0;
  }

  count(op: string, keyPrefix = ''): number {
    return this.calls.filter((c) => c.op === op && c.key.startsWith(keyPrefix)).length;
  }

  /** Bytes asked for by the ranged GETs of keys under `keyPrefix`. */
  rangeBytes(keyPrefix = ''): number {
    return this.calls.filter((c) => c.op === 'getRange' && c.key.startsWith(keyPrefix)).reduce((n, c) => n + c.bytes!, 0);
  }

  private note(op: string, key: string, bytes?: number): void {
    this.calls.push({ op, key, ...(bytes === undefined ? {} : { bytes }) });
  }

  get(key: string): Promise<Buffer> {
    this.note('get', key);
    return this.inner.get(key);
  }
  getRange(key: string, start: number, end: number): Promise<Buffer> {
    this.note('getRange', key, end - start);
    return this.inner.getRange(key, start, end);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    this.note('head', key);
    return this.inner.head(key);
  }
  put(key: string, body: Buffer): Promise<void> {
    this.note('put', key);
    return this.inner.put(key, body);
  }
  putStream(key: string, source: () => AsyncIterable<Buffer>, options?: PutStreamOptions): Promise<void> {
    this.note('put', key);
    return this.inner.putStream(key, source, options);
  }
  putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
    this.note('put', key);
    return this.inner.putIfMatch(key, body, expected);
  }
  list(prefix: string): AsyncIterable<ListedObject> {
    this.note('list', prefix);
    return this.inner.list(prefix);
  }
  delete(key: string): Promise<void> {
    this.note('delete', key);
    return this.inner.delete(key);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
