/**
 * What CouchDB 3.4's replicator asks of a source database, asked exactly as it asks it
 * (`couch_replicator_api_wrap`: `open_revs` with `Accept: multipart/mixed`, `atts_since`, `latest`;
 * `_bulk_get` with `Accept: application/json`), answered by the CouchDB in use (embedded by default,
 * COUCHDB_URL when given): a real CouchDB site pulls from an embedded one with these answers.
 *
 * - `open_revs` as multipart: a document with its attachment bodies is a `multipart/related` part
 *   (its JSON with `"follows": true` attachments, then their bytes, equal to the published tarballs);
 *   `atts_since` leaves out, as stubs, the attachments the caller has; a revision that is not there
 *   is an `application/json; error="true"` part `{"missing": rev}`. `Accept: application/json` still
 *   gets the JSON list.
 * - `_bulk_get` answers `{"results": [...]}` with CouchDB's error shape, and attachments as stubs when
 *   `attachments=false`.
 * - A revision that does not exist, asked with `latest=true`, answers `missing` and freezes nothing
 *   (PouchDB threw inside its read lock, and every later read of the database hung).
 * - Callers who are not members of the database get a refusal and nothing of the document.
 */
import { basic, publishBody, RegistryWithUser, send, startRegistryWithUser } from '../helpers/principals';

let registry: RegistryWithUser;
const run = Math.random().toString(36).slice(2, 8);
const name = 'replicator-reads-' + run;
const tarballs = {
  '1.0.0': Buffer.from('first tarball of ' + name + ' ' + 'a'.repeat(5000)),
  '1.1.0': Buffer.from('second tarball of ' + name + ' ' + 'b'.repeat(7000)),
};
const fileOf = (version: string) => name + '-' + version + '.tgz';
const MISSING = '9-' + 'f'.repeat(32);
let revs: string[] = [];

interface Part {
  headers: Record<string, string>;
  body: Buffer;
}

/** The parts of a multipart body with `boundary`, as CouchDB's own parser splits them; throws when it does not end with the closing delimiter. */
function parts(body: Buffer, boundary: string): Part[] {
  const delimiter = Buffer.from('--' + boundary);
  expect(body.subarray(0, delimiter.length).equals(delimiter)).toBe(true);
  const found: Part[] = [];
  let at = delimiter.length;
  for (;;) {
    if (body.subarray(at, at + 2).toString() === '--') break;
    expect(body.subarray(at, at + 2).toString()).toBe('\r\n');
    const headersEnd = body.indexOf('\r\n\r\n', at + 2);
    const headers: Record<string, string> = {};
    for (const line of body.subarray(at + 2, headersEnd).toString().split('\r\n')) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const end = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headersEnd + 4);
    expect(end).toBeGreaterThan(0);
    found.push({ headers, body: body.subarray(headersEnd + 4, end) });
    at = end + 2 + delimiter.length;
  }
  return found;
}

function boundaryOf(contentType: string): string {
  const match = /boundary="?([^";]+)"?/.exec(contentType);
  expect(match).not.toBeNull();
  return match![1];
}

/** GET as CouchDB's replicator sends it (its query string, in its order, and its Accept). */
async function openRevs(options: { revs: string[]; attsSince?: string[]; accept?: string; auth?: string }): Promise<Response> {
  const query = (options.attsSince ? 'atts_since=' + encodeURIComponent(JSON.stringify(options.attsSince)) + '&' : '') + 'revs=true&open_revs=' + encodeURIComponent(JSON.stringify(options.revs)) + '&latest=true';
  const headers: Record<string, string> = { accept: options.accept || 'multipart/mixed' };
  if (options.auth !== '') headers.authorization = options.auth || registry.admin;
  return fetch(registry.couch + '/' + registry.registryDb + '/' + name + '?' + query, { headers, signal: AbortSignal.timeout(20_000) });
}

beforeAll(async () => {
  registry = await startRegistryWithUser('replicator-reads', {});
  for (const version of ['1.0.0', '1.1.0'] as const) {
    const published = await send(registry.gateway, 'PUT', '/' + name, { body: publishBody(name, version, tarballs[version]), headers: { authorization: 'Bearer ' + registry.token } });
    expect(published.status).toBe(201);
  }
  const doc = await send(registry.couch, 'GET', '/' + registry.registryDb + '/' + name + '?revs=true', { headers: { authorization: registry.admin, accept: 'application/json' } });
  expect(doc.status).toBe(200);
  const history = doc.body._revisions as { start: number; ids: string[] };
  revs = history.ids.map((id, i) => history.start - i + '-' + id);
  expect(revs.length).toBeGreaterThanOrEqual(2);
});

afterAll(async () => {
  await registry?.stop();
});

it('open_revs asked as multipart/mixed: the document with its history and its tarballs as bytes, and a part for the missing revision', async () => {
  const response = await openRevs({ revs: [revs[0], MISSING] });
  expect(response.status).toBe(200);
  const type = response.headers.get('content-type') || '';
  expect(type).toMatch(/^multipart\/mixed;/);
  const body = Buffer.from(await response.arrayBuffer());
  // CouchDB's parser wants the body to end right after the closing delimiter.
  expect(body.subarray(body.length - 2).toString()).toBe('--');
  const [docPart, missingPart, ...rest] = parts(body, boundaryOf(type));
  expect(rest).toEqual([]);

  expect(docPart.headers['content-type']).toMatch(/^multipart\/related;/);
  const [json, ...attachments] = parts(docPart.body, boundaryOf(docPart.headers['content-type']));
  expect(json.headers['content-type']).toBe('application/json');
  const doc = JSON.parse(json.body.toString());
  expect(doc._id).toBe(name);
  expect(doc._rev).toBe(revs[0]);
  expect(doc._revisions.ids.map((id: string, i: number) => doc._revisions.start - i + '-' + id)).toEqual(revs);
  expect(Object.keys(doc.versions).sort()).toEqual(['1.0.0', '1.1.0']);
  // Each attachment follows, in the order the document lists them, with its length; the bytes are the tarball's.
  const files = Object.keys(doc._attachments);
  expect(files.sort()).toEqual([fileOf('1.0.0'), fileOf('1.1.0')].sort());
  expect(attachments).toHaveLength(2);
  Object.keys(doc._attachments).forEach((file, i) => {
    const described = doc._attachments[file];
    expect(described.follows).toBe(true);
    expect(described.stub).toBeUndefined();
    expect(described.digest).toMatch(/^md5-/);
    const version = file.slice(name.length + 1, -'.tgz'.length) as keyof typeof tarballs;
    expect(described.length).toBe(tarballs[version].length);
    expect(attachments[i].headers['content-length']).toBe(String(tarballs[version].length));
    expect(attachments[i].body.equals(tarballs[version])).toBe(true);
  });

  expect(missingPart.headers['content-type']).toBe('application/json; error="true"');
  expect(JSON.parse(missingPart.body.toString())).toEqual({ missing: MISSING });
});

it('open_revs with atts_since: the attachments the caller has are stubs, only the newer tarball is sent', async () => {
  const response = await openRevs({ revs: [revs[0]], attsSince: [revs[1]] });
  expect(response.status).toBe(200);
  const type = response.headers.get('content-type') || '';
  const [docPart, ...rest] = parts(Buffer.from(await response.arrayBuffer()), boundaryOf(type));
  expect(rest).toEqual([]);
  const [json, ...attachments] = parts(docPart.body, boundaryOf(docPart.headers['content-type']));
  const doc = JSON.parse(json.body.toString());
  expect(doc._attachments[fileOf('1.0.0')]).toMatchObject({ stub: true, length: tarballs['1.0.0'].length });
  expect(doc._attachments[fileOf('1.1.0')]).toMatchObject({ follows: true, length: tarballs['1.1.0'].length });
  expect(attachments).toHaveLength(1);
  expect(attachments[0].body.equals(tarballs['1.1.0'])).toBe(true);
});

it('an attachment whose stub was written without revpos (PouchDB stores it so) goes with its bytes and a revpos, never as a stub the caller may not have', async () => {
  const current = await send(registry.couch, 'GET', '/' + registry.registryDb + '/' + name, { headers: { authorization: registry.admin, accept: 'application/json' } });
  const stubs: Record<string, unknown> = {};
  for (const [file, stub] of Object.entries(current.body._attachments as Record<string, { content_type: string; digest: string; length: number }>)) {
    stubs[file] = { content_type: stub.content_type, digest: stub.digest, length: stub.length, stub: true };
  }
  const written = await send(registry.couch, 'PUT', '/' + registry.registryDb + '/' + name, { headers: { authorization: registry.admin }, body: { ...current.body, description: 'rewritten by an admin', _attachments: stubs } });
  expect(written.status).toBe(201);
  const rewritten = written.body.rev as string;
  // The caller has the first publish only (one tarball): the second must come with its bytes.
  const response = await openRevs({ revs: [rewritten], attsSince: [revs[revs.length - 1]] });
  expect(response.status).toBe(200);
  const [docPart] = parts(Buffer.from(await response.arrayBuffer()), boundaryOf(response.headers.get('content-type') || ''));
  const [json] = parts(docPart.body, boundaryOf(docPart.headers['content-type']));
  const doc = JSON.parse(json.body.toString());
  for (const file of Object.keys(doc._attachments)) expect(typeof doc._attachments[file].revpos).toBe('number');
  expect(doc._attachments[fileOf('1.1.0')].follows).toBe(true);
  revs = [rewritten, ...revs];
});

it('open_revs asked as JSON is still answered with the JSON list (PouchDB, the gateway)', async () => {
  const response = await openRevs({ revs: [revs[0], MISSING], accept: 'application/json' });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const list = (await response.json()) as { ok?: { _rev: string; _revisions: unknown; _attachments: Record<string, { stub?: boolean }> }; missing?: string }[];
  expect(list).toHaveLength(2);
  const found = list.find((entry) => entry.ok)!;
  expect(found.ok!._rev).toBe(revs[0]);
  expect(found.ok!._revisions).toBeDefined();
  expect(Object.values(found.ok!._attachments).every((att) => att.stub === true)).toBe(true);
  expect(list.find((entry) => entry.missing)).toEqual({ missing: MISSING });
});

it('_bulk_get as CouchDB\'s replicator sends it: {"results"} with the document (stubs, history) and CouchDB\'s error for a missing revision', async () => {
  const response = await fetch(registry.couch + '/' + registry.registryDb + '/_bulk_get?latest=true&revs=true&attachments=false', {
    method: 'POST',
    headers: { authorization: registry.admin, 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ docs: [{ id: name, rev: revs[0], atts_since: [] }, { id: name, rev: MISSING, atts_since: [] }], latest: true, revs: true, attachments: false }),
    signal: AbortSignal.timeout(20_000),
  });
  expect(response.status).toBe(200);
  const body = (await response.json()) as { results: { id: string; docs: any[] }[] };
  // The replicator matches `{"results": [...]}` as the whole object.
  expect(Object.keys(body)).toEqual(['results']);
  expect(body.results.map((result) => result.id)).toEqual([name, name]);
  const [found, missing] = body.results;
  expect(found.docs).toHaveLength(1);
  expect(found.docs[0].ok._rev).toBe(revs[0]);
  expect(found.docs[0].ok._revisions.start).toBe(Number(revs[0].split('-')[0]));
  expect(Object.values(found.docs[0].ok._attachments as Record<string, { stub?: boolean; data?: string }>).every((att) => att.stub === true && att.data === undefined)).toBe(true);
  expect(missing.docs).toEqual([{ error: { id: name, rev: MISSING, error: 'not_found', reason: 'missing' } }]);
});

it('a revision that does not exist, asked with latest=true, is missing and freezes nothing: the database still answers', async () => {
  const json = await openRevs({ revs: [MISSING], accept: 'application/json' });
  expect(json.status).toBe(200);
  expect(await json.json()).toEqual([{ missing: MISSING }]);
  // CouchDB opens the winning revision for `latest` without `open_revs`, whatever `rev` names.
  const plain = await fetch(registry.couch + '/' + registry.registryDb + '/' + name + '?rev=' + MISSING + '&latest=true', { headers: { authorization: registry.admin, accept: 'application/json' }, signal: AbortSignal.timeout(20_000) });
  expect(plain.status).toBe(200);
  expect(((await plain.json()) as { _rev: string })._rev).toBe(revs[0]);
  // Every kind of read of the database still answers at once.
  const reads = await Promise.all([
    fetch(registry.couch + '/' + registry.registryDb + '/' + name, { headers: { authorization: registry.admin, accept: 'application/json' }, signal: AbortSignal.timeout(5_000) }),
    fetch(registry.couch + '/' + registry.registryDb + '/' + name + '?revs=true', { headers: { authorization: registry.admin, accept: 'application/json' }, signal: AbortSignal.timeout(5_000) }),
    fetch(registry.gateway + '/' + name, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(5_000) }),
  ]);
  expect(reads.map((read) => read.status)).toEqual([200, 200, 200]);
});

it('callers who are not members of the database get a refusal and nothing of the document, whatever they accept', async () => {
  const user = basic(registry.user, 'pw-' + registry.user.split('-').pop());
  for (const [auth, status] of [['', 401], [user, 403]] as const) {
    for (const accept of ['multipart/mixed', 'application/json']) {
      const response = await openRevs({ revs: [revs[0]], accept, auth });
      expect(response.status).toBe(status);
      const text = await response.text();
      expect(JSON.parse(text).error).toBe(status === 401 ? 'unauthorized' : 'forbidden');
      expect(text).not.toContain(name + '-1.0.0');
      expect(text).not.toContain('first tarball');
    }
    const bulk = await fetch(registry.couch + '/' + registry.registryDb + '/_bulk_get?latest=true&revs=true&attachments=false', {
      method: 'POST',
      headers: { ...(auth ? { authorization: auth } : {}), 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ docs: [{ id: name, rev: revs[0] }] }),
    });
    expect(bulk.status).toBe(status);
    expect(await bulk.text()).not.toContain('"_rev"');
  }
});
