/** Events per key within a sliding window (lib/recent-events.ts): the bound behind three 429s. */
import { RecentEvents } from '../../lib/recent-events';

it('lets `limit` events of a key through per window, then says how long to wait; other keys are apart', () => {
  const events = new RecentEvents(60_000, 3);
  for (const at of [0, 10_000, 20_000]) {
    expect(events.waitFor('a', at)).toBe(0);
    events.add('a', at);
  }
  expect(events.waitFor('a', 30_000)).toBe(30);
  expect(events.waitFor('b', 30_000)).toBe(0);
  // The first event leaves the window: one more may come.
  expect(events.waitFor('a', 60_000)).toBe(0);
  expect(events.waitFor('a', 59_999)).toBe(1);
});
