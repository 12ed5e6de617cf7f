/**
 * What this host last saw of each version it published or checked, per store: "when the family's shard was S,
 * version V's manifest was M, and its source directory, with stat digest D, holds exactly M". A later publish
 * whose walk gives the same digest, and whose store still names S (or at least M), knows the version is
 * unchanged without reading a byte or fetching the manifest.
 *
 * Invariants: the state is only ever a shortcut. A lost, stale or foreign entry costs a manifest GET and a
 * comparison, never a wrong answer: every entry is checked against the store's catalog and the source's stat
 * data before it is trusted, and `--rehash` ignores it. Writes merge with what another publisher on this host
 * saved meanwhile and replace the file atomically. Imports nothing of rezfs but the hash helper.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sha256Hex } from '../hash.js';

export interface VersionState {
  manifest: string;
  stat: string;
}

export interface FamilyState {
  /** The shard the versions below were checked against. */
  shard: string;
  /** Digest of the family directory's own files' stat data, when they matched that shard's extras. */
  extras: string | undefined;
  /** By version; an unversioned package under "". */
  versions: Record<string, VersionState>;
  /** Every version that shard has, so that a publish can say what the source lacks without loading it. */
  published: string[];
}

interface StateFile {
  format: 1;
  store: string;
  families: Record<string, FamilyState>;
}

export class PublishState {
  private readonly changed = new Map<string, FamilyState>();

  private constructor(
    readonly file: string,
    private readonly storeUrl: string,
    private families: Record<string, FamilyState>,
  ) {}

  /** The state kept under `stateDir` for `storeUrl`; an unreadable or foreign file counts as empty. */
  static async load(stateDir: string, storeUrl: string): Promise<PublishState> {
    const file = join(stateDir, `${sha256Hex(storeUrl).slice(0, 16)}.json`);
    return new PublishState(file, storeUrl, await readFamilies(file, storeUrl));
  }

  /** By the family directory's absolute path. */
  family(dir: string): FamilyState | undefined {
    return this.changed.get(dir) ?? (Object.hasOwn(this.families, dir) ? this.families[dir] : undefined);
  }

  remember(dir: string, state: FamilyState): void {
    this.changed.set(dir, state);
  }

  /** Writes what changed, merged over the file as it is now (another publisher may have saved meanwhile). */
  async save(): Promise<void> {
    if (this.changed.size === 0) return;
    this.families = { ...(await readFamilies(this.file, this.storeUrl)), ...Object.fromEntries(this.changed) };
    const body: StateFile = { format: 1, store: this.storeUrl, families: this.families };
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(body));
    await rename(tmp, this.file);
    this.changed.clear();
  }
}

async function readFamilies(file: string, storeUrl: string): Promise<Record<string, FamilyState>> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<StateFile>;
    return parsed.format === 1 && parsed.store === storeUrl && typeof parsed.families === 'object' && parsed.families ? parsed.families : {};
  } catch {
    return {};
  }
}
