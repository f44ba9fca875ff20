/**
 * First reads: what no cache of a gateway has seen yet. On the embedded server the gateway reads
 * documents and tarballs in its own process (`Couch.local`), a gateway on COUCHDB_URL over HTTP:
 * both answer alike, and refuse alike what the access rules refuse, whether the name exists or not.
 * Names that neither database nor the upstream has are remembered (the upstream is not asked again
 * for a while), and are served as soon as they are published here or arrive in the mirror, on every
 * gateway of the database.
 */
import { RunningRegistry } from '../../server/registry';
import { FeedStandIn, startFeedStandIn } from '../helpers/feed-standin';
import { publishBody } from '../helpers/principals';
import { anotherGateway, basicAuthOf, couchGet, startTestRegistry, TestRegistry } from '../helpers/registry';
import { settled } from '../helpers/wait';

let upstream: FeedStandIn;
let registry: TestRegistry;
/** Another gateway on the same database, reaching CouchDB over HTTP (COUCHDB_URL). */
let second: RunningRegistry;
let alice: string;
let bob: string;


const statusOf = async (url: string, path: string, token?: string) => (await fetch(url + path, { headers: token ? { authorization: 'Bearer ' + token } : {} })).status;
const asked = (name: string) => upstream.packumentRequests.get(name) || upstream.packumentRequests.get('/' + name) || 0;

beforeAll(async () => {
  upstream = await startFeedStandIn();
  registry = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url });
  second = await anotherGateway(registry, 'second', { UPSTREAM_REGISTRY: upstream.url });
  alice = await registry.signup('alice');
  bob = await registry.signup('bob');
  // Alice is of the team that alone reads @secret; Bob is not.
  const user = await couchGet(registry, '/_users/org.couchdb.user:alice');
  const origin = new URL(registry.adminCouchUrl).origin;
  const admin = { 'content-type': 'application/json', authorization: basicAuthOf(registry.adminCouchUrl) };
  expect((await fetch(origin + '/_users/org.couchdb.user:alice', { method: 'PUT', headers: admin, body: JSON.stringify({ ...user.body, roles: ['secret-team'] }) })).status).toBe(201);
  const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
  const rules = [
    { package: '@secret/*', read: ['role:secret-team'], publish: ['role:secret-team'] },
    { package: '**', read: ['$all'], publish: ['$authenticated'] },
  ];
  expect((await fetch(origin + '/' + registry.registryDb + '/_design/access', { method: 'PUT', headers: admin, body: JSON.stringify({ ...design.body, rules }) })).status).toBe(201);
  // The rules are read again within 2 s.
  await new Promise((r) => setTimeout(r, 2100));
  expect((await registry.request('PUT', '/@secret/real', { token: alice, body: publishBody('@secret/real', '1.0.0') })).status).toBe(201);
  expect((await registry.request('PUT', '/plain', { token: alice, body: publishBody('plain', '1.0.0') })).status).toBe(201);
}, 60_000);

afterAll(async () => {
  await second?.close();
  // What the embedded server still answers for the gateways stopped (its own read of a database's _security) ends first.
  await new Promise((r) => setTimeout(r, 1000));
  await registry?.stop();
  await upstream?.close();
});

describe('a read in process answers as the read over HTTP', () => {
  it('the same packument bytes, full and abbreviated, and the same tarball, on the embedded gateway and on one over HTTP', async () => {
    // Changed straight in CouchDB (as an admin in Fauxton): neither gateway has it in memory, both read it.
    const stored = await couchGet(registry, '/' + registry.registryDb + '/plain');
    const origin = new URL(registry.adminCouchUrl).origin;
    const changed = await fetch(origin + '/' + registry.registryDb + '/plain', {
      method: 'PUT', headers: { 'content-type': 'application/json', authorization: basicAuthOf(registry.adminCouchUrl) }, body: JSON.stringify({ ...stored.body, description: 'changed by an admin' }),
    });
    expect(changed.status).toBe(201);
    const rev = ((await changed.json()) as { rev: string }).rev;
    for (const url of [registry.localUrl, second.localUrl]) {
      expect(await settled(async () => String((await fetch(url + '/plain')).headers.get('etag')), (etag) => etag.includes(rev), 10_000)).toContain(rev);
    }
    for (const accept of ['application/json', 'application/vnd.npm.install-v1+json']) {
      const [here, there] = await Promise.all([registry.localUrl, second.localUrl].map((url) => fetch(url + '/plain', { headers: { accept } })));
      expect([here.status, there.status]).toEqual([200, 200]);
      expect(here.headers.get('etag')).toBe(there.headers.get('etag'));
      // Each names its own address in the tarball URLs.
      expect((await here.text()).split(registry.url).join('BASE')).toBe((await there.text()).split(second.url).join('BASE'));
    }
    const [here, there] = await Promise.all([registry.localUrl, second.localUrl].map((url) => fetch(url + '/plain/-/plain-1.0.0.tgz')));
    expect([here.status, there.status]).toEqual([200, 200]);
    expect(here.headers.get('etag')).toBe(there.headers.get('etag'));
    expect(Buffer.from(await here.arrayBuffer()).toString()).toBe('tarball of plain@1.0.0');
    expect(Buffer.from(await there.arrayBuffer()).toString()).toBe('tarball of plain@1.0.0');
    // A tarball the client has: 304 from either.
    for (const url of [registry.localUrl, second.localUrl]) {
      const again = await fetch(url + '/plain/-/plain-1.0.0.tgz', { headers: { 'if-none-match': String(here.headers.get('etag')) } });
      expect(again.status).toBe(304);
    }
    expect(await statusOf(registry.localUrl, '/plain/-/plain-9.9.9.tgz')).toBe(404);
  });

  it('a private package, whether it exists or not, is refused alike to whoever may not read it, on both gateways, before and after its name is remembered as absent', async () => {
    const paths = (name: string) => ['/' + name, '/' + name + '/1.0.0', '/' + name + '/-/' + name.split('/')[1] + '-1.0.0.tgz'];
    const answers = async (token?: string) => {
      const seen: string[] = [];
      for (const url of [registry.localUrl, second.localUrl]) {
        for (const name of ['@secret/real', '@secret/missing']) {
          for (const path of paths(name)) {
            const res = await fetch(url + path, { headers: token ? { authorization: 'Bearer ' + token } : {} });
            seen.push(res.status + ' ' + (await res.text()).split(name).join('NAME'));
          }
        }
      }
      return seen;
    };
    const check = async () => {
      const anonymous = await answers();
      expect(new Set(anonymous.map((a) => a.slice(0, 3)))).toEqual(new Set(['401']));
      expect(new Set(anonymous).size).toBe(1);
      const outsider = await answers(bob);
      expect(new Set(outsider.map((a) => a.slice(0, 3)))).toEqual(new Set(['403']));
      expect(new Set(outsider).size).toBe(1);
    };
    await check();
    // Alice may read the scope: she is told what exists and what does not, and the absent name is remembered.
    for (const url of [registry.localUrl, second.localUrl]) {
      expect(await statusOf(url, '/@secret/real', alice)).toBe(200);
      for (let i = 0; i < 2; i++) expect(await statusOf(url, '/@secret/missing', alice)).toBe(404);
    }
    await check();
  });
});

describe('names neither here nor upstream', () => {
  it('are asked of the upstream once, not at every read, on each gateway', async () => {
    for (let i = 0; i < 3; i++) expect(await statusOf(registry.localUrl, '/ghost-one')).toBe(404);
    expect(asked('ghost-one')).toBe(1);
    for (let i = 0; i < 3; i++) expect(await statusOf(second.localUrl, '/ghost-one')).toBe(404);
    expect(asked('ghost-one')).toBe(2);
    // The other routes of the name (a version, a tarball) are answered from the same memory.
    expect(await statusOf(registry.localUrl, '/ghost-one/1.0.0')).toBe(404);
    expect(await statusOf(registry.localUrl, '/ghost-one/-/ghost-one-1.0.0.tgz')).toBe(404);
    expect(asked('ghost-one')).toBe(2);
  });

  it('are served at once when published here, on this gateway, and on the other as soon as its feed tells it', async () => {
    for (const url of [registry.localUrl, second.localUrl]) for (let i = 0; i < 2; i++) expect(await statusOf(url, '/ghost-two')).toBe(404);
    expect((await registry.request('PUT', '/ghost-two', { token: bob, body: publishBody('ghost-two', '1.0.0') })).status).toBe(201);
    expect(await statusOf(registry.localUrl, '/ghost-two')).toBe(200);
    expect(await settled(() => statusOf(second.localUrl, '/ghost-two'), (s) => s === 200, 10_000)).toBe(200);
    // And the other way round: published through the gateway on HTTP.
    for (const url of [registry.localUrl, second.localUrl]) expect(await statusOf(url, '/ghost-three')).toBe(404);
    const published = await fetch(second.localUrl + '/ghost-three', { method: 'PUT', headers: { authorization: 'Bearer ' + bob, 'content-type': 'application/json' }, body: JSON.stringify(publishBody('ghost-three', '1.0.0')) });
    expect(published.status).toBe(201);
    expect(await statusOf(second.localUrl, '/ghost-three')).toBe(200);
    expect(await settled(() => statusOf(registry.localUrl, '/ghost-three'), (s) => s === 200, 10_000)).toBe(200);
  });

  it('are served by every gateway as soon as another gateway mirrored the package, published upstream meanwhile', async () => {
    for (const url of [registry.localUrl, second.localUrl]) expect(await statusOf(url, '/ghost-four')).toBe(404);
    upstream.publish('ghost-four', ['1.0.0']);
    // Remembered as absent upstream for a while: not asked again yet.
    expect(await statusOf(registry.localUrl, '/ghost-four')).toBe(404);
    expect(asked('ghost-four')).toBe(2);
    // A gateway that had not asked pulls it through; the mirror's write reaches the others through the feed.
    const third = await anotherGateway(registry, 'third', { UPSTREAM_REGISTRY: upstream.url });
    try {
      expect(await statusOf(third.localUrl, '/ghost-four')).toBe(200);
      for (const url of [registry.localUrl, second.localUrl]) expect(await settled(() => statusOf(url, '/ghost-four'), (s) => s === 200, 10_000)).toBe(200);
      const served = (await (await fetch(registry.localUrl + '/ghost-four')).json()) as { versions: Record<string, unknown> };
      expect(Object.keys(served.versions)).toEqual(['1.0.0']);
    } finally {
      await third.close();
    }
  }, 30_000);
});
