import type { ListedObject, ObjectInfo, ObjectStore, PutStreamOptions } from '../../src/store/index.js';

type Op = 'get' | 'head' | 'put' | 'putIfMatch' | 'delete';

interface Gate {
  op: Op;
  matches: (key: string) => boolean;
  reached: () => void;
  opened: Promise<void>;
}

/**
 * A real store whose calls can be held at a chosen point: the test orders two writers' steps exactly (e.g. gc's
 * delete after a publisher's check) instead of hoping the scheduler does. Everything else passes straight through.
 */
export class GatedStore implements ObjectStore {
  private readonly gates: Gate[] = [];

  constructor(private readonly inner: ObjectStore) {}

  get url(): string {
    return this.inner.url;
  }

  get conditionalWrites(): ObjectStore['conditionalWrites'] {
    return this.inner.conditionalWrites;
  }

  /**
   * The next `op` on a matching key waits until `open()`; `reached` settles once it is waiting. Gates are
   * one-shot.
   */
  hold(op: Op, matches: (key: string) => boolean): { reached: Promise<void>; open: () => void } {
    let open!: () => void;
    let reached!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    this.gates.push({ op, matches, reached, opened });
    return { reached: reachedPromise, open };
  }

  private async pass(op: Op, key: string): Promise<void> {
    const index = this.gates.findIndex((g) => g.op === op && g.matches(key));
    if (index < 0) return;
    const [gate] = this.gates.splice(index, 1);
    gate!.reached();
    await gate!.opened;
  }

  async get(key: string): Promise<Buffer> {
    await this.pass('get', key);
    return this.inner.get(key);
  }
  getRange(key: string, start: number, end: number): Promise<Buffer> {
    return this.inner.getRange(key, start, end);
  }
  async head(key: string): Promise<ObjectInfo | undefined> {
    await this.pass('head', key);
    return this.inner.head(key);
  }
  async put(key: string, body: Buffer): Promise<void> {
    await this.pass('put', key);
    return this.inner.put(key, body);
  }
  async putStream(key: string, source: () => AsyncIterable<Buffer>, options?: PutStreamOptions): Promise<void> {
    await this.pass('put', key);
    return this.inner.putStream(key, source, options);
  }
  async putIfMatch(key: string, body: Buffer, expected: string | null): Promise<boolean> {
    await this.pass('putIfMatch', key);
    return this.inner.putIfMatch(key, body, expected);
  }
  list(prefix: string): AsyncIterable<ListedObject> {
    return this.inner.list(prefix);
  }
  async delete(key: string): Promise<void> {
    await this.pass('delete', key);
    return this.inner.delete(key);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
