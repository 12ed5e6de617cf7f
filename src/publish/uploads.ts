/**
 * Writes to a store on behalf of one command (publish, retire, ...), skipping content-addressed objects the
 * store already holds, and counting what was actually sent so the command can say so. Imports the store only.
 */
import type { ObjectStore } from '../store/index.js';

export class Uploads {
  objects = 0;
  bytes = 0;

  constructor(readonly store: ObjectStore) {}

  count(bytes: number): void {
    this.objects++;
    this.bytes += bytes;
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.store.put(key, body);
    this.count(body.length);
  }

  /** For content-addressed keys only: an object already there has these very bytes. */
  async ifMissing(key: string, body: Buffer): Promise<void> {
    if (!(await this.store.head(key))) await this.put(key, body);
  }

  async stream(key: string, source: AsyncIterable<Buffer>): Promise<void> {
    if (await this.store.head(key)) return;
    let bytes = 0;
    await this.store.putStream(key, countBytes(source, (n) => (bytes += n)));
    this.count(bytes);
  }
}

async function* countBytes(source: AsyncIterable<Buffer>, add: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    add(chunk.length);
    yield chunk;
  }
}
