import type { ListedObject, ObjectInfo, ObjectStore, PutStreamOptions, StoreHealth } from './types.js';

/**
 * A store that hands every call to another one. Wrappers (a local copy of the catalog, a mirror set, metering)
 * extend it and override only what they change, so a method added to ObjectStore is forwarded in one place.
 */
export class ForwardingStore implements ObjectStore {
  readonly url: string;

  constructor(protected readonly inner: ObjectStore) {
    this.url = inner.url;
  }

  get readOnly(): boolean | undefined {
    return this.inner.readOnly;
  }

  get conditionalWrites(): ObjectStore['conditionalWrites'] {
    return this.inner.conditionalWrites;
  }

  get(key: string): Promise<Buffer> {
    return this.inner.get(key);
  }

  getRange(key: string, start: number, end: number): Promise<Buffer> {
    return this.inner.getRange(key, start, end);
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }

  put(key: string, body: Buffer): Promise<void> {
    return this.inner.put(key, body);
  }

  putStream(key: string, source: () => AsyncIterable<Buffer>, options?: PutStreamOptions): Promise<void> {
    return this.inner.putStream(key, source, options);
  }

  putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
    return this.inner.putIfMatch(key, body, expected);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }

  list(prefix: string): AsyncIterable<ListedObject> {
    return this.inner.list(prefix);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  replicas(): readonly ObjectStore[] {
    return this.inner.replicas?.() ?? [];
  }

  health(): readonly StoreHealth[] | undefined {
    return this.inner.health?.();
  }
}
