export { BackgroundTicket, inBackground } from './background.js';
export { DavStore } from './dav-store.js';
export { HttpStore } from './http-store.js';
export { MeteredStore, StoreTraffic, storeErrorKind, type StoreErrorKind, type StoreOperation, type TrafficRow } from './metered-store.js';
export { DEFAULT_MIRROR_OPTIONS, MirroredStore, MirrorsUnavailableError, type MirrorOptions } from './mirrored-store.js';
export { ForwardingStore } from './forwarding-store.js';
export { readVerified } from './verified-read.js';
export { LocalCopyStore, type CopyRules, type OfflineState } from './local-copy-store.js';
export {
  localDirectoryOf,
  MIRRORED_MAX_ATTEMPTS,
  openStore,
  openStores,
  openWritableStore,
  redactUrl,
  StoreUrlError,
  type OpenStoreOptions,
  type OpenStoresOptions,
} from './open-store.js';
export { acquireLease, DEFAULT_LEASE_POLICY, Lease, LEASE_PREFIX, LeaseError, removeClaim, type LeasePolicy } from './lease.js';
export { DEFAULT_ORIGIN_LIMITS, DEFAULT_RETRY, OriginPressure, OriginPressures, type OriginLimits, type PressureStats, type RetryPolicy } from './retry.js';
export {
  ObjectNotFoundError,
  ReadOnlyStoreError,
  StoreAccessError,
  StoreError,
  StoreMissingError,
  StoreTimeoutError,
  TransientStoreError,
  WriteRefusedError,
  type ListedObject,
  type ObjectInfo,
  type ObjectStore,
  type StoreHealth,
  type PutStreamOptions,
} from './types.js';
export { DEFAULT_TIMEOUTS, type StoreTimeouts } from './watchdog.js';
