/**
 * Events per key within a sliding window, kept in memory (each process bounds what it sees): for
 * bounds such as "at most `limit` per key per window" (web logins started per address, web
 * one-time-password challenges per account, wrong one-time passwords per account). Past 100,000
 * keys the counts start afresh.
 */
const MAX_KEYS = 100_000;

export class RecentEvents {
  private readonly times = new Map<string, number[]>();

  constructor(
    private readonly windowMs: number,
    private readonly limit: number,
  ) {}

  /** Seconds until `key` may have another event (at least 1) while it has `limit` within the window; 0 when it may now. */
  waitFor(key: string, now = Date.now()): number {
    const recent = this.recent(key, now);
    if (recent.length < this.limit) return 0;
    return Math.max(1, Math.ceil((recent[recent.length - this.limit] + this.windowMs - now) / 1000));
  }

  /** Records an event of `key` at `now`. */
  add(key: string, now = Date.now()): void {
    const recent = this.recent(key, now);
    recent.push(now);
    if (this.times.size >= MAX_KEYS) this.times.clear();
    this.times.set(key, recent);
  }

  private recent(key: string, now: number): number[] {
    return (this.times.get(key) || []).filter((at) => now - at < this.windowMs);
  }
}
