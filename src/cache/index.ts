export type { BlockCache } from './block-cache.js';
export { BlockSource, IntegrityError, type BlockSourceStats, type PackRef } from './block-source.js';
export { DiskBlockCache } from './disk-cache.js';
export { MemoryBlockCache } from './memory-cache.js';
export * from './block-math.js';
