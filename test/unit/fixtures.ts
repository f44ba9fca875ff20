import { createHash } from 'crypto';
import { PackageDoc, VersionManifest } from '../../core/types';

export function tarballOf(name: string, version: string): Buffer {
  return Buffer.from('tarball of ' + name + '@' + version);
}

export function manifest(name: string, version: string, extra: Record<string, unknown> = {}): VersionManifest {
  const data = tarballOf(name, version);
  return {
    name,
    version,
    description: 'the ' + name + ' package',
    dist: {
      tarball: 'http://registry.test/' + name + '/-/' + name.split('/').pop() + '-' + version + '.tgz',
      shasum: createHash('sha1').update(data).digest('hex'),
      integrity: 'sha512-' + createHash('sha512').update(data).digest('base64'),
    },
    ...extra,
  };
}

/** A stored package document with the given versions, maintained by `owner`. */
export function packageDoc(name: string, versions: string[], owner = 'alice'): PackageDoc {
  const doc: PackageDoc = {
    _id: name,
    _rev: '1-abc',
    name,
    'dist-tags': { latest: versions[versions.length - 1] },
    versions: {},
    time: { created: '2026-01-01T00:00:00.000Z', modified: '2026-01-01T00:00:00.000Z' },
    maintainers: [{ name: owner, email: owner + '@example.com' }],
    _attachments: {},
  };
  for (const v of versions) {
    doc.versions[v] = manifest(name, v);
    doc.time[v] = '2026-01-01T00:00:00.000Z';
    (doc._attachments as Record<string, object>)[name.split('/').pop() + '-' + v + '.tgz'] = {
      content_type: 'application/octet-stream', digest: 'md5-' + v, length: 10, revpos: 1, stub: true,
    };
  }
  return doc;
}

export const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value));

/** A new publish of `version` on top of `old` (or a new package), with an inline tarball, as a client would write it. */
export function publishOver(old: PackageDoc | null, name: string, version: string, user = 'alice'): PackageDoc {
  const doc = old ? clone(old) : { ...packageDoc(name, [], user), _attachments: {}, versions: {}, 'dist-tags': {} };
  delete doc._rev;
  doc.versions[version] = manifest(name, version);
  doc.time[version] = '2026-02-01T00:00:00.000Z';
  doc['dist-tags'].latest = version;
  (doc._attachments as Record<string, object>)[name.split('/').pop() + '-' + version + '.tgz'] = { content_type: 'application/octet-stream', data: 'AAAA' };
  return doc;
}
