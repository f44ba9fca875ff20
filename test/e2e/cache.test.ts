/**
 * The gateway's caches (packument bytes in memory, tarballs on disk) stay coherent with CouchDB:
 * writes through this gateway show at once, writes straight to CouchDB and through another gateway
 * show as soon as the change feed brings them, and an unpublished tarball is not served from disk.
 */
import { readdirSync, readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import pino from 'pino';
import { SearchIndex } from '../../core/search';
import { PackageDoc } from '../../core/types';
import { RunningRegistry } from '../../server/registry';
import { sha1, sha512 } from '../helpers/npm';
import { anotherGateway, basicAuthOf, couchGet, databasesOf, startTestRegistry, TestRegistry } from '../helpers/registry';
import { settled } from '../helpers/wait';

let registry: TestRegistry;
let second: RunningRegistry;
let token: string;

function publishBody(name: string, version: string, description?: string) {
  const tarball = Buffer.from('tarball ' + name + '@' + version);
  return {
    _id: name, name, description, 'dist-tags': { latest: version },
    versions: { [version]: { name, version, description, dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'x' } } },
    _attachments: { [name + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
  };
}


const versionsAt = async (url: string, name: string) => Object.keys(((await (await fetch(url + '/' + name)).json()) as any).versions || {});

beforeAll(async () => {
  registry = await startTestRegistry();
  token = await registry.signup('cacher');
  second = await anotherGateway(registry, 'second');
});
afterAll(async () => {
  await second?.close();
  await registry?.stop();
});

it('a publish through this gateway is visible at once, and through another gateway soon after', async () => {
  expect((await registry.request('PUT', '/cached', { token, body: publishBody('cached', '1.0.0') })).status).toBe(201);
  expect(await versionsAt(registry.localUrl, 'cached')).toEqual(['1.0.0']);
  expect(await versionsAt(second.localUrl, 'cached')).toEqual(['1.0.0']);
  expect((await registry.request('PUT', '/cached', { token, body: publishBody('cached', '1.1.0') })).status).toBe(201);
  expect(await versionsAt(registry.localUrl, 'cached')).toEqual(['1.0.0', '1.1.0']);
  expect(await settled(() => versionsAt(second.localUrl, 'cached'), (v) => v.length === 2, 5000)).toEqual(['1.0.0', '1.1.0']);
});

it('a packument held in memory is answered before Express exactly as Express answers it: the same bytes and headers, full and abbreviated, 200, HEAD and 304', async () => {
  expect((await registry.request('PUT', '/fast-read', { token, body: publishBody('fast-read', '1.0.0', 'read from memory') })).status).toBe(201);
  const url = registry.url + '/fast-read';
  const shown = async (response: Response) => ({
    status: response.status,
    body: await response.text(),
    headers: Object.fromEntries(['etag', 'cache-control', 'vary', 'content-type', 'content-length'].map((h) => [h, response.headers.get(h)])),
  });
  for (const accept of ['application/json', 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*']) {
    await fetch(url, { headers: { accept } });
    // In memory now: the plain read is the fast path's; one with a query is Express's.
    const fast = await shown(await fetch(url, { headers: { accept } }));
    const express = await shown(await fetch(url + '?via=express', { headers: { accept } }));
    expect(fast).toEqual(express);
    expect(fast.status).toBe(200);
    expect(JSON.parse(fast.body).versions['1.0.0'].name).toBe('fast-read');
    expect(fast.headers['cache-control']).toBe('max-age=0, must-revalidate');
    for (const method of ['HEAD']) {
      expect(await shown(await fetch(url, { method, headers: { accept } }))).toEqual(await shown(await fetch(url + '?via=express', { method, headers: { accept } })));
    }
    const etag = fast.headers.etag as string;
    const notModified = await shown(await fetch(url, { headers: { accept, 'if-none-match': etag } }));
    expect(notModified).toEqual(await shown(await fetch(url + '?via=express', { headers: { accept, 'if-none-match': etag } })));
    expect(notModified.status).toBe(304);
  }
});

it('a name asked for before it existed is found once published, on this gateway at once and on another soon after', async () => {
  for (const url of [registry.localUrl, second.localUrl]) {
    for (let i = 0; i < 2; i++) expect((await fetch(url + '/later')).status).toBe(404);
  }
  expect((await registry.request('PUT', '/later', { token, body: publishBody('later', '1.0.0') })).status).toBe(201);
  expect((await fetch(registry.localUrl + '/later')).status).toBe(200);
  expect(await settled(async () => (await fetch(second.localUrl + '/later')).status, (s) => s === 200, 5000)).toBe(200);
});

it('search finds what another gateway published and what an admin changed in CouchDB, and forgets what was unpublished', async () => {
  const names = async (url: string, text: string) =>
    (((await (await fetch(url + '/-/v1/search?text=' + encodeURIComponent(text))).json()) as any).objects as { package: { name: string } }[]).map((o) => o.package.name);
  const body = publishBody('findable-widget', '1.0.0', 'A widget to find');
  expect((await registry.request('PUT', '/findable-widget', { token, body })).status).toBe(201);
  // The gateway that wrote it finds it at once; the other when its feed brings it.
  expect(await names(registry.localUrl, 'widget')).toEqual(['findable-widget']);
  expect(await settled(() => names(second.localUrl, 'widget'), (n) => n.length === 1, 5000)).toEqual(['findable-widget']);
  const doc = (await couchGet(registry, '/' + registry.registryDb + '/findable-widget')).body;
  const edited = await fetch(new URL('/' + registry.registryDb + '/findable-widget', new URL(registry.adminCouchUrl).origin), {
    method: 'PUT', headers: { 'content-type': 'application/json', authorization: basicAuthOf(registry.adminCouchUrl) },
    body: JSON.stringify({ ...doc, description: 'A gadget now' }),
  });
  expect(edited.status).toBe(201);
  for (const url of [registry.localUrl, second.localUrl]) {
    expect(await settled(() => names(url, 'gadget'), (n) => n.length === 1, 5000)).toEqual(['findable-widget']);
    expect(await names(url, 'widget')).toEqual(['findable-widget']);
    expect(await names(url, 'find')).toContain('findable-widget');
  }
  const current = (await couchGet(registry, '/' + registry.registryDb + '/findable-widget')).body;
  expect((await registry.request('DELETE', '/findable-widget/-rev/' + current._rev, { token })).status).toBe(200);
  expect(await names(registry.localUrl, 'gadget')).toEqual([]);
  expect(await settled(() => names(second.localUrl, 'gadget'), (n) => n.length === 0, 5000)).toEqual([]);
});

it('a gateway starts its search index from the snapshot it saved when it stopped, then catches up with what changed meanwhile', async () => {
  const names = async (url: string, text: string) =>
    (((await (await fetch(url + '/-/v1/search?text=' + encodeURIComponent(text))).json()) as any).objects as { package: { name: string } }[]).map((o) => o.package.name);
  const logged: string[] = [];
  const capture = () => pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line).msg) });
  expect((await registry.request('PUT', '/snap-one', { token, body: publishBody('snap-one', '1.0.0', 'snapshotted thing') })).status).toBe(201);
  let third = await anotherGateway(registry, 'third', {}, capture());
  expect(await settled(() => names(third.localUrl, 'snapshotted'), (n) => n.length === 1, 5000)).toEqual(['snap-one']);
  expect(logged).not.toContain('search index read from its snapshot; following the changes since');
  await third.close();
  const folder = join(registry.dataDir, 'third', 'cache');
  const file = join(folder, readdirSync(folder).find((f) => f.startsWith('search-'))!);
  // Lines of JSON: a header (where each feed was), then the index's lines, a package's starting with its name.
  expect(readFileSync(file, 'utf8').split('\n').some((line) => line.startsWith('["snap-one",'))).toBe(true);
  // While it is down: one package goes, another comes.
  const one = (await couchGet(registry, '/' + registry.registryDb + '/snap-one')).body;
  expect((await registry.request('DELETE', '/snap-one/-rev/' + one._rev, { token })).status).toBe(200);
  expect((await registry.request('PUT', '/snap-two', { token, body: publishBody('snap-two', '1.0.0', 'snapshotted other') })).status).toBe(201);
  third = await anotherGateway(registry, 'third', {}, capture());
  try {
    expect(await names(third.localUrl, 'snapshotted')).toEqual(['snap-two']);
    expect(logged).toContain('search index read from its snapshot; following the changes since');
  } finally {
    await third.close();
  }
  // A snapshot of another registry's databases is not used.
  const header = JSON.parse(readFileSync(file, 'utf8').split('\n')[0]);
  const elsewhere = new SearchIndex();
  const foreign = { _id: 'from-elsewhere', name: 'from-elsewhere', description: 'snapshotted elsewhere', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': { name: 'from-elsewhere', version: '1.0.0' } }, time: {}, maintainers: [] };
  elsewhere.apply('local', 'from-elsewhere', '1-a', foreign as unknown as PackageDoc);
  const snapshotOf = (head: object, lines: string[]) => [JSON.stringify(head), ...lines].join('\n') + '\n';
  writeFileSync(file, snapshotOf({ ...header, identity: 'another-registry' }, elsewhere.snapshot()));
  logged.length = 0;
  third = await anotherGateway(registry, 'third', {}, capture());
  try {
    expect(await names(third.localUrl, 'snapshotted')).toEqual(['snap-two']);
    expect(logged).not.toContain('search index read from its snapshot; following the changes since');
  } finally {
    await third.close();
  }
  // One of these databases is read as it is (what it holds is found, though CouchDB has no such package) ...
  writeFileSync(file, snapshotOf(header, elsewhere.snapshot()));
  logged.length = 0;
  third = await anotherGateway(registry, 'third', {}, capture());
  try {
    expect(await names(third.localUrl, 'snapshotted')).toEqual(['from-elsewhere']);
    expect(logged).toContain('search index read from its snapshot; following the changes since');
  } finally {
    await third.close();
  }
  // ... unless it is cut short: then none of it is used, and the index is read from CouchDB.
  writeFileSync(file, snapshotOf(header, elsewhere.snapshot().slice(0, -1)));
  logged.length = 0;
  third = await anotherGateway(registry, 'third', {}, capture());
  try {
    expect(await names(third.localUrl, 'snapshotted')).toEqual(['snap-two']);
    expect(logged).toContain('the search index snapshot is unreadable; the index is read from CouchDB');
    expect(logged).not.toContain('search index read from its snapshot; following the changes since');
  } finally {
    await third.close();
  }
});

it('a change made straight in CouchDB (as an admin in Fauxton) reaches the cache', async () => {
  const doc = (await couchGet(registry, '/' + registry.registryDb + '/cached')).body;
  expect((await fetch(registry.localUrl + '/cached')).status).toBe(200);
  const response = await fetch(new URL('/' + registry.registryDb + '/cached', new URL(registry.adminCouchUrl).origin), {
    method: 'PUT', headers: { 'content-type': 'application/json', authorization: basicAuthOf(registry.adminCouchUrl) },
    body: JSON.stringify({ ...doc, description: 'edited in Fauxton' }),
  });
  expect(response.status).toBe(201);
  const seen = await settled(async () => ((await (await fetch(registry.localUrl + '/cached')).json()) as any).description, (d) => d === 'edited in Fauxton', 5000);
  expect(seen).toBe('edited in Fauxton');
});

it('an unpublished tarball is not served from the disk cache, on any gateway', async () => {
  const path = '/cached/-/cached-1.1.0.tgz';
  for (const url of [registry.localUrl, second.localUrl]) {
    for (let i = 0; i < 2; i++) expect((await fetch(url + path)).status).toBe(200);
  }
  const doc = (await couchGet(registry, '/' + registry.registryDb + '/cached')).body;
  const { ['1.1.0']: _gone, ...versions } = doc.versions;
  void _gone;
  const removed = await registry.request('PUT', '/cached/-rev/' + doc._rev, { token, body: { ...doc, versions, 'dist-tags': { latest: '1.0.0' } } });
  expect(removed.status).toBe(200);
  expect((await fetch(registry.localUrl + path)).status).toBe(404);
  expect(await settled(async () => (await fetch(second.localUrl + path)).status, (s) => s === 404, 5000)).toBe(404);
});

it('tarballs read from CouchDB are kept: a small one in memory without a file, a large one as a file', async () => {
  const metric = async (gateway: RunningRegistry, result: 'hit' | 'miss') => {
    const text = await (await fetch(gateway.localUrl + '/-/metrics', { headers: { authorization: basicAuthOf(registry.adminCouchUrl) } })).text();
    return Number((new RegExp('registry_cache_requests_total\\{cache="tarball",result="' + result + '"\\} (\\d+)').exec(text) || [])[1] || 0);
  };
  const large = Buffer.alloc(600 * 1024, 'large tarball ');
  const body = publishBody('kept', '1.0.0');
  const largeBody = publishBody('kept', '2.0.0');
  largeBody._attachments = { 'kept-2.0.0.tgz': { content_type: 'application/octet-stream', data: large.toString('base64'), length: large.length } };
  largeBody.versions['2.0.0'].dist = { shasum: sha1(large), integrity: sha512(large), tarball: 'x' };
  for (const publish of [body, largeBody]) expect((await registry.request('PUT', '/kept', { token, body: publish })).status).toBe(201);
  // A gateway started now has neither: its first reads are CouchDB's.
  const third = await anotherGateway(registry, 'third');
  try {
    const admin = { authorization: basicAuthOf(registry.adminCouchUrl) };
    // Its caches are on once it follows the databases' changes.
    const health = async () => ((await (await fetch(third.localUrl + '/-/health', { headers: admin })).json()) as any).checks?.caches?.ok;
    expect(await settled(health, (ok) => ok === true, 5000)).toBe(true);
    // Tarballs and downloads under way (`.part`); the search index keeps its snapshot there too.
    const cacheDir = join(registry.dataDir, 'third', 'cache');
    const files = () => readdirSync(cacheDir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile() && /\.(tgz|part)$/.test(entry.name)).map((entry) => entry.name);
    const tarballs: [string, Buffer][] = [['kept-1.0.0.tgz', Buffer.from('tarball kept@1.0.0')], ['kept-2.0.0.tgz', large]];
    const readAll = async () => {
      for (const [file, bytes] of tarballs) {
        const res = await fetch(third.localUrl + '/kept/-/' + file);
        expect([file, res.status, Buffer.from(await res.arrayBuffer()).equals(bytes)]).toEqual([file, 200, true]);
      }
    };
    const [misses, hits] = [await metric(third, 'miss'), await metric(third, 'hit')];
    await readAll();
    // The large one is listed once its file is written.
    expect(await settled(async () => files(), (names) => names.includes('kept-2.0.0.tgz'), 5000)).toEqual(['kept-2.0.0.tgz']);
    await readAll();
    await readAll();
    // Each read CouchDB once; the two reads after were the cache's.
    expect([(await metric(third, 'miss')) - misses, (await metric(third, 'hit')) - hits]).toEqual([2, 4]);
    expect(files()).toEqual(['kept-2.0.0.tgz']);
  } finally {
    await third.close();
  }
});

it('several gateways starting at once on a new database all come up (set-up steps that collide are done again)', async () => {
  const db = registry.registryDb + '-together';
  const starts = [1, 2, 3].map((i) => anotherGateway(registry, 'together-' + i, { REGISTRY_DB: db }));
  const started = await Promise.allSettled(starts);
  for (const result of started) if (result.status === 'fulfilled') await result.value.close();
  expect(started.map((result) => (result.status === 'rejected' ? String(result.reason) : 'up'))).toEqual(['up', 'up', 'up']);
  const design = await couchGet(registry, '/' + db + '/_design/app');
  expect(design.status).toBe(200);
  expect((await couchGet(registry, '/' + db + '/_design/app-staging')).status).toBe(404);
  if (process.env.COUCHDB_URL) {
    for (const name of databasesOf(db)) await fetch(new URL('/' + name, new URL(registry.adminCouchUrl).origin), { method: 'DELETE', headers: { authorization: basicAuthOf(registry.adminCouchUrl) } });
  }
});

it('a gateway whose CouchDB is gone answers 502 saying so, not 500, and keeps running', async () => {
  // A throw-away registry whose embedded CouchDB (or databases) the second gateway uses.
  const first = await startTestRegistry();
  const lonely = await anotherGateway(first, 'lonely');
  try {
    expect((await fetch(lonely.localUrl + '/-/v1/search?text=x')).status).toBe(200);
    if (process.env.COUCHDB_URL) {
      // A real CouchDB cannot be stopped from here: its databases go away instead.
      for (const name of databasesOf(first.registryDb)) await fetch(new URL('/' + name, new URL(first.adminCouchUrl).origin), { method: 'DELETE', headers: { authorization: basicAuthOf(first.adminCouchUrl) } });
    } else {
      await first.close();
    }
    for (const path of ['/never-cached', '/never-cached/-/never-cached-1.0.0.tgz']) {
      const res = await fetch(lonely.localUrl + path);
      expect([path, res.status >= 400 && res.status !== 500]).toEqual([path, true]);
      const body = (await res.json()) as { error: string };
      if (!process.env.COUCHDB_URL) expect(body.error).toContain('CouchDB');
    }
    // Search answers from the gateway's memory, loaded before CouchDB went.
    expect((await fetch(lonely.localUrl + '/-/v1/search?text=x')).status).toBe(200);
    expect((await fetch(lonely.localUrl + '/-/ping')).status).toBe(200);
  } finally {
    await lonely.close();
    await first.stop().catch(() => undefined);
  }
});
