/**
 * Writes to a store on behalf of one command (publish, retire, ...), skipping content-addressed objects the
 * store already holds, and counting what was actually sent so the command can say so. What the next generation
 * relies on (written or found) is tracked, and `secure()` right before the HEAD swap makes it safe from a
 * concurrent `rezfs gc` (catalog/gc-protocol.ts). Imports the store and that protocol.
 */
import { ReliedObjects } from '../catalog/index.js';
import type { ObjectStore, PutStreamOptions } from '../store/index.js';

export class Uploads {
  objects = 0;
  bytes = 0;
  private readonly relied: ReliedObjects;
  /** How to write each relied-on object again, should a collector have removed it before it was claimed. */
  private readonly writers = new Map<string, () => Promise<void>>();

  constructor(readonly store: ObjectStore) {
    this.relied = new ReliedObjects(store);
  }

  count(bytes: number): void {
    this.objects++;
    this.bytes += bytes;
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.store.put(key, body);
    this.count(body.length);
  }

  /**
   * For content-addressed keys only: an object already there has these very bytes. `body` may be made only once it
   * is needed (and again, should secure() have to write it again).
   */
  async ifMissing(key: string, body: Buffer | (() => Promise<Buffer>)): Promise<void> {
    await this.once(key, async () => this.put(key, typeof body === 'function' ? await body() : body));
  }

  /** `source` is called again if the object must be written again (see secure()), or the store retries the upload. */
  async stream(key: string, source: () => AsyncIterable<Buffer>, options?: PutStreamOptions): Promise<void> {
    await this.once(key, async () => {
      let bytes = 0;
      await this.store.putStream(key, () => ((bytes = 0), countBytes(source(), (n) => (bytes += n))), options);
      this.count(bytes);
    });
  }

  /** Call right before swapping HEAD to a generation that names what this wrote or found. */
  async secure(): Promise<void> {
    await this.relied.secure((key) => this.writers.get(key)!());
  }

  private async once(key: string, write: () => Promise<void>): Promise<void> {
    this.writers.set(key, write);
    const existing = await this.store.head(key);
    if (existing) return this.relied.found(key, existing);
    await write();
    this.relied.wrote(key);
  }
}

async function* countBytes(source: AsyncIterable<Buffer>, add: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    add(chunk.length);
    yield chunk;
  }
}
