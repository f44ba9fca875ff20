import { abbreviatedPackument, applyPublish, applyUpdate, fullPackument, tombstone, withoutTarball } from '../../core/packument';
import { asHttpError } from '../../gateway/errors';
import { checkDigests } from '../../gateway/digests';
import { createHash } from 'crypto';
import { manifest, packageDoc, tarballOf } from './fixtures';
import { parsePackagePath } from '../../gateway/paths';

const now = '2026-05-05T00:00:00.000Z';
const base = 'http://127.0.0.1:5080';

function body(name: string, version: string, extra: Record<string, unknown> = {}) {
  return {
    _id: name,
    name,
    'dist-tags': { latest: version },
    versions: { [version]: manifest(name, version) },
    _attachments: { [name + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarballOf(name, version).toString('base64'), length: tarballOf(name, version).length } },
    ...extra,
  };
}

function statusOf(fn: () => unknown): number | string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return asHttpError(e)?.status ?? String(e);
  }
}

describe('publish', () => {
  it('creates a document with maintainer, _npmUser, times and the tarball attachment', () => {
    const doc = applyPublish(null, { name: 'pkg', body: body('pkg', '1.0.0'), user: { name: 'alice', email: 'a@x' }, now, baseUrl: base, checkDigests })!;
    expect(doc.maintainers).toEqual([{ name: 'alice', email: 'a@x' }]);
    expect(doc.versions['1.0.0']._npmUser).toEqual({ name: 'alice', email: 'a@x' });
    expect(doc.versions['1.0.0'].dist.tarball).toBe(base + '/pkg/-/pkg-1.0.0.tgz');
    expect(doc.time).toMatchObject({ created: now, modified: now, '1.0.0': now });
    expect(doc['dist-tags']).toEqual({ latest: '1.0.0' });
    expect(doc._attachments!['pkg-1.0.0.tgz'].data).toBe(tarballOf('pkg', '1.0.0').toString('base64'));
    expect(doc.description).toBe('the pkg package');
  });

  it('refuses a tarball that does not match dist.integrity or dist.shasum', () => {
    const wrongIntegrity = body('pkg', '1.0.0');
    wrongIntegrity._attachments['pkg-1.0.0.tgz'].data = Buffer.from('other bytes').toString('base64');
    wrongIntegrity._attachments['pkg-1.0.0.tgz'].length = 11;
    expect(statusOf(() => applyPublish(null, { name: 'pkg', body: wrongIntegrity, user: { name: 'a' }, now, baseUrl: base, checkDigests }))).toBe(400);
    const wrongShasum = body('pkg', '1.0.0');
    wrongShasum.versions['1.0.0'].dist.shasum = '0'.repeat(40);
    expect(statusOf(() => applyPublish(null, { name: 'pkg', body: wrongShasum, user: { name: 'a' }, now, baseUrl: base, checkDigests }))).toBe(400);
  });

  it('refuses bodies without tarball, for another name, or with stray attachments', () => {
    const noTarball = { ...body('pkg', '1.0.0'), _attachments: {} };
    expect(statusOf(() => applyPublish(null, { name: 'pkg', body: noTarball, user: { name: 'a' }, now, baseUrl: base, checkDigests }))).toBe(400);
    expect(statusOf(() => applyPublish(null, { name: 'other', body: body('pkg', '1.0.0'), user: { name: 'a' }, now, baseUrl: base, checkDigests }))).toBe(400);
    const stray = body('pkg', '1.0.0');
    (stray._attachments as Record<string, unknown>)['x.tgz'] = { data: 'AAAA' };
    expect(statusOf(() => applyPublish(null, { name: 'pkg', body: stray, user: { name: 'a' }, now, baseUrl: base, checkDigests }))).toBe(400);
  });

  it('refuses to publish over an existing or unpublished version with 403', () => {
    const existing = packageDoc('pkg', ['1.0.0']);
    const otherBytes = Buffer.from('other bytes for pkg 1.0.0');
    const changed = body('pkg', '1.0.0');
    changed._attachments['pkg-1.0.0.tgz'] = { content_type: 'application/octet-stream', data: otherBytes.toString('base64'), length: otherBytes.length };
    changed.versions['1.0.0'].dist = { ...changed.versions['1.0.0'].dist, integrity: 'sha512-' + createHash('sha512').update(otherBytes).digest('base64'), shasum: createHash('sha1').update(otherBytes).digest('hex') };
    expect(statusOf(() => applyPublish(existing, { name: 'pkg', body: changed, user: { name: 'alice' }, now, baseUrl: base, checkDigests }))).toBe(403);
    const tomb = tombstone(existing, { name: 'alice' }, now);
    expect(statusOf(() => applyPublish(tomb, { name: 'pkg', body: body('pkg', '1.0.0'), user: { name: 'alice' }, now, baseUrl: base, checkDigests }))).toBe(403);
  });

  it('an identical retry of a stored publish changes nothing (the lost answer case), also next to a new version', () => {
    const existing = packageDoc('pkg', ['1.0.0']);
    expect(applyPublish(existing, { name: 'pkg', body: body('pkg', '1.0.0'), user: { name: 'alice' }, now, baseUrl: base, checkDigests })).toBeNull();
    const both = body('pkg', '1.1.0');
    both.versions['1.0.0'] = manifest('pkg', '1.0.0');
    (both._attachments as Record<string, unknown>)['pkg-1.0.0.tgz'] = body('pkg', '1.0.0')._attachments['pkg-1.0.0.tgz'];
    const doc = applyPublish(existing, { name: 'pkg', body: both, user: { name: 'alice' }, now, baseUrl: base, checkDigests });
    expect(Object.keys(doc!.versions)).toEqual(['1.0.0', '1.1.0']);
    expect(doc!.time['1.0.0']).toBe('2026-01-01T00:00:00.000Z');
    expect(doc!._attachments!['pkg-1.0.0.tgz']).toMatchObject({ stub: true });
  });

  it('adds a version next to the existing ones, keeping their tarballs as stubs', () => {
    const existing = packageDoc('pkg', ['1.0.0']);
    const doc = applyPublish(existing, { name: 'pkg', body: body('pkg', '1.1.0', { 'dist-tags': { next: '1.1.0' } }), user: { name: 'alice' }, now, baseUrl: base, checkDigests })!;
    expect(Object.keys(doc.versions)).toEqual(['1.0.0', '1.1.0']);
    expect(doc['dist-tags']).toEqual({ latest: '1.0.0', next: '1.1.0' });
    expect(doc._attachments!['pkg-1.0.0.tgz']).toMatchObject({ stub: true, digest: 'md5-1.0.0' });
  });
});

describe('updates', () => {
  it('deprecates and un-deprecates', () => {
    const existing = packageDoc('pkg', ['1.0.0']);
    const deprecated = applyUpdate(existing, { versions: { '1.0.0': { ...existing.versions['1.0.0'], deprecated: 'old' } } }, { name: 'alice' }, now);
    expect(deprecated.versions['1.0.0'].deprecated).toBe('old');
    const back = applyUpdate(deprecated, { versions: { '1.0.0': { ...deprecated.versions['1.0.0'], deprecated: '' } } }, { name: 'alice' }, now);
    expect(back.versions['1.0.0'].deprecated).toBeUndefined();
  });

  it('removes a version with its tarball and moves latest', () => {
    const existing = packageDoc('pkg', ['1.0.0', '1.1.0']);
    const doc = applyUpdate(existing, { versions: { '1.0.0': existing.versions['1.0.0'] }, 'dist-tags': {} }, { name: 'alice' }, now);
    expect(Object.keys(doc.versions)).toEqual(['1.0.0']);
    expect(doc['dist-tags'].latest).toBe('1.0.0');
    expect(Object.keys(doc._attachments!)).toEqual(['pkg-1.0.0.tgz']);
    expect(doc.time['1.1.0']).toBeDefined();
  });

  it('refuses new versions and empty owner lists', () => {
    const existing = packageDoc('pkg', ['1.0.0']);
    expect(statusOf(() => applyUpdate(existing, { versions: { '2.0.0': manifest('pkg', '2.0.0') } }, { name: 'alice' }, now))).toBe(400);
    expect(statusOf(() => applyUpdate(existing, { maintainers: [] }, { name: 'alice' }, now))).toBe(400);
    expect(statusOf(() => applyUpdate(existing, { description: 'x' }, { name: 'alice' }, now))).toBe(400);
  });

  it('a tarball of a live version cannot be removed on its own', () => {
    const existing = packageDoc('pkg', ['1.0.0']);
    expect(statusOf(() => withoutTarball(existing, 'pkg-1.0.0.tgz'))).toBe(403);
    expect(withoutTarball(existing, 'pkg-9.9.9.tgz')).toBeNull();
  });
});

describe('served shapes', () => {
  const doc = packageDoc('@acme/widget', ['1.0.0']);
  it('full packument has this registry\'s tarball URLs and no attachments', () => {
    const full = fullPackument(doc, base) as any;
    expect(full._attachments).toBeUndefined();
    expect(full.versions['1.0.0'].dist.tarball).toBe(base + '/@acme/widget/-/widget-1.0.0.tgz');
  });
  it('full packument carries the readme once, at the top (the latest version\'s), as npm\'s registry serves it; a version keeps its own in its manifest', () => {
    const three = packageDoc('readmes', ['1.0.0', '1.1.0', '2.0.0']);
    for (const v of Object.keys(three.versions)) (three.versions[v] as any).readme = '# readmes ' + v + ' ' + 'x'.repeat(10_000);
    const full = fullPackument({ ...three, readme: undefined }, base) as any;
    for (const v of Object.keys(full.versions)) expect([v, full.versions[v].readme]).toEqual([v, undefined]);
    expect(full.readme).toContain('# readmes 2.0.0');
    expect(JSON.stringify(full).length).toBeLessThan(15_000);
    expect((fullPackument({ ...three, readme: '# top' }, base) as any).readme).toBe('# top');
    expect((three.versions['1.0.0'] as any).readme).toContain('# readmes 1.0.0');
  });
  it('abbreviated packument keeps what installers need, and time', () => {
    const corgi = abbreviatedPackument({ ...doc, readme: 'long' }, base) as any;
    expect(Object.keys(corgi).sort()).toEqual(['dist-tags', 'modified', 'name', 'time', 'versions']);
    expect(corgi.versions['1.0.0'].description).toBeUndefined();
    expect(corgi.versions['1.0.0'].dist.integrity).toBe(doc.versions['1.0.0'].dist.integrity);
  });
});

describe('paths', () => {
  it.each([
    ['/lodash', 'lodash', []],
    ['/@acme%2fwidget', '@acme/widget', []],
    ['/@acme/widget/1.0.0', '@acme/widget', ['1.0.0']],
    ['/@acme/widget/-/widget-1.0.0.tgz', '@acme/widget', ['-', 'widget-1.0.0.tgz']],
    ['/pkg/-rev/3-abc', 'pkg', ['-rev', '3-abc']],
  ])('%s', (path, name, rest) => {
    expect(parsePackagePath(path)).toEqual({ name, rest });
  });
});
