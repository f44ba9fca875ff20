/**
 * Issue 28 attacked by nobody at all and by users with accounts: the packument fast path (an
 * anonymous read answered from memory before Express, gateway/fast-path.ts) and the pull-through hold
 * (a pulled package without a tarball yet waits to be stored, replication/mirror.ts, lib/batcher.ts).
 * Each attack asks whether the fast path or the hold gives anyone what Express refuses, or answers
 * otherwise than Express: the same URL with a query goes through Express, and a name that does not
 * exist is what a refused one must look like. Real registry processes: an upstream registry, a
 * mirroring one and a second gateway on its database.
 */
import { createHash } from 'crypto';
import { request as httpRequest } from 'http';
import { RunningRegistry } from '../../server/registry';
import { sha512 } from '../helpers/npm';
import { publishBody } from '../helpers/principals';
import { anotherGateway, basicAuthOf, couchGet, mirroredDoc, setSupplyChainPolicy, startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';
import { settled } from '../helpers/wait';

let upstream: TestRegistry;
let registry: TestRegistry;
/** Another gateway on the same database. */
let second: RunningRegistry;
let upToken: string;
let alice: string;
let bob: string;
let admin: string;
/** A word only the private packages have. */
const SECRET_WORD = 'zqxheldsecret';

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request exactly as written (no normalisation of the path, as a hostile client sends it). */
function raw(baseUrl: string, method: string, path: string, headers: Record<string, string> = {}): Promise<Raw> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, headers: { connection: 'close', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode || 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** What a client sees of an answer, but the date. */
const shown = (answer: Raw) => {
  const headers = { ...answer.headers };
  delete headers.date;
  return { status: answer.status, headers, body: answer.body };
};



const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function putRules(rules: unknown[], on: TestRegistry = registry): Promise<void> {
  const origin = new URL(on.adminCouchUrl).origin;
  const design = await couchGet(on, '/' + on.registryDb + '/_design/access');
  const put = await fetch(origin + '/' + on.registryDb + '/_design/access', {
    method: 'PUT', headers: { 'content-type': 'application/json', authorization: basicAuthOf(on.adminCouchUrl) }, body: JSON.stringify({ ...design.body, rules }),
  });
  expect(put.status).toBe(201);
}

const RULES = [
  { package: '@priv/*', read: ['$authenticated'], publish: ['$authenticated'] },
  { package: '@held/*', read: ['$authenticated'], publish: ['$authenticated'] },
  { package: '**', read: ['$all'], publish: ['$authenticated'] },
];

/** The ways a hostile client can spell the packument path of `@scope/name`. */
const spellings = (scope: string, name: string): string[] => [
  `/@${scope}/${name}`,
  `/@${scope}%2f${name}`,
  `/@${scope}%2F${name}`,
  `/%40${scope}%2f${name}`,
  `/%40${scope}/${name}`,
  `/@${scope}/${name}/`,
  `//@${scope}/${name}`,
  `/@${scope}//${name}`,
  `/@${scope}/./${name}`,
  `/@${scope}/x/../${name}`,
  `/@${scope}/${name}/.`,
  `/@${scope}%2f.%2f${name}`,
  `/@${scope}/%${name.charCodeAt(0).toString(16)}${name.slice(1)}`,
  `/@${scope.toUpperCase()}/${name}`,
];

const ACCEPTS = ['application/json', 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*', '*/*', 'APPLICATION/VND.NPM.INSTALL-V1+JSON', 'text/html'];

beforeAll(async () => {
  upstream = await startTestRegistry();
  upToken = await upstream.signup('upstreamer');
  const up = (name: string, version: string, tarball?: Buffer) => upstream.request('PUT', '/' + name, { token: upToken, body: publishBody(name, version, tarball) });
  for (const [name, version] of [['@corp/leak', '1.0.0'], ['@held/thing', '1.0.0'], ['blk', '1.0.0'], ['shadowed', '1.0.0'], ['held-at-stop', '1.0.0'], ['twice', '1.0.0'], ['from-up', '1.0.0']]) {
    expect((await up(name, version, Buffer.from('upstream tarball of ' + name + '@' + version + ' ' + SECRET_WORD))).status).toBe(201);
  }
  expect((await up('blk', '1.1.0')).status).toBe(201);
  // cool-pkg@1.0.0 as if published ten days ago, 2.0.0 just now (an admin's edit of the upstream's document).
  expect((await up('cool-pkg', '1.0.0')).status).toBe(201);
  expect((await up('cool-pkg', '2.0.0')).status).toBe(201);
  const cool = (await couchGet(upstream, '/' + upstream.registryDb + '/cool-pkg')).body;
  cool.time['1.0.0'] = new Date(Date.now() - 10 * 86_400_000).toISOString();
  cool.time.created = cool.time['1.0.0'];
  const origin = new URL(upstream.adminCouchUrl).origin;
  expect((await fetch(origin + '/' + upstream.registryDb + '/cool-pkg', { method: 'PUT', headers: { 'content-type': 'application/json', authorization: basicAuthOf(upstream.adminCouchUrl) }, body: JSON.stringify(cool) })).status).toBe(201);
  const env = { UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'mirror', REPLICATION_PRIVATE_SCOPES: '@corp', UPSTREAM_PREFETCH: '0' };
  registry = await startTestRegistry(env);
  second = await anotherGateway(registry, 'second', env);
  alice = await registry.signup('alice');
  bob = await registry.signup('bob');
  admin = await registry.adminToken();
  await putRules(RULES);
  await sleep(2100); // the rules are read again within 2 s
  const body = (name: string, version: string) => publishBody(name, version, Buffer.from('tarball of ' + name + '@' + version + ' ' + SECRET_WORD));
  expect((await registry.request('PUT', '/@priv/secret', { token: alice, body: body('@priv/secret', '1.0.0') })).status).toBe(201);
  expect((await registry.request('PUT', '/@open/pkg', { token: alice, body: publishBody('@open/pkg', '1.0.0') })).status).toBe(201);
  expect((await registry.request('PUT', '/fastpub', { token: alice, body: publishBody('fastpub', '1.0.0') })).status).toBe(201);
  expect((await registry.request('PUT', '/turns-private', { token: alice, body: body('turns-private', '1.0.0') })).status).toBe(201);
  // An org with alice (owner) and bob (member), and a private package of it.
  expect((await registry.request('PUT', '/-/org/acme/user', { token: alice, body: { user: 'alice', role: 'owner' } })).status).toBeLessThan(300);
  expect((await registry.request('PUT', '/-/org/acme/user', { token: alice, body: { user: 'bob', role: 'developer' } })).status).toBeLessThan(300);
  expect((await registry.request('PUT', '/@acme/hidden', { token: alice, body: body('@acme/hidden', '1.0.0') })).status).toBe(201);
  expect((await registry.request('POST', '/-/package/@acme%2fhidden/access', { token: alice, body: { access: 'restricted' } })).status).toBeLessThan(300);
}, 60_000);

afterAll(async () => {
  await second?.close();
  await new Promise((r) => setTimeout(r, 500));
  await registry?.stop();
  await upstream?.stop();
});

describe('the packument fast path and the access rules', () => {
  it('a private package a logged-in user has read (held in memory) is refused to anonymous reads however the path is spelled, as a name that does not exist is', async () => {
    let etag = '';
    for (let i = 0; i < 3; i++) {
      const read = await raw(registry.localUrl, 'GET', '/@priv%2fsecret', { authorization: 'Bearer ' + alice });
      expect(read.status).toBe(200);
      etag = String(read.headers.etag);
      // Private: no shared cache may keep it.
      expect(read.headers['cache-control']).toBe('private, max-age=0, must-revalidate');
    }
    const abbreviatedEtag = String((await raw(registry.localUrl, 'GET', '/@priv/secret', { authorization: 'Bearer ' + alice, accept: 'application/vnd.npm.install-v1+json' })).headers.etag);
    // The spellings reach a package: a public one held in memory is served on the plain ones.
    for (let i = 0; i < 2; i++) expect((await raw(registry.localUrl, 'GET', '/@open/pkg')).status).toBe(200);
    for (const path of spellings('open', 'pkg').slice(0, 5)) expect([path, (await raw(registry.localUrl, 'GET', path)).status]).toEqual([path, 200]);
    const secretPaths = spellings('priv', 'secret');
    const nonePaths = spellings('priv', 'nothing');
    for (let i = 0; i < secretPaths.length; i++) {
      for (const method of ['GET', 'HEAD']) {
        for (const accept of ACCEPTS) {
          for (const inm of [undefined, etag, abbreviatedEtag]) {
            const headers: Record<string, string> = { accept, ...(inm ? { 'if-none-match': inm } : {}) };
            const secret = await raw(registry.localUrl, method, secretPaths[i], headers);
            const none = await raw(registry.localUrl, method, nonePaths[i], headers);
            const what = [method, secretPaths[i], accept, inm];
            expect([what, secret.status]).toEqual([what, none.status]);
            expect([what, secret.status >= 400 && secret.status < 500]).toEqual([what, true]);
            expect(secret.body).not.toContain(SECRET_WORD);
            expect(secret.body).not.toContain('1.0.0');
            expect(secret.headers.etag).toBeUndefined();
            // A page's login link names the path asked for: the rest is the same.
            const page = (body: string) => body.replace(/next=[^"]*/g, 'next=');
            expect(page(secret.body).replace(/secret/g, 'nothing')).toBe(page(none.body));
          }
        }
      }
    }
    // And on the other gateway, which has not read it.
    for (const path of secretPaths.slice(0, 5)) expect((await raw(second.localUrl, 'GET', path, { 'if-none-match': etag })).status).toBe(401);
  });

  it('a public package held in memory turns private for anonymous readers within the rules\' two seconds, on every spelling and both gateways, as Express refuses it', async () => {
    for (const url of [registry.localUrl, second.localUrl]) {
      for (let i = 0; i < 3; i++) expect((await raw(url, 'GET', '/turns-private')).status).toBe(200);
    }
    const etag = String((await raw(registry.localUrl, 'GET', '/turns-private')).headers.etag);
    await putRules([{ package: 'turns-private', read: ['$authenticated'], publish: ['$authenticated'] }, ...RULES]);
    await sleep(2100);
    for (const url of [registry.localUrl, second.localUrl]) {
      for (const path of ['/turns-private', '/%74urns-private', '/turns-private?x=1']) {
        for (const method of ['GET', 'HEAD']) {
          for (const inm of [undefined, etag]) {
            const answer = await raw(url, method, path, inm ? { 'if-none-match': inm } : {});
            expect([url, path, method, inm, answer.status]).toEqual([url, path, method, inm, 401]);
            expect(answer.body).not.toContain(SECRET_WORD);
          }
        }
      }
      // Express's answer (with a query) and the plain one are the same.
      expect(shown(await raw(url, 'GET', '/turns-private'))).toEqual(shown(await raw(url, 'GET', '/turns-private?via=express')));
      expect((await raw(url, 'GET', '/turns-private', { authorization: 'Bearer ' + bob })).status).toBe(200);
    }
    await putRules(RULES);
  });

  it('an org\'s private package a member read is refused to anonymous readers on every spelling as Express refuses it, and to the member once removed, on both gateways', async () => {
    for (const url of [registry.localUrl, second.localUrl]) {
      for (let i = 0; i < 3; i++) expect((await raw(url, 'GET', '/@acme/hidden', { authorization: 'Bearer ' + bob })).status).toBe(200);
      for (const path of spellings('acme', 'hidden')) {
        for (const method of ['GET', 'HEAD']) {
          const answer = await raw(url, method, path);
          // Express's answer: the same path with a query (a trailing one for the paths that end in a dot segment).
          expect([url, method, path, shown(answer)]).toEqual([url, method, path, shown(await raw(url, method, path + '?via=express'))]);
          expect(answer.status).toBeGreaterThanOrEqual(400);
          expect(answer.body).not.toContain(SECRET_WORD);
        }
      }
    }
    const removed = await registry.request('DELETE', '/-/org/acme/user', { token: alice, body: { user: 'bob' } });
    expect(removed.status).toBeLessThan(300);
    // At once on this gateway, within the rules' two seconds on the other.
    expect((await raw(registry.localUrl, 'GET', '/@acme/hidden', { authorization: 'Bearer ' + bob })).status).toBe(404);
    await sleep(2100);
    for (const url of [registry.localUrl, second.localUrl]) {
      for (const path of ['/@acme/hidden', '/@acme%2fhidden', '/@acme/hidden/-/hidden-1.0.0.tgz']) {
        const answer = await raw(url, 'GET', path, { authorization: 'Bearer ' + bob });
        expect([url, path, answer.status]).toEqual([url, path, 404]);
        expect(answer.body).not.toContain(SECRET_WORD);
        expect((await raw(url, 'GET', path)).status).toBe(401);
      }
    }
  });
});

describe('dot segments as package names', () => {
  // URLs resolve `.` and `..` away (`%2E` too): a read of such a "document" asked a real CouchDB for
  // the database itself, and the registry answered 500.
  it('a package named "." or ".." (packument, version, tarball; escaped or not) is a 404 with a JSON error, on the embedded server and on a real CouchDB', async () => {
    for (const path of ['/.', '/..', '/%2e', '/%2E%2E', '/./latest', '/./-/x-1.0.0.tgz', '/ok/-/.', '/ok/-/..']) {
      for (const method of ['GET', 'HEAD']) {
        const answer = await raw(registry.localUrl, method, path);
        expect([method, path, answer.status]).toEqual([method, path, 404]);
        if (method === 'GET') expect([path, typeof JSON.parse(answer.body).error]).toEqual([path, 'string']);
      }
    }
  });
});

describe('the fast path answers as Express does', () => {
  it('the same status, headers and bytes for every Accept, method and If-None-Match, for a public package held in memory; Cache-Control public for it, private for a private one', async () => {
    for (let i = 0; i < 2; i++) await raw(registry.localUrl, 'GET', '/fastpub');
    const full = String((await raw(registry.localUrl, 'GET', '/fastpub')).headers.etag);
    const abbreviated = String((await raw(registry.localUrl, 'GET', '/fastpub', { accept: 'application/vnd.npm.install-v1+json' })).headers.etag);
    for (const accept of [...ACCEPTS.filter((a) => a !== 'text/html'), '']) {
      for (const method of ['GET', 'HEAD']) {
        for (const inm of [undefined, full, abbreviated, full + ', "other"', 'W/' + full, '*', full.slice(0, -1)]) {
          const headers: Record<string, string> = { ...(accept ? { accept } : {}), ...(inm ? { 'if-none-match': inm } : {}) };
          const fast = shown(await raw(registry.localUrl, method, '/fastpub', headers));
          const express = shown(await raw(registry.localUrl, method, '/fastpub?via=express', headers));
          expect([accept, method, inm, fast]).toEqual([accept, method, inm, express]);
          expect(fast.status === 200 || fast.status === 304).toBe(true);
          expect(fast.headers['cache-control']).toBe('max-age=0, must-revalidate');
        }
      }
    }
    // The same packument through both gateways (each names its own address in the tarball URLs).
    for (let i = 0; i < 2; i++) await raw(second.localUrl, 'GET', '/fastpub');
    const there = shown(await raw(second.localUrl, 'GET', '/fastpub'));
    const here = shown(await raw(registry.localUrl, 'GET', '/fastpub'));
    expect([there.status, there.headers.etag, JSON.parse(there.body.split(second.url).join('BASE'))]).toEqual([here.status, here.headers.etag, JSON.parse(here.body.split(registry.url).join('BASE'))]);
    // A logged-in user's read of a private package is never `public`, whatever the Accept.
    for (const accept of ACCEPTS.slice(0, 3)) {
      const answer = await raw(registry.localUrl, 'GET', '/@priv/secret', { accept, authorization: 'Bearer ' + alice });
      expect(answer.headers['cache-control']).toBe('private, max-age=0, must-revalidate');
      const again = await raw(registry.localUrl, 'GET', '/@priv/secret', { accept, authorization: 'Bearer ' + alice, 'if-none-match': String(answer.headers.etag) });
      expect([again.status, again.headers['cache-control']]).toEqual([304, 'private, max-age=0, must-revalidate']);
    }
  });
});

// BUG (minor, not the fast path's own): the gateway that wrote a package caches the served bytes of
// the document as it wrote it (writes.ts `warm`), with `_id` first; a read from CouchDB serves
// `_id` after the other fields. The two answers carry the same strong ETag, so a client or a shared
// cache holding one gets 304 for the other, and a gateway changes the bytes behind an unchanged ETag
// when its cache is cleared (a policy change) or the entry evicted.
it('one ETag names one representation: a packument\'s bytes under the same ETag stay the same after the gateway\'s cache is cleared', async () => {
  expect((await registry.request('PUT', '/etag-bytes', { token: alice, body: publishBody('etag-bytes', '1.0.0') })).status).toBe(201);
  const before = await raw(registry.localUrl, 'GET', '/etag-bytes');
  // Any change of the supply-chain policy clears the packument cache: the next read is from CouchDB.
  expect((await setSupplyChainPolicy(registry, { cooldownExceptions: ['etag-bytes-' + Date.now()] })).status).toBe(201);
  await sleep(2600);
  const after = await raw(registry.localUrl, 'GET', '/etag-bytes');
  expect(after.headers.etag).toBe(before.headers.etag);
  expect(after.body).toBe(before.body);
});

describe('the supply-chain policy and the fast path', () => {
  const versionsOf = async (url: string, path = '/blk') => {
    const answer = await raw(url, 'GET', path);
    return answer.status === 200 ? Object.keys(JSON.parse(answer.body).versions).sort() : [String(answer.status)];
  };

  it('a version blocked after its package was held in memory is gone from the fast path\'s answer as soon as from Express\'s, on both gateways', async () => {
    expect((await raw(registry.localUrl, 'GET', '/blk')).status).toBe(200);
    await settled(() => mirroredDoc(registry, 'blk'), (d) => d.status === 200, 15_000, 100);
    for (const url of [registry.localUrl, second.localUrl]) {
      expect(await settled(() => versionsOf(url), (v) => v.length === 2, 10_000, 100)).toEqual(['1.0.0', '1.1.0']);
      for (let i = 0; i < 2; i++) await raw(url, 'GET', '/blk');
    }
    const etag = String((await raw(registry.localUrl, 'GET', '/blk')).headers.etag);
    expect((await setSupplyChainPolicy(registry, { blocked: [{ package: 'blk', version: '1.1.0', reason: 'hostile test' }] })).status).toBe(201);
    // Every read while the policy is taken up: the fast path never shows what Express no longer does.
    const deadline = Date.now() + 2600;
    while (Date.now() < deadline) {
      const express = await versionsOf(registry.localUrl, '/blk?via=express');
      const fast = await versionsOf(registry.localUrl);
      if (express.length === 1) expect(fast).toEqual(['1.0.0']);
      await sleep(50);
    }
    for (const url of [registry.localUrl, second.localUrl]) {
      expect(await versionsOf(url)).toEqual(['1.0.0']);
      expect(shown(await raw(url, 'GET', '/blk'))).toEqual(shown(await raw(url, 'GET', '/blk?via=express')));
      // The ETag of the unblocked answer no longer matches.
      expect((await raw(url, 'GET', '/blk', { 'if-none-match': etag })).status).toBe(200);
      expect((await raw(url, 'GET', '/blk/-/blk-1.1.0.tgz')).status).toBe(403);
    }
  });

  it('versions in cooldown (UPSTREAM_MIN_AGE) are left out while the package is held and once it is stored and answered from memory, as Express leaves them out', async () => {
    const cooled = await anotherGateway(registry, 'cooled', { UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'mirror', REPLICATION_PRIVATE_SCOPES: '@corp', UPSTREAM_PREFETCH: '0', UPSTREAM_MIN_AGE: '3d' });
    try {
      const seen = async (path: string, accept = 'application/json') => {
        const answer = await raw(cooled.localUrl, 'GET', path, { accept });
        const body = answer.status === 200 ? JSON.parse(answer.body) : {};
        return [answer.status, Object.keys(body.versions || {}).sort(), body['dist-tags']];
      };
      const only = [200, ['1.0.0'], { latest: '1.0.0' }];
      // Held: not stored yet.
      expect(await seen('/cool-pkg')).toEqual(only);
      expect((await mirroredDoc(registry, 'cool-pkg')).status).toBe(404);
      for (const path of ['/cool-pkg', '/cool-pkg?via=express', '/%63ool-pkg']) {
        for (const accept of ['application/json', 'application/vnd.npm.install-v1+json']) expect([path, accept, await seen(path, accept)]).toEqual([path, accept, only]);
      }
      expect((await raw(cooled.localUrl, 'GET', '/cool-pkg/-/cool-pkg-2.0.0.tgz')).status).toBe(403);
      expect((await raw(cooled.localUrl, 'GET', '/cool-pkg/2.0.0')).status).toBe(403);
      // Its tarball asked for: stored; then held in memory and answered by the fast path.
      expect((await raw(cooled.localUrl, 'GET', '/cool-pkg/-/cool-pkg-1.0.0.tgz')).status).toBe(200);
      await settled(() => mirroredDoc(registry, 'cool-pkg'), (d) => d.status === 200, 15_000, 100);
      for (let i = 0; i < 3; i++) {
        for (const accept of ['application/json', 'application/vnd.npm.install-v1+json']) {
          expect(await seen('/cool-pkg', accept)).toEqual(only);
          for (const method of ['GET', 'HEAD']) {
            expect(shown(await raw(cooled.localUrl, method, '/cool-pkg', { accept }))).toEqual(shown(await raw(cooled.localUrl, method, '/cool-pkg?via=express', { accept })));
          }
        }
      }
      expect((await raw(cooled.localUrl, 'GET', '/cool-pkg/-/cool-pkg-2.0.0.tgz')).status).toBe(403);
      // The gateways without a cooldown serve both.
      expect(Object.keys(JSON.parse((await raw(registry.localUrl, 'GET', '/cool-pkg')).body).versions).sort()).toEqual(['1.0.0', '2.0.0']);
    } finally {
      await cooled.close();
    }
  });

  it('a broken policy document: a mirrored package held in memory answers Express\'s 503 on the fast path too (GET, HEAD, If-None-Match), a local one is served', async () => {
    for (let i = 0; i < 2; i++) await raw(registry.localUrl, 'GET', '/blk');
    const etag = String((await raw(registry.localUrl, 'GET', '/blk')).headers.etag);
    const state = '/' + registry.registryDb + '-state';
    const origin = new URL(registry.adminCouchUrl).origin;
    const auth = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
    const check = (await couchGet(registry, state + '/_design/config')).body;
    expect((await fetch(origin + state + '/_design/config?rev=' + check._rev, { method: 'DELETE', headers: auth })).status).toBe(200);
    const live = (await couchGet(registry, state + '/supply-chain')).body;
    expect((await fetch(origin + state + '/supply-chain', { method: 'PUT', headers: auth, body: JSON.stringify({ ...live, blocked: [{ package: 'blk', versions: ['1.0.0'] }] }) })).status).toBe(201);
    await sleep(2600);
    try {
      for (const url of [registry.localUrl, second.localUrl]) {
        for (const method of ['GET', 'HEAD']) {
          for (const headers of [{}, { 'if-none-match': etag }, { accept: 'application/vnd.npm.install-v1+json' }] as Record<string, string>[]) {
            const fast = shown(await raw(url, method, '/blk', headers));
            expect([url, method, headers, fast.status]).toEqual([url, method, headers, 503]);
            expect(fast).toEqual(shown(await raw(url, method, '/blk?via=express', headers)));
          }
        }
        expect((await raw(url, 'GET', '/fastpub')).status).toBe(200);
      }
    } finally {
      const broken = (await couchGet(registry, state + '/supply-chain')).body;
      expect((await fetch(origin + state + '/supply-chain', { method: 'PUT', headers: auth, body: JSON.stringify({ ...broken, blocked: [] }) })).status).toBe(201);
    }
    await sleep(2600);
    expect(await versionsOf(registry.localUrl)).toEqual(['1.0.0', '1.1.0']);
  });
});

describe('the pull-through hold', () => {
  it('a name of a private scope (REPLICATION_PRIVATE_SCOPES) is never pulled through, for anyone, on either gateway', async () => {
    for (const url of [registry.localUrl, second.localUrl]) {
      for (const headers of [{}, { authorization: 'Bearer ' + alice }, { authorization: 'Bearer ' + admin }] as Record<string, string>[]) {
        for (const path of ['/@corp/leak', '/@corp%2fleak', '/%40corp%2Fleak', '/@corp/leak/-/leak-1.0.0.tgz', '/@corp/leak/1.0.0']) {
          const answer = await raw(url, 'GET', path, headers);
          expect([url, path, answer.status]).toEqual([url, path, 404]);
          expect(answer.body).not.toContain(SECRET_WORD);
        }
      }
    }
    expect((await mirroredDoc(registry, '@corp/leak')).status).toBe(404);
  });

  it('a package held for its tarball under a rule that refuses anonymous readers is refused to them on both gateways, as a name that does not exist', async () => {
    expect((await raw(registry.localUrl, 'GET', '/@held/thing', { authorization: 'Bearer ' + alice })).status).toBe(200);
    // Held: not in the database yet.
    expect((await mirroredDoc(registry, '@held/thing')).status).toBe(404);
    for (const url of [registry.localUrl, second.localUrl]) {
      for (const [thing, nothing] of [['/@held/thing', '/@held/nothing'], ['/@held%2fthing', '/@held%2fnothing'], ['/@held/thing/-/thing-1.0.0.tgz', '/@held/nothing/-/nothing-1.0.0.tgz'], ['/@held/thing/1.0.0', '/@held/nothing/1.0.0']]) {
        for (const method of ['GET', 'HEAD']) {
          const held = await raw(url, method, thing);
          expect([url, method, thing, held.status]).toEqual([url, method, thing, (await raw(url, method, nothing)).status]);
          expect(held.status).toBe(401);
          expect(held.body).not.toContain(SECRET_WORD);
        }
      }
    }
    // Its tarball asked for by alice: stored, and still refused to anonymous readers.
    expect((await raw(registry.localUrl, 'GET', '/@held/thing/-/thing-1.0.0.tgz', { authorization: 'Bearer ' + alice })).status).toBe(200);
    expect((await settled(() => mirroredDoc(registry, '@held/thing'), (d) => d.status === 200, 15_000, 100)).status).toBe(200);
    for (const url of [registry.localUrl, second.localUrl]) {
      for (let i = 0; i < 2; i++) expect((await raw(url, 'GET', '/@held/thing')).status).toBe(401);
      expect((await raw(url, 'GET', '/@held/thing/-/thing-1.0.0.tgz')).status).toBe(401);
    }
  });

  // BUG: the gateway holding the upstream's copy serves the upstream's tarball bytes for our version
  // at once (getTarball: `mirror.inFlight(name)` is taken without looking for a local package), and,
  // once the held copy is stored, the upstream's packument too, from memory, until the name changes
  // again (the mirror's `written` warms the packument cache with the mirrored document although a
  // local package of that name shadows it).
  it('a package published here (by an admin) while the upstream\'s copy is held wins at once on every gateway: its packument and its tarball\'s bytes, also once the held copy is stored', async () => {
    expect((await raw(registry.localUrl, 'GET', '/shadowed')).status).toBe(200);
    expect((await mirroredDoc(registry, 'shadowed')).status).toBe(404);
    // Ours, published on the other gateway (which does not hold the upstream's copy).
    const ours = Buffer.from('our own shadowed 1.0.0');
    const put = await fetch(second.localUrl + '/shadowed', {
      method: 'PUT', headers: { authorization: 'Bearer ' + admin, 'content-type': 'application/json' }, body: JSON.stringify(publishBody('shadowed', '1.0.0', ours)),
    });
    expect(put.status).toBe(201);
    for (const url of [second.localUrl, registry.localUrl]) {
      const integrity = await settled(async () => {
        const answer = await raw(url, 'GET', '/shadowed');
        return answer.status === 200 ? JSON.parse(answer.body).versions['1.0.0'].dist.integrity : '';
      }, (i) => i === sha512(ours), 3000, 100);
      expect([url, integrity]).toEqual([url, sha512(ours)]);
      // The tarball is ours too: the one the packument's integrity names.
      const tarball = await fetch(url + '/shadowed/-/shadowed-1.0.0.tgz');
      expect([url, tarball.status, sha512(Buffer.from(await tarball.arrayBuffer()))]).toEqual([url, 200, sha512(ours)]);
    }
    // Once the upstream's copy is stored, ours is still what both gateways serve, from memory too.
    await settled(() => mirroredDoc(registry, 'shadowed'), (d) => d.status === 200, 15_000, 100);
    for (const url of [second.localUrl, registry.localUrl]) {
      for (let i = 0; i < 2; i++) {
        const packument = await raw(url, 'GET', '/shadowed');
        expect([url, i, JSON.parse(packument.body).versions['1.0.0'].dist.integrity]).toEqual([url, i, sha512(ours)]);
        const tarball = await fetch(url + '/shadowed/-/shadowed-1.0.0.tgz');
        expect([url, i, sha512(Buffer.from(await tarball.arrayBuffer()))]).toEqual([url, i, sha512(ours)]);
      }
    }
    expect((await couchGet(registry, '/' + registry.registryDb + '/shadowed?conflicts=true')).body._conflicts).toBeUndefined();
  });

  it('a package held when a gateway stops gracefully is stored, not lost', async () => {
    const third = await anotherGateway(registry, 'third', { UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'mirror', REPLICATION_PRIVATE_SCOPES: '@corp', UPSTREAM_PREFETCH: '0' });
    try {
      expect((await raw(third.localUrl, 'GET', '/held-at-stop')).status).toBe(200);
      expect((await mirroredDoc(registry, 'held-at-stop')).status).toBe(404);
    } finally {
      await third.close();
    }
    const stored = await mirroredDoc(registry, 'held-at-stop');
    expect([stored.status, Object.keys(stored.body.versions || {})]).toEqual([200, ['1.0.0']]);
  });

  it('a package held on both gateways at once is stored once without a conflict left behind, and both serve it alike', async () => {
    expect((await raw(registry.localUrl, 'GET', '/twice')).status).toBe(200);
    expect((await raw(second.localUrl, 'GET', '/twice')).status).toBe(200);
    // One tarball through each gateway.
    expect((await raw(registry.localUrl, 'GET', '/twice/-/twice-1.0.0.tgz')).status).toBe(200);
    expect((await raw(second.localUrl, 'GET', '/twice/-/twice-1.0.0.tgz')).status).toBe(200);
    const stored = await settled(() => couchGet(registry, '/' + registry.registryDb + '-mirror/twice?conflicts=true'), (d) => d.status === 200 && !!d.body._attachments, 15_000, 100);
    expect(stored.status).toBe(200);
    await sleep(4000); // the other gateway's copy is written too
    const after = await couchGet(registry, '/' + registry.registryDb + '-mirror/twice?conflicts=true');
    expect(after.body._conflicts).toBeUndefined();
    expect(Object.keys(after.body._attachments)).toEqual(['twice-1.0.0.tgz']);
    for (const url of [registry.localUrl, second.localUrl]) {
      const answer = await raw(url, 'GET', '/twice');
      expect([url, answer.status, Object.keys(JSON.parse(answer.body).versions)]).toEqual([url, 200, ['1.0.0']]);
      expect(shown(answer)).toEqual(shown(await raw(url, 'GET', '/twice?via=express')));
    }
    expect((await storedDoc(registry, 'twice')).status).toBe(404);
  });
});

describe('the fast path under a base path (REGISTRY_PUBLIC_URL with a path)', () => {
  it('a private package held in memory is refused to anonymous reads on every spelling with and without the base path, as a name that does not exist; a public one is answered as Express does', async () => {
    const based = await startTestRegistry({ REGISTRY_PUBLIC_URL: 'http://registry.invalid/npm' });
    try {
      await putRules(RULES, based);
      expect((await raw(based.localUrl, 'GET', '/npm/-/ping')).status).toBe(200);
      const made = await fetch(based.localUrl + '/npm/-/user/org.couchdb.user:carol', {
        method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ _id: 'org.couchdb.user:carol', name: 'carol', password: 'password-carol', email: 'carol@example.com', type: 'user', roles: [] }),
      });
      expect(made.status).toBe(201);
      const carol = ((await made.json()) as { token: string }).token;
      await sleep(2100);
      const publish = (name: string, tarball: string) => fetch(based.localUrl + '/npm/' + name.replace('/', '%2f'), {
        method: 'PUT', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + carol }, body: JSON.stringify(publishBody(name, '1.0.0', Buffer.from(tarball))),
      });
      expect((await publish('@priv/secret', SECRET_WORD)).status).toBe(201);
      expect((await publish('based-pub', 'public')).status).toBe(201);
      let etag = '';
      for (let i = 0; i < 3; i++) {
        const read = await raw(based.localUrl, 'GET', '/npm/@priv/secret', { authorization: 'Bearer ' + carol });
        expect(read.status).toBe(200);
        etag = String(read.headers.etag);
      }
      const prefixes = ['/npm', '/NPM', '/npm/', '/npm/.', '', '/npm%2f', '/x/../npm'];
      for (const prefix of prefixes) {
        const secrets = spellings('priv', 'secret');
        const nones = spellings('priv', 'nothing');
        for (let i = 0; i < secrets.length; i++) {
          for (const method of ['GET', 'HEAD']) {
            const headers = { 'if-none-match': etag };
            const secret = await raw(based.localUrl, method, prefix + secrets[i], headers);
            const none = await raw(based.localUrl, method, prefix + nones[i], headers);
            const what = [method, prefix + secrets[i]];
            expect([what, secret.status]).toEqual([what, none.status]);
            expect([what, secret.status >= 400 && secret.status < 500]).toEqual([what, true]);
            expect(secret.body).not.toContain(SECRET_WORD);
            expect(secret.body).not.toContain('1.0.0');
            expect(secret.headers.etag).toBeUndefined();
          }
        }
      }
      // A public package: the fast path's answer under the base path is Express's; without it, Express's 404.
      for (let i = 0; i < 2; i++) expect((await raw(based.localUrl, 'GET', '/npm/based-pub')).status).toBe(200);
      for (const path of ['/npm/based-pub', '/based-pub', '/NPM/based-pub', '/npm//based-pub']) {
        for (const method of ['GET', 'HEAD']) {
          expect([path, method, shown(await raw(based.localUrl, method, path))]).toEqual([path, method, shown(await raw(based.localUrl, method, path + '?via=express'))]);
        }
      }
      const plain = JSON.parse((await raw(based.localUrl, 'GET', '/npm/based-pub')).body);
      expect(plain.versions['1.0.0'].dist.tarball).toBe('http://registry.invalid/npm/based-pub/-/based-pub-1.0.0.tgz');
    } finally {
      await based.stop();
    }
  }, 60_000);
});

describe('the pull-through hold under an anonymous flood', () => {
  it('packuments pulled through without a tarball are held up to 32 MB: past it the oldest are stored while the requests keep coming', async () => {
    // An upstream whose packages are 3 MB each (a long readme), without tarballs anyone asks for.
    const readme = 'x'.repeat(3 * 1024 * 1024);
    const served = new Map<string, Buffer>();
    const packumentOf = (name: string) => {
      let body = served.get(name);
      if (!body) {
        const tarball = Buffer.from('flood ' + name);
        const dist = { tarball: 'http://upstream.invalid/' + name + '/-/' + name + '-1.0.0.tgz', shasum: createHash('sha1').update(tarball).digest('hex'), integrity: sha512(tarball) };
        body = Buffer.from(JSON.stringify({
          _id: name, _rev: '1-' + createHash('md5').update(name).digest('hex'), name, readme, 'dist-tags': { latest: '1.0.0' },
          versions: { '1.0.0': { name, version: '1.0.0', dist } }, time: { created: '2020-01-01T00:00:00.000Z', modified: '2020-01-01T00:00:00.000Z', '1.0.0': '2020-01-01T00:00:00.000Z' },
        }));
        served.set(name, body);
      }
      return body;
    };
    const server = (await import('http')).createServer((req, res) => {
      const name = decodeURIComponent((req.url || '/').slice(1).split('?')[0]);
      if (!/^flood-\d+$/.test(name)) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      const body = packumentOf(name);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, etag: '"' + name + '"' }).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const upstreamUrl = 'http://127.0.0.1:' + (server.address() as { port: number }).port;
    const flooded = await startTestRegistry({ UPSTREAM_REGISTRY: upstreamUrl, UPSTREAM_MODE: 'mirror', UPSTREAM_PREFETCH: '0' });
    try {
      const names = Array.from({ length: 14 }, (_, i) => 'flood-' + i);
      for (const name of names) expect([name, (await raw(flooded.localUrl, 'GET', '/' + name)).status]).toEqual([name, 200]);
      // Busy: the held packages are read again and again (each read counts as activity), never 3 s quiet.
      const storedNames = async () => {
        const all = await couchGet(flooded, '/' + flooded.registryDb + '-mirror/_all_docs');
        return ((all.body.rows || []) as { id: string }[]).map((row) => row.id).filter((id) => id.startsWith('flood-'));
      };
      let stored: string[] = [];
      const until = Date.now() + 12_000;
      for (let i = 0; Date.now() < until; i++) {
        await raw(flooded.localUrl, 'GET', '/' + names[names.length - 1 - (i % 3)]);
        stored = await storedNames();
        // 14 x 3 MB is 42 MB: what is held must fall to 32 MB or less.
        if (stored.length >= 4) break;
        await sleep(300);
      }
      expect(stored.length).toBeGreaterThanOrEqual(4);
      // The oldest were stored first.
      expect(stored).toContain('flood-0');
      // Nothing was lost: once quiet, every one is stored.
      expect((await settled(storedNames, (s) => s.length === names.length, 20_000, 100)).sort()).toEqual([...names].sort());
    } finally {
      await flooded.stop();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60_000);
});
