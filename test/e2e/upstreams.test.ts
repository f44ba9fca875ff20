/**
 * Several upstreams routed by package pattern (`UPSTREAMS`), against two real upstream registries
 * started here, each behind a small proxy that records what it is asked and with which credentials:
 * a Verdaccio whose scopes `@vscope` and `@vlocked` only logged-in users read (its token comes from
 * `adduser`), and another instance of this registry, whose tarballs are on another origin (its
 * `REGISTRY_PUBLIC_URL` is a third recording proxy); and an upstream that is down. With the real npm
 * CLI: a scope routed to Verdaccio installs with the token and fails clearly without it, a name on
 * both upstreams comes from the one it is routed to while the other is never asked, a down upstream
 * fails its names only, private scopes go nowhere, each mode works on a route, and a token reaches
 * its own upstream's origin only. Audit is split by route; the status page, `npm run replication`
 * and the metrics show each upstream; each feed has its follower; a copy mirrored before the routes
 * changed is not served from the wrong upstream.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { CountingProxy, startCountingProxy } from '../helpers/counting-proxy';
import { makePackage, makeProject, npmClient, NpmClient, run } from '../helpers/npm';
import { anotherGateway, basicAuthOf, couchGet, mirroredDoc, startTestRegistry, TestRegistry } from '../helpers/registry';
import { freePort } from '../helpers/servers';
import { startVerdaccio, Verdaccio } from '../helpers/verdaccio';
import { eventually } from '../helpers/wait';

let verdaccio: Verdaccio;
let instance: TestRegistry;
/** In front of Verdaccio; also the stand-in for its advisory service. */
let viaVerdaccio: CountingProxy;
/** In front of the other instance; also the stand-in for its advisory service. */
let viaInstance: CountingProxy;
/** The other instance's tarball host (its REGISTRY_PUBLIC_URL): another origin than its upstream URL. */
let tarballHost: CountingProxy;
/** The other instance again, without tarballs at npm's usual path (as GitHub Packages keeps them under /download/). */
let viaAlt: CountingProxy;
let registry: TestRegistry;
let verdaccioToken: string;
let instanceToken: string;
let deadUrl: string;

const BULK = '/-/npm/v1/security/advisories/bulk';
const advisoryFor = (from: string) => (body: Record<string, string[]>) =>
  Object.fromEntries(Object.keys(body).map((name, i) => [name, [{ id: i + 1, title: 'advisory of ' + name + ' from ' + from, severity: 'high', vulnerable_versions: '<2.0.0', url: 'https://example.com/' + i }]]));


/** Publishes `manifest` with an index.js that says where it was published. */
async function publishAt(client: NpmClient, manifest: Record<string, unknown>, where: string): Promise<void> {
  const dir = makePackage(join(client.home, where), manifest, { 'index.js': 'module.exports = ' + JSON.stringify(manifest.name + ' from ' + where) + ';\n' });
  const published = await client.npm(['publish'], dir);
  if (published.code !== 0) throw new Error('publishing ' + String(manifest.name) + ' at ' + where + ' failed: ' + published.stderr);
}

const upstreamsOf = (routes: Record<string, unknown>[]) => JSON.stringify(routes);

beforeAll(async () => {
  verdaccio = await startVerdaccio({ authenticated: ['@vscope/*', '@vlocked/*'] });
  viaVerdaccio = await startCountingProxy(verdaccio.url, { advisories: advisoryFor('verdaccio') });
  verdaccioToken = await verdaccio.adduser('vpublisher', 'vpublisher-password');
  const atVerdaccio = npmClient(verdaccio.url, verdaccioToken);
  await publishAt(atVerdaccio, { name: '@vscope/secret', version: '1.0.0' }, 'verdaccio');
  await publishAt(atVerdaccio, { name: '@vlocked/secret', version: '1.0.0' }, 'verdaccio');
  await publishAt(atVerdaccio, { name: '@both/pkg', version: '1.0.0' }, 'verdaccio');
  await publishAt(atVerdaccio, { name: 'shared-plain', version: '1.0.0' }, 'verdaccio');

  tarballHost = await startCountingProxy();
  // Its tarball URLs name the tarball host, which passes them on to it.
  instance = await startTestRegistry({ REGISTRY_PUBLIC_URL: tarballHost.url });
  tarballHost.target = instance.localUrl;
  viaInstance = await startCountingProxy(instance.localUrl, { advisories: advisoryFor('instance') });
  instanceToken = await instance.signup('ipublisher');
  const atInstance = npmClient(instance.localUrl, instanceToken);
  await publishAt(atInstance, { name: '@both/pkg', version: '1.0.0' }, 'instance');
  await publishAt(atInstance, { name: 'shared-plain', version: '1.0.0' }, 'instance');
  await publishAt(atInstance, { name: 'plain-dep', version: '1.0.0' }, 'instance');
  await publishAt(atInstance, { name: 'plain-app', version: '1.0.0', dependencies: { 'plain-dep': '^1.0.0' } }, 'instance');
  await publishAt(atInstance, { name: '@redir/thing', version: '1.0.0' }, 'instance');
  await publishAt(atInstance, { name: '@alt/pkg', version: '1.0.0' }, 'instance');
  viaAlt = await startCountingProxy(instance.localUrl, { notFound: (path) => path.includes('/-/') });

  deadUrl = 'http://127.0.0.1:' + (await freePort());
  registry = await startTestRegistry({
    UPSTREAMS: upstreamsOf([
      { name: 'verdaccio', url: viaVerdaccio.url, packages: ['@vscope/*', '@both/*'], mode: 'proxy', tokenEnv: 'VERDACCIO_TOKEN' },
      { name: 'verdaccio-anon', url: viaVerdaccio.url, packages: ['@vlocked/*'], mode: 'mirror' },
      { name: 'down', url: deadUrl, packages: ['@down/*'], mode: 'proxy', timeoutMs: 2000 },
      { name: 'redirected', url: viaInstance.url, packages: ['@redir/*'], mode: 'redirect' },
      { name: 'alt', url: viaAlt.url, packages: ['@alt/*'], mode: 'proxy', tokenEnv: 'INSTANCE_TOKEN' },
      { name: 'instance', url: viaInstance.url, packages: ['**'], mode: 'mirror', tokenEnv: 'INSTANCE_TOKEN' },
    ]),
    VERDACCIO_TOKEN: verdaccioToken,
    INSTANCE_TOKEN: instanceToken,
    REPLICATION_PRIVATE_SCOPES: '@corp',
    // The instance's tarball host: an admin lets the registry ask it (it is on loopback here).
    OUTBOUND_ALLOW_PRIVATE: new URL(tarballHost.url).host,
  });
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await instance?.stop();
  await verdaccio?.stop();
  for (const proxy of [viaVerdaccio, viaInstance, tarballHost, viaAlt]) await proxy?.stop();
});

const consumer = () => npmClient(registry.url);
const installed = (dir: string, name: string) => readFileSync(join(dir, 'node_modules', name, 'index.js'), 'utf8');
const authorizations = (proxy: CountingProxy, text: string) => [...new Set(proxy.asked(text).map((r) => r.authorization))];

describe('routing by package pattern', () => {
  it('a scope routed to the upstream that requires a token installs with it (proxy mode); the token goes there and nowhere else', async () => {
    const client = consumer();
    const dir = makeProject(client.home, 'vscope-app', { '@vscope/secret': '^1.0.0' });
    const install = await client.npm(['install'], dir);
    expect([install.code, install.stderr]).toEqual([0, expect.anything()]);
    expect(installed(dir, '@vscope/secret')).toContain('from verdaccio');
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/@vscope/secret'].resolved).toBe(registry.url + '/@vscope/secret/-/secret-1.0.0.tgz');
    // The packument and the tarball, both asked with Verdaccio's token.
    expect(viaVerdaccio.asked('@vscope/secret').map((r) => r.path)).toEqual(expect.arrayContaining(['/@vscope/secret', '/@vscope/secret/-/secret-1.0.0.tgz']));
    expect(authorizations(viaVerdaccio, '@vscope/secret')).toEqual(['Bearer ' + verdaccioToken]);
    expect(viaInstance.asked('@vscope')).toEqual([]);
  });

  it('without a token in the configuration for that upstream, the install fails with a clear error naming the upstream and what to set, and the registry stays up', async () => {
    const client = consumer();
    const dir = makeProject(client.home, 'vlocked-app', { '@vlocked/secret': '^1.0.0' });
    const install = await client.npm(['install'], dir);
    expect(install.code).not.toBe(0);
    expect(install.stderr).toContain('424');
    expect(install.stderr).toContain('refused this registry (401)');
    expect(install.stderr).toContain('it wants a token and none is set for the upstream "verdaccio-anon"; an admin sets one with "tokenEnv" in its UPSTREAMS entry');
    expect(authorizations(viaVerdaccio, '@vlocked')).toEqual([undefined]);
    expect((await registry.request('GET', '/-/ping')).status).toBe(200);
  });

  it('a name both upstreams have is served from the one its pattern routes to, and the other is never asked', async () => {
    const client = consumer();
    const dir = makeProject(client.home, 'both-app', { '@both/pkg': '^1.0.0', 'shared-plain': '^1.0.0' });
    const install = await client.npm(['install'], dir);
    expect([install.code, install.stderr]).toEqual([0, expect.anything()]);
    expect(installed(dir, '@both/pkg')).toContain('@both/pkg from verdaccio');
    expect(installed(dir, 'shared-plain')).toContain('shared-plain from instance');
    expect(viaVerdaccio.asked('@both/pkg').length).toBeGreaterThan(0);
    expect(viaInstance.asked('@both')).toEqual([]);
    expect(tarballHost.asked('@both')).toEqual([]);
    expect(viaInstance.asked('shared-plain').length).toBeGreaterThan(0);
    expect(viaVerdaccio.asked('shared-plain')).toEqual([]);
  });

  it('mirror mode with a token: packuments asked with it, the tarballs on another origin without it, stored with the upstream as origin', async () => {
    const client = consumer();
    const dir = makeProject(client.home, 'plain-app-consumer', { 'plain-app': '^1.0.0' });
    const install = await client.npm(['install'], dir);
    expect([install.code, install.stderr]).toEqual([0, expect.anything()]);
    expect(installed(dir, 'plain-dep')).toContain('plain-dep from instance');
    const stored = await eventually(async () => {
      const doc = await mirroredDoc(registry, 'plain-app');
      return doc.body._attachments && doc.body._attachments['plain-app-1.0.0.tgz'] ? doc.body : null;
    });
    expect(stored.origin).toBe(viaInstance.url);
    expect(authorizations(viaInstance, 'plain-app')).toEqual(['Bearer ' + instanceToken]);
    // The tarball host is another origin: asked, and never with a token.
    expect(tarballHost.asked('plain-app-1.0.0.tgz').length).toBeGreaterThan(0);
    expect(tarballHost.requests.filter((r) => r.authorization !== undefined)).toEqual([]);
    // No token ever reached another upstream than its own.
    expect(viaVerdaccio.requests.filter((r) => r.authorization === 'Bearer ' + instanceToken)).toEqual([]);
    expect(viaInstance.requests.filter((r) => r.authorization === 'Bearer ' + verdaccioToken)).toEqual([]);
  });

  it('proxy mode, an upstream whose tarballs are not at npm\'s usual path: fetched where its packument lists them, on another origin without the token', async () => {
    const client = consumer();
    const dir = makeProject(client.home, 'alt-app', { '@alt/pkg': '^1.0.0' });
    const install = await client.npm(['install'], dir);
    expect([install.code, install.stderr]).toEqual([0, expect.anything()]);
    expect(installed(dir, '@alt/pkg')).toContain('@alt/pkg from instance');
    expect(viaAlt.asked('@alt/pkg/-/pkg-1.0.0.tgz').map((r) => r.authorization)).toEqual(['Bearer ' + instanceToken]);
    expect(tarballHost.asked('@alt/pkg/-/pkg-1.0.0.tgz').map((r) => r.authorization)).toEqual([undefined]);
  });

  it('redirect mode: npm follows the 302 to the upstream and installs from there', async () => {
    const answer = await fetch(registry.url + '/@redir%2fthing', { redirect: 'manual' });
    expect(answer.status).toBe(302);
    expect(answer.headers.get('location')).toBe(viaInstance.url + '/@redir%2Fthing');
    const client = consumer();
    const dir = makeProject(client.home, 'redir-app', { '@redir/thing': '^1.0.0' });
    const install = await client.npm(['install'], dir);
    expect([install.code, install.stderr]).toEqual([0, expect.anything()]);
    expect(installed(dir, '@redir/thing')).toContain('@redir/thing from instance');
  });

  it('a down upstream fails its names at once with a clear error naming it; the other upstreams keep working', async () => {
    const client = consumer();
    const dir = makeProject(client.home, 'down-app', { '@down/thing': '^1.0.0' });
    const started = Date.now();
    const install = await client.npm(['install'], dir);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(install.code).not.toBe(0);
    expect(install.stderr).toContain('424');
    expect(install.stderr).toContain('The registry ' + deadUrl + ' is unreachable (ECONNREFUSED)');
    for (const path of ['/@vscope%2fsecret', '/plain-dep', '/shared-plain']) expect([path, (await registry.request('GET', path)).status]).toEqual([path, 200]);
    // /-/health says so (degraded, by name only: it is public), and still serves.
    const health = await fetch(registry.url + '/-/health');
    expect(health.status).toBe(200);
    const body = (await health.json()) as { status: string; checks: Record<string, { ok: boolean; detail: string }> };
    expect(body.status).toBe('degraded');
    expect(body.checks.upstreams).toMatchObject({ ok: false, detail: expect.stringContaining('the upstream "down" did not answer its last request') });
    expect(JSON.stringify(body)).not.toContain(deadUrl);
  });

  it('a private scope is asked of no upstream, though a pattern ("**") would match it', async () => {
    const res = await registry.request('GET', '/@corp%2fthing');
    expect(res.status).toBe(404);
    expect(res.body.error).toContain('its scope is private here, so it is never fetched from an upstream');
    const client = consumer();
    const install = await client.npm(['install'], makeProject(client.home, 'corp-app', { '@corp/thing': '^1.0.0' }));
    expect(install.code).not.toBe(0);
    expect(install.stderr).toContain('404');
    for (const proxy of [viaVerdaccio, viaInstance, tarballHost]) expect(proxy.asked('@corp')).toEqual([]);
  });
});

describe('audit, status and metrics', () => {
  it('a bulk advisory request is split by route: each upstream is asked about its names only, with its token; the answers are merged', async () => {
    const before = [viaVerdaccio.requests.length, viaInstance.requests.length];
    const res = await registry.request('POST', BULK, { body: { '@vscope/secret': ['1.0.0'], 'plain-dep': ['1.0.0'], '@corp/thing': ['1.0.0'] } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['@vscope/secret', 'plain-dep']);
    expect(res.body['@vscope/secret'][0].title).toBe('advisory of @vscope/secret from verdaccio');
    expect(res.body['plain-dep'][0].title).toBe('advisory of plain-dep from instance');
    const audits = (proxy: CountingProxy, from: number) => proxy.requests.slice(from).filter((r) => r.path === BULK);
    expect(audits(viaVerdaccio, before[0]).map((r) => [r.body, r.authorization])).toEqual([[{ '@vscope/secret': ['1.0.0'] }, 'Bearer ' + verdaccioToken]]);
    expect(audits(viaInstance, before[1]).map((r) => [r.body, r.authorization])).toEqual([[{ 'plain-dep': ['1.0.0'] }, 'Bearer ' + instanceToken]]);
  });

  it('the status page and npm run replication show each upstream (URL, mode, patterns, reachable, requests), never a token', async () => {
    const token = await registry.signup('watcher');
    const res = await registry.request('GET', '/-/replication', { token });
    expect(res.status).toBe(200);
    const text = JSON.stringify(res.body);
    expect(text).not.toContain(verdaccioToken);
    expect(text).not.toContain(instanceToken);
    const upstreams = res.body.upstreams as Record<string, any>[];
    expect(upstreams.map((u) => [u.name, u.url, u.mode, u.patterns, u.token])).toEqual([
      ['verdaccio', viaVerdaccio.url, 'proxy', ['@vscope/*', '@both/*'], 'env:VERDACCIO_TOKEN'],
      ['verdaccio-anon', viaVerdaccio.url, 'mirror', ['@vlocked/*'], null],
      ['down', deadUrl, 'proxy', ['@down/*'], null],
      ['redirected', viaInstance.url, 'redirect', ['@redir/*'], null],
      ['alt', viaAlt.url, 'proxy', ['@alt/*'], 'env:INSTANCE_TOKEN'],
      ['instance', viaInstance.url, 'mirror', ['**'], 'env:INSTANCE_TOKEN'],
    ]);
    const byName = Object.fromEntries(upstreams.map((u) => [u.name, u]));
    expect(byName.down).toMatchObject({ reachable: false, lastError: 'is unreachable (ECONNREFUSED)' });
    expect(byName.down.failures).toBeGreaterThan(0);
    expect(byName.verdaccio).toMatchObject({ reachable: true, failures: 0 });
    expect(byName.verdaccio.requests).toBeGreaterThan(1);
    expect(byName['verdaccio-anon']).toMatchObject({ reachable: false });
    expect(byName.instance.packagesWritten).toBeGreaterThan(0);

    const cli = await run(process.execPath, [join(__dirname, '..', '..', 'dist', 'replication', 'cli.js'), '--registry', registry.url], { env: { ...process.env, REGISTRY_TOKEN: token } });
    expect([cli.code, cli.stderr]).toEqual([0, '']);
    expect(cli.stdout).toContain('upstream      verdaccio  ' + viaVerdaccio.url + '  @vscope/* @both/*  (unknown names: proxy, token from env:VERDACCIO_TOKEN)');
    expect(cli.stdout).toContain('upstream      down  ' + deadUrl + '  @down/*  (unknown names: proxy)');
    expect(cli.stdout).toMatch(/health {6}UNREACHABLE, \d+ requests, \d+ failed; last error .*is unreachable \(ECONNREFUSED\)/);
    expect(cli.stdout).not.toContain(verdaccioToken);
  });

  it('/-/metrics counts each upstream\'s requests and failures and says which is up, by name', async () => {
    const text = await (await fetch(registry.url + '/-/metrics', { headers: { authorization: basicAuthOf(registry.adminCouchUrl) } })).text();
    expect(text).toMatch(/registry_upstream_requests_total\{upstream="verdaccio",outcome="ok"\} [1-9]/);
    expect(text).toMatch(/registry_upstream_requests_total\{upstream="down",outcome="failed"\} [1-9]/);
    expect(text).toContain('registry_upstream_up{upstream="down"} 0');
    expect(text).toContain('registry_upstream_up{upstream="verdaccio"} 1');
    expect(text).not.toContain(verdaccioToken);
  });
});

describe('feeds and changed routes', () => {
  it('each upstream with a feed has its own follower and checkpoint, and mirrors only the names routed to it', async () => {
    const followerStart = tarballHost.requests.length;
    const following = await startTestRegistry({
      UPSTREAMS: upstreamsOf([
        { name: 'scoped', url: viaInstance.url, packages: ['@both/*'], feed: viaInstance.url + '/-/replicate' },
        { name: 'rest', url: tarballHost.url, packages: ['**'], feed: tarballHost.url + '/-/replicate' },
      ]),
      REPLICATION_MODE: 'all',
      REPLICATION_POLL_MS: '200',
      REPLICATION_PRIVATE_SCOPES: '@corp',
    });
    try {
      const both = await eventually(async () => ((await mirroredDoc(following, '@both/pkg')).status === 200 ? (await mirroredDoc(following, '@both/pkg')).body : null));
      const dep = await eventually(async () => ((await mirroredDoc(following, 'plain-dep')).status === 200 ? (await mirroredDoc(following, 'plain-dep')).body : null));
      expect(both.origin).toBe(viaInstance.url);
      expect(dep.origin).toBe(tarballHost.url);
      // The follower of "rest" never fetched the packument of a name routed to "scoped".
      expect(tarballHost.requests.slice(followerStart).filter((r) => r.path === '/@both/pkg')).toEqual([]);
      const token = await following.signup('follower-watcher');
      const status = await eventually(async () => {
        const res = await following.request('GET', '/-/replication', { token });
        return res.body.upstreams.every((u: { feed: { state: string } }) => u.feed && u.feed.state === 'following') ? res.body : null;
      });
      expect(status.upstreams.map((u: { name: string; feed: { feed: string } }) => [u.name, u.feed.feed])).toEqual([
        ['scoped', viaInstance.url + '/-/replicate'],
        ['rest', tarballHost.url + '/-/replicate'],
      ]);
      for (const feed of [viaInstance.url + '/-/replicate', tarballHost.url + '/-/replicate']) {
        await eventually(async () => ((await couchGet(following, '/' + following.registryDb + '-state/' + encodeURIComponent('replication-feed:' + feed))).status === 200 ? true : null));
      }
    } finally {
      await following.stop();
    }
  });

  it('a copy mirrored from one upstream before the routes changed is not served: the name comes from the upstream it is routed to now, the old one is not asked, a name no route takes any more is a 404', async () => {
    const before = await startTestRegistry({ UPSTREAM_REGISTRY: viaInstance.url, UPSTREAM_TIMEOUT_MS: '3000', OUTBOUND_ALLOW_PRIVATE: new URL(tarballHost.url).host });
    let after: Awaited<ReturnType<typeof anotherGateway>> | undefined;
    try {
      const old = await before.request('GET', '/@both%2fpkg');
      expect(old.body.versions['1.0.0'].dist.tarball).toBe(before.url + '/@both/pkg/-/pkg-1.0.0.tgz');
      const copy = await eventually(async () => ((await mirroredDoc(before, '@both/pkg')).status === 200 ? (await mirroredDoc(before, '@both/pkg')).body : null));
      expect(copy.origin).toBe(viaInstance.url);
      const oldIntegrity = copy.versions['1.0.0'].dist.integrity;
      // The same databases, now with @both/* routed to Verdaccio.
      after = await anotherGateway(before, 'routed', {
        UPSTREAMS: upstreamsOf([{ name: 'verdaccio', url: viaVerdaccio.url, packages: ['@both/*'], mode: 'mirror', tokenEnv: 'VERDACCIO_TOKEN' }]),
        VERDACCIO_TOKEN: verdaccioToken,
      });
      const asked = viaInstance.requests.length;
      const client = npmClient(after.localUrl);
      const dir = makeProject(client.home, 'rerouted', { '@both/pkg': '^1.0.0' });
      const install = await client.npm(['install'], dir);
      expect([install.code, install.stderr]).toEqual([0, expect.anything()]);
      expect(installed(dir, '@both/pkg')).toContain('@both/pkg from verdaccio');
      expect(viaInstance.requests.slice(asked).filter((r) => r.path.includes('@both'))).toEqual([]);
      const replaced = await eventually(async () => {
        const doc = (await mirroredDoc(before, '@both/pkg')).body;
        return doc.origin === viaVerdaccio.url ? doc : null;
      });
      expect(replaced.versions['1.0.0'].dist.integrity).not.toBe(oldIntegrity);
      // A name no pattern routes any more: a 404 that says so, and no upstream is asked.
      const unrouted = await fetch(after.localUrl + '/shared-plain');
      expect(unrouted.status).toBe(404);
      expect(((await unrouted.json()) as { error: string }).error).toBe('Package "shared-plain" is not here, and no upstream is configured for it (no pattern of UPSTREAMS matches the name).');
      expect(viaInstance.requests.slice(asked).filter((r) => r.path.includes('shared-plain'))).toEqual([]);
    } finally {
      await after?.close();
      await before.stop();
    }
  });
});
