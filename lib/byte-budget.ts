/**
 * A budget of bytes shared by concurrent work (large request bodies being read and parsed): each
 * piece of work takes its size before it starts and gives it back when done; work that does not fit
 * waits its turn, first come first served. A size larger than the whole budget takes the whole budget.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; start: () => void }[] = [];

  constructor(readonly capacity: number) {}

  /** Waits until `bytes` fit, takes them, and returns the function that gives them back (once). */
  async take(bytes: number): Promise<() => void> {
    const size = Math.min(Math.max(0, bytes), this.capacity);
    if (this.waiting.length === 0 && this.used + size <= this.capacity) this.used += size;
    else await new Promise<void>((start) => this.waiting.push({ bytes: size, start }));
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.used -= size;
      this.startWaiting();
    };
  }

  /** Bytes taken now. */
  get inUse(): number {
    return this.used;
  }

  private startWaiting(): void {
    while (this.waiting.length && this.used + this.waiting[0].bytes <= this.capacity) {
      const next = this.waiting.shift() as { bytes: number; start: () => void };
      this.used += next.bytes;
      next.start();
    }
  }
}
