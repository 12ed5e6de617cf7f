/**
 * A counting semaphore over bytes, with three kinds of taker: demand reads wait for room (backpressure, first come
 * first served); background prefetches (startup sets, `rezfs prefetch`) wait too, but only get room no demand read
 * is waiting for; readahead only takes room that is free right now. Memory in flight never exceeds the budget,
 * except for one request larger than the whole budget, let through alone so that it cannot starve.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: Waiter[] = [];
  private readonly waitingBehind: Waiter[] = [];

  constructor(readonly capacity: number) {}

  get inUse(): number {
    return this.used;
  }

  tryAcquire(bytes: number): boolean {
    if (this.waiting.length > 0 || this.waitingBehind.length > 0 || this.used + bytes > this.capacity) return false;
    this.used += bytes;
    return true;
  }

  /** Waits for room (a demand read). */
  acquire(bytes: number): Promise<void> {
    if (this.waiting.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return Promise.resolve();
    }
    return new Promise((grant) => this.waiting.push({ bytes, grant }));
  }

  /** Waits for room that no demand read wants (background work); demand reads that come later go first. */
  acquireBehind(bytes: number): Promise<void> {
    if (this.waiting.length === 0 && this.waitingBehind.length === 0 && this.fits(bytes)) {
      this.used += bytes;
      return Promise.resolve();
    }
    return new Promise((grant) => this.waitingBehind.push({ bytes, grant }));
  }

  release(bytes: number): void {
    this.used -= bytes;
    this.grant(this.waiting);
    if (this.waiting.length === 0) this.grant(this.waitingBehind);
  }

  private fits(bytes: number): boolean {
    return this.used + bytes <= this.capacity || this.used === 0;
  }

  private grant(queue: Waiter[]): void {
    while (queue.length > 0 && this.fits(queue[0]!.bytes)) {
      const next = queue.shift()!;
      this.used += next.bytes;
      next.grant();
    }
  }
}

interface Waiter {
  bytes: number;
  grant: () => void;
}
