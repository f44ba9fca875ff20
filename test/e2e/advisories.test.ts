/**
 * The vulnerability policy with the real npm CLI, against a stand-in of the public registry that
 * speaks npm's bulk advisory API (`POST /-/npm/v1/security/advisories/bulk`): versions with an
 * advisory at or above the policy's severity are held back (packuments, version manifests, tarballs
 * 403 with the advisory's id, title and URL, dist-tags falling back), with exceptions by package and
 * by advisory; advisories that appear later hold back mirrored versions after the periodic check;
 * new versions are asked about before they are served (pull-through and the feed follower); a
 * change of the policy holds on two gateways of one database within seconds; the proxy and redirect modes ask on
 * the fly; `package:held` webhooks, `/-/replication`, `/-/health` and the package page say what is
 * held back and why; an advisory endpoint that is absent holds back or serves unchecked versions as
 * the policy says.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { FeedStandIn, StandInAdvisory, startFeedStandIn } from '../helpers/feed-standin';
import { makeProject, npmClient, NpmClient } from '../helpers/npm';
import { anotherGateway, couchGet, couchPut, mirroredDoc, setSupplyChainPolicy, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';
import { RunningRegistry } from '../../server/registry';
import { startHookReceiver } from '../helpers/servers';

const RCE: StandInAdvisory = { id: 1100001, title: 'Remote code execution in vuln-lib', url: 'https://github.com/advisories/GHSA-vuln-0001-rcex', severity: 'critical', vulnerable_versions: '>=1.2.0 <1.3.0' };
const LOW: StandInAdvisory = { id: 1100002, title: 'Information exposure in low-lib', url: 'https://github.com/advisories/GHSA-low0-0002-info', severity: 'low', vulnerable_versions: '<2.0.0' };
const EXCEPTED: StandInAdvisory = { id: 1100003, title: 'Prototype pollution in excepted-lib', url: 'https://github.com/advisories/GHSA-exc0-0003-prot', severity: 'critical', vulnerable_versions: '*' };
const BY_ID: StandInAdvisory = { id: 1100004, title: 'ReDoS in by-id-lib', url: 'https://github.com/advisories/GHSA-byid-0004-redo', severity: 'high', vulnerable_versions: '*' };
const LATER: StandInAdvisory = { id: 1100005, title: 'Command injection in later-lib', url: 'https://github.com/advisories/GHSA-late-0005-cmdi', severity: 'high', vulnerable_versions: '1.1.0' };
const FEED: StandInAdvisory = { id: 1100006, title: 'Malware in vuln-lib 1.3.0', url: 'https://github.com/advisories/GHSA-feed-0006-malw', severity: 'critical', vulnerable_versions: '1.3.0' };

let standIn: FeedStandIn;
let mirror: TestRegistry;
let second: RunningRegistry;
let proxy: TestRegistry;
let receiver: Awaited<ReturnType<typeof startHookReceiver>>;
let watcher: string;

/** Writes the supply-chain policy document of `registry` (through CouchDB, as an admin in Fauxton would). */
const setPolicy = async (registry: TestRegistry, policy: Record<string, unknown>): Promise<number> => (await setSupplyChainPolicy(registry, policy)).status;

const status = (url: string, path: string) => fetch(url + path).then((r) => r.status);
const tarballStatus = (url: string, name: string, version: string) => status(url, '/' + name + '/-/' + name + '-' + version + '.tgz');
const until = <T>(what: string, read: () => Promise<T | null>, ms = 15_000) => eventually(read, ms, what);
const whenStatus = (url: string, name: string, version: string, wanted: number) =>
  until(name + '@' + version + ' answering ' + wanted + ' at ' + url, async () => ((await tarballStatus(url, name, version)) === wanted ? true : null));

/** A fresh npm (its own cache) in front of `url`. */
const freshClient = (url: string): NpmClient => npmClient(url);


beforeAll(async () => {
  standIn = await startFeedStandIn();
  standIn.publish('vuln-lib', ['1.0.0', '1.1.0', '1.2.0']);
  standIn.publish('low-lib', ['1.0.0']);
  standIn.publish('excepted-lib', ['1.0.0']);
  standIn.publish('by-id-lib', ['1.0.0']);
  standIn.publish('later-lib', ['1.0.0', '1.1.0']);
  standIn.addAdvisory('vuln-lib', RCE);
  standIn.addAdvisory('low-lib', LOW);
  standIn.addAdvisory('excepted-lib', EXCEPTED);
  standIn.addAdvisory('by-id-lib', BY_ID);
  receiver = await startHookReceiver();
  const env = {
    UPSTREAM_REGISTRY: standIn.url,
    REPLICATION_FEED: standIn.feedUrl,
    REPLICATION_MODE: 'existing',
    REPLICATION_POLL_MS: '200',
    ADVISORIES_CHECK_SECONDS: '2',
    OUTBOUND_ALLOW_PRIVATE: '127.0.0.1',
    WEBHOOK_BACKOFF_MS: '200',
  };
  mirror = await startTestRegistry(env);
  second = await anotherGateway(mirror, 'second', env);
  proxy = await startTestRegistry({ UPSTREAM_REGISTRY: standIn.url, UPSTREAM_MODE: 'proxy' });
  watcher = await mirror.signup('watcher');
  expect((await couchPut(mirror, '/' + mirror.registryDb + '-state/webhook:held', { type: 'webhook', url: receiver.url, secret: 'held-secret', events: ['package:held'] })).status).toBe(201);
});

afterAll(async () => {
  await second?.close();
  await mirror?.stop();
  await proxy?.stop();
  await standIn?.close();
  await receiver?.stop();
});

describe('a vulnerability policy on mirrored packages', () => {
  let lockedProject: string;

  it('without the policy, a version with an advisory is served (a lockfile pins vuln-lib@1.2.0)', async () => {
    const client = freshClient(mirror.url);
    lockedProject = makeProject(client.home, 'locked-app', {});
    const install = await client.npm(['install', 'vuln-lib@1.2.0', '--save-exact'], lockedProject);
    expect(install.code).toBe(0);
    expect(JSON.parse(readFileSync(join(lockedProject, 'package-lock.json'), 'utf8')).packages['node_modules/vuln-lib'].version).toBe('1.2.0');
  });

  it('the policy document takes "advisories" (checked strictly); `npm ci` of a lockfile pinned to a held-back version fails with the advisory\'s id, title and URL', async () => {
    expect(await setPolicy(mirror, { advisories: { severity: 'high', exceptions: [{ package: 'excepted-lib', reason: 'not reachable from our code' }, { advisory: 1100004, reason: 'inputs are bounded here' }] } })).toBe(201);
    // An invalid one is refused by _design/config, for admins too.
    expect(await setPolicy(mirror, { advisories: { severity: 'severe' } })).toBe(403);
    // Until the first check (started at once) has asked about them, mirrored versions are unchecked, and held back too.
    const refused = await until('vuln-lib@1.2.0 held back by its advisory', async () => {
      const res = await fetch(mirror.url + '/vuln-lib/-/vuln-lib-1.2.0.tgz');
      const body = res.status === 403 ? await res.json() : null;
      return body && body.error.includes('advisory 1100001') ? body : null;
    });
    expect(refused.error).toBe('vuln-lib@1.2.0 is held back by this registry\'s vulnerability policy: advisory 1100001 (critical) "Remote code execution in vuln-lib" https://github.com/advisories/GHSA-vuln-0001-rcex; use a version without it, or ask an admin for an exception.');
    const client = freshClient(mirror.url);
    const ci = await client.npm(['ci'], lockedProject);
    expect(ci.code).not.toBe(0);
    expect(ci.stderr).toContain('403');
    expect(ci.stderr).toContain('advisory 1100001 (critical) "Remote code execution in vuln-lib" https://github.com/advisories/GHSA-vuln-0001-rcex');
  });

  it('`npm install` without a lockfile falls back to an allowed version; packuments, manifests and dist-tags leave the held-back one out', async () => {
    const full = await (await fetch(mirror.url + '/vuln-lib')).json();
    expect(Object.keys(full.versions)).toEqual(['1.0.0', '1.1.0']);
    expect(full['dist-tags'].latest).toBe('1.1.0');
    expect(JSON.stringify(full)).not.toContain('origin_advisories');
    const corgi = await (await fetch(mirror.url + '/vuln-lib', { headers: { accept: 'application/vnd.npm.install-v1+json' } })).json();
    expect(Object.keys(corgi.versions)).toEqual(['1.0.0', '1.1.0']);
    const manifest = await fetch(mirror.url + '/vuln-lib/1.2.0');
    expect(manifest.status).toBe(403);
    expect((await manifest.json()).error).toContain('advisory 1100001');
    expect((await mirror.request('GET', '/-/package/vuln-lib/dist-tags')).body).toEqual({ latest: '1.1.0' });
    const client = freshClient(mirror.url);
    const dir = makeProject(client.home, 'fresh-app', { 'vuln-lib': '^1.0.0' });
    const install = await client.npm(['install'], dir);
    expect(install.code).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'node_modules/vuln-lib/package.json'), 'utf8')).version).toBe('1.1.0');
  });

  it('a package pulled through for the first time is asked about before its first answer: the advisory\'s version is never served', async () => {
    standIn.publish('new-vuln', ['1.0.0', '2.0.0']);
    standIn.addAdvisory('new-vuln', { id: 1100007, title: 'Backdoor in new-vuln', url: 'https://github.com/advisories/GHSA-newv-0007-back', severity: 'critical', vulnerable_versions: '>=2.0.0' });
    const asked = standIn.advisoryRequests.length;
    const first = await (await fetch(mirror.url + '/new-vuln')).json();
    expect(Object.keys(first.versions)).toEqual(['1.0.0']);
    expect(first['dist-tags'].latest).toBe('1.0.0');
    expect(standIn.advisoryRequests.slice(asked).some((body) => Object.keys(body).includes('new-vuln'))).toBe(true);
    expect(await tarballStatus(mirror.url, 'new-vuln', '2.0.0')).toBe(403);
  });

  it('an advisory below the severity is served; exceptions by package and by advisory id let theirs through', async () => {
    const client = freshClient(mirror.url);
    const dir = makeProject(client.home, 'excepted-app', { 'low-lib': '1.0.0', 'excepted-lib': '1.0.0', 'by-id-lib': '1.0.0' });
    const install = await client.npm(['install'], dir);
    expect(install.stderr).not.toContain('403');
    expect(install.code).toBe(0);
    // Without the exceptions, both are held back.
    expect(await setPolicy(mirror, { advisories: { severity: 'high' } })).toBe(201);
    await whenStatus(mirror.url, 'excepted-lib', '1.0.0', 403);
    await whenStatus(mirror.url, 'by-id-lib', '1.0.0', 403);
    expect(await tarballStatus(mirror.url, 'low-lib', '1.0.0')).toBe(200);
    // The low advisory holds back once the threshold is low.
    expect(await setPolicy(mirror, { advisories: { severity: 'low' } })).toBe(201);
    await whenStatus(mirror.url, 'low-lib', '1.0.0', 403);
    expect(await setPolicy(mirror, { advisories: { severity: 'high' } })).toBe(201);
    await whenStatus(mirror.url, 'low-lib', '1.0.0', 200);
  });

  it('an advisory that appears later holds back a mirrored version after the periodic check, on both gateways, with a package:held webhook', async () => {
    await whenStatus(mirror.url, 'later-lib', '1.1.0', 200);
    expect(await tarballStatus(second.localUrl, 'later-lib', '1.1.0')).toBe(200);
    standIn.addAdvisory('later-lib', LATER);
    await whenStatus(mirror.url, 'later-lib', '1.1.0', 403);
    await whenStatus(second.localUrl, 'later-lib', '1.1.0', 403);
    expect(await tarballStatus(mirror.url, 'later-lib', '1.0.0')).toBe(200);
    const event = await until('the package:held event of later-lib', async () => receiver.received.find((r) => r.event === 'package:held' && r.name === 'later-lib') || null);
    expect(event.change.versions).toEqual([{ version: '1.1.0', advisory: { id: 1100005, title: LATER.title, url: LATER.url, severity: 'high' }, reason: expect.stringContaining('advisory 1100005 (high)') }]);
    // vuln-lib's, written by the first check after the policy was switched on.
    const vuln = receiver.received.find((r) => r.event === 'package:held' && r.name === 'vuln-lib');
    expect(vuln?.change.versions.map((v: { version: string }) => v.version)).toEqual(['1.2.0']);
    // The advisory withdrawn: served again after the next check.
    standIn.removeAdvisory(LATER.id);
    await whenStatus(mirror.url, 'later-lib', '1.1.0', 200);
    standIn.addAdvisory('later-lib', LATER);
    await whenStatus(mirror.url, 'later-lib', '1.1.0', 403);
  });

  it('a change of the policy holds on both gateways within seconds', async () => {
    const started = Date.now();
    expect(await setPolicy(mirror, { advisories: { severity: 'critical' } })).toBe(201);
    await whenStatus(mirror.url, 'later-lib', '1.1.0', 200);
    await whenStatus(second.localUrl, 'later-lib', '1.1.0', 200);
    expect(Date.now() - started).toBeLessThan(6000);
    expect(await tarballStatus(second.localUrl, 'vuln-lib', '1.2.0')).toBe(403);
    expect(await setPolicy(mirror, { advisories: { severity: 'high' } })).toBe(201);
    await whenStatus(second.localUrl, 'later-lib', '1.1.0', 403);
    await whenStatus(mirror.url, 'later-lib', '1.1.0', 403);
    expect(Date.now() - started).toBeLessThan(12_000);
  });

  it('a new version that arrives through the change feed is asked about before it is stored, and never served with its critical advisory', async () => {
    standIn.addAdvisory('vuln-lib', FEED);
    standIn.publish('vuln-lib', ['1.0.0', '1.1.0', '1.2.0', '1.3.0']);
    const doc = await until('vuln-lib@1.3.0 mirrored', async () => {
      const res = await mirroredDoc(mirror, 'vuln-lib');
      return res.body.versions && res.body.versions['1.3.0'] ? res.body : null;
    });
    // The first revision that had 1.3.0 already had the advisory endpoint's answer for it.
    const revs = (await couchGet(mirror, '/' + mirror.registryDb + '-mirror/vuln-lib?revs_info=true')).body._revs_info as { rev: string; status: string }[];
    let first: any = doc;
    for (const info of revs.filter((r) => r.status === 'available')) {
      const older = (await couchGet(mirror, '/' + mirror.registryDb + '-mirror/vuln-lib?rev=' + info.rev)).body;
      if (older.versions && older.versions['1.3.0']) first = older;
    }
    expect(first.origin_advisories.checked).toContain('1.3.0');
    expect(first.origin_advisories.affected['1.3.0']).toContain('1100006');
    expect(await tarballStatus(mirror.url, 'vuln-lib', '1.3.0')).toBe(403);
    expect(await tarballStatus(second.localUrl, 'vuln-lib', '1.3.0')).toBe(403);
  });

  it('/-/replication lists what is held back and why, the endpoint and the last check; search and the package page show it', async () => {
    const body = (await mirror.request('GET', '/-/replication', { token: watcher })).body;
    const advisories = body.supplyChain.advisories;
    expect(advisories.severity).toBe('high');
    expect(advisories.unchecked).toBe('hold');
    expect(advisories.endpoints).toHaveLength(1);
    expect(advisories.endpoints[0]).toMatchObject({ upstream: 'default', state: 'ok', endpoint: standIn.url + '/-/npm/v1/security/advisories/bulk', lastCheck: { outcome: 'ok' } });
    const held = (advisories.heldBack as { name: string; version: string; advisory: { id: number } }[]).map((h) => h.name + '@' + h.version + ':' + h.advisory.id).sort();
    expect(held).toEqual(expect.arrayContaining(['vuln-lib@1.2.0:1100001', 'vuln-lib@1.3.0:1100006', 'later-lib@1.1.0:1100005', 'excepted-lib@1.0.0:1100003', 'by-id-lib@1.0.0:1100004']));
    expect(held.some((h) => h.startsWith('low-lib'))).toBe(false);
    // Search names the version clients are served, not the held-back latest (1.3.0).
    const search = await (await fetch(mirror.url + '/-/v1/search?text=vuln-lib')).json();
    expect(search.objects.find((o: { package: { name: string } }) => o.package.name === 'vuln-lib').package.version).toBe('1.1.0');
    const page = await (await fetch(mirror.url + '/vuln-lib', { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('Held back');
    expect(page).toContain('href="https://github.com/advisories/GHSA-vuln-0001-rcex"');
    expect(page).toContain('Remote code execution in vuln-lib');
  });
});

describe('the proxy and redirect modes', () => {
  it('asks the advisory endpoint on the fly: held-back versions are left out, their tarballs refused with the reason, npm falls back', async () => {
    expect(await setPolicy(proxy, { advisories: { severity: 'high' } })).toBe(201);
    const held = await until('the proxy to apply the policy', async () => {
      const res = await fetch(proxy.url + '/vuln-lib/-/vuln-lib-1.2.0.tgz');
      return res.status === 403 ? res.json() : null;
    });
    expect(held.error).toContain('advisory 1100001 (critical) "Remote code execution in vuln-lib" https://github.com/advisories/GHSA-vuln-0001-rcex');
    const full = await (await fetch(proxy.url + '/vuln-lib')).json();
    expect(Object.keys(full.versions)).toEqual(['1.0.0', '1.1.0']);
    expect(full['dist-tags'].latest).toBe('1.1.0');
    expect((await fetch(proxy.url + '/vuln-lib/1.3.0')).status).toBe(403);
    expect(await tarballStatus(proxy.url, 'low-lib', '1.0.0')).toBe(200);
    const client = freshClient(proxy.url);
    const dir = makeProject(client.home, 'proxied-app', { 'vuln-lib': '*' });
    const install = await client.npm(['install'], dir);
    expect(install.code).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'node_modules/vuln-lib/package.json'), 'utf8')).version).toBe('1.1.0');
  });

  it('the redirect mode redirects only tarballs of versions without an advisory, and serves packuments filtered', async () => {
    const redirect = await startTestRegistry({ UPSTREAM_REGISTRY: standIn.url, UPSTREAM_MODE: 'redirect' });
    try {
      expect(await setPolicy(redirect, { advisories: { severity: 'high' } })).toBe(201);
      await until('the redirecting registry to apply the policy', async () => ((await tarballStatus(redirect.url, 'vuln-lib', '1.2.0')) === 403 ? true : null));
      const allowed = await fetch(redirect.url + '/vuln-lib/-/vuln-lib-1.1.0.tgz', { redirect: 'manual' });
      expect(allowed.status).toBe(302);
      expect(allowed.headers.get('location')).toBe(standIn.url + '/vuln-lib/-/vuln-lib-1.1.0.tgz');
      const full = await (await fetch(redirect.url + '/vuln-lib')).json();
      expect(full['dist-tags'].latest).toBe('1.1.0');
      expect(Object.keys(full.versions)).toEqual(['1.0.0', '1.1.0']);
    } finally {
      await redirect.stop();
    }
  });
});

describe('an upstream without an advisory endpoint', () => {
  it('"unchecked": "hold" holds back what it cannot check (said in /-/health and /-/replication); "serve" serves it', async () => {
    standIn.advisoryEndpoint('absent');
    standIn.publish('fresh-lib', ['1.0.0']);
    const tarball = await fetch(mirror.url + '/fresh-lib/-/fresh-lib-1.0.0.tgz');
    expect(tarball.status).toBe(403);
    expect((await tarball.json()).error).toContain('have not been checked for it yet');
    const health = (await mirror.request('GET', '/-/health')).body;
    expect(health.checks.advisories.ok).toBe(false);
    expect(health.checks.advisories.detail).toContain('has no advisory endpoint');
    expect(health.checks.advisories.detail).toContain('held back until it answers');
    const replication = (await mirror.request('GET', '/-/replication', { token: watcher })).body;
    expect(replication.supplyChain.advisories.endpoints[0].state).toBe('absent');
    expect(await setPolicy(mirror, { advisories: { severity: 'high', unchecked: 'serve' } })).toBe(201);
    await whenStatus(mirror.url, 'fresh-lib', '1.0.0', 200);
    // What was checked before stays held back.
    expect(await tarballStatus(mirror.url, 'vuln-lib', '1.2.0')).toBe(403);
    standIn.advisoryEndpoint('up');
    // The tarball served is stored behind the answer: the test ends once it is (a write cut off by the stop would outlive it).
    await until('fresh-lib\'s tarball stored', async () => ((await mirroredDoc(mirror, 'fresh-lib')).body._attachments?.['fresh-lib-1.0.0.tgz'] ? true : null));
  });
});
