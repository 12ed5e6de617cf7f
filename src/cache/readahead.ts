/**
 * Sequential-read detection for one open file (or one pack): a read that starts where the previous
 * one ended (or, once reading is sequential, up to `slackBytes` past it) grows the readahead window
 * (doubling up to a maximum); any other read resets it. Pure state, no I/O.
 */
export class ReadaheadWindow {
  private expectedOffset = 0;
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
    this.expectedOffset = offset + length;
    this.blocks = sequential ? Math.min(this.maxBlocks, this.blocks === 0 ? this.initialBlocks : this.blocks * 2) : 0;
    return this.blocks;
  }
}
