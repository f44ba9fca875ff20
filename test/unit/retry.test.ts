/** Trying again: the waits, the budget and the stop of lib/retry. */
import { Pause } from '../../lib/pause';
import { BackgroundLoop, exponential, linear, repeat, retry } from '../../lib/retry';

describe('retry', () => {
  it('waits that double up to a ceiling, or grow by a step', () => {
    expect([1, 2, 3, 4, 5, 6].map(exponential(500, 10_000))).toEqual([500, 1000, 2000, 4000, 8000, 10_000]);
    expect([1, 2, 3].map(linear(25))).toEqual([25, 50, 75]);
  });

  it('tries until the step succeeds, waiting between attempts', async () => {
    const waits: number[] = [];
    let calls = 0;
    const result = await retry(
      async () => {
        if (++calls < 3) throw new Error('not yet');
        return 'done';
      },
      { delay: exponential(1, 10), onRetry: (_err, _attempt, wait) => waits.push(wait) },
    );
    expect(result).toBe('done');
    expect(calls).toBe(3);
    expect(waits).toEqual([1, 2]);
  });

  it('throws the last failure when the attempts are spent, or at once when it is not worth another', async () => {
    let calls = 0;
    await expect(retry(async () => Promise.reject(new Error('down ' + ++calls)), { attempts: 3, delay: () => 0 })).rejects.toThrow('down 3');
    calls = 0;
    await expect(
      retry(async () => Promise.reject(new Error(++calls === 1 ? 'busy' : 'refused')), { delay: () => 0, retryable: (err) => (err as Error).message === 'busy' }),
    ).rejects.toThrow('refused');
    expect(calls).toBe(2);
  });

  it('a stop cuts the wait short and ends the retries', async () => {
    const pause = new Pause();
    let stopped = false;
    const started = Date.now();
    const running = retry(async () => Promise.reject(new Error('down')), { delay: () => 60_000, pause, stopped: () => stopped });
    setTimeout(() => {
      stopped = true;
      pause.wake();
    }, 20);
    await expect(running).rejects.toThrow('down');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('repeat', () => {
  it('goes on after failures with growing waits, and starts the waits again once a round works', async () => {
    const waits: number[] = [];
    const outcomes = ['fail', 'fail', 'ok', 'fail', 'stop'];
    let stopped = false;
    await repeat(
      async () => {
        const next = outcomes.shift();
        if (next === 'stop') stopped = true;
        if (next === 'fail') throw new Error('down');
      },
      { delay: exponential(1, 100), stopped: () => stopped, onRetry: (_err, _n, wait) => waits.push(wait) },
    );
    expect(waits).toEqual([1, 2, 1]);
  });

  it('a long round that reports itself healthy starts the waits again from the first', async () => {
    const waits: number[] = [];
    let round = 0;
    let stopped = false;
    await repeat(
      async (healthy) => {
        round++;
        if (round === 3) healthy();
        if (round === 5) stopped = true;
        throw new Error('broke off');
      },
      { delay: exponential(1, 100), stopped: () => stopped, onRetry: (_err, _n, wait) => waits.push(wait) },
    );
    expect(waits).toEqual([1, 2, 1, 2]);
  });
});

describe('BackgroundLoop', () => {
  it('runs its round in the background; wake cuts a wait short and stop ends it promptly', async () => {
    let rounds = 0;
    const loop = new BackgroundLoop(
      async () => {
        while (!loop.stopped) {
          rounds++;
          await loop.pause.for(60_000);
        }
      },
      { delay: () => 0 },
    );
    const started = Date.now();
    loop.start();
    await new Promise((resolve) => setTimeout(resolve, 20));
    loop.wake();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await loop.stop();
    expect(rounds).toBe(2);
    expect(loop.stopped).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
