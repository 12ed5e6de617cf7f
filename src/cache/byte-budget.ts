/**
 * A counting semaphore over bytes: demand reads wait for room (backpressure), readahead only takes
 * room that is free right now, so memory in flight never exceeds the budget.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];

  constructor(readonly capacity: number) {}

  get inUse(): number {
    return this.used;
  }

  tryAcquire(bytes: number): boolean {
    if (this.waiting.length > 0 || this.used + bytes > this.capacity) return false;
    this.used += bytes;
    return true;
  }

  /** Waits for room; a request larger than the whole budget is let through alone, so it cannot starve. */
  acquire(bytes: number): Promise<void> {
    if (this.waiting.length === 0 && (this.used + bytes <= this.capacity || this.used === 0)) {
      this.used += bytes;
      return Promise.resolve();
    }
    return new Promise((grant) => this.waiting.push({ bytes, grant }));
  }

  release(bytes: number): void {
    this.used -= bytes;
    while (this.waiting.length > 0) {
      const next = this.waiting[0]!;
      if (this.used + next.bytes > this.capacity && this.used > 0) break;
      this.waiting.shift();
      this.used += next.bytes;
      next.grant();
    }
  }
}
