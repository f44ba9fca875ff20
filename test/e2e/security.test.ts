/**
 * The registry against a hostile but fair user: what each port lets each principal do (the
 * authorization matrix), and one regression test per hole found (issue "safe against hostile users").
 * The registry runs as its own process, as `npm start` runs it, so a crash would show as a dead process.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { basic, couchQuirk, PRINCIPALS, Principal, Principals, publishBody, readerSource, send, startPrincipals } from '../helpers/principals';

let p: Principals;
let gateway: string;
let couch: string;
const embedded = !process.env.COUCHDB_URL;

const as = (principal: Principal): Record<string, string> => (p.gatewayAuth[principal] ? { authorization: p.gatewayAuth[principal] } : {});
const adminCouch = () => ({ authorization: basic(p.admin.name, p.admin.password) });
const userCouch = () => ({ authorization: basic(p.mallory, p.passwords[p.mallory]) });
const stored = async (id: string) => (await send(couch, 'GET', '/' + p.registryDb + '/' + (id.startsWith('_design/') ? id : encodeURIComponent(id)), { headers: adminCouch() })).body;

beforeAll(async () => {
  p = await startPrincipals('security');
  gateway = p.registry.url;
  couch = p.registry.couchUrl;
  for (const version of ['1.0.0', '1.1.0', '1.2.0']) {
    expect((await send(gateway, 'PUT', '/victim', { headers: as('maintainer'), body: publishBody('victim', version) })).status).toBe(201);
  }
});
afterAll(async () => {
  // Nothing reached the last-resort handler: no request crashed anything.
  expect(p.registry.output()).not.toMatch(/unhandled rejection|uncaught exception/);
  await p.stop();
});

describe('the CouchDB port promises what CouchDB 3.4 promises', () => {
  it('/_replicate and _replicator are for admins only: no copy of _users, tokens or packages is made', async () => {
    for (const headers of [{}, userCouch()]) {
      for (const body of [
        { source: '_users', target: 'leak' },
        { source: p.registryDb, target: p.registryDb + '-tokens' },
        { source: p.registryDb + '-tokens', target: 'leak-tokens', create_target: true },
      ]) {
        const res = await send(couch, 'POST', '/_replicate', { headers, body });
        expect([401, 403].includes(res.status) || couchQuirk('POST', '/_replicate', res)).toBe(true);
      }
      const job = await send(couch, 'PUT', '/_replicator/steal-' + Math.random().toString(36).slice(2), { headers, body: { source: '_users', target: 'leak', create_target: true } });
      expect([401, 403]).toContain(job.status);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    const dbs = (await send(couch, 'GET', '/_all_dbs', { headers: adminCouch() })).body as string[];
    expect(dbs.filter((db) => db.startsWith('leak'))).toEqual([]);
  });

  it('a user reads their own _users document and nothing else, and gains no rights from it', async () => {
    const own = await send(couch, 'GET', '/_users/org.couchdb.user:' + p.mallory, { headers: userCouch() });
    if (embedded) {
      expect(own.status).toBe(200);
      expect(own.body.name).toBe(p.mallory);
    } else {
      // CouchDB 3.4 keeps _users for admins by default (members: _admin): not even one's own document.
      expect(own.status).toBe(403);
    }
    // The same credentials right after: no admin rights carried over from that read.
    const after: [string, string, unknown?][] = [
      ['GET', '/' + p.registryDb + '-tokens/_all_docs'],
      ['GET', '/_users/_all_docs'],
      ['PUT', '/' + p.registryDb + '/_security', { admins: { names: [p.mallory] }, members: {} }],
      ['PUT', '/' + p.registryDb + '/_design/access?rev=' + (await stored('_design/access'))._rev, { rules: [{ package: '**', read: ['$all'], publish: ['$all'] }] }],
      ['PUT', '/_node/_local/_config/admins/' + p.mallory, 'owned'],
    ];
    // CouchDB answers 401 ("You are not a server admin.") or 403 depending on the endpoint.
    for (const [method, path, body] of after) {
      const res = await send(couch, method, path, { headers: userCouch(), body });
      expect([path, [401, 403].includes(res.status) || couchQuirk(method, path, res)]).toEqual([path, true]);
    }
    // CouchDB 3 has no /_config (404 there); the embedded server refuses it.
    const oldConfig = await send(couch, 'PUT', '/_config/admins/' + p.mallory, { headers: userCouch(), raw: JSON.stringify('owned') });
    expect([401, 403, 404]).toContain(oldConfig.status);
    const admins = await send(couch, 'GET', '/_node/_local/_config/admins', { headers: adminCouch() });
    if (admins.status === 200) expect(Object.keys(admins.body)).not.toContain(p.mallory);
    const session = await send(couch, 'GET', '/_session', { headers: userCouch() });
    expect(session.body.userCtx.roles).not.toContain('_admin');
  });

  it("another user's document is missing, the whole of _users is forbidden: 4xx, never 500", async () => {
    // 404 on the embedded server (as CouchDB with an open _users), 403 on CouchDB 3.4's default.
    expect([403, 404]).toContain((await send(couch, 'GET', '/_users/org.couchdb.user:' + p.alice, { headers: userCouch() })).status);
    expect((await send(couch, 'GET', '/_users/org.couchdb.user:' + p.alice)).status).toBeGreaterThanOrEqual(401);
    for (const path of ['/_users/_all_docs', '/_users/_changes', '/_users']) {
      const res = await send(couch, 'GET', path, { headers: userCouch() });
      expect([401, 403]).toContain(res.status);
    }
    expect((await send(couch, 'GET', '/_users/_all_docs')).status).toBe(401);
  });

  it('a user cannot raise their own roles, and a stored _admin role makes nobody an admin', async () => {
    const own = (await send(couch, 'GET', '/_users/org.couchdb.user:' + p.mallory, { headers: userCouch() })).body;
    const raise = await send(couch, 'PUT', '/_users/org.couchdb.user:' + p.mallory, { headers: userCouch(), body: { ...own, roles: ['_admin'] } });
    expect(raise.status).toBe(403);
    const signup = await send(couch, 'PUT', '/_users/org.couchdb.user:sneaky-' + p.mallory, { body: { name: 'sneaky-' + p.mallory, type: 'user', roles: ['_admin'], password: 'x' } });
    expect(signup.status).toBeGreaterThanOrEqual(400);
    expect(signup.status).toBeLessThan(500);
    const after = (await send(couch, 'GET', '/_users/org.couchdb.user:' + p.mallory, { headers: adminCouch() })).body;
    expect(after.roles).toEqual([]);
  });

  it('anonymous callers create, delete and administer nothing', async () => {
    for (const [method, path] of [
      ['PUT', '/made-by-anyone'],
      ['DELETE', '/' + p.registryDb],
      ['GET', '/_all_dbs'],
      ['GET', '/_node/_local/_config'],
      ['GET', '/' + p.registryDb + '-tokens/_all_docs'],
      ['PUT', '/' + p.registryDb + '/_design/evil'],
    ]) {
      const res = await send(couch, method, path, { body: method === 'PUT' ? {} : undefined });
      expect([method, path, res.status]).toEqual([method, path, 401]);
    }
  });

  it('forged proxy headers and forged session cookies count as nobody', async () => {
    const forged = { 'X-Auth-CouchDB-UserName': p.admin.name, 'X-Auth-CouchDB-Roles': '_admin', 'X-Auth-CouchDB-Token': 'f'.repeat(64) };
    expect((await send(couch, 'GET', '/_all_dbs', { headers: forged })).status).toBe(401);
    const cookie = { cookie: 'AuthSession=' + Buffer.from(p.admin.name + ':9999999999:' + '0'.repeat(64)).toString('base64url') };
    expect((await send(couch, 'GET', '/_all_dbs', { headers: cookie })).status).toBe(401);
  });

  it('a session cookie from POST /_session works for its user only (Fauxton logs in this way)', async () => {
    const login = await send(couch, 'POST', '/_session', { body: { name: p.admin.name, password: p.admin.password } });
    expect(login.status).toBe(200);
    const cookie = (login.headers.get('set-cookie') as string).split(';')[0];
    expect(cookie).toMatch(/^AuthSession=./);
    expect((await send(couch, 'GET', '/_all_dbs', { headers: { cookie } })).status).toBe(200);
    const userLogin = await send(couch, 'POST', '/_session', { body: { name: p.mallory, password: p.passwords[p.mallory] } });
    const userCookie = (userLogin.headers.get('set-cookie') as string).split(';')[0];
    expect([401, 403]).toContain((await send(couch, 'GET', '/_all_dbs', { headers: { cookie: userCookie } })).status);
    expect((await send(couch, 'POST', '/_session', { body: { name: p.mallory, password: 'wrong' } })).status).toBe(401);
  });

  (embedded ? it : it.skip)('passwords are stored with a modern work factor (embedded server)', async () => {
    const doc = (await send(couch, 'GET', '/_users/org.couchdb.user:' + p.alice, { headers: adminCouch() })).body;
    expect(doc.password).toBeUndefined();
    expect(doc).toMatchObject({ password_scheme: 'pbkdf2', pbkdf2_prf: 'sha256' });
    expect(doc.iterations).toBeGreaterThanOrEqual(600_000);
    const config = JSON.parse(readFileSync(join(p.dataDir, 'couchdb', 'config.json'), 'utf8'));
    const [, , iterations] = String(config.admins.admin).split(',');
    expect(Number(iterations)).toBeGreaterThanOrEqual(1_300_000);
    expect(JSON.stringify(config)).not.toContain(p.admin.password);
  });

  (embedded ? it : it.skip)('an admin added through /_config is hashed with the same work factor, and can log in (embedded server)', async () => {
    const added = await send(couch, 'PUT', '/_config/admins/second-admin', { headers: adminCouch(), raw: JSON.stringify('second-admin-password') });
    expect(added.status).toBe(200);
    const config = JSON.parse(readFileSync(join(p.dataDir, 'couchdb', 'config.json'), 'utf8'));
    expect(String(config.admins['second-admin'])).toMatch(/^-pbkdf2-[0-9a-f]{40},[0-9a-f]+,(\d+)$/);
    expect(Number(String(config.admins['second-admin']).split(',')[2])).toBeGreaterThanOrEqual(1_300_000);
    expect((await send(couch, 'GET', '/_all_dbs', { headers: { authorization: basic('second-admin', 'second-admin-password') } })).status).toBe(200);
    expect((await send(couch, 'GET', '/_all_dbs', { headers: { authorization: basic('second-admin', 'wrong') } })).status).toBe(401);
  });

  (embedded ? it : it.skip)('the generated admin password is written to DATA_DIR only, never printed', async () => {
    expect(p.admin.password.length).toBeGreaterThan(16);
    expect(p.registry.output()).not.toContain(p.admin.password);
    expect(p.registry.output()).toContain('admin-password');
  });
});

describe('the gateway', () => {
  it('reserved document ids are never reached: the anonymous user look-up that killed the process is 401, 404 when logged in', async () => {
    for (const path of ['/-/user/org.couchdb.user:_local%2Fx', '/-/user/org.couchdb.user:_design%2Fapp', '/-/user/org.couchdb.user:x_local%2Fy']) {
      expect((await send(gateway, 'GET', path)).status).toBe(401);
      expect((await send(gateway, 'GET', path, { headers: as('user') })).status).toBe(404);
    }
    for (const path of ['/_local%2Fx', '/_design%2Fapp', '/_users', '/_all_docs']) {
      const res = await send(gateway, 'GET', path);
      expect(res.status).toBe(404);
      expect(typeof res.body.error).toBe('string');
    }
    expect((await send(gateway, 'GET', '/-/ping')).status).toBe(200);
  });

  it('a package whose name merely contains _local or _design is its own document', async () => {
    for (const name of ['my_local', 'x_design']) {
      expect((await send(gateway, 'PUT', '/' + name, { headers: as('maintainer'), body: publishBody(name, '1.0.0') })).status).toBe(201);
      const doc = await send(gateway, 'GET', '/' + name);
      expect(doc.status).toBe(200);
      expect(doc.body.name).toBe(name);
    }
  });

  it('user names are not disclosed to anonymous callers, even with ?write=true', async () => {
    for (const name of [p.alice, 'nobody-here']) {
      const res = await send(gateway, 'GET', '/-/user/org.couchdb.user:' + name + '?write=true');
      expect(res.status).toBe(401);
      expect(JSON.stringify(res.body)).not.toContain('@example.com');
    }
  });

  it('a token path with a percent sign is decoded once: 404, not 500', async () => {
    for (const path of ['/-/user/token/%25zz', '/-/user/token/%zz', '/-/npm/v1/tokens/token/%25zz']) {
      const res = await send(gateway, 'DELETE', path, { headers: as('maintainer') });
      expect([400, 404]).toContain(res.status);
      expect(typeof res.body.error).toBe('string');
    }
  });

  it('a body nested 5,000 levels deep gets 400 and nothing is written', async () => {
    const before = await stored('victim');
    const body = publishBody('victim', '9.0.0');
    (body.versions['9.0.0'] as Record<string, unknown>).config = 'DEEP';
    const raw = JSON.stringify(body).replace('"DEEP"', '{"a":'.repeat(5000) + '"leaf"' + '}'.repeat(5000));
    const res = await send(gateway, 'PUT', '/victim', { headers: as('maintainer'), raw });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(/nests deeper/);
    let array = '';
    for (let i = 0; i < 5000; i++) array = '[' + array + ']';
    expect((await send(gateway, 'PUT', '/victim', { headers: as('maintainer'), raw: array })).status).toBe(400);
    expect(await stored('victim')).toEqual(before);
  });

  it('a maintainer PUT without revision cannot unpublish the other versions or drop tags', async () => {
    const before = await stored('victim');
    const body = publishBody('victim', '1.0.0') as Record<string, unknown>;
    delete body._attachments;
    const res = await send(gateway, 'PUT', '/victim', { headers: as('maintainer'), body });
    expect(res.status).toBe(409);
    expect(res.body.error).toMatch(/-rev/);
    expect(await stored('victim')).toEqual(before);
  });

  it('an identical retry of a stored publish succeeds and changes nothing; other bytes are refused', async () => {
    const before = await stored('victim');
    const retry = await send(gateway, 'PUT', '/victim', { headers: as('maintainer'), body: publishBody('victim', '1.2.0') });
    expect(retry.status).toBe(201);
    expect(await stored('victim')).toEqual(before);
    const other = await send(gateway, 'PUT', '/victim', { headers: as('maintainer'), body: publishBody('victim', '1.2.0', Buffer.from('other bytes')) });
    expect(other.status).toBe(403);
  });

  it('failed logins for one account lock only that account from that address; others and tokens keep working', async () => {
    // An account of its own: the lock holds for the whole process (both ports), and later tests log
    // the maintainer in with a password.
    const victim = p.alice + '-locked';
    const signup = await send(gateway, 'PUT', '/-/user/org.couchdb.user:' + victim, { body: { name: victim, password: 'victim-pw-1', email: victim + '@example.com' } });
    expect(signup.status).toBe(201);
    let last;
    for (let i = 0; i < 11; i++) last = await send(gateway, 'GET', '/-/whoami', { headers: { authorization: basic(victim, 'guess-' + i) } });
    expect(last!.status).toBe(429);
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
    // The right password too, from this address, for now.
    expect((await send(gateway, 'GET', '/-/whoami', { headers: { authorization: basic(victim, 'victim-pw-1') } })).status).toBe(429);
    // Same address, other account: the admin and another user still log in with passwords.
    expect((await send(gateway, 'GET', '/-/whoami', { headers: as('admin') })).status).toBe(200);
    expect((await send(gateway, 'GET', '/-/whoami', { headers: { authorization: basic(p.mallory, p.passwords[p.mallory]) } })).body.username).toBe(p.mallory);
    // The victim's tokens are not throttled.
    expect((await send(gateway, 'GET', '/-/whoami', { headers: { authorization: 'Bearer ' + signup.body.token } })).body.username).toBe(victim);
  });
});

describe('authorization matrix on the gateway: every write × every principal', () => {
  /** Expected outcome: 'ok' (2xx) or the refusal status. */
  const expected: Record<Principal, number | 'ok'> = { anonymous: 401, user: 403, maintainer: 'ok', readonly: 403, revoked: 401, admin: 'ok' };
  const writes: { name: string; expect?: Partial<Record<Principal, number | 'ok'>>; run: (principal: Principal, pkg: string) => Promise<number> }[] = [
    { name: 'publish a new version', run: async (who, pkg) => (await send(gateway, 'PUT', '/' + pkg, { headers: as(who), body: publishBody(pkg, '2.0.0') })).status },
    { name: 'add a dist-tag', run: async (who, pkg) => (await send(gateway, 'PUT', '/-/package/' + pkg + '/dist-tags/beta', { headers: as(who), body: '1.0.0' })).status },
    { name: 'remove a dist-tag', run: async (who, pkg) => (await send(gateway, 'DELETE', '/-/package/' + pkg + '/dist-tags/next', { headers: as(who) })).status },
    {
      name: 'deprecate a version',
      run: async (who, pkg) => {
        const doc = (await send(gateway, 'GET', '/' + pkg + '?write=true', { headers: as('maintainer') })).body;
        doc.versions['1.0.0'].deprecated = 'do not use';
        return (await send(gateway, 'PUT', '/' + pkg + '/-rev/' + doc._rev, { headers: as(who), body: doc })).status;
      },
    },
    {
      name: 'add an owner',
      run: async (who, pkg) => {
        const doc = (await send(gateway, 'GET', '/' + pkg + '?write=true', { headers: as('maintainer') })).body;
        return (await send(gateway, 'PUT', '/' + pkg + '/-rev/' + doc._rev, { headers: as(who), body: { _id: pkg, _rev: doc._rev, maintainers: [...doc.maintainers, { name: p.mallory }] } })).status;
      },
    },
    {
      name: 'unpublish a version',
      run: async (who, pkg) => {
        const doc = (await send(gateway, 'GET', '/' + pkg + '?write=true', { headers: as('maintainer') })).body;
        delete doc.versions['1.1.0'];
        return (await send(gateway, 'PUT', '/' + pkg + '/-rev/' + doc._rev, { headers: as(who), body: doc })).status;
      },
    },
    {
      name: 'unpublish the package',
      run: async (who, pkg) => {
        const doc = (await send(gateway, 'GET', '/' + pkg + '?write=true', { headers: as('maintainer') })).body;
        return (await send(gateway, 'DELETE', '/' + pkg + '/-rev/' + doc._rev, { headers: as(who) })).status;
      },
    },
    {
      name: 'star it',
      expect: { user: 'ok' },
      run: async (who, pkg) => {
        const doc = (await send(gateway, 'GET', '/' + pkg + '?write=true', { headers: as('maintainer') })).body;
        const user = who === 'user' ? p.mallory : who === 'admin' ? p.admin.name : p.alice;
        return (await send(gateway, 'PUT', '/' + pkg, { headers: as(who), body: { _id: pkg, _rev: doc._rev, users: { [user]: true } } })).status;
      },
    },
  ];

  describe.each(writes.map((w, i) => [w.name, i] as const))('%s', (_name, index) => {
    it.each(PRINCIPALS)('as %s', async (principal) => {
      const write = writes[index];
      // Each cell works on a package of its own (alice's, versions 1.0.0 to 1.2.0, tags latest and next).
      const pkg = 'matrix-' + index + '-' + principal;
      for (const version of ['1.0.0', '1.1.0', '1.2.0']) {
        const body = publishBody(pkg, version);
        if (version === '1.1.0') (body as Record<string, unknown>)['dist-tags'] = { next: '1.1.0' };
        expect((await send(gateway, 'PUT', '/' + pkg, { headers: as('maintainer'), body })).status).toBe(201);
      }
      const before = await stored(pkg);
      const status = await write.run(principal, pkg);
      const want = (write.expect || {})[principal] ?? expected[principal];
      if (want === 'ok') {
        expect([write.name, principal, status >= 200 && status < 300]).toEqual([write.name, principal, true]);
        expect((await stored(pkg))._rev).not.toBe(before._rev);
      } else {
        expect([write.name, principal, status]).toEqual([write.name, principal, want]);
        expect(await stored(pkg)).toEqual(before);
      }
    });
  });
});

describe('authorization matrix on the CouchDB port', () => {
  it.each([
    ['anonymous', [401]],
    ['user', [401, 403]],
  ] as const)('as %s: every admin operation is refused (%j)', async (who, statuses) => {
    const headers = who === 'user' ? userCouch() : {};
    const victim = await stored('victim');
    const app = await stored('_design/app');
    const security = (await send(couch, 'GET', '/' + p.registryDb + '/_security', { headers: adminCouch() })).body;
    const operations: [string, string, unknown?][] = [
      ['POST', '/_replicate', { source: p.registryDb, target: 'copy' }],
      ['PUT', '/_replicator/job-' + who, { source: p.registryDb, target: 'copy' }],
      ['GET', '/_node/_local/_config'],
      ['GET', '/_all_dbs'],
      ['GET', '/_users/_all_docs'],
      ['PUT', '/' + p.registryDb + '/_security', { admins: {}, members: {} }],
      ['PUT', '/' + p.registryDb + '/_design/evil', { views: {} }],
      ['DELETE', '/' + p.registryDb + '/_design/app?rev=' + app._rev],
      ['PUT', '/new-database-' + who],
      ['DELETE', '/' + p.registryDb],
      ['GET', '/' + p.registryDb + '-tokens/_all_docs'],
      ['PUT', '/' + p.registryDb + '/victim', { ...victim, versions: {} }],
    ];
    for (const [method, path, body] of operations) {
      const res = await send(couch, method, path, { headers, body });
      expect([method, path, (statuses as readonly number[]).includes(res.status) || couchQuirk(method, path, res)]).toEqual([method, path, true]);
    }
    expect(await stored('victim')).toEqual(victim);
    expect((await stored('_design/app'))._rev).toBe(app._rev);
    expect((await send(couch, 'GET', '/' + p.registryDb + '/_security', { headers: adminCouch() })).body).toEqual(security);
    expect((await send(couch, 'GET', '/copy', { headers: adminCouch() })).status).toBe(404);
  });

  it.each(['anonymous', 'user'] as const)("as %s: writing the local document _local/_security changes no database's _security", async (who) => {
    // The embedded server keeps `_security` in that local document; any member could write local documents.
    const headers = who === 'user' ? userCouch() : {};
    const security = (await send(couch, 'GET', '/' + p.registryDb + '/_security', { headers: adminCouch() })).body;
    const evil = { admins: { names: [p.mallory], roles: [] }, members: { names: [p.mallory], roles: [] } };
    const local = { _id: '_local/_security', _rev: '0-1', security: evil };
    const writes: [string, string, unknown?][] = [
      ['PUT', '/' + p.registryDb + '/_local/_security', local],
      ['PUT', '/' + p.registryDb + '/_local%2F_security', local],
      ['POST', '/' + p.registryDb, local],
      ['POST', '/' + p.registryDb + '/_bulk_docs', { docs: [local] }],
      ['POST', '/' + p.registryDb + '/_bulk_docs', { new_edits: false, docs: [local] }],
      ['DELETE', '/' + p.registryDb + '/_local/_security?rev=0-1'],
    ];
    for (const [method, path, body] of writes) {
      const res = await send(couch, method, path, { headers, body });
      if (embedded) {
        const refused = [401, 403].includes(res.status) || (Array.isArray(res.body) && res.body.every((item: { error?: string }) => item.error === 'forbidden'));
        expect([method, path, res.status, refused]).toEqual([method, path, res.status, true]);
      }
      expect([method, path, (await send(couch, 'GET', '/' + p.registryDb + '/_security', { headers: adminCouch() })).body]).toEqual([method, path, security]);
    }
    expect((await send(gateway, 'GET', '/victim')).status).toBe(200);
  });

  it('a document of a database closed to its members (the tokens) is read by the admin only, whether it exists or not', async () => {
    const tokens = '/' + p.registryDb + '-tokens/';
    // A token's document (its design document sorts first when no token's hash starts with a digit).
    const rows = (await send(couch, 'GET', tokens + '_all_docs', { headers: adminCouch() })).body.rows as { id: string }[];
    const id = rows.map((row) => row.id).find((docId) => !docId.startsWith('_')) as string;
    for (const path of [tokens + encodeURIComponent(id), tokens + 'no-such-token']) {
      for (const headers of [{}, userCouch()]) {
        const res = await send(couch, 'GET', path, { headers });
        expect([path, [401, 403].includes(res.status), res.body && res.body._id]).toEqual([path, true, undefined]);
      }
    }
    const own = await send(couch, 'GET', tokens + encodeURIComponent(id), { headers: adminCouch() });
    expect([own.status, own.body._id]).toEqual([200, id]);
    expect(own.headers.get('etag')).toBe('"' + own.body._rev + '"');
    const missing = await send(couch, 'GET', tokens + 'no-such-token', { headers: adminCouch() });
    expect([missing.status, missing.body]).toEqual([404, { error: 'not_found', reason: 'missing' }]);
  });

  it('an attachment of a database closed to its members is read by the admin only, with its digest as ETag', async () => {
    const db = '/' + p.registryDb + '-closed';
    expect((await send(couch, 'PUT', db, { headers: adminCouch() })).status).toBe(201);
    try {
      await send(couch, 'PUT', db + '/_security', { headers: adminCouch(), body: { admins: { names: [], roles: [] }, members: { names: [], roles: ['_admin'] } } });
      const data = Buffer.from('closed bytes').toString('base64');
      expect((await send(couch, 'PUT', db + '/doc', { headers: adminCouch(), body: { _attachments: { 'f.tgz': { content_type: 'application/octet-stream', data } } } })).status).toBe(201);
      for (const headers of [{}, userCouch()]) {
        const res = await send(couch, 'GET', db + '/doc/f.tgz', { headers });
        expect([[401, 403].includes(res.status), String(res.body).includes('closed bytes')]).toEqual([true, false]);
      }
      const own = await send(couch, 'GET', db + '/doc/f.tgz', { headers: adminCouch() });
      expect([own.status, own.body]).toEqual([200, 'closed bytes']);
      const etag = own.headers.get('etag') as string;
      // fetch adds `cache-control: no-cache` to a request with If-None-Match unless it has one.
      const again = { ...adminCouch(), 'if-none-match': etag, 'cache-control': 'max-age=0' };
      expect((await send(couch, 'GET', db + '/doc/f.tgz', { headers: again })).status).toBe(304);
      expect((await send(couch, 'GET', db + '/doc/other.tgz', { headers: adminCouch() })).status).toBe(404);
    } finally {
      await send(couch, 'DELETE', db, { headers: adminCouch() });
    }
  });

  it("an admin's attachment read follows the document: bytes replaced, an attachment removed, the document deleted", async () => {
    const db = '/' + p.registryDb + '-attachments';
    expect((await send(couch, 'PUT', db, { headers: adminCouch() })).status).toBe(201);
    try {
      const attach = (text: string) => ({ content_type: 'application/octet-stream', data: Buffer.from(text).toString('base64') });
      const read = async (file: string) => {
        const res = await send(couch, 'GET', db + '/doc/' + file, { headers: adminCouch() });
        return [res.status, res.status === 200 ? res.body : res.body.error, res.headers.get('etag')];
      };
      let rev = (await send(couch, 'PUT', db + '/doc', { headers: adminCouch(), body: { _attachments: { 'a.tgz': attach('first bytes'), 'b.tgz': attach('other') } } })).body.rev;
      const [, firstBody, firstTag] = await read('a.tgz');
      expect([firstBody, (await read('b.tgz'))[1]]).toEqual(['first bytes', 'other']);
      rev = (await send(couch, 'PUT', db + '/doc', { headers: adminCouch(), body: { _rev: rev, _attachments: { 'a.tgz': attach('second bytes') } } })).body.rev;
      const [status, body, tag] = await read('a.tgz');
      expect([status, body, tag === firstTag]).toEqual([200, 'second bytes', false]);
      expect((await read('b.tgz')).slice(0, 2)).toEqual([404, 'not_found']);
      expect((await send(couch, 'DELETE', db + '/doc?rev=' + rev, { headers: adminCouch() })).status).toBe(200);
      expect((await read('a.tgz')).slice(0, 2)).toEqual([404, 'not_found']);
    } finally {
      await send(couch, 'DELETE', db, { headers: adminCouch() });
    }
  });

  it("a database's information is current for the admin, and its start time is the one replication checkpoints compare", async () => {
    const info = async () => {
      const res = await send(couch, 'GET', '/' + p.registryDb, { headers: adminCouch() });
      expect(res.status).toBe(200);
      return res.body as { db_name: string; doc_count: number; update_seq: unknown; instance_start_time: string };
    };
    const before = await info();
    expect(before.db_name).toBe(p.registryDb);
    expect((await send(gateway, 'PUT', '/db-info-probe', { headers: as('maintainer'), body: publishBody('db-info-probe', '1.0.0') })).status).toBe(201);
    const after = await info();
    expect([after.doc_count, after.update_seq === before.update_seq]).toEqual([before.doc_count + 1, false]);
    // CouchDB's replicator stops a job whose source or target reports another start time at a checkpoint.
    const commit = await send(couch, 'POST', '/' + p.registryDb + '/_ensure_full_commit', { headers: { ...adminCouch(), 'content-type': 'application/json' } });
    expect([commit.status, commit.body.instance_start_time]).toEqual([201, after.instance_start_time]);
  });

  it('as admin: the same reads are allowed', async () => {
    for (const path of ['/_all_dbs', '/_users/_all_docs', '/' + p.registryDb + '-tokens/_all_docs', '/' + p.registryDb + '/_security']) {
      expect([path, (await send(couch, 'GET', path, { headers: adminCouch() })).status]).toEqual([path, 200]);
    }
  });
});

describe('client addresses behind a reverse proxy', () => {
  it('X-Forwarded-For is ignored unless TRUST_PROXY names the proxy; then each client is throttled on its own', async () => {
    const { startTestRegistry } = await import('../helpers/registry');
    for (const [trust, separate] of [['', false], ['loopback', true]] as const) {
      const registry = await startTestRegistry(trust ? { TRUST_PROXY: trust } : {});
      try {
        const name = 'proxied-' + Math.random().toString(36).slice(2, 8);
        await registry.signup(name, 'right-password');
        const from = (address: string, password: string) =>
          registry.request('GET', '/-/whoami', { headers: { authorization: basic(name, password), 'x-forwarded-for': address } });
        for (let i = 0; i < 10; i++) await from('203.0.113.1', 'wrong-' + i);
        expect((await from('203.0.113.1', 'right-password')).status).toBe(429);
        // Another client behind the same proxy: its own pair when the proxy is trusted, the same one otherwise.
        expect((await from('203.0.113.2', 'right-password')).status).toBe(separate ? 200 : 429);
      } finally {
        await registry.stop();
      }
    }
  });
});

describe('deny by default on the CouchDB port (issue 23, holes 2, 4, 7, 8, 11)', () => {
  /** Every kind of caller the CouchDB port may see that is neither an admin nor the gateway. */
  const outsiders = async (): Promise<[string, Record<string, string>][]> => {
    const login = await send(couch, 'POST', '/_session', { body: { name: p.mallory, password: p.passwords[p.mallory] } });
    const cookie = String(login.headers.get('set-cookie')).split(';')[0];
    return [
      ['anonymous', {}],
      ['a plain user (Basic)', userCouch()],
      ['a plain user (session cookie)', { cookie }],
      ['the maintainer (Basic)', { authorization: basic(p.alice, p.passwords[p.alice]) }],
      ['a read-only token', { authorization: 'Bearer ' + p.tokens.readonly }],
      ['a publish token', { authorization: 'Bearer ' + p.tokens.alice }],
      ['a revoked token', { authorization: 'Bearer ' + p.tokens.revoked }],
      ['proxy headers without the secret', { 'X-Auth-CouchDB-UserName': p.alice, 'X-Auth-CouchDB-Roles': 'registry-gateway,registry-reader,_admin', 'X-Auth-CouchDB-Token': '0'.repeat(64) }],
    ];
  };
  const json = { 'content-type': 'application/json' };

  it('nobody but the gateway, replication, readers and admins reads anything of any database: GET and POST endpoints alike', async () => {
    const reads = (db: string): [string, string, unknown?][] => [
      ['GET', '/' + db],
      ['GET', '/' + db + '/victim'],
      ['GET', '/' + db + '/victim/victim-1.0.0.tgz'],
      ['GET', '/' + db + '/_all_docs?include_docs=true'],
      ['POST', '/' + db + '/_all_docs?include_docs=true', { keys: ['victim'] }],
      ['GET', '/' + db + '/_changes?include_docs=true'],
      ['POST', '/' + db + '/_changes?include_docs=true', {}],
      ['GET', '/' + db + '/_design_docs'],
      ['GET', '/' + db + '/_design/app/_view/byMaintainer?include_docs=true'],
      ['POST', '/' + db + '/_find', { selector: {} }],
      ['POST', '/' + db + '/_find', { selector: { type: 'webhook' } }],
      ['POST', '/' + db + '/_explain', { selector: {} }],
      ['POST', '/' + db + '/_bulk_get', { docs: [{ id: 'victim' }] }],
      ['GET', '/' + db + '/_index'],
      ['POST', '/' + db + '/_index', { index: { fields: ['name'] } }],
      ['POST', '/' + db + '/_revs_diff', { victim: ['1-x'] }],
      ['GET', '/' + db + '/_local/x'],
    ];
    const failures: unknown[] = [];
    for (const [who, headers] of await outsiders()) {
      for (const db of [p.registryDb, p.registryDb + '-mirror', p.registryDb + '-tokens', p.registryDb + '-state', p.registryDb + '-stage', p.registryDb + '-downloads']) {
        for (const [method, path, body] of reads(db)) {
          const res = await send(couch, method, path, { headers: body === undefined ? headers : { ...headers, ...json }, body });
          const text = typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
          if (![401, 403].includes(res.status) || /tarball of victim|"victim"|"type":"(token|webhook)"/.test(text)) failures.push([who, method, path, res.status, text.slice(0, 120)]);
        }
      }
    }
    expect(failures).toEqual([]);
    expect(await stored('_design/app')).toBeTruthy();
  });

  it("sign-up through the gateway never copies roles from the request: nobody gets the gateway's, replication's or a reader's role", async () => {
    const name = 'roles-' + p.mallory;
    const password = 'roles-pw-' + Math.random().toString(36).slice(2);
    const roles = ['registry-gateway', 'registry-replicator', 'registry-reader', '_admin'];
    const signup = await send(gateway, 'PUT', '/-/user/org.couchdb.user:' + name, { body: { _id: 'org.couchdb.user:' + name, name, password, type: 'user', roles, email: name + '@example.com' } });
    expect(signup.status).toBe(201);
    try {
      expect((await send(couch, 'GET', '/_users/org.couchdb.user:' + name, { headers: adminCouch() })).body.roles).toEqual([]);
      const own = { authorization: basic(name, password) };
      expect([401, 403]).toContain((await send(couch, 'POST', '/' + p.registryDb + '/_find', { headers: own, body: { selector: {} } })).status);
      expect((await send(couch, 'GET', '/_session', { headers: own })).body.userCtx.roles).toEqual([]);
    } finally {
      const doc = await send(couch, 'GET', '/_users/org.couchdb.user:' + name, { headers: adminCouch() });
      if (doc.status === 200) await send(couch, 'DELETE', '/_users/org.couchdb.user:' + name + '?rev=' + doc.body._rev, { headers: adminCouch() });
    }
  });

  it('a downstream reader account (role registry-reader) reads the package databases, and nothing else', async () => {
    const source = new URL(await readerSource(p.registry.couchUrl.replace('://', '://' + encodeURIComponent(p.admin.name) + ':' + encodeURIComponent(p.admin.password) + '@'), p.registryDb));
    const reader = { authorization: basic(decodeURIComponent(source.username), decodeURIComponent(source.password)) };
    expect((await send(couch, 'GET', '/' + p.registryDb + '/victim', { headers: reader })).body.name).toBe('victim');
    expect((await send(couch, 'POST', '/' + p.registryDb + '/_find', { headers: reader, body: { selector: { name: 'victim' } } })).body.docs.map((d: { name: string }) => d.name)).toEqual(['victim']);
    for (const db of [p.registryDb + '-tokens', p.registryDb + '-state', p.registryDb + '-stage', p.registryDb + '-downloads']) {
      expect((await send(couch, 'POST', '/' + db + '/_find', { headers: reader, body: { selector: {} } })).status).toBe(403);
    }
    // Its replication checkpoints are local documents; a package it cannot write.
    expect((await send(couch, 'PUT', '/' + p.registryDb + '/_local/checkpoint-' + Date.now(), { headers: reader, body: { history: [] } })).status).toBe(201);
    const victim = await stored('victim');
    expect((await send(couch, 'PUT', '/' + p.registryDb + '/victim', { headers: reader, body: { ...victim, description: 'by the reader' } })).status).toBe(403);
    if (embedded) {
      // A local document is bounded as CouchDB bounds documents (the 300 MB one of issue 23).
      const big = await send(couch, 'PUT', '/' + p.registryDb + '/_local/big', { headers: reader, raw: JSON.stringify({ fill: 'x'.repeat(9_000_000) }) });
      expect([big.status, big.body.error]).toEqual([413, 'too_large']);
    }
    expect((await send(couch, 'GET', '/' + p.registryDb + '/_local/big', { headers: adminCouch() })).status).toBe(404);
    expect(await stored('victim')).toEqual(victim);
  });

  it('no outsider writes a package, a local document or an attachment: not even the maintainer, not in front of a mirrored package', async () => {
    const victim = await stored('victim');
    const tarball = Buffer.from('forged bytes');
    const forged = publishBody('victim', '9.0.0', tarball);
    const newer = {
      ...victim,
      versions: { ...victim.versions, '9.0.0': { ...forged.versions['9.0.0'], dist: { ...forged.versions['9.0.0'].dist, integrity: 'sha512-' + 'A'.repeat(86) + '==' } } },
      time: { ...victim.time, '9.0.0': '2001-01-01T00:00:00.000Z' },
      'dist-tags': { latest: '9.0.0' },
      _attachments: { ...victim._attachments, ...forged._attachments },
    };
    const registryId = (await send(couch, 'GET', '/' + p.registryDb + '/_design/mirror', { headers: adminCouch() })).body.registry;
    const front = { ...publishBody('left-pad', '99.0.0'), maintainers: [{ name: p.mallory }], time: { '99.0.0': new Date().toISOString() }, origin: registryId };
    const failures: unknown[] = [];
    for (const [who, headers] of await outsiders()) {
      const writes: [string, string, unknown][] = [
        ['PUT', '/' + p.registryDb + '/victim', newer],
        ['POST', '/' + p.registryDb + '/_bulk_docs', { docs: [newer] }],
        ['POST', '/' + p.registryDb + '/_bulk_docs', { new_edits: false, docs: [{ ...newer, _rev: '99-' + 'f'.repeat(32) }] }],
        ['PUT', '/' + p.registryDb + '/left-pad', front],
        ['POST', '/' + p.registryDb, front],
        ['PUT', '/' + p.registryDb + '/_local/fill', { fill: 'x'.repeat(100_000) }],
        ['PUT', '/' + p.registryDb + '-mirror/left-pad', { ...front, origin: 'https://registry.npmjs.org' }],
        ['PUT', '/' + p.registryDb + '-state/webhook:evil', { type: 'webhook', url: 'http://evil.example' }],
      ];
      for (const [method, path, body] of writes) {
        const res = await send(couch, method, path, { headers: { ...headers, ...json }, body });
        const refused = [401, 403].includes(res.status) || (Array.isArray(res.body) && res.body.every((item: { error?: string }) => item.error === 'forbidden'));
        if (!refused) failures.push([who, method, path, res.status, JSON.stringify(res.body).slice(0, 120)]);
      }
      const attachment = await send(couch, 'PUT', '/' + p.registryDb + '/victim/victim-9.0.0.tgz?rev=' + victim._rev, { headers: { ...headers, 'content-type': 'application/octet-stream' }, raw: 'forged bytes' });
      if (![401, 403].includes(attachment.status)) failures.push([who, 'attachment', attachment.status]);
    }
    expect(failures).toEqual([]);
    expect(await stored('victim')).toEqual(victim);
    for (const path of ['/' + p.registryDb + '/left-pad', '/' + p.registryDb + '/_local/fill', '/' + p.registryDb + '-mirror/left-pad', '/' + p.registryDb + '-state/webhook:evil']) {
      expect([path, (await send(couch, 'GET', path, { headers: adminCouch() })).status]).toEqual([path, 404]);
    }
    // The gateway still publishes for the maintainer.
    expect((await send(gateway, 'PUT', '/victim', { headers: as('maintainer'), body: publishBody('victim', '1.3.0') })).status).toBe(201);
  });

  it('multipart uploads: refused to outsiders before anything is written, and an admin\'s leave no temporary file behind', async () => {
    const marker = 'multipart-marker-' + Math.random().toString(36).slice(2);
    const part = (type: string) => {
      const boundary = 'xyzzy' + Math.random().toString(36).slice(2);
      const file = marker + 'z'.repeat(2_000_000);
      const body = type === 'form'
        ? '--' + boundary + '\r\nContent-Disposition: form-data; name="_attachments"; filename="evil.tgz"\r\nContent-Type: application/octet-stream\r\n\r\n' + file + '\r\n--' + boundary + '--\r\n'
        : '--' + boundary + '\r\nContent-Type: application/json\r\n\r\n{"_id":"multi","_attachments":{"evil.tgz":{"follows":true,"content_type":"application/octet-stream","length":' + file.length + '}}}\r\n--' + boundary + '\r\nContent-Disposition: attachment; filename="evil.tgz"\r\n\r\n' + file + '\r\n--' + boundary + '--\r\n';
      return { body, contentType: (type === 'form' ? 'multipart/form-data' : 'multipart/related') + '; boundary=' + boundary };
    };
    const victim = await stored('victim');
    for (const [who, headers] of await outsiders()) {
      for (const [method, path, type] of [['POST', '/victim', 'form'], ['PUT', '/multi', 'related'], ['PUT', '/victim', 'related']] as const) {
        const { body, contentType } = part(type);
        const res = await send(couch, method, '/' + p.registryDb + path, { headers: { ...headers, 'content-type': contentType }, raw: body });
        expect([who, method, path, res.status >= 400 && res.status < 500]).toEqual([who, method, path, true]);
      }
    }
    // An admin's upload that fails (no _rev: 400) and one that lands in a scratch database.
    const { body, contentType } = part('form');
    const failed = await send(couch, 'POST', '/' + p.registryDb + '/victim', { headers: { ...adminCouch(), 'content-type': contentType }, raw: body });
    expect(failed.status).toBeGreaterThanOrEqual(400);
    expect(failed.status).toBeLessThan(500);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { readdirSync } = await import('fs');
    const left = readdirSync(p.tempDir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .filter((entry) => readFileSync(join(entry.parentPath, entry.name)).includes(marker));
    expect(left.map((entry) => entry.name)).toEqual([]);
    expect(await stored('victim')).toEqual(victim);
    expect((await send(couch, 'GET', '/' + p.registryDb + '/multi', { headers: adminCouch() })).status).toBe(404);
  });

  (embedded ? it : it.skip)('the CouchDB port answers only requests that name it in Host (DNS rebinding); deep JSON is a 400 (embedded server)', async () => {
    const http = await import('http');
    const ask = (host: string | undefined, path = '/', body?: string) => new Promise<{ status: number; body: any }>((resolve, reject) => {
      const url = new URL(couch);
      const headers: Record<string, string> = { ...adminCouch(), 'content-type': 'application/json' };
      if (host !== undefined) headers.host = host;
      const request = http.request({ host: url.hostname, port: url.port, path, method: body ? 'PUT' : 'GET', headers, setHost: host === undefined }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (c: Buffer) => chunks.push(c));
        response.on('end', () => resolve({ status: response.statusCode || 0, body: JSON.parse(Buffer.concat(chunks).toString() || 'null') }));
      });
      request.on('error', reject);
      request.end(body);
    });
    const port = new URL(couch).port;
    for (const host of ['127.0.0.1:' + port, 'localhost:' + port, '[::1]:' + port]) expect([host, (await ask(host)).status]).toEqual([host, 200]);
    for (const host of ['evil.example:' + port, 'evil.example', '127.0.0.1', '127.0.0.1:1', 'localhost.evil.example:' + port]) {
      const res = await ask(host, '/' + p.registryDb + '/victim');
      expect([host, res.status, res.body.error]).toEqual([host, 400, 'bad_request']);
      expect(res.body.reason).toMatch(/Host/);
    }
    for (const deep of ['{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000), '['.repeat(50_000) + ']'.repeat(50_000)]) {
      const res = await ask(undefined, '/' + p.registryDb + '/deep', deep);
      expect([res.status, res.body.error]).toEqual([400, 'bad_request']);
    }
    expect((await send(couch, 'GET', '/' + p.registryDb + '/deep', { headers: adminCouch() })).status).toBe(404);
  });
});
