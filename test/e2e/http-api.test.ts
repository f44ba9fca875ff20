/**
 * The npm HTTP API where the CLI has no command to show it: ping, packument shapes, versions and tags,
 * caching headers, the configured public URL, closed sign-up, and the CouchDB side (Fauxton, no admin
 * party, _security).
 */
import { sha1, sha512 } from '../helpers/npm';
import { basicAuthOf, couchGet, startTestRegistry, TestRegistry } from '../helpers/registry';

function publishBody(name: string, version: string, tarball: Buffer, tags: Record<string, string> = { latest: version }) {
  return {
    _id: name, name, 'dist-tags': tags, readme: '# ' + name,
    versions: { [version]: { name, version, description: 'about ' + name, dependencies: { a: '1' }, scripts: { test: 'x' }, dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'x' } } },
    _attachments: { [name.split('/').pop() + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
  };
}

describe('with the default configuration', () => {
  let registry: TestRegistry;
  let token: string;
  const tarball = Buffer.from('the tarball bytes of @web/api 1.0.0');

  beforeAll(async () => {
    registry = await startTestRegistry();
    token = await registry.signup('alice');
    expect((await registry.request('PUT', '/@web%2fapi', { token, body: publishBody('@web/api', '1.0.0', tarball) })).status).toBe(201);
    expect((await registry.request('PUT', '/@web%2fapi', { token, body: publishBody('@web/api', '1.1.0-rc.1', Buffer.from('rc'), { next: '1.1.0-rc.1' }) })).status).toBe(201);
  });
  afterAll(() => registry.stop());

  it('answers the ping', async () => {
    expect((await registry.request('GET', '/-/ping')).status).toBe(200);
  });

  it('serves the full packument with time for every version, and 304 for a matching ETag', async () => {
    const full = await registry.request('GET', '/@web%2fapi');
    expect(full.status).toBe(200);
    expect(full.body.readme).toBe('# @web/api');
    expect(Object.keys(full.body.time)).toEqual(expect.arrayContaining(['created', 'modified', '1.0.0', '1.1.0-rc.1']));
    expect(full.body._attachments).toBeUndefined();
    const etag = full.headers.get('etag') as string;
    expect(etag).toBeTruthy();
    const again = await registry.request('GET', '/@web/api', { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
  });

  it('serves the abbreviated packument to installers', async () => {
    const corgi = await registry.request('GET', '/@web%2fapi', { headers: { accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*' } });
    expect(corgi.headers.get('content-type')).toContain('application/vnd.npm.install-v1+json');
    expect(corgi.body['dist-tags']).toEqual({ latest: '1.0.0', next: '1.1.0-rc.1' });
    expect(corgi.body.versions['1.0.0'].dependencies).toEqual({ a: '1' });
    expect(corgi.body.versions['1.0.0'].scripts).toBeUndefined();
    expect(corgi.body.readme).toBeUndefined();
    expect(corgi.headers.get('etag')).not.toBe((await registry.request('GET', '/@web%2fapi')).headers.get('etag'));
  });

  it('serves one version by number or by tag, and 404 with the known versions otherwise', async () => {
    expect((await registry.request('GET', '/@web%2fapi/1.0.0')).body.version).toBe('1.0.0');
    expect((await registry.request('GET', '/@web/api/next')).body.version).toBe('1.1.0-rc.1');
    expect((await registry.request('GET', '/@web/api/latest')).body.dist.tarball).toBe(registry.url + '/@web/api/-/api-1.0.0.tgz');
    const missing = await registry.request('GET', '/@web/api/3.0.0');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toContain('1.0.0, 1.1.0-rc.1');
  });

  it('streams tarballs byte for byte, immutable, with 304 for a matching ETag', async () => {
    const response = await fetch(registry.url + '/@web/api/-/api-1.0.0.tgz');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/octet-stream');
    expect(Buffer.from(await response.arrayBuffer()).equals(tarball)).toBe(true);
    const etag = response.headers.get('etag') as string;
    const cached = await fetch(registry.url + '/@web/api/-/api-1.0.0.tgz', { headers: { 'if-none-match': etag } });
    expect(cached.status).toBe(304);
  });

  it('the CouchDB: Fauxton is served, an admin is required, the registry database is closed to anonymous callers', async () => {
    const fauxton = await fetch(registry.fauxtonUrl);
    expect(fauxton.status).toBe(200);
    expect(await fauxton.text()).toContain('Fauxton');
    const anonymousCreate = await fetch(registry.couchUrl + '/made-by-anyone', { method: 'PUT' });
    expect(anonymousCreate.status).toBe(401);
    const security = await couchGet(registry, '/' + registry.registryDb + '/_security');
    expect(security.body.admins.roles).toEqual(['_admin']);
    expect(security.body.members.roles).toEqual(expect.arrayContaining(['registry-gateway', 'registry-replicator', 'registry-reader']));
    expect((await fetch(registry.couchUrl + '/' + registry.registryDb + '/' + encodeURIComponent('@web/api'))).status).toBe(401);
    const tokens = await fetch(registry.couchUrl + '/' + registry.registryDb + '-tokens/_all_docs');
    expect(tokens.status).toBeGreaterThanOrEqual(401);
  });

  it('stores tokens only as hashes', async () => {
    const all = await couchGet(registry, '/' + registry.registryDb + '-tokens/_all_docs?include_docs=true');
    const text = JSON.stringify(all.body);
    const tokens = all.body.rows.filter((row: { doc: { type?: string } }) => row.doc.type === 'token');
    expect(tokens.length).toBeGreaterThan(0);
    expect(text).not.toContain(token);
    for (const row of tokens) expect(row.id).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('configured', () => {
  let registry: TestRegistry;
  beforeAll(async () => {
    registry = await startTestRegistry({ REGISTRY_PUBLIC_URL: 'https://npm.example.test/', REGISTRY_SIGNUP: 'closed' });
  });
  afterAll(() => registry.stop());

  it('REGISTRY_SIGNUP=closed refuses new accounts with 403, and lets an admin create them', async () => {
    const refused = await registry.request('PUT', '/-/user/org.couchdb.user:eve', { body: { name: 'eve', password: 'eve-password' } });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toContain('ask an administrator');
    const direct = await fetch(registry.couchUrl + '/_users/org.couchdb.user:eve', {
      method: 'PUT', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ _id: 'org.couchdb.user:eve', name: 'eve', password: 'eve-password', type: 'user', roles: [] }),
    });
    expect(direct.status).toBeGreaterThanOrEqual(400);
    const admin = basicAuthOf(registry.adminCouchUrl);
    const created = await registry.request('PUT', '/-/user/org.couchdb.user:dave', {
      body: { name: 'dave', password: 'dave-password', email: 'dave@example.com' },
      headers: { authorization: admin },
    });
    expect(created.status).toBe(201);
    const login = await registry.request('PUT', '/-/user/org.couchdb.user:dave', { body: { name: 'dave', password: 'dave-password' } });
    expect(login.status).toBe(201);
    expect(login.body.token).toMatch(/^cnr_/);
  });

  it('REGISTRY_PUBLIC_URL is the base of tarball URLs', async () => {
    const token = (await registry.request('PUT', '/-/user/org.couchdb.user:dave', { body: { name: 'dave', password: 'dave-password' } })).body.token;
    expect((await registry.request('PUT', '/pub', { token, body: publishBody('pub', '1.0.0', Buffer.from('p')) })).status).toBe(201);
    const doc = await registry.request('GET', '/pub');
    expect(doc.body.versions['1.0.0'].dist.tarball).toBe('https://npm.example.test/pub/-/pub-1.0.0.tgz');
  });
});
