/** One piece of work per key at a time: concurrent callers with the same key share its promise. */
export class SingleFlight<T> {
  private readonly running = new Map<string, Promise<T>>();

  run(key: string, work: () => Promise<T>): Promise<T> {
    let promise = this.running.get(key);
    if (!promise) {
      promise = work().finally(() => this.running.delete(key));
      this.running.set(key, promise);
    }
    return promise;
  }

  has(key: string): boolean {
    return this.running.has(key);
  }

  /** The work running for `key`, if any. */
  current(key: string): Promise<T> | undefined {
    return this.running.get(key);
  }
}
