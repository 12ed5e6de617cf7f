import type { Catalog, FamilyShard } from '../catalog/index.js';
import { childPath } from './paths.js';

/** What a kernel may have cached that a new generation makes wrong. */
export interface TreeChanges {
  /** Directories whose attributes or listing changed. */
  dirs: string[];
  /** Names that appeared in, vanished from or changed in a directory. */
  entries: { parent: string; name: string }[];
}

/**
 * The difference between two generations, as far as a kernel's caches are concerned. Only the
 * root and family directories can change: a published version never does. A family's shard that
 * cannot be loaded counts every name it might hold as changed.
 */
export async function generationChanges(prev: Catalog, next: Catalog): Promise<TreeChanges> {
  const changes: TreeChanges = { dirs: [], entries: [] };
  if (prev.indexHash === next.indexHash) return changes;
  changes.dirs.push('/');
  const families = new Set([...prev.familyNames(), ...next.familyNames()]);
  await Promise.all(
    [...families].map(async (family) => {
      const before = prev.family(family);
      const after = next.family(family);
      if (!before || !after) {
        changes.entries.push({ parent: '/', name: family });
        return;
      }
      if (before.shard === after.shard && before.mtimeMs === after.mtimeMs && before.versions === after.versions) return;
      const path = childPath('/', family);
      changes.dirs.push(path);
      if (before.shard === after.shard) return;
      const [old, current] = await Promise.all([shardNames(prev, family), shardNames(next, family)]);
      for (const name of changedNames(old, current)) changes.entries.push({ parent: path, name });
    }),
  );
  return changes;
}

type Names = Map<string, string>;

/** Each name of a family directory with a fingerprint of what it is. */
async function shardNames(catalog: Catalog, family: string): Promise<Names | undefined> {
  let shard: FamilyShard;
  try {
    shard = await catalog.shard(family);
  } catch {
    return undefined;
  }
  const names: Names = new Map();
  for (const [version, record] of Object.entries(shard.versions)) names.set(version, `v:${record.manifest}`);
  for (const [name, extra] of Object.entries(shard.extras)) names.set(name, `x:${JSON.stringify(extra)}`);
  return names;
}

/** Names whose fingerprint differs; everything either side knows of when one side is unknown. */
export function changedNames(before: Names | undefined, after: Names | undefined): string[] {
  if (!before || !after) return [...new Set([...(before?.keys() ?? []), ...(after?.keys() ?? [])])];
  const changed: string[] = [];
  for (const [name, print] of after) if (before.get(name) !== print) changed.push(name);
  for (const name of before.keys()) if (!after.has(name)) changed.push(name);
  return changed;
}
