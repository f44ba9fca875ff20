/**
 * The merge of conflicting revisions (core/merge.ts), as a table: each case is a set of leaf revisions
 * and what the one document made of them keeps. Every case is also merged in every order of its
 * revisions (same document), and its merge merged again (same document).
 */
import { mergeRevisions, MergeResult } from '../../core/merge';
import { stampChanges } from '../../core/packument';
import { onlyOwnStarChanged } from '../../core/rules';
import { PackageDoc, VersionManifest } from '../../core/types';

const T = (minute: number) => new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString();

function manifest(version: string, integrity = 'sha512-' + version, extra: Partial<VersionManifest> = {}): VersionManifest {
  return { name: 'pkg', version, dist: { tarball: 'x', shasum: 's', integrity }, _npmUser: { name: 'alice' }, ...extra };
}

/** A revision: versions as `[version, minute published, integrity?]`; the rest given as is. */
function rev(revId: string, versions: [string, number, string?][], extra: Partial<PackageDoc> = {}): PackageDoc {
  const doc: PackageDoc = {
    _id: 'pkg',
    _rev: revId,
    name: 'pkg',
    'dist-tags': {},
    versions: {},
    time: { created: T(0), modified: T(0) },
    maintainers: [{ name: 'alice' }],
    _attachments: {},
  };
  let newest = '';
  for (const [version, minute, integrity] of versions) {
    doc.versions[version] = manifest(version, integrity);
    doc.time[version] = T(minute);
    doc._attachments![`pkg-${version}.tgz`] = { content_type: 'application/octet-stream', digest: 'md5-' + (integrity || version), length: 3, revpos: 2, stub: true };
    if (T(minute) > (doc.time.modified as string)) doc.time.modified = T(minute);
    newest = version;
  }
  if (newest) doc['dist-tags'].latest = newest;
  return { ...doc, ...extra, time: { ...doc.time, ...(extra.time || {}) } };
}

function permutations<X>(items: X[]): X[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

/** Merges in every order: all give the same result, and merging the result again changes nothing. */
function merged(revisions: PackageDoc[]): MergeResult {
  const results = permutations(revisions).map((order) => mergeRevisions(order));
  for (const result of results) expect(JSON.stringify(result)).toBe(JSON.stringify(results[0]));
  const again = mergeRevisions([{ ...results[0].doc, _rev: '9-merged' }]);
  expect(JSON.stringify(again.doc)).toBe(JSON.stringify(results[0].doc));
  expect(again.refused).toEqual([]);
  return results[0];
}

describe('merge of conflicting revisions', () => {
  const table: { case: string; revisions: PackageDoc[]; versions: string[]; latest?: string; refused?: string[]; check?: (r: MergeResult) => void }[] = [
    {
      case: 'two versions published on two branches: the union, with both tarballs',
      revisions: [rev('3-a', [['1.0.0', 1], ['1.0.1', 2]]), rev('3-b', [['1.0.0', 1], ['1.0.2', 3]])],
      versions: ['1.0.0', '1.0.1', '1.0.2'],
      latest: '1.0.2',
      check: (r) => {
        expect(Object.keys(r.doc._attachments!).sort()).toEqual(['pkg-1.0.0.tgz', 'pkg-1.0.1.tgz', 'pkg-1.0.2.tgz']);
        expect(r.attachmentSources['pkg-1.0.1.tgz']).toBe('3-a');
        expect(r.attachmentSources['pkg-1.0.2.tgz']).toBe('3-b');
        expect(r.doc.time).toMatchObject({ '1.0.1': T(2), '1.0.2': T(3), modified: T(3), created: T(0) });
      },
    },
    {
      case: 'a version published with provenance on one branch: its bundle comes with its tarball, from the same revision',
      revisions: [
        rev('3-a', [['1.0.0', 1], ['1.0.1', 2]], {
          _attachments: {
            'pkg-1.0.0.tgz': { content_type: 'application/octet-stream', digest: 'md5-1.0.0', length: 3, revpos: 2, stub: true },
            'pkg-1.0.1.tgz': { content_type: 'application/octet-stream', digest: 'md5-1.0.1', length: 3, revpos: 2, stub: true },
            'pkg-1.0.1.sigstore': { content_type: 'application/vnd.dev.sigstore.bundle.v0.3+json', digest: 'md5-b', length: 2, revpos: 2, stub: true },
          },
        }),
        rev('3-b', [['1.0.0', 1], ['1.0.2', 3]]),
      ],
      versions: ['1.0.0', '1.0.1', '1.0.2'],
      latest: '1.0.2',
      check: (r) => {
        expect(Object.keys(r.doc._attachments!).sort()).toEqual(['pkg-1.0.0.tgz', 'pkg-1.0.1.sigstore', 'pkg-1.0.1.tgz', 'pkg-1.0.2.tgz']);
        expect(r.attachmentSources['pkg-1.0.1.sigstore']).toBe('3-a');
      },
    },
    {
      case: 'the same version with two integrities: the earlier publish wins, the other is refused',
      revisions: [rev('2-a', [['1.0.0', 5, 'sha512-late']]), rev('2-b', [['1.0.0', 4, 'sha512-zearly']])],
      versions: ['1.0.0'],
      refused: ['1.0.0 sha512-late kept sha512-zearly from 2-a'],
      check: (r) => {
        expect(r.doc.versions['1.0.0'].dist.integrity).toBe('sha512-zearly');
        expect(r.attachmentSources['pkg-1.0.0.tgz']).toBe('2-b');
        expect(r.doc.time['1.0.0']).toBe(T(4));
      },
    },
    {
      case: 'the same version and time with two integrities: the lexically smaller integrity wins',
      revisions: [rev('2-a', [['1.0.0', 4, 'sha512-B']]), rev('2-b', [['1.0.0', 4, 'sha512-A']]), rev('2-c', [['1.0.0', 4, 'sha512-A']])],
      versions: ['1.0.0'],
      refused: ['1.0.0 sha512-B kept sha512-A from 2-a'],
    },
    {
      case: 'a version unpublished on one branch (its time kept) stays unpublished',
      revisions: [
        rev('4-a', [['1.0.0', 1]], { time: { '1.0.1': T(2), modified: T(6) } }),
        rev('3-b', [['1.0.0', 1], ['1.0.1', 2], ['1.0.2', 3]]),
      ],
      versions: ['1.0.0', '1.0.2'],
      // The unpublish (modified at 6) moved `latest` after the publish of 1.0.2 (at 3): its `latest` stands.
      latest: '1.0.0',
      check: (r) => {
        expect(r.doc._attachments!['pkg-1.0.1.tgz']).toBeUndefined();
        expect(r.doc.time['1.0.1']).toBe(T(2));
      },
    },
    {
      case: 'a whole package unpublished on one branch, a new version on the other: the new version only',
      revisions: [
        rev('3-a', [], { time: { '1.0.0': T(1), unpublished: { time: T(5), name: 'alice', versions: ['1.0.0'] } } }),
        rev('3-b', [['1.0.0', 1], ['2.0.0', 4]]),
      ],
      versions: ['2.0.0'],
      latest: '2.0.0',
      check: (r) => expect(r.doc.time.unpublished).toBeUndefined(),
    },
    {
      case: 'a whole package unpublished on both branches: a tombstone',
      revisions: [
        rev('3-a', [], { time: { '1.0.0': T(1), unpublished: { time: T(5), name: 'alice', versions: ['1.0.0'] } } }),
        rev('3-b', [], { time: { '1.0.0': T(1), '1.0.1': T(2), unpublished: { time: T(6), name: 'bob', versions: ['1.0.0', '1.0.1'] } } }),
      ],
      versions: [],
      check: (r) => {
        expect(r.doc.time.unpublished).toEqual({ time: T(6), name: 'bob', versions: ['1.0.0', '1.0.1'] });
        expect(r.doc['dist-tags']).toEqual({});
      },
    },
    {
      case: 'dist-tags: the latest change of each tag wins, whatever the revision',
      revisions: [
        rev('5-a', [['1.0.0', 1], ['1.0.1', 2]], { 'dist-tags': { latest: '1.0.0', beta: '1.0.1' }, changed_at: { 'dist-tags': { latest: T(9), beta: T(3) } } }),
        rev('5-b', [['1.0.0', 1], ['1.0.1', 2]], { 'dist-tags': { latest: '1.0.1', beta: '1.0.0' }, changed_at: { 'dist-tags': { latest: T(4), beta: T(8) } }, time: { modified: T(20) } }),
      ],
      versions: ['1.0.0', '1.0.1'],
      check: (r) => {
        expect(r.doc['dist-tags']).toEqual({ beta: '1.0.0', latest: '1.0.0' });
        expect(r.doc.changed_at!['dist-tags']).toEqual({ beta: T(8), latest: T(9) });
      },
    },
    {
      case: 'a dist-tag removed later than it was set elsewhere stays removed',
      revisions: [
        rev('5-a', [['1.0.0', 1]], { 'dist-tags': { latest: '1.0.0' }, changed_at: { 'dist-tags': { next: T(9) } } }),
        rev('5-b', [['1.0.0', 1]], { 'dist-tags': { latest: '1.0.0', next: '1.0.0' }, changed_at: { 'dist-tags': { next: T(5) } } }),
      ],
      versions: ['1.0.0'],
      check: (r) => expect(r.doc['dist-tags']).toEqual({ latest: '1.0.0' }),
    },
    {
      case: 'deprecations: per version, the latest change',
      revisions: [
        rev('5-a', [['1.0.0', 1], ['1.0.1', 2]], { changed_at: { deprecated: { '1.0.0': T(7) } } }),
        rev('5-b', [['1.0.0', 1], ['1.0.1', 2]], { changed_at: { deprecated: { '1.0.0': T(5), '1.0.1': T(6) } } }),
      ].map((doc, i) => {
        // 5-a undeprecated 1.0.0 at 7 (after 5-b deprecated it at 5); 5-b deprecated 1.0.1 at 6.
        if (i === 1) doc.versions = { '1.0.0': { ...doc.versions['1.0.0'], deprecated: 'old' }, '1.0.1': { ...doc.versions['1.0.1'], deprecated: 'no' } };
        return doc;
      }),
      versions: ['1.0.0', '1.0.1'],
      check: (r) => {
        expect(r.doc.versions['1.0.0'].deprecated).toBeUndefined();
        expect(r.doc.versions['1.0.1'].deprecated).toBe('no');
      },
    },
    {
      case: 'maintainers: the latest change, even from the revision modified earlier',
      revisions: [
        rev('5-a', [['1.0.0', 1]], { maintainers: [{ name: 'alice' }, { name: 'bob' }], changed_at: { maintainers: T(9) } }),
        rev('5-b', [['1.0.0', 1], ['1.0.1', 12]], { maintainers: [{ name: 'alice' }] }),
      ],
      versions: ['1.0.0', '1.0.1'],
      check: (r) => expect(r.doc.maintainers).toEqual([{ name: 'alice' }, { name: 'bob' }]),
    },
    {
      case: "the package's settings: a trust revoked and mfa set in the revision modified earlier stay so; each setting from the revision that changed it last",
      revisions: [
        rev('5-a', [['1.0.0', 1]], { registry_mfa: 'publish', changed_at: { settings: { registry_mfa: T(8), registry_trust: T(9) } } } as Partial<PackageDoc>),
        rev('5-b', [['1.0.0', 1], ['1.0.1', 12]], { registry_trust: [{ id: 't1', type: 'gitlab' }], changed_at: { settings: { registry_trust: T(2) } } } as unknown as Partial<PackageDoc>),
      ],
      versions: ['1.0.0', '1.0.1'],
      check: (r) => {
        expect((r.doc as Record<string, unknown>).registry_trust).toBeUndefined();
        expect(r.doc.registry_mfa).toBe('publish');
        expect(r.doc.changed_at!.settings).toEqual({ registry_mfa: T(8), registry_trust: T(9) });
      },
    },
    {
      case: 'stars: the union, minus an unstar later than the star',
      revisions: [
        rev('5-a', [['1.0.0', 1]], { users: { bob: true, carol: true }, changed_at: { users: { bob: T(3), carol: T(3) } } }),
        rev('5-b', [['1.0.0', 1]], { users: { dave: true }, changed_at: { users: { bob: T(4), dave: T(2) } } }),
        rev('5-c', [['1.0.0', 1]], { users: { erin: true } }),
      ],
      versions: ['1.0.0'],
      check: (r) => expect(r.doc.users).toEqual({ carol: true, dave: true, erin: true }),
    },
    {
      case: 'one revision: itself',
      revisions: [rev('1-a', [['1.0.0', 1]])],
      versions: ['1.0.0'],
      latest: '1.0.0',
    },
  ];

  it.each(table)('$case', ({ revisions, versions, latest, refused, check }) => {
    const result = merged(revisions);
    expect(Object.keys(result.doc.versions)).toEqual(versions);
    if (latest) expect(result.doc['dist-tags'].latest).toBe(latest);
    expect(result.refused.map((r) => `${r.version} ${r.integrity} kept ${r.kept} from ${r.rev}`)).toEqual(refused || []);
    expect(result.doc._rev).toBeUndefined();
    for (const tag of Object.values(result.doc['dist-tags'])) expect(result.doc.versions[tag]).toBeDefined();
    for (const version of versions) expect(result.doc._attachments![`pkg-${version}.tgz`]).toMatchObject({ stub: true });
    check?.(result);
  });

  it('a merge of merges is the merge of all (three branches, two at a time)', () => {
    const a = rev('3-a', [['1.0.0', 1], ['1.1.0', 2, 'sha512-a']]);
    const b = rev('3-b', [['1.0.0', 1], ['1.1.0', 3, 'sha512-b'], ['1.2.0', 4]]);
    const c = rev('3-c', [['1.0.0', 1], ['1.3.0', 5]]);
    const all = mergeRevisions([a, b, c]).doc;
    const ab = { ...mergeRevisions([a, b]).doc, _rev: '4-ab' };
    const stepwise = mergeRevisions([ab, c]).doc;
    expect(stepwise.versions).toEqual(all.versions);
    expect(stepwise['dist-tags']).toEqual(all['dist-tags']);
    expect(all.versions['1.1.0'].dist.integrity).toBe('sha512-a');
  });
});

describe('times of changes written with each change (stampChanges)', () => {
  const before = rev('2-a', [['1.0.0', 1], ['1.0.1', 2]], { users: { bob: true } });

  it('stamps each tag, deprecation, the maintainers and each star that changed, and nothing else', () => {
    const after: PackageDoc = {
      ...before,
      'dist-tags': { latest: '1.0.0', next: '1.0.1' },
      versions: { ...before.versions, '1.0.0': { ...before.versions['1.0.0'], deprecated: 'use 1.0.1' } },
      maintainers: [{ name: 'alice' }, { name: 'carol' }],
      users: { dave: true },
    };
    expect(stampChanges(before, after, T(30)).changed_at).toEqual({
      'dist-tags': { latest: T(30), next: T(30) },
      deprecated: { '1.0.0': T(30) },
      maintainers: T(30),
      users: { bob: T(30), dave: T(30) },
    });
    expect(stampChanges(before, { ...before }, T(30)).changed_at).toBeUndefined();
  });

  it('a new package stamps its tags; a star stays a change only of the starrer for validate_doc_update', () => {
    expect(stampChanges(null, before, T(1)).changed_at).toEqual({ 'dist-tags': { latest: T(1) }, users: { bob: T(1) } });
    const starred = stampChanges(before, { ...before, users: { bob: true, erin: true } }, T(40));
    expect(onlyOwnStarChanged(starred, before, 'erin')).toBe(true);
    expect(onlyOwnStarChanged(starred, before, 'bob')).toBe(false);
  });
});
