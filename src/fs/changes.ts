import type { Catalog, DirNode, FamilyShard, InlineFile, TreeNode, VersionRecord } from '../catalog/index.js';
import { childPath } from './paths.js';

/** What a kernel may have cached that a new generation makes wrong. */
export interface TreeChanges {
  /** Directories whose attributes or listing changed. */
  dirs: string[];
  /** Files whose attributes or bytes changed (a package.py rewritten when a variant was added). */
  files: string[];
  /** Names that appeared in, vanished from or changed in a directory. */
  entries: { parent: string; name: string }[];
}

/**
 * The difference between two generations, as far as a kernel's caches are concerned: the root, the families,
 * and inside a version only what a grown version changed (its listing, its definition, the new paths; what was
 * published before never changes). A shard or manifest that cannot be loaded counts every name it might hold
 * as changed.
 */
export async function generationChanges(prev: Catalog, next: Catalog): Promise<TreeChanges> {
  const changes: TreeChanges = { dirs: [], files: [], entries: [] };
  if (prev.indexHash === next.indexHash) return changes;
  changes.dirs.push('/');
  rootFileChanges(prev, next, changes);
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
      const [old, current] = await Promise.all([shardOf(prev, family), shardOf(next, family)]);
      for (const name of changedNames(old && shardNames(old), current && shardNames(current))) changes.entries.push({ parent: path, name });
      // Versions that grew (a variant added): what changed below them.
      const grown: [string, VersionRecord, VersionRecord][] = [];
      if (old?.unversioned && current?.unversioned) grown.push([path, old.unversioned, current.unversioned]);
      for (const [version, record] of Object.entries(current?.versions ?? {})) {
        const was = old && Object.hasOwn(old.versions, version) ? old.versions[version] : undefined;
        if (was) grown.push([childPath(path, version), was, record]);
      }
      await Promise.all(
        grown.filter(([, was, now]) => was.manifest !== now.manifest).map(([where, was, now]) => versionChanges(prev, next, where, was, now, changes)),
      );
    }),
  );
  return changes;
}

type Names = Map<string, string>;

async function shardOf(catalog: Catalog, family: string): Promise<FamilyShard | undefined> {
  try {
    return await catalog.shard(family);
  } catch {
    return undefined;
  }
}

/** Each name of a family directory with a fingerprint of what it is. */
function shardNames(shard: FamilyShard): Names {
  const names: Names = new Map();
  const top = shard.unversioned ? `u:${shard.unversioned.manifest}` : undefined;
  for (const [version, record] of Object.entries(shard.versions)) names.set(version, `v:${record.manifest}`);
  for (const [name, extra] of Object.entries(shard.extras)) names.set(name, `x:${JSON.stringify(extra)}`);
  if (top) for (const name of shard.unversioned!.names ?? []) names.set(name, top);
  return names;
}

/** Single-file families added, removed or changed at the root. */
function rootFileChanges(prev: Catalog, next: Catalog, changes: TreeChanges): void {
  const print = (file: InlineFile | undefined) => (file ? JSON.stringify(file) : undefined);
  for (const name of new Set([...prev.rootFileNames(), ...next.rootFileNames()])) {
    const [before, after] = [prev.rootFile(name), next.rootFile(name)];
    if (print(before) === print(after)) continue;
    changes.entries.push({ parent: '/', name });
    if (before && after) changes.files.push(childPath('/', name));
  }
}

/**
 * A version whose manifest changed: directories that gained entries, the new names, and files whose bytes
 * changed (its definition). A manifest that cannot be loaded counts the whole version as changed.
 */
async function versionChanges(prev: Catalog, next: Catalog, path: string, was: VersionRecord, now: VersionRecord, changes: TreeChanges): Promise<void> {
  const [before, after] = await Promise.all([prev.manifest(was.manifest).catch(() => undefined), next.manifest(now.manifest).catch(() => undefined)]);
  changes.dirs.push(path);
  if (!before || !after) {
    for (const name of new Set([...(was.names ?? []), ...(now.names ?? [])])) {
      changes.entries.push({ parent: path, name });
      changes.files.push(childPath(path, name));
    }
    return;
  }
  treeChanges(before.root, after.root, path, changes);
}

function treeChanges(before: DirNode, after: DirNode, path: string, changes: TreeChanges): void {
  for (const name of new Set([...Object.keys(before.entries), ...Object.keys(after.entries)])) {
    const [was, now] = [before.entries[name], after.entries[name]];
    const here = childPath(path, name);
    if (!was || !now || was.type !== now.type) {
      changes.entries.push({ parent: path, name });
      if (!changes.dirs.includes(path)) changes.dirs.push(path);
    } else if (was.type === 'dir' && now.type === 'dir') {
      if (was.mode !== now.mode || was.mtimeMs !== now.mtimeMs) changes.dirs.push(here);
      treeChanges(was, now, here, changes);
    } else if (fingerprint(was) !== fingerprint(now)) {
      changes.entries.push({ parent: path, name });
      changes.files.push(here);
    }
  }
}

function fingerprint(node: TreeNode): string {
  if (node.type === 'file') return `f:${node.mode}:${node.mtimeMs}:${node.size}:${node.sha256}`;
  if (node.type === 'symlink') return `l:${node.mtimeMs}:${node.target}`;
  return 'd';
}

/** Names whose fingerprint differs; everything either side knows of when one side is unknown. */
export function changedNames(before: Names | undefined, after: Names | undefined): string[] {
  if (!before || !after) return [...new Set([...(before?.keys() ?? []), ...(after?.keys() ?? [])])];
  const changed: string[] = [];
  for (const [name, print] of after) if (before.get(name) !== print) changed.push(name);
  for (const name of before.keys()) if (!after.has(name)) changed.push(name);
  return changed;
}
