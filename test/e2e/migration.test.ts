/**
 * Data from earlier versions. Before the mirror database, mirrored packages lived in the registry
 * database: the first start of this version moves them (history and tarballs included) into the
 * mirror database, leaves the local packages where they are, and does it once. Before `<db>-state`,
 * the feed follower kept its checkpoint in `<db>-tokens`: it is taken over and the follower resumes.
 */
import { RunningRegistry } from '../../server/registry';
import { startFeedStandIn } from '../helpers/feed-standin';
import { sha1, sha512 } from '../helpers/npm';
import { eventually } from '../helpers/wait';
import { basicAuthOf, couchGet, mirroredDoc, restartTestRegistry, startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';

let registry: TestRegistry;
let restarted: RunningRegistry | undefined;

afterAll(async () => {
  await restarted?.close();
  await registry?.stop();
});

it('moves mirrored packages out of the registry database on the first start, once, and serves them as before', async () => {
  registry = await startTestRegistry();
  const token = await registry.signup('migrator');
  const admin = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
  const couch = new URL(registry.adminCouchUrl).origin + '/' + registry.registryDb;
  // A local package, published as usual.
  const ours = Buffer.from('our tarball');
  const publish = await registry.request('PUT', '/ours', {
    token,
    body: {
      _id: 'ours', name: 'ours', 'dist-tags': { latest: '1.0.0' },
      versions: { '1.0.0': { name: 'ours', version: '1.0.0', dist: { shasum: sha1(ours), integrity: sha512(ours), tarball: 'x' } } },
      _attachments: { 'ours-1.0.0.tgz': { content_type: 'application/octet-stream', data: ours.toString('base64'), length: ours.length } },
    },
  });
  expect(publish.status).toBe(201);
  // Two mirrored packages as the old layout kept them: one with an upstream origin, one without any.
  const theirs = Buffer.from('their tarball');
  for (const [name, origin] of [['old-mirrored', 'https://old-upstream.example'], ['no-origin', undefined]] as const) {
    const now = new Date().toISOString();
    const doc: Record<string, unknown> = {
      name, 'dist-tags': { latest: '1.0.0' }, maintainers: [{ name: 'someone' }], time: { created: now, modified: now, '1.0.0': now },
      versions: { '1.0.0': { name, version: '1.0.0', dist: { shasum: sha1(theirs), integrity: sha512(theirs), tarball: 'x' } } },
      _attachments: { [name + '-1.0.0.tgz']: { content_type: 'application/octet-stream', data: theirs.toString('base64') } },
    };
    if (origin) doc.origin = origin;
    const first = await fetch(couch + '/' + name, { method: 'PUT', headers: admin, body: JSON.stringify(doc) });
    expect(first.status).toBe(201);
    // A second revision, so that the history has more than one entry to carry over.
    const current = (await couchGet(registry, '/' + registry.registryDb + '/' + name)).body;
    expect((await fetch(couch + '/' + name, { method: 'PUT', headers: admin, body: JSON.stringify({ ...current, description: 'second revision' }) })).status).toBe(201);
  }
  // As before this version: no migration done yet.
  const settings = (await couchGet(registry, '/' + registry.registryDb + '/_design/mirror')).body;
  delete settings.migrated;
  expect((await fetch(couch + '/_design/mirror', { method: 'PUT', headers: admin, body: JSON.stringify(settings) })).status).toBe(201);

  await registry.close();
  const started = await restartTestRegistry(registry);
  restarted = started;
  const moved = { ...registry, adminCouchUrl: started.adminCouchUrl };
  for (const name of ['old-mirrored', 'no-origin']) {
    expect((await storedDoc(moved, name)).status).toBe(404);
    const doc = await mirroredDoc(moved, name);
    expect(doc.status).toBe(200);
    expect(doc.body._rev.startsWith('2-')).toBe(true);
    expect(doc.body.description).toBe('second revision');
    const tarball = await fetch(started.localUrl + '/' + name + '/-/' + name + '-1.0.0.tgz');
    expect(Buffer.from(await tarball.arrayBuffer()).equals(theirs)).toBe(true);
  }
  expect((await storedDoc(moved, 'ours')).status).toBe(200);
  expect((await (await fetch(started.localUrl + '/ours')).json() as { name: string }).name).toBe('ours');
  expect((await couchGet(moved, '/' + registry.registryDb + '/_design/mirror')).body.migrated).toBe(1);
  // Mirrored now: local users cannot publish over them.
  const takeover = await fetch(started.localUrl + '/old-mirrored', { method: 'PUT', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'old-mirrored', versions: {} }) });
  expect(takeover.status).toBe(403);
});

it('takes over a feed checkpoint kept in <db>-tokens by an earlier version, and resumes from it', async () => {
  const standIn = await startFeedStandIn();
  const feedEnv = { UPSTREAM_REGISTRY: standIn.url, REPLICATION_FEED: standIn.feedUrl, REPLICATION_MODE: 'all', REPLICATION_POLL_MS: '200' };
  let first: TestRegistry | undefined;
  let again: RunningRegistry | undefined;
  try {
    standIn.publish('before-1', ['1.0.0']);
    standIn.publish('before-2', ['1.0.0']);
    first = await startTestRegistry(feedEnv);
    const db = first.registryDb;
    const id = encodeURIComponent('replication-feed:' + standIn.feedUrl);
    await eventually(async () => {
      const res = await couchGet(first!, '/' + db + '-state/' + id);
      return res.status === 200 && res.body.packagesWritten === 2 ? res.body : null;
    }, 20_000, 'the checkpoint after both packages');
    await first.close();

    // Where an earlier version kept it: in <db>-tokens, and nothing in <db>-state. (Moved while the
    // registry runs without a feed, so that the embedded CouchDB is up and no follower writes.)
    const plain = await restartTestRegistry(first);
    try {
      const admin = { authorization: basicAuthOf(plain.adminCouchUrl), 'content-type': 'application/json' };
      const couch = new URL(plain.adminCouchUrl).origin;
      // Read after the stop: the follower may have saved its position again after the second package.
      const saved = (await couchGet({ ...first, adminCouchUrl: plain.adminCouchUrl }, '/' + db + '-state/' + id)).body;
      expect(saved.packagesWritten).toBe(2);
      const { _rev, ...checkpoint } = saved;
      expect((await fetch(couch + '/' + db + '-tokens/' + id, { method: 'PUT', headers: admin, body: JSON.stringify(checkpoint) })).status).toBe(201);
      expect((await fetch(couch + '/' + db + '-state/' + id + '?rev=' + _rev, { method: 'DELETE', headers: admin })).status).toBe(200);
    } finally {
      await plain.close();
    }
    standIn.publish('after', ['1.0.0']);

    const restarted = await restartTestRegistry(first, feedEnv);
    again = restarted;
    const resumed = { ...first, adminCouchUrl: restarted.adminCouchUrl };
    // The counters go on from the old checkpoint: it was resumed, not started afresh.
    const moved = await eventually(async () => {
      const res = await couchGet(resumed, '/' + db + '-state/' + id);
      return res.status === 200 && res.body.packagesWritten === 3 ? res.body : null;
    }, 20_000, 'the resumed checkpoint after the new package');
    expect(moved.since).not.toEqual(0);
    expect((await mirroredDoc(resumed, 'after')).status).toBe(200);
    expect((await couchGet(resumed, '/' + db + '-tokens/' + id)).status).toBe(404);
  } finally {
    await again?.close();
    await first?.stop();
    await standIn.close();
  }
});
