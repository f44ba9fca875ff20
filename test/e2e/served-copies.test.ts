/**
 * A restarted gateway serves the packuments it served before it stopped from their copies on disk
 * (gateway/served-copies.ts): the same bytes and ETags, the tarballs after them, and a mirrored
 * package compared with its upstream no sooner than if it had not stopped (issue 28, "install right
 * after a restart"). And never a copy that is not what the package databases and the policy say now:
 * a package changed or removed straight in CouchDB, a dist-tag moved, a publish, a supply-chain policy
 * set after the stop, a copy cut short or changed on disk, and a private package read by someone
 * the access rules refuse.
 */
import { appendFileSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'fs';
import { join } from 'path';
import { RunningRegistry } from '../../server/registry';
import { CountingProxy, startCountingProxy } from '../helpers/counting-proxy';
import { publishBody } from '../helpers/principals';
import { basicAuthOf, mirroredDoc, restartTestRegistry, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

const METRICS = { METRICS: 'token', METRICS_TOKEN: 'copies-metrics-token-0123456789' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let upstream: TestRegistry;
let proxy: CountingProxy;
let first: TestRegistry;
/** The gateway now running on `first`'s data (the first one, then each restart). */
let running: RunningRegistry & { adminCouchUrl: string };
let env: Record<string, string>;
let alice: string;

const get = (path: string, headers: Record<string, string> = {}) => fetch(running.localUrl + path, { headers });

/** Status, ETag and body of a packument as npm asks it (full) or abbreviated. */
async function packument(name: string, abbreviated = false, headers: Record<string, string> = {}): Promise<{ status: number; etag: string | null; body: string }> {
  const res = await get('/' + name.replace('/', '%2f'), { accept: abbreviated ? 'application/vnd.npm.install-v1+json' : 'application/json', ...headers });
  return { status: res.status, etag: res.headers.get('etag'), body: await res.text() };
}

async function copiesCounted(): Promise<Record<string, number>> {
  const text = await (await get('/-/metrics', { authorization: 'Bearer ' + METRICS.METRICS_TOKEN })).text();
  const counts: Record<string, number> = { used: 0, outdated: 0, damaged: 0 };
  for (const match of text.matchAll(/^registry_packument_copies_total\{outcome="(\w+)"\} (\d+)/gm)) counts[match[1]] = Number(match[2]);
  return counts;
}

/** Stops the running gateway and starts it again on its data and its address. */
async function restart(): Promise<void> {
  await running.close();
  running = await restartTestRegistry(first, { ...env, PORT: new URL(running.localUrl).port });
}

/** Writes a package document straight into CouchDB as an admin (as in Fauxton). */
async function adminPut(db: string, doc: Record<string, unknown>): Promise<void> {
  const origin = new URL(running.adminCouchUrl).origin;
  const res = await fetch(origin + '/' + db + '/' + encodeURIComponent(String(doc._id)), {
    method: 'PUT', headers: { 'content-type': 'application/json', authorization: basicAuthOf(running.adminCouchUrl) }, body: JSON.stringify(doc),
  });
  expect(res.status).toBe(201);
}

async function adminGet(db: string, id: string): Promise<any> {
  const origin = new URL(running.adminCouchUrl).origin;
  return (await fetch(origin + '/' + db + '/' + encodeURIComponent(id), { headers: { authorization: basicAuthOf(running.adminCouchUrl) } })).json();
}

const copiesFolder = () => join(first.dataDir, 'cache');
const copyFile = (ext: string) => join(copiesFolder(), readdirSync(copiesFolder()).find((f) => f.startsWith('packuments-') && f.endsWith(ext)) as string);

beforeAll(async () => {
  // The upstream is reached through a proxy that counts its requests (its tarball URLs name the proxy too).
  proxy = await startCountingProxy();
  upstream = await startTestRegistry({ REGISTRY_PUBLIC_URL: proxy.url });
  proxy.target = upstream.localUrl;
  const publisher = await upstream.signup('copies-publisher');
  for (const name of ['copy-mirrored', 'copy-held']) expect((await upstream.request('PUT', '/' + name, { token: publisher, body: publishBody(name, '1.0.0') })).status).toBe(201);
  env = { UPSTREAM_REGISTRY: proxy.url, UPSTREAM_MODE: 'mirror', ...METRICS };
  first = await startTestRegistry(env);
  running = first;
  alice = await first.signup('alice');
  // Only the secret team reads @secret (the access rules of _design/access).
  const origin = new URL(first.adminCouchUrl).origin;
  const admin = { 'content-type': 'application/json', authorization: basicAuthOf(first.adminCouchUrl) };
  const user = await (await fetch(origin + '/_users/org.couchdb.user:alice', { headers: admin })).json();
  expect((await fetch(origin + '/_users/org.couchdb.user:alice', { method: 'PUT', headers: admin, body: JSON.stringify({ ...user, roles: ['secret-team'] }) })).status).toBe(201);
  const design = await (await fetch(origin + '/' + first.registryDb + '/_design/access', { headers: admin })).json();
  const rules = [
    { package: '@secret/*', read: ['role:secret-team'], publish: ['role:secret-team'] },
    { package: '**', read: ['$all'], publish: ['$authenticated'] },
  ];
  expect((await fetch(origin + '/' + first.registryDb + '/_design/access', { method: 'PUT', headers: admin, body: JSON.stringify({ ...design, rules }) })).status).toBe(201);
  await sleep(2100); // the rules are read again within 2 s
  for (const name of ['copy-local', 'copy-changed', 'copy-removed', 'copy-tagged', 'copy-published', '@secret/copy']) {
    expect((await first.request('PUT', '/' + name.replace('/', '%2f'), { token: alice, body: publishBody(name, '1.0.0') })).status).toBe(201);
  }
  // Mirrored through pull-through, stored with its tarball.
  for (const name of ['copy-mirrored', 'copy-held']) {
    expect((await get('/' + name)).status).toBe(200);
    expect((await get('/' + name + '/-/' + name + '-1.0.0.tgz')).status).toBe(200);
    await eventually(async () => {
      const stored = await mirroredDoc(first, name);
      return stored.status === 200 && stored.body.origin_validators && stored.body._attachments?.[name + '-1.0.0.tgz'] ? stored.body : null;
    }, 20_000, name + ' stored');
  }
}, 90_000);

afterAll(async () => {
  await running?.close();
  if (first) rmSync(first.dataDir, { recursive: true, force: true });
  await upstream?.stop();
  await proxy?.stop();
});

// Copies are used where revisions are read without the documents: on the embedded server (a gateway
// on COUCHDB_URL neither keeps nor uses them, and reads every first read from CouchDB as before).
const onEmbedded = process.env.COUCHDB_URL ? describe.skip : describe;

onEmbedded('a restarted gateway', () => {
  const names = ['copy-local', 'copy-mirrored'];
  const before: Record<string, { status: number; etag: string | null; body: string }> = {};

  it('serves what it served before it stopped from its copies: the same bytes and ETags, then the tarballs; the upstream is not asked again sooner', async () => {
    for (const name of names) {
      for (const abbreviated of [false, true]) before[name + abbreviated] = await packument(name, abbreviated);
    }
    const asked = proxy.asked('/copy-mirrored').filter((r) => !r.path.endsWith('.tgz')).length;
    await restart();
    for (const name of names) {
      for (const abbreviated of [false, true]) {
        const now = await packument(name, abbreviated);
        expect(now).toEqual(before[name + abbreviated]);
        expect(now.status).toBe(200);
      }
      const tarball = await get('/' + name + '/-/' + name + '-1.0.0.tgz');
      expect(tarball.status).toBe(200);
      expect(await tarball.text()).toBe('tarball of ' + name + '@1.0.0');
    }
    expect((await copiesCounted()).used).toBe(names.length);
    // Compared with the upstream when it was pulled, a moment ago: not again because the gateway restarted.
    await sleep(500);
    expect(proxy.asked('/copy-mirrored').filter((r) => !r.path.endsWith('.tgz')).length).toBe(asked);
    // The copies are two files, replaced at each stop, no larger than what the packument cache holds.
    await restart();
    const files = readdirSync(copiesFolder()).filter((f) => f.startsWith('packuments-'));
    expect(files.sort()).toEqual(['packuments-' + first.registryDb + '.bin', 'packuments-' + first.registryDb + '.idx']);
    expect(statSync(copyFile('.bin')).size).toBeLessThan(64 * 1024 * 1024);
    expect((await packument('copy-local')).body).toBe(before['copy-localfalse'].body);
  }, 60_000);

  it('serves a package changed, removed or re-tagged straight in CouchDB, or published again, as it is now, not from its copy', async () => {
    for (const name of ['copy-changed', 'copy-removed', 'copy-tagged', 'copy-published']) expect((await packument(name)).status).toBe(200);
    await restart();
    const db = first.registryDb;
    // As an admin in Fauxton, before any read: the feed may not even have reported these yet.
    const changed = await adminGet(db, 'copy-changed');
    await adminPut(db, { ...changed, description: 'changed by an admin' });
    const tagged = await adminGet(db, 'copy-tagged');
    await adminPut(db, { ...tagged, 'dist-tags': { ...tagged['dist-tags'], next: '1.0.0', latest: '1.0.0' }, description: 'tagged' });
    const removed = await adminGet(db, 'copy-removed');
    const origin = new URL(running.adminCouchUrl).origin;
    expect((await fetch(origin + '/' + db + '/copy-removed?rev=' + removed._rev, { method: 'DELETE', headers: { authorization: basicAuthOf(running.adminCouchUrl) } })).status).toBe(200);
    const published = await fetch(running.localUrl + '/copy-published', {
      method: 'PUT', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + alice }, body: JSON.stringify(publishBody('copy-published', '1.1.0')),
    });
    expect(published.status).toBe(201);
    const counted = await copiesCounted();
    expect(JSON.parse((await packument('copy-changed')).body).description).toBe('changed by an admin');
    expect(JSON.parse((await packument('copy-tagged')).body)['dist-tags']).toEqual({ latest: '1.0.0', next: '1.0.0' });
    expect((await packument('copy-removed')).status).toBe(404);
    expect(Object.keys(JSON.parse((await packument('copy-published', true)).body).versions)).toEqual(['1.0.0', '1.1.0']);
    // No copy was served for them. Whether each was found outdated at its read or dropped before, as
    // the feed reported the write, depends on when the feed was read: not counted.
    expect((await copiesCounted()).used).toBe(counted.used);
  }, 60_000);

  it('applies a supply-chain policy set after the stop to the first read of a mirrored package', async () => {
    expect(JSON.parse((await packument('copy-held')).body).versions['1.0.0']).toBeDefined();
    await restart();
    // A block of the version served before the stop.
    const path = first.registryDb + '-state';
    const current = await adminGet(path, 'supply-chain');
    const blocked = [{ package: 'copy-held', version: '1.0.0', reason: 'held back by the test' }];
    await adminPut(path, { ...(current && current._id ? current : {}), _id: 'supply-chain', type: 'policy', blocked });
    await sleep(2500); // the policy is read again every 2 s
    const served = JSON.parse((await packument('copy-held')).body);
    expect(served.versions['1.0.0']).toBeUndefined();
    expect((await get('/copy-held/-/copy-held-1.0.0.tgz')).status).toBe(403);
    expect((await copiesCounted()).outdated).toBeGreaterThanOrEqual(1);
    const policy = await adminGet(path, 'supply-chain');
    await adminPut(path, { ...policy, blocked: [] });
    await sleep(2500);
  }, 60_000);

  it('does not use a copy cut short or changed on disk, or an index line that cannot be read', async () => {
    const local = await packument('copy-local');
    const mirrored = await packument('copy-mirrored');
    expect([local.status, mirrored.status]).toEqual([200, 200]);
    await running.close();
    // A byte of one copy changed, and the file cut short in the other, as the index places them.
    const records = readFileSync(copyFile('.idx'), 'utf8').split('\n').slice(1).filter(Boolean).map((line) => JSON.parse(line));
    const place = (name: string) => records.find((r) => r.name === name) as { offset: number; full: number };
    const bin = copyFile('.bin');
    const bytes = readFileSync(bin);
    bytes[place('copy-local').offset + 10] ^= 0x20;
    writeFileSync(bin, bytes);
    truncateSync(bin, place('copy-mirrored').offset + place('copy-mirrored').full - 1);
    appendFileSync(copyFile('.idx'), '{"name":"copy-broken","rev":\n');
    running = await restartTestRegistry(first, { ...env, PORT: new URL(running.localUrl).port });
    expect(await packument('copy-local')).toEqual(local);
    expect(await packument('copy-mirrored')).toEqual(mirrored);
    const counted = await copiesCounted();
    expect(counted.used).toBe(0);
    expect(counted.damaged).toBe(2);
  }, 60_000);

  it('refuses a private package to those the access rules refuse, copy or not', async () => {
    const bearer = { authorization: 'Bearer ' + alice };
    const seen = await packument('@secret/copy', false, bearer);
    expect(seen.status).toBe(200);
    await restart();
    expect([401, 403, 404]).toContain((await packument('@secret/copy')).status);
    expect((await packument('@secret/copy', false, bearer)).body).toBe(seen.body);
    expect([401, 403, 404]).toContain((await packument('@secret/copy')).status);
    expect((await get('/@secret/copy/-/copy-1.0.0.tgz')).status).not.toBe(200);
  }, 60_000);
});
