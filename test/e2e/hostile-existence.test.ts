/**
 * Which packages of an org's scope exist is for its members to know. To anyone else (nobody at all,
 * a user in no org, a member of another org, a member's token limited to another package) a private
 * package of the org and a name with no package answer alike on every surface: the same status,
 * headers and words (401 asking for a login where there is none, else 404 "not here, or not yours to
 * read", as npm's registry answers), and a write to either is refused alike, before anything that
 * would answer otherwise for a package that exists (a revision compared, a tag looked up). Members
 * still read, install and get the ordinary answers. Real registry processes and the real npm CLI.
 */
import { readFileSync } from 'fs';
import { makePackage, npmClient, NpmClient } from '../helpers/npm';
import { FeedStandIn, startFeedStandIn } from '../helpers/feed-standin';
import { basic, publishBody as principalsPublishBody, send } from '../helpers/principals';
import { startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';
import { settled } from '../helpers/wait';

let registry: TestRegistry;
const tokens: Record<string, string> = {};
const clients: Record<string, NpmClient> = {};
const PASSWORD = (user: string) => 'password-' + user;
/** The private package, and a name of the same length with no package. */
const PRIVATE = 'widget';
const MISSING = 'gizmos';
const names = [PRIVATE, MISSING];

/** Who asks: a header set for each. */
type Who = 'anonymous' | 'mallory' | 'eve' | 'limited';
const OUTSIDERS: Who[] = ['anonymous', 'mallory', 'eve', 'limited'];
const authOf = (who: Who): Record<string, string> => (who === 'anonymous' ? {} : { authorization: 'Bearer ' + tokens[who] });

interface Answer { status: number; headers: Record<string, string | null>; body: string }

/** An answer with the package's short name written NAME, so that the answers for two names compare. */
async function ask(method: string, url: string, headers: Record<string, string>, body?: unknown): Promise<Answer> {
  const response = await fetch(url, {
    method, redirect: 'manual',
    headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const shown: Record<string, string | null> = {};
  for (const header of ['content-type', 'content-length', 'etag', 'www-authenticate', 'npm-notice', 'cache-control', 'location', 'vary']) shown[header] = response.headers.get(header);
  return { status: response.status, headers: shown, body: text.replace(new RegExp(PRIVATE + '|' + MISSING, 'gi'), 'NAME') };
}

beforeAll(async () => {
  registry = await startTestRegistry({ DOWNLOADS_FLUSH_SECONDS: '3600' });
  for (const name of ['alice', 'bob', 'mallory', 'eve']) tokens[name] = await registry.signup(name, PASSWORD(name));
  for (const name of ['alice', 'bob', 'mallory']) clients[name] = npmClient(registry.url, tokens[name]);
  clients.anonymous = npmClient(registry.url);
  const api = (token: string, method: string, path: string, body: unknown) => registry.request(method, path, { token, body });
  expect((await api(tokens.alice, 'PUT', '/-/org/acme/user', { user: 'alice' })).status).toBe(200);
  expect((await api(tokens.alice, 'PUT', '/-/org/acme/user', { user: 'bob' })).status).toBe(200);
  expect((await api(tokens.eve, 'PUT', '/-/org/evil/user', { user: 'eve' })).status).toBe(200);
  for (const name of ['@acme/' + PRIVATE, '@acme/gadget']) {
    const published = await clients.alice.npm(['publish', '--access', 'restricted'], makePackage(clients.alice.home, { name, version: '1.0.0', description: 'about ' + name }));
    expect([name, published.code]).toEqual([name, 0]);
  }
  expect((await api(tokens.alice, 'POST', '/-/package/@acme%2f' + PRIVATE + '/access', { access: 'restricted' })).status).toBe(200);
  // A token of bob, a member, limited to the org's other package.
  const limited = await api(tokens.bob, 'POST', '/-/npm/v1/tokens', { password: PASSWORD('bob'), packages: ['@acme/gadget'] });
  expect(limited.status).toBe(201);
  tokens.limited = limited.body.token;
  // A download, so that there are counts to tell apart.
  expect((await registry.request('GET', '/@acme/' + PRIVATE + '/-/' + PRIVATE + '-1.0.0.tgz', { token: tokens.alice })).status).toBe(200);
}, 120_000);
afterAll(() => registry?.stop());

describe('reads: a private package of an org and a name with no package answer alike to whoever is not a member', () => {
  interface Read { what: string; path: (name: string) => string; headers?: Record<string, string>; owner?: number; methods?: string[]; limited?: number }
  const reads: Read[] = [
    { what: 'packument', path: (n) => '/@acme%2f' + n },
    { what: 'packument, /', path: (n) => '/@acme/' + n },
    { what: 'packument, %2F', path: (n) => '/@acme%2F' + n },
    { what: 'packument, %40', path: (n) => '/%40acme%2f' + n },
    // Names are lower case: no package has these, members are told so.
    { what: 'packument, upper case', path: (n) => '/@acme/' + n.toUpperCase(), owner: 404 },
    { what: 'packument, trailing /', path: (n) => '/@acme%2f' + n + '/', owner: 404 },
    { what: 'packument, ?write=true', path: (n) => '/@acme%2f' + n + '?write=true' },
    { what: 'abbreviated packument', path: (n) => '/@acme%2f' + n, headers: { accept: 'application/vnd.npm.install-v1+json' } },
    { what: 'version', path: (n) => '/@acme/' + n + '/1.0.0' },
    { what: 'latest', path: (n) => '/@acme/' + n + '/latest' },
    { what: 'tarball', path: (n) => '/@acme/' + n + '/-/' + n + '-1.0.0.tgz' },
    { what: 'tarball, %2f', path: (n) => '/@acme%2f' + n + '/-/' + n + '-1.0.0.tgz' },
    { what: 'dist-tags', path: (n) => '/-/package/@acme%2f' + n + '/dist-tags' },
    { what: 'dist-tag', path: (n) => '/-/package/@acme%2f' + n + '/dist-tags/latest' },
    { what: 'visibility (npm access get status)', path: (n) => '/-/package/@acme%2f' + n + '/visibility' },
    { what: 'collaborators', path: (n) => '/-/package/@acme%2f' + n + '/collaborators' },
    { what: 'staging', path: (n) => '/-/package/@acme%2f' + n + '/staging' },
    // For maintainers only: a token limited to another package is refused it by name first.
    { what: 'trusted publishers (npm trust list)', path: (n) => '/-/package/@acme%2f' + n + '/trust', methods: ['GET'], limited: 403 },
    { what: 'attestations', path: (n) => '/-/npm/v1/attestations/@acme%2f' + n + '@1.0.0', owner: 404 },
    { what: 'dependents', path: (n) => '/-/v1/dependents/@acme/' + n },
    { what: 'downloads point', path: (n) => '/-/downloads/point/last-week/@acme/' + n },
    { what: 'downloads range', path: (n) => '/-/downloads/range/last-week/@acme%2f' + n },
    { what: 'downloads versions', path: (n) => '/-/downloads/versions/last-week/@acme/' + n },
  ];

  it.each(reads)('$what: the same status, headers and body, GET and HEAD, with and without the owner\'s ETag', async ({ path, headers = {}, owner: ownerStatus = 200, methods = ['GET', 'HEAD'], limited = 404 }) => {
    const owner = await ask('GET', registry.localUrl + path(PRIVATE), { ...headers, authorization: 'Bearer ' + tokens.alice });
    expect([path(PRIVATE), owner.status]).toEqual([path(PRIVATE), ownerStatus]);
    for (const who of OUTSIDERS) {
      for (const method of methods) {
        for (const etag of [{}, owner.headers.etag ? { 'if-none-match': owner.headers.etag } : {}] as Record<string, string>[]) {
          const [secret, none] = await Promise.all(names.map((name) => ask(method, registry.localUrl + path(name), { ...headers, ...authOf(who), ...etag })));
          expect([who, method, path(PRIVATE), secret]).toEqual([who, method, path(PRIVATE), none]);
          // Nobody is asked to log in; the others are told what to do.
          expect([who, path(PRIVATE), secret.status]).toEqual([who, path(PRIVATE), who === 'anonymous' ? 401 : who === 'limited' ? limited : 404]);
          if (method === 'GET') expect(JSON.parse(secret.body).error).toMatch(who === 'anonymous' ? /npm login/ : who === 'limited' ? /token/ : /npm org set acme <user>/);
        }
      }
    }
  });

  it('the page of the package and of a version, with the pages\' session of a user in no org, and with none', async () => {
    const login = await fetch(registry.localUrl + '/-/web/login', {
      method: 'POST', redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(registry.localUrl).origin },
      body: new URLSearchParams({ name: 'mallory', password: PASSWORD('mallory') }).toString(),
    });
    const cookie = String(login.headers.get('set-cookie')).split(';')[0];
    for (const headers of [{ cookie }, {}] as Record<string, string>[]) {
      for (const path of [(n: string) => '/@acme/' + n, (n: string) => '/@acme/' + n + '/v/1.0.0']) {
        const [secret, none] = await Promise.all(names.map((name) => ask('GET', registry.localUrl + path(name), { ...headers, accept: 'text/html' })));
        expect([path(PRIVATE), !!headers.cookie, secret]).toEqual([path(PRIVATE), !!headers.cookie, none]);
        expect(secret.status).toBe(headers.cookie ? 404 : 401);
        if (!headers.cookie) expect(secret.body).toContain('Log in</a> to see it');
      }
    }
  });

  it('straight on the CouchDB port with the user\'s own password, or none: alike too', async () => {
    const couch = new URL(registry.adminCouchUrl).origin;
    for (const headers of [{ authorization: basic('mallory', PASSWORD('mallory')) }, { authorization: basic('eve', PASSWORD('eve')) }, {}] as Record<string, string>[]) {
      for (const path of [(n: string) => '/' + registry.registryDb + '/' + encodeURIComponent('@acme/' + n), (n: string) => '/' + registry.registryDb + '/' + encodeURIComponent('@acme/' + n) + '/' + n + '-1.0.0.tgz']) {
        for (const method of ['GET', 'HEAD']) {
          const [secret, none] = await Promise.all(names.map((name) => send(couch, method, path(name), { headers: { accept: 'application/json', ...headers } })));
          expect([method, path(PRIVATE), secret.status]).toEqual([method, path(PRIVATE), none.status]);
          expect(secret.status).toBe(headers.authorization ? 403 : 401);
          expect(JSON.stringify(secret.body ?? null).split(PRIVATE).join('NAME')).toBe(JSON.stringify(none.body ?? null).split(MISSING).join('NAME'));
        }
      }
    }
  });

  it('the org\'s public package stays readable to all, and a member is told plainly that a name has no package', async () => {
    for (const who of OUTSIDERS) expect([who, (await ask('GET', registry.localUrl + '/@acme%2fgadget', authOf(who))).status]).toEqual([who, 200]);
    const missing = await registry.request('GET', '/@acme%2f' + MISSING, { token: tokens.bob });
    expect([missing.status, missing.body.error]).toEqual([404, expect.stringContaining('is not here')]);
    expect((await registry.request('GET', '/@acme%2f' + PRIVATE, { token: tokens.bob })).status).toBe(200);
  });
});

describe('writes to a package: refused alike, before anything tells the private package apart, and nothing changes', () => {
  interface Write { what: string; method: string; path: (name: string) => string; body?: (name: string) => unknown; refused?: number }
  const writes: Write[] = [
    { what: 'dist-tag add', method: 'PUT', path: (n) => '/-/package/@acme%2f' + n + '/dist-tags/evil', body: () => '1.0.0' },
    { what: 'dist-tag rm', method: 'DELETE', path: (n) => '/-/package/@acme%2f' + n + '/dist-tags/evil' },
    { what: 'deprecate (PUT -rev)', method: 'PUT', path: (n) => '/@acme%2f' + n + '/-rev/1-abc', body: (n) => ({ name: '@acme/' + n, versions: { '1.0.0': { deprecated: 'x' } } }) },
    { what: 'change without a revision', method: 'PUT', path: (n) => '/@acme%2f' + n, body: (n) => ({ name: '@acme/' + n, description: 'x' }) },
    { what: 'unpublish', method: 'DELETE', path: (n) => '/@acme%2f' + n + '/-rev/1-abc' },
    { what: 'tarball delete', method: 'DELETE', path: (n) => '/@acme/' + n + '/-/' + n + '-1.0.0.tgz/-rev/1-abc' },
    { what: 'npm access set mfa', method: 'POST', path: (n) => '/-/package/@acme%2f' + n + '/access', body: () => ({ publish_requires_tfa: false }) },
    { what: 'npm access set status', method: 'POST', path: (n) => '/-/package/@acme%2f' + n + '/access', body: () => ({ access: 'public' }) },
    { what: 'staging required', method: 'PUT', path: (n) => '/-/package/@acme%2f' + n + '/staging', body: () => ({ required: true }) },
    { what: 'npm stage publish', method: 'POST', path: (n) => '/-/stage/package/@acme%2f' + n, body: (n) => principalsPublishBody('@acme/' + n, '9.9.9') },
    // Only members publish in the scope, new names or not: refused as such, before anything tells whether the name is taken.
    { what: 'publish', method: 'PUT', path: (n) => '/@acme%2f' + n, body: (n) => principalsPublishBody('@acme/' + n, '9.9.9'), refused: 403 },
    { what: 'a foreign entry', method: 'PUT', path: (n) => '/@acme%2f' + n, body: (n) => ({ _id: '@acme/' + n, name: '@acme/' + n, url: 'https://registry.example.com', maintainers: [{ name: 'mallory' }] }), refused: 403 },
  ];

  it.each(writes)('$what', async ({ method, path, body, refused = 404 }) => {
    const before = (await storedDoc(registry, '@acme/' + PRIVATE)).body._rev;
    for (const who of OUTSIDERS) {
      const [secret, none] = await Promise.all(names.map((name) => ask(method, registry.localUrl + path(name), authOf(who), body && body(name))));
      expect([who, method, path(PRIVATE), secret]).toEqual([who, method, path(PRIVATE), none]);
      // A limited token is refused for the name it does not cover (403, both alike).
      expect([who, secret.status]).toEqual([who, who === 'anonymous' ? 401 : who === 'limited' ? 403 : refused]);
      if (refused === 403 && who !== 'anonymous' && who !== 'limited') expect(JSON.parse(secret.body).error).toContain('is not a member of the org @acme');
    }
    expect((await storedDoc(registry, '@acme/' + PRIVATE)).body._rev).toBe(before);
    const design = await registry.request('GET', '/-/package/@acme%2f' + PRIVATE + '/visibility', { token: tokens.alice });
    expect(design.body).toEqual({ public: false });
  });
});

describe('with npm itself', () => {
  const consumer = (who: string) => makePackage(clients[who].home, { name: 'consumer-' + Math.random().toString(36).slice(2, 8), version: '1.0.0' });
  /** What npm printed, without what differs from run to run (times, log files) and with the name written NAME. */
  const shown = (output: string) => output.split('\n').filter((line) => !/complete log|A complete log|_logs|\d+ms/.test(line)).join('\n').split(PRIVATE).join('NAME').split(MISSING).join('NAME');

  it('without a login, npm install and npm view are asked for one, the same for both names', async () => {
    const [secret, none] = await Promise.all(names.map((name) => clients.anonymous.npm(['install', '@acme/' + name], consumer('anonymous'))));
    expect(secret.code).not.toBe(0);
    expect(shown(secret.stderr)).toBe(shown(none.stderr));
    expect(secret.stderr).toContain('E401');
    expect(secret.stderr).toContain('npm login');
    const [viewed, viewedNone] = await Promise.all(names.map((name) => clients.anonymous.npm(['view', '@acme/' + name])));
    expect([viewed.code, shown(viewed.stderr)]).toEqual([viewedNone.code, shown(viewedNone.stderr)]);
  });

  it('a user in no org gets npm\'s 404 for both, with what to do', async () => {
    const [secret, none] = await Promise.all(names.map((name) => clients.mallory.npm(['install', '@acme/' + name], consumer('mallory'))));
    expect(secret.code).not.toBe(0);
    expect(shown(secret.stderr)).toBe(shown(none.stderr));
    expect(secret.stderr).toContain('E404');
    expect(secret.stderr).toContain('npm org set acme <user>');
    const [viewed, viewedNone] = await Promise.all(names.map((name) => clients.mallory.npm(['view', '@acme/' + name, 'version'])));
    expect([viewed.code, shown(viewed.stderr)]).toEqual([viewedNone.code, shown(viewedNone.stderr)]);
  });

  it('a member views and installs the private package', async () => {
    expect((await clients.bob.npm(['view', '@acme/' + PRIVATE, 'version'])).stdout.trim()).toBe('1.0.0');
    const dir = consumer('bob');
    const installed = await clients.bob.npm(['install', '@acme/' + PRIVATE], dir);
    expect([installed.code, installed.stderr]).toEqual([0, expect.any(String)]);
    expect(JSON.parse(readFileSync(dir + '/node_modules/@acme/' + PRIVATE + '/package.json', 'utf8')).version).toBe('1.0.0');
  });
});

describe('with an upstream that pulls names through', () => {
  let upstream: FeedStandIn;
  let pulling: TestRegistry;
  const who: Record<string, string> = {};
  const askedFor = (short: string) => [...upstream.packumentRequests.entries()].filter(([path]) => path.includes(short)).reduce((sum, [, n]) => sum + n, 0);
  const read = (token: string | null, name: string) => ask('GET', pulling.localUrl + '/@acme%2f' + name, token ? { authorization: 'Bearer ' + token } : {});

  beforeAll(async () => {
    upstream = await startFeedStandIn();
    upstream.publish('@acme/upstreamed', ['1.0.0']);
    pulling = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url });
    for (const name of ['alice', 'bob', 'mallory']) who[name] = await pulling.signup(name);
    expect((await pulling.request('PUT', '/-/org/acme/user', { token: who.alice, body: { user: 'alice' } })).status).toBe(200);
    expect((await pulling.request('PUT', '/-/org/acme/user', { token: who.alice, body: { user: 'bob' } })).status).toBe(200);
    expect((await pulling.request('PUT', '/@acme%2f' + PRIVATE, { token: who.alice, body: principalsPublishBody('@acme/' + PRIVATE, '1.0.0') })).status).toBe(201);
    expect((await pulling.request('POST', '/-/package/@acme%2f' + PRIVATE + '/access', { token: who.alice, body: { access: 'restricted' } })).status).toBe(200);
  }, 60_000);
  afterAll(async () => {
    await pulling?.stop();
    await upstream?.close();
  });

  it('a name of the org\'s scope with no package here is, to a non-member, the private package\'s answer, and the upstream is not asked (it would take longer, or answer otherwise); a member pulls it through, then anyone reads it', async () => {
    // (Publishing it asked the upstream whether the name was taken there.)
    const before = [MISSING, 'upstreamed', PRIVATE].map(askedFor);
    for (const token of [who.mallory, null]) {
      const [secret, none, notYet] = await Promise.all([PRIVATE, MISSING, 'upstreamed'].map((name) => read(token, name)));
      expect(secret).toEqual(none);
      // (A longer name: only the length of the words differs.)
      const unsized = (answer: Answer) => ({ ...answer, headers: { ...answer.headers, 'content-length': null }, body: answer.body.split('upstreamed').join('NAME') });
      expect(unsized(notYet)).toEqual(unsized(secret));
    }
    // A non-member's publish of either: refused alike, the upstream not asked whether it has the name.
    const [published, publishedNone] = await Promise.all([PRIVATE, MISSING].map((name) => ask('PUT', pulling.localUrl + '/@acme%2f' + name, { authorization: 'Bearer ' + who.mallory }, principalsPublishBody('@acme/' + name, '9.9.9'))));
    expect([published.status, published]).toEqual([403, publishedNone]);
    expect([MISSING, 'upstreamed', PRIVATE].map(askedFor)).toEqual(before);
    // A member's read of the missing name is asked of the upstream; the upstream's package is pulled through.
    expect((await read(who.bob, MISSING)).status).toBe(404);
    expect(askedFor(MISSING)).toBe(before[0] + 1);
    expect((await read(who.bob, 'upstreamed')).status).toBe(200);
    // Once the mirror's feed reports it (within a poll of 250 ms), it is a package like any other.
    for (const token of [who.mallory, null]) expect((await settled(() => read(token, 'upstreamed'), (answer) => answer.status === 200, 5000)).status).toBe(200);
  });
});
