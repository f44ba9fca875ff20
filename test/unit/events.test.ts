/** The events of a write, as a table: what each kind of change to a package reports to webhooks. */
import { eventsOf } from '../../core/events';
import { applyUpdate, tombstone } from '../../core/packument';
import { PackageDoc } from '../../core/types';
import { packageDoc } from './fixtures';

const now = '2026-12-01T00:00:00.000Z';
const doc = (versions: string[], extra: Partial<PackageDoc> = {}): PackageDoc => ({ ...packageDoc('pkg', versions), ...extra });
const base = doc(['1.0.0', '1.1.0']);
const summary = (before: PackageDoc | null, after: PackageDoc) => eventsOf(before, after).map((e) => [e.event, e.change]);

describe('eventsOf', () => {
  it.each([
    ['a new package', null, doc(['1.0.0']), [['package:publish', { versions: ['1.0.0'], 'dist-tags': { latest: '1.0.0' } }]]],
    ['a new version', doc(['1.0.0']), base, [['package:publish', { versions: ['1.1.0'], 'dist-tags': base['dist-tags'] }]]],
    ['a version unpublished', base, applyUpdate(base, { versions: { '1.0.0': base.versions['1.0.0'] } }, { name: 'alice' }, now), [['package:unpublish', { versions: ['1.1.0'], whole: false }]]],
    ['the whole package unpublished', base, tombstone(base, { name: 'alice' }, now), [['package:unpublish', { versions: ['1.0.0', '1.1.0'], whole: true }]]],
    ['a tag added', base, { ...base, 'dist-tags': { ...base['dist-tags'], beta: '1.1.0' } }, [['package:dist-tag', { tag: 'beta', from: null, to: '1.1.0' }]]],
    ['latest moved back', base, { ...base, 'dist-tags': { latest: '1.0.0' } }, [['package:dist-tag', { tag: 'latest', from: base['dist-tags'].latest, to: '1.0.0' }]]],
    ['a deprecation', base, applyUpdate(base, { versions: { '1.0.0': { deprecated: 'old' }, '1.1.0': {} } }, { name: 'alice' }, now), [['package:deprecate', { version: '1.0.0', deprecated: 'old' }]]],
    ['an owner added', base, { ...base, maintainers: [...base.maintainers, { name: 'bob' }] }, [['package:owner', { added: ['bob'], removed: [] }]]],
    ['a star', base, { ...base, users: { carol: true } }, []],
  ])('%s', (_case, before, after, expected) => {
    expect(summary(before as PackageDoc | null, after as PackageDoc)).toEqual(expected);
  });

  it('a deprecation taken back reports the version with no message', () => {
    const deprecated = { ...base, versions: { ...base.versions, '1.0.0': { ...base.versions['1.0.0'], deprecated: 'old' } } };
    expect(summary(deprecated, base)).toEqual([['package:deprecate', { version: '1.0.0', deprecated: null }]]);
  });
});
