const MiB = 1024 * 1024;

/**
 * What a mount process needs besides block buffers: Node, the S3 client, the catalog of a big store (about
 * 90 MiB with 100,000 versions), and the buffers JS has let go but V8 has not yet collected. V8 collects after
 * tens of MiB of new buffers, so a busy mount carries that much garbage: with a 256M limit and everything read at
 * once, a 96 MiB reserve peaked at 291-330 MiB RSS and this one at 253-260 MiB.
 */
export const PROCESS_RESERVE_BYTES = 128 * MiB;
const MIN_BUFFER_BYTES = 32 * MiB;
/** The smallest --memory-limit a mount accepts: the process's own needs plus the least room for blocks. */
export const MIN_MEMORY_LIMIT_BYTES = PROCESS_RESERVE_BYTES + MIN_BUFFER_BYTES;

export interface MemoryPlan {
  /** Verified blocks kept in memory (the LRU's byte bound). */
  cacheBytes: number;
  /** Blocks being fetched at once (the ByteBudget's capacity). */
  inFlightBytes: number;
}

/**
 * Splits a mount's memory limit (the whole process) between cached and in-flight blocks, leaving the
 * process's own needs aside, so RSS stays near the limit whatever is read.
 */
export function planMemory(limitBytes: number): MemoryPlan {
  const buffers = Math.max(MIN_BUFFER_BYTES, limitBytes - PROCESS_RESERVE_BYTES);
  const inFlightBytes = Math.min(64 * MiB, Math.max(4 * MiB, Math.floor(buffers / 4)));
  return { cacheBytes: buffers - inFlightBytes, inFlightBytes };
}
