import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { CatalogError, loadPrivateKey, loadPublicKey } from '../catalog/index.js';
import { UsageError } from './units.js';

/** Key files are small and read once at start-up; a bad one is bad input (exit 2). */
function readKey(file: string, parse: (pem: string, source: string) => KeyObject): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read key ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return parse(pem, file);
  } catch (err) {
    throw err instanceof CatalogError ? new UsageError(err.message) : err;
  }
}

export const readPrivateKey = (file: string): KeyObject => readKey(file, loadPrivateKey);
export const readPublicKey = (file: string): KeyObject => readKey(file, loadPublicKey);
