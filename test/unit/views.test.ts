import byMaintainer from '../../couchapp/views/byMaintainer';
import modified from '../../couchapp/views/modified';
import starredByUser from '../../couchapp/views/starredByUser';
import versionsByLicense from '../../couchapp/views/versionsByLicense';
import versionsByTime from '../../couchapp/views/versionsByTime';
import { packageDoc } from './fixtures';

function rows(map: (doc: any, emit: (k: unknown, v: unknown) => void) => void, doc: unknown) {
  const out: [unknown, unknown][] = [];
  map(doc, (k, v) => out.push([k, v]));
  return out;
}

describe('views', () => {
  const doc = { ...packageDoc('@acme/fast-json', ['1.0.0']), keywords: ['JSON', 'parser'], description: 'A fast JSON parser', users: { bob: true, carol: false } };

  it('byMaintainer emits each maintainer with the package name', () => {
    expect(rows(byMaintainer, doc)).toEqual([['alice', '@acme/fast-json']]);
    expect(rows(byMaintainer, { ...doc, versions: {} })).toEqual([]);
  });

  it('modified emits the modification time', () => {
    expect(rows(modified, doc)).toEqual([['2026-01-01T00:00:00.000Z', '@acme/fast-json']]);
  });

  it('versionsByTime emits each version with its publish time, and nothing for created or modified', () => {
    const timed = { ...doc, time: { ...doc.time, '1.0.0': '2026-02-02T00:00:00.000Z' } };
    expect(rows(versionsByTime, timed)).toEqual([['2026-02-02T00:00:00.000Z', '1.0.0']]);
  });

  it('versionsByLicense emits each version under the license it declares, "" for none', () => {
    const licensed = packageDoc('lic', ['1.0.0', '2.0.0', '3.0.0']);
    (licensed.versions['1.0.0'] as any).license = 'MIT';
    (licensed.versions['2.0.0'] as any).license = { type: 'ISC' };
    delete (licensed.versions['3.0.0'] as any).license;
    expect(rows(versionsByLicense, licensed)).toEqual([[['MIT', '1.0.0'], null], [['ISC', '2.0.0'], null], [['', '3.0.0'], null]]);
  });

  it('starredByUser emits only real stars', () => {
    expect(rows(starredByUser, doc)).toEqual([['bob', '@acme/fast-json']]);
  });

  it('ignores design documents and other shapes', () => {
    for (const map of [byMaintainer, modified, starredByUser, versionsByTime, versionsByLicense]) {
      expect(rows(map, { _id: '_design/app', views: {} })).toEqual([]);
    }
  });
});
