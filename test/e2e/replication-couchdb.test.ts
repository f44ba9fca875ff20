/**
 * Two instances of this registry on loopback, the downstream replicating the upstream's CouchDB
 * database natively (a continuous replication in `_replicator`, as the replication user): a publish
 * upstream installs downstream within seconds with its tarball; a downstream local package survives
 * an upstream package of the same name; design documents stay where they are; local users cannot
 * change mirrored packages.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { makePackage, makeProject, npmClient, NpmClient, publishWith } from '../helpers/npm';
import { readerSource, send } from '../helpers/principals';
import { couchGet, mirroredDoc, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

let upstream: TestRegistry;
let downstream: TestRegistry;
let publisher: NpmClient;
let localUser: NpmClient;
let localToken: string;
let source: string;

const docAt = mirroredDoc;
const publishUpstream = (manifest: Record<string, unknown>) => publishWith(publisher, manifest);

beforeAll(async () => {
  upstream = await startTestRegistry();
  publisher = npmClient(upstream.url, await upstream.signup('alice'));
  await publishUpstream({ name: 'native-early', version: '1.0.0' });
  // The downstream reads the upstream with a reader account (role registry-reader), not as an admin.
  source = await readerSource(upstream.adminCouchUrl, upstream.registryDb);
  downstream = await startTestRegistry({ REPLICATION_COUCHDB: source });
  localToken = await downstream.signup('bob');
  localUser = npmClient(downstream.url, localToken);
});

afterAll(async () => {
  await downstream?.stop();
  await upstream?.stop();
});

describe('native CouchDB replication', () => {
  it('reads the upstream with a reader account, which writes nothing there; anonymous callers read nothing', async () => {
    const url = new URL(source);
    const reader = { authorization: 'Basic ' + Buffer.from(decodeURIComponent(url.username) + ':' + decodeURIComponent(url.password)).toString('base64') };
    const path = '/' + upstream.registryDb + '/native-early';
    const read = await send(url.origin, 'GET', path, { headers: reader });
    expect([read.status, read.body.name]).toEqual([200, 'native-early']);
    expect((await send(url.origin, 'GET', path)).status).toBe(401);
    const write = await send(url.origin, 'PUT', path, { headers: reader, body: { ...read.body, description: 'changed by the reader' } });
    expect(write.status).toBe(403);
    expect((await couchGet(upstream, path)).body._rev).toBe(read.body._rev);
  });

  it('runs as a _replicator document writing as the replication user, not an admin', async () => {
    const jobs = await couchGet(downstream, '/_replicator/_all_docs?include_docs=true');
    const job = jobs.body.rows.map((r: { doc: Record<string, any> }) => r.doc).find((d: Record<string, any>) => d._id === 'registry-' + downstream.registryDb + '-from-upstream');
    expect(job.continuous).toBe(true);
    expect(job.selector).toEqual({ _id: { $regex: '^[^_]' } });
    const target = typeof job.target === 'string' ? job.target : job.target.url;
    expect(new URL(target).username).toBe('registry-replicator');
    const user = await couchGet(downstream, '/_users/org.couchdb.user:registry-replicator');
    expect(user.body.roles).toEqual(['registry-replicator']);
  });

  it('a package published upstream installs downstream within seconds, tarball included', async () => {
    await eventually(async () => ((await docAt(downstream, 'native-early')).status === 200 ? true : null));
    const started = Date.now();
    await publishUpstream({ name: 'native-lib', version: '1.0.0' });
    const doc = await eventually(async () => {
      const res = await docAt(downstream, 'native-lib');
      return res.status === 200 ? res.body : null;
    });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(doc.origin).toBe(upstream.registryId);
    expect(doc._attachments['native-lib-1.0.0.tgz'].length).toBeGreaterThan(0);
    const client = npmClient(downstream.url);
    const dir = makeProject(client.home, 'native-consumer', { 'native-lib': '1.0.0' });
    const install = await client.npm(['install'], dir);
    expect(install.code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/native-lib/index.js'), 'utf8')).toContain('native-lib@1.0.0');
  });

  it('design documents are not replicated: each side keeps its own', async () => {
    const up = await couchGet(upstream, '/' + upstream.registryDb + '/_design/mirror');
    const down = await couchGet(downstream, '/' + downstream.registryDb + '/_design/mirror');
    expect(down.body.registry).toBe(downstream.registryId);
    expect(up.body.registry).toBe(upstream.registryId);
    expect(down.body.registry).not.toBe(up.body.registry);
  });

  it('a downstream local package survives an upstream package of the same name', async () => {
    const local = await localUser.npm(['publish'], makePackage(localUser.home, { name: 'native-same', version: '5.0.0', description: 'ours' }));
    expect(local.code).toBe(0);
    await publishUpstream({ name: 'native-same', version: '1.0.0', description: 'theirs' });
    await publishUpstream({ name: 'native-after', version: '1.0.0' });
    await eventually(async () => ((await docAt(downstream, 'native-after')).status === 200 ? true : null));
    const ours = await downstream.request('GET', '/native-same');
    expect(ours.body.description).toBe('ours');
    expect(Object.keys(ours.body.versions)).toEqual(['5.0.0']);
    const status = await downstream.request('GET', '/-/replication', { token: localToken });
    expect(status.body.shadowed).toContain('native-same');
    expect(status.body.couchdb.source).toBe(new URL('/' + upstream.registryDb, upstream.couchUrl).toString());
    expect(JSON.stringify(status.body)).not.toContain('test-admin-password');
  });

  it('a new version of a package the downstream already holds arrives, and npm view shows it', async () => {
    await eventually(async () => ((await docAt(downstream, 'native-lib')).status === 200 ? true : null));
    const started = Date.now();
    await publishUpstream({ name: 'native-lib', version: '1.1.0' });
    await eventually(async () => {
      const res = await downstream.request('GET', '/native-lib');
      return res.body['dist-tags'] && res.body['dist-tags'].latest === '1.1.0' ? true : null;
    });
    expect(Date.now() - started).toBeLessThan(15_000);
    const view = await localUser.npm(['view', 'native-lib', 'version']);
    expect(view.stdout.trim()).toBe('1.1.0');
    const status = await downstream.request('GET', '/-/replication', { token: localToken });
    expect(status.body.couchdb.conflicts).toBe(0);
    expect(status.body.couchdb.changesPending).toBe(0);
    expect(status.body.couchdb.docWriteFailures || 0).toBe(0);
    // Packages are counted without the design documents, which each side has of its own.
    const packagesIn = async (registry: TestRegistry, db: string) => (await couchGet(registry, '/' + db + '/_all_docs')).body.rows.filter((row: { id: string }) => !row.id.startsWith('_design/')).length;
    const { local, upstream: source } = status.body.couchdb;
    expect(local.packageCount).toBe(await packagesIn(downstream, downstream.registryDb + '-mirror'));
    expect(local.packageCount).toBeLessThan(local.docCount);
    expect(source.packageCount).toBe(await packagesIn(upstream, upstream.registryDb));
    expect(source.packageCount).toBeLessThan(source.docCount);
  });

  it('local users cannot change a natively mirrored package', async () => {
    const publish = await localUser.npm(['publish'], makePackage(localUser.home, { name: 'native-lib', version: '2.0.0' }));
    expect(publish.code).not.toBe(0);
    expect(publish.stderr).toContain('private scope');
    expect(Object.keys((await docAt(downstream, 'native-lib')).body.versions)).not.toContain('2.0.0');
  });
});
