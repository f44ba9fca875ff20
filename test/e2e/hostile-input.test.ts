/**
 * A corpus of generated malformed and hostile requests (names, paths, encodings, bodies, auth
 * headers, nesting, sizes) against both ports the registry opens: the npm gateway and the CouchDB
 * port. Every answer is below 500 and arrives within 10 s, the process stays up and never reaches its
 * last-resort handler, nothing of a database is readable on the CouchDB port (none of the callers is
 * an admin or the gateway; `_find`, `_bulk_get`, `_explain`, `_index`, multipart and `_local` included),
 * and what is stored (packages, users, tokens, replications, databases, local documents, temporary
 * files) is exactly what it was. The corpus is the same on every run (a seeded generator). It reaches
 * the endpoints of trusted publishing too: a non-maintainer's trusts, garbage and unsigned JWTs at the
 * exchange (test/e2e/trusted-publishing.test.ts has the issuer whose keys sit at a private address).
 * Provenance bundles sent with a publish (npm publish --provenance) are probed on their own: huge, not
 * JSON, not a bundle, under crafted attachment names.
 */
import { createHash } from 'crypto';
import { readdirSync } from 'fs';
import { basic, couchQuirk, Principals, publishBody, send, startPrincipals } from '../helpers/principals';
import { provenanceBundle, purl } from '../helpers/sigstore';

let p: Principals;

/** A small deterministic generator (mulberry32), so that a failure can be replayed. */
function generator(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Probe {
  port: 'gateway' | 'couch';
  method: string;
  path: string;
  headers: Record<string, string>;
  raw?: string;
}

const HOSTILE_NAMES = [
  'victim', '_local/x', '_local%2Fx', '_design/app', '_design%2Fapp', '_users', '_all_docs', '_changes', '_replicator', '..', '%2e%2e',
  '..%2f..%2fetc%2fpasswd', '%00', '%zz', '%', '%25zz', 'a'.repeat(300), 'ü', '%C3%BC', '%E2%80%AE', '<script>', '%3Cscript%3E', '@x/y', '@x%2fy',
  '@%2e%2e/x', 'org.couchdb.user:admin', '-', '.', '__proto__', 'constructor', 'prototype', 'x_local', 'x%2F_local%2Fy', '%2F', ' ', '%20',
  'victim%00', 'VICTIM', 'node_modules', 'favicon.ico', '@victim', '@', '%40', '*', '**', '~', '%7E', 'a%2F..%2F..%2Fb',
];

const GATEWAY_PATHS = (n: string): string[] => [
  '/' + n, '/' + n + '/latest', '/' + n + '/-/' + n + '-1.0.0.tgz', '/' + n + '/-rev/1-x', '/' + n + '/-/x.tgz/-rev/1-x', '/' + n + '?write=true',
  '/-/user/org.couchdb.user:' + n, '/-/user/org.couchdb.user:' + n + '/-rev/1-x', '/-/user/token/' + n, '/-/npm/v1/tokens/token/' + n,
  '/-/package/' + n + '/dist-tags', '/-/package/' + n + '/dist-tags/' + n, '/-/v1/search?text=' + n + '&size=' + n, '/-/v1/done?sessionId=' + n,
  '/-/replicate/_changes?since=' + n + '&limit=' + n, '/-/whoami', '/-/npm/v1/user', '/-/npm/v1/tokens', '/-/replication', '/-/v1/login',
  '/-/npm/v1/security/advisories/bulk', '/-/all', '/' + n + '/' + n + '/' + n + '/' + n,
  // Pages, operations and the supply-chain endpoints.
  '/', '/' + n + '/v/' + n, '/-/web/search?q=' + n, '/-/web/login?next=' + n, '/-/web/logout', '/-/web/account', '/-/web/account/tokens/revoke', '/-/web/account/password',
  '/-/static/' + n, '/-/health', '/-/metrics',
  '/-/npm/v1/keys', '/-/npm/v1/attestations/' + n + '@' + n, '/-/npm/v1/attestations/' + n,
  // Trusted publishing: the trusts of a package (npm trust) and the exchange of a CI's ID token.
  '/-/package/' + n + '/trust', '/-/package/' + n + '/trust/' + n, '/-/npm/v1/oidc/token/exchange/package/' + n,
  // Staged publishing (npm stage) and a package's staging requirement.
  '/-/stage', '/-/stage?package=' + n + '&page=' + n + '&perPage=' + n, '/-/stage/package/' + n, '/-/stage/' + n, '/-/stage/' + n + '/approve',
  '/-/stage/' + n + '/tarball', '/-/package/' + n + '/staging',
];

const COUCH_PATHS = (n: string, db: string): string[] => [
  '/_replicate', '/_replicator', '/_replicator/' + n, '/_config', '/_config/admins/' + n, '/_node/_local/_config', '/_node/_local/_config/admins/' + n,
  '/_all_dbs', '/_active_tasks', '/_session', '/_users', '/_users/_all_docs', '/_users/org.couchdb.user:' + n, '/_users/' + n, '/_users/' + n + '/att',
  '/' + db + '/_security', '/' + db + '/_design/access', '/' + db + '/_design/app', '/' + db + '/' + n, '/' + db + '/' + n + '/' + n + '-1.0.0.tgz',
  '/' + db + '/_bulk_docs', '/' + db + '/_all_docs', '/' + db + '/_local/' + n, '/' + db + '/_index', '/' + db + '/_purge', '/' + db + '/_compact',
  '/' + db + '-tokens/_all_docs', '/' + db + '-tokens/' + n, '/' + n, '/_utils/..%2f..%2fpackage.json', '/' + db + '/_changes?feed=' + n + '&since=' + n,
  '/' + db + '/_design/app/_view/' + n, '/' + db + '/_find',
  // Every POST endpoint of the databases (issue 23: express-pouchdb answered _find and _bulk_get as an admin's).
  '/' + db + '/_bulk_get', '/' + db + '/_explain', '/' + db + '/_index', '/' + db + '/_revs_diff', '/' + db + '/_all_docs?include_docs=true',
  '/' + db + '-state/_find', '/' + db + '-tokens/_find', '/' + db + '-tokens/_bulk_get', '/' + db + '-mirror/_find', '/' + db + '-mirror/' + n,
  '/' + db, '/' + db + '/_local/' + n, '/' + db + '/' + n + '?rev=1-x',
  '/' + db + '-stage/_find', '/' + db + '-stage/_all_docs?include_docs=true', '/' + db + '-stage/' + n, '/' + db + '-stage/_changes',
];

const METHODS = ['GET', 'GET', 'PUT', 'PUT', 'POST', 'DELETE', 'HEAD', 'PATCH', 'OPTIONS', 'COPY'];

function bodies(db: string): (string | undefined)[] {
  return [
    undefined, '', '{', 'null', '[]', '"text"', '12', 'true', '{"__proto__":{"roles":["_admin"]},"name":"victim"}',
    '[' .repeat(3000) + ']'.repeat(3000), '{"a":'.repeat(3000) + '1' + '}'.repeat(3000),
    JSON.stringify({ source: '_users', target: 'leak', create_target: true }),
    JSON.stringify({ source: db + '-tokens', target: db, create_target: true }),
    JSON.stringify({ _id: '_design/app', views: {} }),
    JSON.stringify({ docs: [{ _id: '_design/evil', validate_doc_update: 'function(){}' }], new_edits: false }),
    JSON.stringify({ docs: [{ _id: 'victim', _rev: '99-ffff', name: 'victim', versions: {}, time: {} }], new_edits: false }),
    JSON.stringify({ admins: { names: ['mallory'], roles: [] }, members: { names: [], roles: [] } }),
    JSON.stringify({ _id: 'org.couchdb.user:evil', name: 'evil', type: 'user', roles: ['_admin'], password: 'x' }),
    JSON.stringify({ name: 'victim', versions: { '1.0.0': { name: 'victim', version: '1.0.0' } } }),
    JSON.stringify({ name: 'victim', maintainers: [{ name: 'mallory' }] }),
    JSON.stringify({ name: 'victim', 'dist-tags': { latest: '../../x' }, versions: { 'not a version': {} }, _attachments: { 'victim-1.0.0.tgz': { data: '!!!' } } }),
    JSON.stringify({ ...publishBody('victim', '1.0.0', Buffer.from('replaced bytes')) }),
    JSON.stringify({ ...publishBody('victim', '3.0.0'), versions: { '3.0.0': { name: 'victim', version: '3.0.0', scripts: { postinstall: 'curl evil' }, dist: {} } } }),
    JSON.stringify({ name: 'x'.repeat(100_000) }),
    // Wrong passwords for an account that does not exist: a real CouchDB locks an account out after
    // five failures from one address (the admin too, whom the rest of the suite needs).
    JSON.stringify({ password: 'p', name: 'nobody-at-all', cidr_whitelist: ['0.0.0.0/0'], readonly: false }),
    'name=nobody-at-all&password=wrong',
    '\u0000\u0001\u0002',
    '%7B%7D',
    // The POST endpoints' own bodies.
    JSON.stringify({ selector: {} }),
    JSON.stringify({ selector: { type: 'webhook' }, fields: ['secret', 'url'] }),
    JSON.stringify({ docs: [{ id: 'victim' }, { id: '_design/app' }] }),
    JSON.stringify({ index: { fields: ['user'] }, name: 'evil', type: 'json' }),
    JSON.stringify({ keys: ['victim'] }),
    JSON.stringify({ victim: ['1-x'] }),
    JSON.stringify({ _id: '_local/x', fill: 'x'.repeat(200_000) }),
    // Two-factor authentication and granular tokens (POST /-/npm/v1/user, /-/npm/v1/tokens).
    JSON.stringify({ tfa: { password: 'wrong', mode: 'auth-and-writes' } }),
    JSON.stringify({ tfa: ['000000', '111111'] }),
    JSON.stringify({ tfa: [{ __proto__: { pending: true } }] }),
    JSON.stringify({ tfa: { password: 'p', mode: '__proto__' }, email: 'x@example.com' }),
    JSON.stringify({ password: 'p', packages: { length: 3 }, scopes: [null], expires: 1e308, packages_and_scopes_permission: ['read-write'] }),
    JSON.stringify({ password: 'p', packages: ['a'.repeat(300)], expires: -1, orgs: ['x'], bypass_2fa: 'yes' }),
    // Trusted publishing (POST /-/package/<name>/trust): a trust for the attacker's repository, odd shapes.
    JSON.stringify([{ type: 'github', claims: { repository: 'mallory/x', workflow_ref: { file: 'x.yml' } }, permissions: ['createPackage'] }]),
    JSON.stringify([{ type: 'gitlab', claims: { project_path: 'mallory/x', ci_config_ref_uri: { file: '../../.gitlab-ci.yml' } }, issuer: 'http://127.0.0.1:1' }]),
    JSON.stringify([{ type: '__proto__', claims: { __proto__: { repository: 'x' } } }, ...Array.from({ length: 10 }, () => ({ type: 'circleci' }))]),
    // Multipart bodies (express-pouchdb wrote them to temporary files).
    '--x\r\nContent-Disposition: form-data; name="_attachments"; filename="evil.tgz"\r\nContent-Type: application/octet-stream\r\n\r\n' + 'z'.repeat(50_000) + '\r\n--x--\r\n',
    '--x\r\nContent-Type: application/json\r\n\r\n{"_id":"victim","_attachments":{"e.tgz":{"follows":true,"length":3}}}\r\n--x\r\n\r\nabc\r\n--x--\r\n',
  ];
}

/** The first two parts of a JWT (header and claims), unsigned. */
const jwt = (header: object, claims: object): string => Buffer.from(JSON.stringify(header)).toString('base64url') + '.' + Buffer.from(JSON.stringify(claims)).toString('base64url');

function authHeaders(principals: Principals): Record<string, string>[] {
  const forgedProxy = { 'X-Auth-CouchDB-UserName': 'admin', 'X-Auth-CouchDB-Roles': '_admin', 'X-Auth-CouchDB-Token': '0'.repeat(64) };
  return [
    {}, {}, {},
    { authorization: 'Bearer garbage' },
    { authorization: 'Bearer ' + principals.tokens.revoked },
    { authorization: 'Bearer ' + principals.tokens.readonly },
    // A real user who maintains nothing here: deeper into every route, refused by the rules.
    { authorization: 'Bearer ' + principals.tokens.mallory },
    { authorization: basic(principals.mallory, principals.passwords[principals.mallory]) },
    { authorization: 'Bearer ' },
    { authorization: 'Basic !!!' },
    { authorization: 'Basic ' + Buffer.from(':').toString('base64') },
    { authorization: basic('nobody-at-all', 'wrong') },
    { authorization: basic(principals.mallory, 'wrong password') },
    { authorization: 'Digest username="admin"' },
    { authorization: 'Bearer ' + 'x'.repeat(6000) },
    // JWTs for the exchange of trusted publishing: unsigned (alg none) from an unlisted loopback issuer, empty, huge.
    { authorization: 'Bearer ' + jwt({ alg: 'none' }, { iss: 'http://127.0.0.1:1', aud: 'npm:127.0.0.1', exp: 9999999999, project_path: 'victim' }) + '.' },
    { authorization: 'Bearer ' + jwt({ alg: 'HS256', kid: '../../etc/passwd' }, { iss: 'https://evil.example' }) + '.' + 'A'.repeat(43) },
    { authorization: 'Bearer e30.e30.e30' },
    { authorization: 'Bearer ' + jwt({ alg: 'RS256' }, { iss: 'x'.repeat(20_000) }) + '.sig' },
    forgedProxy,
    { cookie: 'AuthSession=' + Buffer.from('admin:9999999999:' + 'a'.repeat(64)).toString('base64url') },
    { cookie: 'AuthSession=%zz; other=1' },
    { 'x-forwarded-for': '10.0.0.1' },
  ];
}

const CONTENT_TYPES = ['application/json', 'application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'multipart/related; boundary=x', 'application/octet-stream'];

function corpus(principals: Principals, size: number): Probe[] {
  const random = generator(20261201);
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)];
  const db = principals.registryDb;
  const allBodies = bodies(db);
  const auths = authHeaders(principals);
  const probes: Probe[] = [];
  for (let i = 0; i < size; i++) {
    const port = i % 2 === 0 ? 'gateway' : 'couch';
    const name = pick(HOSTILE_NAMES);
    const path = pick(port === 'gateway' ? GATEWAY_PATHS(name) : COUCH_PATHS(name, db));
    const method = pick(METHODS);
    const raw = method === 'GET' || method === 'HEAD' ? undefined : pick(allBodies);
    const headers: Record<string, string> = { ...pick(auths) };
    if (raw !== undefined) headers['content-type'] = pick(CONTENT_TYPES);
    if (random() < 0.05) headers.accept = 'application/vnd.npm.install-v1+json';
    else if (random() < 0.2) headers.accept = 'text/html,application/xhtml+xml,*/*;q=0.8';
    if (random() < 0.05) headers.cookie = 'registry_session=' + pick([name, 'A'.repeat(43), '../../etc', '%00']);
    if (random() < 0.03) headers['if-none-match'] = '"' + 'x'.repeat(2000) + '"';
    if (port === 'couch' && method === 'COPY') headers.destination = pick(['_design/evil', '_local/x', 'copy-of-victim']);
    probes.push({ port, method, path, headers, raw });
  }
  return probes;
}

/** Everything an attack could change: packages, users, tokens, replications, databases, admins. */
async function snapshot(principals: Principals): Promise<unknown> {
  const admin = { authorization: basic(principals.admin.name, principals.admin.password) };
  const couch = principals.registry.couchUrl;
  const db = principals.registryDb;
  const get = async (path: string) => (await send(couch, 'GET', path, { headers: admin })).body;
  const docs = (result: { rows: { id: string; doc: Record<string, unknown> }[] }) => result.rows.map((row) => row.doc);
  const users = docs(await get('/_users/_all_docs?include_docs=true')).filter((doc) => String(doc._id).startsWith('org.couchdb.user:'));
  return {
    databases: ((await get('/_all_dbs')) as string[]).filter((name) => !name.startsWith('registry-') || name.startsWith(db)),
    registry: docs(await get('/' + db + '/_all_docs?include_docs=true')),
    security: await get('/' + db + '/_security'),
    tokens: docs(await get('/' + db + '-tokens/_all_docs?include_docs=true')).filter((doc) => doc.type === 'token'),
    staged: docs(await get('/' + db + '-stage/_all_docs?include_docs=true')),
    users: users.filter((doc) => doc.name === principals.alice || doc.name === principals.mallory || String(doc.name).startsWith('evil')),
    replications: docs(await get('/_replicator/_all_docs?include_docs=true')).filter((doc) => !String(doc._id).startsWith('_design/')),
    // Local documents of the hostile names (they are in no _all_docs), and no upload left on disk.
    local: await Promise.all(HOSTILE_NAMES.map(async (name) => (await send(couch, 'GET', '/' + db + '/_local/' + name, { headers: admin })).status)),
    temporaryFiles: readdirSync(principals.tempDir).length,
    admins: Object.keys((await get('/_node/_local/_config/admins')) || {}),
  };
}

beforeAll(async () => {
  p = await startPrincipals('hostile');
  const published = await send(p.registry.url, 'PUT', '/victim', { headers: { authorization: 'Bearer ' + p.tokens.alice }, body: publishBody('victim', '1.0.0') });
  expect(published.status).toBe(201);
  // A staged version of it, which nothing in the corpus may read, approve or reject.
  const staged = await send(p.registry.url, 'POST', '/-/stage/package/victim', { headers: { authorization: 'Bearer ' + p.tokens.alice }, body: publishBody('victim', '1.5.0') });
  expect(staged.status).toBe(201);
});
afterAll(() => p.stop());

it('1,200 hostile requests on both ports: no 5xx, no hang past 10 s, no crash, nothing stored changes', async () => {
  const before = await snapshot(p);
  const probes = corpus(p, 1200);
  const failures: string[] = [];
  let slowest = 0;
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < probes.length) {
      const probe = probes[next++];
      const base = probe.port === 'gateway' ? p.registry.url : p.registry.couchUrl;
      const answer = await send(base, probe.method, probe.path, { headers: probe.headers, raw: probe.raw });
      slowest = Math.max(slowest, answer.ms);
      statuses.set(answer.status, (statuses.get(answer.status) || 0) + 1);
      // Nothing of a database is readable on the CouchDB port by these callers (none is an admin or the gateway).
      const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body ?? '');
      if (probe.port === 'couch' && answer.status < 300 && /victim|"type":"(token|webhook|policy|staged)"|"_id":"(org\.couchdb\.user|_design)/.test(text)) {
        failures.push('readable: ' + probe.method + ' ' + probe.path + ' -> ' + answer.status + ' ' + text.slice(0, 160));
      }
      if (answer.status === 0 || (answer.status >= 500 && !(probe.port === 'couch' && couchQuirk(probe.method, probe.path.split('?')[0], answer)))) {
        failures.push(probe.port + ' ' + probe.method + ' ' + probe.path + ' [' + Object.keys(probe.headers).join(',') + '] ' + String(probe.raw).slice(0, 60) + ' -> ' + answer.status + ' ' + JSON.stringify(answer.body).slice(0, 160));
      }
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  expect(failures).toEqual([]);
  expect(slowest).toBeLessThan(10_000);
  expect((await send(p.registry.url, 'GET', '/-/ping')).status).toBe(200);
  expect(p.registry.child.exitCode).toBeNull();
  expect(p.registry.output()).not.toMatch(/unhandled rejection|uncaught exception/);
  expect(await snapshot(p)).toEqual(before);
  // The corpus reached the code, not only the front door: many distinct refusals came back.
  expect([...statuses.keys()].filter((s) => s >= 400).length).toBeGreaterThanOrEqual(5);
  expect(statuses.get(200) || 0).toBeGreaterThan(0);
  if (process.env.HOSTILE_REPORT) process.stdout.write(JSON.stringify(Object.fromEntries(statuses)) + ' slowest ' + slowest + ' ms\n');
});

it('provenance bundles: huge, not JSON, not a bundle, or under a crafted attachment name: 400, and nothing is stored', async () => {
  const before = await snapshot(p);
  const tarball = Buffer.from('tarball of victim@2.0.0');
  const base = publishBody('victim', '2.0.0', tarball);
  const good = provenanceBundle({ subject: [{ name: purl('victim', '2.0.0'), sha512: createHash('sha512').update(tarball).digest('hex') }] });
  const text = (data: string) => ({ content_type: 'application/vnd.dev.sigstore.bundle.v0.3+json', data, length: data.length });
  const withBundle = (key: string, attachment: unknown) => ({ ...base, _attachments: { ...base._attachments, [key]: attachment } });
  const goodText = text(JSON.stringify(good));
  const badCertificate = { ...good, verificationMaterial: { certificate: { rawBytes: Buffer.from('not a certificate').toString('base64') } } };
  const keyed = { ...good, verificationMaterial: { publicKey: { hint: 'some-key' } } };
  const manySignatures = { ...good, dsseEnvelope: { ...good.dsseEnvelope, signatures: Array.from({ length: 10_000 }, () => good.dsseEnvelope.signatures[0]) } };
  const probes: [string, string][] = [
    ['a bundle of 300,000 characters', JSON.stringify(withBundle('victim-2.0.0.sigstore', text(JSON.stringify({ ...good, padding: 'x'.repeat(300_000) }))))],
    ['a bundle of 8 MB', JSON.stringify(withBundle('victim-2.0.0.sigstore', text('{"x":"' + 'x'.repeat(8 * 1024 * 1024) + '"}')))],
    ['not JSON', JSON.stringify(withBundle('victim-2.0.0.sigstore', text('{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",')))],
    ['JSON nested 100,000 deep', JSON.stringify(withBundle('victim-2.0.0.sigstore', text('['.repeat(100_000) + ']'.repeat(100_000))))],
    ['"data" not a string', JSON.stringify(withBundle('victim-2.0.0.sigstore', { content_type: 'application/json', data: good }))],
    ['an empty bundle', JSON.stringify(withBundle('victim-2.0.0.sigstore', text('')))],
    ['a certificate that is not one', JSON.stringify(withBundle('victim-2.0.0.sigstore', text(JSON.stringify(badCertificate))))],
    ['a key instead of a certificate', JSON.stringify(withBundle('victim-2.0.0.sigstore', text(JSON.stringify(keyed))))],
    ['10,000 signatures', JSON.stringify(withBundle('victim-2.0.0.sigstore', text(JSON.stringify(manySignatures))))],
    ['the name of a published version\'s bundle', JSON.stringify(withBundle('victim-1.0.0.sigstore', goodText))],
    ['path traversal before the name', JSON.stringify(withBundle('../victim-2.0.0.sigstore', goodText))],
    ['path traversal after the name', JSON.stringify(withBundle('victim-2.0.0.sigstore/../../_users', goodText))],
    ['encoded path traversal', JSON.stringify(withBundle('%2e%2e%2fvictim-2.0.0.sigstore', goodText))],
    ['another scope\'s name', JSON.stringify(withBundle('@evil/victim-2.0.0.sigstore', goodText))],
    ['a tarball name with a bundle suffix', JSON.stringify(withBundle('victim-2.0.0.tgz.sigstore', goodText))],
    ['__proto__', JSON.stringify(base).replace('"_attachments":{', '"_attachments":{"__proto__":' + JSON.stringify(goodText) + ',')],
  ];
  const alice = { authorization: 'Bearer ' + p.tokens.alice, 'content-type': 'application/json' };
  for (const [what, raw] of probes) {
    const answer = await send(p.registry.url, 'PUT', '/victim', { headers: alice, raw });
    expect({ what, status: answer.status, error: typeof answer.body?.error }).toEqual({ what, status: 400, error: 'string' });
  }
  // A good bundle from a user who does not maintain the package is refused too.
  const mallory = await send(p.registry.url, 'PUT', '/victim', { headers: { authorization: 'Bearer ' + p.tokens.mallory }, body: withBundle('victim-2.0.0.sigstore', goodText) });
  expect(mallory.status).toBe(403);
  expect((await send(p.registry.url, 'GET', '/-/npm/v1/attestations/victim@2.0.0')).status).toBe(404);
  expect(p.registry.child.exitCode).toBeNull();
  expect(p.registry.output()).not.toMatch(/unhandled rejection|uncaught exception/);
  expect(await snapshot(p)).toEqual(before);
});
