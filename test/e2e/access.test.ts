/**
 * Access rules edited by an admin in `_design/access` (as in Fauxton): reads enforced by the gateway
 * (401 for anonymous so that npm asks for credentials), publishing enforced inside CouchDB, also for
 * writes made straight to it.
 */
import { readFileSync } from 'fs';
import { Couch } from '../../couchdb/client';
import { makePackage, npmClient, NpmClient } from '../helpers/npm';
import { basicAuthOf, couchGet, startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';
import { manifest, tarballOf } from '../unit/fixtures';

let registry: TestRegistry;
let alice: NpmClient;
let bob: NpmClient;
let anonymous: NpmClient;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RULE_CACHE_MS = 2100;

async function adminRequest(method: string, path: string, body?: unknown) {
  const response = await fetch(new URL(registry.adminCouchUrl).origin + path, {
    method,
    headers: { 'content-type': 'application/json', authorization: basicAuthOf(registry.adminCouchUrl) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
}

async function setRules(rules: unknown) {
  const current = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
  const saved = await adminRequest('PUT', '/' + registry.registryDb + '/_design/access', { ...current.body, rules });
  expect(saved.status).toBe(201);
  await sleep(RULE_CACHE_MS);
}

const withToken = (token: string): NpmClient => npmClient(registry.url, token);

beforeAll(async () => {
  registry = await startTestRegistry();
  const aliceToken = await registry.signup('alice');
  await registry.signup('bob');
  const user = await couchGet(registry, '/_users/org.couchdb.user:alice');
  expect((await adminRequest('PUT', '/_users/org.couchdb.user:alice', { ...user.body, roles: ['acme'] })).status).toBe(201);
  alice = withToken(aliceToken);
  bob = withToken((await registry.request('PUT', '/-/user/org.couchdb.user:bob', { body: { name: 'bob', password: 'password-bob' } })).body.token);
  anonymous = npmClient(registry.url);
  expect((await alice.npm(['publish'], makePackage(alice.home, { name: 'public-pkg', version: '1.0.0' }))).code).toBe(0);
});
afterAll(() => registry.stop());

it('the default rules are installed and visible to admins', async () => {
  const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
  expect(design.body.rules).toEqual([{ package: '**', read: ['$all'], publish: ['$authenticated'] }]);
  expect(design.body.validate_doc_update).toContain('function');
});

describe('a private scope', () => {
  beforeAll(() => setRules([
    { package: '@acme/*', read: ['$authenticated'], publish: ['role:acme'] },
    { package: '**', read: ['$all'], publish: ['$authenticated'] },
  ]));

  it('only the role may publish in it, through npm and straight to CouchDB', async () => {
    expect((await alice.npm(['publish'], makePackage(alice.home, { name: '@acme/secret', version: '1.0.0' }))).code).toBe(0);
    const refused = await bob.npm(['publish'], makePackage(bob.home, { name: '@acme/other', version: '1.0.0' }));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('not allowed to publish or change "@acme/other"');
    {
      const couch = new Couch(registry.adminCouchUrl, registry.proxySecret);
      const now = new Date().toISOString();
      const direct = await couch.putAs({ name: 'bob', roles: [] }, registry.registryDb, {
        _id: '@acme/direct', name: '@acme/direct', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': manifest('@acme/direct', '1.0.0') },
        time: { created: now, modified: now, '1.0.0': now }, maintainers: [{ name: 'bob' }], origin: registry.registryId,
        _attachments: { 'direct-1.0.0.tgz': { content_type: 'application/octet-stream', data: tarballOf('@acme/direct', '1.0.0').toString('base64') } },
      }).catch((e) => e);
      expect(direct.statusCode).toBe(403);
    }
    expect((await storedDoc(registry, '@acme/other')).status).toBe(404);
  });

  it('anonymous reads get 401 (npm asks to log in), logged-in users read and install', async () => {
    const res = await registry.request('GET', '/@acme%2fsecret');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('Basic');
    expect((await registry.request('GET', '/@acme/secret/-/secret-1.0.0.tgz')).status).toBe(401);
    const view = await anonymous.npm(['view', '@acme/secret']);
    expect(view.code).not.toBe(0);
    expect(view.stderr).toMatch(/E401|401/);
    expect((await bob.npm(['view', '@acme/secret', 'version'])).stdout.trim()).toBe('1.0.0');
    expect((await anonymous.npm(['view', 'public-pkg', 'version'])).stdout.trim()).toBe('1.0.0');
  });

  it('search hides what the caller may not read', async () => {
    const anon = await registry.request('GET', '/-/v1/search?text=secret');
    expect(anon.body.objects).toEqual([]);
    const bobToken = /:_authToken=(\S+)/.exec(readFileSync(bob.userconfig, 'utf8'))![1];
    const logged = await registry.request('GET', '/-/v1/search?text=secret', { token: bobToken });
    expect(logged.body.objects.map((o: any) => o.package.name)).toEqual(['@acme/secret']);
  });
});

describe('private mode', () => {
  beforeAll(async () => {
    // Held in memory, as read by anyone until now: the answer from memory follows the rules too.
    for (let i = 0; i < 2; i++) expect((await registry.request('GET', '/public-pkg')).status).toBe(200);
    await setRules([{ package: '**', read: ['$authenticated'], publish: ['$authenticated'] }]);
  });

  it('refuses every anonymous read with 401, and serves logged-in users', async () => {
    expect((await registry.request('GET', '/public-pkg')).status).toBe(401);
    expect((await registry.request('GET', '/-/package/public-pkg/dist-tags')).status).toBe(401);
    expect((await anonymous.npm(['view', 'public-pkg'])).code).not.toBe(0);
    expect((await bob.npm(['view', 'public-pkg', 'version'])).stdout.trim()).toBe('1.0.0');
  });
});

describe('broken rules', () => {
  // The embedded server refuses them when written (test/e2e/admin-config.test.ts writes them as an older
  // version left them); a real CouchDB runs no validation for design documents, so there they are saved.
  if (!process.env.COUCHDB_URL) {
    it('are refused when written on the CouchDB port, saying what is wrong', async () => {
      const current = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
      const refused = await adminRequest('PUT', '/' + registry.registryDb + '/_design/access', { ...current.body, rules: 'not a list' });
      expect(refused.status).toBe(403);
      expect(refused.body.reason).toContain('"rules" must be a list of rules');
      expect((await couchGet(registry, '/' + registry.registryDb + '/_design/access')).body._rev).toBe(current.body._rev);
    });
    return;
  }
  beforeAll(() => setRules('not a list'));
  afterAll(() => setRules([{ package: '**', read: ['$all'], publish: ['$authenticated'] }]));

  it('fail closed with a message for the admin', async () => {
    const read = await registry.request('GET', '/public-pkg');
    expect(read.status).toBe(503);
    expect(read.body.error).toContain('_design/access');
    // npm would try a 503 again twice, with waits of 10 s and more: once is enough here.
    const write = await alice.npm(['publish', '--fetch-retries=0'], makePackage(alice.home, { name: 'public-pkg', version: '1.1.0' }));
    expect(write.code).not.toBe(0);
  });
});
