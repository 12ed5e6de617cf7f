/** Pure arithmetic for mapping file reads onto fixed-size pack blocks. */

export interface Span {
  start: number;
  /** Exclusive. */
  end: number;
}

/** How many bytes a read of `length` at `offset` returns from a file of `size` (0 at or past the end). */
export function readableLength(size: number, offset: number, length: number): number {
  if (offset >= size || length <= 0) return 0;
  return Math.min(length, size - offset);
}

/** Inclusive indexes of the blocks holding pack bytes [start, end); undefined for an empty span. */
export function blocksCovering(span: Span, blockSize: number): { first: number; last: number } | undefined {
  if (span.end <= span.start) return undefined;
  return { first: Math.floor(span.start / blockSize), last: Math.floor((span.end - 1) / blockSize) };
}

/** The pack bytes block `index` holds; the last block is short. */
export function blockSpan(index: number, blockSize: number, packSize: number): Span {
  const start = index * blockSize;
  return { start, end: Math.min(start + blockSize, packSize) };
}


/** The part of a block that overlaps a pack span, as offsets inside the block. */
export function sliceOfBlock(index: number, blockSize: number, span: Span): Span {
  const blockStart = index * blockSize;
  return {
    start: Math.max(span.start, blockStart) - blockStart,
    end: Math.min(span.end, blockStart + blockSize) - blockStart,
  };
}

/**
 * Which blocks a readahead window should fetch now, as runs of consecutive blocks (one ranged GET
 * each, at most `maxRunBlocks` long). It waits until half the window is missing, so a reader that
 * slides forward block by block causes a few large GETs instead of one per block; the block right
 * after the read (`first`) is needed soon and is never kept waiting.
 */
export function readaheadRuns(missing: readonly number[], first: number, windowBlocks: number, maxRunBlocks: number): number[][] {
  if (missing.length === 0) return [];
  if (missing[0] !== first && missing.length < Math.ceil(windowBlocks / 2)) return [];
  return consecutiveRuns(missing, maxRunBlocks);
}

/** Sorted indexes split where they stop being consecutive, or a run reaches `maxRun`: [1,2,3,7,8] -> [[1,2,3],[7,8]]. */
export function consecutiveRuns(sorted: readonly number[], maxRun = Number.POSITIVE_INFINITY): number[][] {
  const runs: number[][] = [];
  for (const index of sorted) {
    const run = runs.at(-1);
    if (run && run.at(-1) === index - 1 && run.length < maxRun) run.push(index);
    else runs.push([index]);
  }
  return runs;
}

/**
 * Sorted items (blocks, chunks, chunk lists) grouped for ranged GETs by the bytes they occupy (`spanOf`, increasing
 * with the item): an item joins the run before it when the bytes between them are at most `maxGap` and the run
 * then spans at most `maxBytes`. The gap's bytes are fetched and dropped: cheaper than a request of their own.
 */
export function coalesce(sorted: readonly number[], spanOf: (item: number) => Span, maxGap: number, maxBytes: number): number[][] {
  const runs: { items: number[]; start: number; end: number }[] = [];
  for (const item of sorted) {
    const span = spanOf(item);
    const run = runs.at(-1);
    if (run && span.start - run.end <= maxGap && span.end - run.start <= maxBytes) {
      run.items.push(item);
      run.end = span.end;
    } else runs.push({ items: [item], ...span });
  }
  return runs.map((run) => run.items);
}
