/**
 * Two instances of this registry on loopback, the downstream following the upstream's change feed
 * (`/-/replicate/_changes`, the public registry's contract) in mode `all`: what is published upstream
 * installs downstream within seconds; a downstream local package survives an upstream package of the
 * same name; mirrored packages cannot be changed by local users; private scopes never come down;
 * unpublishing upstream removes the mirrored copy; the status says all of it.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { makePackage, makeProject, npmClient, NpmClient, publishWith, run } from '../helpers/npm';
import { mirroredDoc, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

let upstream: TestRegistry;
let downstream: TestRegistry;
let publisher: NpmClient;
let localUser: NpmClient;
let localToken: string;

const publishUpstream = (manifest: Record<string, unknown>) => publishWith(publisher, manifest);
const downstreamDoc = (name: string) => mirroredDoc(downstream, name);

beforeAll(async () => {
  upstream = await startTestRegistry();
  publisher = npmClient(upstream.url, await upstream.signup('alice'));
  downstream = await startTestRegistry({
    UPSTREAM_REGISTRY: upstream.url,
    REPLICATION_FEED: upstream.url + '/-/replicate',
    REPLICATION_MODE: 'all',
    REPLICATION_POLL_MS: '200',
    REPLICATION_PRIVATE_SCOPES: '@corp',
  });
  localToken = await downstream.signup('bob');
  localUser = npmClient(downstream.url, localToken);
});

afterAll(async () => {
  await downstream?.stop();
  await upstream?.stop();
});

describe('replication through the npm change feed', () => {
  it('a package published upstream is mirrored within seconds and installs downstream', async () => {
    const started = Date.now();
    await publishUpstream({ name: 'feed-lib', version: '1.0.0' });
    await publishUpstream({ name: 'feed-app', version: '2.0.0', dependencies: { 'feed-lib': '^1.0.0' } });
    const mirrored = await eventually(async () => {
      const doc = await downstreamDoc('feed-app');
      return doc.status === 200 ? doc.body : null;
    });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(mirrored.origin).toBe(upstream.url);
    expect(Object.keys(mirrored.versions)).toEqual(['2.0.0']);

    const client = npmClient(downstream.url);
    const dir = makeProject(client.home, 'consumer', { 'feed-app': '^2.0.0' });
    const install = await client.npm(['install'], dir);
    expect(install.code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/feed-app/index.js'), 'utf8')).toContain('feed-app@2.0.0');
    expect(readFileSync(join(dir, 'node_modules/feed-lib/index.js'), 'utf8')).toContain('feed-lib@1.0.0');
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/feed-lib'].resolved).toBe(downstream.url + '/feed-lib/-/feed-lib-1.0.0.tgz');
    // The tarballs fetched on first request are now stored downstream, verified.
    const stored = await eventually(async () => {
      const doc = await downstreamDoc('feed-lib');
      return doc.body._attachments && doc.body._attachments['feed-lib-1.0.0.tgz'] ? doc.body : null;
    });
    expect(stored._attachments['feed-lib-1.0.0.tgz'].length).toBeGreaterThan(0);

    await publishUpstream({ name: 'feed-lib', version: '1.1.0' });
    const updated = await eventually(async () => {
      const res = await downstream.request('GET', '/feed-lib');
      return res.body['dist-tags'] && res.body['dist-tags'].latest === '1.1.0' ? res.body : null;
    });
    expect(Object.keys(updated.versions).sort()).toEqual(['1.0.0', '1.1.0']);
  });

  it('a downstream local package survives an upstream package of the same name', async () => {
    const local = await localUser.npm(['publish'], makePackage(localUser.home, { name: 'same-name', version: '5.0.0', description: 'ours' }));
    expect(local.code).toBe(0);
    await publishUpstream({ name: 'same-name', version: '1.0.0', description: 'theirs' });
    await publishUpstream({ name: 'after-same-name', version: '1.0.0' });
    const status = await eventually(async () => {
      const res = await downstream.request('GET', '/-/replication', { token: localToken });
      return res.body.shadowed && res.body.shadowed.includes('same-name') ? res.body : null;
    });
    expect(status.refused.find((r: { name: string }) => r.name === 'same-name').reason).toContain('published in this registry');
    await eventually(async () => ((await downstreamDoc('after-same-name')).status === 200 ? true : null));
    const ours = await downstream.request('GET', '/same-name');
    expect(ours.body.description).toBe('ours');
    expect(Object.keys(ours.body.versions)).toEqual(['5.0.0']);
  });

  it('local users cannot publish to, re-tag or deprecate a mirrored package; the error says to use a private scope', async () => {
    await eventually(async () => ((await downstreamDoc('feed-lib')).status === 200 ? true : null));
    const publish = await localUser.npm(['publish'], makePackage(localUser.home, { name: 'feed-lib', version: '9.0.0' }));
    expect(publish.code).not.toBe(0);
    expect(publish.stderr).toContain('is mirrored from ' + upstream.url);
    expect(publish.stderr).toContain('private scope');
    const tag = await localUser.npm(['dist-tag', 'add', 'feed-lib@1.0.0', 'beta']);
    expect(tag.code).not.toBe(0);
    expect(tag.stderr).toContain('private scope');
    const deprecate = await localUser.npm(['deprecate', 'feed-lib@1.0.0', 'do not use']);
    expect(deprecate.code).not.toBe(0);
    expect(deprecate.stderr).toContain('private scope');
    const doc = (await downstreamDoc('feed-lib')).body;
    expect(doc['dist-tags'].beta).toBeUndefined();
    expect(doc.versions['1.0.0'].deprecated).toBeUndefined();
  });

  it('a package of a private scope never comes down, through the feed or on request', async () => {
    await publishUpstream({ name: '@corp/secret', version: '1.0.0' });
    await publishUpstream({ name: 'after-corp', version: '1.0.0' });
    await eventually(async () => ((await downstreamDoc('after-corp')).status === 200 ? true : null));
    expect((await downstreamDoc('@corp/secret')).status).toBe(404);
    const asked = await downstream.request('GET', '/@corp%2fsecret');
    expect(asked.status).toBe(404);
    expect(asked.body.error).toContain('private');
    const status = await downstream.request('GET', '/-/replication', { token: localToken });
    expect(status.body.refused.find((r: { name: string }) => r.name === '@corp/secret').reason).toContain('private scope');
  });

  it('an unpublish upstream removes the mirrored copy', async () => {
    await publishUpstream({ name: 'feed-gone', version: '1.0.0' });
    await eventually(async () => ((await downstreamDoc('feed-gone')).status === 200 ? true : null));
    const unpublish = await publisher.npm(['unpublish', 'feed-gone', '--force']);
    expect(unpublish.code).toBe(0);
    const gone = await eventually(async () => {
      const res = await downstream.request('GET', '/feed-gone');
      return res.status === 404 ? res : null;
    });
    expect(gone.body.error).toMatch(/unpublished|not in this registry|neither/);
  });

  it('GET /-/replication reports the feed, its lag and what was written; anonymous callers get 401', async () => {
    expect((await downstream.request('GET', '/-/replication')).status).toBe(401);
    const status = await eventually(async () => {
      const res = await downstream.request('GET', '/-/replication', { token: localToken });
      return res.body.feed && res.body.feed.lag.changes === 0 ? res.body : null;
    });
    expect(status.upstream).toBe(upstream.url);
    expect(status.feed.state).toBe('following');
    expect(status.feed.mode).toBe('all');
    expect(status.feed.initialSync.done).toBe(true);
    // The checkpoint's own time: saved after every batch, so a moment ago.
    expect(Date.now() - Date.parse(status.feed.checkpointedAt)).toBeLessThan(30_000);
    expect(status.feed.packagesWritten).toBeGreaterThanOrEqual(5);
    expect(status.tarballsWritten).toBeGreaterThanOrEqual(2);
  });

  it('this registry\'s own feed follows the public contract and refuses bad parameters with 400', async () => {
    await publishUpstream({ name: 'contract-a', version: '1.0.0' });
    await publishUpstream({ name: 'contract-b', version: '1.0.0' });
    const page = await upstream.request('GET', '/-/replicate/_changes?since=0&limit=2');
    expect(page.status).toBe(200);
    expect(page.body.results).toHaveLength(2);
    for (const entry of page.body.results) {
      expect(Object.keys(entry).sort()).toEqual(['changes', 'id', 'seq']);
      expect(entry.id.startsWith('_')).toBe(false);
      expect(entry.changes[0].rev).toMatch(/^\d+-/);
    }
    const next = await upstream.request('GET', '/-/replicate/_changes?limit=10000&since=' + encodeURIComponent(String(page.body.last_seq)));
    const ids = next.body.results.map((e: { id: string }) => e.id);
    expect(ids).not.toContain(page.body.results[0].id);
    expect(ids.some((id: string) => id.startsWith('_design/'))).toBe(false);
    expect((await upstream.request('GET', '/-/replicate')).body.update_seq).toBeDefined();
    for (const query of ['limit=0', 'limit=20000', 'limit=ten', 'since=%7B%7D', 'since=garbage']) {
      const bad = await upstream.request('GET', '/-/replicate/_changes?' + query);
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatch(/"limit"|"since"/);
    }
  });

  it('the replication command shows the same (the token from REGISTRY_TOKEN), and says how to log in without one', async () => {
    const cli = join(__dirname, '..', '..', 'dist', 'replication', 'cli.js');
    const shown = await run(process.execPath, [cli, '--registry', downstream.url], { env: { PATH: process.env.PATH, REGISTRY_TOKEN: localToken } });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain('feed          ' + upstream.url + '/-/replicate  mode all  following');
    expect(shown.stdout).toMatch(/shadowed\s+same-name/);
    expect(shown.stdout).toMatch(/refused\s+@corp\/secret: private scope/);
    const anonymous = await run(process.execPath, [cli, '--registry', downstream.url], { env: { PATH: process.env.PATH } });
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toContain('REGISTRY_TOKEN');
  });
});
