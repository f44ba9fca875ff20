import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { failingJobs, JOB_FAILING, main, parseArgs, progressBar, summary, syncProgress } from '../../replication/cli';

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

  it('takes --registry and --watch, and the token from REGISTRY_TOKEN only', () => {
    expect(parseArgs(['--registry', 'http://r:1/', '--watch'], { REGISTRY_TOKEN: 't' })).toEqual({ registry: 'http://r:1', token: 't', watch: true });
    expect(() => parseArgs(['--nope'], {})).toThrow('Unknown argument');
  });

  it('refuses a token in the command line (seen by every user in ps), naming REGISTRY_TOKEN, without repeating the token', async () => {
    for (const argv of [['--token', 'secret-token-value'], ['--token=secret-token-value']]) {
      expect(() => parseArgs(argv, {})).toThrow(/--token is not taken.*REGISTRY_TOKEN/);
      const written: string[] = [];
      const out = { write: (text: string) => written.push(text), isTTY: false } as unknown as NodeJS.WriteStream;
      expect(await main(argv, {}, out)).toBe(2);
      expect(written.join('')).toContain('Set REGISTRY_TOKEN');
      expect(written.join('')).not.toContain('secret-token-value');
    }
  });

  it('shows the checkpoint\'s own time, apart from when the job last changed state', () => {
    const couchdb = { source: 'http://up/db', state: 'running', upstream: { docCount: 200 }, local: { docCount: 150 }, changesPending: 50, checkpointedSourceSeq: '120-g1AAA', checkpointedAt: '2026-12-06T20:59:58.000Z', lastUpdated: '2026-12-01T00:00:00Z', error: null };
    const text = summary({ ...feedStatus(null), feed: null, couchdb });
    expect(text).toContain('checkpoint  120-g1AAA  (written 2026-12-06T20:59:58.000Z)');
    expect(text).toContain('job state   running since 2026-12-01T00:00:00Z');
    expect(summary({ ...feedStatus(null), feed: null, couchdb: { ...couchdb, checkpointedAt: null } })).toContain('checkpoint  120-g1AAA  (CouchDB does not say when)');
    const feed = summary({ ...feedStatus(null), feed: { ...feedStatus(null).feed, checkpointedAt: '2026-12-06T21:00:00.000Z' } });
    expect(feed).toContain('checkpoint  saved 2026-12-06T21:00:00.000Z');
  });

  it('shows the vulnerability policy: what it holds back, and its advisory endpoint', () => {
    const advisories = {
      severity: 'high', unchecked: 'hold', exceptions: [],
      endpoints: [{ upstream: 'default', endpoint: 'https://up.example/-/npm/v1/security/advisories/bulk', state: 'absent', lastError: 'the upstream registry https://up.example has no bulk advisory endpoint (it answered 404 to /-/npm/v1/security/advisories/bulk)' }],
      heldBack: [{ name: 'lodash', version: '4.17.20', advisory: { id: 1096755, title: 'Prototype Pollution in lodash', url: 'https://github.com/advisories/GHSA-35jh-r3h4-6jhm', severity: 'high' } }],
    };
    const text = summary({ ...feedStatus(null), supplyChain: { minAgeSeconds: 0, heldBack: [], blocked: [], advisories } });
    expect(text).toContain('advisories    high and above: 1 versions held back; endpoint absent (the upstream registry https://up.example has no bulk advisory endpoint');
    expect(text).toContain('unchecked versions held back');
    expect(text).toContain('  held        lodash@4.17.20: 1096755 (high) Prototype Pollution in lodash');
  });

  it('counts packages without the design documents on either side', () => {
    // The upstream has 3 design documents, the mirror 2: document counts would never meet.
    const couchdb = { source: 'http://up/db', state: 'running', upstream: { docCount: 203, packageCount: 200 }, local: { docCount: 152, packageCount: 150 }, changesPending: null, error: null };
    const status = { ...feedStatus(null), feed: null, couchdb };
    expect(summary(status)).toContain('packages    150 here, 200 upstream (design documents not counted)');
    expect(syncProgress(status)?.fraction).toBe(0.75);
    expect(syncProgress(status)?.text).toContain('150 of 200 packages');
    expect(syncProgress({ ...status, couchdb: { ...couchdb, upstream: { docCount: 203, packageCount: 200 }, local: { docCount: 202, packageCount: 200 } } })).toBeNull();
  });

  it('shows each site: its state and id, packages on both sides, conflicts waiting, refused publishes; a failing site is failing', () => {
    const peer = { peer: 'https://couch.site-b.example/registry', id: 'b-id', state: 'running', upstream: { docCount: 12, packageCount: 10 }, local: { docCount: 12, packageCount: 10 }, changesPending: 0, checkpointedAt: null, conflicts: 2, error: null };
    const status = {
      ...feedStatus(null), feed: null,
      sites: { origins: ['a-id', 'b-id'], peers: [peer] },
      refusedPublishes: [{ name: 'shared', version: '1.0.0', integrity: 'sha512-BBBBBBBBBBBBBBBBBBBBBBBB', kept: 'sha512-AAAAAAAAAAAAAAAAAAAAAAA', publisher: 'bob' }],
    };
    const text = summary(status);
    expect(text).toContain('site          https://couch.site-b.example/registry  running  (id b-id)');
    expect(text).toContain('packages    10 here, 10 there, 0 changes pending');
    expect(text).toContain('conflicts   2 packages waiting for the merge');
    expect(text).toContain('refused pub.  shared@1.0.0 sha512-BBBBBBBBBBBBB… by bob');
    expect(failingJobs(status)).toEqual([]);
    expect(failingJobs({ ...status, sites: { origins: [], peers: [{ ...peer, state: 'crashing', error: 'unauthorized' }] } })).toEqual([
      'the replication from the site https://couch.site-b.example/registry is crashing: unauthorized',
    ]);
  });

  describe('its exit code', () => {
    let server: Server;
    let answer: unknown;
    let registry: string;
    beforeAll(async () => {
      server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      registry = 'http://127.0.0.1:' + (server.address() as AddressInfo).port;
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    const runCli = async () => {
      const written: string[] = [];
      const out = { write: (text: string) => written.push(text), isTTY: false } as unknown as NodeJS.WriteStream;
      const code = await main(['--registry', registry], { REGISTRY_TOKEN: 't' }, out);
      return { code, text: written.join('') };
    };
    const couchdb = (state: string, error: string | null) => ({ source: 'http://up/db', state, upstream: { docCount: 3, packageCount: 1 }, local: { docCount: 2, packageCount: 1 }, changesPending: 0, error });

    it('is 0 when replication works, and non-zero when a job is crashing or the feed cannot be followed', async () => {
      answer = { ...feedStatus(null), feed: null, couchdb: couchdb('running', null) };
      expect(await runCli()).toMatchObject({ code: 0 });
      answer = { ...feedStatus(null), feed: null, couchdb: couchdb('crashing', 'unauthorized: the source refused the credentials') };
      const crashing = await runCli();
      expect(crashing.code).toBe(JOB_FAILING);
      expect(crashing.text).toContain('FAILING       the CouchDB replication is crashing: unauthorized');
      answer = { ...feedStatus({ from: 0, to: 1000, done: true, progress: 1 }, 0), feed: { ...feedStatus(null).feed, state: 'upstream-unreachable', lastError: 'connect ECONNREFUSED' } };
      expect((await runCli()).code).toBe(JOB_FAILING);
      expect(failingJobs(answer)).toEqual(['the change feed cannot be followed: connect ECONNREFUSED']);
    });
  });
});
