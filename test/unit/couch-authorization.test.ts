import { authorize, Caller } from '../../couchdb/authorization';
import { GATEWAY_ROLE, PACKAGE_DB_SECURITY, READER_ROLE, REPLICATOR_ROLE, SITE_ROLE } from '../../core/provenance';
import { SecurityObject } from '../../core/types';

const anonymous: Caller = { name: null, roles: [] };
const bob: Caller = { name: 'bob', roles: ['developers'] };
const admin: Caller = { name: 'admin', roles: ['_admin'] };
const gateway: Caller = { name: 'alice', roles: [GATEWAY_ROLE] };
const reader: Caller = { name: 'downstream', roles: [READER_ROLE] };
const replicator: Caller = { name: 'registry-replicator', roles: [REPLICATOR_ROLE] };
const site: Caller = { name: 'registry-site', roles: [SITE_ROLE] };

/** A database open to everyone (no members), as CouchDB leaves a new one. */
const open: SecurityObject = { admins: { names: [], roles: [] }, members: { names: [], roles: [] } };

const outcome = (method: string, path: string, caller: Caller, security: SecurityObject | null = open): number | 'allowed' =>
  authorize(method, path, caller, security)?.status ?? 'allowed';

describe('the embedded server decides as CouchDB 3.4', () => {
  it.each([
    ['GET', '/', 'allowed', 'allowed'],
    ['GET', '/_up', 'allowed', 'allowed'],
    ['GET', '/_session', 'allowed', 'allowed'],
    ['POST', '/_session', 'allowed', 'allowed'],
    ['PUT', '/_session', 405, 405],
    ['GET', '/_utils/index.html', 'allowed', 'allowed'],
    ['POST', '/_replicate', 401, 403],
    ['GET', '/_replicator', 401, 403],
    ['PUT', '/_replicator/job', 401, 403],
    ['GET', '/_config', 401, 403],
    ['PUT', '/_config/admins/eve', 401, 403],
    ['PUT', '/_node/_local/_config/admins/eve', 401, 403],
    ['GET', '/_all_dbs', 401, 403],
    ['GET', '/_active_tasks', 401, 403],
    ['GET', '/_anything_new', 401, 403],
    ['GET', '/__proto__', 401, 403],
    ['GET', '/_users/_all_docs', 401, 403],
    ['GET', '/_users', 401, 403],
    ['GET', '/_users/org.couchdb.user:alice', 404, 404],
    ['GET', '/_users/org.couchdb.user%3Abob', 404, 'allowed'],
    ['PUT', '/_users/org.couchdb.user:bob', 401, 403],
    ['GET', '/_users/_local%2Fx', 401, 403],
    ['PUT', '/registry', 401, 403],
    ['DELETE', '/registry', 401, 403],
    ['GET', '/registry', 'allowed', 'allowed'],
    ['GET', '/registry/_security', 401, 403],
    ['PUT', '/registry/_security', 401, 403],
    ['PUT', '/registry/_design/app', 401, 403],
    ['PUT', '/registry/_design%2Fapp', 401, 403],
    ['DELETE', '/registry/_design/app', 401, 403],
    ['GET', '/registry/_design/app', 'allowed', 'allowed'],
    ['GET', '/registry/_design/app/_view/search', 'allowed', 'allowed'],
    ['POST', '/registry/_design/app/_view/search', 'allowed', 'allowed'],
    ['POST', '/registry/_index', 401, 403],
    ['POST', '/registry/_purge', 401, 403],
    ['POST', '/registry/_compact', 401, 403],
    ['POST', '/registry/_bulk_docs', 'allowed', 'allowed'],
    ['GET', '/registry/_changes', 'allowed', 'allowed'],
    ['PUT', '/registry/_local/checkpoint', 'allowed', 'allowed'],
    // Where the embedded server keeps `_security`.
    ['PUT', '/registry/_local/_security', 401, 403],
    ['PUT', '/registry/_local%2F_security', 401, 403],
    ['DELETE', '/registry/_local/_security', 401, 403],
    ['GET', '/registry/_local/_security', 401, 403],
    ['PUT', '/registry/pkg', 'allowed', 'allowed'],
    ['COPY', '/registry/pkg', 401, 403],
    ['PATCH', '/registry/pkg', 405, 405],
    ['GET', '/..%2F..%2Fetc', 400, 400],
    ['GET', '/Registry', 400, 400],
    ['GET', '/%zz', 400, 400],
  ])('%s %s: anonymous %s, a user %s, an admin always', (method, path, forAnonymous, forUser) => {
    expect(outcome(method, path, anonymous)).toBe(forAnonymous);
    expect(outcome(method, path, bob)).toBe(forUser);
    const forAdmin = outcome(method, path, admin);
    expect(forAdmin === 'allowed' || forAdmin === 400 || forAdmin === 405).toBe(true);
  });

  it('every refusal says what to do', () => {
    const closed = authorize('POST', '/registry/_find', bob, PACKAGE_DB_SECURITY);
    expect(closed).toMatchObject({ status: 403, error: 'forbidden' });
    expect(closed!.reason).toMatch(/npm API.*reader account/);
    const refusal = authorize('POST', '/_replicate', anonymous);
    expect(refusal).toMatchObject({ error: 'unauthorized' });
    expect(refusal!.reason).toMatch(/server admin/);
  });
});

/** Every endpoint of a package database, with the methods a member may use. */
const MEMBER_REQUESTS: [string, string][] = [
  ['GET', '/registry'],
  ['HEAD', '/registry'],
  ['GET', '/registry/%40acme%2Fsecret'],
  ['GET', '/registry/%40acme%2Fsecret/secret-1.0.0.tgz'],
  ['GET', '/registry/_all_docs'],
  ['POST', '/registry/_all_docs'],
  ['GET', '/registry/_changes'],
  ['POST', '/registry/_changes'],
  ['POST', '/registry/_find'],
  ['POST', '/registry/_explain'],
  ['POST', '/registry/_bulk_get'],
  ['POST', '/registry/_revs_diff'],
  ['POST', '/registry/_missing_revs'],
  ['GET', '/registry/_index'],
  ['GET', '/registry/_design_docs'],
  ['GET', '/registry/_design/app'],
  ['GET', '/registry/_design/app/_view/byMaintainer'],
  ['POST', '/registry/_design/app/_view/byMaintainer'],
  ['GET', '/registry/_local/checkpoint'],
  ['PUT', '/registry/_local/checkpoint'],
  ['DELETE', '/registry/_local/checkpoint'],
  ['PUT', '/registry/pkg'],
  ['DELETE', '/registry/pkg'],
  ['PUT', '/registry/pkg/pkg-1.0.0.tgz'],
  ['POST', '/registry'],
  ['POST', '/registry/_bulk_docs'],
  ['POST', '/registry/_ensure_full_commit'],
];

describe('a database with members (deny by default): every endpoint, POST ones included', () => {
  it.each(MEMBER_REQUESTS)('%s %s: refused to anonymous (401) and plain users (403), allowed to members and admins', (method, path) => {
    expect(outcome(method, path, anonymous, PACKAGE_DB_SECURITY)).toBe(401);
    expect(outcome(method, path, bob, PACKAGE_DB_SECURITY)).toBe(403);
    // A name alone, or a role that only looks alike, is no membership.
    expect(outcome(method, path, { name: GATEWAY_ROLE, roles: ['registry'] }, PACKAGE_DB_SECURITY)).toBe(403);
    for (const member of [gateway, reader, replicator]) expect([member.name, outcome(method, path, member, PACKAGE_DB_SECURITY)]).toEqual([member.name, 'allowed']);
    expect(outcome(method, path, admin, PACKAGE_DB_SECURITY)).toBe('allowed');
  });

  it('an unknown security object counts as closed; a database that does not exist is left to the 404', () => {
    expect(authorize('POST', '/registry/_find', bob)?.status).toBe(403);
    expect(outcome('POST', '/nothing-here/_find', bob, null)).toBe('allowed');
  });

  it('members are named by name or role, and database admins are members', () => {
    const named: SecurityObject = { admins: { names: ['carol'], roles: [] }, members: { names: ['bob'], roles: [] } };
    expect(outcome('POST', '/registry/_find', bob, named)).toBe('allowed');
    expect(outcome('POST', '/registry/_find', { name: 'carol', roles: [] }, named)).toBe('allowed');
    expect(outcome('POST', '/registry/_find', { name: 'dave', roles: ['developers'] }, named)).toBe(403);
  });

  it.each([
    ['POST', '/registry/_index'],
    ['DELETE', '/registry/_index/_design/x/json/by-user'],
    ['POST', '/registry/_purge'],
    ['POST', '/registry/_compact'],
    ['POST', '/registry/_view_cleanup'],
    ['GET', '/registry/_security'],
    ['PUT', '/registry/_local/_security'],
    ['POST', '/registry/pkg'],
    ['COPY', '/registry/pkg'],
    ['PUT', '/registry/_design/app'],
    ['POST', '/registry/_design/app/_update/x'],
    ['GET', '/registry/_unknown_endpoint'],
    ['POST', '/registry/_temp_view'],
  ])('%s %s: not for members either (admins only)', (method, path) => {
    for (const member of [gateway, reader, replicator]) expect([member.name, outcome(method, path, member, PACKAGE_DB_SECURITY)]).toEqual([member.name, 403]);
    expect(outcome(method, path, admin, PACKAGE_DB_SECURITY)).toBe('allowed');
  });

  it.each([
    ['PATCH', '/registry/_local/x'],
    ['POST', '/registry/_local/x'],
    ['PUT', '/registry'],
  ])('%s %s: refused to members', (method, path) => {
    expect(outcome(method, path, reader, PACKAGE_DB_SECURITY)).toBeGreaterThanOrEqual(400);
  });
});

describe("a site's account (sites replicate packages, accounts and tokens)", () => {
  it.each([
    ['GET', '/_users/_changes'],
    ['GET', '/_users/_all_docs'],
    ['POST', '/_users/_revs_diff'],
    ['POST', '/_users/_bulk_docs'],
    ['POST', '/_users/_bulk_get'],
    ['GET', '/_users/org.couchdb.user:alice'],
    ['PUT', '/_users/_local/checkpoint'],
  ])('administers the accounts: %s %s', (method, path) => {
    expect(outcome(method, path, site)).toBe('allowed');
  });

  it.each([
    ['PUT', '/_users/_design/_auth'],
    ['PUT', '/_users/_design%2F_auth'],
    ['GET', '/_users/_security'],
    ['PUT', '/_users/_security'],
    ['PUT', '/_users/_local/_security'],
    ['GET', '/_replicator'],
    ['GET', '/_config'],
    ['POST', '/_replicate'],
  ])('but not %s %s', (method, path) => {
    expect(outcome(method, path, site)).toBe(403);
  });

  it('reads the package databases as a member, and nothing else is a site', () => {
    expect(outcome('GET', '/registry/_changes', site, PACKAGE_DB_SECURITY)).toBe('allowed');
    expect(outcome('GET', '/registry/_changes', bob, PACKAGE_DB_SECURITY)).toBe(403);
    expect(outcome('GET', '/_users/_all_docs', reader)).toBe(403);
    expect(outcome('GET', '/_users/_all_docs', replicator)).toBe(403);
  });
});
