/**
 * Publishes a released-package repository: scan it (scan.ts), decide per version what publishing means against
 * what the store holds (version-plan.ts), hash and upload the new packs and manifests, then make them the store's
 * next generation in one catalog transaction (catalog-update.ts).
 *
 * Incremental by construction: an unchanged version costs one lstat per entry. This host remembers, per version
 * directory, the stat digest it last found equal to a published manifest (publish-state.ts); a later publish that
 * finds the same digest and the same manifest in the store neither reads a byte nor fetches the manifest, and one
 * that finds the same shard does not fetch the shard either. Without that memory, a version whose files' size,
 * mode and mtime equal the manifest's is unchanged without reading any file; `rehash` reads every file instead.
 *
 * A refused version (changed payload, unreadable file, ...) is named and left out; the others are published.
 * Imports catalog, store, and this layer's modules.
 */
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import {
  CatalogError,
  EMPTY_INDEX,
  canonicalJson,
  countSubdirs,
  defaultStoreConfig,
  encodeDocument,
  keys,
  readHead,
  readIndex,
  readManifest,
  readShard,
  readStoreConfig,
  sha256Hex,
  type CatalogIndex,
  type FamilyShard,
  type InlineFile,
  type Manifest,
  type VersionRecord,
} from '../catalog/index.js';
import { inParallel } from '../parallel.js';
import type { Log } from '../log.js';
import { localDirectoryOf, ObjectNotFoundError, ReadOnlyStoreError, type ObjectStore } from '../store/index.js';
import { CatalogDraft, checkSigning, updateCatalog } from './catalog-update.js';
import { PublishInputError } from './errors.js';
import { hashPack, PackUpload, placeInputs } from './pack.js';
import { PublishState, type FamilyState, type VersionState } from './publish-state.js';
import { damagedPacks, rebuildPack } from './repair.js';
import { DEFINITION_FILES, realPathOf, scanRepository, versionLabel, type FamilySource, type Refusal, type RepositoryScan, type VersionSource } from './scan.js';
import { readSourceTree, type SourceTree } from './source-tree.js';
import { Uploads } from './uploads.js';
import { contentHash, planVersion, type Change, type PlanOptions, type VersionPlan } from './version-plan.js';

const UPLOADS_IN_FLIGHT = 4;

export interface PublishProgress {
  phase: 'hashing' | 'uploading';
  doneBytes: number;
  totalBytes: number;
  donePackages: number;
  totalPackages: number;
}

export interface PublishSummary {
  /** Versions that get a new manifest: new ones, grown ones (a variant added), redefined ones. */
  packages: number;
  changes: Record<Change, number>;
  alreadyPublished: number;
  /** Files and bytes of the new packs. */
  files: number;
  bytes: number;
  objectsUploaded: number;
  bytesUploaded: number;
  /** The new generation; undefined when nothing changed (or on a dry run). */
  generation: number | undefined;
  elapsedMs: number;
  /** Versions (or families) left out, one line each: the CLI prints them and exits 1. */
  refusals: Refusal[];
  /** Versions left out on purpose (rez still releasing them). */
  notes: string[];
  /** On a dry run, what would be written, one line each. */
  planned: string[];
  /** With repair: each pack rebuilt (or found damaged, on a dry run), one line each. */
  repaired: string[];
}

export interface PublishOptions {
  repoDir: string;
  selectors: readonly string[];
  log: Log;
  onProgress?: (progress: PublishProgress) => void;
  /** Signs each new index (ed25519) so mounts with --trust-key accept it. */
  signingKey?: KeyObject;
  /** Publish unsigned onto a store whose catalog is signed (see checkSigning). */
  allowUnsigned?: boolean;
  /** Accept a changed definition of a published version that gains no variant (see version-plan.ts). */
  allowRedefine?: boolean;
  /** Read and compare every file, trusting neither stat data nor this host's memory of it. */
  rehash?: boolean;
  /** Also check every pack of each unchanged version, and rebuild the missing or damaged ones from the source. */
  repair?: boolean;
  /** Decide everything, upload nothing, change nothing. */
  dryRun?: boolean;
  /** Where this host remembers what it found unchanged (PublishState); undefined remembers nothing. */
  stateDir?: string;
}

/** One version that gets a new manifest. */
interface VersionWork {
  family: FamilySource;
  source: VersionSource;
  tree: SourceTree;
  /** The published record the plan was made against, if any. */
  base: VersionRecord | undefined;
  plan: Extract<VersionPlan, { kind: 'write' }>;
  /** Filled in once the new pack is hashed. */
  built?: { manifest: Manifest; manifestHash: string; record: (publishedMs: number) => VersionRecord };
  /** Set when its files could not be read (or changed) while hashing or uploading: it is left out. */
  failed?: boolean;
  /** A repair that republishes the version whole: the source must hold what was published (this content hash). */
  mustMatchContent?: string;
  /** A repair of a version whose manifest was lost. */
  lostManifest?: boolean;
}

/** What examining one family found. */
interface FamilyExam {
  family: FamilySource;
  works: VersionWork[];
  /** Versions found equal to the store, by state key, for this host's memory. */
  checked: Map<string, VersionState>;
  extrasDigest: string;
  extrasChanged: boolean;
  /** The shard examined against, when it was loaded (undefined: not in the store, or known from memory). */
  shard: FamilyShard | undefined;
  /** Whether this host's memory vouched for the shard without loading it. */
  remembered: boolean;
  /** With repair: the versions found equal to their manifests, whose packs are to be checked. */
  verified: { source: VersionSource; manifest: Manifest }[];
}

export async function publish(store: ObjectStore, options: PublishOptions): Promise<PublishSummary> {
  const started = Date.now();
  if (store.readOnly) throw new ReadOnlyStoreError(store.url);
  refuseStoreInRepository(store, options.repoDir);
  const scan = scanRepository(options.repoDir, options.selectors, options.log.warn);
  const existingConfig = await readStoreConfig(store);
  const head = await readHead(store);
  await checkSigning(store, head, options, undefined, existingConfig ?? defaultStoreConfig());
  // A new store records at once that it is signed, when it is (rezfs.json, decision D7).
  const config = existingConfig ?? { ...defaultStoreConfig(), ...(options.signingKey ? { signed: true } : {}) };
  const index = head ? await readIndex(store, head.indexHash) : EMPTY_INDEX;
  const state = options.stateDir !== undefined ? await PublishState.load(options.stateDir, store.url) : undefined;
  const planOptions: PlanOptions = { blockSize: config.blockSize, allowRedefine: options.allowRedefine ?? false, rehash: options.rehash ?? false };
  const refusals: Refusal[] = [...scan.refusals];
  const notes = [...scan.notes];
  const named = new Set(options.selectors.filter((selector) => selector.includes('/')));
  const examiner = new Examiner(store, index, state, planOptions, refusals, notes, named, options.repair ?? false);

  const exams: FamilyExam[] = [];
  for (const family of scan.families) exams.push(await examiner.family(family));
  notes.push(...(await examiner.goneFromSource(scan, options.selectors.length === 0)));
  const repaired = options.repair ? await repairPacks(store, exams, Boolean(options.dryRun)) : [];
  const rootFiles = changedRootFiles(scan, index, planOptions, refusals);
  const allWorks = exams.flatMap((exam) => exam.works);
  const uploads = new Uploads(store);
  const summary = (generation: number | undefined, planned: string[] = []): PublishSummary => {
    const works = allWorks.filter((work) => !work.failed);
    const changes: Record<Change, number> = { new: 0, grown: 0, redefined: 0, repaired: 0 };
    for (const work of works) changes[work.plan.change]++;
    return {
      packages: works.length,
      changes,
      alreadyPublished: exams.reduce((n, exam) => n + exam.checked.size, 0),
      files: works.reduce((n, w) => n + w.plan.inputs.length, 0),
      bytes: works.reduce((n, w) => n + w.plan.inputs.reduce((m, f) => m + f.size, 0), 0),
      objectsUploaded: uploads.objects,
      bytesUploaded: uploads.bytes,
      generation,
      elapsedMs: Date.now() - started,
      refusals,
      notes,
      planned,
      repaired,
    };
  };

  const familiesChanged = exams.filter((exam) => exam.works.length > 0 || exam.extrasChanged);
  if (familiesChanged.length === 0 && rootFiles.length === 0) {
    if (!options.dryRun) await remember(state, exams, undefined, options.log);
    return summary(undefined);
  }
  if (options.dryRun) return summary(undefined, dryRunLines(familiesChanged, rootFiles));

  if (!existingConfig) await uploads.put(keys.config, canonicalJson(config));
  const payload = new Payload(uploads, refusals, options.onProgress);
  await payload.build(allWorks);
  for (const work of allWorks.filter((w) => w.lostManifest && w.built)) {
    const again = work.built!.manifestHash === work.base!.manifest;
    const how = again ? 'rebuilt from' : 'republished whole from';
    repaired.push(`repaired ${versionLabel(work.source)}: ${keys.manifest(work.base!.manifest)} was lost; ${how} ${work.source.dir}`);
  }

  // The edit runs again on a newer index when another publisher swapped HEAD first; versions it changed
  // meanwhile are planned again against what it published.
  let written = new Map<string, FamilyShard>();
  let attemptRefusals: Refusal[] = [];
  const update = await updateCatalog(
    store,
    async (draft) => {
      written = new Map();
      attemptRefusals = [];
      for (const exam of familiesChanged) {
        const shard = await mergeFamily(draft, exam, examiner, payload, attemptRefusals);
        if (shard) {
          draft.setShard(shard);
          written.set(exam.family.name, shard);
        }
      }
      for (const file of rootFiles) draft.setRootFile(file.fileName, file.entry);
    },
    { log: options.log, signingKey: options.signingKey, allowUnsigned: options.allowUnsigned, uploads },
  );
  refusals.push(...attemptRefusals);
  await remember(state, exams, { index: update.index, written }, options.log);
  return summary(update.generation);
}

/** A file:// store inside the repository would be published into itself, its objects as families. */
function refuseStoreInRepository(store: ObjectStore, repoDir: string): void {
  const dir = localDirectoryOf(store.url);
  if (dir === undefined) return;
  const repo = realPathOf(repoDir);
  const where = realPathOf(dir);
  if (where === repo || where.startsWith(`${repo}/`)) {
    throw new PublishInputError(dir, `the store is inside the repository ${repo}; put it outside, or every publish would publish the store too`);
  }
}

/** Loads what it must of the store to plan each version of a family, and no more. */
class Examiner {
  private readonly shards = new Map<string, Promise<FamilyShard>>();

  constructor(
    readonly store: ObjectStore,
    private readonly index: CatalogIndex,
    private readonly state: PublishState | undefined,
    readonly planOptions: PlanOptions,
    private readonly refusals: Refusal[],
    private readonly notes: string[],
    /** Versions named `<family>/<version>`: only these bring a retired version back. */
    private readonly named: ReadonlySet<string>,
    /** Compare every version with its manifest (no shortcut from memory) and keep the manifests for repair. */
    private readonly repair: boolean,
  ) {}

  shard(hash: string): Promise<FamilyShard> {
    let shard = this.shards.get(hash);
    if (!shard) {
      shard = readShard(this.store, hash);
      this.shards.set(hash, shard);
    }
    return shard;
  }

  async family(family: FamilySource): Promise<FamilyExam> {
    const memory = this.planOptions.rehash || this.repair ? undefined : this.state?.family(family.dir);
    const indexed = Object.hasOwn(this.index.families, family.name) ? this.index.families[family.name] : undefined;
    const remembered = memory !== undefined && indexed !== undefined && memory.shard === indexed.shard;
    const exam: FamilyExam = { family, works: [], checked: new Map(), extrasDigest: digestOf(family.extras), extrasChanged: false, shard: undefined, remembered, verified: [] };
    const shard = async () => (indexed ? (exam.shard ??= await this.shard(indexed.shard)) : undefined);
    for (const source of family.unversioned ? [family.unversioned] : family.versions) {
      const label = versionLabel(source);
      let tree: SourceTree;
      try {
        tree = readSourceTree(source.dir);
      } catch (err) {
        if (!(err instanceof PublishInputError)) throw err;
        this.refusals.push({ what: label, message: err.message });
        continue;
      }
      const key = stateKey(source);
      const known = memory && Object.hasOwn(memory.versions, key) ? memory.versions[key] : undefined;
      if (remembered && known?.stat === tree.statDigest) {
        exam.checked.set(key, known);
        continue;
      }
      const current = await shard();
      const layoutProblem = current && layoutConflict(current, source);
      if (layoutProblem) {
        this.refusals.push({ what: label, message: layoutProblem });
        continue;
      }
      const record = current && recordOf(current, source.version);
      const retired = !record && source.version !== undefined ? current?.retired?.[source.version] : undefined;
      if (retired && !this.named.has(label)) {
        this.notes.push(`${label} was retired on ${new Date(retired.retiredMs).toISOString()}: not published again; name it as ${label} to publish it again`);
        continue;
      }
      if (record && known?.stat === tree.statDigest && known.manifest === record.manifest) {
        exam.checked.set(key, known);
        continue;
      }
      const manifest = record && (await this.manifestOrLost(record));
      if (record && !manifest) {
        // Repair of a version whose manifest is gone: published again whole, if the source holds what was published.
        const plan = await planVersion(label, tree, undefined, this.planOptions);
        if (plan.kind === 'write') exam.works.push({ family, source, tree, base: record, plan: { ...plan, change: 'repaired' }, mustMatchContent: record.content, lostManifest: true });
        continue;
      }
      const plan = await planVersion(label, tree, record && manifest && { record, manifest }, this.planOptions);
      if (plan.kind === 'unchanged') {
        exam.checked.set(key, { manifest: record!.manifest, stat: tree.statDigest });
        if (this.repair) exam.verified.push({ source, manifest: manifest! });
      } else if (plan.kind === 'refused') this.refusals.push({ what: label, message: `${source.dir}: ${plan.message}` });
      else exam.works.push({ family, source, tree, base: record, plan });
    }
    if (!family.unversioned && !(remembered && memory.extras === exam.extrasDigest)) {
      const current = await shard();
      // A new family is published for its versions, or for its own files; with neither, not at all.
      exam.extrasChanged = current ? digestOf(current.extras) !== exam.extrasDigest : Object.keys(family.extras).length > 0;
    }
    return exam;
  }

  /**
   * After `rez-rm`, the source lacks versions the store still serves: publishing never removes them (a source that
   * is a partial checkout must not empty the catalog); it names each, with the command that does. A whole-repository
   * publish also looks at families the source no longer has at all. This host's memory of a shard spares its GET.
   */
  async goneFromSource(scan: RepositoryScan, wholeRepository: boolean): Promise<string[]> {
    const scanned = new Map(scan.families.map((f) => [f.name, f]));
    const names = wholeRepository ? Object.keys(this.index.families) : [...scanned.keys()];
    const lines: string[] = [];
    for (const family of names.sort()) {
      if ([...this.named].some((selector) => selector.startsWith(`${family}/`))) continue; // only some versions were scanned
      const source = scanned.get(family);
      if (source?.unversioned) continue;
      const entry = Object.hasOwn(this.index.families, family) ? this.index.families[family] : undefined;
      if (!entry) continue;
      const memory = this.state?.family(source?.dir ?? join(scan.root, family));
      const published = memory?.shard === entry.shard && Array.isArray(memory.published) ? memory.published : Object.keys((await this.shard(entry.shard)).versions);
      for (const version of [...published].sort()) {
        if (source?.present.has(version)) continue;
        lines.push(`${family}/${version} is in ${this.store.url} but not in the source (rez-rm?): it stays; rezfs retire ${family}/${version} --store ${this.store.url} takes it out`);
      }
    }
    return lines;
  }

  async plan(label: string, tree: SourceTree, record: VersionRecord | undefined): Promise<VersionPlan> {
    const manifest = record && (await readManifest(this.store, record.manifest));
    return planVersion(label, tree, record && manifest && { record, manifest }, this.planOptions);
  }

  /** The record's manifest; when repairing, undefined for one that is missing or damaged (else that is an error). */
  private async manifestOrLost(record: VersionRecord): Promise<Manifest | undefined> {
    try {
      return await readManifest(this.store, record.manifest);
    } catch (err) {
      if (this.repair && (err instanceof ObjectNotFoundError || err instanceof CatalogError)) return undefined;
      throw err;
    }
  }
}

/**
 * Manifests up to this size travel inline in their shard record: a package of a few dozen files, whose manifest a
 * mount would otherwise fetch in one round trip of its own when something first looks inside the version.
 */
const INLINE_MANIFEST_MAX_BYTES = 8 * 1024;

/** Hashes the new packs, then uploads them and their manifests. */
class Payload {
  private readonly uploaded = new Set<VersionWork>();
  private hashedBytes = 0;
  private sentBytes = 0;
  private totalBytes = 0;
  private total = 0;

  constructor(
    private readonly uploads: Uploads,
    private readonly refusals: Refusal[],
    private readonly onProgress?: (progress: PublishProgress) => void,
  ) {}

  /** Each work is built and uploaded, or (its source unreadable or changing) marked failed and refused. */
  async build(works: VersionWork[]): Promise<void> {
    this.total += works.length;
    this.totalBytes += works.reduce((n, w) => n + w.plan.inputs.reduce((m, f) => m + f.size, 0), 0);
    let done = 0;
    for (const work of works) {
      await this.refusing(work, () => this.hash(work, () => this.progress('hashing', this.hashedBytes, done)));
      done++;
    }
    await inParallel(works.filter((w) => !w.failed), UPLOADS_IN_FLIGHT, (work) => this.refusing(work, () => this.upload(work)));
  }

  private async refusing(work: VersionWork, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      if (!(err instanceof PublishInputError)) throw err;
      work.failed = true;
      this.refusals.push({ what: versionLabel(work.source), message: err.message });
    }
  }

  private progress(phase: PublishProgress['phase'], doneBytes: number, donePackages: number): void {
    this.onProgress?.({ phase, doneBytes, totalBytes: this.totalBytes, donePackages, totalPackages: this.total });
  }

  private async hash(work: VersionWork, onBytes: () => void): Promise<void> {
    const { plan, tree, base } = work;
    const hashed = await hashPack(plan.inputs, plan.blockSize, (i) => plan.definitionInputs.has(i), (n) => {
      this.hashedBytes += n;
      onBytes();
    });
    const manifest = plan.finish(hashed);
    if (work.mustMatchContent !== undefined && contentHash(manifest.root) !== work.mustMatchContent) {
      throw new PublishInputError(work.source.dir, 'differs from what was published, so its lost objects cannot be repaired from it; publish from the source it was released from');
    }
    const encoded = encodeDocument(manifest);
    const manifestHash = encoded.hash;
    const inline = encoded.bytes.length <= INLINE_MANIFEST_MAX_BYTES;
    const definitions: Record<string, InlineFile> = {};
    for (const name of DEFINITION_FILES) {
      const node = manifest.root.entries[name];
      if (node?.type !== 'file') continue;
      const input = [...plan.definitionInputs].find(([, n]) => n === name)?.[0];
      const data = input !== undefined ? hashed.kept.get(input)!.toString('base64') : base!.definitions[name]!.data;
      definitions[name] = { type: 'file', mode: node.mode, mtimeMs: node.mtimeMs, data };
    }
    work.built = {
      manifest,
      manifestHash,
      record: (publishedMs) => ({
        mode: manifest.root.mode,
        mtimeMs: tree.root.mtimeMs,
        subdirs: countSubdirs(manifest.root),
        names: Object.keys(manifest.root.entries).sort(),
        publishedMs: base?.publishedMs ?? publishedMs,
        definitions,
        manifest: manifestHash,
        ...(inline ? { inlineManifest: manifest } : {}),
        content: contentHash(manifest.root),
      }),
    };
  }

  private async upload(work: VersionWork): Promise<void> {
    if (this.uploaded.has(work)) return;
    const { manifest } = work.built!;
    const record = manifest.addedPacks?.at(-1) ?? manifest;
    const pack = new PackUpload(placeInputs(work.plan.inputs, work.plan.blockSize).placed, record, work.plan.blockSize);
    await this.uploads.stream(
      keys.pack(record.pack),
      () =>
        pack.stream((n) => {
          this.sentBytes += n;
          this.progress('uploading', this.sentBytes, this.uploaded.size);
        }),
      { size: record.packSize, sha256: record.pack },
    );
    if (record.chunks) await this.uploads.ifMissing(keys.chunks(record.chunks.object), () => pack.chunkObject());
    const doc = encodeDocument(manifest);
    await this.uploads.ifMissing(keys.manifest(doc.hash), doc.bytes);
    this.uploaded.add(work);
  }

  /** One version planned again inside the transaction (another publisher changed it meanwhile). */
  async buildOne(work: VersionWork): Promise<void> {
    await this.build([work]);
  }
}

/**
 * With repair: every pack of the versions found equal to the store, checked block by block; a damaged one is
 * rebuilt from the source under its own name, or, when the source cannot give its exact bytes, the version is
 * planned to be republished whole. One line per pack; on a dry run, what would be done.
 */
async function repairPacks(store: ObjectStore, exams: FamilyExam[], dryRun: boolean): Promise<string[]> {
  const lines: string[] = [];
  for (const exam of exams) {
    for (const { source, manifest } of exam.verified) {
      const label = versionLabel(source);
      for (const { record, problem } of await damagedPacks(store, manifest)) {
        if (dryRun) lines.push(`would repair ${label}: ${problem}`);
        else if (await rebuildPack(store, manifest, record, source.dir)) lines.push(`repaired ${label}: ${problem}; rebuilt from ${source.dir}`);
        else {
          lines.push(`repaired ${label}: ${problem}; republished whole from ${source.dir} (its pack held bytes the source no longer has)`);
          exam.works.push(await republishWhole(exam, source, manifest));
          exam.checked.delete(stateKey(source));
          break;
        }
      }
    }
  }
  return lines;
}

async function republishWhole(exam: FamilyExam, source: VersionSource, manifest: Manifest): Promise<VersionWork> {
  const tree = readSourceTree(source.dir);
  const plan = await planVersion(versionLabel(source), tree, undefined, { blockSize: manifest.blockSize, allowRedefine: false, rehash: false });
  if (plan.kind !== 'write') throw new Error(`${source.dir}: a version not yet published always has a pack to write`);
  const base = recordOf(exam.shard!, source.version)!;
  return { family: exam.family, source, tree, base, plan: { ...plan, change: 'repaired' }, mustMatchContent: base.content };
}

/**
 * The family's next shard on this attempt's draft, or undefined when nothing about it changes. A version that
 * another publisher changed since it was planned is planned again against that (and may now be refused).
 */
async function mergeFamily(draft: CatalogDraft, exam: FamilyExam, examiner: Examiner, payload: Payload, refusals: Refusal[]): Promise<FamilyShard | undefined> {
  const { family } = exam;
  const current = await draft.shard(family.name);
  const next: FamilyShard = {
    format: '',
    name: family.name,
    versions: { ...(current?.versions ?? {}) },
    extras: exam.extrasChanged || !current ? family.extras : current.extras,
  };
  if (current?.unversioned) next.unversioned = current.unversioned;
  const retired = { ...current?.retired };
  for (let work of exam.works) {
    if (work.failed) continue;
    const label = versionLabel(work.source);
    const conflict = current && layoutConflict(current, work.source);
    if (conflict) {
      refusals.push({ what: label, message: conflict });
      continue;
    }
    const now = current && recordOf(current, work.source.version);
    if (now?.manifest !== work.base?.manifest && now?.manifest !== work.built!.manifestHash) {
      const plan = await examiner.plan(label, work.tree, now);
      if (plan.kind === 'refused') {
        refusals.push({ what: label, message: `${work.source.dir}: ${plan.message}` });
        continue;
      }
      if (plan.kind === 'unchanged') continue;
      work = { ...work, base: now, plan, built: undefined };
      await payload.buildOne(work);
      if (work.failed) continue;
    }
    const record = work.built!.record(draft.nowMs);
    if (work.source.version === undefined) next.unversioned = record;
    else {
      next.versions[work.source.version] = record;
      delete retired[work.source.version]; // published again, by name
    }
  }
  if (Object.keys(retired).length > 0) next.retired = retired;
  if (!current) {
    // A new family is published for its versions, or for its own files; with neither (all refused), not at all.
    const empty = !next.unversioned && Object.keys(next.versions).length === 0 && Object.keys(next.extras).length === 0;
    return empty ? undefined : next;
  }
  return CatalogDraft.shardHash(next) === CatalogDraft.shardHash(current) ? undefined : next;
}

/** A version source that does not fit the family's published layout (versioned vs unversioned). */
function layoutConflict(shard: FamilyShard, source: VersionSource): string | undefined {
  if (source.version === undefined && Object.keys(shard.versions).length > 0) {
    return `${source.dir}: ${source.family} is published with versions; an unversioned package cannot join them`;
  }
  if (source.version !== undefined && shard.unversioned) {
    return `${source.dir}: ${source.family} is published as an unversioned package; a version cannot join it`;
  }
  return undefined;
}

function recordOf(shard: FamilyShard, version: string | undefined): VersionRecord | undefined {
  if (version === undefined) return shard.unversioned;
  return Object.hasOwn(shard.versions, version) ? shard.versions[version] : undefined;
}

/** This host's memory key of a version: its name, "" for an unversioned package. */
function stateKey(source: VersionSource): string {
  return source.version ?? '';
}

function digestOf(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}

/** Single-file families that are new or changed (changed ones only with allowRedefine). */
function changedRootFiles(scan: RepositoryScan, index: CatalogIndex, options: PlanOptions, refusals: Refusal[]): { fileName: string; entry: InlineFile }[] {
  const changed: { fileName: string; entry: InlineFile }[] = [];
  for (const file of scan.familyFiles) {
    const current = index.files && Object.hasOwn(index.files, file.fileName) ? index.files[file.fileName] : undefined;
    if (current && current.data === file.entry.data && current.mode === file.entry.mode) continue;
    if (current && !options.allowRedefine) {
      refusals.push({
        what: file.fileName,
        message: `${file.path} changed: a single-file family holds every version's definition in one file, so a change may redefine released versions; publish it with --allow-redefine (or release new versions as directories)`,
      });
      continue;
    }
    changed.push({ fileName: file.fileName, entry: file.entry });
  }
  return changed;
}

/** What a dry run would write, one line each. */
function dryRunLines(exams: FamilyExam[], rootFiles: { fileName: string }[]): string[] {
  const lines: string[] = [];
  const size = (work: VersionWork) => work.plan.inputs.reduce((n, f) => n + f.size, 0);
  for (const exam of exams) {
    for (const work of exam.works) {
      const what = { new: 'new version', grown: 'new variant payload', redefined: 'changed definition', repaired: 'republished whole to repair it' }[work.plan.change];
      lines.push(`would publish ${versionLabel(work.source)} (${what}): ${work.plan.inputs.length} files, ${size(work)} bytes in a new pack`);
    }
    if (exam.extrasChanged && (exam.shard || Object.keys(exam.family.extras).length > 0)) lines.push(`would update ${exam.family.name}'s own files (${Object.keys(exam.family.extras).join(', ') || 'none'})`);
  }
  for (const file of rootFiles) lines.push(`would publish ${file.fileName} (single-file family)`);
  return lines;
}

/** Saves what this publish found equal to the store, tied to the shard it checked (or wrote). */
async function remember(state: PublishState | undefined, exams: FamilyExam[], committed: { index: CatalogIndex; written: Map<string, FamilyShard> } | undefined, log: Log): Promise<void> {
  if (!state) return;
  for (const exam of exams) {
    const shard = committed?.written.get(exam.family.name) ?? exam.shard;
    if (!shard) continue; // vouched for by memory, or not in the store: nothing new to remember
    const shardHash = committed?.index.families[exam.family.name]?.shard ?? CatalogDraft.shardHash(shard);
    const before = state.family(exam.family.dir);
    const versions: Record<string, VersionState> = {};
    const candidates: [string, VersionState][] = [...Object.entries(before?.versions ?? {}), ...exam.checked];
    for (const work of exam.works) if (work.built) candidates.push([stateKey(work.source), { manifest: work.built.manifestHash, stat: work.tree.statDigest }]);
    for (const [key, entry] of candidates) {
      // Only what the shard really says: anything else would be a wrong shortcut next time.
      if (recordOf(shard, key === '' ? undefined : key)?.manifest === entry.manifest) versions[key] = entry;
    }
    const extrasMatch = exam.family.unversioned || digestOf(shard.extras) === exam.extrasDigest;
    const next: FamilyState = { shard: shardHash, extras: extrasMatch ? exam.extrasDigest : undefined, versions, published: Object.keys(shard.versions) };
    state.remember(exam.family.dir, next);
  }
  // Only a shortcut for next time: a host that cannot keep it publishes correctly, just more slowly.
  await state.save().catch((err: Error) => log.warn(`cannot remember what was published in ${state.file} (${err.message}); the next publish compares again`));
}
