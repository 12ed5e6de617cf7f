/**
 * rez's release model for one version: what publishing its source directory means, given what the store holds.
 *
 * - Not published yet: every file goes into one new pack.
 * - Published: the published tree is the contract. Every published path must still be in the source with the
 *   same type, mode and bytes (a file whose size, mode and mtime match the manifest is taken as unchanged
 *   without reading it; any other is read and compared). New paths may appear anywhere: that is how rez adds a
 *   variant to a released version. Only the version's own definition (`package.py` / `package.yaml`) may change,
 *   and only together with new paths (rez rewrites it when it adds a variant) or with `allowRedefine`.
 *   New and changed files go into one new pack added to the manifest (decision D6): nothing published before
 *   is read or uploaded again.
 * - Anything else (a published file changed or removed) is refused, naming the file.
 *
 * Invariants: planning reads only the files it must compare; the pack of a plan is hashed by the caller
 * (hashPack) and the manifest built from that by `finish`. Imports the catalog schema and pack.ts.
 */
import {
  FORMAT_VERSION,
  canonicalJson,
  manifestFormat,
  sha256Hex,
  type DirNode,
  type FileNode,
  type Manifest,
  type TreeNode,
  type VersionRecord,
} from '../catalog/index.js';
import { fileSha256, type HashedPack } from './pack.js';
import { DEFINITION_FILES } from './scan.js';
import type { SourceDir, SourceFile, SourceTree } from './source-tree.js';

export interface PlanOptions {
  blockSize: number;
  /** Accept a changed definition on a version that gains no new path. */
  allowRedefine: boolean;
  /** Read and compare every file, trusting no stat data. */
  rehash: boolean;
}

export interface Published {
  record: VersionRecord;
  manifest: Manifest;
}

/** Why a version gets a new manifest (`repaired`: republished whole because its packs could not be rebuilt). */
export type Change = 'new' | 'grown' | 'redefined' | 'repaired';

export type VersionPlan =
  | { kind: 'unchanged' }
  | { kind: 'refused'; message: string }
  | {
      kind: 'write';
      change: Change;
      /** The files of the new pack, in pack order. */
      inputs: SourceFile[];
      /** Which inputs are definitions at the version's top level, whose bytes the shard carries inline. */
      definitionInputs: Map<number, string>;
      blockSize: number;
      /** The new manifest, once the inputs are hashed. */
      finish(hashed: HashedPack): Manifest;
    };

/** What `label`'s source `tree` means against `published` (undefined: not in the store yet). */
export async function planVersion(label: string, tree: SourceTree, published: Published | undefined, options: PlanOptions): Promise<VersionPlan> {
  if (!published) return writePlan('new', tree, tree.files, undefined, options.blockSize);
  const { manifest } = published;
  const diff: Diff = { added: [], suspects: [], changed: [] };
  compareDir(tree.root, manifest.root, '', diff, options.rehash);
  for (const { file, node, path } of diff.suspects) {
    if ((await fileSha256(file)) !== node.sha256) diff.changed.push({ path, file });
  }
  // A definition still there as a file may change (rez rewrites it when it adds a variant); nothing else may.
  const definitionsChanged = diff.changed.filter((c): c is { path: string; file: SourceFile } => isDefinition(c.path) && c.file !== undefined);
  const payloadChanged = diff.changed.filter((c) => !definitionsChanged.includes(c as { path: string; file: SourceFile }));
  if (payloadChanged.length > 0) {
    const [first] = payloadChanged;
    const more = payloadChanged.length > 1 ? ` (and ${payloadChanged.length - 1} more)` : '';
    return {
      kind: 'refused',
      message: `${first!.path.slice(1)}${more} differs from the published ${label}: a published payload never changes; release a new version`,
    };
  }
  if (diff.added.length === 0 && definitionsChanged.length === 0) return { kind: 'unchanged' };
  if (diff.added.length === 0 && !options.allowRedefine) {
    return {
      kind: 'refused',
      message: `${definitionsChanged.map((c) => c.path.slice(1)).join(', ')} changed but no variant was added to the published ${label}: a published definition changes only with --allow-redefine (see the README)`,
    };
  }
  const renewed = new Set<SourceFile>([...diff.added, ...definitionsChanged.map((c) => c.file)]);
  const inputs = tree.files.filter((file) => renewed.has(file));
  return writePlan(diff.added.length > 0 ? 'grown' : 'redefined', tree, inputs, published, manifest.blockSize);
}

interface Diff {
  /** Files at paths the published tree does not have. */
  added: SourceFile[];
  /** Files whose stat data differs from the manifest's: same bytes unless hashing says otherwise. */
  suspects: { path: string; file: SourceFile; node: FileNode }[];
  /** Published paths that are gone, or of another type or mode, or (after hashing) of other bytes. */
  changed: { path: string; file?: SourceFile }[];
}

function compareDir(source: SourceDir, published: DirNode, path: string, diff: Diff, rehash: boolean): void {
  if (path !== '' && source.mode !== published.mode) diff.changed.push({ path });
  for (const [name, node] of Object.entries(published.entries)) {
    const here = `${path}/${name}`;
    const found = source.entries.get(name);
    if (!found || found.type !== node.type) {
      diff.changed.push({ path: here });
    } else if (found.type === 'dir') {
      compareDir(found, node as DirNode, here, diff, rehash);
    } else if (found.type === 'symlink') {
      if (node.type === 'symlink' && node.target !== found.target) diff.changed.push({ path: here });
    } else if (node.type === 'file') {
      if (found.mode !== node.mode || found.size !== node.size) diff.changed.push({ path: here, file: found });
      else if (rehash || found.mtimeMs !== node.mtimeMs) diff.suspects.push({ path: here, file: found, node });
    }
  }
  for (const [name, found] of source.entries) {
    if (Object.hasOwn(published.entries, name)) continue;
    if (found.type === 'file') diff.added.push(found);
    else if (found.type === 'dir') collectFiles(found, diff.added);
  }
}

function collectFiles(dir: SourceDir, into: SourceFile[]): void {
  for (const node of dir.entries.values()) {
    if (node.type === 'file') into.push(node);
    else if (node.type === 'dir') collectFiles(node, into);
  }
}

function isDefinition(path: string): boolean {
  return (DEFINITION_FILES as readonly string[]).includes(path.slice(1));
}

function writePlan(change: Change, tree: SourceTree, inputs: SourceFile[], published: Published | undefined, blockSize: number): VersionPlan {
  const definitionInputs = new Map<number, string>();
  inputs.forEach((file, i) => {
    const name = DEFINITION_FILES.find((n) => tree.root.entries.get(n) === file);
    if (name) definitionInputs.set(i, name);
  });
  return {
    kind: 'write',
    change,
    inputs,
    definitionInputs,
    blockSize,
    finish(hashed) {
      const packNumber = published ? 1 + (published.manifest.addedPacks?.length ?? 0) : 0;
      const placed = new Map<SourceFile, FileNode>();
      inputs.forEach((file, i) => {
        const { offset, sha256 } = hashed.files[i]!;
        const node: FileNode = { type: 'file', mode: file.mode, mtimeMs: file.mtimeMs, size: file.size, offset, sha256 };
        if (packNumber > 0) node.pack = packNumber;
        placed.set(file, node);
      });
      const root = buildDir(tree.root, published?.manifest.root, placed);
      if (!published) return { format: FORMAT_VERSION, blockSize, ...hashed.record, root };
      const addedPacks = [...(published.manifest.addedPacks ?? []), hashed.record];
      return { ...published.manifest, format: manifestFormat({ addedPacks }), root, addedPacks };
    },
  };
}

/** The new tree: source structure, published nodes where unchanged, new nodes for what was packed anew. */
function buildDir(source: SourceDir, published: DirNode | undefined, placed: Map<SourceFile, FileNode>): DirNode {
  const entries: Record<string, TreeNode> = {};
  for (const [name, node] of source.entries) {
    const before = published && Object.hasOwn(published.entries, name) ? published.entries[name] : undefined;
    if (node.type === 'dir') entries[name] = buildDir(node, before?.type === 'dir' ? before : undefined, placed);
    else if (node.type === 'symlink') entries[name] = before ?? { type: 'symlink', mtimeMs: node.mtimeMs, target: node.target };
    else entries[name] = placed.get(node) ?? (before as FileNode);
  }
  return { type: 'dir', mode: source.mode, mtimeMs: source.mtimeMs, entries };
}

/** Hash of the tree without mtimes or pack places: equal for a harmless re-copy, different for any real change. */
export function contentHash(root: DirNode): string {
  return sha256Hex(canonicalJson(withoutTimes(root)));
}

function withoutTimes(node: TreeNode): unknown {
  if (node.type === 'dir') {
    return { type: 'dir', mode: node.mode, entries: Object.fromEntries(Object.entries(node.entries).map(([k, v]) => [k, withoutTimes(v)])) };
  }
  if (node.type === 'file') return { type: 'file', mode: node.mode, size: node.size, sha256: node.sha256 };
  return { type: 'symlink', target: node.target };
}
