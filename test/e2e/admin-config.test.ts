/**
 * An admin surface that cannot break the registry: the access rules (`_design/access`) and the
 * supply-chain policy (`supply-chain` in `<db>-state`) are checked when written, with the PUTs Fauxton
 * sends (the whole document with its `_rev`), on the CouchDB port and through the gateway's
 * `/-/couchdb/`; and a broken configuration that is there anyway (written before the check existed)
 * fails `/-/health` with the reason, while reads say an admin must fix that document.
 *
 * CouchDB runs no validate_doc_update for design documents (couch_db:validate_doc_update/3 checks
 * only that the writer is an admin), so on a real CouchDB `_design/access` is checked by the
 * gateway's proxy, and on the embedded server by the server itself, however it is written.
 */
import { rmSync } from 'fs';
import { join } from 'path';
import { publishBody, send } from '../helpers/principals';
import { basicAuthOf, restartTestRegistry, startTestRegistry, TestRegistry } from '../helpers/registry';
import { RunningRegistry } from '../../server/registry';

const onRealCouch = !!process.env.COUCHDB_URL;

/** A request to CouchDB itself, as its admin (Fauxton on the CouchDB port). */
async function couch(registry: { adminCouchUrl: string }, method: string, path: string, body?: unknown) {
  return send(new URL(registry.adminCouchUrl).origin, method, path, { body, headers: { authorization: basicAuthOf(registry.adminCouchUrl) } });
}

/** The same request through the gateway's port, as the same admin. */
async function proxied(registry: { adminCouchUrl: string; localUrl: string }, method: string, path: string, body?: unknown) {
  return send(registry.localUrl + '/-/couchdb', method, path, { body, headers: { authorization: basicAuthOf(registry.adminCouchUrl) } });
}

const BROKEN_RULES = [{ package: '@acme/*', reed: ['$authenticated'], publish: ['role:acme'] }, { package: '**', read: ['$all'], publish: ['$authenticated'] }];
const VALID_RULES = [{ package: '@acme/*', read: ['$authenticated'], publish: ['$authenticated'] }, { package: '**', read: ['$all'], publish: ['$authenticated'] }];

describe('configuration is checked when it is written', () => {
  let registry: TestRegistry;
  let token: string;

  beforeAll(async () => {
    registry = await startTestRegistry();
    token = await registry.signup('config-publisher');
    expect((await registry.request('PUT', '/plain-pkg', { token, body: publishBody('plain-pkg', '1.0.0') })).status).toBe(201);
  });
  afterAll(() => registry?.stop());

  const accessPath = () => '/' + registry.registryDb + '/_design/access';

  it.each([
    ['through the gateway\'s /-/couchdb/', proxied],
    ['on the CouchDB port', couch],
  ])('%s, invalid rules saved as Fauxton saves them are refused, saying what is wrong; reads keep working', async (where, ask) => {
    if (where === 'on the CouchDB port' && onRealCouch) return; // CouchDB validates no design document: the proxy is the checked path there
    const live = (await couch(registry, 'GET', accessPath())).body;
    const refused = await ask(registry, 'PUT', accessPath(), { ...live, rules: BROKEN_RULES });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe('forbidden');
    expect(refused.body.reason).toContain('rule 0 of "rules" has the unknown field "reed": a rule has only "package", "read" and "publish"');
    const deleted = await ask(registry, 'DELETE', accessPath() + '?rev=' + live._rev);
    expect(deleted.status).toBe(403);
    expect(deleted.body.reason).toContain('would leave no access rules');
    expect((await couch(registry, 'GET', accessPath())).body._rev).toBe(live._rev);
    expect((await send(registry.localUrl, 'GET', '/plain-pkg')).status).toBe(200);
    expect((await send(registry.localUrl, 'GET', '/-/health')).body.checks.accessRules.ok).toBe(true);
  });

  it('a COPY over _design/access is refused through /-/couchdb/, and a PUT without a JSON content type is checked all the same', async () => {
    const copied = await send(registry.localUrl + '/-/couchdb', 'COPY', '/' + registry.registryDb + '/plain-pkg', { headers: { authorization: basicAuthOf(registry.adminCouchUrl), destination: '_design%2Faccess' } });
    expect(copied.status).toBe(403);
    expect(copied.body.reason).toContain('a COPY over it is refused');
    const live = (await couch(registry, 'GET', accessPath())).body;
    const plain = await send(registry.localUrl + '/-/couchdb', 'PUT', accessPath(), { headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'text/plain' }, raw: JSON.stringify({ ...live, rules: 'none' }) });
    expect(plain.status).toBe(403);
    const valid = await send(registry.localUrl + '/-/couchdb', 'PUT', accessPath(), { headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'text/plain' }, raw: JSON.stringify(live) });
    expect(valid.status).toBe(201);
  });

  it('on the embedded server, _bulk_docs cannot slip invalid rules in either', async () => {
    if (onRealCouch) return;
    const live = (await couch(registry, 'GET', accessPath())).body;
    const bulk = await couch(registry, 'POST', '/' + registry.registryDb + '/_bulk_docs', { docs: [{ ...live, rules: { package: '**' } }] });
    expect(bulk.body[0].error).toBe('forbidden');
    expect(bulk.body[0].reason).toContain('"rules" must be a list of rules, such as');
  });

  it('valid rules saved through /-/couchdb/ are taken: a scope becomes private', async () => {
    expect((await registry.request('PUT', '/@acme/tool', { token, body: publishBody('@acme/tool', '1.0.0') })).status).toBe(201);
    const live = (await couch(registry, 'GET', accessPath())).body;
    const saved = await proxied(registry, 'PUT', accessPath(), { ...live, rules: VALID_RULES });
    expect(saved.status).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 2100)); // the rules are read every two seconds
    expect((await send(registry.localUrl, 'GET', '/@acme%2ftool')).status).toBe(401);
    expect((await registry.request('GET', '/@acme%2ftool', { token })).status).toBe(200);
  });

  it('the supply-chain policy is refused on the CouchDB port when an entry is malformed, and a version range is taken', async () => {
    const path = '/' + registry.registryDb + '-state/supply-chain';
    const live = (await couch(registry, 'GET', path)).body;
    for (const [blocked, words] of [
      [[{ package: 'event-stream', version: 'latest', reason: 'malicious' }], '"version" "latest" is neither a version nor a semver range'],
      [[{ package: 'event-stream', version: '3.3.6' }], 'needs a "reason"'],
      [[{ pakage: 'event-stream', reason: 'malicious' }], 'unknown field "pakage"'],
      [[{ package: 'event stream', reason: 'malicious' }], 'not a package pattern'],
    ] as const) {
      const refused = await couch(registry, 'PUT', path, { ...live, blocked });
      expect(refused.status).toBe(403);
      expect(refused.body.reason).toContain('The supply-chain policy ("supply-chain") was not saved: block 0 of "blocked"');
      expect(refused.body.reason).toContain(words);
    }
    const misspelt = await couch(registry, 'PUT', path, { ...live, cooldownExeptions: ['typescript'] });
    expect(misspelt.status).toBe(403);
    expect(misspelt.body.reason).toContain('unknown field "cooldownExeptions"');
    const saved = await couch(registry, 'PUT', path, { ...live, blocked: [{ package: 'event-stream', version: '>=3.3.6 <3.3.7', reason: 'malicious (flatmap-stream)' }] });
    expect(saved.status).toBe(201);
  });
});

describe('configuration broken anyway (written before it was checked)', () => {
  it('invalid access rules: /-/health fails with the reason, reads answer that an admin must fix _design/access, and fixing it through /-/couchdb/ brings reads back', async () => {
    const first = await startTestRegistry();
    const token = await first.signup('broken-publisher');
    expect((await first.request('PUT', '/kept-pkg', { token, body: publishBody('kept-pkg', '1.0.0') })).status).toBe(201);
    let running: RunningRegistry & { adminCouchUrl: string } = first;
    try {
      const path = '/' + first.registryDb + '/_design/access';
      if (onRealCouch) {
        const live = (await couch(first, 'GET', path)).body;
        expect((await couch(first, 'PUT', path, { ...live, rules: BROKEN_RULES })).status).toBe(201);
      } else {
        // As an older version of the registry left it: written into the stopped server's database.
        await first.close();
        const PouchDB = require('pouchdb');
        const db = new PouchDB(join(first.dataDir, 'couchdb', first.registryDb));
        const live = await db.get('_design/access');
        await db.put({ ...live, rules: BROKEN_RULES });
        await db.close();
        running = await restartTestRegistry(first);
      }
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const health = await send(running.localUrl, 'GET', '/-/health');
      expect(health.status).toBe(503);
      expect(health.body.status).toBe('unhealthy');
      expect(health.body.checks.accessRules.ok).toBe(false);
      expect(health.body.reasons.join('\n')).toContain('accessRules: the rules in _design/access of ' + first.registryDb + ' are invalid (rule 0 of "rules" has the unknown field "reed"');

      const read = await send(running.localUrl, 'GET', '/kept-pkg');
      expect(read.status).toBe(503);
      expect(read.body.error).toContain('its access rules in _design/access are invalid (rule 0 of "rules" has the unknown field "reed"');
      expect(read.body.error).toContain('An admin must fix that document');
      const page = await send(running.localUrl, 'GET', '/kept-pkg', { headers: { accept: 'text/html' } });
      expect(page.status).toBe(503);
      expect(String(page.body)).toContain('An admin must fix that document');

      // A start of the registry (its own push of _design/access) keeps an admin's rules as they are.
      const live = (await couch(running, 'GET', path)).body;
      expect(live.rules).toEqual(BROKEN_RULES);
      expect((await proxied(running, 'PUT', path, { ...live, rules: VALID_RULES })).status).toBe(201);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      expect((await send(running.localUrl, 'GET', '/kept-pkg')).status).toBe(200);
      expect((await send(running.localUrl, 'GET', '/-/health')).body.status).toBe('ok');
    } finally {
      if (running === first) await first.stop();
      else {
        await running.close();
        rmSync(first.dataDir, { recursive: true, force: true });
      }
    }
  });

  it('an invalid supply-chain policy: /-/health reports it (degraded), mirrored packages answer that an admin must fix it, local ones are served', async () => {
    const upstream = await startTestRegistry();
    const mirror = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'mirror' });
    try {
      const upToken = await upstream.signup('upstream-publisher');
      expect((await upstream.request('PUT', '/from-upstream', { token: upToken, body: publishBody('from-upstream', '1.0.0') })).status).toBe(201);
      const token = await mirror.signup('local-publisher');
      expect((await mirror.request('PUT', '/local-pkg', { token, body: publishBody('local-pkg', '1.0.0') })).status).toBe(201);
      expect((await send(mirror.localUrl, 'GET', '/from-upstream')).status).toBe(200);

      // Before `_design/config` existed in the state database, anything was saved.
      const state = '/' + mirror.registryDb + '-state';
      const check = (await couch(mirror, 'GET', state + '/_design/config')).body;
      expect((await couch(mirror, 'DELETE', state + '/_design/config?rev=' + check._rev)).status).toBe(200);
      const live = (await couch(mirror, 'GET', state + '/supply-chain')).body;
      expect((await couch(mirror, 'PUT', state + '/supply-chain', { ...live, blocked: [{ package: 'from-upstream', versions: ['1.0.0'], reason: 'bad' }] })).status).toBe(201);
      await new Promise((resolve) => setTimeout(resolve, 2500)); // the policy is read every two seconds

      const health = await send(mirror.localUrl, 'GET', '/-/health');
      expect(health.status).toBe(200);
      expect(health.body.status).toBe('degraded');
      expect(health.body.checks.supplyChainPolicy.ok).toBe(false);
      expect(health.body.checks.supplyChainPolicy.detail).toContain('is invalid: block 0 of "blocked" has the unknown field "versions"');
      const mirrored = await send(mirror.localUrl, 'GET', '/from-upstream');
      expect(mirrored.status).toBe(503);
      expect(mirrored.body.error).toContain('the supply-chain policy (document "supply-chain" in ' + mirror.registryDb + '-state) is invalid');
      expect(mirrored.body.error).toContain('an admin must fix that document');
      const tarball = await send(mirror.localUrl, 'GET', '/from-upstream/-/from-upstream-1.0.0.tgz');
      expect(tarball.status).toBe(403);
      expect(tarball.body.error).toContain('an admin must fix that document');
      expect((await send(mirror.localUrl, 'GET', '/local-pkg')).status).toBe(200);
    } finally {
      await mirror.stop();
      await upstream.stop();
    }
  });
});
