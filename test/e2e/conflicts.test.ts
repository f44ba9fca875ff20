/**
 * Conflicting revisions of a package, as a CouchDB cluster leaves them (two leaves written as the admin
 * with `_bulk_docs` `new_edits: false`, made here on the embedded server): the resolvers of two
 * gateways merge them into one revision, the union of the versions, with the first publish of a version
 * number kept and the other refused (counted in the metrics, sent as a webhook event), every tarball served matching its
 * manifest, and no flapping (a bounded number of revisions).
 */
import { createHash } from 'crypto';
import { sha1, sha512 } from '../helpers/npm';
import { publishBody } from '../helpers/principals';
import { anotherGateway, basicAuthOf, couchGet, couchPut, startTestRegistry, TestRegistry } from '../helpers/registry';
import { startHookReceiver } from '../helpers/servers';
import { RunningRegistry } from '../../server/registry';

const METRICS_TOKEN = 'conflicts-metrics-token';
const env = { METRICS: 'token', METRICS_TOKEN, WEBHOOK_BACKOFF_MS: '200', OUTBOUND_ALLOW_PRIVATE: '127.0.0.1' };

let registry: TestRegistry;
let second: RunningRegistry;
/** A webhook receiver: the events delivered to it. */
let receiver: Awaited<ReturnType<typeof startHookReceiver>>;
let events: any[] = [];

beforeAll(async () => {
  receiver = await startHookReceiver();
  events = receiver.received;
  registry = await startTestRegistry(env);
  second = await anotherGateway(registry, 'second', env);
  const hook = { type: 'webhook', url: receiver.url, secret: 'conflicts-hook-secret' };
  expect((await couchPut(registry, '/' + registry.registryDb + '-state/webhook%3Aconflicts', hook)).status).toBe(201);
});

afterAll(async () => {
  await second?.close();
  await registry?.stop();
  await receiver?.stop();
});

const bytes = (label: string) => Buffer.from('tarball ' + label + ' ' + 'x'.repeat(200));

/** A leaf revision `2-<hash>` on top of `parent`, with the versions given (each with its own tarball and publish time). */
function leaf(parent: any, hash: string, versions: [string, Buffer, string][]): any {
  const doc = JSON.parse(JSON.stringify(parent));
  delete doc._rev;
  doc._revisions = { start: 2, ids: [hash, parent._rev.split('-')[1]] };
  for (const [version, tarball, time] of versions) {
    doc.versions[version] = { name: doc.name, version, dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'x' }, _npmUser: { name: 'alice' } };
    doc.time[version] = time;
    doc._attachments[doc.name + '-' + version + '.tgz'] = { content_type: 'application/octet-stream', data: tarball.toString('base64') };
    doc.time.modified = time;
    doc['dist-tags'].latest = version;
  }
  return doc;
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url + '/-/metrics', { headers: { authorization: 'Bearer ' + METRICS_TOKEN } })).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : 0;
}

async function waitFor<T>(what: string, read: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error('timed out waiting for ' + what);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

it('two gateways merge conflicting leaves into one revision: the union, the first publish kept, the other refused', async () => {
  const token = await registry.signup('alice');
  const name = 'conflicted';
  expect((await registry.request('PUT', '/' + name, { token, body: publishBody(name, '1.0.0', bytes('1.0.0')) })).status).toBe(201);
  const stored = (await couchGet(registry, '/' + registry.registryDb + '/' + name + '?attachments=true')).body;
  expect(stored._rev).toMatch(/^1-/);

  // Two branches: 1.1.0 on one, 1.2.0 on the other, and 2.0.0 on both with other bytes (the first publish, at :01, wins).
  const first = bytes('2.0.0 first');
  const later = bytes('2.0.0 later');
  const a = leaf(stored, 'a'.repeat(32), [['1.1.0', bytes('1.1.0'), '2026-01-02T00:00:00.000Z'], ['2.0.0', later, '2026-01-02T00:00:02.000Z']]);
  const b = leaf(stored, 'b'.repeat(32), [['1.2.0', bytes('1.2.0'), '2026-01-02T00:00:00.500Z'], ['2.0.0', first, '2026-01-02T00:00:01.000Z']]);
  const written = await fetch(new URL('/' + registry.registryDb + '/_bulk_docs', new URL(registry.adminCouchUrl).origin), {
    method: 'POST',
    headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' },
    body: JSON.stringify({ docs: [a, b], new_edits: false }),
  });
  expect(written.status).toBe(201);

  const merged = await waitFor('the merge', async () => {
    const doc = (await couchGet(registry, '/' + registry.registryDb + '/' + name + '?conflicts=true')).body;
    return doc._rev.startsWith('3-') && !doc._conflicts ? doc : undefined;
  });
  expect(Object.keys(merged.versions).sort()).toEqual(['1.0.0', '1.1.0', '1.2.0', '2.0.0']);
  expect(merged.versions['2.0.0'].dist.integrity).toBe(sha512(first));
  expect(merged.time['2.0.0']).toBe('2026-01-02T00:00:01.000Z');
  expect(merged['dist-tags'].latest).toBe('2.0.0');

  // Served whole by both gateways: every version's tarball matches its manifest.
  for (const url of [registry.localUrl, second.localUrl]) {
    const packument = await waitFor('the merged packument at ' + url, async () => {
      const body = (await (await fetch(url + '/' + name)).json()) as any;
      return Object.keys(body.versions || {}).length === 4 ? body : undefined;
    });
    expect(packument.versions['2.0.0'].dist.integrity).toBe(sha512(first));
    for (const version of Object.keys(packument.versions)) {
      const tarball = await fetch(url + '/' + name + '/-/' + name + '-' + version + '.tgz');
      expect(tarball.status).toBe(200);
      const data = Buffer.from(await tarball.arrayBuffer());
      expect('sha512-' + createHash('sha512').update(data).digest('base64')).toBe(packument.versions[version].dist.integrity);
    }
  }

  // One gateway stored the merge (the other's write met a conflict and found nothing left to merge): counted once.
  const resolved = (await metric(registry.localUrl, 'registry_conflicts_resolved_total')) + (await metric(second.localUrl, 'registry_conflicts_resolved_total'));
  const refused = (await metric(registry.localUrl, 'registry_publishes_refused_total')) + (await metric(second.localUrl, 'registry_publishes_refused_total'));
  expect(resolved).toBe(1);
  expect(refused).toBe(1);
  // And sent as a webhook event, once.
  const event = await waitFor('the publish-refused event', async () => events.find((e) => e.event === 'package:publish-refused'));
  expect(event).toMatchObject({ name, actor: 'alice', change: { version: '2.0.0', integrity: sha512(later), kept: sha512(first), published: '2026-01-02T00:00:02.000Z' } });

  // No flapping: a while later, still the one merged revision, its losing leaf deleted.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const after = (await couchGet(registry, '/' + registry.registryDb + '/' + name + '?conflicts=true')).body;
  expect(after._rev).toBe(merged._rev);
  expect(after._conflicts).toBeUndefined();
  const leaves = (await couchGet(registry, '/' + registry.registryDb + '/' + name + '?open_revs=all')).body as { ok: any }[];
  expect(leaves.map((l) => (l.ok._deleted ? 'deleted ' : 'live ') + l.ok._rev.split('-')[0]).sort()).toEqual(['deleted 3', 'live 3']);

  // The refused version number stays taken: publishing 2.0.0 again is refused, a new version lands.
  expect((await registry.request('PUT', '/' + name, { token, body: publishBody(name, '2.0.0', later) })).status).toBe(403);
  expect((await registry.request('PUT', '/' + name, { token, body: publishBody(name, '2.0.1', bytes('2.0.1')) })).status).toBe(201);
  expect(events.filter((e) => e.event === 'package:publish-refused')).toHaveLength(1);
});

/** Tarballs of the mirrored package below: 1.0.0, 1.1.0, 1.2.0, and 1.1.0 as the upstream republished it. */
const bytesOf: Record<string, Buffer> = { a0: bytes('1.0.0'), a1: bytes('1.1.0'), b2: bytes('1.2.0'), c1: bytes('1.1.0 republished upstream') };

/**
 * Three conflicting leaves of mirrored package `name` written into `target`'s mirror database as a
 * cluster leaves them: A copies upstream revision 4, with 1.0.0's tarball; B revision 5 (1.2.0
 * added), with 1.2.0's; C revision 2, whose 1.1.0 the upstream later republished with other bytes,
 * with that tarball. The status of the write.
 */
async function writeMirroredLeaves(target: Pick<TestRegistry, 'adminCouchUrl' | 'registryDb'>, name: string): Promise<number> {
  const manifest = (version: string, key: string) => ({ name, version, dist: { shasum: sha1(bytesOf[key]), integrity: sha512(bytesOf[key]), tarball: 'https://upstream.invalid/' + name + '/-/' + name + '-' + version + '.tgz' } });
  const copy = (hash: string, originRev: string, versions: Record<string, string>, stored: [string, string][]) => ({
    _id: name,
    _rev: '1-' + hash.repeat(32),
    name,
    versions: Object.fromEntries(Object.entries(versions).map(([version, key]) => [version, manifest(version, key)])),
    'dist-tags': { latest: Object.keys(versions).pop() },
    time: Object.fromEntries(Object.keys(versions).map((version, i) => [version, '2026-01-0' + (i + 1) + 'T00:00:00.000Z'])),
    maintainers: [],
    origin: 'https://upstream.invalid',
    origin_rev: originRev,
    origin_synced: '2026-12-01T00:00:00.000Z',
    _attachments: Object.fromEntries(stored.map(([version, key]) => [name + '-' + version + '.tgz', { content_type: 'application/octet-stream', data: bytesOf[key].toString('base64') }])),
  });
  const a = copy('a', '4-aaaa', { '1.0.0': 'a0', '1.1.0': 'a1' }, [['1.0.0', 'a0']]);
  const b = copy('b', '5-bbbb', { '1.0.0': 'a0', '1.1.0': 'a1', '1.2.0': 'b2' }, [['1.2.0', 'b2']]);
  const c = copy('c', '2-cccc', { '1.0.0': 'a0', '1.1.0': 'c1' }, [['1.1.0', 'c1']]);
  const written = await fetch(new URL('/' + target.registryDb + '-mirror/_bulk_docs', new URL(target.adminCouchUrl).origin), {
    method: 'POST',
    headers: { authorization: basicAuthOf(target.adminCouchUrl), 'content-type': 'application/json' },
    body: JSON.stringify({ docs: [a, b, c], new_edits: false }),
  });
  return written.status;
}

it('two gateways merge the conflicting leaves of a mirrored package, as two gateways pulling it through at once leave them on a cluster: the later upstream copy, with the tarballs either stored', async () => {
  const name = 'mirrored-twice';
  const mirrorDb = registry.registryDb + '-mirror';
  const before = (await metric(registry.localUrl, 'registry_conflicts_resolved_total')) + (await metric(second.localUrl, 'registry_conflicts_resolved_total'));
  expect(await writeMirroredLeaves(registry, name)).toBe(201);

  const merged = await waitFor('the merge', async () => {
    const doc = (await couchGet(registry, '/' + mirrorDb + '/' + name + '?conflicts=true')).body;
    return doc._rev && !doc._conflicts && Object.keys(doc._attachments || {}).length === 2 ? doc : undefined;
  });
  expect(merged.origin_rev).toBe('5-bbbb');
  expect(Object.keys(merged.versions)).toEqual(['1.0.0', '1.1.0', '1.2.0']);
  expect(merged.versions['1.1.0'].dist.integrity).toBe(sha512(bytesOf.a1));
  expect(Object.keys(merged._attachments).sort()).toEqual([name + '-1.0.0.tgz', name + '-1.2.0.tgz']);

  // Served alike by both gateways, each tarball stored matching its manifest; the republished bytes are not served as 1.1.0.
  for (const url of [registry.localUrl, second.localUrl]) {
    const packument = await waitFor('the merged packument at ' + url, async () => {
      const body = (await (await fetch(url + '/' + name)).json()) as any;
      return Object.keys(body.versions || {}).length === 3 ? body : undefined;
    });
    for (const version of ['1.0.0', '1.2.0']) {
      const tarball = await fetch(url + '/' + name + '/-/' + name + '-' + version + '.tgz');
      expect([version, tarball.status]).toEqual([version, 200]);
      const data = Buffer.from(await tarball.arrayBuffer());
      expect('sha512-' + createHash('sha512').update(data).digest('base64')).toBe(packument.versions[version].dist.integrity);
    }
    const republished = await fetch(url + '/' + name + '/-/' + name + '-1.1.0.tgz');
    expect(Buffer.from(await republished.arrayBuffer()).equals(bytesOf.c1)).toBe(false);
  }

  // No flapping: a while later one live leaf, the others deleted; merged once whichever gateway did it.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const after = (await couchGet(registry, '/' + mirrorDb + '/' + name + '?conflicts=true')).body;
  expect(after._rev).toBe(merged._rev);
  expect(after._conflicts).toBeUndefined();
  const leaves = (await couchGet(registry, '/' + mirrorDb + '/' + name + '?open_revs=all')).body as { ok: any }[];
  expect(leaves.filter((l) => !l.ok._deleted).map((l) => l.ok._rev)).toEqual([merged._rev]);
  const resolved = (await metric(registry.localUrl, 'registry_conflicts_resolved_total')) + (await metric(second.localUrl, 'registry_conflicts_resolved_total'));
  expect(resolved - before).toBe(1);
});

it('a registry alone on its embedded server, which reads its mirror\'s feed only after a write that can conflict, merges conflicting leaves written after a while of ordinary writes', async () => {
  const alone = await startTestRegistry(env);
  try {
    const token = await alone.signup('carol');
    // Ordinary writes move both databases' positions while the resolvers wait: none can conflict.
    for (const version of ['1.0.0', '1.0.1']) {
      expect((await alone.request('PUT', '/carols-' + version, { token, body: publishBody('carols-' + version, version, bytes(version)) })).status).toBe(201);
    }
    expect((await couchPut(alone, '/' + alone.registryDb + '-mirror/plain-copy', { name: 'plain-copy', versions: {}, 'dist-tags': {}, time: {}, origin: 'https://upstream.invalid' })).status).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await writeMirroredLeaves(alone, 'mirrored-alone')).toBe(201);
    const merged = await waitFor('the merge', async () => {
      const doc = (await couchGet(alone, '/' + alone.registryDb + '-mirror/mirrored-alone?conflicts=true')).body;
      return doc._rev && !doc._conflicts ? doc : undefined;
    }, 10_000);
    expect([merged.origin_rev, Object.keys(merged._attachments).sort()]).toEqual(['5-bbbb', ['mirrored-alone-1.0.0.tgz', 'mirrored-alone-1.2.0.tgz']]);
  } finally {
    await alone.stop();
  }
});
