/** The feed follower's decisions, as tables: what the follower does for each kind of feed entry and stored state. */
import {
  afterFetch, dueRetries, firstStep, History, MAX_ATTEMPTS, postponed, recheckFrom, remembered, selectWork, syncProgress, Work,
} from '../../replication/feed/planner';
import { PackageDoc } from '../../core/types';
import { packageDoc } from './fixtures';

const UPSTREAM = 'https://registry.example';

function mirrored(name: string, originRev: string): PackageDoc {
  return { ...packageDoc(name, ['1.0.0']), origin: UPSTREAM, origin_rev: originRev, _rev: '1-here' };
}

describe('selectWork: which entries of a feed batch are acted on', () => {
  const entries = [
    { seq: 1, id: 'a', changes: [{ rev: '1-x' }] },
    { seq: 2, id: 'b', changes: [{ rev: '1-y' }] },
    { seq: 3, id: 'a', changes: [{ rev: '2-x' }] },
    { seq: 4, id: '_design/app', changes: [{ rev: '1-d' }] },
    { seq: 5, id: 'local', changes: [{ rev: '3-l' }] },
    { seq: 6, id: 'gone', changes: [{ rev: '4-g' }], deleted: true },
    null,
    { seq: 7 },
  ];
  const known = { local: new Set(['local']), present: new Set(['b', 'gone']) };

  it.each([
    ['all', ['a@2-x', 'b@1-y', 'gone@4-g (deleted)']],
    ['existing', ['b@1-y', 'gone@4-g (deleted)']],
    ['list', ['b@1-y', 'gone@4-g (deleted)']],
  ] as const)('mode %s acts on %j; the last entry of a package wins; design documents and junk are skipped', (mode, expected) => {
    const { work, shadowed } = selectWork(entries, known, mode);
    expect(work.map((w) => w.name + '@' + w.rev + (w.deleted ? ' (deleted)' : ''))).toEqual(expected);
    expect(shadowed).toEqual(['local']);
  });
});

describe('firstStep and afterFetch: one package', () => {
  const item = (extra: Partial<Work> = {}): Work => ({ name: 'pkg', rev: '3-up', deleted: false, ...extra });
  const packument = (rev: string) => ({ _rev: rev, name: 'pkg', versions: {}, 'dist-tags': {}, time: {} });

  it.each([
    ['a local package of the name', item(), packageDoc('pkg', ['1.0.0']), null, { shadowed: true }],
    ['deleted upstream, mirrored here', item({ deleted: true }), null, mirrored('pkg', '2-up'), { remove: true }],
    ['deleted upstream, not here', item({ deleted: true }), null, null, { done: true }],
    ['the mirrored copy is the entry\'s revision (a replayed entry)', item(), null, mirrored('pkg', '3-up'), { done: true }],
    ['an older mirrored copy', item(), null, mirrored('pkg', '2-up'), { fetch: true }],
    ['not here yet', item(), null, null, { fetch: true }],
    ['a sweep (no revision known)', item({ rev: undefined }), null, mirrored('pkg', '3-up'), { fetch: true }],
  ])('before fetching, %s', (_case, work, local, existing, expected) => {
    expect(firstStep(work, local as PackageDoc | null, existing as PackageDoc | null)).toEqual(expected);
  });

  it.each([
    ['the upstream has no packument and nothing is here', item(), null, null, 'retry'],
    ['the upstream has no packument any more', item(), mirrored('pkg', '2-up'), null, 'remove'],
    ['the packument lags its feed entry', item({ rev: '4-up' }), null, packument('3-up'), 'retry'],
    ['the packument is what is mirrored already', item({ rev: undefined }), mirrored('pkg', '3-up'), packument('3-up'), 'done'],
    ['the packument is newer', item(), mirrored('pkg', '2-up'), packument('3-up'), 'write'],
    ['the packument is newer than the entry', item(), null, packument('5-up'), 'write'],
  ])('after fetching, %s: %s', (_case, work, existing, fetched, expected) => {
    const next = afterFetch(work, existing as PackageDoc | null, fetched, UPSTREAM);
    expect(Object.keys(next)).toEqual([expected]);
  });

  it('the document written keeps the stored tarballs, the upstream revision and the origin', () => {
    const existing = { ...mirrored('pkg', '2-up'), _attachments: { 'pkg-1.0.0.tgz': { digest: 'md5-x', length: 3 } } };
    const next = afterFetch(item(), existing, { ...packument('3-up'), versions: { '1.0.0': existing.versions['1.0.0'] } }, UPSTREAM);
    expect('write' in next && next.write).toMatchObject({ origin: UPSTREAM, origin_rev: '3-up', _rev: '1-here', _attachments: { 'pkg-1.0.0.tgz': { stub: true, digest: 'md5-x' } } });
  });
});

describe('postponed and dueRetries: retries with backoff', () => {
  const work: Work = { name: 'pkg', rev: '2-x', deleted: false };

  it.each([
    [undefined, 1, 2_000],
    [{ attempts: 1, next: 0, reason: '' }, 2, 4_000],
    [{ attempts: 5, next: 0, reason: '' }, 6, 64_000],
    [{ attempts: 7, next: 0, reason: '' }, 8, 256_000],
  ])('after %j: attempt %i waits %i ms', (previous, attempts, wait) => {
    expect(postponed(previous, work, 'slow', 1_000)).toEqual({ rev: '2-x', deleted: false, attempts, next: 1_000 + wait, reason: 'slow' });
  });

  it('gives up after ' + MAX_ATTEMPTS + ' attempts', () => {
    expect(postponed({ attempts: MAX_ATTEMPTS, next: 0, reason: '' }, work, 'slow', 0)).toBeNull();
  });

  it('retries only what is due', () => {
    const pending = { a: { attempts: 1, next: 100, reason: '', rev: '1-a' }, b: { attempts: 1, next: 300, reason: '', deleted: true } };
    expect(dueRetries(pending, 200)).toEqual([{ name: 'a', rev: '1-a', deleted: false }]);
    expect(dueRetries(pending, 300).map((w) => w.name)).toEqual(['a', 'b']);
  });
});

describe('remembered and recheckFrom: reading the feed again for late entries', () => {
  const W = 60; // recheckSeconds
  const at = (s: number) => s * 1000;

  it('keeps three windows of positions, and the newest position before them', () => {
    let history: History = [{ seq: 0, at: at(0) }];
    for (const [seq, s] of [[10, 50], [20, 100], [30, 150], [40, 200], [50, 250]]) history = remembered(history, seq, at(s), W);
    // At 250 s the three windows reach back to 70 s: 10 (reached at 50 s) is the newest position before them.
    expect(history.map((h) => h.seq)).toEqual([10, 20, 30, 40, 50]);
    expect(remembered(history, 50, at(260), W)).toEqual(history); // the same position is not recorded twice
  });

  it.each([
    [at(300), 30],
    [at(200), 20],
    [at(100), 20],
  ])('at %i ms reads again from %i (the position of two windows ago)', (now, expected) => {
    const history = [{ seq: 20, at: at(100) }, { seq: 30, at: at(150) }, { seq: 40, at: at(200) }];
    expect(recheckFrom(history, now, W)).toBe(expected);
  });

  it('without history there is nothing to read again', () => {
    expect(recheckFrom([], at(100), W)).toBeNull();
  });
});

describe('syncProgress', () => {
  it.each([
    [{ from: 0, to: 1000, done: false }, 500, null, 0.5],
    [{ from: '100-g1AA', to: '300-g1AA', done: false }, '150-g1AA', null, 0.25],
    [{ from: 0, to: null, done: false }, 50, 100, 0.5],
    [{ from: 0, to: 1000, done: true }, 10, null, 1],
    [{ from: 'opaque', to: 'opaque', done: false }, 'opaque', null, null],
  ])('%j at %j (head %j) is %j', (initial, since, head, expected) => {
    expect(syncProgress(initial, since, head)).toBe(expected);
  });
});
