import type { KeyObject } from 'node:crypto';
import {
  EMPTY_INDEX,
  FORMAT_VERSION,
  defaultStoreConfig,
  encodeDocument,
  keys,
  readHead,
  readIndex,
  readShard,
  readStoreConfig,
  canonicalJson,
  countSubdirs,
  type CatalogIndex,
  type FamilyShard,
  type VersionRecord,
} from '../catalog/index.js';
import { inParallel } from '../parallel.js';
import type { Log } from '../log.js';
import type { ObjectStore } from '../store/index.js';
import { updateCatalog } from './catalog-update.js';
import { PublishInputError } from './errors.js';
import { buildPackage, type BuiltPackage } from './pack.js';
import { DEFINITION_FILES, scanRepository, type FamilySource, type VersionSource } from './scan.js';
import { Uploads } from './uploads.js';

const UPLOADS_IN_FLIGHT = 4;

export interface PublishProgress {
  phase: 'hashing' | 'uploading';
  doneBytes: number;
  /** Known once hashing is over; while hashing, progress is counted in packages. */
  totalBytes: number | undefined;
  donePackages: number;
  totalPackages: number;
}

export interface PublishSummary {
  packages: number;
  alreadyPublished: number;
  files: number;
  bytes: number;
  objectsUploaded: number;
  bytesUploaded: number;
  generation: number | undefined;
  elapsedMs: number;
}

export interface PublishOptions {
  repoDir: string;
  selectors: readonly string[];
  log: Log;
  onProgress?: (progress: PublishProgress) => void;
  /** Signs each new index (ed25519) so mounts with --trust-key accept it. */
  signingKey?: KeyObject;
}

interface Prepared {
  source: VersionSource;
  built: BuiltPackage;
}

/**
 * Publishes released packages: packs and manifests first, then one catalog transaction (shards, index,
 * HEAD; see catalog-update.ts). Everything is checked before the first upload, objects already
 * in the store are not sent again, and a published version never changes.
 */
export async function publish(store: ObjectStore, options: PublishOptions): Promise<PublishSummary> {
  const started = Date.now();
  const families = await scanRepository(options.repoDir, options.selectors, options.log.warn);
  const existingConfig = await readStoreConfig(store);
  const config = existingConfig ?? defaultStoreConfig();
  const head = await readHead(store);
  const index = head ? await readIndex(store, head.indexHash) : EMPTY_INDEX;

  const sources = families.flatMap((family) => family.versions);
  let hashed = 0;
  const prepared: Prepared[] = [];
  for (const source of sources) {
    const built = await buildPackage(source.dir, config.blockSize, DEFINITION_FILES, (n) => {
      hashed += n;
      options.onProgress?.({ phase: 'hashing', doneBytes: hashed, totalBytes: undefined, donePackages: prepared.length, totalPackages: sources.length });
    });
    prepared.push({ source, built });
  }

  const uploads = new Uploads(store);
  const uploaded = new Set<Prepared>();
  const named = new Set(options.selectors.filter((s) => s.includes('/')));
  const notes = new Set<string>();
  const note = (line: string) => {
    if (!notes.has(line)) options.log.warn(line);
    notes.add(line);
  };
  const freshNow = (shardOf: (family: string) => Promise<FamilyShard | undefined>) => freshVersions(shardOf, prepared, named, note);
  const baseShards = new Map<string, Promise<FamilyShard | undefined>>();
  const baseShard = (family: string) => baseShards.get(family) ?? baseShards.set(family, currentShard(store, index, family)).get(family)!;
  let fresh = await freshNow(baseShard);
  await noteVersionsGoneFromSource(families, options.selectors.length === 0 ? index : undefined, baseShard, named, store.url, note);
  const summary = (generation: number | undefined): PublishSummary => ({
    packages: fresh.length,
    alreadyPublished: prepared.length - fresh.length,
    files: fresh.reduce((n, p) => n + p.built.fileCount, 0),
    bytes: fresh.reduce((n, p) => n + p.built.manifest.packSize, 0),
    objectsUploaded: uploads.objects,
    bytesUploaded: uploads.bytes,
    generation,
    elapsedMs: Date.now() - started,
  });
  if (fresh.length === 0 && !(await extrasChanged(store, index, families))) return summary(undefined);

  if (!existingConfig) await uploads.put(keys.config, canonicalJson(config));
  const payloadBytes = fresh.reduce((n, p) => n + p.built.manifest.packSize, 0);
  let sent = 0;
  const uploadPayload = (items: Prepared[]) =>
    inParallel(items.filter((p) => !uploaded.has(p)), UPLOADS_IN_FLIGHT, async (item) => {
      const { built } = item;
      const { pack, packSize } = built.manifest;
      const packStream = () =>
        built.packStream((n) => {
          sent += n;
          options.onProgress?.({ phase: 'uploading', doneBytes: sent, totalBytes: payloadBytes, donePackages: uploaded.size, totalPackages: fresh.length });
        });
      await uploads.stream(keys.pack(pack), packStream, { size: packSize, sha256: pack });
      const { chunks } = built.manifest;
      if (chunks && built.chunkObject) await uploads.ifMissing(keys.chunks(chunks.object), built.chunkObject);
      const manifest = encodeDocument(built.manifest);
      await uploads.ifMissing(keys.manifest(manifest.hash), manifest.bytes);
      uploaded.add(item);
    });
  await uploadPayload(fresh);

  const update = await updateCatalog(
    store,
    async (draft) => {
      // Against the index of this attempt: another publisher may have added (or retired) versions meanwhile.
      fresh = await freshNow((family) => draft.shard(family));
      await uploadPayload(fresh);
      for (const family of families) {
        const shard = mergeShard(await draft.shard(family.name), family, fresh.filter((p) => p.source.family === family.name), draft.nowMs);
        if (shard) draft.setShard(shard);
      }
    },
    { log: options.log, signingKey: options.signingKey, uploads },
  );
  return summary(update.generation);
}

/**
 * Versions not yet in the catalog; an already published version with other content is an error. A retired
 * version comes back only when named (`<family>/<version>` in `named`); otherwise it is skipped with a note.
 */
async function freshVersions(
  shardOf: (family: string) => Promise<FamilyShard | undefined>,
  prepared: Prepared[],
  named: ReadonlySet<string>,
  note: (line: string) => void,
): Promise<Prepared[]> {
  const fresh: Prepared[] = [];
  const shards = new Map<string, FamilyShard | undefined>();
  for (const item of prepared) {
    const { family, version, dir } = item.source;
    if (!shards.has(family)) shards.set(family, await shardOf(family));
    const shard = shards.get(family);
    const existing = shard?.versions[version];
    const retired = shard?.retired?.[version];
    if (!existing && retired && !named.has(`${family}/${version}`)) {
      note(`${family}/${version} was retired on ${new Date(retired.retiredMs).toISOString()}: not published again; name it as ${family}/${version} to publish it again`);
    } else if (!existing) fresh.push(item);
    else if (existing.content !== item.built.content) {
      throw new PublishInputError(dir, `${family}/${version} is already published with different content; published versions are immutable, release a new version`);
    }
  }
  return fresh;
}

/**
 * After `rez-rm`, the source lacks versions the store still serves: publishing never removes them, it says so (a
 * source that is a partial checkout must not empty the catalog) and names the command that does. `index` is given
 * for a whole-repository publish, where a family missing from the source is noted too.
 */
async function noteVersionsGoneFromSource(
  families: FamilySource[],
  index: CatalogIndex | undefined,
  shardOf: (family: string) => Promise<FamilyShard | undefined>,
  named: ReadonlySet<string>,
  storeUrl: string,
  note: (line: string) => void,
): Promise<void> {
  const scanned = new Map(families.map((f) => [f.name, new Set(f.versions.map((v) => v.version))]));
  const names = index ? Object.keys(index.families) : families.map((f) => f.name);
  for (const family of names.sort()) {
    if ([...named].some((selector) => selector.startsWith(`${family}/`))) continue; // only some versions were scanned
    const inSource = scanned.get(family);
    for (const version of Object.keys((await shardOf(family))?.versions ?? {}).sort()) {
      if (inSource?.has(version)) continue;
      note(`${family}/${version} is in ${storeUrl} but not in the source (rez-rm?): it stays; rezfs retire ${family}/${version} --store ${storeUrl} takes it out`);
    }
  }
}

async function currentShard(store: ObjectStore, index: CatalogIndex, family: string): Promise<FamilyShard | undefined> {
  const entry = Object.hasOwn(index.families, family) ? index.families[family] : undefined;
  return entry ? readShard(store, entry.shard) : undefined;
}

async function extrasChanged(store: ObjectStore, index: CatalogIndex, families: FamilySource[]): Promise<boolean> {
  for (const family of families) {
    const shard = await currentShard(store, index, family.name);
    if (!shard && family.versions.length === 0 && Object.keys(family.extras).length === 0) continue;
    if (!shard || !canonicalJson(shard.extras).equals(canonicalJson(family.extras))) return true;
  }
  return false;
}

/** The family's new shard, or undefined when nothing about the family changes. */
function mergeShard(current: FamilyShard | undefined, family: FamilySource, fresh: Prepared[], now: number): FamilyShard | undefined {
  const extrasSame = current !== undefined && canonicalJson(current.extras).equals(canonicalJson(family.extras));
  if (fresh.length === 0 && (extrasSame || (!current && Object.keys(family.extras).length === 0))) return undefined;
  const versions: Record<string, VersionRecord> = { ...(current?.versions ?? {}) };
  const retired = { ...current?.retired };
  for (const { source, built } of fresh) {
    versions[source.version] = versionRecord(built, now);
    delete retired[source.version]; // published again, by name
  }
  return { format: FORMAT_VERSION, name: family.name, versions, extras: family.extras, ...(Object.keys(retired).length > 0 ? { retired } : {}) };
}

/**
 * Manifests up to this size travel inline in their shard record: a package of a few dozen files, whose manifest a
 * mount would otherwise fetch in one round trip of its own when something first looks inside the version.
 */
const INLINE_MANIFEST_MAX_BYTES = 8 * 1024;

function versionRecord(built: BuiltPackage, now: number): VersionRecord {
  const root = built.manifest.root;
  const manifest = encodeDocument(built.manifest);
  const definitions: VersionRecord['definitions'] = {};
  for (const [name, data] of Object.entries(built.definitions)) {
    const node = root.entries[name];
    if (node?.type === 'file') definitions[name] = { type: 'file', mode: node.mode, mtimeMs: node.mtimeMs, data: data.toString('base64') };
  }
  return {
    mode: root.mode,
    mtimeMs: root.mtimeMs,
    subdirs: countSubdirs(root),
    names: Object.keys(root.entries).sort(),
    publishedMs: now,
    definitions,
    manifest: manifest.hash,
    ...(manifest.bytes.length <= INLINE_MANIFEST_MAX_BYTES ? { inlineManifest: built.manifest } : {}),
    content: built.content,
  };
}
