import { sha256Hex } from '../hash.js';
import semver from 'semver';
import { READABLE_MAJORS } from './schema.js';

export { sha256Hex };

/** JSON with object keys sorted, so equal documents always hash equal. */
export function canonicalJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, (_key, v: unknown) => (isPlainObject(v) ? sortKeys(v) : v)));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function sortKeys(obj: Record<string, unknown>): Record<string, unknown> {
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(obj).sort()) sorted[key] = obj[key];
  return sorted;
}

/** Serializes a document and names it by its hash. */
export function encodeDocument(value: unknown): { hash: string; bytes: Buffer } {
  const bytes = canonicalJson(value);
  return { hash: sha256Hex(bytes), bytes };
}

export class CatalogError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CatalogError';
  }
}

/** Parses a content-addressed document, refusing bytes that do not match the hash they were fetched under. */
export function decodeDocument<T extends { format: string }>(what: string, expectedHash: string, bytes: Buffer): T {
  const actual = sha256Hex(bytes);
  if (actual !== expectedHash) {
    throw new CatalogError(`${what} failed verification: expected sha256 ${expectedHash}, got ${actual}`);
  }
  return parseVersioned<T>(what, bytes);
}

export function parseVersioned<T extends { format: string }>(what: string, bytes: Buffer): T {
  let doc: T;
  try {
    doc = JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw new CatalogError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  checkFormat(what, doc.format);
  return doc;
}

/** Readers accept any minor/patch of the majors they know: newer minors only add optional fields. */
export function checkFormat(what: string, format: unknown): void {
  if (typeof format !== 'string' || !semver.valid(format)) {
    throw new CatalogError(`${what} has no valid format version`);
  }
  if (!READABLE_MAJORS.includes(semver.major(format))) {
    const readable = READABLE_MAJORS.map((major) => `${major}.x`).join(' and ');
    throw new CatalogError(`${what} has format ${format}, this rezfs reads formats ${readable}: install a rezfs that matches the store`);
  }
}

export function isSha256(value: string): boolean {
  return /^[0-9a-f]{64}$/.test(value);
}
