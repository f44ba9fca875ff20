import validate from '../../couchapp/validate_doc_update';
import { PackageDoc } from '../../core/types';
import { GATEWAY_ROLE, READER_ROLE } from '../../core/provenance';
import { clone, packageDoc, publishOver as publish } from './fixtures';

// Users write through the gateway, which adds its role (proxy authentication).
const alice = { name: 'alice', roles: [GATEWAY_ROLE] };
const bob = { name: 'bob', roles: [GATEWAY_ROLE] };
const admin = { name: 'root', roles: ['_admin'] };
const anonymous = { name: null, roles: [] };

function attempt(newDoc: PackageDoc, oldDoc: PackageDoc | null, user: { name: string | null; roles: string[] }) {
  try {
    validate(newDoc, oldDoc, user);
    return 'ok';
  } catch (e) {
    return e as Record<string, string>;
  }
}


describe('validate_doc_update', () => {
  it('lets the first publisher create a package and become its maintainer', () => {
    expect(attempt(publish(null, 'fresh', '1.0.0'), null, alice)).toBe('ok');
  });

  it('refuses a user writing on the CouchDB port directly, and a downstream reader: writes come through the gateway', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    for (const direct of [{ name: 'alice', roles: [] }, { name: 'alice', roles: ['developers'] }, { name: 'reader', roles: [READER_ROLE] }]) {
      expect(attempt(publish(null, 'fresh', '1.0.0'), null, direct)).toEqual({ forbidden: expect.stringContaining('through the registry') });
      expect(attempt(publish(old, 'pkg', '1.1.0'), old, direct)).toEqual({ forbidden: expect.stringContaining('through the registry') });
    }
  });

  it('refuses anonymous writers with 401', () => {
    expect(attempt(publish(null, 'fresh', '1.0.0'), null, anonymous)).toEqual({ unauthorized: expect.stringContaining('npm login') });
  });

  it('refuses a new package whose maintainers do not include the publisher', () => {
    expect(attempt(publish(null, 'fresh', '1.0.0', 'alice'), null, bob)).toEqual({ forbidden: expect.stringContaining('maintainers') });
  });

  it('lets only maintainers publish new versions, and says who to ask', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    expect(attempt(publish(old, 'pkg', '1.1.0'), old, alice)).toBe('ok');
    const refused = attempt(publish(old, 'pkg', '1.1.0'), old, bob) as { forbidden: string };
    expect(refused.forbidden).toContain('not a maintainer');
    expect(refused.forbidden).toContain('npm owner add bob pkg');
  });

  it('never lets a published manifest change, except its deprecation message', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    const changed = clone(old);
    changed.versions['1.0.0'].dependencies = { evil: '*' };
    expect(attempt(changed, old, alice)).toEqual({ forbidden: expect.stringContaining('already published') });
    const deprecated = clone(old);
    deprecated.versions['1.0.0'].deprecated = 'use 2.x';
    expect(attempt(deprecated, old, alice)).toBe('ok');
  });

  it('never lets a published tarball change', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    const replaced = clone(old);
    (replaced._attachments as Record<string, object>)['pkg-1.0.0.tgz'] = { content_type: 'application/octet-stream', data: 'BBBB' };
    expect(attempt(replaced, old, alice)).toEqual({ forbidden: expect.stringContaining('cannot change') });
    const otherDigest = clone(old);
    (otherDigest._attachments as Record<string, { digest: string }>)['pkg-1.0.0.tgz'].digest = 'md5-other';
    expect(attempt(otherDigest, old, alice)).toEqual({ forbidden: expect.stringContaining('cannot change') });
  });

  it('takes a provenance bundle only with its version\'s first publish, and never lets it change', () => {
    const bundleOf = (doc: PackageDoc, version: string) => {
      (doc._attachments as Record<string, object>)['pkg-' + version + '.sigstore'] = { content_type: 'application/vnd.dev.sigstore.bundle.v0.3+json', data: 'e30=' };
      doc.versions[version].dist.attestations = { url: 'http://registry.example/-/npm/v1/attestations/pkg@' + version, provenance: { predicateType: 'https://slsa.dev/provenance/v1' } };
      return doc;
    };
    const old = packageDoc('pkg', ['1.0.0']);
    expect(attempt(bundleOf(publish(old, 'pkg', '1.1.0'), '1.1.0'), old, alice)).toBe('ok');
    // Added to a published version later: its manifest would change, and the bundle alone is refused too.
    expect(attempt(bundleOf(clone(old), '1.0.0'), old, alice)).toEqual({ forbidden: expect.stringContaining('cannot change') });
    const bundleOnly = clone(old);
    (bundleOnly._attachments as Record<string, object>)['pkg-1.0.0.sigstore'] = { content_type: 'application/json', data: 'e30=' };
    expect(attempt(bundleOnly, old, alice)).toEqual({ forbidden: expect.stringContaining('only be published with the version') });
    // Replaced.
    const withBundle = bundleOf(clone(old), '1.0.0');
    (withBundle._attachments as Record<string, object>)['pkg-1.0.0.sigstore'] = { content_type: 'application/json', digest: 'md5-b', length: 2, stub: true };
    const replaced = clone(withBundle);
    (replaced._attachments as Record<string, object>)['pkg-1.0.0.sigstore'] = { content_type: 'application/json', data: 'W10=' };
    expect(attempt(replaced, withBundle, alice)).toEqual({ forbidden: expect.stringContaining('provenance bundle of pkg@1.0.0 is published and cannot change') });
    // Removed while the version stays.
    const removed = clone(withBundle);
    delete (removed._attachments as Record<string, object>)['pkg-1.0.0.sigstore'];
    expect(attempt(removed, withBundle, alice)).toEqual({ forbidden: expect.stringContaining('kept as long as the version') });
    const unpublished = clone(withBundle);
    unpublished.versions = {};
    unpublished._attachments = {};
    unpublished['dist-tags'] = {};
    unpublished.time.unpublished = { time: '2026-02-02T00:00:00.000Z', name: 'alice', versions: ['1.0.0'] } as never;
    expect(attempt(unpublished, withBundle, alice)).toBe('ok');
    // dist.attestations of a new version without the bundle it points at.
    const pointsAtNothing = publish(old, 'pkg', '1.1.0');
    pointsAtNothing.versions['1.1.0'].dist.attestations = { url: 'https://elsewhere.example/x', provenance: { predicateType: 'https://slsa.dev/provenance/v1' } };
    expect(attempt(pointsAtNothing, old, alice)).toEqual({ forbidden: expect.stringContaining('no provenance bundle') });
    // A bundle of a version that is not there.
    const stray = clone(old);
    (stray._attachments as Record<string, object>)['pkg-2.0.0.sigstore'] = { data: 'e30=' };
    expect(attempt(stray, old, alice)).toEqual({ forbidden: expect.stringContaining('does not belong') });
  });

  it('refuses re-publishing a version that was unpublished', () => {
    const old = packageDoc('pkg', ['1.0.0', '1.1.0']);
    delete old.versions['1.1.0'];
    delete (old._attachments as Record<string, object>)['pkg-1.1.0.tgz'];
    old['dist-tags'].latest = '1.0.0';
    expect(attempt(publish(old, 'pkg', '1.1.0'), old, alice)).toEqual({ forbidden: expect.stringContaining('never reused') });
  });

  it('keeps the publish times of unpublished versions', () => {
    const old = packageDoc('pkg', ['1.0.0', '1.1.0']);
    const next = clone(old);
    delete next.versions['1.1.0'];
    delete (next._attachments as Record<string, object>)['pkg-1.1.0.tgz'];
    next['dist-tags'].latest = '1.0.0';
    expect(attempt(next, old, alice)).toBe('ok');
    delete next.time['1.1.0'];
    expect(attempt(next, old, alice)).toEqual({ forbidden: expect.stringContaining('kept forever') });
  });

  it('requires a new version to come with its own tarball, and integrity and shasum', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    const noTarball = publish(old, 'pkg', '1.1.0');
    delete (noTarball._attachments as Record<string, object>)['pkg-1.1.0.tgz'];
    expect(attempt(noTarball, old, alice)).toEqual({ forbidden: expect.stringContaining('together with its tarball') });
    const noIntegrity = publish(old, 'pkg', '1.1.0');
    noIntegrity.versions['1.1.0'].dist.integrity = 'md5-nope';
    expect(attempt(noIntegrity, old, alice)).toEqual({ forbidden: expect.stringContaining('dist.integrity') });
    const noShasum = publish(old, 'pkg', '1.1.0');
    noShasum.versions['1.1.0'].dist.shasum = '';
    expect(attempt(noShasum, old, alice)).toEqual({ forbidden: expect.stringContaining('dist.shasum') });
  });

  it('refuses attachments that belong to no version', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    const stray = clone(old);
    (stray._attachments as Record<string, object>)['../../etc.tgz'] = { data: 'AAAA' };
    expect(attempt(stray, old, alice)).toEqual({ forbidden: expect.stringContaining('does not belong') });
  });

  it('checks names: valid, lower case for new packages, equal to the _id', () => {
    expect(attempt(publish(null, 'Upper', '1.0.0'), null, alice)).toEqual({ forbidden: expect.stringContaining('lower case') });
    expect(attempt(publish(null, '../x', '1.0.0'), null, alice)).toEqual({ forbidden: expect.stringContaining('Invalid package name') });
    const mismatched = publish(null, 'good', '1.0.0');
    mismatched._id = 'other';
    expect(attempt(mismatched, null, alice)).toEqual({ forbidden: expect.stringContaining('_id') });
    expect(attempt(publish(null, '@acme/widget', '1.0.0'), null, alice)).toBe('ok');
  });

  it('requires dist-tags to point at existing versions', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    const next = clone(old);
    next['dist-tags'].beta = '9.9.9';
    expect(attempt(next, old, alice)).toEqual({ forbidden: expect.stringContaining('not a published version') });
  });

  it('lets anyone star or unstar for themselves only', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    const starred = clone(old);
    starred.users = { bob: true };
    expect(attempt(starred, old, bob)).toBe('ok');
    const forOthers = clone(old);
    forOthers.users = { carol: true };
    expect(attempt(forOthers, old, bob)).toEqual({ forbidden: expect.stringContaining('not a maintainer') });
    expect(attempt(forOthers, old, alice)).toEqual({ forbidden: expect.stringContaining('for yourself') });
  });

  it('refuses deletion to users but lets admins repair anything', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    expect(attempt({ ...clone(old), _deleted: true }, old, alice)).toEqual({ forbidden: expect.stringContaining('never deleted') });
    expect(attempt({ ...clone(old), _deleted: true }, old, admin)).toBe('ok');
    const broken = clone(old);
    broken.versions['1.0.0'].dependencies = { fixed: '1' };
    expect(attempt(broken, old, admin)).toBe('ok');
  });

  it('lets maintainers leave a tombstone (no versions) and publish new versions after it', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    const tomb = clone(old);
    tomb.versions = {};
    tomb['dist-tags'] = {};
    tomb._attachments = {};
    tomb.time.unpublished = { time: '2026-03-01T00:00:00.000Z', name: 'alice', versions: ['1.0.0'] };
    expect(attempt(tomb, old, alice)).toBe('ok');
    expect(attempt(publish(tomb, 'pkg', '1.0.0'), tomb, alice)).toEqual({ forbidden: expect.stringContaining('never reused') });
    expect(attempt(publish(tomb, 'pkg', '2.0.0'), tomb, alice)).toBe('ok');
    expect(attempt(publish(tomb, 'pkg', '2.0.0', 'bob'), tomb, bob)).toEqual({ forbidden: expect.stringContaining('not a maintainer') });
  });
});
