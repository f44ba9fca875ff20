/**
 * Foreign packages and forwarding to an upstream, against a real Verdaccio: names unknown here are
 * mirrored (pulled through and stored), proxied or redirected to it and install with npm; a name published here is never forwarded;
 * foreign packages are served from the registry that hosts them and removed with npm unpublish; audit
 * answers clearly; an unreachable upstream fails fast (npm shows it at once) while local packages are
 * still served.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'fs';
import { join } from 'path';
import { makePackage, makeProject, npmClient, NpmClient, publishWith, sha1, sha512 } from '../helpers/npm';
import { anotherGateway, basicAuthOf, couchGet, mirroredDoc, startTestRegistry, TestRegistry } from '../helpers/registry';
import { startVerdaccio, Verdaccio } from '../helpers/verdaccio';
import { eventually, settled } from '../helpers/wait';

let verdaccio: Verdaccio;
let proxied: TestRegistry;
let redirecting: TestRegistry;
let mirroring: TestRegistry;
let upstreamPublisher: NpmClient;
let localToken: string;
let adminToken: string;
/** The project installed through the mirroring registry: its lockfile pins what was mirrored. */
let mirrorAppDir: string;

const project = (client: NpmClient, name: string, dependencies: Record<string, string>) => makeProject(client.home, name, dependencies);

beforeAll(async () => {
  verdaccio = await startVerdaccio();
  upstreamPublisher = npmClient(verdaccio.url, await verdaccio.adduser('upstreamer', 'upstream-password'));
  for (const manifest of [
    { name: 'upstream-dep', version: '1.0.0' },
    { name: 'upstream-only', version: '1.4.0', dependencies: { 'upstream-dep': '^1.0.0' } },
    { name: 'shared-name', version: '1.0.0' },
    { name: 'hosted-there', version: '3.0.0' },
  ]) {
    await publishWith(upstreamPublisher, manifest);
  }
  // Foreign packages are served through from Verdaccio, named by the admin (FOREIGN_HOSTS, with its port: a loopback address).
  proxied = await startTestRegistry({ UPSTREAM_REGISTRY: verdaccio.url, UPSTREAM_MODE: 'proxy', UPSTREAM_TIMEOUT_MS: '3000', FOREIGN_MODE: 'proxy', FOREIGN_HOSTS: new URL(verdaccio.url).host });
  redirecting = await startTestRegistry({ UPSTREAM_REGISTRY: verdaccio.url, UPSTREAM_MODE: 'redirect' });
  mirroring = await startTestRegistry({ UPSTREAM_REGISTRY: verdaccio.url, UPSTREAM_MODE: 'mirror', UPSTREAM_TIMEOUT_MS: '3000', UPSTREAM_MAX_AGE_SECONDS: '1' });
  localToken = await proxied.signup('local');
  // The upstream has this name, so only an admin publishes it here (a user is refused: see below).
  adminToken = await proxied.adminToken();
  const admin = npmClient(proxied.url, adminToken);
  const published = await admin.npm(['publish'], makePackage(admin.home, { name: 'shared-name', version: '5.0.0', description: 'ours' }));
  if (published.code !== 0) throw new Error(published.stderr);
});

afterAll(async () => {
  await proxied?.stop();
  await redirecting?.stop();
  await mirroring?.stop();
  await verdaccio?.stop();
});

describe('proxy mode', () => {
  it('npm install gets an upstream package and its dependency through this registry', async () => {
    const client = npmClient(proxied.url);
    const dir = project(client, 'proxy-app', { 'upstream-only': '^1.0.0' });
    const install = await client.npm(['install'], dir);
    expect(install.code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/upstream-only/index.js'), 'utf8')).toContain('upstream-only@1.4.0');
    expect(readFileSync(join(dir, 'node_modules/upstream-dep/index.js'), 'utf8')).toContain('upstream-dep@1.0.0');
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/upstream-only'].resolved).toBe(proxied.url + '/upstream-only/-/upstream-only-1.4.0.tgz');
  });

  it('a name published here is never forwarded', async () => {
    const doc = await proxied.request('GET', '/shared-name');
    expect(Object.keys(doc.body.versions)).toEqual(['5.0.0']);
    expect(doc.body.description).toBe('ours');
    expect(doc.headers.get('x-registry-upstream')).toBeNull();
  });

  it('an unknown name everywhere is a 404 that says both were asked', async () => {
    const res = await proxied.request('GET', '/nowhere-at-all');
    expect(res.status).toBe(404);
    expect(res.body.error).toContain('neither in this registry nor in its upstream');
  });
});

describe('mirror mode (pull-through)', () => {
  const stored = (name: string) => mirroredDoc(mirroring, name);

  it('npm install stores what it asked for as mirrored packages, tarballs verified and attached', async () => {
    const client = npmClient(mirroring.url);
    const dir = project(client, 'mirror-app', { 'upstream-only': '^1.0.0' });
    mirrorAppDir = dir;
    const install = await client.npm(['install'], dir);
    expect(install.code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/upstream-dep/index.js'), 'utf8')).toContain('upstream-dep@1.0.0');
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/upstream-only'].resolved).toBe(mirroring.url + '/upstream-only/-/upstream-only-1.4.0.tgz');
    for (const [name, file] of [['upstream-only', 'upstream-only-1.4.0.tgz'], ['upstream-dep', 'upstream-dep-1.0.0.tgz']]) {
      const doc = await eventually(async () => {
        const res = await stored(name);
        return res.body._attachments && res.body._attachments[file] ? res.body : null;
      });
      expect(doc.origin).toBe(verdaccio.url);
    }
  });

  it('a mirrored packument older than UPSTREAM_MAX_AGE_SECONDS is compared with the upstream when read', async () => {
    const published = await upstreamPublisher.npm(['publish'], makePackage(upstreamPublisher.home, { name: 'upstream-dep', version: '1.1.0' }));
    expect(published.code).toBe(0);
    await new Promise((r) => setTimeout(r, 1100));
    const updated = await eventually(async () => {
      const res = await mirroring.request('GET', '/upstream-dep');
      return res.body['dist-tags'].latest === '1.1.0' ? res.body : null;
    });
    expect(Object.keys(updated.versions).sort()).toEqual(['1.0.0', '1.1.0']);
  });

  it('a package published a moment ago through another gateway shadows the upstream\'s of that name at once, and nothing of the upstream\'s is copied', async () => {
    expect((await upstreamPublisher.npm(['publish'], makePackage(upstreamPublisher.home, { name: 'shadowed-late', version: '1.0.0' }))).code).toBe(0);
    const second = await anotherGateway(mirroring, 'second-gateway');
    try {
      const token = await mirroring.signup('shadower');
      const tarball = Buffer.from('the local shadowed-late');
      const body = {
        _id: 'shadowed-late', name: 'shadowed-late', description: 'ours', 'dist-tags': { latest: '5.0.0' },
        versions: { '5.0.0': { name: 'shadowed-late', version: '5.0.0', description: 'ours', dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'x' } } },
        _attachments: { 'shadowed-late-5.0.0.tgz': { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
      };
      const published = await fetch(second.localUrl + '/shadowed-late', { method: 'PUT', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(published.status).toBe(201);
      // At once: sooner than this gateway's follower can have read the write from the change feed.
      const res = await mirroring.request('GET', '/shadowed-late');
      expect(res.status).toBe(200);
      expect(Object.keys(res.body.versions)).toEqual(['5.0.0']);
      expect(res.body.description).toBe('ours');
      expect((await stored('shadowed-late')).status).toBe(404);
    } finally {
      await second.close();
    }
  });
});

/** A gateway in front of `mirroring`'s CouchDB, mirroring Verdaccio, with its search index loaded. */
/** How many tarballs (attachments) a gateway has read from CouchDB, by its metrics. */
async function attachmentReads(url: string): Promise<number> {
  const text = await (await fetch(url + '/-/metrics', { headers: { authorization: basicAuthOf(mirroring.adminCouchUrl) } })).text();
  return Number((/registry_couchdb_request_duration_seconds_count\{operation="attachment-get",outcome="ok"\} (\d+)/.exec(text) || [])[1] || 0);
}

async function mirroringGateway(folder: string, env: Record<string, string> = {}) {
  const gateway = await anotherGateway(mirroring, folder, { UPSTREAM_REGISTRY: verdaccio.url, UPSTREAM_MODE: 'mirror', UPSTREAM_TIMEOUT_MS: '3000', ...env });
  // Names it has not seen go straight to the upstream once its index is loaded: a search waits for that.
  expect((await fetch(gateway.localUrl + '/-/v1/search?text=anything')).status).toBe(200);
  return gateway;
}

describe('mirror mode: packages pulled through are stored once pull-through is quiet', () => {
  const pullThrough = async (url: string, name: string) => {
    const packument = await fetch(url + '/' + name);
    expect(packument.status).toBe(200);
    const tarball = await fetch(url + '/' + name + '/-/' + name + '-1.0.0.tgz');
    expect(tarball.status).toBe(200);
    return Buffer.from(await tarball.arrayBuffer());
  };

  it('what a gateway still holds is stored, tarballs included, when it stops', async () => {
    await publishWith(upstreamPublisher, { name: 'stored-at-stop', version: '1.0.0' });
    const gateway = await mirroringGateway('stopping-gateway');
    let bytes: Buffer;
    try {
      bytes = await pullThrough(gateway.localUrl, 'stored-at-stop');
    } finally {
      await gateway.close();
    }
    const doc = (await mirroredDoc(mirroring, 'stored-at-stop')).body;
    expect(doc.origin).toBe(verdaccio.url);
    expect(doc._attachments['stored-at-stop-1.0.0.tgz'].length).toBe(bytes.length);
  });

  it('a package two gateways pulled through at once is stored once over the other, with its tarball and without a conflict', async () => {
    await publishWith(upstreamPublisher, { name: 'pulled-twice', version: '1.0.0' });
    const first = await mirroringGateway('first-puller');
    const second = await mirroringGateway('second-puller');
    try {
      await pullThrough(first.localUrl, 'pulled-twice');
      await pullThrough(second.localUrl, 'pulled-twice');
    } finally {
      await first.close();
      await second.close();
    }
    const doc = await couchGet(mirroring, '/' + mirroring.registryDb + '-mirror/pulled-twice?conflicts=true');
    expect(doc.body._attachments['pulled-twice-1.0.0.tgz']).toBeDefined();
    expect(doc.body._conflicts).toBeUndefined();
  });
});

describe('mirror mode: what pull-through does ahead of the client and while it reads', () => {
  const storedSoon = (name: string) => eventually(async () => ((await mirroredDoc(mirroring, name)).status === 200 ? (await mirroredDoc(mirroring, name)).body : null), 20_000, name + ' stored');

  it('a package read again and again while it waits is not stored until the reads stop; then once, with the tarball asked for after them', async () => {
    await publishWith(upstreamPublisher, { name: 'read-while-waiting', version: '1.0.0' });
    const gateway = await mirroringGateway('rereading-gateway');
    try {
      expect((await fetch(gateway.localUrl + '/read-while-waiting')).status).toBe(200);
      // For longer than pull-through's quiet period (a second), each read sooner than that.
      for (let i = 0; i < 6; i++) {
        await new Promise((r) => setTimeout(r, 300));
        expect((await fetch(gateway.localUrl + '/read-while-waiting')).status).toBe(200);
      }
      expect((await mirroredDoc(mirroring, 'read-while-waiting')).status).toBe(404);
      expect((await fetch(gateway.localUrl + '/read-while-waiting/-/read-while-waiting-1.0.0.tgz')).status).toBe(200);
      const doc = await storedSoon('read-while-waiting');
      expect(doc._rev).toMatch(/^1-/);
      expect(doc._attachments['read-while-waiting-1.0.0.tgz']).toBeDefined();
    } finally {
      await gateway.close();
    }
  });

  it('while an install keeps reading packuments for longer than the longest wait, a package whose tarball is asked for later is still stored once, with it', async () => {
    // As npm reads the packuments of a whole tree before it downloads a tarball.
    const names = ['held-first', ...Array.from({ length: 8 }, (_, i) => 'held-busy-' + i)];
    for (const name of names) await publishWith(upstreamPublisher, { name, version: '1.0.0' });
    const gateway = await mirroringGateway('holding-gateway');
    try {
      expect((await fetch(gateway.localUrl + '/held-first')).status).toBe(200);
      // Busy for 12 s (longer than the 10 s a package waits at most when nothing holds it back).
      const until = Date.now() + 12_000;
      for (let i = 0; Date.now() < until; i++) {
        expect((await fetch(gateway.localUrl + '/' + names[1 + (i % 8)])).status).toBe(200);
        await new Promise((r) => setTimeout(r, 400));
      }
      expect((await mirroredDoc(mirroring, 'held-first')).status).toBe(404);
      expect((await fetch(gateway.localUrl + '/held-first/-/held-first-1.0.0.tgz')).status).toBe(200);
      const doc = await storedSoon('held-first');
      expect({ rev: doc._rev.split('-')[0], tarballs: Object.keys(doc._attachments || {}) }).toEqual({ rev: '1', tarballs: ['held-first-1.0.0.tgz'] });
      // The packages never asked for a tarball are stored too once pull-through is quiet.
      expect(Object.keys((await storedSoon('held-busy-7'))._attachments || {})).toEqual([]);
    } finally {
      await gateway.close();
    }
  });

  it('a package pulled through brings the packages its latest version depends on, aliases included, before anyone asks, and no further; never a name published here', async () => {
    // Published here first (a name the upstream has cannot be published here), then upstream too.
    const publisher = npmClient(mirroring.url, await mirroring.signup('ahead-publisher'));
    await publishWith(publisher, { name: 'ahead-local', version: '1.0.0', description: 'ours' });
    await publishWith(upstreamPublisher, { name: 'ahead-local', version: '1.0.0', description: 'the upstream\'s' });
    await publishWith(upstreamPublisher, { name: 'ahead-grandchild', version: '1.0.0' });
    await publishWith(upstreamPublisher, { name: 'ahead-child', version: '1.0.0', dependencies: { 'ahead-grandchild': '^1.0.0' } });
    await publishWith(upstreamPublisher, { name: 'ahead-aliased', version: '1.0.0' });
    await publishWith(upstreamPublisher, {
      name: 'ahead-parent', version: '1.0.0',
      dependencies: { 'ahead-child': '^1.0.0', 'ahead-alias': 'npm:ahead-aliased@^1.0.0', 'ahead-local': '^1.0.0' },
    });
    const gateway = await mirroringGateway('prefetching-gateway');
    try {
      expect((await fetch(gateway.localUrl + '/ahead-parent')).status).toBe(200);
      for (const name of ['ahead-parent', 'ahead-child', 'ahead-aliased']) expect((await storedSoon(name)).origin).toBe(verdaccio.url);
      expect((await mirroredDoc(mirroring, 'ahead-local')).status).toBe(404);
      expect((await mirroredDoc(mirroring, 'ahead-alias')).status).toBe(404);
      // One level ahead of clients, never further: nobody read the child while it waited.
      expect((await mirroredDoc(mirroring, 'ahead-grandchild')).status).toBe(404);
    } finally {
      await gateway.close();
    }
  });

  it('each of eight packages read one after another brings the package it depends on before anyone asks, however the reads fall between the gateway\'s polls of the database', async () => {
    // On a CouchDB cluster the database's position reads differently from one poll to the next with
    // nothing written (its opaque part names the shard copies that answered): a dependency was
    // fetched ahead, or not, by when in the poll the client's read came.
    const parents = Array.from({ length: 8 }, (_, i) => 'polled-parent-' + i);
    const children = parents.map((name) => name.replace('parent', 'child'));
    for (let at = 0; at < parents.length; at += 4) {
      await Promise.all(children.slice(at, at + 4).map((name) => publishWith(upstreamPublisher, { name, version: '1.0.0' })));
      await Promise.all(parents.slice(at, at + 4).map((name, i) => publishWith(upstreamPublisher, { name, version: '1.0.0', dependencies: { [children[at + i]]: '^1.0.0' } })));
    }
    const gateway = await mirroringGateway('polled-gateway');
    try {
      for (const name of parents) {
        expect((await fetch(gateway.localUrl + '/' + name)).status).toBe(200);
        await new Promise((r) => setTimeout(r, 300));
      }
      // Stored once pull-through is quiet: the names not fetched ahead are missing (null).
      const storedChildren = () => Promise.all(children.map(async (name) => ((await mirroredDoc(mirroring, name)).status === 200 ? name : null)));
      expect(await settled(storedChildren, (found) => found.every((name) => name !== null), 20_000, 250)).toEqual(children);
    } finally {
      await gateway.close();
    }
  });

  it('a dependency fetched ahead brings its own dependencies once a client reads it, as npm does a moment later', async () => {
    await publishWith(upstreamPublisher, { name: 'chain-grandchild', version: '1.0.0' });
    await publishWith(upstreamPublisher, { name: 'chain-child', version: '1.0.0', dependencies: { 'chain-grandchild': '^1.0.0' } });
    await publishWith(upstreamPublisher, { name: 'chain-parent', version: '1.0.0', dependencies: { 'chain-child': '^1.0.0' } });
    const gateway = await mirroringGateway('chain-gateway');
    try {
      expect((await fetch(gateway.localUrl + '/chain-parent')).status).toBe(200);
      expect((await fetch(gateway.localUrl + '/chain-child')).status).toBe(200);
      expect((await storedSoon('chain-grandchild')).origin).toBe(verdaccio.url);
    } finally {
      await gateway.close();
    }
  });

  it('a dependency fetched ahead brings the dependencies of the version its parent\'s range picks, not of its latest', async () => {
    await publishWith(upstreamPublisher, { name: 'major-old-dep', version: '1.0.0' });
    await publishWith(upstreamPublisher, { name: 'major-new-dep', version: '1.0.0' });
    await publishWith(upstreamPublisher, { name: 'major-child', version: '1.0.0', dependencies: { 'major-old-dep': '^1.0.0' } });
    await publishWith(upstreamPublisher, { name: 'major-child', version: '2.0.0', dependencies: { 'major-new-dep': '^1.0.0' } });
    await publishWith(upstreamPublisher, { name: 'major-parent', version: '1.0.0', dependencies: { 'major-child': '^1.0.0' } });
    const gateway = await mirroringGateway('major-gateway');
    try {
      expect((await fetch(gateway.localUrl + '/major-parent')).status).toBe(200);
      // Fetched ahead by now, and waiting to be stored (pull-through stores after a quiet second).
      await new Promise((r) => setTimeout(r, 300));
      // npm reads the child next, and picks 1.0.0 for ^1.0.0: its dependency is what comes ahead.
      expect((await fetch(gateway.localUrl + '/major-child')).status).toBe(200);
      expect((await storedSoon('major-old-dep')).origin).toBe(verdaccio.url);
      await new Promise((r) => setTimeout(r, 1500));
      expect((await mirroredDoc(mirroring, 'major-new-dep')).status).toBe(404);
    } finally {
      await gateway.close();
    }
  });

  it('a dependency fetched ahead brings the tarball its parent\'s range picks, as npm picks it; not for an optional dependency or one for some platforms only', async () => {
    for (const version of ['1.0.0', '1.1.0', '2.0.0']) await publishWith(upstreamPublisher, { name: 'ahead-tgz-child', version });
    await publishWith(upstreamPublisher, { name: 'ahead-tgz-platform', version: '1.0.0', os: ['aix'], cpu: ['ppc64'] });
    await publishWith(upstreamPublisher, { name: 'ahead-tgz-optional', version: '1.0.0' });
    await publishWith(upstreamPublisher, {
      name: 'ahead-tgz-parent', version: '1.0.0',
      dependencies: { 'ahead-tgz-child': '^1.0.0', 'ahead-tgz-platform': '^1.0.0' },
      optionalDependencies: { 'ahead-tgz-optional': '^1.0.0' },
    });
    const gateway = await mirroringGateway('tarballs-ahead-gateway');
    try {
      expect((await fetch(gateway.localUrl + '/ahead-tgz-parent')).status).toBe(200);
      // The latest (2.0.0) is not in the range: the highest version that is.
      const child = await storedSoon('ahead-tgz-child');
      expect(Object.keys(child._attachments || {})).toEqual(['ahead-tgz-child-1.1.0.tgz']);
      for (const name of ['ahead-tgz-platform', 'ahead-tgz-optional', 'ahead-tgz-parent']) expect((await storedSoon(name))._attachments || {}).toEqual({});
      // Served as the upstream has it, from the gateway's memory: stored before anyone asked for it
      // (npm asks for tarballs once it has read the whole tree), it is not read back from CouchDB.
      const reads = await attachmentReads(gateway.localUrl);
      const served = Buffer.from(await (await fetch(gateway.localUrl + '/ahead-tgz-child/-/ahead-tgz-child-1.1.0.tgz')).arrayBuffer());
      expect(sha512(served)).toBe(child.versions['1.1.0'].dist.integrity);
      expect((await attachmentReads(gateway.localUrl)) - reads).toBe(0);
    } finally {
      await gateway.close();
    }
  });

  it('with UPSTREAM_TARBALLS=lazy a dependency fetched ahead comes without a tarball', async () => {
    await publishWith(upstreamPublisher, { name: 'lazy-tgz-child', version: '1.0.0' });
    await publishWith(upstreamPublisher, { name: 'lazy-tgz-parent', version: '1.0.0', dependencies: { 'lazy-tgz-child': '^1.0.0' } });
    const gateway = await mirroringGateway('lazy-tarballs-gateway', { UPSTREAM_TARBALLS: 'lazy' });
    try {
      expect((await fetch(gateway.localUrl + '/lazy-tgz-parent')).status).toBe(200);
      expect((await storedSoon('lazy-tgz-child'))._attachments || {}).toEqual({});
    } finally {
      await gateway.close();
    }
  });

  it('with UPSTREAM_PREFETCH=0 only what the client asks for is pulled through', async () => {
    await publishWith(upstreamPublisher, { name: 'unfetched-child', version: '1.0.0' });
    await publishWith(upstreamPublisher, { name: 'unfetched-parent', version: '1.0.0', dependencies: { 'unfetched-child': '^1.0.0' } });
    const gateway = await mirroringGateway('not-prefetching-gateway', { UPSTREAM_PREFETCH: '0' });
    try {
      expect((await fetch(gateway.localUrl + '/unfetched-parent')).status).toBe(200);
      await storedSoon('unfetched-parent');
      expect((await mirroredDoc(mirroring, 'unfetched-child')).status).toBe(404);
    } finally {
      await gateway.close();
    }
  });
});

describe('redirect mode', () => {
  it('redirects unknown names to the upstream and npm installs from there', async () => {
    const res = await fetch(redirecting.localUrl + '/upstream-only', { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(verdaccio.url + '/upstream-only');
    const client = npmClient(redirecting.url);
    const dir = project(client, 'redirect-app', { 'upstream-only': '1.4.0' });
    expect((await client.npm(['install'], dir)).code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/upstream-only/index.js'), 'utf8')).toContain('upstream-only@1.4.0');
  });
});

describe('foreign packages', () => {
  it('registers a package hosted elsewhere; reads are served from there through this registry and npm installs it', async () => {
    // The upstream has this name too: an admin registers it, for the user `local` to maintain.
    const registered = await proxied.request('PUT', '/hosted-there', {
      token: adminToken,
      body: { name: 'hosted-there', maintainers: ['local'], description: 'lives in Verdaccio', url: verdaccio.url },
    });
    expect(registered.status).toBe(201);
    // Served through, not redirected: a redirect would carry this registry's token to the other one
    // whenever both share a host.
    const res = await fetch(proxied.localUrl + '/hosted-there', { redirect: 'manual' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-registry-upstream')).toBe(verdaccio.url);
    const packument = (await res.json()) as { versions: Record<string, { dist: { tarball: string } }> };
    expect(packument.versions['3.0.0'].dist.tarball).toBe(proxied.url + '/hosted-there/-/hosted-there-3.0.0.tgz');
    const tarball = await fetch(proxied.localUrl + '/hosted-there/-/hosted-there-3.0.0.tgz', { redirect: 'manual' });
    expect(tarball.status).toBe(200);
    expect((await tarball.arrayBuffer()).byteLength).toBeGreaterThan(100);
    const client = npmClient(proxied.url);
    const dir = project(client, 'foreign-app', { 'hosted-there': '^3.0.0' });
    expect((await client.npm(['install'], dir)).code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/hosted-there/index.js'), 'utf8')).toContain('hosted-there@3.0.0');
    // A logged-in user reads it as well: this registry's token never leaves it.
    const view = await npmClient(proxied.url, localToken).npm(['view', 'hosted-there', 'version']);
    expect(view.stderr).toBe('');
    expect(view.stdout.trim()).toBe('3.0.0');
  });

  it('needs name, maintainers and url, and only its maintainers may change it', async () => {
    expect((await proxied.request('PUT', '/foreign-bad', { token: localToken, body: { name: 'foreign-bad', url: verdaccio.url } })).status).toBe(400);
    expect((await proxied.request('PUT', '/foreign-bad', { token: localToken, body: { name: 'foreign-bad', maintainers: ['local'], url: 'ftp://x' } })).status).toBe(400);
    const other = await proxied.signup('other');
    const hijack = await proxied.request('PUT', '/hosted-there', { token: other, body: { name: 'hosted-there', maintainers: ['other'], url: verdaccio.url + '/elsewhere' } });
    expect(hijack.status).toBe(403);
    expect(hijack.body.error).toContain('not a maintainer');
    const publishOver = await npmClient(proxied.url, localToken).npm(['publish'], makePackage(join(proxied.dataDir, 'x'), { name: 'hosted-there', version: '9.0.0' }));
    expect(publishOver.code).not.toBe(0);
    expect(publishOver.stderr).toContain('registered as hosted at');
  });
});

describe('removing a foreign package', () => {
  it('its maintainers remove the entry with npm unpublish --force; the name then stays here and is not forwarded', async () => {
    const registered = await proxied.request('PUT', '/hosted-there-too', { token: localToken, body: { name: 'hosted-there-too', maintainers: ['local'], url: verdaccio.url } });
    expect(registered.status).toBe(201);
    // Verdaccio does not have this name: the read says where it is registered.
    const missing = await proxied.request('GET', '/hosted-there-too');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toContain('registered here as hosted at ' + verdaccio.url);
    const unpublish = await npmClient(proxied.url, localToken).npm(['unpublish', 'hosted-there-too', '--force']);
    expect(unpublish.stderr).not.toContain('ERR');
    expect(unpublish.code).toBe(0);
    expect((await couchGet(proxied, '/' + proxied.registryDb + '/hosted-there-too')).body.url).toBeUndefined();
    const after = await proxied.request('GET', '/hosted-there-too');
    expect(after.status).toBe(404);
    expect(after.body.error).toContain('unpublished');
  });
});

describe('audit and an unreachable upstream', () => {
  it('without an upstream, audit answers with a clear error at once', async () => {
    const plain = await startTestRegistry();
    try {
      const res = await plain.request('POST', '/-/npm/v1/security/advisories/bulk', { body: { 'shared-name': ['5.0.0'] } });
      // 424, as for a name nobody here has: npm, yarn and pnpm retry a 5xx for a minute and more.
      expect(res.status).toBe(424);
      expect(res.body.error).toContain('UPSTREAM_REGISTRY');
    } finally {
      await plain.stop();
    }
  });

  it('when the upstream is down, local packages are served and unknown names fail fast naming it', async () => {
    await verdaccio.stop();
    const started = Date.now();
    const res = await proxied.request('GET', '/never-mirrored');
    expect(Date.now() - started).toBeLessThan(3000);
    // 424, not a 5xx: npm retries a 5xx for 70 s before it says anything.
    expect(res.status).toBe(424);
    expect(res.body.error).toContain(verdaccio.url);
    const npmStarted = Date.now();
    const view = await npmClient(proxied.url).npm(['view', 'never-seen-here']);
    expect(Date.now() - npmStarted).toBeLessThan(8000);
    expect(view.code).not.toBe(0);
    expect(view.stderr).toContain(verdaccio.url);
    const local = await proxied.request('GET', '/shared-name');
    expect(local.status).toBe(200);
    const audit = await proxied.request('POST', '/-/npm/v1/security/advisories/bulk', { body: { 'shared-name': ['5.0.0'] } });
    expect(audit.status).toBe(424);
    expect(audit.body.error).toContain('unreachable');
  });

  it('mirror mode: with the upstream down, mirrored packages still install and a new name fails fast naming it', async () => {
    // A fresh client (empty cache) installs the locked, already mirrored versions: npm ci.
    const client = npmClient(mirroring.url);
    const dir = join(client.home, 'offline-app');
    mkdirSync(dir);
    for (const file of ['package.json', 'package-lock.json']) copyFileSync(join(mirrorAppDir, file), join(dir, file));
    const install = await client.npm(['ci'], dir);
    expect(install.stderr).toBe('');
    expect(install.code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/upstream-only/index.js'), 'utf8')).toContain('upstream-only@1.4.0');
    const started = Date.now();
    const res = await mirroring.request('GET', '/never-mirrored');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(res.status).toBe(424);
    expect(res.body.error).toContain(verdaccio.url);
    expect(res.body.error).toContain('already mirrored are still served');
  });
});
