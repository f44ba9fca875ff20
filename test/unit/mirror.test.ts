import validateMirror from '../../couchapp/mirror/validate_doc_update';
import validateApp from '../../couchapp/validate_doc_update';
import { GATEWAY_ROLE, inPrivateScope, isMirrored, localOrigins, parseScopes, REPLICATOR_ROLE, SITE_ROLE } from '../../core/provenance';
import { PackageDoc } from '../../core/types';
import { mergeMirrored, mirroredDoc, revGeneration } from '../../core/mirrored';
import { fullPackument } from '../../core/packument';
import { expectedIntegrity } from '../../replication/mirror';
import ssri from 'ssri';
import { listedNames } from '../../replication/feed/follower';
import { namesFromLockfile, seqNumber } from '../../replication/feed/planner';
import { clone, packageDoc, tarballOf } from './fixtures';
import { createHash } from 'crypto';
import { mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';

const settings = { registry: 'local-id', privateScopes: ['@acme'] };
const inLocal = { ...settings, database: 'local' };
const inMirror = { ...settings, database: 'mirror' };
const replicator = { name: 'registry-replicator', roles: [REPLICATOR_ROLE] };
const alice = { name: 'alice', roles: [GATEWAY_ROLE] };
const admin = { name: 'root', roles: ['_admin'] };

function attempt(database: object, newDoc: PackageDoc, oldDoc: PackageDoc | null, user: { name: string | null; roles: string[] }): string {
  try {
    validateMirror.call(database, newDoc, oldDoc, user);
    return 'ok';
  } catch (e) {
    return (e as { forbidden?: string }).forbidden || JSON.stringify(e);
  }
}

const local = (name: string) => ({ ...packageDoc(name, ['1.0.0'], 'alice'), origin: 'local-id' });
const upstream = (name: string) => ({ ...packageDoc(name, ['1.0.0'], 'someone'), origin: 'https://registry.example' });

describe('_design/mirror validate_doc_update in the local database', () => {
  it('replication writes nothing there, so it never overwrites or deletes a local package (shadowed)', () => {
    expect(attempt(inLocal, upstream('left-pad'), local('left-pad'), replicator)).toContain('shadowed');
    expect(attempt(inLocal, { ...local('left-pad'), _deleted: true }, local('left-pad'), replicator)).toContain('shadowed');
    expect(attempt(inLocal, upstream('new-name'), null, replicator)).toContain('shadowed');
  });

  it("what local users create carries this registry's origin; admins may do anything", () => {
    expect(attempt(inLocal, local('mine'), null, alice)).toBe('ok');
    expect(attempt(inLocal, packageDoc('mine', ['1.0.0'], 'alice'), null, alice)).toContain('"origin": "local-id"');
    expect(attempt(inLocal, upstream('mine'), null, alice)).toContain('"origin": "local-id"');
    expect(attempt(inLocal, local('left-pad'), upstream('left-pad'), admin)).toBe('ok');
  });

  it('a user writing on the CouchDB port directly, not through the gateway, cannot put a package in front of a mirrored one', () => {
    expect(attempt(inLocal, local('left-pad'), null, { name: 'mallory', roles: [] })).toContain('through the registry');
  });

  it('fails closed without a registry id', () => {
    expect(() => validateMirror.call({ database: 'local' }, local('x'), null, alice)).toThrow();
    expect(() => validateMirror.call({ database: 'mirror' }, upstream('x'), null, replicator)).toThrow();
  });
});

describe('_design/mirror validate_doc_update in the mirror database', () => {
  it('replication writes, updates and deletes mirrored packages, but never claims to be local', () => {
    expect(attempt(inMirror, upstream('lodash'), null, replicator)).toBe('ok');
    expect(attempt(inMirror, upstream('lodash'), upstream('lodash'), replicator)).toBe('ok');
    expect(attempt(inMirror, { ...upstream('lodash'), _deleted: true }, upstream('lodash'), replicator)).toBe('ok');
    expect(attempt(inMirror, local('sneaky'), null, replicator)).toContain('marked as published here');
    // a document without any origin (a plain CouchDB upstream) is a mirrored one
    const bare = packageDoc('bare', ['1.0.0'], 'x');
    expect(attempt(inMirror, bare, null, replicator)).toBe('ok');
    expect(attempt(inMirror, bare, clone(bare), replicator)).toBe('ok');
  });

  it('replication never brings a package of a private scope', () => {
    expect(attempt(inMirror, upstream('@acme/secret'), null, replicator)).toContain('private scope');
    expect(attempt(inMirror, upstream('@ACME/Secret'), null, replicator)).toContain('private scope');
    expect(attempt(inMirror, upstream('@other/pkg'), null, replicator)).toBe('ok');
  });

  it('local users change nothing there, not even a star, and are told to use a private scope', () => {
    const mirrored = upstream('lodash');
    const message = attempt(inMirror, { ...clone(mirrored), description: 'mine now' }, mirrored, alice);
    expect(message).toContain('mirrored from https://registry.example');
    expect(message).toContain('private scope');
    expect(attempt(inMirror, { ...clone(mirrored), users: { alice: true } }, mirrored, alice)).toContain('mirrored');
    expect(attempt(inMirror, local('new'), null, alice)).toContain('private scope');
    expect(attempt(inMirror, local('lodash'), mirrored, admin)).toBe('ok');
  });
  it('_design/app lets replication copy upstream documents as they are', () => {
    const odd = { ...upstream('OldName'), maintainers: [] } as PackageDoc;
    expect(() => validateApp(odd, null, replicator)).not.toThrow();
    expect(() => validateApp(odd, null, alice)).toThrow();
  });
});

describe('sites: the packages of the other sites of this registry', () => {
  const withSites = { ...inLocal, sites: ['site-b', 'site-c'] };
  const mirrorWithSites = { ...inMirror, sites: ['site-b'] };
  const site = { name: 'registry-site', roles: [SITE_ROLE] };
  const fromB = (name: string) => ({ ...packageDoc(name, ['1.0.0'], 'bob'), origin: 'site-b' });

  it('site replication writes the local database as the other site wrote it, merges and removed conflict leaves included', () => {
    expect(attempt(withSites, fromB('shared'), null, site)).toBe('ok');
    expect(attempt(withSites, local('shared'), fromB('shared'), site)).toBe('ok');
    expect(attempt(withSites, { ...fromB('shared'), _deleted: true }, fromB('shared'), site)).toBe('ok');
    // an id it has not learned yet (a site that joined later): the other site checked it
    expect(attempt(withSites, { ...fromB('later'), origin: 'site-d' }, null, site)).toBe('ok');
    expect(() => validateApp(fromB('shared'), null, site)).not.toThrow();
  });

  it('but never a package mirrored from an upstream, and never into the mirror database', () => {
    expect(attempt(withSites, upstream('lodash'), null, site)).toContain('never a package mirrored');
    expect(attempt(mirrorWithSites, upstream('lodash'), null, site)).toContain('mirrored');
  });

  it("the gateway writes packages of any site's origin (their maintainers publish anywhere); replication keeps them out of the mirror", () => {
    expect(attempt(withSites, fromB('shared'), fromB('shared'), alice)).toBe('ok');
    expect(attempt(withSites, { ...fromB('x'), origin: 'site-unknown' }, null, alice)).toContain('"origin": "local-id"');
    expect(attempt(mirrorWithSites, fromB('shared'), null, replicator)).toContain('marked as published here');
  });

  it('a site role on a person is no way around the gateway for the mirror database, and the local origins are this id first', () => {
    expect(localOrigins(withSites)).toEqual(['local-id', 'site-b', 'site-c']);
    expect(localOrigins({ registry: 'only' })).toEqual(['only']);
    expect(localOrigins({ registry: 'x', sites: [3, '', 'y'] })).toEqual(['x', 'y']);
    expect(isMirrored(fromB('shared'), localOrigins(withSites))).toBe(false);
    expect(isMirrored(fromB('shared'), 'local-id')).toBe(true);
    expect(isMirrored(upstream('lodash'), localOrigins(withSites))).toBe(true);
  });
});

describe('scopes', () => {
  it('parses configured scopes and matches names case-insensitively', () => {
    expect(parseScopes('@acme, internal  @Corp')).toEqual(['@acme', '@internal', '@corp']);
    expect(inPrivateScope('@acme/x', ['@acme'])).toBe(true);
    expect(inPrivateScope('acme', ['@acme'])).toBe(false);
  });
});

describe('mirrored documents', () => {
  it('copy the upstream packument, keep stored tarballs of versions still there, and record origin and revision', () => {
    const existing = { ...upstream('pkg'), _rev: '3-abc', _attachments: { 'pkg-1.0.0.tgz': { digest: 'md5-x', length: 3, stub: true }, 'pkg-0.9.0.tgz': { digest: 'md5-y', length: 3, stub: true } } };
    const packument = { _id: 'pkg', _rev: '7-up', name: 'pkg', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': upstream('pkg').versions['1.0.0'] }, time: { '1.0.0': 't' }, readme: 'hi', origin: 'forged' };
    const doc = mirroredDoc('pkg', packument, 'https://registry.example', existing);
    expect(doc._rev).toBe('3-abc');
    expect(doc.origin).toBe('https://registry.example');
    expect(doc.origin_rev).toBe('7-up');
    expect(doc.readme).toBe('hi');
    expect(Object.keys(doc._attachments || {})).toEqual(['pkg-1.0.0.tgz']);
  });

  it('record when the copy was fetched (for the package page), which an upstream cannot forge and clients are not served', () => {
    const packument = { _rev: '2-up', name: 'pkg', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': upstream('pkg').versions['1.0.0'] }, origin_synced: '1999-01-01T00:00:00.000Z' };
    const doc = mirroredDoc('pkg', packument, 'https://registry.example', null, '2026-12-07T04:00:00.000Z');
    expect(doc.origin_synced).toBe('2026-12-07T04:00:00.000Z');
    expect(Date.parse(String(mirroredDoc('pkg', packument, 'https://registry.example', null).origin_synced))).toBeGreaterThan(Date.now() - 60_000);
    const served = fullPackument(doc, 'http://registry.test');
    expect(Object.keys(served).filter((key) => key.startsWith('origin'))).toEqual([]);
  });

  it('verify tarballs against dist.integrity, or dist.shasum (as SRI sha1) for old versions, and refuse neither', () => {
    const data = tarballOf('pkg', '1.0.0');
    const integrity = 'sha512-' + createHash('sha512').update(data).digest('base64');
    const shasum = createHash('sha1').update(data).digest('hex');
    const manifest = (dist: Record<string, string>) => ({ name: 'pkg', version: '1.0.0', dist: { tarball: 'x', ...dist } }) as never;
    expect(expectedIntegrity(manifest({ integrity, shasum }))).toBe(integrity);
    const fromShasum = expectedIntegrity(manifest({ shasum })) as string;
    expect(ssri.checkData(data, fromShasum)).toBeTruthy();
    expect(ssri.checkData(Buffer.from('other'), fromShasum)).toBe(false);
    expect(expectedIntegrity(manifest({}))).toBeNull();
    expect(expectedIntegrity(manifest({ shasum: 'not-hex' }))).toBeNull();
  });

  it('compare revisions by their number', () => {
    expect(revGeneration('12-abc')).toBe(12);
    expect(revGeneration(undefined)).toBe(0);
    expect(seqNumber('42-g1AAAA')).toBe(42);
    expect(seqNumber(17)).toBe(17);
    expect(seqNumber('opaque')).toBeNull();
  });
});

describe('package lists', () => {
  it('read a package-lock.json (v3 and v1) for the whole dependency tree', () => {
    const v3 = { packages: { '': { name: 'app' }, 'node_modules/a': {}, 'node_modules/a/node_modules/b': {}, 'node_modules/@s/c': {}, 'node_modules/linked': { link: true } } };
    expect(namesFromLockfile(v3).sort()).toEqual(['@s/c', 'a', 'b']);
    const v1 = { dependencies: { a: { dependencies: { b: {} } }, c: {} } };
    expect(namesFromLockfile(v1).sort()).toEqual(['a', 'b', 'c']);
    const dir = mkdtempSync(join(tmpdir(), 'lock-'));
    writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(v3));
    expect(listedNames(['left-pad', join(dir, 'package-lock.json')]).sort()).toEqual(['@s/c', 'a', 'b', 'left-pad']);
    expect(() => listedNames([join(dir, 'missing.json')])).toThrow(/cannot read the lockfile/);
  });
});

describe('mergeMirrored: the leaves of one mirrored document', () => {
  const tgz = (n: number) => ({ content_type: 'application/octet-stream', digest: 'md5-' + n, length: n, stub: true as const });
  const dist = (key: string) => ({ integrity: 'sha512-' + key, shasum: key, tarball: 'x' });
  const leaf = (rev: string, originRev: string | undefined, synced: string, versions: Record<string, string>, files: Record<string, number>): PackageDoc =>
    ({
      _id: 'p',
      _rev: rev,
      name: 'p',
      versions: Object.fromEntries(Object.entries(versions).map(([v, key]) => [v, { name: 'p', version: v, dist: dist(key) }])),
      'dist-tags': { latest: Object.keys(versions).pop() as string },
      time: {},
      origin: 'https://up.example',
      ...(originRev ? { origin_rev: originRev } : {}),
      origin_synced: synced,
      _attachments: Object.fromEntries(Object.entries(files).map(([v, n]) => ['p-' + v + '.tgz', tgz(n)])),
    }) as unknown as PackageDoc;

  it('keeps the later upstream copy, then the later fetch, with every tarball whose dist it keeps, whatever order the leaves come in', () => {
    const older = leaf('1-a', '3-x', '2026-12-02T00:00:00.000Z', { '1.0.0': 'a', '1.1.0': 'b' }, { '1.0.0': 1, '1.1.0': 2 });
    const later = leaf('1-b', '4-y', '2026-12-01T00:00:00.000Z', { '1.0.0': 'a', '1.1.0': 'B', '2.0.0': 'c' }, { '2.0.0': 3 });
    for (const leaves of [[older, later], [later, older]]) {
      const { doc, attachmentSources, refused } = mergeMirrored(leaves);
      expect(doc.origin_rev).toBe('4-y');
      expect(Object.keys(doc.versions)).toEqual(['1.0.0', '1.1.0', '2.0.0']);
      // 1.1.0 was republished upstream with other bytes: the older copy's tarball is not its tarball.
      expect(attachmentSources).toEqual({ 'p-2.0.0.tgz': '1-b', 'p-1.0.0.tgz': '1-a' });
      expect(doc._attachments).toEqual({ 'p-2.0.0.tgz': tgz(3), 'p-1.0.0.tgz': tgz(1) });
      expect(refused).toEqual([]);
    }
    // Without upstream revisions (a registry that names none): the later fetch.
    const first = leaf('2-a', undefined, '2026-12-01T00:00:00.000Z', { '1.0.0': 'a' }, {});
    const second = leaf('1-b', undefined, '2026-12-03T00:00:00.000Z', { '1.0.0': 'a', '1.1.0': 'b' }, { '1.0.0': 1 });
    expect(Object.keys(mergeMirrored([first, second]).doc.versions)).toEqual(['1.0.0', '1.1.0']);
    // A merge of one leaf is that leaf: the resolver's test that nothing is left to merge.
    expect(mergeMirrored([later]).doc).toEqual({ ...mergeMirrored([later, older]).doc, _attachments: { 'p-2.0.0.tgz': tgz(3) } });
  });
});
