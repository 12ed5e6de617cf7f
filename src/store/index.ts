export { openStore, DEFAULT_TIMEOUTS, StoreUrlError, type StoreTimeouts } from './open-store.js';
export { ObjectNotFoundError, ReadOnlyStoreError, StoreError, type ObjectInfo, type ObjectStore } from './types.js';
