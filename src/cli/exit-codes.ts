/**
 * The CLI's exit codes and the one rule that maps an error to one: bad usage or bad input (a wrong flag, a
 * mistyped store, a file that is not a key) is 2, anything else that failed is 1. A daemonising mount
 * passes its child's failure back with the same class. May import the error types of every layer.
 */
import { NotAStoreError } from '../catalog/index.js';
import { GcOptionError } from '../maintain/gc.js';
import { SyncRefusedError } from '../maintain/sync.js';
import { PublishInputError } from '../publish/index.js';
import { ReadOnlyStoreError, StoreAccessError, StoreMissingError, StoreUrlError, WriteRefusedError } from '../store/index.js';
import { UsageError } from './units.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * Whether `err` is the user's to fix (exit 2) rather than a failure at run time (exit 1). Wrong credentials
 * and a store that refuses writes for good are bad input too: the user must change what was given.
 */
export function isBadInput(err: unknown): boolean {
  return (
    err instanceof UsageError ||
    err instanceof PublishInputError ||
    err instanceof StoreUrlError ||
    err instanceof ReadOnlyStoreError ||
    err instanceof NotAStoreError ||
    err instanceof StoreMissingError ||
    err instanceof StoreAccessError ||
    err instanceof WriteRefusedError ||
    err instanceof GcOptionError ||
    err instanceof SyncRefusedError
  );
}

export function exitCodeOf(err: unknown): number {
  return isBadInput(err) ? EXIT_USAGE : EXIT_FAILURE;
}
