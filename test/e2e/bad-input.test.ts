/**
 * Hostile and broken requests: each gets a clear 4xx with a JSON `error`, and the stored data is
 * exactly what it was before.
 */
import { sha1, sha512 } from '../helpers/npm';
import { couchGet, startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';

let registry: TestRegistry;
let alice: string;

function publishBody(name: string, version: string, tarball: Buffer, overrides: Record<string, unknown> = {}) {
  return {
    _id: name,
    name,
    'dist-tags': { latest: version },
    versions: { [version]: { name, version, dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'http://x/' + name } } },
    _attachments: { [name.split('/').pop() + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
    ...overrides,
  };
}

const stored = (name: string) => storedDoc(registry, name);

beforeAll(async () => {
  registry = await startTestRegistry({ MAX_PUBLISH_BYTES: String(256 * 1024) });
  alice = await registry.signup('alice');
  const ok = await registry.request('PUT', '/victim', { token: alice, body: publishBody('victim', '1.0.0', Buffer.from('good tarball')) });
  expect(ok.status).toBe(201);
});
afterAll(() => registry.stop());

describe('bad input leaves the registry unchanged', () => {
  let before: { status: number; body: any };
  beforeEach(async () => {
    before = await stored('victim');
  });
  afterEach(async () => {
    expect(await stored('victim')).toEqual(before);
  });

  it('malformed JSON → 400', async () => {
    const res = await registry.request('PUT', '/victim', { token: alice, raw: '{"name": "victim", "versions": {' });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(/not valid JSON/);
  });

  it('a body that is not an object, or has no versions → 400', async () => {
    for (const body of [[1, 2], 'text', { name: 'victim' }, { name: 'victim', versions: {}, _attachments: {} }]) {
      const res = await registry.request('PUT', '/victim', { token: alice, body });
      expect(res.status).toBe(400);
      expect(typeof res.body.error).toBe('string');
    }
  });

  it('a tarball that does not match its integrity → 400 naming the problem', async () => {
    const body = publishBody('victim', '1.1.0', Buffer.from('real bytes'));
    (body._attachments as any)['victim-1.1.0.tgz'].data = Buffer.from('other bytes').toString('base64');
    (body._attachments as any)['victim-1.1.0.tgz'].length = 11;
    const res = await registry.request('PUT', '/victim', { token: alice, body });
    expect(res.status).toBe(400);
    expect(res.body.error).toContain('does not match its "dist.integrity"');
  });

  it('a wrong shasum with a right integrity → 400', async () => {
    const body = publishBody('victim', '1.1.0', Buffer.from('real bytes'));
    (body.versions as any)['1.1.0'].dist.shasum = 'f'.repeat(40);
    const res = await registry.request('PUT', '/victim', { token: alice, body });
    expect(res.status).toBe(400);
    expect(res.body.error).toContain('dist.shasum');
  });

  it('a missing attachment → 400', async () => {
    const res = await registry.request('PUT', '/victim', { token: alice, body: publishBody('victim', '1.1.0', Buffer.from('x'), { _attachments: { 'other-1.1.0.tgz': { data: 'eA==' } } }) });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatch(/missing/);
  });

  it('a body for another package than the URL → 400', async () => {
    const res = await registry.request('PUT', '/victim', { token: alice, body: publishBody('other', '1.0.0', Buffer.from('x')) });
    expect(res.status).toBe(400);
  });

  it('a huge body → 413 with the limit', async () => {
    const big = Buffer.alloc(400 * 1024, 7);
    const res = await registry.request('PUT', '/victim', { token: alice, body: publishBody('victim', '1.1.0', big) });
    expect(res.status).toBe(413);
    expect(res.body.error).toMatch(/MAX_PUBLISH_BYTES/);
  });

  it('an invalid version or dist-tag → 400', async () => {
    const badVersion = publishBody('victim', '1.1', Buffer.from('v'));
    expect((await registry.request('PUT', '/victim', { token: alice, body: badVersion })).status).toBe(400);
    const badTag = await registry.request('PUT', '/-/package/victim/dist-tags/1.x', { token: alice, body: '1.0.0' });
    expect(badTag.status).toBe(400);
    const missing = await registry.request('PUT', '/-/package/victim/dist-tags/next', { token: alice, body: '7.7.7' });
    expect(missing.status).toBe(400);
  });

  it('anonymous and bad-token writes → 401', async () => {
    expect((await registry.request('PUT', '/victim', { body: publishBody('victim', '1.1.0', Buffer.from('v')) })).status).toBe(401);
    expect((await registry.request('PUT', '/victim', { token: 'cnr_forged', body: publishBody('victim', '1.1.0', Buffer.from('v')) })).status).toBe(401);
  });

  it('a stale revision → 409', async () => {
    const res = await registry.request('PUT', '/victim/-rev/1-0000', { token: alice, body: { _id: 'victim', _rev: '1-0000', maintainers: [{ name: 'mallory' }] } });
    expect(res.status).toBe(409);
  });
});

describe('invalid names and path traversal', () => {
  it.each([
    ['/..%2f..%2fetc%2fpasswd', 'PUT'],
    ['/%2e%2e', 'PUT'],
    ['/.hidden', 'PUT'],
    ['/Upper-Case', 'PUT'],
    ['/has%20space', 'PUT'],
    ['/%E0%A4%A', 'GET'],
  ])('%s (%s) → 4xx with an error, nothing stored', async (path, method) => {
    const name = (() => { try { return decodeURIComponent(path.slice(1)); } catch { return 'x'; } })();
    const res = await registry.request(method, path, { token: alice, body: method === 'PUT' ? publishBody(name, '1.0.0', Buffer.from('t')) : undefined });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(typeof res.body.error).toBe('string');
    const all = await couchGet(registry, '/' + registry.registryDb + '/_all_docs');
    expect(all.body.rows.map((r: { id: string }) => r.id).filter((id: string) => !id.startsWith('_design/'))).toEqual(['victim']);
  });

  it('a tarball path outside the package → 404', async () => {
    for (const path of ['/victim/-/..%2f..%2f_users', '/victim/-/.secret.tgz', '/victim/-/victim-9.9.9.tgz']) {
      const res = await registry.request('GET', path);
      expect(res.status).toBe(404);
      expect(typeof res.body.error).toBe('string');
    }
  });
});
