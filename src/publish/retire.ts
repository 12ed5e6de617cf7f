/**
 * `rezfs retire`: takes versions out of the next generation, what `rez-rm` does to a released-package directory.
 *
 * A catalog edit like any other (catalog-update.ts): the version's record leaves its family shard and a tombstone
 * (`FamilyShard.retired`) takes its place, so that a later publish of a source that still holds the version does
 * not bring it back unasked (publisher.ts: a whole-repository publish skips it with a note; naming it as
 * `<family>/<version>` publishes it again). Mounts drop the version at their next refresh; what is open keeps
 * reading its generation, and the payload stays in the store until `rezfs gc` finds no kept generation naming it.
 * A family whose last version is retired stays, empty, as rez leaves the directory after `rez-rm`. Like
 * `rez-rm --ignored-since`, it can also retire every version that has been ignored (`rez-pkg-ignore`) long enough.
 *
 * Imports the catalog and the catalog transaction.
 */
import type { KeyObject } from 'node:crypto';
import { FORMAT_VERSION, ignoreMarker, type FamilyShard } from '../catalog/index.js';
import type { Log } from '../log.js';
import type { ObjectStore } from '../store/index.js';
import { updateCatalog, type CatalogDraft } from './catalog-update.js';
import { PublishInputError } from './errors.js';

export interface RetireTarget {
  family: string;
  version: string;
}

export interface RetireOutcome extends RetireTarget {
  /** `already retired`: a tombstone was there and nothing changed for this version. */
  result: 'retired' | 'already retired';
  /** When the retired version had been published. */
  publishedMs: number | undefined;
}

export interface RetireResult {
  outcomes: RetireOutcome[];
  /** The new generation, or undefined when every version was retired already. */
  generation: number | undefined;
}

/**
 * Moves each target from its shard's versions to its tombstones in `draft`. A family or version the catalog has
 * never had is bad input (PublishInputError): nothing is changed then.
 */
export async function retireVersions(draft: CatalogDraft, targets: readonly RetireTarget[]): Promise<RetireOutcome[]> {
  const outcomes: RetireOutcome[] = [];
  const edited = new Map<string, FamilyShard>();
  for (const target of targets) {
    const { family, version } = target;
    const shard = edited.get(family) ?? (await draft.shard(family));
    if (!shard) throw new PublishInputError(`${family}/${version}`, `no family ${family} in ${draft.store.url}; rezfs ls lists the families`);
    const record = shard.versions[version];
    if (!record) {
      if (!shard.retired?.[version]) throw new PublishInputError(`${family}/${version}`, `no version ${version} of ${family} in ${draft.store.url}; rezfs ls ${family} lists its versions`);
      outcomes.push({ ...target, result: 'already retired', publishedMs: undefined });
      continue;
    }
    const versions = { ...shard.versions };
    delete versions[version];
    edited.set(family, {
      ...shard,
      format: FORMAT_VERSION,
      versions,
      retired: { ...shard.retired, [version]: { retiredMs: draft.nowMs, content: record.content } },
    });
    outcomes.push({ ...target, result: 'retired', publishedMs: record.publishedMs });
  }
  for (const shard of edited.values()) draft.setShard(shard);
  return outcomes;
}

/**
 * Every served version rez ignores (an `.ignore<version>` file in its family directory, as `rez-pkg-ignore` writes
 * it) whose marker is at least `minAgeMs` old: what `rez-rm --ignored-since` removes from a directory.
 */
export async function ignoredVersions(draft: CatalogDraft, minAgeMs: number): Promise<RetireTarget[]> {
  const found: RetireTarget[] = [];
  for (const family of draft.familyNames()) {
    const shard = await draft.shard(family);
    for (const version of Object.keys(shard?.versions ?? {}).sort()) {
      const marker = shard!.extras[ignoreMarker(version)];
      if (marker?.type === 'file' && draft.nowMs - marker.mtimeMs >= minAgeMs) found.push({ family, version });
    }
  }
  return found;
}

/** What to retire: named versions, and/or every version ignored for at least `ignoredForMs`. */
export interface RetireSelection {
  targets: readonly RetireTarget[];
  ignoredForMs?: number;
}

/** Retires the selection in one new generation. */
export async function retire(store: ObjectStore, selection: RetireSelection, options: { log: Log; signingKey?: KeyObject }): Promise<RetireResult> {
  let outcomes: RetireOutcome[] = [];
  const update = await updateCatalog(
    store,
    async (draft) => {
      const ignored = selection.ignoredForMs === undefined ? [] : await ignoredVersions(draft, selection.ignoredForMs);
      const named = new Set(selection.targets.map((t) => `${t.family}/${t.version}`));
      outcomes = await retireVersions(draft, [...selection.targets, ...ignored.filter((t) => !named.has(`${t.family}/${t.version}`))]);
    },
    { log: options.log, signingKey: options.signingKey },
  );
  return { outcomes, generation: update.generation };
}
