/**
 * Service accounts (replication's, a site's) in the CouchDB in use (embedded by default, COUCHDB_URL
 * when given): several gateways, or several sites on one CouchDB, start at once and all make sure of
 * the same account at the same moment; every one of them starts, and the account logs in.
 */
import { Couch } from '../../couchdb/client';
import { ensureAccount } from '../../replication/couchdb';
import { basicAuthOf, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

let registry: TestRegistry;

beforeAll(async () => {
  registry = await startTestRegistry();
});
afterAll(() => registry.stop());

it('an account made by five gateways at once is made once, and none of them fails with a conflict', async () => {
  const name = 'service-race-' + Math.random().toString(36).slice(2, 8);
  const account = { name, role: 'registry-site', password: 'service-race-password' };
  const gateways = Array.from({ length: 5 }, () => new Couch(registry.adminCouchUrl, registry.proxySecret));
  const results = await Promise.allSettled(gateways.map((couch) => ensureAccount(couch, account)));
  expect(results.map((result) => (result.status === 'rejected' ? String(result.reason) : 'ok'))).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
  // (On a cluster the node asked may see the account a moment later.)
  const userCtx = await eventually(async () => {
    const session = await fetch(new URL('/_session', registry.couchUrl), { headers: { authorization: 'Basic ' + Buffer.from(name + ':' + account.password).toString('base64') } });
    const seen = ((await session.json()) as { userCtx?: { name: string | null; roles: string[] } }).userCtx;
    return seen && seen.name ? seen : null;
  }, 10_000, 'the account to log in');
  expect(userCtx).toEqual({ name, roles: ['registry-site'] });
  // Not left behind in a real CouchDB's _users.
  const users = new URL('/_users/org.couchdb.user:' + name, registry.adminCouchUrl).toString().replace(/\/\/[^@]*@/, '//');
  const doc = (await (await fetch(users, { headers: { authorization: basicAuthOf(registry.adminCouchUrl) } })).json()) as { _rev: string };
  await fetch(users + '?rev=' + doc._rev, { method: 'DELETE', headers: { authorization: basicAuthOf(registry.adminCouchUrl) } });
});
