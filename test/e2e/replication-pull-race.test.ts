/**
 * The pull-through race (issue 24, item 4): two instances of this registry, the downstream pulling
 * through from the upstream and following its change feed (mode `existing`, the default). A package
 * read through the downstream is stored there only after a quiet second; a change the upstream makes
 * meanwhile (a new version, or the whole package unpublished) must reach the downstream within
 * seconds, not with the daily sweep.
 */
import { publishBody } from '../helpers/principals';
import { couchGet, mirroredDoc, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

let upstream: TestRegistry;
let downstream: TestRegistry;
let publisher: string;

/** Publishes `name@version` upstream in one request (npm takes longer than the downstream's quiet second). */
async function publishUpstream(name: string, version: string): Promise<void> {
  const res = await upstream.request('PUT', '/' + name, { token: publisher, body: publishBody(name, version) });
  if (res.status !== 201 && res.status !== 200) throw new Error('publish of ' + name + '@' + version + ' upstream: ' + res.status + ' ' + JSON.stringify(res.body));
}

/** What the downstream serves of `name`: its versions, or null when it answers 404. */
async function servedVersions(name: string): Promise<string[] | null> {
  const res = await downstream.request('GET', '/' + name);
  if (res.status === 404) return null;
  if (res.status !== 200) throw new Error('GET /' + name + ' downstream: ' + res.status + ' ' + JSON.stringify(res.body));
  return Object.keys(res.body.versions).sort();
}

/** Waits until the downstream's feed follower has read the upstream's feed to its end. */
async function caughtUp(): Promise<void> {
  const token = await downstream.signup('watcher-' + Math.random().toString(36).slice(2, 8));
  await eventually(async () => {
    const res = await downstream.request('GET', '/-/replication', { token });
    return res.body.feed && res.body.feed.state === 'following' && res.body.feed.lag.changes === 0 ? true : null;
  });
}

beforeAll(async () => {
  upstream = await startTestRegistry();
  publisher = await upstream.signup('alice');
  downstream = await startTestRegistry({
    UPSTREAM_REGISTRY: upstream.url,
    REPLICATION_FEED: upstream.url + '/-/replicate',
    REPLICATION_POLL_MS: '200',
  });
  await caughtUp();
});

afterAll(async () => {
  await downstream?.stop();
  await upstream?.stop();
});

describe('a change upstream while a package is being pulled through', () => {
  it('a version published upstream right after a pull-through is served downstream within seconds', async () => {
    await publishUpstream('race-new-version', '1.0.0');
    expect(await servedVersions('race-new-version')).toEqual(['1.0.0']);
    // At once: the downstream still holds 1.0.0 waiting to be stored when the feed shows 1.1.0.
    await publishUpstream('race-new-version', '1.1.0');
    // Watched in the mirror database: reads through the gateway would keep pull-through from being quiet.
    await eventually(async () => {
      const doc = await mirroredDoc(downstream, 'race-new-version');
      return doc.status === 200 && doc.body.versions['1.1.0'] ? true : null;
    }, 8_000, 'race-new-version@1.1.0 mirrored downstream');
    expect(await servedVersions('race-new-version')).toEqual(['1.0.0', '1.1.0']);
    const res = await downstream.request('GET', '/race-new-version');
    expect(res.body['dist-tags'].latest).toBe('1.1.0');
  });

  it('a package unpublished upstream right after a pull-through is gone downstream within seconds', async () => {
    await publishUpstream('race-unpublished', '1.0.0');
    expect(await servedVersions('race-unpublished')).toEqual(['1.0.0']);
    const read = await upstream.request('GET', '/race-unpublished?write=true', { token: publisher });
    const unpublish = await upstream.request('DELETE', '/race-unpublished/-rev/' + read.body._rev, { token: publisher });
    expect(unpublish.status).toBeLessThan(300);
    // Stored once pull-through is quiet, then deleted (not merely not stored yet).
    await eventually(async () => {
      const listed = await couchGet(downstream, '/' + downstream.registryDb + '-mirror/_all_docs?keys=' + encodeURIComponent('["race-unpublished"]'));
      const row = listed.body.rows && listed.body.rows[0];
      return row && row.value && row.value.deleted === true ? true : null;
    }, 8_000, 'race-unpublished deleted from the mirror downstream');
    expect(await servedVersions('race-unpublished')).toBeNull();
  });
});
