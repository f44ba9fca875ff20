/**
 * The compiled design document, run inside the CouchDB in use (embedded by default, COUCHDB_URL when
 * given): validate_doc_update decides on direct writes with proxy authentication (as the gateway
 * writes, with its role; without it a user is no member of the package databases), the views answer,
 * and pushing an unchanged design is a no-op.
 */
import { proxyHeaders } from '../../couchdb/proxy-auth';
import { Couch } from '../../couchdb/client';
import { loadDesignDoc, pushDesign } from '../../server/setup';
import { GATEWAY_ROLE, READER_ROLE } from '../../core/provenance';
import { basicAuthOf, startTestRegistry, TestRegistry } from '../helpers/registry';
import { manifest, tarballOf } from '../unit/fixtures';

let registry: TestRegistry;
let secret: string;

beforeAll(async () => {
  registry = await startTestRegistry();
  secret = registry.proxySecret;
});
afterAll(() => registry.stop());

/** Reads as the admin: the package databases are closed to everyone else. */
const asAdmin = () => ({ authorization: basicAuthOf(registry.adminCouchUrl) });

/**
 * A write as `user` through proxy authentication, with the gateway's role unless other `roles` are
 * given. A cluster's 412 missing_stub (a copy of the document without the previous revision's tarball
 * yet) is tried again, as the gateway does.
 */
async function putAs(user: string | null, doc: Record<string, unknown>, roles: string[] = [GATEWAY_ROLE]) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (user) Object.assign(headers, proxyHeaders(secret, user, roles));
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(registry.couchUrl + '/' + registry.registryDb + '/' + encodeURIComponent(String(doc._id)), {
      method: 'PUT',
      headers,
      body: JSON.stringify(doc),
    });
    const body = (await response.json()) as Record<string, string>;
    if (response.status !== 412 || attempt === 8) return { status: response.status, body };
    await new Promise((resolve) => setTimeout(resolve, 25 * attempt));
  }
}

function newPackage(name: string, version: string, owner: string) {
  const now = new Date().toISOString();
  return {
    _id: name,
    name,
    'dist-tags': { latest: version },
    versions: { [version]: manifest(name, version) },
    time: { created: now, modified: now, [version]: now },
    maintainers: [{ name: owner }],
    origin: registry.registryId,
    _attachments: { [name.split('/').pop() + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarballOf(name, version).toString('base64') } },
  };
}

describe('validate_doc_update inside CouchDB', () => {
  it('refuses anonymous writes with 401 and accepts a publisher who is the maintainer', async () => {
    expect((await putAs(null, newPackage('direct-a', '1.0.0', 'alice'))).status).toBe(401);
    const created = await putAs('alice', newPackage('direct-a', '1.0.0', 'alice'));
    expect(created.status).toBe(201);
  });

  it('refuses a user writing without the gateway (not a member), and a downstream reader (a member), with 403', async () => {
    const direct = await putAs('alice', newPackage('direct-c', '1.0.0', 'alice'), []);
    expect([direct.status, direct.body.error]).toEqual([403, 'forbidden']);
    const reader = await putAs('downstream', newPackage('direct-c', '1.0.0', 'downstream'), [READER_ROLE]);
    expect(reader.status).toBe(403);
    expect(reader.body.reason).toContain('through the registry');
    const stored = await fetch(registry.couchUrl + '/' + registry.registryDb + '/direct-c', { headers: asAdmin() });
    expect(stored.status).toBe(404);
  });

  it('refuses a proxy token made with the wrong secret (the request is anonymous)', async () => {
    const headers = { 'content-type': 'application/json', ...proxyHeaders('not-the-secret', 'alice', ['_admin']) };
    const response = await fetch(registry.couchUrl + '/' + registry.registryDb + '/forged', {
      method: 'PUT', headers, body: JSON.stringify(newPackage('forged', '1.0.0', 'alice')),
    });
    expect(response.status).toBe(401);
  });

  it('refuses a non-maintainer and a changed manifest with 403 and a reason', async () => {
    await putAs('alice', newPackage('direct-b', '1.0.0', 'alice'));
    const current = (await (await fetch(registry.couchUrl + '/' + registry.registryDb + '/direct-b', { headers: asAdmin() })).json()) as Record<string, any>;
    const byBob = await putAs('bob', { ...current, description: 'taken over' });
    expect(byBob.status).toBe(403);
    expect(byBob.body.reason).toContain('not a maintainer');
    const changed = JSON.parse(JSON.stringify(current));
    changed.versions['1.0.0'].scripts = { postinstall: 'curl evil' };
    const byAlice = await putAs('alice', changed);
    expect(byAlice.status).toBe(403);
    expect(byAlice.body.reason).toContain('already published');
    const stored = (await (await fetch(registry.couchUrl + '/' + registry.registryDb + '/direct-b', { headers: asAdmin() })).json()) as Record<string, any>;
    expect(stored._rev).toBe(current._rev);
  });

  it('the gateway\'s writes reach validate_doc_update as the user, not as admin', async () => {
    const couch = new Couch(registry.adminCouchUrl, secret);
    await couch.putAs({ name: 'alice', roles: [] }, registry.registryDb, newPackage('via-gateway', '1.0.0', 'alice'));
    const current = (await couch.db(registry.registryDb).get('via-gateway')) as any;
    // On a cluster, a copy of the document may not have the tarball yet a moment after the write
    // (412 missing_stub): the write is tried again, as the gateway does.
    let refused;
    for (let attempt = 0; attempt < 10; attempt++) {
      refused = await couch.putAs({ name: 'mallory', roles: [] }, registry.registryDb, { ...current, description: 'mine now' }).catch((e) => e);
      if (refused.statusCode !== 412) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(refused.statusCode).toBe(403);
    expect(refused.reason).toContain('not a maintainer');
  });

  it('_design/mirror: replication (the replicator role) cannot replace a local package, not even with new_edits=false', async () => {
    await putAs('alice', newPackage('local-only', '1.0.0', 'alice'));
    const replicator = proxyHeaders(secret, 'registry-replicator', ['registry-replicator']);
    const upstreamCopy = { ...newPackage('local-only', '9.0.0', 'someone'), origin: 'https://elsewhere.example', _attachments: {} };
    const current = (await (await fetch(registry.couchUrl + '/' + registry.registryDb + '/local-only', { headers: asAdmin() })).json()) as Record<string, any>;
    const put = await fetch(registry.couchUrl + '/' + registry.registryDb + '/local-only', {
      method: 'PUT', headers: { 'content-type': 'application/json', ...replicator }, body: JSON.stringify({ ...upstreamCopy, _rev: current._rev }),
    });
    expect(put.status).toBe(403);
    expect(((await put.json()) as { reason: string }).reason).toContain('shadowed');
    // As native replication writes: a revision that wins over the local one.
    const bulk = await fetch(registry.couchUrl + '/' + registry.registryDb + '/_bulk_docs', {
      method: 'POST', headers: { 'content-type': 'application/json', ...replicator },
      body: JSON.stringify({ new_edits: false, docs: [{ ...upstreamCopy, _rev: '99-' + 'f'.repeat(32), _revisions: { start: 99, ids: ['f'.repeat(32)] } }] }),
    });
    const results = (await bulk.json()) as { error?: string }[];
    expect(Array.isArray(results) ? results[0].error : 'none').toBe('forbidden');
    const stored = (await (await fetch(registry.couchUrl + '/' + registry.registryDb + '/local-only', { headers: asAdmin() })).json()) as Record<string, any>;
    expect(stored._rev).toBe(current._rev);
    expect(Object.keys(stored.versions)).toEqual(['1.0.0']);
  });

  it('_design/mirror: replication writes the mirror database, where a local user can change nothing', async () => {
    const mirrorDb = registry.registryDb + '-mirror';
    const replicator = proxyHeaders(secret, 'registry-replicator', ['registry-replicator']);
    const mirrored = { ...newPackage('from-upstream', '1.0.0', 'someone'), origin: 'https://elsewhere.example' };
    const created = await fetch(registry.couchUrl + '/' + mirrorDb + '/from-upstream', {
      method: 'PUT', headers: { 'content-type': 'application/json', ...replicator }, body: JSON.stringify(mirrored),
    });
    expect(created.status).toBe(201);
    const rev = ((await created.json()) as { rev: string }).rev;
    let takeover: Response;
    for (let attempt = 1; ; attempt++) {
      takeover = await fetch(registry.couchUrl + '/' + mirrorDb + '/from-upstream', {
        method: 'PUT', headers: { 'content-type': 'application/json', ...proxyHeaders(secret, 'someone', [GATEWAY_ROLE]) },
        // Without the attachment stubs: a cluster may not have copied the tarball to every shard yet (412).
        body: JSON.stringify({ ...mirrored, _rev: rev, _attachments: undefined, description: 'local change', origin: registry.registryId }),
      });
      // A cluster's copies can be a few milliseconds behind the write just made (409): ask again.
      if (takeover.status !== 409 || attempt >= 10) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(takeover.status).toBe(403);
    expect(((await takeover.json()) as { reason: string }).reason).toContain('private scope');
    // The mirror database has the views, without the publishing rules.
    const view = (await (await fetch(registry.couchUrl + '/' + mirrorDb + '/_design/app/_view/byOrigin?key=%22https%3A%2F%2Felsewhere.example%22', { headers: asAdmin() })).json()) as { rows: { id: string }[] };
    expect(view.rows.map((r) => r.id)).toEqual(['from-upstream']);
  });

  it('a validate_doc_update written, changed (in a _bulk_docs) or deleted decides the very next write', async () => {
    const mirrorDb = registry.registryDb + '-mirror';
    const admin = { 'content-type': 'application/json', ...asAdmin() };
    const replicator = { 'content-type': 'application/json', ...proxyHeaders(secret, 'registry-replicator', ['registry-replicator']) };
    const guard = (field: string) => ({ _id: '_design/test-guard', validate_doc_update: 'function (newDoc) { if (newDoc.' + field + ') throw({ forbidden: "blocked by the test guard (' + field + ')" }); }' });
    let n = 0;
    /** The status of a replicator's write of a new mirrored package with `fields`. */
    const write = async (fields: Record<string, unknown>) => {
      const doc = { ...newPackage('guarded-' + ++n, '1.0.0', 'someone'), origin: 'https://elsewhere.example', _attachments: {}, ...fields };
      return (await fetch(registry.couchUrl + '/' + mirrorDb + '/' + doc._id, { method: 'PUT', headers: replicator, body: JSON.stringify(doc) })).status;
    };
    const put = await fetch(registry.couchUrl + '/' + mirrorDb + '/_design/test-guard', { method: 'PUT', headers: admin, body: JSON.stringify(guard('first')) });
    expect(put.status).toBe(201);
    expect(await write({ first: true })).toBe(403);
    expect(await write({ second: true })).toBe(201);
    const rev = ((await put.json()) as { rev: string }).rev;
    const bulk = await fetch(registry.couchUrl + '/' + mirrorDb + '/_bulk_docs', { method: 'POST', headers: admin, body: JSON.stringify({ docs: [{ ...guard('second'), _rev: rev }] }) });
    const changed = ((await bulk.json()) as { rev: string }[])[0].rev;
    expect(await write({ first: true })).toBe(201);
    expect(await write({ second: true })).toBe(403);
    const removed = await fetch(registry.couchUrl + '/' + mirrorDb + '/_design/test-guard?rev=' + changed, { method: 'DELETE', headers: admin });
    expect(removed.status).toBe(200);
    expect(await write({ second: true })).toBe(201);
  });

  it('_all_docs with keys: a live, a deleted, a missing and a conflicted document, in the order asked (repeats too), with the winning revision', async () => {
    const mirrorDb = registry.registryDb + '-mirror';
    const admin = { 'content-type': 'application/json', ...asAdmin() };
    const post = async (path: string, body: unknown) => (await fetch(registry.couchUrl + '/' + mirrorDb + path, { method: 'POST', headers: admin, body: JSON.stringify(body) })).json() as Promise<any>;
    const doc = (id: string) => ({ ...newPackage(id, '1.0.0', 'someone'), origin: 'https://elsewhere.example', _attachments: {} });
    const [live, gone] = (await post('/_bulk_docs', { docs: [doc('keyed-live'), doc('keyed-gone')] })) as { rev: string }[];
    const [deleted] = (await post('/_bulk_docs', { docs: [{ _id: 'keyed-gone', _rev: gone.rev, _deleted: true }] })) as { rev: string }[];
    const a = 'a'.repeat(32);
    const b = 'b'.repeat(32);
    const c = 'c'.repeat(32);
    // Two branches: 2-b… (live) wins over 1-c… (live) by length, and over 3-… (deleted) by being live.
    await post('/_bulk_docs', {
      new_edits: false,
      docs: [
        { ...doc('keyed-conflict'), _rev: '2-' + b, _revisions: { start: 2, ids: [b, a] } },
        { ...doc('keyed-conflict'), _rev: '1-' + c, _revisions: { start: 1, ids: [c] } },
        { _id: 'keyed-conflict', _deleted: true, _rev: '3-' + c, _revisions: { start: 3, ids: [c, 'd'.repeat(32), a] } },
      ],
    });
    const answer = await post('/_all_docs', { keys: ['keyed-live', 'keyed-gone', 'keyed-missing', 'keyed-conflict', 'keyed-live'] });
    expect(answer.rows).toMatchObject([
      { id: 'keyed-live', key: 'keyed-live', value: { rev: live.rev } },
      { id: 'keyed-gone', key: 'keyed-gone', value: { rev: deleted.rev, deleted: true } },
      { key: 'keyed-missing', error: 'not_found' },
      { id: 'keyed-conflict', key: 'keyed-conflict', value: { rev: '2-' + b } },
      { id: 'keyed-live', key: 'keyed-live', value: { rev: live.rev } },
    ]);
    expect(answer.rows[0].value.deleted).toBeUndefined();
    expect(typeof answer.total_rows).toBe('number');
  });

  it('answers the views, and a design push without changes does nothing', async () => {
    await putAs('carol', newPackage('@carol/views', '1.0.0', 'carol'));
    const response = await fetch(registry.couchUrl + '/' + registry.registryDb + '/_design/app/_view/byMaintainer?key=%22carol%22', { headers: asAdmin() });
    const view = (await response.json()) as { rows: { value: string }[] };
    expect(view.rows.map((r) => r.value)).toEqual(['@carol/views']);
    const couch = new Couch(registry.adminCouchUrl, secret);
    expect(await pushDesign(couch, registry.registryDb, loadDesignDoc())).toBe(false);
  });

  it('replaces a changed design through a staging copy, leaving no staging document behind', async () => {
    const couch = new Couch(registry.adminCouchUrl, secret);
    const design = loadDesignDoc();
    const changed = { ...design, build_hash: design.build_hash + '-changed', views: { ...design.views, extra: { map: 'function (doc) { emit(doc._id, null); }' } } };
    expect(await pushDesign(couch, registry.registryDb, changed)).toBe(true);
    const staging = await fetch(registry.couchUrl + '/' + registry.registryDb + '/_design/app-staging', { headers: asAdmin() });
    expect(staging.status).toBe(404);
    const live = (await couch.db(registry.registryDb).get('_design/app')) as any;
    expect(Object.keys(live.views)).toContain('extra');
    expect(await pushDesign(couch, registry.registryDb, design)).toBe(true);
  });
});
