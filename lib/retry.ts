/**
 * Trying again: one place for the waits between attempts, used by every loop that talks to CouchDB
 * or to an upstream (set-up steps, writes, the change followers, the feed follower).
 */
import { Pause, sleep } from './pause';

/** The wait before attempt `attempt + 1`, after `attempt` failures (1-based) and the last failure `err`. */
export type Delay = (attempt: number, err?: unknown) => number;

/** Waits that double from `firstMs` up to `maxMs`. */
export const exponential = (firstMs: number, maxMs: number): Delay => (attempt) => Math.min(firstMs * 2 ** (attempt - 1), maxMs);

/** Waits that grow by `stepMs` each time (short races, such as a cluster copy a few milliseconds behind). */
export const linear = (stepMs: number): Delay => (attempt) => stepMs * attempt;

export interface RetryOptions {
  /** Attempts in all, the first included; unbounded when left out. */
  attempts?: number;
  delay: Delay;
  /** Whether a failure is worth another attempt; any failure is when left out. */
  retryable?: (err: unknown, attempt: number) => boolean;
  /** Called before each wait (to log, or to record the state). */
  onRetry?: (err: unknown, attempt: number, waitMs: number) => void;
  /** Ends the retries early: the last failure is thrown. */
  stopped?: () => boolean;
  /** The pause used between attempts, so that a stop can cut it short. */
  pause?: Pause;
}

/** Runs `step` until it succeeds; throws its last failure when it is not retryable or the attempts are spent. */
export async function retry<T>(step: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step(attempt);
    } catch (err) {
      const spent = options.attempts !== undefined && attempt >= options.attempts;
      if (spent || options.stopped?.() || (options.retryable && !options.retryable(err, attempt))) throw err;
      const wait = options.delay(attempt, err);
      options.onRetry?.(err, attempt, wait);
      await (options.pause ? options.pause.for(wait) : sleep(wait));
      if (options.stopped?.()) throw err;
    }
  }
}

/**
 * Runs `round` again and again until `stopped()`: after a failure it waits (growing waits while the
 * failures go on), after a success it goes on at once and the waits start again from the first. A
 * round that runs for long (a follower's inner loop) calls `healthy()` once it works, which also
 * starts the waits again from the first.
 */
export async function repeat(
  round: (healthy: () => void) => Promise<void>,
  options: Omit<RetryOptions, 'attempts' | 'retryable'> & { stopped: () => boolean },
): Promise<void> {
  let failures = 0;
  const healthy = () => {
    failures = 0;
  };
  while (!options.stopped()) {
    try {
      await round(healthy);
      failures = 0;
    } catch (err) {
      if (options.stopped()) return;
      failures++;
      const wait = options.delay(failures, err);
      options.onRetry?.(err, failures, wait);
      await (options.pause ? options.pause.for(wait) : sleep(wait));
    }
  }
}

/**
 * A loop in the background until `stop()`: `round` runs again and again (see `repeat`), and waits on
 * the loop's own `pause`, which `wake()` and `stop()` cut short.
 */
export class BackgroundLoop {
  readonly pause = new Pause();
  private ended = false;
  private done?: Promise<void>;

  constructor(
    private readonly round: (healthy: () => void) => Promise<void>,
    private readonly options: Omit<RetryOptions, 'attempts' | 'retryable' | 'stopped' | 'pause'> & {
      /** Called at `stop()` before the loop is waited for (to end a request in flight). */
      onStop?: () => void;
    },
  ) {}

  /** Whether `stop()` was called: long rounds check it between steps. */
  get stopped(): boolean {
    return this.ended;
  }

  start(): void {
    this.done = repeat(this.round, { ...this.options, stopped: () => this.ended, pause: this.pause });
  }

  /** Ends the current wait now (there is work). */
  wake(): void {
    this.pause.wake();
  }

  async stop(): Promise<void> {
    this.ended = true;
    this.options.onStop?.();
    this.pause.wake();
    await this.done;
  }
}
