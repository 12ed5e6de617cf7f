import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sha256Hex } from '../hash.js';
import { UntrustedCatalogError } from './signing.js';

/**
 * The newest catalog generation a host has accepted from one store, kept on local disk so that a
 * remount, too, refuses an older (rolled back) index. Fails closed: only a file that does not exist
 * reads as "nothing accepted yet"; one that cannot be read or parsed is refused, never taken for 0,
 * since that would accept any rollback.
 */
export class GenerationFloor {
  readonly file: string;

  constructor(stateDir: string, storeUrl: string) {
    this.file = join(stateDir, 'trust', `${sha256Hex(storeUrl).slice(0, 16)}.json`);
  }

  async read(): Promise<number> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw this.refused(`cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    let generation: unknown;
    try {
      generation = (JSON.parse(text) as { generation?: unknown }).generation;
    } catch {
      generation = undefined;
    }
    if (typeof generation !== 'number' || !Number.isInteger(generation) || generation < 0) throw this.refused('is damaged');
    return generation;
  }

  async raise(generation: number): Promise<void> {
    if (generation <= (await this.read())) return;
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify({ generation }));
    await rename(tmp, this.file);
  }

  private refused(why: string): UntrustedCatalogError {
    return new UntrustedCatalogError(
      `the rollback floor ${this.file} ${why}, so no generation can be trusted; ` +
        'if you trust the store as it is now, remove that file (the next mount accepts its current generation as the floor)',
    );
  }
}
