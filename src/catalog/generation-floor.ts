import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sha256Hex } from '../hash.js';

/**
 * The newest catalog generation a host has accepted from one store, kept on local disk so that a
 * remount, too, refuses an older (rolled back) index.
 */
export class GenerationFloor {
  readonly file: string;

  constructor(stateDir: string, storeUrl: string) {
    this.file = join(stateDir, 'trust', `${sha256Hex(storeUrl).slice(0, 16)}.json`);
  }

  async read(): Promise<number> {
    try {
      const state = JSON.parse(await readFile(this.file, 'utf8')) as { generation?: unknown };
      return typeof state.generation === 'number' ? state.generation : 0;
    } catch {
      return 0;
    }
  }

  async raise(generation: number): Promise<void> {
    if (generation <= (await this.read())) return;
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ generation }));
    await rename(tmp, this.file);
  }
}
