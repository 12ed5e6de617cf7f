export type { BlockCache } from './block-cache.js';
export { ByteBudget } from './byte-budget.js';
export { ReadaheadWindow, readsChunks } from './readahead.js';
export { BlockSource, DEFAULT_IN_FLIGHT_BYTES, IntegrityError, packRef, type BlockSourceStats, type PackChunks, type PackRef, type Piece } from './block-source.js';
export { DiskBlockCache, type DiskCacheStats, type GcResult } from './disk-cache.js';
export { MemoryBlockCache } from './memory-cache.js';
export * from './block-math.js';
export { planMemory, PROCESS_RESERVE_BYTES, type MemoryPlan } from './memory-plan.js';
export { LocalCopyStore, type CopyRules, type OfflineState } from './local-copy-store.js';
