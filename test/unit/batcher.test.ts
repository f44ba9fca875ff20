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

  describe('items that are not ready yet (holdMs)', () => {
    type Item = { name: string; ready: boolean };
    function holding(options = { quietMs: 100, maxWaitMs: 1000, maxBytes: 1000, holdMs: 5000, holdQuietMs: 2000 }) {
      const runs: string[][] = [];
      const b = new Batcher<Item>(
        async (items) => void runs.push(items.map((i) => i.name)),
        options,
        undefined,
        (item) => item.ready,
      );
      return { b, runs };
    }

    it('the quiet time runs the ready items and leaves the others waiting, until they become ready', async () => {
      const { b, runs } = holding();
      const a = { name: 'a', ready: false };
      const c = { name: 'c', ready: true };
      b.add(a);
      b.add(c);
      await jest.advanceTimersByTimeAsync(150);
      expect(runs).toEqual([['c']]);
      expect(b.size).toBe(1);
      // A tarball comes for it: it is ready, and runs after the next quiet time.
      a.ready = true;
      b.grow(10, a);
      await jest.advanceTimersByTimeAsync(50);
      expect(runs).toEqual([['c']]);
      await jest.advanceTimersByTimeAsync(60);
      expect(runs).toEqual([['c'], ['a']]);
      expect(b.size).toBe(0);
    });

    it('an item that never becomes ready runs once nothing more came for holdQuietMs', async () => {
      const { b, runs } = holding();
      b.add({ name: 'never', ready: false });
      await jest.advanceTimersByTimeAsync(1900);
      expect(runs).toEqual([]);
      await jest.advanceTimersByTimeAsync(200);
      expect(runs).toEqual([['never']]);
    });

    it('while work keeps coming, an item that is not ready waits holdMs at most', async () => {
      const { b, runs } = holding();
      b.add({ name: 'held', ready: false });
      for (let t = 0; t < 6000; t += 500) {
        b.add({ name: 'at ' + t, ready: true });
        await jest.advanceTimersByTimeAsync(500);
      }
      const ran = runs.flat();
      expect(ran).toContain('held');
      // The ready ones ran after each quiet time; it ran at its 5 s, not before.
      const batch = runs.findIndex((r) => r.includes('held'));
      expect(runs.slice(0, batch).flat()).toEqual(Array.from({ length: 10 }, (_, i) => 'at ' + i * 500));
    });

    it('at the byte limit, the ready items run with the oldest held ones until what is left is under half of it', async () => {
      const { b, runs } = holding();
      b.add({ name: 'old', ready: false }, 300);
      await jest.advanceTimersByTimeAsync(10);
      b.add({ name: 'middle', ready: false }, 300);
      await jest.advanceTimersByTimeAsync(10);
      b.add({ name: 'young', ready: false }, 300);
      b.add({ name: 'done', ready: true }, 100);
      await jest.advanceTimersByTimeAsync(0);
      // 1000 bytes: 'done' (ready) and 'old' go; 600 left is not under 500, so 'middle' too.
      expect(runs).toEqual([['old', 'middle', 'done']]);
      expect(b.size).toBe(1);
    });

    it('flush with a choice runs only the chosen item, ready or not; flush without one runs everything', async () => {
      const { b, runs } = holding();
      const one = { name: 'one', ready: false };
      b.add(one);
      b.add({ name: 'two', ready: false });
      await b.flush((item) => item === one);
      expect(runs).toEqual([['one']]);
      await b.flush();
      expect(runs).toEqual([['one'], ['two']]);
    });
  });
});
