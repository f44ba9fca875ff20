import { Batcher } from '../../lib/batcher';

describe('Batcher', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  function batcher(options = { quietMs: 100, maxWaitMs: 1000, maxBytes: 1000 }) {
    const runs: string[][] = [];
    const taken: string[][] = [];
    const b = new Batcher<string>(
      async (items) => void runs.push(items),
      options,
      (items) => void taken.push(items),
    );
    return { b, runs, taken };
  }

  it('runs what was added once nothing more came for the quiet time', async () => {
    const { b, runs } = batcher();
    b.add('a');
    await jest.advanceTimersByTimeAsync(60);
    b.add('b');
    await jest.advanceTimersByTimeAsync(60);
    expect(runs).toEqual([]);
    await jest.advanceTimersByTimeAsync(50);
    expect(runs).toEqual([['a', 'b']]);
  });

  it('runs at the longest wait even while items keep coming', async () => {
    const { b, runs } = batcher();
    for (let t = 0; t < 1100; t += 50) {
      b.add('at ' + t);
      await jest.advanceTimersByTimeAsync(50);
    }
    expect(runs.length).toBe(1);
    expect(runs[0][0]).toBe('at 0');
    expect(runs[0].length).toBe(20);
  });

  it('runs at once when the bytes reach the limit, a tarball added to a waiting item included', async () => {
    const { b, runs, taken } = batcher();
    b.add('a', 600);
    b.grow(300);
    expect(taken).toEqual([]);
    b.grow(100);
    expect(taken).toEqual([['a']]);
    await jest.advanceTimersByTimeAsync(0);
    expect(runs).toEqual([['a']]);
    expect(b.size).toBe(0);
  });

  it('runs one batch at a time, and flush resolves once what waited has run', async () => {
    const order: string[] = [];
    let release: () => void = () => undefined;
    const b = new Batcher<string>(
      async (items) => {
        order.push('start ' + items.join());
        if (items[0] === 'a') await new Promise<void>((r) => (release = r));
        order.push('end ' + items.join());
      },
      { quietMs: 100, maxWaitMs: 1000, maxBytes: 1000 },
    );
    b.add('a');
    void b.flush();
    b.add('b');
    const flushed = b.flush();
    await jest.advanceTimersByTimeAsync(0);
    expect(order).toEqual(['start a']);
    release();
    await flushed;
    expect(order).toEqual(['start a', 'end a', 'start b', 'end b']);
  });

  it('goes on after a batch that failed', async () => {
    const runs: string[][] = [];
    const b = new Batcher<string>(
      async (items) => {
        runs.push(items);
        if (items[0] === 'bad') throw new Error('failed');
      },
      { quietMs: 100, maxWaitMs: 1000, maxBytes: 1000 },
    );
    b.add('bad');
    await b.flush();
    b.add('good');
    await b.flush();
    expect(runs).toEqual([['bad'], ['good']]);
  });
});
