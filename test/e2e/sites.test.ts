/**
 * Two sites of one registry, each a registry process on its own embedded server (or its own
 * databases of COUCHDB_URL), replicating each other both ways through relays the test can cut.
 *
 * - What one site publishes, the other serves whole (real npm publishes at one, installs at the
 *   other); accounts and tokens are one at both; the other site's packages are local there.
 * - 200 publishes spread over both, with one site killed (SIGKILL) and started again mid-way and then
 *   a partition between them that heals: no acknowledged publish is lost, both serve the same
 *   packuments and the same tarball bytes, and the same version published at both sides with other
 *   bytes is resolved the same way at both (the first publish kept, the other recorded as refused).
 * - What the site account may do, and what it may not, on the CouchDB port.
 */
import { createHash } from 'crypto';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { makePackage, makeProject, npmClient } from '../helpers/npm';
import { conflicted, convergedView, publishAt, served, Site, Sites, SITE_PASSWORD, startSites } from '../helpers/sites';
import { eventually } from '../helpers/wait';

let sites: Sites;
let A: Site;
let B: Site;
let token: string;
const run_ = Math.random().toString(36).slice(2, 8);
const user = 'site-user-' + run_;
const work = mkdtempSync(join(tmpdir(), 'sites-test-'));

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: response.status, body };
}

const basic = (name: string, password: string) => 'Basic ' + Buffer.from(name + ':' + password).toString('base64');

beforeAll(async () => {
  sites = await startSites(2, { DOWNLOADS_FLUSH_SECONDS: '1' });
  [A, B] = sites.sites;
  token = await sites.signup(A, user, 'site-user-password');
  // The account and its token reach the other site.
  await eventually(async () => ((await json(B.url() + '/-/whoami', { headers: { authorization: 'Bearer ' + token } })).status === 200 ? true : null), 30_000, 'the token to work at site B');
});

afterAll(async () => {
  await sites?.stop();
  rmSync(work, { recursive: true, force: true });
});

it('download counts of both sites add up at each', async () => {
  const name = 'site-counted-' + run_;
  const a = npmClient(A.url(), token);
  expect((await a.npm(['publish'], makePackage(work, { name, version: '1.0.0' }))).code).toBe(0);
  await eventually(() => served(B.url(), name), 20_000, name + ' at site B');
  const file = '/' + name + '/-/' + name + '-1.0.0.tgz';
  for (const [site, times] of [[A, 2], [B, 3]] as const) {
    for (let i = 0; i < times; i++) {
      const tarball = await fetch(site.url() + file);
      expect(tarball.status).toBe(200);
      await tarball.arrayBuffer();
    }
  }
  for (const site of [A, B]) {
    const counted = async () => {
      const answer = await json(site.url() + '/-/downloads/versions/last-day/' + name);
      return answer.status === 200 && answer.body.downloads['1.0.0'] === 5 ? answer.body : null;
    };
    expect(await eventually(counted, 30_000, 'the downloads of both sites at ' + site.url())).toMatchObject({ package: name, downloads: { '1.0.0': 5 } });
  }
});

it('a package published with npm at one site is installed with npm from the other; it is local there, and its maintainer publishes there too', async () => {
  const name = 'site-npm-' + run_;
  const a = npmClient(A.url(), token);
  const b = npmClient(B.url(), token);
  const v1 = makePackage(work, { name, version: '1.0.0' });
  expect((await a.npm(['publish'], v1)).code).toBe(0);
  const there = await eventually(() => served(B.url(), name), 20_000, name + ' at site B');
  expect(Object.keys(there.versions)).toEqual(['1.0.0']);
  // Whole: the tarball at B is the bytes published at A.
  const tarballA = Buffer.from(await (await fetch(A.url() + '/' + name + '/-/' + name + '-1.0.0.tgz')).arrayBuffer());
  const tarballB = Buffer.from(await (await fetch(B.url() + '/' + name + '/-/' + name + '-1.0.0.tgz')).arrayBuffer());
  expect(tarballB.equals(tarballA)).toBe(true);
  const project = makeProject(work, 'consumer-' + run_, { [name]: '^1.0.0' });
  const install = await b.npm(['install', '--no-audit', '--no-fund'], project);
  expect(install.code).toBe(0);
  // Local at B: its maintainer publishes the next version there (a mirrored package would be refused), and A gets it.
  const v2 = makePackage(work, { name, version: '1.1.0' });
  const published = await b.npm(['publish'], v2);
  expect(published.stderr + published.stdout).toContain(name + '@1.1.0');
  expect(published.code).toBe(0);
  await eventually(async () => ((await served(A.url(), name))?.versions['1.1.0'] ? true : null), 20_000, '1.1.0 at site A');
  const page = await (await fetch(B.url() + '/' + name, { headers: { accept: 'text/html' } })).text();
  expect(page).toContain('published at another site');
  expect(page).not.toContain('mirrored from');
  // Status: the peer, its id, and its jobs.
  const status = await json(B.url() + '/-/replication', { headers: { authorization: 'Bearer ' + token } });
  expect(status.status).toBe(200);
  expect(status.body.sites.peers).toHaveLength(1);
  expect(status.body.sites.peers[0].peer).not.toContain(SITE_PASSWORD);
  expect(status.body.sites.peers[0].id).toBeTruthy();
  expect(status.body.sites.origins).toContain(status.body.sites.peers[0].id);
  const health = await json(B.url() + '/-/health');
  expect(health.body.checks.replication.detail).toMatch(/site .* running/);
  const metrics = await (await fetch(B.url() + '/-/metrics', { headers: { authorization: A.adminAuth() } })).text();
  expect(metrics).toMatch(/registry_site_replication_running\{peer="http:\/\/127\.0\.0\.1:\d+\/[^"]+"\} 1/);
  expect(metrics).not.toContain(SITE_PASSWORD);
});

it('a version staged at one site is listed at the other and approved there; a rejection at one site ends it at both', async () => {
  const name = 'site-stage-' + run_;
  const a = npmClient(A.url(), token);
  const b = npmClient(B.url(), token);
  expect((await a.npm(['publish'], makePackage(work, { name, version: '1.0.0' }))).code).toBe(0);
  const staged = await a.npm(['stage', 'publish'], makePackage(work, { name, version: '1.1.0' }));
  expect(staged.code).toBe(0);
  const id = /staged with id (\S+)/.exec(staged.stdout + staged.stderr)![1].replace(/\)$/, '');
  const listedAt = async (client: typeof b) => JSON.parse((await client.npm(['stage', 'list', '--json', name])).stdout || '[]').map((item: { id: string }) => item.id);
  await eventually(async () => ((await listedAt(b)).includes(id) ? true : null), 20_000, 'the staged version listed at site B');
  expect((await served(B.url(), name))?.versions['1.1.0']).toBeUndefined();
  expect((await b.npm(['stage', 'approve', id])).code).toBe(0);
  await eventually(async () => ((await served(A.url(), name))?.versions['1.1.0'] ? true : null), 20_000, '1.1.0, approved at B, served at site A');
  await eventually(async () => ((await listedAt(a)).length === 0 ? true : null), 20_000, 'the approved version gone from staging at site A');
  // Rejected at A: gone at B too.
  const again = await b.npm(['stage', 'publish'], makePackage(work, { name, version: '1.2.0' }));
  expect(again.code).toBe(0);
  const second = /staged with id (\S+)/.exec(again.stdout + again.stderr)![1].replace(/\)$/, '');
  await eventually(async () => ((await listedAt(a)).includes(second) ? true : null), 20_000, 'the second staged version listed at site A');
  expect((await a.npm(['stage', 'reject', second])).code).toBe(0);
  await eventually(async () => ((await listedAt(b)).length === 0 ? true : null), 20_000, 'the rejected version gone from staging at site B');
  expect((await served(B.url(), name))?.versions['1.2.0']).toBeUndefined();
});

it('access rules that differ between the sites make both report it (health degraded), until they are the same again', async () => {
  const rulesOf = async (site: Site) => (await json(site.couchOrigin() + '/' + site.db + '/_design/access', { headers: { authorization: site.adminAuth() } })).body;
  const save = async (site: Site, rules: unknown) => {
    const current = await rulesOf(site);
    const saved = await json(site.couchOrigin() + '/' + site.db + '/_design/access', { method: 'PUT', headers: { authorization: site.adminAuth(), 'content-type': 'application/json' }, body: JSON.stringify({ ...current, rules }) });
    expect(saved.status).toBe(201);
  };
  const original = (await rulesOf(A)).rules;
  const stricter = [{ package: '@hidden/*', read: ['$authenticated'], publish: ['$authenticated'] }, ...original];
  await save(A, stricter);
  const degraded = await eventually(async () => {
    const health = await json(B.url() + '/-/health');
    return health.body.status === 'degraded' && /access rules/.test(health.body.checks.replication.detail) ? health.body : null;
  }, 20_000, 'site B to report the different rules');
  expect(degraded.checks.replication.detail).not.toContain('127.0.0.1');
  await save(B, stricter);
  await eventually(async () => ((await json(A.url() + '/-/health')).body.status === 'ok' && (await json(B.url() + '/-/health')).body.status === 'ok' ? true : null), 20_000, 'both sites healthy again');
});

it('an org made at one site makes both report that their orgs differ (orgs are kept with the rules, which do not replicate), until the other site has it too', async () => {
  const orgName = 'org-of-' + user;
  const made = await json(A.url() + '/-/org/' + orgName + '/user', { method: 'PUT', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, body: JSON.stringify({ user }) });
  expect(made.status).toBe(200);
  const degraded = await eventually(async () => {
    const health = await json(B.url() + '/-/health');
    return health.body.status === 'degraded' && /access rules or orgs/.test(health.body.checks.replication.detail) ? health.body : null;
  }, 20_000, 'site B to report the different orgs');
  expect(degraded.checks.replication.detail).toContain('a scope an org owns here open there');
  const designOf = async (site: Site) => (await json(site.couchOrigin() + '/' + site.db + '/_design/access', { headers: { authorization: site.adminAuth() } })).body;
  const orgs = (await designOf(A)).orgs;
  const copied = await json(B.couchOrigin() + '/' + B.db + '/_design/access', { method: 'PUT', headers: { authorization: B.adminAuth(), 'content-type': 'application/json' }, body: JSON.stringify({ ...(await designOf(B)), orgs }) });
  expect(copied.status).toBe(201);
  await eventually(async () => ((await json(A.url() + '/-/health')).body.status === 'ok' && (await json(B.url() + '/-/health')).body.status === 'ok' ? true : null), 20_000, 'both sites healthy again');
});

/** Accounts replicate between sites on the embedded server only (on a real CouchDB an admin makes them at every site). */
const embeddedOnly = process.env.COUCHDB_URL ? it.skip : it;

embeddedOnly('accounts are one at both sites: a name signed up at one cannot be signed up at the other, and a token revoked at one stops working at both', async () => {
  const taken = await json(B.url() + '/-/user/org.couchdb.user:' + user, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: user, password: 'another-password' }),
  });
  expect(taken.status).toBe(409);
  // A name created at A a moment ago, before replication could bring it: B asks A first.
  const fresh = 'site-fresh-' + run_;
  const created = await json(A.url() + '/-/user/org.couchdb.user:' + fresh, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: fresh, password: 'fresh-password-1' }) });
  expect(created.status).toBe(201);
  const again = await json(B.url() + '/-/user/org.couchdb.user:' + fresh, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: fresh, password: 'thief-password-1' }) });
  expect([401, 409]).toContain(again.status);
  // A token made at B, revoked at A.
  const login = await json(B.url() + '/-/user/org.couchdb.user:' + fresh, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: fresh, password: 'fresh-password-1' }) });
  expect(login.status).toBe(201);
  const second = login.body.token as string;
  await eventually(async () => ((await json(A.url() + '/-/whoami', { headers: { authorization: 'Bearer ' + second } })).status === 200 ? true : null), 20_000, 'the token made at B to work at A');
  const revoked = await fetch(A.url() + '/-/npm/v1/tokens/token/' + second, { method: 'DELETE', headers: { authorization: 'Bearer ' + second } });
  expect(revoked.status).toBe(204);
  await eventually(async () => ((await json(B.url() + '/-/whoami', { headers: { authorization: 'Bearer ' + second } })).status === 401 ? true : null), 20_000, 'the revoked token to fail at B');
});

it('200 publishes over both sites, one site killed (SIGKILL) and started again, then a partition that heals: none acknowledged is lost, both converge', async () => {
  const PACKAGES = 10;
  const names = Array.from({ length: PACKAGES }, (_, i) => 'site-load-' + run_ + '-' + i);
  const acknowledged: { name: string; version: string; integrity: string; site: string }[] = [];
  const bytes = (name: string, version: string, side: string) => Buffer.from('tarball of ' + name + '@' + version + ' from ' + side + ' ' + 'x'.repeat(300));
  const integrity = (data: Buffer) => 'sha512-' + createHash('sha512').update(data).digest('base64');

  /**
   * Publishes at `preferred`, or at the other site when it cannot be reached (as a load balancer would).
   * A retry sends the same tarball wherever it goes, as npm does: a first attempt that landed without
   * its answer (the site killed mid-request) is the same publish, not a rival one. Only the
   * collisions (`perSite`) send other bytes from each site.
   */
  async function publish(name: string, version: string, preferred: Site, fallback: Site | null, perSite = false): Promise<void> {
    for (let attempt = 0; attempt < 6; attempt++) {
      const site = attempt % 2 === 0 || !fallback ? preferred : fallback;
      if (!site.proc) {
        if (!fallback) return;
        continue;
      }
      const data = bytes(name, version, perSite ? site.name : 'the client');
      const status = await publishAt(site.url(), token, name, version, data);
      if (status === 200 || status === 201) {
        acknowledged.push({ name, version, integrity: integrity(data), site: site.name });
        return;
      }
      // 403: the version already landed (a write whose answer was lost in the kill): not acknowledged, and not retried.
      if (status === 403) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  // Phase 1: 180 publishes (18 versions of 10 packages), alternating sites, 8 at a time; site A is
  // killed once 60 are acknowledged and started again once 30 more are.
  const phase1 = Array.from({ length: 180 }, (_, i) => ({ name: names[i % PACKAGES], version: '1.' + Math.floor(i / PACKAGES) + '.0', preferred: i % 2 === 0 ? A : B }));
  let killed = false;
  let restarted: Promise<void> | null = null;
  const queue = [...phase1];
  const workers = Array.from({ length: 8 }, async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      await publish(job.name, job.version, job.preferred, job.preferred === A ? B : A);
      if (!killed && acknowledged.length >= 60) {
        killed = true;
        await sites.kill(A);
        A.proc = null;
      }
      if (killed && !restarted && acknowledged.length >= 90) restarted = sites.restart(A);
    }
  });
  await Promise.all(workers);
  if (restarted) await restarted;
  else await sites.restart(A);
  expect(killed).toBe(true);
  expect(acknowledged.length).toBeGreaterThanOrEqual(150);

  // Phase 2: a partition. Each side publishes its own versions of the same packages, and four
  // versions at both sides with other bytes (the same name@version, two tarballs).
  await eventually(async () => (await convergedView([A, B], names)) ? true : null, 60_000, 'the sites to converge before the partition');
  sites.partition();
  const collisions = names.slice(0, 4).map((name) => ({ name, version: '9.9.9' }));
  const before = acknowledged.length;
  await Promise.all([
    ...names.map((name, i) => publish(name, '2.' + i + '.0', A, null)),
    ...names.map((name, i) => publish(name, '3.' + i + '.0', B, null)),
  ]);
  for (const { name, version } of collisions) {
    await publish(name, version, A, null, true);
    await new Promise((resolve) => setTimeout(resolve, 20)); // A's is the first publish
    await publish(name, version, B, null, true);
  }
  expect(acknowledged.length - before).toBe(2 * PACKAGES + 2 * collisions.length);
  // Partitioned, each site serves what it took.
  expect(Object.keys((await served(A.url(), names[0]))!.versions)).toContain('2.0.0');
  expect(Object.keys((await served(A.url(), names[0]))!.versions)).not.toContain('3.0.0');

  const healed = Date.now();
  sites.heal();
  const view = await eventually(() => convergedView([A, B], names), 180_000, 'the sites to converge after the partition');
  const convergence = Date.now() - healed;
  process.stdout.write('sites: converged ' + convergence + ' ms after the partition healed (' + acknowledged.length + ' acknowledged publishes)\n');

  // Nothing acknowledged is lost: each served with the integrity acknowledged, except that of a
  // same-version collision, where the first publish (A's) is kept at both sites.
  for (const ack of acknowledged) {
    const collision = collisions.some((c) => c.name === ack.name && c.version === ack.version);
    const kept = view.get(ack.name)![ack.version];
    expect(kept).toBeDefined();
    if (!collision) expect({ publish: ack.name + '@' + ack.version, integrity: kept }).toEqual({ publish: ack.name + '@' + ack.version, integrity: ack.integrity });
  }
  for (const { name, version } of collisions) {
    const first = acknowledged.find((ack) => ack.name === name && ack.version === version && ack.site === 'A')!;
    expect(view.get(name)![version]).toBe(first.integrity);
  }
  // The same tarball bytes at both sites, matching the integrity served.
  for (const name of names) {
    for (const [version, expected] of Object.entries(view.get(name)!)) {
      const file = '/' + name + '/-/' + name + '-' + version + '.tgz';
      const [a, b] = await Promise.all([A, B].map(async (site) => Buffer.from(await (await fetch(site.url() + file)).arrayBuffer())));
      expect(integrity(a)).toBe(expected);
      expect(b.equals(a)).toBe(true);
    }
  }
  expect(await conflicted(A)).toEqual([]);
  expect(await conflicted(B)).toEqual([]);
  // The refused publishes (B's bytes of each collision) are in the status of a site that merged them.
  const refused = new Set<string>();
  for (const site of [A, B]) {
    const status = await json(site.url() + '/-/replication', { headers: { authorization: 'Bearer ' + token } });
    for (const r of status.body.refusedPublishes || []) refused.add(r.name + '@' + r.version);
  }
  for (const { name, version } of collisions) expect(refused).toContain(name + '@' + version);
});

it('the site account writes packages into the registry database only, never mirrored ones, and administers accounts but not their design or security', async () => {
  const site = basic('registry-site', SITE_PASSWORD);
  const origin = A.couchOrigin();
  const db = A.db;
  // A package claiming to be mirrored from the public registry is refused.
  const forged = await json(origin + '/' + db + '/forged-mirror-' + run_, {
    method: 'PUT',
    headers: { authorization: site, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'forged-mirror-' + run_, origin: 'https://registry.npmjs.org', versions: {}, 'dist-tags': {}, time: {}, maintainers: [{ name: user }] }),
  });
  expect(forged.status).toBe(403);
  // The mirror database is replication's alone.
  const intoMirror = await json(origin + '/' + db + '-mirror/forged-' + run_, {
    method: 'PUT',
    headers: { authorization: site, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'forged-' + run_, versions: {}, 'dist-tags': {}, time: {} }),
  });
  expect(intoMirror.status).toBe(403);
  // Not the design of _users, nor its security, nor the state database.
  for (const [method, path] of [['PUT', '/_users/_design/_auth'], ['PUT', '/_users/_security'], ['GET', '/' + db + '-state/supply-chain']]) {
    const answer = await json(origin + path, { method, headers: { authorization: site, 'content-type': 'application/json' }, body: method === 'PUT' ? '{}' : undefined });
    expect({ path, status: answer.status }).toEqual({ path, status: expect.any(Number) });
    expect(answer.status === 401 || answer.status === 403).toBe(true);
  }
  // Nor a design document of _users slipped into a batch or a new document (its code would run in the server).
  for (const [path, body] of [['/_users/_bulk_docs', { docs: [{ _id: '_design/evil', validate_doc_update: 'function () {}' }] }], ['/_users', { _id: '_design/evil2', views: {} }]] as const) {
    const answer = await json(origin + path, { method: 'POST', headers: { authorization: site, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect({ path, status: answer.status === 401 || answer.status === 403 }).toEqual({ path, status: true });
  }
  const design = await json(A.couchOrigin() + '/_users/_design/evil', { headers: { authorization: A.adminAuth() } });
  expect(design.status).toBe(404);
  // A person's account is no site: it reads neither the tokens nor other accounts on the CouchDB port.
  for (const path of ['/' + db + '-tokens/_all_docs', '/_users/_all_docs']) {
    const answer = await json(origin + path, { headers: { authorization: basic(user, 'site-user-password') } });
    expect(answer.status === 401 || answer.status === 403).toBe(true);
  }
  // A wrong site password reads nothing.
  const wrong = await json(origin + '/' + db + '/_all_docs', { headers: { authorization: basic('registry-site', 'not-the-password') } });
  expect(wrong.status).toBe(401);
});
