/**
 * Publishing startup profiles (`rezfs profile`): each recorded profile is uploaded as one immutable,
 * content-addressed object (`profiles/<sha256>.json`, signed in itself when a key is given) and named in its
 * version's shard record, all versions in one catalog transaction (decision D3), so that mounts find a version's
 * profile in the shard they already load: no request at all for a version without one.
 *
 * Invariants: a profile is attached only to the version and manifest it was recorded through (a version since
 * republished with other content, or gone, is skipped and reported); profile objects are uploaded before the
 * transaction that names them; attaching the same profiles again changes nothing. A newer recording replaces the
 * version's older profile. Imports the catalog, the store and the transaction.
 */
import type { KeyObject } from 'node:crypto';
import { encodeDocument, keys, signDocument, type FamilyShard, type StartupProfile } from '../catalog/index.js';
import type { Log } from '../log.js';
import type { ObjectStore } from '../store/index.js';
import { updateCatalog } from './catalog-update.js';
import { Uploads } from './uploads.js';

export interface AttachSummary {
  attached: { family: string; version: string; profile: string }[];
  /** Recordings not attached, one reason each. */
  skipped: string[];
  generation: number | undefined;
  objectsUploaded: number;
  bytesUploaded: number;
}

export async function attachProfiles(store: ObjectStore, profiles: readonly StartupProfile[], options: { log: Log; signingKey?: KeyObject }): Promise<AttachSummary> {
  const uploads = new Uploads(store);
  const documents = profiles.map((profile) => {
    const doc = encodeDocument(options.signingKey ? signDocument(options.signingKey, profile) : profile);
    return { profile, hash: doc.hash, bytes: doc.bytes };
  });
  for (const doc of documents) await uploads.ifMissing(keys.profile(doc.hash), doc.bytes);
  let attached: AttachSummary['attached'] = [];
  let skipped: string[] = [];
  const result = await updateCatalog(
    store,
    async (draft) => {
      attached = [];
      skipped = [];
      const edited = new Map<string, FamilyShard>();
      for (const { profile, hash } of documents) {
        const what = `${profile.family}/${profile.version}`;
        const shard = edited.get(profile.family) ?? structuredClone(await draft.shard(profile.family));
        const record = shard && Object.hasOwn(shard.versions, profile.version) ? shard.versions[profile.version] : undefined;
        if (!shard || !record) {
          skipped.push(`${what}: no such version in ${store.url} now`);
          continue;
        }
        if (record.manifest !== profile.manifest) {
          skipped.push(`${what}: recorded through manifest ${profile.manifest}, but the version now has ${record.manifest}`);
          continue;
        }
        record.profile = hash;
        edited.set(profile.family, shard);
        attached.push({ family: profile.family, version: profile.version, profile: hash });
      }
      for (const shard of edited.values()) draft.setShard(shard);
    },
    { log: options.log, uploads, ...(options.signingKey ? { signingKey: options.signingKey } : {}) },
  );
  return { attached, skipped, generation: result.generation, objectsUploaded: uploads.objects, bytesUploaded: uploads.bytes };
}
