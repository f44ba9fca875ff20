/**
 * Revisions of documents on the embedded server, read as CouchDB 3.4 serves them to replicators:
 * `GET /{db}/{id}?open_revs=…` and `POST /{db}/_bulk_get`. express-pouchdb answers both in ways a
 * CouchDB replicator cannot use, and one of them freezes a database:
 *
 * - CouchDB's replicator asks `open_revs` with `Accept: multipart/mixed` and parses only a multipart
 *   answer (`couch_replicator_api_wrap:open_doc_revs`): one part per revision, `application/json`
 *   for a document without attachment bodies, `multipart/related` (the document with
 *   `"follows": true` attachments, then their bytes) for one with them, and
 *   `application/json; error="true"` holding `{"missing": rev}`. express-pouchdb answers JSON, so a
 *   real CouchDB could not pull from this server. Multipart goes to whoever accepts it as CouchDB
 *   decides (mochiweb's `accepts_content_type`: `multipart/mixed`, `multipart/*` or `*\/*`, and no
 *   Accept at all); `Accept: application/json` gets CouchDB's JSON list, as before.
 * - PouchDB resolves `latest=true` by throwing when the revision is not in the document's tree, inside
 *   LevelDB's read lock: the lock is never released and every later read of that database hangs
 *   (one `_bulk_get` or `open_revs` request of a member for a revision that does not exist froze the
 *   registry database). Leaves are resolved here from the revision tree instead; a plain
 *   `GET ?rev=…&latest=true` opens the winning revision, as CouchDB does.
 * - express-pouchdb's `_bulk_get` takes query options as strings (`attachments=false` is true) and
 *   answers errors in a shape CouchDB's replicator does not read; this one answers as CouchDB does
 *   (`{"results": [{"id", "docs": [{"ok": doc} | {"error": {id, rev, error, reason}}]}]}`).
 *
 * Attachment bodies are read one at a time from LevelDB by their stubs and written as they are read
 * (waiting when the client is slower); `atts_since` leaves out, as stubs, those the caller already
 * has. The caller was authorized before (`authorization.ts`), exactly as for express-pouchdb's
 * answer; a database express-pouchdb does not know goes on to it (404).
 */
import { randomBytes } from 'crypto';
import express from 'express';

/** What a stored document says of one of its attachments (PouchDB's stub). */
interface Stub {
  content_type: string;
  digest: string;
  length?: number;
  revpos?: number;
  stub?: boolean;
  data?: string;
  follows?: boolean;
}

type Doc = Record<string, unknown> & { _id: string; _rev: string; _revisions?: { start: number; ids: string[] }; _attachments?: Record<string, Stub> };

/** PouchDB's revision tree: nodes `[hash, options, children]` from a root at `pos`. */
export type TreeNode = [string, unknown, TreeNode[]];
export interface TreeRoot {
  pos: number;
  ids: TreeNode;
}

/** The revision tree of document `id` (the adapter's own read: the database must be open), or null when there is no such document. */
export function revisionTree(db: Pick<RevisionsDb, '_getRevisionTree'>, id: string): Promise<TreeRoot[] | null> {
  return new Promise((resolve, reject) =>
    db._getRevisionTree(id, (err, tree) => {
      if (!err) return resolve(tree || []);
      if ((err as { status?: number }).status === 404) return resolve(null);
      reject(err);
    }),
  );
}

/** The winning revision of a revision tree and whether it is deleted, as PouchDB (and CouchDB) pick it; null for an empty tree. */
export function winningRevision(tree: TreeRoot[]): { rev: string; deleted: boolean } | null {
  let best: { pos: number; hash: string; deleted: boolean } | null = null;
  const toVisit: { pos: number; node: TreeNode }[] = tree.map((root) => ({ pos: root.pos, node: root.ids }));
  for (let next = toVisit.pop(); next; next = toVisit.pop()) {
    const [hash, options, children] = next.node;
    if (children.length) {
      for (const child of children) toVisit.push({ pos: next.pos + 1, node: child });
      continue;
    }
    const deleted = !!(options as { deleted?: boolean } | null)?.deleted;
    // Live before deleted, then the longest, then the highest hash.
    if (!best || (best.deleted !== deleted ? best.deleted : best.pos !== next.pos ? best.pos < next.pos : best.hash < hash)) best = { pos: next.pos, hash, deleted };
  }
  return best ? { rev: best.pos + '-' + best.hash, deleted: best.deleted } : null;
}

/** A PouchDB database, as far as reading revisions goes (the adapter's own reads: after the database is open). */
export interface RevisionsDb {
  info(): Promise<unknown>;
  get(id: string, options: { rev: string; revs: boolean }): Promise<Doc>;
  _getRevisionTree(id: string, callback: (err: unknown, tree?: TreeRoot[]) => void): void;
  _getAttachment(id: string, file: string, stub: Stub, options: { binary: true }, callback: (err: unknown, data?: Buffer) => void): void;
}

export interface RevisionsPouch {
  new (name: string): RevisionsDb;
  allDbs(): Promise<string[]>;
  __dbCacheMap?: Map<string, unknown>;
}

/** One revision read: the document, or a revision that is not here. */
type Outcome = { ok: Doc } | { missing: string };

/** The most revisions one request may name (`open_revs`, `_bulk_get`'s documents): CouchDB's replicator sends a handful. */
const MAX_REVISIONS = 10_000;

const REV = /^[1-9][0-9]*-[^\s]+$/;

/** Documents of one `_bulk_get` read at once. */
const BULK_GET_CONCURRENCY = 6;

class BadRequest extends Error {}

/** CouchDB's error document, as CouchDB sends it. */
function refuse(res: express.Response, status: number, error: string, reason: string): void {
  res.status(status).type('application/json').send(JSON.stringify({ error, reason }) + '\n');
}

/**
 * Whether a request with this `Accept` takes `multipart/mixed`, as CouchDB decides it (mochiweb's
 * `accepts_content_type`; no header counts as `*\/*`, an unreadable one as no).
 */
export function acceptsMultipartMixed(accept: string | undefined): boolean {
  const entries: { type: string; q: number }[] = [];
  for (const raw of (accept === undefined ? '*/*' : accept).split(',')) {
    const [type, ...params] = raw.split(';').map((part) => part.trim().toLowerCase());
    if (!type) continue;
    let q = 1;
    for (const param of params) {
      const [key, value] = param.split('=').map((part) => part.trim());
      if (key !== 'q') continue;
      if (!/^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(value || '')) return false;
      q = Number(value);
    }
    entries.push({ type, q });
  }
  const refused = entries.some((entry) => entry.q === 0 && (entry.type === 'multipart/mixed' || entry.type === 'multipart/*'));
  return !refused && entries.some((entry) => entry.q > 0 && (entry.type === '*/*' || entry.type === 'multipart/mixed' || entry.type === 'multipart/*'));
}

/** A query option as CouchDB reads it: `true` only for the string (or JSON) true. */
const isTrue = (value: unknown): boolean => value === true || value === 'true';

/** A JSON list of revisions (`open_revs`, `atts_since`), or a 400. */
function revisionList(value: unknown, what: string): string[] {
  let list: unknown = value;
  if (typeof value === 'string') {
    try {
      list = JSON.parse(value);
    } catch {
      throw new BadRequest(what + ' must be a JSON list of revisions.');
    }
  }
  if (!Array.isArray(list)) throw new BadRequest(what + ' must be a JSON list of revisions.');
  if (list.length > MAX_REVISIONS) throw new BadRequest(what + ' names more than ' + MAX_REVISIONS + ' revisions.');
  for (const rev of list) if (typeof rev !== 'string' || !REV.test(rev)) throw new BadRequest('Invalid rev format: ' + JSON.stringify(rev).slice(0, 100) + ' in ' + what + '.');
  return list as string[];
}

/** Every leaf of the tree, with the revisions on the way to it (root first). */
function leavesOf(tree: TreeRoot[]): { rev: string; path: string[] }[] {
  const leaves: { rev: string; path: string[] }[] = [];
  const stack: { pos: number; node: TreeNode; path: string[] }[] = tree.map((root) => ({ pos: root.pos, node: root.ids, path: [] }));
  while (stack.length) {
    const { pos, node, path } = stack.pop()!;
    const rev = pos + '-' + node[0];
    const here = [...path, rev];
    if (!node[2].length) leaves.push({ rev, path: here });
    for (const child of node[2]) stack.push({ pos: pos + 1, node: child, path: here });
  }
  return leaves;
}

/**
 * The revisions to read for `asked`: itself when it is in the tree; with `latest`, the leaves that
 * descend from it (itself when it is one). Empty when it is not in the tree.
 */
function revisionsFor(asked: string, leaves: { rev: string; path: string[] }[], latest: boolean): string[] {
  const below = leaves.filter((leaf) => leaf.path.includes(asked));
  if (!below.length) return [];
  return latest ? below.map((leaf) => leaf.rev) : [asked];
}

/**
 * The position of the newest revision of `doc`'s history that the caller has (`atts_since`), 0 when
 * none: attachments added after it are sent, the others are stubs (CouchDB's `find_ancestor_rev_pos`).
 */
function knownAncestor(doc: Doc, attsSince: string[]): { pos: number; rev: string } | null {
  const history = doc._revisions;
  if (!history || !attsSince.length) return null;
  const known = new Set(attsSince);
  for (let i = 0; i < history.ids.length; i++) {
    const rev = history.start - i + '-' + history.ids[i];
    if (known.has(rev)) return { pos: history.start - i, rev };
  }
  return null;
}

/** Reads revisions of one database, and writes them as CouchDB does. */
class Reader {
  constructor(private readonly db: RevisionsDb) {}

  /** The outcomes of reading `asked` (`all`: every leaf) of `id`, one per revision found, in the order asked. */
  async read(id: string, asked: string[] | 'all', latest: boolean, revs: boolean): Promise<Outcome[] | null> {
    const tree = await revisionTree(this.db, id);
    if (!tree) return asked === 'all' ? null : asked.map((rev) => ({ missing: rev }));
    const leaves = leavesOf(tree);
    const outcomes: Outcome[] = [];
    const seen = new Set<string>();
    for (const rev of asked === 'all' ? leaves.map((leaf) => leaf.rev) : asked) {
      const found = revisionsFor(rev, leaves, latest);
      if (!found.length) outcomes.push({ missing: rev });
      for (const one of found) {
        if (seen.has(one)) continue;
        seen.add(one);
        try {
          const doc = await this.db.get(id, { rev: one, revs: true });
          // The history is needed for `atts_since` (`shape`), which takes it off when it was not asked for.
          if (!revs) Object.defineProperty(doc, '_revisions', { value: doc._revisions, enumerable: false, configurable: true, writable: true });
          outcomes.push({ ok: doc });
        } catch (err) {
          if ((err as { status?: number }).status !== 404) throw err;
          // A revision whose body is gone (compacted).
          outcomes.push({ missing: one });
        }
      }
    }
    return outcomes;
  }

  /** The bytes of one attachment, by its stub. */
  attachment(id: string, name: string, stub: Stub): Promise<Buffer> {
    return new Promise((resolve, reject) =>
      this.db._getAttachment(id, name, stub, { binary: true }, (err, data) => (err ? reject(err) : resolve(data || Buffer.alloc(0)))),
    );
  }

  /**
   * `doc`'s attachments as they are sent: bodies for those added after what the caller has
   * (`attsSince`), as `follows` (multipart) or inline base64 `data`; stubs for the others. `withData`
   * false: stubs only. Returns the names whose bodies go along.
   */
  async shape(doc: Doc, withData: boolean, attsSince: string[], follows: boolean): Promise<string[]> {
    const attachments = doc._attachments;
    if (!attachments) return [];
    const ancestor = knownAncestor(doc, attsSince);
    const since = ancestor ? ancestor.pos : 0;
    // What the caller's revision holds: a stub it cannot find there would make CouchDB's replicator
    // fail the document (missing_stub) again and again. PouchDB can keep an attachment that a merge
    // carried over from another branch with that branch's revpos, older than the ancestor the caller
    // has on this one; its body is sent then.
    const held = ancestor && withData ? await this.db.get(doc._id, { rev: ancestor.rev, revs: false }).then((old) => old._attachments || {}, () => null) : null;
    const sent: string[] = [];
    const inline: Promise<void>[] = [];
    for (const name of Object.keys(attachments)) {
      const stub = attachments[name];
      // An attachment stored without revpos (PouchDB keeps a stub as it was written) counts as added
      // by this revision: CouchDB needs one, and must not be sent a stub it may not have.
      const revpos = stub.revpos || (doc._revisions ? doc._revisions.start : parseInt(String(doc._rev), 10)) || 1;
      const base = { content_type: stub.content_type, revpos, digest: stub.digest };
      const callerHasIt = !!stub.revpos && stub.revpos <= since && (!held || (!!held[name] && held[name].digest === stub.digest));
      if (!withData || callerHasIt) {
        attachments[name] = { ...base, length: stub.length, stub: true };
      } else if (follows) {
        attachments[name] = { ...base, length: stub.length, follows: true };
        // The stub is kept aside for reading the bytes (its digest names them).
        Object.defineProperty(attachments[name], 'source', { value: stub, enumerable: false });
        sent.push(name);
      } else {
        // Inline bodies are all in the answer anyway: read at once.
        inline.push(this.attachment(doc._id, name, stub).then((data) => void (attachments[name] = { ...base, data: data.toString('base64') })));
      }
    }
    await Promise.all(inline);
    return sent;
  }
}

/** Writes `chunk`, waiting until the client took it when its buffer is full; false when the client left. */
function write(res: express.Response, chunk: string | Buffer): Promise<boolean> {
  if (res.destroyed || res.writableEnded) return Promise.resolve(false);
  if (res.write(chunk)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      res.off('drain', drained);
      res.off('close', closed);
      resolve(ok);
    };
    const drained = () => done(true);
    const closed = () => done(false);
    res.on('drain', drained);
    res.on('close', closed);
  });
}

const boundary = () => randomBytes(16).toString('hex');

/**
 * `open_revs` as `multipart/mixed`, byte for byte in the shape of CouchDB 3.4's `send_docs_multipart`
 * (`--B`, then each part followed by `\r\n--B`, then `--`), which its replicator's parser expects.
 */
async function sendMultipart(res: express.Response, reader: Reader, outcomes: Outcome[], attsSince: string[]): Promise<void> {
  const outer = boundary();
  res.status(200);
  res.setHeader('Content-Type', 'multipart/mixed; boundary="' + outer + '"');
  if (!(await write(res, '--' + outer))) return;
  for (const outcome of outcomes) {
    if ('missing' in outcome) {
      if (!(await write(res, '\r\nContent-Type: application/json; error="true"\r\n\r\n' + JSON.stringify({ missing: outcome.missing }) + '\r\n--' + outer))) return;
      continue;
    }
    const doc = outcome.ok;
    const sent = await reader.shape(doc, true, attsSince, true);
    if (!sent.length) {
      if (!(await write(res, '\r\nContent-Type: application/json\r\n\r\n' + JSON.stringify(doc) + '\r\n--' + outer))) return;
      continue;
    }
    const inner = boundary();
    const json = JSON.stringify(doc);
    if (!(await write(res, '\r\nContent-Type: multipart/related; boundary="' + inner + '"\r\n\r\n--' + inner + '\r\nContent-Type: application/json\r\n\r\n' + json + '\r\n--' + inner))) return;
    for (const name of sent) {
      const described = doc._attachments![name];
      const source = (described as unknown as { source: Stub }).source;
      const data = await reader.attachment(doc._id, name, source);
      if (described.length !== undefined && data.length !== described.length) {
        // The document promised other lengths: end the answer broken rather than send a wrong attachment.
        throw new Error('attachment ' + name + ' of ' + doc._id + ' is ' + data.length + ' bytes, its stub says ' + described.length);
      }
      const header = '\r\nContent-Disposition: attachment; filename="' + name.replace(/["\r\n\\]/g, '_') + '"\r\nContent-Type: ' + described.content_type.replace(/[\r\n]/g, '') + '\r\nContent-Length: ' + data.length + '\r\n\r\n';
      if (!(await write(res, header)) || !(await write(res, data)) || !(await write(res, '\r\n--' + inner))) return;
    }
    if (!(await write(res, '--\r\n--' + outer))) return;
  }
  if (await write(res, '--')) res.end();
}

/**
 * The router, mounted after the authorization (and before express-pouchdb): `open_revs` reads of
 * documents and design documents, `_bulk_get`, and `latest` on a plain read.
 */
export function documentRevisions(LocalPouch: RevisionsPouch): express.Router {
  const opened = new Map<string, { theirs: unknown; reader: Promise<Reader> }>();
  /** The reader of database `name`, or null when express-pouchdb does not know it (it answers 404). */
  const readerOf = async (name: string): Promise<Reader | null> => {
    let theirs = LocalPouch.__dbCacheMap?.get(name);
    if (!theirs) {
      if (!(await LocalPouch.allDbs()).includes(name)) return null;
      theirs = 'listed';
    }
    const known = opened.get(name);
    if (known && (known.theirs === theirs || known.theirs === 'listed')) {
      if (known.theirs !== theirs) known.theirs = theirs;
      return known.reader;
    }
    const db = new LocalPouch(name);
    const reader = db.info().then(() => new Reader(db));
    if (opened.size > 100) opened.clear();
    opened.set(name, { theirs, reader });
    reader.catch(() => opened.delete(name));
    return reader;
  };

  const failed = (res: express.Response, next: express.NextFunction) => (err: unknown) => {
    if (err instanceof BadRequest) return refuse(res, 400, 'bad_request', err.message);
    if (res.headersSent) return res.destroy();
    next(err);
  };

  const openRevs = (id: (req: express.Request) => string): express.RequestHandler => (req, res, next) => {
    const docId = id(req);
    if (req.method !== 'GET') return next();
    if (req.query.open_revs === undefined) {
      // CouchDB opens the winning revision for `latest` without `open_revs`, whatever `rev` says;
      // PouchDB would throw in its read lock for a revision it does not have.
      if (req.query.latest !== undefined) {
        const query = req.query as Record<string, unknown>;
        if (isTrue(query.latest)) delete query.rev;
        delete query.latest;
      }
      return next();
    }
    (async () => {
      const raw = req.query.open_revs;
      const asked = raw === 'all' ? 'all' : revisionList(raw, 'open_revs');
      const attsSince = req.query.atts_since !== undefined ? revisionList(req.query.atts_since, 'atts_since') : [];
      const reader = await readerOf(req.params.db);
      if (!reader) return next();
      const outcomes = await reader.read(docId, asked, isTrue(req.query.latest), isTrue(req.query.revs));
      if (!outcomes) return refuse(res, 404, 'not_found', 'missing');
      if (acceptsMultipartMixed(req.headers.accept)) return sendMultipart(res, reader, outcomes, attsSince);
      // JSON, as CouchDB sends it: attachment bodies inline when asked (`attachments`, or `atts_since`).
      const withData = isTrue(req.query.attachments) || req.query.atts_since !== undefined;
      res.status(200).type(req.accepts(['text', 'json']) === 'json' ? 'application/json' : 'text/plain');
      if (!(await write(res, '['))) return;
      let first = true;
      for (const outcome of outcomes) {
        if ('ok' in outcome) await reader.shape(outcome.ok, withData, attsSince, false);
        if (!(await write(res, (first ? '' : ',') + JSON.stringify(outcome)))) return;
        first = false;
      }
      if (await write(res, ']\n')) res.end();
    })().catch(failed(res, next));
  };

  const bulkGet: express.RequestHandler = (req, res, next) => {
    (async () => {
      const body = req.body as { docs?: unknown; revs?: unknown; latest?: unknown; attachments?: unknown } | undefined;
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw new BadRequest('Request body must be a JSON object.');
      if (!Array.isArray(body.docs)) throw new BadRequest("Missing JSON list of 'docs'.");
      if (body.docs.length > MAX_REVISIONS) throw new BadRequest('_bulk_get takes at most ' + MAX_REVISIONS + ' documents at once.');
      const option = (name: 'revs' | 'latest' | 'attachments') => isTrue(req.query[name] !== undefined ? req.query[name] : body[name]);
      const reader = await readerOf(req.params.db);
      if (!reader) return next();
      res.status(200).type(req.accepts(['text', 'json']) === 'json' ? 'application/json' : 'text/plain');
      if (!(await write(res, '{"results":['))) return;
      // A few documents read at once (as PouchDB's own _bulk_get did), written in the order asked.
      const docs = body.docs;
      for (let start = 0; start < docs.length; start += BULK_GET_CONCURRENCY) {
        const batch = docs.slice(start, start + BULK_GET_CONCURRENCY);
        const results = await Promise.all(batch.map((entry) => bulkGetOne(reader, entry, option('revs'), option('latest'), option('attachments'))));
        if (!(await write(res, (start ? ',' : '') + results.map((result) => JSON.stringify(result)).join(',')))) return;
      }
      if (await write(res, ']}\n')) res.end();
    })().catch(failed(res, next));
  };

  const router = express.Router();
  router.get('/:db/_design/:ddoc', openRevs((req) => '_design/' + req.params.ddoc));
  router.get('/:db/:id', (req, res, next) => {
    const id = req.params.id;
    if (id.startsWith('_') && !id.startsWith('_design/')) return next();
    openRevs(() => id)(req, res, next);
  });
  router.post('/:db/_bulk_get', bulkGet);
  return router;
}

/** One entry of `_bulk_get`, answered as CouchDB 3.4 answers it. */
async function bulkGetOne(reader: Reader, entry: unknown, revs: boolean, latest: boolean, attachments: boolean): Promise<{ id: unknown; docs: unknown[] }> {
  const error = (id: unknown, rev: unknown, name: string, reason: string) => ({ id, docs: [{ error: { id, rev, error: name, reason } }] });
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) return error(null, null, 'bad_request', 'document must be a JSON object');
  const { id, rev, atts_since: attsSinceRaw } = entry as { id?: unknown; rev?: unknown; atts_since?: unknown };
  if (typeof id !== 'string' || !id) return error(id === undefined ? null : id, null, 'bad_request', 'document id missed');
  if (rev !== undefined && (typeof rev !== 'string' || !REV.test(rev))) return error(id, rev, 'bad_request', 'Invalid rev format');
  let attsSince: string[] = [];
  if (attsSinceRaw !== undefined) {
    try {
      attsSince = revisionList(attsSinceRaw, 'atts_since');
    } catch (err) {
      return error(id, rev === undefined ? 'undefined' : rev, 'bad_request', (err as Error).message);
    }
  }
  const outcomes = await reader.read(id, rev === undefined ? 'all' : [rev], latest, revs);
  if (!outcomes || !outcomes.length) return error(id, rev === undefined ? 'undefined' : rev, 'not_found', 'missing');
  const docs: unknown[] = [];
  for (const outcome of outcomes) {
    if ('missing' in outcome) {
      docs.push({ error: { id, rev: outcome.missing, error: 'not_found', reason: 'missing' } });
      continue;
    }
    // As CouchDB: a non-empty `atts_since` on an entry asks for the bodies added since.
    await reader.shape(outcome.ok, attachments || attsSince.length > 0, attsSince, false);
    docs.push({ ok: outcome.ok });
  }
  return { id, docs };
}
