/** Waiting for what happens in the background (replication, feeds), with a deadline. */

/** Calls `read` until it returns something other than null; fails after `ms` with `what`. */
export async function eventually<T>(read: () => Promise<T | null>, ms = 20_000, what = 'the expected state'): Promise<T> {
  const deadline = Date.now() + ms;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await read();
      if (value !== null) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error('Timed out after ' + ms + ' ms waiting for ' + what + (lastError ? ' (last error: ' + (lastError as Error).message + ')' : ''));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Calls `read` until `ok` takes its value, every `pollMs`; at the deadline, the last value read, for
 * the caller's `expect` to show what it was.
 */
export async function settled<T>(read: () => Promise<T>, ok: (value: T) => boolean, ms: number, pollMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (ok(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
