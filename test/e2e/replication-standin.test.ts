/**
 * The change-feed follower against a stand-in that serves the public feed contract's quirks: gaps
 * and opaque sequence strings, an entry that shows up late behind the head, a packument that lags
 * its feed entry, a deletion, a change that never gets an entry, and a tarball that does not match
 * the upstream's integrity (sent with its length, and in chunks without it).
 */
import { createHash } from 'crypto';
import { mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { FeedStandIn, startFeedStandIn } from '../helpers/feed-standin';
import { mirroredDoc, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

let standIn: FeedStandIn;
let mirror: TestRegistry;
let token: string;

const docAt = mirroredDoc;
const mirrored = (registry: TestRegistry, name: string, rev?: string) =>
  eventually(async () => {
    const res = await docAt(registry, name);
    return res.status === 200 && (!rev || res.body.origin_rev === rev) ? res.body : null;
  }, 20_000, name + (rev ? ' at ' + rev : '') + ' to be mirrored');
const status = async (registry: TestRegistry, auth: string) => (await registry.request('GET', '/-/replication', { token: auth })).body;

beforeAll(async () => {
  standIn = await startFeedStandIn();
  standIn.publish('first', ['1.0.0']);
  mirror = await startTestRegistry({
    UPSTREAM_REGISTRY: standIn.url,
    REPLICATION_FEED: standIn.feedUrl,
    REPLICATION_MODE: 'all',
    REPLICATION_POLL_MS: '200',
    REPLICATION_RECHECK_SECONDS: '1',
  });
  token = await mirror.signup('watcher');
});

afterAll(async () => {
  await mirror?.stop();
  await standIn?.close();
});

describe('following a feed with the public contract\'s quirks', () => {
  it('follows gaps in opaque sequence numbers and reports no lag once caught up', async () => {
    const b = standIn.publish('second', ['1.0.0', '1.1.0']);
    await mirrored(mirror, 'first');
    const doc = await mirrored(mirror, 'second', b.rev);
    expect(Object.keys(doc.versions)).toEqual(['1.0.0', '1.1.0']);
    const state = await eventually(async () => {
      const s = await status(mirror, token);
      return s.feed.lag.changes === 0 ? s : null;
    });
    expect(state.feed.since).toMatch(/^\d+-g1AAAAstandin/);
    expect(state.feed.state).toBe('following');
  });

  it('an entry that shows up late, behind the head, is caught by reading the feed again', async () => {
    const late = standIn.publish('late-entry', ['1.0.0'], { entry: 'late' });
    standIn.publish('after-late-1', ['1.0.0']);
    standIn.publish('after-late-2', ['1.0.0']);
    await mirrored(mirror, 'after-late-2');
    expect((await docAt(mirror, 'late-entry')).status).toBe(404);
    late.release();
    const doc = await mirrored(mirror, 'late-entry', late.rev);
    expect(Object.keys(doc.versions)).toEqual(['1.0.0']);
  });

  it('a packument behind its feed entry is fetched again until it catches up, and waits in pending meanwhile', async () => {
    standIn.publish('lagging', ['1.0.0']);
    await mirrored(mirror, 'lagging');
    const before = standIn.packumentRequests.get('lagging') || 0;
    const update = standIn.publish('lagging', ['1.0.0', '2.0.0'], { lagRequests: 2 });
    const waiting = await eventually(async () => {
      const s = await status(mirror, token);
      return s.feed.pending.find((p: { name: string }) => p.name === 'lagging') || null;
    });
    expect(waiting.reason).toContain('behind its feed entry');
    const doc = await mirrored(mirror, 'lagging', update.rev);
    expect(Object.keys(doc.versions)).toEqual(['1.0.0', '2.0.0']);
    expect((standIn.packumentRequests.get('lagging') || 0) - before).toBeGreaterThanOrEqual(3);
    expect((await status(mirror, token)).feed.pending.find((p: { name: string }) => p.name === 'lagging')).toBeUndefined();
  });

  it('a deletion in the feed deletes the mirrored copy', async () => {
    standIn.publish('doomed', ['1.0.0']);
    await mirrored(mirror, 'doomed');
    standIn.remove('doomed');
    await eventually(async () => ((await docAt(mirror, 'doomed')).status === 404 ? true : null));
    expect((await mirror.request('GET', '/doomed')).status).toBe(404);
  });

  /**
   * Publishes `good` and `bad` upstream (`streamed`: their tarballs sent in chunks without a length):
   * the good tarball is served with the upstream's integrity and stored; the bad one, corrupted
   * upstream, is refused, not stored, and recorded as a failure.
   */
  async function verifiesTarballs(good: string, bad: string, streamed: boolean): Promise<void> {
    for (const name of [good, bad]) {
      standIn.publish(name, ['1.0.0']);
      if (streamed) standIn.streamTarball(name, '1.0.0');
    }
    const doc = await mirrored(mirror, good);
    await mirrored(mirror, bad);
    const response = await fetch(mirror.url + '/' + good + '/-/' + good + '-1.0.0.tgz');
    expect(response.status).toBe(200);
    const bytes = Buffer.from(await response.arrayBuffer());
    expect('sha512-' + createHash('sha512').update(bytes).digest('base64')).toBe(doc.versions['1.0.0'].dist.integrity);
    await eventually(async () => ((await docAt(mirror, good)).body._attachments?.[good + '-1.0.0.tgz'] ? true : null));

    standIn.corruptTarball(bad, '1.0.0');
    const refused = await mirror.request('GET', '/' + bad + '/-/' + bad + '-1.0.0.tgz');
    expect(refused.status).toBe(424);
    expect(refused.body.error).toContain('does not match its dist.integrity');
    expect((await docAt(mirror, bad)).body._attachments || {}).toEqual({});
    expect((await status(mirror, token)).failures.some((f: { name: string; reason: string }) => f.name === bad && f.reason.includes('integrity'))).toBe(true);
  }

  it('tarballs are verified against the upstream\'s integrity: a good one is served and stored, a bad one refused', async () => {
    await verifiesTarballs('good-tarball', 'bad-tarball', false);
  });

  it('a tarball sent without its length is verified while it streams to a file: a good one served and stored, a bad one refused', async () => {
    await verifiesTarballs('streamed-good', 'streamed-bad', true);
  });
});

describe('mode list, tarballs eager', () => {
  it('fetches the listed packages and a lockfile\'s whole tree at start, tarballs included, and nothing else', async () => {
    standIn.publish('listed-a', ['1.0.0']);
    standIn.publish('lock-root', ['1.0.0']);
    standIn.publish('lock-leaf', ['2.0.0']);
    standIn.publish('unlisted', ['1.0.0']);
    const lockfile = join(mkdtempSync(join(tmpdir(), 'lock-')), 'package-lock.json');
    writeFileSync(lockfile, JSON.stringify({ lockfileVersion: 3, packages: { '': { name: 'app' }, 'node_modules/lock-root': { version: '1.0.0' }, 'node_modules/lock-root/node_modules/lock-leaf': { version: '2.0.0' } } }));
    const listed = await startTestRegistry({
      UPSTREAM_REGISTRY: standIn.url,
      REPLICATION_FEED: standIn.feedUrl,
      REPLICATION_MODE: 'list',
      REPLICATION_PACKAGES: 'listed-a,' + lockfile,
      UPSTREAM_TARBALLS: 'eager',
      REPLICATION_POLL_MS: '200',
    });
    try {
      for (const [name, version] of [['listed-a', '1.0.0'], ['lock-root', '1.0.0'], ['lock-leaf', '2.0.0']]) {
        const doc = await eventually(async () => {
          const res = await docAt(listed, name);
          return res.body._attachments && res.body._attachments[name + '-' + version + '.tgz'] ? res.body : null;
        }, 20_000, name + ' with its tarball');
        expect(doc.origin).toBe(standIn.url);
      }
      expect((await docAt(listed, 'unlisted')).status).toBe(404);
    } finally {
      await listed.stop();
    }
  });
});

describe('the upstream over HTTP', () => {
  let pulling: TestRegistry;
  beforeAll(async () => {
    pulling = await startTestRegistry({ UPSTREAM_REGISTRY: standIn.url, UPSTREAM_MODE: 'mirror', UPSTREAM_TIMEOUT_MS: '1500' });
  });
  afterAll(async () => {
    await pulling?.stop();
  });

  it('packuments sent gzipped and tarballs behind a redirect are read, verified and served', async () => {
    standIn.publish('zipped', ['1.0.0']);
    const before = standIn.gzipped;
    const packument = await pulling.request('GET', '/zipped');
    expect(packument.status).toBe(200);
    expect(standIn.gzipped).toBeGreaterThan(before);
    standIn.redirectTarballs();
    const tarball = await fetch(pulling.url + '/zipped/-/zipped-1.0.0.tgz');
    expect(tarball.status).toBe(200);
    const bytes = Buffer.from(await tarball.arrayBuffer());
    expect('sha512-' + createHash('sha512').update(bytes).digest('base64')).toBe(packument.body.versions['1.0.0'].dist.integrity);
  });

  it('an upstream that does not answer in time fails fast with a 424 that says so', async () => {
    standIn.publish('stalled', ['1.0.0']);
    standIn.stall('stalled');
    const started = Date.now();
    const answer = await pulling.request('GET', '/stalled');
    expect(answer.status).toBe(424);
    expect(answer.body.error).toContain('did not answer in time');
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('mode existing', () => {
  it('mirrors only packages already here (pulled through), and a sweep finds changes the feed never showed', async () => {
    const partial = await startTestRegistry({
      UPSTREAM_REGISTRY: standIn.url,
      REPLICATION_FEED: standIn.feedUrl,
      REPLICATION_MODE: 'existing',
      REPLICATION_POLL_MS: '200',
      REPLICATION_SWEEP_SECONDS: '2',
    });
    try {
      standIn.publish('wanted', ['1.0.0']);
      standIn.publish('not-wanted', ['1.0.0']);
      expect((await partial.request('GET', '/wanted')).status).toBe(200); // pull-through
      const silent = standIn.publish('wanted', ['1.0.0', '1.1.0'], { entry: 'none' });
      const doc = await mirrored(partial, 'wanted', silent.rev);
      expect(Object.keys(doc.versions)).toEqual(['1.0.0', '1.1.0']);
      standIn.publish('not-wanted', ['1.0.0', '2.0.0']);
      standIn.publish('wanted', ['1.0.0', '1.1.0', '1.2.0']);
      await mirrored(partial, 'wanted');
      await eventually(async () => {
        const d = await docAt(partial, 'wanted');
        return d.body.versions && d.body.versions['1.2.0'] ? true : null;
      });
      expect((await docAt(partial, 'not-wanted')).status).toBe(404);
      // Later sweeps ask with the copy's ETag: answered 304, nothing written.
      const copy = await eventually(async () => {
        const d = await docAt(partial, 'wanted');
        return d.body.origin_validators && d.body.origin_validators.etag ? d.body : null;
      });
      const before = standIn.notModified;
      await eventually(async () => (standIn.notModified > before ? true : null), 10_000, 'a sweep answered 304');
      expect((await docAt(partial, 'wanted')).body._rev).toBe(copy._rev);
    } finally {
      await partial.stop();
    }
  });
});
