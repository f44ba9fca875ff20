/**
 * What the feed follower's ingest relies on (issue 28, ingest rate): the search index takes the
 * documents the follower stores from the follower itself and then reads only the revisions from the
 * mirror's feed, so a document changed behind the gateway's back must still be read and indexed;
 * and a database's `_security`, which the embedded server now keeps between bulk writes, is read
 * again as soon as an admin changes it.
 */
import { proxyHeaders } from '../../couchdb/proxy-auth';
import { FeedStandIn, startFeedStandIn } from '../helpers/feed-standin';
import { basicAuthOf, couchGet, mirroredDoc, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually, settled } from '../helpers/wait';

let standIn: FeedStandIn;
let registry: TestRegistry;

const COUNT = 40;

beforeAll(async () => {
  standIn = await startFeedStandIn();
  registry = await startTestRegistry({
    UPSTREAM_REGISTRY: standIn.url,
    REPLICATION_FEED: standIn.feedUrl,
    REPLICATION_MODE: 'all',
    REPLICATION_POLL_MS: '200',
  });
});

afterAll(async () => {
  await registry?.stop();
  await standIn?.close();
});

const names = async (text: string): Promise<string[]> =>
  ((await registry.request('GET', '/-/v1/search?size=250&text=' + encodeURIComponent(text))).body.objects as { package: { name: string } }[]).map((o) => o.package.name).sort();

describe('the search index during a feed ingest', () => {
  it('lists every package the follower stored, and reads again a mirrored document an admin changed in CouchDB afterwards', async () => {
    const expected: string[] = [];
    for (let i = 0; i < COUNT; i++) {
      const name = 'ingested-kite-' + String(i).padStart(2, '0');
      standIn.publish(name, ['1.0.0', '2.0.0']);
      expected.push(name);
    }
    await eventually(async () => ((await mirroredDoc(registry, expected[COUNT - 1])).status === 200 ? true : null), 30_000, 'the last package to be mirrored');
    expect(await settled(() => names('ingested-kite'), (found) => found.length === COUNT, 10_000)).toEqual(expected);

    // A revision the follower handed to the index, then one written straight into CouchDB: the
    // feed brings the second without the gateway having it, so its document must be read.
    const mirrorDb = registry.registryDb + '-mirror';
    const doc = (await couchGet(registry, '/' + mirrorDb + '/' + expected[7])).body;
    expect(doc.origin).toBeDefined();
    const edited = await fetch(new URL('/' + mirrorDb + '/' + expected[7], new URL(registry.adminCouchUrl).origin), {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: basicAuthOf(registry.adminCouchUrl) },
      body: JSON.stringify({ ...doc, description: 'a heliotrope kite now' }),
    });
    expect(edited.status).toBe(201);
    expect(await settled(() => names('heliotrope'), (found) => found.length === 1, 10_000)).toEqual([expected[7]]);

    // And a package the follower stores again after the upstream changed it is found by its new version's words.
    standIn.publish(expected[3], ['1.0.0', '2.0.0', '3.0.0']);
    const found = await settled(
      async () => (await registry.request('GET', '/-/v1/search?text=' + expected[3])).body.objects as { package: { name: string; version: string } }[],
      (objects) => objects.some((o) => o.package.name === expected[3] && o.package.version === '3.0.0'),
      20_000,
    );
    expect(found.find((o) => o.package.name === expected[3])?.package.version).toBe('3.0.0');
  });
});

describe('the search index after the ingest', () => {
  it('lists every package of a bulk write made straight into CouchDB (writes this gateway did not make, read with their documents again)', async () => {
    const docs = Array.from({ length: 150 }, (_, i) => {
      const name = 'straight-lynx-' + String(i).padStart(3, '0');
      return { _id: name, name, description: 'written behind the gateway', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': { name, version: '1.0.0', dist: { tarball: 'http://example.invalid/' + name + '.tgz', shasum: '0'.repeat(40) } } }, time: {} };
    });
    for (let at = 0; at < docs.length; at += 50) {
      const written = await fetch(new URL('/' + registry.registryDb + '/_bulk_docs', new URL(registry.adminCouchUrl).origin), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: basicAuthOf(registry.adminCouchUrl) },
        body: JSON.stringify({ docs: docs.slice(at, at + 50) }),
      });
      expect(written.status).toBe(201);
    }
    expect(await settled(() => names('straight-lynx'), (found) => found.length === docs.length, 15_000)).toEqual(docs.map((d) => d.name));
  });
});

describe('a database\'s _security between bulk writes', () => {
  it('a role an admin adds to the members may write at once, after a member\'s writes', async () => {
    const couch = new URL(registry.adminCouchUrl).origin;
    const db = 'security-cache-' + Math.random().toString(36).slice(2, 8);
    const admin = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
    expect((await fetch(couch + '/' + db, { method: 'PUT', headers: admin })).status).toBe(201);
    try {
      const setMembers = async (roles: string[]) =>
        (await fetch(couch + '/' + db + '/_security', { method: 'PUT', headers: admin, body: JSON.stringify({ admins: { names: [], roles: [] }, members: { names: [], roles } }) })).status;
      const bulk = async (user: string, roles: string[], id: string) =>
        (
          await fetch(couch + '/' + db + '/_bulk_docs', {
            method: 'POST',
            headers: { ...proxyHeaders(registry.proxySecret, user, roles), 'content-type': 'application/json', accept: 'application/json' },
            body: JSON.stringify({ docs: [{ _id: id, by: user }] }),
          })
        ).status;
      expect(await setMembers(['kite-team'])).toBe(200);
      // A member's bulk writes (the security object is read for each of their documents).
      for (let i = 0; i < 3; i++) expect(await bulk('member-one', ['kite-team'], 'by-member-' + i)).toBe(201);
      expect(await bulk('outsider', ['other-team'], 'by-outsider-0')).toBeGreaterThanOrEqual(400);
      expect(await setMembers(['kite-team', 'other-team'])).toBe(200);
      expect(await bulk('outsider', ['other-team'], 'by-outsider-1')).toBe(201);
      expect(await setMembers(['kite-team'])).toBe(200);
      expect(await bulk('outsider', ['other-team'], 'by-outsider-2')).toBeGreaterThanOrEqual(400);
      const stored = (await (await fetch(couch + '/' + db + '/_all_docs', { headers: admin })).json()) as { rows: { id: string }[] };
      expect(stored.rows.map((r) => r.id).sort()).toEqual(['by-member-0', 'by-member-1', 'by-member-2', 'by-outsider-1']);
    } finally {
      await fetch(couch + '/' + db, { method: 'DELETE', headers: admin });
    }
  });
});
