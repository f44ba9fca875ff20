/**
 * Work collected to be done together: handed to `run` once nothing was added for `quietMs`, once the
 * oldest item has waited `maxWaitMs`, or at once when the bytes collected reach `maxBytes`. One batch
 * runs at a time; `flush` runs what waits now and resolves when it has run.
 *
 * An item that is not `ready` yet (the constructor's predicate) is left waiting by the quiet and the
 * longest-wait triggers while work keeps coming, up to `holdMs` after it was added: it is run with the
 * first batch after it became ready, once nothing was added for `holdQuietMs`, or once held that
 * long. When the bytes reach `maxBytes`, the ready items are run, and the items held longest with
 * them until what is left is under half the limit.
 */

export interface BatcherOptions {
  quietMs: number;
  maxWaitMs: number;
  maxBytes: number;
  /** How long an item that is not ready may be left waiting (default 0: items are run whether ready or not). */
  holdMs?: number;
  /** Items not ready are run too once nothing was added (or grown) for this long (default: `quietMs`). */
  holdQuietMs?: number;
}

interface Held<T> {
  item: T;
  bytes: number;
  at: number;
}

export class Batcher<T> {
  private items: Held<T>[] = [];
  private bytes = 0;
  /** When the first item added (or grown) since the last batch was added: the longest wait counts from it. */
  private firstAt: number | undefined;
  /** When something was last added (or grown). */
  private lastAt = 0;
  private timer?: NodeJS.Timeout;
  private running: Promise<void> = Promise.resolve();

  constructor(
    /** Does the work of a batch; what it throws is dropped (it reports its own failures). */
    private readonly run: (items: T[]) => Promise<void>,
    private readonly options: BatcherOptions,
    /** Told at once, when a batch is taken to be run (its items no longer wait). */
    private readonly taken: (items: T[]) => void = () => undefined,
    /** Whether an item is ready to be run (see `holdMs`). */
    private readonly ready: (item: T) => boolean = () => true,
  ) {}

  /** How many items wait. */
  get size(): number {
    return this.items.length;
  }

  add(item: T, bytes = 0): void {
    this.items.push({ item, bytes: 0, at: Date.now() });
    this.grow(bytes, item);
  }

  /**
   * Counts `bytes` more for what waits (something added to `item`, a waiting item); it also counts as
   * activity, as does a use of what waits (`bytes` 0): the quiet period starts again.
   */
  grow(bytes = 0, item?: T): void {
    if (this.items.length === 0) return;
    const held = item === undefined ? undefined : this.items.find((h) => h.item === item);
    if (held) held.bytes += bytes;
    this.bytes += bytes;
    this.lastAt = Date.now();
    if (this.bytes >= this.options.maxBytes) {
      void this.take(this.overLimit());
      return;
    }
    this.firstAt ??= Date.now();
    this.schedule(Math.min(this.options.quietMs, this.firstAt + this.options.maxWaitMs - Date.now()));
  }

  /** Runs what waits now (only the items `which` picks, when given), ready or not; resolves once it has run. */
  flush(which?: (item: T) => boolean): Promise<void> {
    return this.take(which ? this.items.filter((h) => which(h.item)) : this.items);
  }

  /** The timer's batch: the items ready, and those held as long as they may be (all once it has been quiet long enough). */
  private due(): Held<T>[] {
    const now = Date.now();
    if (now >= this.heldQuietUntil()) return this.items;
    const hold = this.options.holdMs || 0;
    return this.items.filter((h) => h.at + hold <= now || this.ready(h.item));
  }

  /** When the items not ready are run for want of anything more coming. */
  private heldQuietUntil(): number {
    return this.lastAt + (this.options.holdQuietMs ?? this.options.quietMs);
  }

  /** The batch when the bytes reached the limit: the ready items, then the oldest until what is left is under half of it. */
  private overLimit(): Held<T>[] {
    const chosen = new Set(this.due());
    let left = this.bytes - [...chosen].reduce((sum, h) => sum + h.bytes, 0);
    for (const h of this.items) {
      if (left < this.options.maxBytes / 2) break;
      if (chosen.has(h)) continue;
      chosen.add(h);
      left -= h.bytes;
    }
    return this.items.filter((h) => chosen.has(h));
  }

  private schedule(dueMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.take(this.due()), Math.max(0, dueMs));
    this.timer.unref();
  }

  private take(batch: Held<T>[]): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.firstAt = undefined;
    const taken = new Set(batch);
    this.items = this.items.filter((h) => !taken.has(h));
    this.bytes = this.items.reduce((sum, h) => sum + h.bytes, 0);
    // What is left waits to be ready, until nothing more comes, or until it has been held as long as it may.
    if (this.items.length > 0) this.schedule(Math.min(this.heldQuietUntil(), ...this.items.map((h) => h.at + (this.options.holdMs || 0))) - Date.now());
    if (batch.length > 0) {
      const items = batch.map((h) => h.item);
      this.taken(items);
      this.running = this.running.then(() => this.run(items)).catch(() => undefined);
    }
    return this.running;
  }
}
