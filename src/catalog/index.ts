export {
  Catalog,
  Documents,
  DEFAULT_SHARD_PRELOAD,
  EMPTY_INDEX,
  NotAStoreError,
  defaultStoreConfig,
  readHead,
  readIndex,
  readManifest,
  readShard,
  readSignature,
  readStoreConfig,
  type Head,
  type TrustPolicy,
  type ShardPreloadPolicy,
  type ShardPreloadResult,
} from './catalog.js';
export * from './signing.js';
export { CatalogError, canonicalJson, encodeDocument, parseVersioned, sha256Hex } from './codec.js';
export * from './schema.js';
export { ChunkHasher, ChunkLayout, HASH_BYTES, unusableChunks } from './chunk-hashes.js';
export { blockCount, countSubdirs } from './tree.js';
export { GenerationFloor } from './generation-floor.js';
export { packDamage, verifyStore, type VerifyReport } from './verify.js';
export { CatalogRefresher, type RefresherOptions } from './refresher.js';
export {
  CatalogWalker,
  DEFAULT_WALK_OPTIONS,
  OBJECT_KINDS,
  dependencyRank,
  kindOfKey,
  type ObjectKind,
  type ObjectRef,
  type WalkOptions,
  type WalkVisitor,
} from './references.js';
export {
  CLAIMS_PREFIX,
  DEFAULT_COLLECTION_TIMING,
  ReliedObjects,
  claimKey,
  claimedKey,
  type CollectionTiming,
} from './gc-protocol.js';
export { buildProfile, mergeRanges, profileBytes, profileProblem, type ProfileTarget } from './profile.js';
export { packOf, packsOf } from './packs.js';
export { CATALOG_LEASE, conditionalWritesHonoured, HeadWriter, type HeadWriterOptions } from './head-writer.js';
export { indexFormat, manifestFormat, shardFormat } from './formats.js';
