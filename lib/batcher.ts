/**
 * Work collected to be done together: handed to `run` once nothing was added for `quietMs`, once the
 * oldest item has waited `maxWaitMs`, or at once when the bytes collected reach `maxBytes`. One batch
 * runs at a time; `flush` runs what waits now and resolves when it has run.
 */

export interface BatcherOptions {
  quietMs: number;
  maxWaitMs: number;
  maxBytes: number;
}

export class Batcher<T> {
  private items: T[] = [];
  private bytes = 0;
  private firstAt = 0;
  private timer?: NodeJS.Timeout;
  private running: Promise<void> = Promise.resolve();

  constructor(
    /** Does the work of a batch; what it throws is dropped (it reports its own failures). */
    private readonly run: (items: T[]) => Promise<void>,
    private readonly options: BatcherOptions,
    /** Told at once, when a batch is taken to be run (its items no longer wait). */
    private readonly taken: (items: T[]) => void = () => undefined,
  ) {}

  /** How many items wait. */
  get size(): number {
    return this.items.length;
  }

  add(item: T, bytes = 0): void {
    if (this.items.length === 0) this.firstAt = Date.now();
    this.items.push(item);
    this.grow(bytes);
  }

  /**
   * Counts `bytes` more for what waits (something added to an item already waiting); it also counts
   * as activity, as does a use of what waits (`bytes` 0): the quiet period starts again.
   */
  grow(bytes = 0): void {
    if (this.items.length === 0) return;
    this.bytes += bytes;
    if (this.bytes >= this.options.maxBytes) {
      void this.flush();
      return;
    }
    clearTimeout(this.timer);
    const due = Math.max(0, Math.min(this.options.quietMs, this.firstAt + this.options.maxWaitMs - Date.now()));
    this.timer = setTimeout(() => void this.flush(), due);
    this.timer.unref();
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const items = this.items;
    this.items = [];
    this.bytes = 0;
    if (items.length > 0) {
      this.taken(items);
      this.running = this.running.then(() => this.run(items)).catch(() => undefined);
    }
    return this.running;
  }
}
