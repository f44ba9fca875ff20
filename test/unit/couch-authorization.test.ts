import { authorize, Caller } from '../../couchdb/authorization';

const anonymous: Caller = { name: null, roles: [] };
const bob: Caller = { name: 'bob', roles: ['developers'] };
const admin: Caller = { name: 'admin', roles: ['_admin'] };

const outcome = (method: string, path: string, caller: Caller): number | 'allowed' => authorize(method, path, caller)?.status ?? 'allowed';

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
    const refusal = authorize('POST', '/_replicate', anonymous);
    expect(refusal).toMatchObject({ error: 'unauthorized' });
    expect(refusal!.reason).toMatch(/server admin/);
  });
});
