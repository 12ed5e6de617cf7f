/**
 * `rezfs publish`: runs the publisher with a progress bar, prints notes and refusals one per line on stderr and
 * one summary line on stdout, and tells local mounts of the store to refresh. Refused versions make it exit 1
 * after the rest is published. Imports publish, store and the CLI's helpers.
 */
import { publish, type PublishProgress, type PublishSummary } from '../publish/index.js';
import { streamLog } from '../log.js';
import { openStore } from '../store/index.js';
import { readPrivateKey } from './keys.js';
import { progressBar } from './progress.js';
import { notifyMounts } from './registry.js';
import { formatBytes } from './units.js';

export interface PublishFlags {
  store: string;
  signKey?: string;
  allowUnsigned?: boolean;
  allowRedefine?: boolean;
  rehash?: boolean;
  repair?: boolean;
  dryRun?: boolean;
  stateDir: string;
}

/** Some versions were refused (each already named on its own line); the others are published. */
export class RefusedVersionsError extends Error {
  constructor(count: number) {
    super(`${count} refused (named above); everything else is published`);
    this.name = 'RefusedVersionsError';
  }
}

export async function publishCommand(repoDir: string, selectors: string[], flags: PublishFlags): Promise<void> {
  const signingKey = flags.signKey === undefined ? undefined : readPrivateKey(flags.signKey);
  const store = openStore(flags.store);
  const bar = progressBar();
  try {
    const log = streamLog((l) => process.stderr.write(l), false);
    const onProgress = (p: PublishProgress) => {
      bar.update(p.phase, p.doneBytes / Math.max(1, p.totalBytes), `${p.donePackages}/${p.totalPackages} packages ${formatBytes(p.doneBytes)}/${formatBytes(p.totalBytes)}`);
    };
    const summary = await publish(store, {
      repoDir,
      selectors,
      log,
      onProgress,
      signingKey,
      allowUnsigned: Boolean(flags.allowUnsigned),
      allowRedefine: Boolean(flags.allowRedefine),
      rehash: Boolean(flags.rehash),
      repair: Boolean(flags.repair),
      dryRun: Boolean(flags.dryRun),
      stateDir: flags.stateDir,
    });
    bar.done();
    for (const note of summary.notes) process.stderr.write(`rezfs: note: ${note}\n`);
    for (const refusal of summary.refusals) process.stderr.write(`rezfs: refused ${refusal.what}: ${refusal.message}\n`);
    for (const line of summary.repaired) process.stdout.write(`${line}\n`);
    process.stdout.write(await summaryLine(store.url, summary, Boolean(flags.dryRun)));
    if (summary.refusals.length > 0) throw new RefusedVersionsError(summary.refusals.length);
  } finally {
    bar.done();
    await store.close();
  }
}

async function summaryLine(url: string, s: PublishSummary, dryRun: boolean): Promise<string> {
  const took = `${(s.elapsedMs / 1000).toFixed(1)} s`;
  if (dryRun) {
    const lines = s.planned.map((line) => `${line}\n`).join('');
    return `${lines}dry run: ${s.planned.length === 0 ? 'nothing to publish' : `${s.planned.length} change(s)`}; ${s.alreadyPublished} packages already in ${url}; nothing written\n`;
  }
  if (s.generation === undefined && s.repaired.length > 0) return `repaired ${s.repaired.length} pack(s) in ${url} in ${took}; nothing else to publish (${s.alreadyPublished} packages already there)\n`;
  if (s.generation === undefined) return `nothing to publish: ${s.alreadyPublished} packages already in ${url}; 0 objects uploaded in ${took}\n`;
  const told = await notifyMounts(url);
  const kinds = [
    s.changes.grown > 0 ? `${s.changes.grown} with new variants` : '',
    s.changes.redefined > 0 ? `${s.changes.redefined} redefined` : '',
    s.changes.repaired > 0 ? `${s.changes.repaired} republished to repair them` : '',
  ].filter(Boolean);
  return (
    `published ${s.packages} packages (${[...kinds, `${s.files} files, ${formatBytes(s.bytes)}`].join('; ')}; ${s.alreadyPublished} already there) ` +
    `to ${url} in ${took}: ${s.objectsUploaded} objects uploaded (${formatBytes(s.bytesUploaded)}), generation ${s.generation}` +
    `${told > 0 ? `; ${told} local mount(s) told to refresh` : ''}\n`
  );
}
