import { ALIGN_MIN_BLOCKS } from '../catalog/index.js';

/** Sequential readers one window follows at once, each with its own run and window (see ReadaheadWindow). */
const DEFAULT_STREAMS = 4;

interface Stream {
  /** Where a read continuing this stream starts. */
  expectedOffset: number;
  runStart: number;
  blocks: number;
}

/**
 * Sequential-read detection for one open file (or one pack): a read that starts where an earlier one ended (or,
 * once that stream is sequential, up to `slackBytes` past it) continues that stream: it grows the stream's
 * readahead window (doubling up to a maximum) and extends its run; any other read starts a new stream, in place
 * of the one read longest ago. Several streams, not one: two threads reading one file, or the kernel's requests
 * for one reader arriving a little out of order, would otherwise break each other's runs at every read, and every
 * read would look random (no readahead, and small ones served from chunks). Pure state, no I/O.
 */
export class ReadaheadWindow {
  /** Most recently read first. Before any read, one stream waits at offset 0: a reader from the start is sequential. */
  private readonly streams: Stream[] = [{ expectedOffset: 0, runStart: 0, blocks: 0 }];

  constructor(
    private readonly initialBlocks: number,
    private readonly maxBlocks: number,
    private readonly slackBytes = 0,
    private readonly maxStreams = DEFAULT_STREAMS,
  ) {}

  /** Records a read and returns how many blocks past it to fetch ahead (0 for a random read). */
  onRead(offset: number, length: number): number {
    const at = this.continued(offset);
    let stream: Stream;
    if (at >= 0) {
      stream = this.streams.splice(at, 1)[0]!;
      stream.blocks = Math.min(this.maxBlocks, stream.blocks === 0 ? this.initialBlocks : stream.blocks * 2);
    } else {
      stream = { expectedOffset: 0, runStart: offset, blocks: 0 };
      if (this.streams.length >= this.maxStreams) this.streams.pop();
    }
    stream.expectedOffset = offset + length;
    this.streams.unshift(stream);
    return stream.blocks;
  }

  /** What the last read's run has covered: from where it began (0 for a reader that began at the start) to that read's end. */
  get run(): { start: number; end: number } {
    const stream = this.streams[0]!;
    return { start: stream.runStart, end: stream.expectedOffset };
  }

  /** The stream a read at `offset` continues (one it starts exactly after first), or -1. */
  private continued(offset: number): number {
    const exact = this.streams.findIndex((s) => s.expectedOffset === offset);
    if (exact >= 0) return exact;
    return this.streams.findIndex((s) => s.blocks > 0 && offset > s.expectedOffset && offset - s.expectedOffset <= this.slackBytes);
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
