/**
 * Download counts, dependents and search as npm users and tools see them: packages published and
 * installed with the real npm CLI, counts read in the shape of npm's downloads API (per day, per
 * version), only successful tarball downloads counted, several gateways adding up, and a private
 * package's counts and dependents shown to nobody who cannot read it.
 */
import { basicAuthOf, anotherGateway, couchGet, startTestRegistry, TestRegistry } from '../helpers/registry';
import { makePackage, makeProject, npmClient, NpmClient } from '../helpers/npm';
import { RunningRegistry } from '../../server/registry';

let registry: TestRegistry;
let alice: NpmClient;
let bob: NpmClient;
let anonymous: NpmClient;
let aliceToken: string;
let bobToken: string;

const today = () => new Date().toISOString().slice(0, 10);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function get(path: string, token?: string, base = registry.localUrl): Promise<{ status: number; body: any }> {
  const response = await fetch(base + path, { headers: token ? { authorization: 'Bearer ' + token } : {} });
  return { status: response.status, body: await response.json().catch(() => null) };
}

async function publish(client: NpmClient, manifest: Record<string, unknown>): Promise<void> {
  const result = await client.npm(['publish'], makePackage(client.home, manifest));
  expect(result.stderr).not.toContain('ERR!');
  expect(result.code).toBe(0);
}

async function install(client: NpmClient, project: string, dependencies: Record<string, string>): Promise<void> {
  const result = await client.npm(['install', '--no-package-lock'], makeProject(client.home, project, dependencies));
  expect(result.stderr).not.toContain('ERR!');
  expect(result.code).toBe(0);
}

beforeAll(async () => {
  // Nothing is written by the timer during the test: what is read comes from memory, or from a stop.
  registry = await startTestRegistry({ DOWNLOADS_FLUSH_SECONDS: '3600' });
  aliceToken = await registry.signup('alice');
  bobToken = await registry.signup('bob');
  // alice is in the team that alone reads @secret/*.
  const admin = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
  const couch = new URL(registry.adminCouchUrl).origin;
  const user = await couchGet(registry, '/_users/org.couchdb.user:alice');
  expect((await fetch(couch + '/_users/org.couchdb.user:alice', { method: 'PUT', headers: admin, body: JSON.stringify({ ...user.body, roles: ['team'] }) })).status).toBe(201);
  const access = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
  const rules = [{ package: '@secret/*', read: ['role:team'], publish: ['role:team'] }, { package: '**', read: ['$all'], publish: ['$authenticated'] }];
  expect((await fetch(couch + '/' + registry.registryDb + '/_design/access', { method: 'PUT', headers: admin, body: JSON.stringify({ ...access.body, rules }) })).status).toBe(201);
  await sleep(2100);
  alice = npmClient(registry.url, aliceToken);
  bob = npmClient(registry.url, bobToken);
  anonymous = npmClient(registry.url);
  await publish(alice, { name: 'counted-library', version: '1.0.0', keywords: ['metrics'], description: 'Counts things' });
  await publish(alice, { name: 'counted-library', version: '1.1.0', keywords: ['metrics'], description: 'Counts things' });
  await publish(alice, { name: 'counted-app', version: '1.0.0', description: 'Uses the library', dependencies: { 'counted-library': '1.0.0' } });
  await publish(alice, { name: '@secret/inner-tool', version: '1.0.0', keywords: ['metrics'], dependencies: { 'counted-library': '^1.0.0' } });
});
afterAll(() => registry?.stop());

describe('download counts', () => {
  it('npm install counts each tarball it fetched, by version and day, in npm\'s point, range and per-version shapes', async () => {
    await install(anonymous, 'uses-app', { 'counted-app': '1.0.0' });
    await install(anonymous, 'uses-library', { 'counted-library': '1.1.0' });

    const point = await get('/-/downloads/point/last-day/counted-library');
    expect(point).toEqual({ status: 200, body: { downloads: 2, start: today(), end: today(), package: 'counted-library' } });
    const versions = await get('/-/downloads/versions/last-week/counted-library');
    expect(versions.body.downloads).toEqual({ '1.0.0': 1, '1.1.0': 1 });
    const range = await get('/-/downloads/range/last-week/counted-library');
    expect(range.status).toBe(200);
    expect(range.body.package).toBe('counted-library');
    expect(range.body.end).toBe(today());
    expect(range.body.downloads).toHaveLength(7);
    expect(range.body.downloads[6]).toEqual({ day: today(), downloads: 2 });
    expect(range.body.downloads.slice(0, 6).every((d: { downloads: number }) => d.downloads === 0)).toBe(true);
    expect((await get('/-/downloads/point/' + today() + '/counted-app')).body.downloads).toBe(1);
    expect((await get('/-/downloads/point/' + today() + ':' + today() + '/counted-app')).body.downloads).toBe(1);
    expect((await get('/-/downloads/point/2020-01-01/counted-app')).body).toEqual({ downloads: 0, start: '2020-01-01', end: '2020-01-01', package: 'counted-app' });
  });

  it('counts only downloads answered with the tarball: not 304, HEAD, or a file that is not there', async () => {
    const before = (await get('/-/downloads/point/last-day/counted-app')).body.downloads;
    const url = registry.localUrl + '/counted-app/-/counted-app-1.0.0.tgz';
    // Twice: the second from memory, by the fast path.
    const first = await fetch(url);
    expect(first.status).toBe(200);
    await first.arrayBuffer();
    const again = await fetch(url);
    expect(again.status).toBe(200);
    await again.arrayBuffer();
    const etag = first.headers.get('etag') as string;
    expect((await fetch(url, { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(url, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(registry.localUrl + '/counted-app/-/counted-app-9.9.9.tgz')).status).toBe(404);
    expect((await get('/-/downloads/point/last-day/counted-app')).body.downloads).toBe(before + 2);
    expect((await get('/-/downloads/versions/last-day/counted-app')).body.downloads).toEqual({ '1.0.0': before + 2 });
  });

  it('a scoped package is counted too; its counts are for those who may read it', async () => {
    // On another machine of hers (npm's cache of the machine that published may hold the tarballs).
    await install(npmClient(registry.url, aliceToken), 'uses-secret', { '@secret/inner-tool': '1.0.0' });
    for (const path of ['/-/downloads/point/last-day/@secret/inner-tool', '/-/downloads/point/last-day/@secret%2finner-tool']) {
      expect(await get(path, aliceToken)).toEqual({ status: 200, body: { downloads: 1, start: today(), end: today(), package: '@secret/inner-tool' } });
      const refused = await get(path, bobToken);
      expect(refused.status).toBe(403);
      expect(JSON.stringify(refused.body)).not.toMatch(/downloads"\s*:\s*\d/);
      expect((await get(path)).status).toBe(401);
    }
    expect((await get('/-/downloads/range/last-week/@secret/inner-tool', bobToken)).status).toBe(403);
    expect((await get('/-/downloads/versions/last-week/@secret/inner-tool', bobToken)).status).toBe(403);
  });

  it('answers many unscoped names at once, null for unknown ones; clear 4xx for bad requests', async () => {
    const bulk = await get('/-/downloads/point/last-day/counted-library,counted-app,no-such-package');
    expect(bulk.status).toBe(200);
    // Two of the first installs, and one of @secret/inner-tool's dependency.
    expect(bulk.body['counted-library']).toEqual({ downloads: 3, start: today(), end: today(), package: 'counted-library' });
    expect(bulk.body['counted-app'].downloads).toBeGreaterThanOrEqual(3);
    expect(bulk.body['no-such-package']).toBeNull();
    const unknown = await get('/-/downloads/point/last-week/no-such-package');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toContain('no-such-package');
    for (const path of ['/-/downloads/point/last-century/counted-app', '/-/downloads/point/2026-13-01/counted-app', '/-/downloads/range/2026-01-02:2026-01-01/counted-app', '/-/downloads/point/last-day/@secret/inner-tool,counted-app']) {
      const bad = await get(path, aliceToken);
      expect(bad.status).toBe(400);
      expect(typeof bad.body.error).toBe('string');
    }
  });

  it('another gateway\'s counts add up with this one\'s: written every flush and at its stop, into documents of its own', async () => {
    let second: RunningRegistry | undefined = await anotherGateway(registry, 'second', { DOWNLOADS_FLUSH_SECONDS: '1' });
    try {
      const before = (await get('/-/downloads/point/last-day/counted-library')).body.downloads;
      const tarball = await fetch(second.localUrl + '/counted-library/-/counted-library-1.1.0.tgz');
      expect(tarball.status).toBe(200);
      await tarball.arrayBuffer();
      // Written by the second gateway's timer, read by the first from CouchDB.
      let seen = before;
      for (let i = 0; i < 60 && seen === before; i++) {
        await sleep(100);
        seen = (await get('/-/downloads/point/last-day/counted-library')).body.downloads;
      }
      expect(seen).toBe(before + 1);
      const again = await fetch(second.localUrl + '/counted-library/-/counted-library-1.1.0.tgz');
      await again.arrayBuffer();
      await second.close();
      second = undefined;
      expect((await get('/-/downloads/versions/last-day/counted-library')).body.downloads).toEqual({ '1.0.0': 1, '1.1.0': 4 });
    } finally {
      await second?.close();
    }
    // The documents: one per package, day and gateway run; the downloads database is closed to anyone but admins.
    const docs = await couchGet(registry, '/' + registry.registryDb + '-downloads/_all_docs?include_docs=true');
    const library = docs.body.rows.filter((row: any) => row.doc.package === 'counted-library').map((row: any) => row.doc);
    expect(library).toHaveLength(1);
    expect(library[0]).toMatchObject({ type: 'downloads', day: today(), versions: { '1.1.0': 2 } });
    const couch = new URL(registry.adminCouchUrl).origin;
    expect((await fetch(couch + '/' + registry.registryDb + '-downloads/_all_docs')).status).toBe(401);
  });
});

describe('dependents', () => {
  it('lists the packages whose latest version depends on a package, only those the caller may read', async () => {
    const open = await get('/-/v1/dependents/counted-library');
    expect(open).toEqual({ status: 200, body: { package: 'counted-library', total: 1, dependents: [{ name: 'counted-app', version: '1.0.0', description: 'Uses the library' }] } });
    expect((await get('/-/v1/dependents/counted-library', bobToken)).body.total).toBe(1);
    const team = await get('/-/v1/dependents/counted-library', aliceToken);
    expect(team.body.total).toBe(2);
    expect(team.body.dependents.map((d: { name: string }) => d.name)).toEqual(['@secret/inner-tool', 'counted-app']);
    expect((await get('/-/v1/dependents/@secret/inner-tool', bobToken)).status).toBe(403);
    expect((await get('/-/v1/dependents/@secret/inner-tool')).status).toBe(401);
    expect((await get('/-/v1/dependents/counted-app?size=0')).status).toBe(400);
  });
});

describe('npm search', () => {
  const found = async (client: NpmClient, text: string): Promise<string[]> => {
    const result = await client.npm(['search', '--json', text]);
    expect(result.code).toBe(0);
    return (JSON.parse(result.stdout) as { name: string }[]).map((p) => p.name);
  };

  it('finds a package through a typo, after the exact matches', async () => {
    // counted-app's description says "library": one edit away too, a word of a description ranks after a part of a name.
    expect(await found(anonymous, 'counted-libary')).toEqual(['counted-library', 'counted-app']);
    expect(await found(anonymous, 'librray')).toEqual(['counted-library', 'counted-app']);
  });

  it('understands npm\'s qualifiers, and shows a private package only to those who may read it', async () => {
    expect(await found(anonymous, 'keywords:metrics')).toEqual(['counted-library']);
    expect(await found(alice, 'keywords:metrics')).toEqual(['@secret/inner-tool', 'counted-library']);
    expect(await found(bob, 'keywords:metrics')).toEqual(['counted-library']);
    expect(await found(alice, 'scope:secret')).toEqual(['@secret/inner-tool']);
    expect(await found(bob, 'scope:secret')).toEqual([]);
    expect(await found(anonymous, 'maintainer:alice counted')).toEqual(['counted-app', 'counted-library']);
    expect(await found(anonymous, 'author:bob')).toEqual([]);
  });
});
