import { parseArgs, progressBar, summary, syncProgress } from '../../replication/cli';

const feedStatus = (initialSync: object | null, lag = 500) => ({
  upstream: 'https://up.example',
  pullThrough: 'mirror',
  tarballs: 'lazy',
  privateScopes: ['@acme'],
  feed: {
    feed: 'https://feed.example', mode: 'all', state: 'initial-sync', since: '500-x', head: '1000-y',
    lag: { changes: lag, seconds: 12 }, initialSync, packagesWritten: 480, deleted: 2,
    pending: [{ name: 'slow', attempts: 2, reason: 'the upstream packument of "slow" (1-a) is behind its feed entry (2-b)' }], lastError: null,
  },
  couchdb: null,
  packagesWritten: 480,
  tarballsWritten: 3,
  shadowed: ['left-pad'],
  refused: [{ name: 'left-pad', kind: 'shadowed', reason: 'shadowed: ...' }, { name: '@acme/x', kind: 'refused', reason: 'private scope: ...' }],
  failures: [{ at: '2026-11-21T00:00:00Z', name: 'broken', reason: 'the upstream registry answered 500' }],
});

describe('replication CLI', () => {
  it('draws a progress bar', () => {
    expect(progressBar(0.5, 10)).toBe('[█████░░░░░]  50%');
    expect(progressBar(2, 4)).toBe('[████] 100%');
  });

  it('shows the initial sync\'s progress, and none once it is done', () => {
    const running = syncProgress(feedStatus({ from: 0, to: 1000, done: false, progress: 0.5 }));
    expect(running?.fraction).toBe(0.5);
    expect(running?.text).toContain('500 changes to go');
    expect(syncProgress(feedStatus({ from: 0, to: 1000, done: true, progress: 1 }, 0))).toBeNull();
  });

  it('follows a native replication by document counts', () => {
    const status = { ...feedStatus(null), feed: null, couchdb: { source: 'http://up/db', state: 'running', upstream: { docCount: 200 }, local: { docCount: 50 }, changesPending: null, docWriteFailures: 1, error: null } };
    expect(syncProgress(status)?.fraction).toBe(0.25);
    expect(summary(status)).toContain('50 here, 200 upstream');
  });

  it('follows a native replication by the changes CouchDB says are pending, and ends when none are, refused documents or not', () => {
    const couchdb = { source: 'http://up/db', state: 'running', upstream: { docCount: 200 }, local: { docCount: 150 }, changesPending: 50, docWriteFailures: 3, conflicts: 2, checkpointedSourceSeq: '120-g1AAA', lastUpdated: '2026-12-01T00:00:00Z', error: null };
    const running = { ...feedStatus(null), feed: null, couchdb };
    expect(syncProgress(running)?.fraction).toBe(0.75);
    expect(syncProgress(running)?.text).toContain('50 changes pending');
    // Caught up with 3 documents refused (a private scope): the CLI stops waiting.
    expect(syncProgress({ ...running, couchdb: { ...couchdb, local: { docCount: 197 }, changesPending: 0 } })).toBeNull();
    const text = summary(running);
    expect(text).toContain('checkpoint  120-g1AAA');
    expect(text).toContain('conflicts   2 mirrored documents');
  });

  it('summarises position, lag, pending retries, shadowed and refused names, failures', () => {
    const text = summary(feedStatus({ from: 0, to: 1000, done: false, progress: 0.5 }));
    for (const part of ['mode all', 'lag         500 changes, 12 s', 'slow (attempt 2)', 'shadowed      left-pad', 'refused       @acme/x: private scope', 'broken: the upstream registry answered 500']) {
      expect(text).toContain(part);
    }
  });

  it('summarises the cooldown and the blocks', () => {
    const text = summary({
      ...feedStatus({ from: 0, to: 1000, done: true, progress: 1 }),
      supplyChain: { minAgeSeconds: 259200, heldBack: [{ name: 'a', version: '2.0.0', availableAt: '2026-12-03T00:00:00.000Z' }, { name: 'b', version: '1.0.0', availableAt: '2026-12-02T00:00:00.000Z' }], blocked: [{ package: 'evil', version: '1.0.0', reason: 'x' }, { package: 'typo', reason: 'y' }] },
    });
    expect(text).toContain('cooldown      72 h: 2 upstream versions held back, next available 2026-12-02T00:00:00.000Z');
    expect(text).toContain('blocked       evil@1.0.0, typo');
  });

  it('takes --registry, --token and --watch, and REGISTRY_TOKEN from the environment', () => {
    expect(parseArgs(['--registry', 'http://r:1/', '--watch'], { REGISTRY_TOKEN: 't' })).toEqual({ registry: 'http://r:1', token: 't', watch: true });
    expect(() => parseArgs(['--nope'], {})).toThrow('Unknown argument');
  });
});
