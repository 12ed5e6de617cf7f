import { ALIGN_MIN_BLOCKS } from '../catalog/index.js';

/**
 * Sequential-read detection for one open file (or one pack): a read that starts where the previous
 * one ended (or, once reading is sequential, up to `slackBytes` past it) grows the readahead window
 * (doubling up to a maximum) and extends the current run; any other read resets the window and
 * starts a new run. Pure state, no I/O.
 */
export class ReadaheadWindow {
  private expectedOffset = 0;
  private runStart = 0;
  private blocks = 0;

  constructor(
    private readonly initialBlocks: number,
    private readonly maxBlocks: number,
    private readonly slackBytes = 0,
  ) {}

  /** Records a read and returns how many blocks past it to fetch ahead (0 for a random read). */
  onRead(offset: number, length: number): number {
    const gap = offset - this.expectedOffset;
    const sequential = gap === 0 || (this.blocks > 0 && gap > 0 && gap <= this.slackBytes);
    if (!sequential) this.runStart = offset;
    this.expectedOffset = offset + length;
    this.blocks = sequential ? Math.min(this.maxBlocks, this.blocks === 0 ? this.initialBlocks : this.blocks * 2) : 0;
    return this.blocks;
  }

  /** What the current run has covered: from where it began (0 for a reader that began at the start) to the last read's end. */
  get run(): { start: number; end: number } {
    return { start: this.runStart, end: this.expectedOffset };
  }
}

/** A run of reads longer than this share of a block is sequential reading: it fetches whole blocks. */
const CHUNK_RUN_MAX_BLOCK_SHARE = 1 / 4;

/**
 * Whether a read fetches only the chunks it needs rather than whole blocks: a read of a big file (see
 * ALIGN_MIN_BLOCKS) whose run (its file window's, the read included) is short and did not begin at the
 * file's start. A short run rather than a single read: the kernel splits one random read of a few pages
 * into back-to-back requests, which look sequential one by one. Readers from the start of a file, and
 * any run past a quarter block, keep whole blocks and readahead; small files keep whole blocks too,
 * since their block brings in the neighbours that are read next.
 */
export function readsChunks(read: { run: { start: number; end: number }; fileSize: number; blockSize: number }): boolean {
  const { run, fileSize, blockSize } = read;
  return fileSize >= ALIGN_MIN_BLOCKS * blockSize && run.start > 0 && run.end - run.start <= blockSize * CHUNK_RUN_MAX_BLOCK_SHARE;
}
