/**
 * The sites surface (SITE_PEERS, the site account, accounts and tokens that replicate, packages that
 * replicate and merge) attacked as a hostile user would: from every principal (anonymous, a user with a
 * token, a maintainer at one site, a user of the other site, the site account with its password and
 * with a wrong one) on both ports (the gateway and the CouchDB port) of two sites, and from a peer set
 * wrong in SITE_PEERS.
 *
 * Holes found and closed (each test failed before its fix): the site account deleted `_users`, COPYed
 * an account onto a design document whose code then ran in the embedded server, made accounts with the
 * registry's roles (a key to the mirror database), logged in and published at the gateway; a `_bulk_docs`
 * whose docs is no list was a 500; the same name signed up at both sites at once made two accounts; a
 * log-in under the name of another site's reader copied that account; a peer's `_design/mirror`
 * made the upstream's origin a site id; `/-/replication` named packages the access rules hide. The
 * other tests are attacks that did not work, kept so that they keep not working.
 *
 * Runs on the embedded server.
 */
import { mkdtempSync, rmSync } from 'fs';
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { basic, send } from '../helpers/principals';
import { killProcess, startRegistryProcess } from '../helpers/process';
import { publishAt, served, Site, Sites, SITE_PASSWORD, startSites, versionBody } from '../helpers/sites';
import { eventually } from '../helpers/wait';

let sites: Sites;
let A: Site;
let B: Site;
const run = Math.random().toString(36).slice(2, 8);
/** Signed up at A: a maintainer of `pkg` (published at A). */
const alice = 'alice-' + run;
const alicePassword = 'alice-pw-' + run;
let aliceToken = '';
/** Signed up at B: a user of the other site. */
const bob = 'bob-' + run;
const bobPassword = 'bob-pw-' + run;
let bobToken = '';
const pkg = 'hostile-site-pkg-' + run;

const site = basic('registry-site', SITE_PASSWORD);
const wrongSite = basic('registry-site', 'not-the-site-password');

async function signup(at: Site, name: string, password: string) {
  return send(at.url(), 'PUT', '/-/user/org.couchdb.user:' + name, { body: { name, password, email: name + '@example.com' } });
}

/**
 * On the embedded server only: these attacks are on the surface of sites whose accounts replicate (open
 * sign-up, the site account on `_users`). On a real CouchDB sites need closed sign-up and the site
 * account has no part in `_users` (see sites.test.ts, which runs there too).
 */
const embedded = !process.env.COUCHDB_URL;
const describe = embedded ? global.describe : global.describe.skip;

beforeAll(async () => {
  if (!embedded) return;
  sites = await startSites(2);
  [A, B] = sites.sites;
  const a = await signup(A, alice, alicePassword);
  expect(a.status).toBe(201);
  aliceToken = a.body.token;
  const b = await signup(B, bob, bobPassword);
  expect(b.status).toBe(201);
  bobToken = b.body.token;
  expect(await publishAt(A.url(), aliceToken, pkg, '1.0.0', Buffer.from('pkg 1.0.0 from A'))).toBe(201);
  await eventually(async () => ((await send(B.url(), 'GET', '/-/whoami', { headers: { authorization: 'Bearer ' + aliceToken } })).status === 200 ? true : null), 30_000, "alice's token to work at B");
  await eventually(async () => ((await send(A.url(), 'GET', '/-/whoami', { headers: { authorization: 'Bearer ' + bobToken } })).status === 200 ? true : null), 30_000, "bob's token to work at A");
  await eventually(() => served(B.url(), pkg), 30_000, pkg + ' at B');
});

afterAll(async () => {
  await sites?.stop();
});

/** The answer of `path` on a site's CouchDB port with `auth`. */
const onCouch = (at: Site, auth: string, method: string, path: string, options: { body?: unknown; raw?: string; headers?: Record<string, string> } = {}) =>
  send(at.couchOrigin(), method, path, { ...options, headers: { authorization: auth, ...(options.headers || {}) } });

describe('the site account on the CouchDB port', () => {
  it('reads and writes accounts as replication does, but neither deletes _users, nor COPYs an account onto a design document, nor runs maintenance on it', async () => {
    // What replication needs still works: the database, its documents, checkpoints, the member endpoints.
    expect((await onCouch(A, site, 'GET', '/_users')).status).toBe(200);
    expect((await onCouch(A, site, 'GET', '/_users/_all_docs?limit=1')).status).toBe(200);
    expect((await onCouch(A, site, 'PUT', '/_users/_local/hostile-checkpoint-' + run, { body: { last_seq: 1 } })).status).toBe(201);
    // An account whose document carries code, then COPY onto a design document: its validate_doc_update would run in the server.
    const id = 'org.couchdb.user:copied-' + run;
    const planted = await onCouch(A, site, 'PUT', '/_users/' + id, {
      body: { _id: id, name: 'copied-' + run, type: 'user', roles: [], password: 'copied-pw', validate_doc_update: 'function () { throw({ forbidden: "owned by the site account" }); }' },
    });
    expect(planted.status).toBe(201);
    const copy = await onCouch(A, site, 'COPY', '/_users/' + id, { headers: { destination: '_design/hostile-' + run } });
    expect({ copy: copy.status, error: copy.body.error }).toEqual({ copy: 403, error: 'forbidden' });
    expect((await onCouch(A, A.adminAuth(), 'GET', '/_users/_design/hostile-' + run)).status).toBe(404);
    // Sign-up still works (the copied code, had it landed, refused every write of _users).
    expect((await signup(A, 'after-copy-' + run, 'after-copy-pw')).status).toBe(201);
    // Design documents and the security under percent-encoded or split ids.
    for (const path of ['/_users/_design%2Fenc-' + run, '/_users/%5Fdesign/enc-' + run, '/_users/%5Fdesign%2Fenc-' + run, '/_users/_local%2F_security', '/_users/%5Flocal/_security', '/_users/_security?x=1']) {
      const answer = await onCouch(A, site, 'PUT', path, { body: { _id: '_design/enc-' + run, validate_doc_update: 'function () {}', members: { roles: ['registry-site'] } } });
      expect({ path, status: answer.status }).toEqual({ path, status: 403 });
    }
    // Maintenance and the database itself are the server admins'.
    for (const [method, path, body] of [
      ['POST', '/_users/_compact', {}],
      ['POST', '/_users/_view_cleanup', {}],
      ['POST', '/_users/_purge', { [id]: [planted.body.rev] }],
      ['PUT', '/_users/_revs_limit', 1],
      ['PUT', '/_users', undefined],
      ['DELETE', '/_users', undefined],
    ] as const) {
      const answer = await onCouch(A, site, method, path, { body });
      expect({ method, path, status: answer.status, error: answer.body && answer.body.error }).toEqual({ method, path, status: 403, error: 'forbidden' });
    }
    // The accounts are all still there: alice logs in at A.
    expect((await onCouch(A, A.adminAuth(), 'GET', '/_users/org.couchdb.user:' + alice)).status).toBe(200);
    expect((await send(A.url(), 'PUT', '/-/user/org.couchdb.user:' + alice, { body: { name: alice, password: alicePassword } })).status).toBe(201);
  });

  it('slips no design document into _users through a body that is not JSON, a map of docs or an array; a batch that is no list is a 400, not a 500', async () => {
    const design = { _id: '_design/sneak-' + run, validate_doc_update: 'function () { throw({ forbidden: "sneaked" }); }' };
    const tries: [string, unknown, string][] = [
      ['/_users/_bulk_docs', { docs: [design] }, 'text/plain'],
      ['/_users/_bulk_docs', { docs: [design] }, 'application/x-www-form-urlencoded'],
      ['/_users/_bulk_docs', { docs: [design], new_edits: false }, 'application/json; charset=utf-8'],
      ['/_users/_bulk_docs', { docs: { 0: design } }, 'application/json'],
      ['/' + A.db + '/_bulk_docs', { docs: { 0: { _id: 'not-a-list-' + run } } }, 'application/json'],
      ['/_users', [design], 'application/json'],
      ['/_users', design, 'text/plain'],
    ];
    for (const [path, body, type] of tries) {
      const answer = await onCouch(A, site, 'POST', path, { raw: JSON.stringify(body), headers: { 'content-type': type } });
      expect({ path, type, status: answer.status >= 400 && answer.status < 500, error: typeof (answer.body && answer.body.error) }).toEqual({ path, type, status: true, error: 'string' });
    }
    expect((await onCouch(A, A.adminAuth(), 'GET', '/_users/_design/sneak-' + run)).status).toBe(404);
  });

  it('with the right password reads neither the state database, _replicator nor the configuration; with a wrong one nothing, on either port of either site', async () => {
    for (const at of [A, B]) {
      for (const path of ['/' + at.db + '-state/_all_docs', '/_replicator/_all_docs', '/_config', '/_node/_local/_config', '/_all_dbs', '/_users/_security', '/_users/_design/_auth']) {
        const answer = await onCouch(at, site, 'GET', path);
        expect({ site: at.name, path, status: answer.status }).toEqual({ site: at.name, path, status: 403 });
      }
      for (const path of ['/' + at.db + '/_all_docs', '/' + at.db + '-tokens/_all_docs', '/_users/_all_docs', '/_session']) {
        const answer = await onCouch(at, wrongSite, 'GET', path);
        expect({ site: at.name, path, status: answer.status }).toEqual({ site: at.name, path, status: 401 });
      }
      for (const path of ['/-/whoami', '/-/replication', '/' + pkg]) {
        const answer = await send(at.url(), 'GET', path, { headers: { authorization: wrongSite } });
        expect({ site: at.name, path, status: answer.status }).toEqual({ site: at.name, path, status: 401 });
      }
    }
  });
});

describe('every principal on both ports of both sites', () => {
  it('people (anonymous, a user of this site, a user of the other site) read no accounts, tokens, state, jobs nor package databases on the CouchDB port, and write nothing there', async () => {
    const people: Record<string, string> = { anonymous: '', alice: basic(alice, alicePassword), bob: basic(bob, bobPassword) };
    const failures: unknown[] = [];
    for (const at of [A, B]) {
      for (const [who, auth] of Object.entries(people)) {
        const headers: Record<string, string> = auth ? { authorization: auth } : {};
        for (const path of ['/_users/_all_docs', '/_users/org.couchdb.user:' + (who === 'bob' ? alice : bob), '/' + at.db + '-tokens/_all_docs', '/' + at.db + '-stage/_all_docs', '/' + at.db + '-state/_all_docs', '/_replicator/_all_docs', '/' + at.db + '/_all_docs', '/' + at.db + '/' + pkg, '/' + at.db + '-mirror/_all_docs']) {
          const answer = await send(at.couchOrigin(), 'GET', path, { headers });
          if (![401, 403, 404].includes(answer.status)) failures.push({ site: at.name, who, path, status: answer.status });
        }
        const write = await send(at.couchOrigin(), 'PUT', '/' + at.db + '/' + pkg + '-by-' + who, { headers, body: { name: pkg + '-by-' + who, origin: 'x', versions: {}, 'dist-tags': {}, time: {} } });
        if (![401, 403].includes(write.status)) failures.push({ site: at.name, who, write: write.status });
        const account = await send(at.couchOrigin(), 'PUT', '/_users/org.couchdb.user:planted-' + who + '-' + run, { headers, body: { name: 'planted-' + who + '-' + run, type: 'user', roles: [], password: 'x' } });
        if (![401, 403].includes(account.status)) failures.push({ site: at.name, who, account: account.status });
      }
      // On the gateway, a user of the other site is no maintainer of pkg; anonymous publishes nothing.
      const byBob = await publishAt(at.url(), bobToken, pkg, '9.0.0-bob', Buffer.from('bob at ' + at.name));
      const byNobody = await publishAt(at.url(), '', pkg, '9.0.0-anon', Buffer.from('anonymous at ' + at.name));
      if (byBob !== 403 || byNobody !== 401) failures.push({ site: at.name, byBob, byNobody });
    }
    expect(failures).toEqual([]);
  });
});

describe('the site account and roles', () => {
  it('cannot make an account with a role of the registry (a key to the mirror database or to direct writes) nor change the service accounts; an account so made at one site does not replicate', async () => {
    for (const roles of [['registry-replicator'], ['registry-gateway'], ['registry-site'], ['registry-reader'], ['_admin'], 'registry-replicator']) {
      const name = 'minted-' + run + '-' + String(roles).replace(/[^a-z]/g, '');
      const minted = await onCouch(A, site, 'PUT', '/_users/org.couchdb.user:' + name, { body: { _id: 'org.couchdb.user:' + name, name, type: 'user', roles, password: 'minted-pw' } });
      expect({ roles, status: minted.status }).toEqual({ roles, status: 403 });
      // Had it been made, it would write a package into the mirror database, in front of the upstream's.
      const forged = await onCouch(A, basic(name, 'minted-pw'), 'PUT', '/' + A.db + '-mirror/forged-' + name, { body: { name: 'forged-' + name, versions: {}, 'dist-tags': {}, time: {} } });
      expect({ roles, status: forged.status }).toEqual({ roles, status: 401 });
    }
    // Nor by removing the guard that refuses it.
    const guard = await onCouch(A, A.adminAuth(), 'GET', '/_users/_design/registry-sites');
    expect(guard.status).toBe(200);
    expect((await onCouch(A, site, 'DELETE', '/_users/_design/registry-sites?rev=' + guard.body._rev)).status).toBe(403);
    expect((await onCouch(A, site, 'POST', '/_users/_bulk_docs', { body: { docs: [{ _id: '_design/registry-sites', _rev: guard.body._rev, _deleted: true }] } })).status).toBe(403);
    // Nor through a batch, nor a role added to a person's account.
    const batch = await onCouch(A, site, 'POST', '/_users/_bulk_docs', { body: { docs: [{ _id: 'org.couchdb.user:batch-' + run, name: 'batch-' + run, type: 'user', roles: ['registry-gateway'], password: 'batch-pw' }] } });
    expect(batch.status === 403 || (Array.isArray(batch.body) && batch.body[0].error === 'forbidden')).toBe(true);
    const bobDoc = await onCouch(A, site, 'GET', '/_users/org.couchdb.user:' + bob);
    expect(bobDoc.status).toBe(200);
    const elevated = await onCouch(A, site, 'PUT', '/_users/org.couchdb.user:' + bob, { body: { ...bobDoc.body, roles: ['registry-replicator'] } });
    expect(elevated.status).toBe(403);
    // The service accounts: not its own (whose password the other sites hold), nor a new registry-replicator.
    const own = await onCouch(A, site, 'GET', '/_users/org.couchdb.user:registry-site');
    expect(own.status).toBe(200);
    const renamed = await onCouch(A, site, 'PUT', '/_users/org.couchdb.user:registry-site', { body: { ...own.body, roles: [], password: 'taken-over' } });
    expect(renamed.status).toBe(403);
    const replicator = await onCouch(A, site, 'PUT', '/_users/org.couchdb.user:registry-replicator', { body: { _id: 'org.couchdb.user:registry-replicator', name: 'registry-replicator', type: 'user', roles: [], password: 'minted-pw' } });
    expect([403, 409]).toContain(replicator.status);
    // What replication writes (people's accounts) still goes: bob, made at B, logs in at A with his password.
    expect((await send(A.url(), 'PUT', '/-/user/org.couchdb.user:' + bob, { body: { name: bob, password: bobPassword } })).status).toBe(201);
    // An admin gives a role at B; the account with it is B's own and is not copied to A.
    const carol = 'carol-' + run;
    expect((await signup(B, carol, 'carol-pw-' + run)).status).toBe(201);
    await eventually(async () => ((await onCouch(A, A.adminAuth(), 'GET', '/_users/org.couchdb.user:' + carol)).status === 200 ? true : null), 20_000, carol + ' at A');
    const atB = await onCouch(B, B.adminAuth(), 'GET', '/_users/org.couchdb.user:' + carol);
    expect((await onCouch(B, B.adminAuth(), 'PUT', '/_users/org.couchdb.user:' + carol, { body: { ...atB.body, roles: ['registry-reader'] } })).status).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const atA = await onCouch(A, A.adminAuth(), 'GET', '/_users/org.couchdb.user:' + carol);
    expect(atA.body.roles).toEqual([]);
  });
});

describe('identity across sites', () => {
  it('the site account, with its password, is no npm user at the gateway of either site: no whoami, token, log-in, publish nor status', async () => {
    for (const at of [A, B]) {
      const seen: Record<string, number> = {};
      seen.whoami = (await send(at.url(), 'GET', '/-/whoami', { headers: { authorization: site } })).status;
      seen.login = (await send(at.url(), 'PUT', '/-/user/org.couchdb.user:registry-site', { body: { name: 'registry-site', password: SITE_PASSWORD } })).status;
      seen.token = (await send(at.url(), 'POST', '/-/npm/v1/tokens', { headers: { authorization: site }, body: { password: SITE_PASSWORD } })).status;
      seen.status = (await send(at.url(), 'GET', '/-/replication', { headers: { authorization: site } })).status;
      const name = 'site-published-' + at.name.toLowerCase() + '-' + run;
      seen.publish = (await send(at.url(), 'PUT', '/' + name, { headers: { authorization: site, 'npm-command': 'publish' }, body: versionBody(name, '1.0.0', Buffer.from('published as the site account')) })).status;
      expect({ site: at.name, ...seen }).toEqual({ site: at.name, whoami: 401, login: 403, token: 401, status: 401, publish: 401 });
      // A user's Basic credentials still work there.
      expect((await send(at.url(), 'GET', '/-/whoami', { headers: { authorization: basic(alice, alicePassword) } })).status).toBe(200);
    }
  });

  it('names that read like the site account cannot be signed up at either site', async () => {
    for (const at of [A, B]) {
      for (const name of ['Registry-Site', 'registry.site', 'registry_site', 'registrysite', 'REGISTRY-SITE']) {
        const answer = await signup(at, name, 'look-alike-pw');
        expect({ site: at.name, name, status: answer.status }).toEqual({ site: at.name, name, status: 403 });
      }
    }
  });

  it("a log-in at B with the name of an account of A's machinery (a reader, role registry-reader) does not copy it to B", async () => {
    const reader = 'reader-' + run;
    const made = await onCouch(A, A.adminAuth(), 'PUT', '/_users/org.couchdb.user:' + reader, { body: { _id: 'org.couchdb.user:' + reader, name: reader, type: 'user', roles: ['registry-reader'], password: 'reader-pw' } });
    expect(made.status).toBe(201);
    // Anyone tries to log in at B under that name (any password): B looks for the account at A first.
    const attempt = await send(B.url(), 'PUT', '/-/user/org.couchdb.user:' + reader, { body: { name: reader, password: 'a guess' } });
    expect(attempt.status).toBeGreaterThanOrEqual(400);
    expect(attempt.status).toBeLessThan(500);
    expect((await onCouch(B, B.adminAuth(), 'GET', '/_users/org.couchdb.user:' + reader)).status).toBe(404);
    // A's reader reads A's packages, and nothing at B.
    expect((await onCouch(A, basic(reader, 'reader-pw'), 'GET', '/' + A.db + '/' + pkg)).status).toBe(200);
    expect((await onCouch(B, basic(reader, 'reader-pw'), 'GET', '/' + B.db + '/' + pkg)).status).toBe(401);
  });

  it('log-ins of a name this site does not know ask the other sites for it only as often as the login throttle lets them try', async () => {
    const ghost = 'ghost-' + run;
    const asked = () => B.relay.requests.filter((line) => line.includes(encodeURIComponent('org.couchdb.user:' + ghost))).length;
    const before = asked();
    const statuses: number[] = [];
    for (let i = 0; i < 14; i++) {
      statuses.push((await send(A.url(), 'PUT', '/-/user/org.couchdb.user:' + ghost + '/-rev/1-x', { body: { name: ghost, password: 'guess-' + i } })).status);
    }
    // Ten tries of one name from one address, then 429 (lib/login-throttle.ts); A asked B once per try let through.
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses.slice(10)).toEqual([429, 429, 429, 429]);
    expect(asked() - before).toBeLessThanOrEqual(10);
  });

  it('sign-up while the sites are partitioned waits (503 at either site) rather than risk two people under one name', async () => {
    sites.partition();
    try {
      const name = 'partitioned-' + run;
      for (const at of [A, B]) {
        const answer = await signup(at, name, 'partitioned-pw-' + at.name);
        expect({ site: at.name, status: answer.status, error: typeof answer.body.error }).toEqual({ site: at.name, status: 503, error: 'string' });
        expect((await onCouch(at, at.adminAuth(), 'GET', '/_users/org.couchdb.user:' + name)).status).toBe(404);
      }
    } finally {
      sites.heal();
    }
  });

  it('a token revoked at one site stops working at the other within seconds', async () => {
    const login = await send(A.url(), 'PUT', '/-/user/org.couchdb.user:' + alice, { body: { name: alice, password: alicePassword } });
    const token = login.body.token as string;
    await eventually(async () => ((await send(B.url(), 'GET', '/-/whoami', { headers: { authorization: 'Bearer ' + token } })).status === 200 ? true : null), 20_000, 'the new token to work at B');
    const revoked = await send(A.url(), 'DELETE', '/-/npm/v1/tokens/token/' + token, { headers: { authorization: 'Bearer ' + token } });
    expect(revoked.status).toBe(204);
    const started = Date.now();
    await eventually(async () => ((await send(B.url(), 'GET', '/-/whoami', { headers: { authorization: 'Bearer ' + token } })).status === 401 ? true : null), 10_000, 'the revoked token to fail at B');
    process.stdout.write('hostile-sites: a token revoked at A failed at B ' + (Date.now() - started) + ' ms later\n');
  });

  it('a name signed up at both sites at the same moment is never two accounts: at most one sign-up succeeds, and only its password logs in at both sites', async () => {
    const RACES = 8;
    const outcomes = await Promise.all(
      Array.from({ length: RACES }, async (_, i) => {
        const name = 'race-' + run + '-' + i;
        const [atA, atB] = await Promise.all([signup(A, name, 'racer-a-pw-' + i), signup(B, name, 'racer-b-pw-' + i)]);
        return { name, i, statuses: [atA.status, atB.status].sort().join('/'), winner: atA.status === 201 ? 'a' : atB.status === 201 ? 'b' : null, tokens: [atA.body.token, atB.body.token].filter(Boolean) as string[] };
      }),
    );
    // Never both: at most one of each pair got an account and a token (both give way when each saw the other).
    expect(outcomes.filter((o) => o.statuses === '201/201').map((o) => o.name)).toEqual([]);
    expect(outcomes.every((o) => o.statuses === '201/409' || o.statuses === '409/409')).toBe(true);
    // Once replicated, at both sites the winner's password logs in and the loser's does not.
    for (const o of outcomes.filter((x) => x.winner)) {
      for (const at of [A, B]) {
        await eventually(async () => {
          const login = (who: string) => send(at.url(), 'PUT', '/-/user/org.couchdb.user:' + o.name, { body: { name: o.name, password: 'racer-' + who + '-pw-' + o.i } });
          const [win, lose] = await Promise.all([login(o.winner!), login(o.winner === 'a' ? 'b' : 'a')]);
          return win.status === 201 && lose.status === 409 ? true : null;
        }, 20_000, 'only the winner of ' + o.name + ' to log in at ' + at.name);
      }
    }
  });
});

describe('status and logs', () => {
  it('/-/replication and /-/health show neither the site password nor a token to anyone, at either site; /-/replication is for users only', async () => {
    const callers: Record<string, string> = { anonymous: '', aliceAtA: 'Bearer ' + aliceToken, bobOfB: 'Bearer ' + bobToken, admin: A.adminAuth() };
    for (const at of [A, B]) {
      for (const [who, auth] of Object.entries(callers)) {
        const headers: Record<string, string> = auth ? { authorization: who === 'admin' ? at.adminAuth() : auth } : {};
        for (const path of ['/-/replication', '/-/health', '/-/metrics']) {
          const answer = await send(at.url(), 'GET', path, { headers });
          const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
          for (const secret of [SITE_PASSWORD, aliceToken, bobToken, alicePassword, 'registry-site:']) {
            expect({ site: at.name, who, path, leaks: text.includes(secret) }).toEqual({ site: at.name, who, path, leaks: false });
          }
          if (path === '/-/replication' && who === 'anonymous') expect(answer.status).toBe(401);
        }
      }
    }
    // Nor the processes' logs.
    for (const at of [A, B]) {
      const log = at.proc!.output();
      for (const secret of [SITE_PASSWORD, aliceToken, bobToken, alicePassword, bobPassword]) expect({ site: at.name, leaks: log.includes(secret) }).toEqual({ site: at.name, leaks: false });
    }
  });
});

describe('status and the access rules', () => {
  it('a refused publish (the same version published at both sites with other bytes) of a package the access rules hide is listed to its reader, not to another user', async () => {
    const secret = 'hostile-secret-' + run;
    for (const at of [A, B]) {
      const current = await onCouch(at, at.adminAuth(), 'GET', '/' + at.db + '/_design/access');
      const rules = [{ package: secret, read: [alice], publish: [alice] }, ...current.body.rules];
      expect((await onCouch(at, at.adminAuth(), 'PUT', '/' + at.db + '/_design/access', { body: { ...current.body, rules } })).status).toBe(201);
    }
    // Each gateway applies rules changed behind its back within its two-second cache of them
    // (gateway/access.ts); before that a read by anyone could still pass under the old rules.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    sites.partition();
    try {
      expect(await publishAt(A.url(), aliceToken, secret, '1.0.0', Buffer.from('secret from A'))).toBe(201);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(await publishAt(B.url(), aliceToken, secret, '1.0.0', Buffer.from('secret from B'))).toBe(201);
    } finally {
      sites.heal();
    }
    const listed = async (at: Site, token: string) => {
      const status = await send(at.url(), 'GET', '/-/replication', { headers: { authorization: 'Bearer ' + token } });
      return ((status.body.refusedPublishes || []) as { name: string }[]).some((refusal) => refusal.name === secret);
    };
    await eventually(async () => ((await listed(A, aliceToken)) || (await listed(B, aliceToken)) ? true : null), 30_000, 'the refused publish of ' + secret + ' in a status');
    for (const at of [A, B]) {
      expect([403, 404]).toContain((await send(at.url(), 'GET', '/' + secret, { headers: { authorization: 'Bearer ' + bobToken } })).status);
      expect({ site: at.name, listed: await listed(at, bobToken) }).toEqual({ site: at.name, listed: false });
    }
  });
});

describe('packages through site replication', () => {
  it('a version unpublished at one site during a partition, published with other bytes at the other, stays unpublished at both once they meet', async () => {
    const name = 'hostile-unpub-' + run;
    sites.partition();
    try {
      expect(await publishAt(A.url(), aliceToken, name, '1.0.0', Buffer.from('1.0.0 from A'))).toBe(201);
      expect(await publishAt(A.url(), aliceToken, name, '1.0.1', Buffer.from('1.0.1 from A'))).toBe(201);
      const doc = await send(A.url(), 'GET', '/' + name + '?write=true', { headers: { authorization: 'Bearer ' + aliceToken } });
      const versions = { ...doc.body.versions };
      delete versions['1.0.0'];
      const unpublished = await send(A.url(), 'PUT', '/' + name + '/-rev/' + doc.body._rev, {
        headers: { authorization: 'Bearer ' + aliceToken, 'npm-command': 'unpublish' },
        body: { ...doc.body, versions, 'dist-tags': { latest: '1.0.1' } },
      });
      expect([200, 201]).toContain(unpublished.status);
      expect(Object.keys((await served(A.url(), name))!.versions)).toEqual(['1.0.1']);
      // At B, which never saw it, alice's token publishes 1.0.0 with other bytes.
      expect(await publishAt(B.url(), aliceToken, name, '1.0.0', Buffer.from('1.0.0 from B, other bytes'))).toBe(201);
    } finally {
      sites.heal();
    }
    const same = await eventually(async () => {
      const [a, b] = await Promise.all([served(A.url(), name), served(B.url(), name)]);
      return a && b && JSON.stringify(a) === JSON.stringify(b) && Object.keys(a.versions).includes('1.0.1') ? a : null;
    }, 30_000, name + ' the same at both sites');
    expect(Object.keys(same.versions)).toEqual(['1.0.1']);
    expect(same.tags.latest).toBe('1.0.1');
    // And it cannot be published again at either.
    for (const at of [A, B]) expect(await publishAt(at.url(), aliceToken, name, '1.0.0', Buffer.from('again at ' + at.name))).toBe(403);
  });
});

describe('SITE_PEERS set wrong', () => {
  it('a peer that is not a registry, redirects, answers a huge or deeply nested _design/mirror, or claims the upstream, URLs or thousands of ids: none becomes a site id here, and the registry serves', async () => {
    const answers: Record<string, () => string> = {
      claims: () => JSON.stringify({ registry: 'https://registry.npmjs.org', sites: ['http://169.254.169.254/latest', 'x'.repeat(300), 'good-' + run] }),
      many: () => JSON.stringify({ registry: 'many-' + run, sites: Array.from({ length: 20_000 }, (_, i) => 'many-' + run + '-' + i) }),
      deep: () => '['.repeat(2_000_000) + ']'.repeat(2_000_000),
      page: () => '<html>not a registry</html>',
    };
    let followed = 0;
    const fake: Server = createServer((req, res) => {
      if ((req.url || '').startsWith('/followed')) followed++;
      if (/^\/redirect\//.test(req.url || '')) {
        res.writeHead(302, { location: 'http://127.0.0.1:' + (fake.address() as AddressInfo).port + '/followed' + req.url }).end();
        return;
      }
      const match = /^\/([a-z]+)\/_design\/mirror$/.exec(req.url || '');
      if (!match || !answers[match[1]]) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found","reason":"missing"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(answers[match[1]]());
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const port = (fake.address() as AddressInfo).port;
    const dataDir = mkdtempSync(join(tmpdir(), 'registry-hostile-peer-'));
    const proc = await startRegistryProcess({
      DATA_DIR: dataDir,
      REGISTRY_DB: 'registry',
      REGISTRY_ADMIN_PASSWORD: 'hostile-peer-admin',
      SITE_PASSWORD: 'hostile-peer-site-password',
      SITE_PEERS: [...Object.keys(answers), 'redirect'].map((path) => 'http://registry-site:peer-pw@127.0.0.1:' + port + '/' + path).join(','),
    });
    try {
      const admin = basic('admin', 'hostile-peer-admin');
      // A few rounds (a peer whose ids are unknown is asked every 2 s).
      await new Promise((resolve) => setTimeout(resolve, 5000));
      const design = await send(proc.couchUrl, 'GET', '/registry/_design/mirror', { headers: { authorization: admin } });
      const recorded: string[] = design.body.sites || [];
      expect(recorded.filter((id) => /^https?:/i.test(id) || id.length > 200)).toEqual([]);
      expect(recorded.length).toBeLessThanOrEqual(200);
      // Each such peer is reported, not pulled from.
      const login = await send(proc.url, 'PUT', '/-/user/org.couchdb.user:peer-watcher-' + run, { body: { name: 'peer-watcher-' + run, password: 'watcher-pw' } });
      const status = await send(proc.url, 'GET', '/-/replication', { headers: { authorization: 'Bearer ' + login.body.token } });
      expect(status.status).toBe(200);
      expect(JSON.stringify(status.body)).not.toContain('peer-pw');
      const peers: { peer: string; id: string | null; error: string | null }[] = status.body.sites.peers;
      expect(peers.map((peer) => ({ path: new URL(peer.peer).pathname, id: peer.id, error: !!peer.error }))).toEqual(
        [...Object.keys(answers), 'redirect'].map((path) => ({ path: '/' + path, id: null, error: true })),
      );
      // A peer's redirect is not followed (its credentials would go along).
      expect(followed).toBe(0);
      const health = await send(proc.url, 'GET', '/-/health');
      expect(health.status).toBe(200);
      expect(JSON.stringify(health.body)).not.toContain('peer-pw');
      expect(proc.output()).not.toMatch(/unhandled rejection|uncaught exception|peer-pw/i);
    } finally {
      await killProcess(proc.child, 'SIGTERM');
      await new Promise((resolve) => fake.close(resolve));
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
