/**
 * The embedded CouchDB-compatible server: express-pouchdb over PouchDB with LevelDB storage under
 * `<dataDir>/couchdb`, Fauxton at `/_utils`, an admin user (no admin party), and proxy
 * authentication so that the gateway can write as the real user. It listens on 127.0.0.1 only:
 * design-document code runs in this process.
 */
import express from 'express';
import { existsSync, mkdirSync, readFileSync, renameSync, unlink, writeFileSync } from 'fs';
import { createHash } from 'crypto';
import http, { Server } from 'http';
import https from 'https';
import { AddressInfo, isIP } from 'net';
import { dirname, join } from 'path';
import { ACCESS_DESIGN_ID, accessDesignProblem } from '../core/access';
import { hostOf } from '../core/hosts';
import { isReplicator } from '../core/provenance';
import { SecurityObject } from '../core/types';
import { proxyHeaders } from './proxy-auth';
import type { LocalReads } from './client';
import {
  adminHashIsCurrent, adminPasswordMatches, Authenticator, hashAdminPassword, hashUserPassword, identify,
  pinnedSession, sessionCookie, StoredUser,
} from './authentication';
import { documentRevisions, revisionTree, RevisionsDb, RevisionsPouch, winningRevision } from './revisions';
import { authorize, Caller, DATABASE_NAME, databaseOf, isServerAdmin, isSiteCaller, pathSegments, SECURITY_DOCUMENT } from './authorization';

// pouchdb and express-pouchdb ship no types; they are loaded as untyped CommonJS modules.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const PouchDB = require('pouchdb');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const expressPouchDB = require('express-pouchdb');

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  host?: string;
  adminName: string;
  adminPassword: string;
  proxySecret: string;
  /**
   * Host names (with their port, `couch.example:5984`) besides 127.0.0.1, localhost and [::1] at the
   * server's port that requests may name in `Host` (a reverse proxy's name for Fauxton). Any other is
   * refused, against DNS rebinding.
   */
  allowedHosts?: string[];
  /**
   * The outbound request policy every request of the server to another server passes (PouchDB's
   * http adapter: `_replicate` and the `_replicator` jobs, REPLICATION_COUCHDB's among them).
   * Without it, the server asks no server but itself.
   */
  outbound?: RemotePolicy;
}

/**
 * What the server's remote requests need of the outbound request policy (`config/outbound.ts`,
 * passed in by the start-up: couchdb/ does not import config/).
 */
export interface RemotePolicy {
  /**
   * Throws for a URL the policy refuses (scheme, credentials, a refused address written in it);
   * else a `lookup` for its connections that refuses the addresses the policy refuses.
   */
  connectOptions(url: URL): { lookup: unknown };
}

export interface EmbeddedCouch {
  url: string;
  port: number;
  /** The admin's plain reads of documents and attachments in this process (see `inProcessReads`). */
  local: LocalReads;
  close(): Promise<void>;
}

/** Routes of express-pouchdb left out: broken for this use, or a test backdoor. */
const EXCLUDED_PARTS = [
  'routes/special-test-auth',
  'routes/show',
  'routes/list',
  'routes/update',
  'routes/rewrite',
  'routes/vhosts',
  'routes/temp-views',
];

/**
 * `_users` documents written with a clear `password` are stored as CouchDB 3.4 stores them
 * (PBKDF2-SHA256, 600,000 iterations) instead of pouchdb-auth's 10 iterations of SHA-1. pouchdb-auth
 * installs its write wrappers from this module's exports when `_users` is opened, so they are
 * replaced before the server starts.
 */
function hashUserPasswordsStrongly(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const wrappers = require('pouchdb-auth/lib/writewrappers') as Record<string, unknown> & { __registryStrong?: boolean };
  if (wrappers.__registryStrong) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bulkDocsWrapper = require('pouchdb-bulkdocs-wrapper') as (each: (doc: Record<string, unknown>) => Promise<void>) => unknown;
  const hashed = async (doc: Record<string, unknown>): Promise<void> => {
    if (doc && typeof doc === 'object' && doc.password !== undefined && doc.password !== null) {
      const fields = await hashUserPassword(String(doc.password));
      delete doc.password;
      delete doc.password_sha;
      Object.assign(doc, fields);
    }
  };
  wrappers.put = (original: () => Promise<unknown>, args: { doc: Record<string, unknown> }) => hashed(args.doc).then(original);
  wrappers.post = wrappers.put;
  wrappers.bulkDocs = bulkDocsWrapper(hashed);
  wrappers.__registryStrong = true;
}

/**
 * A database's security object is the local document `_local/_security` here (pouchdb-security), and
 * a member may write local documents: through `POST /db` or `_bulk_docs` (the paths are refused in
 * `authorization.ts`), that would be writing `_security`. Such writes are for admins (and for the
 * server itself, which writes without a user).
 */
function guardSecurityDocument(couchApp: { dbWrapper: { registerWrapper(wrapper: (name: string, db: object, next: () => void) => void): void } }): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const wrappers = require('pouchdb-wrappers') as { installWrapperMethods(db: object, handlers: Record<string, unknown>): void };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bulkDocsWrapper = require('pouchdb-bulkdocs-wrapper') as (each: (doc: Record<string, unknown>, args: WrapperArgs) => Promise<void>) => unknown;
  const check = async (doc: Record<string, unknown> | undefined, args: WrapperArgs): Promise<void> => {
    const user = args.options && args.options.userCtx;
    if (!doc || doc._id !== SECURITY_DOCUMENT || !user || (user.roles || []).indexOf('_admin') !== -1) return;
    throw Object.assign(new Error('Only admins may change a database\'s security object (' + SECURITY_DOCUMENT + ').'), { status: 403, name: 'forbidden', error: true });
  };
  couchApp.dbWrapper.registerWrapper((_name, db, next) => {
    const single = (original: () => Promise<unknown>, args: WrapperArgs & { doc?: Record<string, unknown> }) => check(args.doc, args).then(original);
    wrappers.installWrapperMethods(db, { put: single, post: single, bulkDocs: bulkDocsWrapper(check) });
    next();
  });
}

/**
 * `_design/access` is checked when written, whoever writes it and however (a document PUT, `POST /db`,
 * `_bulk_docs`, a delete, `COPY`): an invalid `rules` list would make every read fail. CouchDB runs no
 * validate_doc_update for design documents; on a real CouchDB the gateway's admin proxy checks the same
 * (`accessDesignProblem`), and `/-/health` reports rules broken anyway.
 */
function guardAccessDesign(couchApp: { dbWrapper: { registerWrapper(wrapper: (name: string, db: object, next: () => void) => void): void } }): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const wrappers = require('pouchdb-wrappers') as { installWrapperMethods(db: object, handlers: Record<string, unknown>): void };
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bulkDocsWrapper = require('pouchdb-bulkdocs-wrapper') as (each: (doc: Record<string, unknown>, args: WrapperArgs & { base: PouchLike }) => Promise<void>) => unknown;
  const check = async (doc: Record<string, unknown> | undefined, args: { base: PouchLike }): Promise<void> => {
    if (!doc || doc._id !== ACCESS_DESIGN_ID) return;
    const old = await args.base.get(ACCESS_DESIGN_ID).catch(() => null);
    const problem = accessDesignProblem(doc, old as { rules?: unknown } | null);
    if (problem) throw Object.assign(new Error(problem), { status: 403, name: 'forbidden', error: true });
  };
  couchApp.dbWrapper.registerWrapper((_name, db, next) => {
    const single = (original: () => Promise<unknown>, args: { base: PouchLike; doc?: Record<string, unknown> }) => check(args.doc, args).then(original);
    const remove = (original: () => Promise<unknown>, args: { base: PouchLike; doc?: Record<string, unknown> }) => check({ ...args.doc, _deleted: true }, args).then(original);
    wrappers.installWrapperMethods(db, { put: single, post: single, remove, bulkDocs: bulkDocsWrapper(check) });
    next();
  });
}

interface PouchLike {
  get(id: string): Promise<unknown>;
}

interface WrapperArgs {
  options?: { userCtx?: { name?: string | null; roles?: string[] } };
}

/**
 * The largest body a caller who is neither a server admin, the gateway (proxy authentication) nor
 * replication may send: CouchDB's default `max_document_size`. Such callers (a downstream reader
 * writing its replication checkpoints) have no use for more; the others keep the server's own limits.
 */
export const UNTRUSTED_BODY_LIMIT = 8_000_000;
/** The deepest JSON body accepted (PouchDB's recursive handling overflows the stack a few thousand levels down). */
export const MAX_JSON_DEPTH = 1000;

/** CouchDB's error document, sent as CouchDB sends it. */
function refuseWith(res: express.Response, status: number, error: string, reason: string): void {
  res.status(status).json({ error, reason });
}

/**
 * Requests must name this server in `Host` (127.0.0.1, localhost or [::1] at its port, or a configured
 * name): a page on another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) names
 * its own host, and is refused before anything else happens.
 */
function hostGuard(allowed: () => Set<string>): express.RequestHandler {
  return (req, res, next) => {
    const host = String(req.headers.host || '').toLowerCase();
    if (allowed().has(host)) return next();
    const port = req.socket.localPort;
    refuseWith(res, 400, 'bad_request', 'The Host header ' + JSON.stringify(host) + ' does not name this server; ask http://127.0.0.1:' + port + ', or have an admin add the name to COUCHDB_HOSTS.');
  };
}

/** True when `body` (JSON text) nests arrays and objects deeper than `max`; strings are skipped. */
export function jsonDeeperThan(body: Buffer, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/**
 * A server admin, the gateway (proxy authentication, which needs the secret), or replication (the
 * `_replicator` jobs write batches of packages with their tarballs as the replication user, and
 * another site's packages as the site account).
 */
function trusted(req: express.Request): boolean {
  const session = pinnedSession(req);
  return isServerAdmin(session.userCtx) || session.info.authenticated === 'proxy' || isReplicator(session.userCtx) || isSiteCaller(session.userCtx);
}

/**
 * Bodies, before anyone reads them: multipart bodies (which express-pouchdb writes to temporary files)
 * are for server admins only; a body of another caller who is not the gateway has a declared length
 * of at most `UNTRUSTED_BODY_LIMIT` (413 as CouchDB's `max_http_request_size`, 411 without a length).
 * JSON bodies are parsed here, once, for express-pouchdb too: deeper than `MAX_JSON_DEPTH` is a 400.
 */
function bodyGuard(): express.RequestHandler {
  const json = (limit: string | number) => express.json({
    limit,
    verify: (_req, _res, buffer) => {
      if (jsonDeeperThan(buffer, MAX_JSON_DEPTH)) throw Object.assign(new Error('deep'), { status: 400, deep: true });
    },
  });
  const forTrusted = json('4gb');
  const forOthers = json(UNTRUSTED_BODY_LIMIT);
  return (req, res, next) => {
    const type = String(req.headers['content-type'] || '').toLowerCase();
    const hasBody = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) > 0 : req.headers['transfer-encoding'] !== undefined;
    if (!hasBody) return next();
    const admin = isServerAdmin(pinnedSession(req).userCtx);
    if (type.startsWith('multipart/') && !admin) {
      return refuseWith(res, 415, 'bad_content_type', 'Multipart bodies are for server admins. Send a document as JSON and an attachment as its bytes (PUT /{db}/{doc}/{file}).');
    }
    const isTrusted = trusted(req);
    if (!isTrusted) {
      if (req.headers['content-length'] === undefined) return refuseWith(res, 411, 'bad_request', 'Send the body with a Content-Length.');
      if (Number(req.headers['content-length']) > UNTRUSTED_BODY_LIMIT) {
        return refuseWith(res, 413, 'too_large', 'The request is larger than ' + UNTRUSTED_BODY_LIMIT + ' bytes, the most this server takes from you.');
      }
    }
    // Server endpoints (`/_config`, `/_replicate`, ...) parse their own bodies; databases' are parsed here.
    const first = req.path.split('/')[1] || '';
    if (databaseOf(req.path) === null && ['_users', '_replicator', '_global_changes'].indexOf(first) === -1) return next();
    (isTrusted ? forTrusted : forOthers)(req, res, (err?: { status?: number; type?: string; deep?: boolean }) => {
      if (!err) {
        // express-pouchdb fails with a 500 on a batch whose `docs` is not a list (an object of documents, say).
        const body = req.body as { docs?: unknown } | undefined;
        const batch = req.method === 'POST' && /\/_bulk_docs\/?$/.test(req.path);
        if (batch && body && typeof body === 'object' && body.docs !== undefined && !Array.isArray(body.docs)) {
          return refuseWith(res, 400, 'bad_request', "Missing JSON list of 'docs': send {\"docs\": [...]}.");
        }
        return next();
      }
      if (err.deep) return refuseWith(res, 400, 'bad_request', 'The JSON body is nested deeper than ' + MAX_JSON_DEPTH + ' levels.');
      if (err.status === 413) return refuseWith(res, 413, 'too_large', 'The request entity is too large.');
      if (err.status === 400) return refuseWith(res, 400, 'bad_request', 'invalid_json');
      next(err);
    });
  };
}

/**
 * A site's account on `_users`, which `authorize` let through (sites replicate accounts): what it
 * writes holds no design document (their code would run in this process), and the request then runs
 * as an admin of `_users`, which express-pouchdb needs (it knows no database admins). After
 * `bodyGuard`, so that the body is parsed and a multipart body was refused (it is for server admins).
 */
function siteOnUsers(): express.RequestHandler {
  return (req, res, next) => {
    const session = pinnedSession(req);
    const caller = session.userCtx;
    if (!isSiteCaller(caller) || isServerAdmin(caller) || (pathSegments(req.path) || [])[0] !== '_users') return next();
    const body = req.body as { docs?: unknown; _id?: unknown } | undefined;
    const docs: unknown[] = body && typeof body === 'object' ? (Array.isArray(body.docs) ? body.docs : [body]) : [];
    const designed = docs.some((doc) => !!doc && typeof doc === 'object' && typeof (doc as { _id?: unknown })._id === 'string' && (doc as { _id: string })._id.startsWith('_design'));
    if (designed) return refuseWith(res, 403, 'forbidden', 'The design documents of _users are for server admins.');
    session.userCtx = { name: caller.name, roles: [...(caller.roles || []), '_admin'] };
    next();
  };
}

/**
 * express-pouchdb's multipart uploads (multiparty) leave their temporary files behind, whatever the
 * answer: each is removed once the answer is sent or the client went away.
 */
function removeUploadedFiles(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const multiparty = require(require.resolve('multiparty', { paths: [dirname(require.resolve('express-pouchdb'))] })) as {
    Form: { prototype: Record<string, unknown> & { __registryCleans?: boolean } };
  };
  const proto = multiparty.Form.prototype;
  if (proto.__registryCleans) return;
  const parse = proto.parse as (this: MultipartForm, req: express.Request, ...rest: unknown[]) => unknown;
  proto.parse = function (this: MultipartForm, req: express.Request, ...rest: unknown[]) {
    const files: string[] = [];
    this.on('file', (_name: string, file: { path: string }) => files.push(file.path));
    const remove = () => {
      for (const opened of this.openedFiles || []) files.push(opened.publicFile.path);
      for (const file of files) unlink(file, () => undefined);
    };
    if (req.res) req.res.once('close', remove);
    else req.once('close', remove);
    return parse.call(this, req, ...rest);
  };
  proto.__registryCleans = true;
}

interface MultipartForm {
  on(event: string, listener: (...args: any[]) => void): void;
  openedFiles?: { publicFile: { path: string } }[];
}

/**
 * The `_security` of each database, for deciding a non-admin's request: read as the admin from this
 * server (null when the database does not exist), kept for 10 s, and forgotten at once when an admin
 * changes the database (its `_security`, creation, deletion, local documents).
 */
function securityReader(selfUrl: () => string, adminHeaders: Record<string, string>) {
  const known = new Map<string, { at: number; security: Promise<SecurityObject | null> }>();
  const read = async (db: string): Promise<SecurityObject | null> => {
    const response = await fetch(selfUrl() + '/' + encodeURIComponent(db) + '/_security', { headers: { ...adminHeaders, accept: 'application/json' } });
    if (response.status === 404) return null;
    if (!response.ok) throw new Error('_security of ' + db + ' answered ' + response.status);
    return (await response.json()) as SecurityObject;
  };
  return {
    of(db: string): Promise<SecurityObject | null> {
      const hit = known.get(db);
      if (hit && Date.now() - hit.at < 10_000) return hit.security;
      const security = read(db);
      if (known.size > 1000) known.clear();
      known.set(db, { at: Date.now(), security });
      security.catch(() => known.delete(db));
      return security;
    },
    forget(db: string): void {
      known.delete(db);
    },
  };
}

/**
 * Every request passes `authorize` with the caller's identity before express-pouchdb sees it; a
 * non-admin's request on a database also with that database's `_security`. An admin's change of a
 * database makes its `_security` read again.
 */
function authorization(security: ReturnType<typeof securityReader>): express.RequestHandler {
  return (req, res, next) => {
    const caller: Caller = pinnedSession(req).userCtx;
    const db = databaseOf(req.path);
    const decide = (secObj: SecurityObject | null | undefined) => {
      const refusal = authorize(req.method, req.path, caller, secObj);
      if (!refusal) return next();
      refuseWith(res, refusal.status, refusal.error, refusal.reason);
    };
    if (isServerAdmin(caller) || db === null) {
      if (db !== null && req.method !== 'GET' && req.method !== 'HEAD') {
        security.forget(db);
        res.once('finish', () => security.forget(db));
      }
      return decide(undefined);
    }
    security.of(db).then(decide, () => refuseWith(res, 503, 'unavailable', 'The security object of ' + db + ' could not be read; try again.'));
  };
}

/**
 * Writes express-pouchdb's configuration file before it starts: the admin (hashed, never in clear)
 * and the log level. Its own `set` rewrites the file through one shared temporary file, which races
 * with the rewrite it does at start-up, so the file is prepared here instead.
 */
async function writeServerConfig(file: string, adminName: string, adminPassword: string): Promise<void> {
  const config = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>) : {};
  const admins = (config.admins = config.admins || {});
  if (!adminHashIsCurrent(admins[adminName]) || !(await adminPasswordMatches(admins[adminName], adminPassword))) {
    admins[adminName] = await hashAdminPassword(adminPassword);
  }
  config.log = { ...(config.log || {}), level: 'warning' };
  const temp = file + '.registry-tmp';
  writeFileSync(temp, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  renameSync(temp, file);
}

/**
 * `DELETE /_session` (log out). `POST /_session` (log in) is answered by `authentication.ts`, where the
 * login throttle counts it; `GET /_session` is express-pouchdb's, from the request's session.
 */
function sessionRoutes(): express.Router {
  const router = express.Router();
  router.delete('/_session', (_req, res) => {
    res.setHeader('Set-Cookie', sessionCookie('', 0));
    res.json({ ok: true });
  });
  return router;
}

interface CouchConfig {
  getSection(section: string): Record<string, unknown> | undefined;
  set(section: string, key: string, value: string, done: (err: unknown, old?: string) => void): void;
}

/**
 * `PUT /_config/admins/NAME` (admins only, checked before): the password is hashed here with the same
 * work factor as the first admin's, instead of express-pouchdb's 10 iterations.
 */
function adminConfigRoutes(config: CouchConfig): express.Router {
  const router = express.Router();
  router.put(['/_config/admins/:name', '/_node/:node/_config/admins/:name'], express.text({ type: () => true, limit: '64kb' }), (req, res, next) => {
    (async () => {
      let password: unknown;
      try {
        password = JSON.parse(String(req.body));
      } catch {
        password = undefined;
      }
      if (typeof password !== 'string' || !password) {
        res.status(400).json({ error: 'bad_request', reason: 'The body must be the new password as a JSON string.' });
        return;
      }
      const hash = await hashAdminPassword(password);
      const old = await new Promise<string | undefined>((resolve, reject) => config.set('admins', req.params.name, hash, (err, previous) => (err ? reject(err) : resolve(previous))));
      res.json(old || '');
    })().catch(next);
  });
  return router;
}

/**
 * pouchdb-validation compiles every validate_doc_update again for every document it validates (a
 * bundled design function is tens of kilobytes). The compiled function depends only on its source
 * and design document, so it is kept per design revision.
 */
function cacheCompiledDesignFunctions(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const couchEval = require('couchdb-eval') as { evaluate: (...args: any[]) => unknown; __registryCached?: boolean };
  if (couchEval.__registryCached) return;
  const evaluate = couchEval.evaluate;
  // By design document and revision, then by the source itself: a key made of the source (tens of
  // kilobytes) was a new string to hash for every document validated.
  const compiled = new Map<string, { program: string; func: unknown }[]>();
  couchEval.evaluate = function (this: unknown, context: { _id?: string; _rev?: string } | undefined, extraVars: object | undefined, program: string) {
    if (extraVars && Object.keys(extraVars).length) return evaluate.call(this, context, extraVars, program);
    const key = String(context && context._id) + '@' + String(context && context._rev);
    let known = compiled.get(key);
    const hit = known && known.find((entry) => entry.program === program);
    if (hit) return hit.func;
    const func = evaluate.call(this, context, extraVars, program);
    if (compiled.size > 100) compiled.clear();
    if (!known || !compiled.has(key)) compiled.set(key, (known = []));
    known.push({ program, func });
    return func;
  };
  couchEval.__registryCached = true;
}

/**
 * A wrapped PouchDB call's answer, as PouchDB gives it: the promise, and the Node-style `callback`
 * told too when the caller passed one (the promise then never rejects unhandled).
 */
function answered<T>(answer: Promise<T>, callback: ((err: unknown, result?: T) => void) | null): Promise<T | undefined> {
  if (!callback) return answer;
  answer.then((result) => callback(null, result), (err) => callback(err));
  return answer.catch(() => undefined);
}

/**
 * pouchdb-validation reads every design document of the database (all of `_design/`, with their
 * bundled code) for every document it validates: a `_bulk_docs` of 100 mirrored packages read
 * `_design/app` and `_design/mirror` 100 times. That read (exactly its options) is answered from
 * memory, kept per database until any write of a design document to it (before and after the write,
 * whichever instance or path writes it: every PouchDB write goes through `bulkDocs`) or its deletion.
 * Only pouchdb-validation asks with exactly these options (express-pouchdb adds the caller's to
 * every HTTP read), and it only reads what it is given.
 */
function cacheDesignDocumentReads(): void {
  const proto = PouchDB.prototype as {
    allDocs: (...args: any[]) => Promise<unknown>;
    bulkDocs: (...args: any[]) => Promise<unknown>;
    destroy: (...args: any[]) => Promise<unknown>;
    __registryDesignCache?: boolean;
  };
  if (proto.__registryDesignCache) return;
  type Db = { name?: string; __opts?: { prefix?: string } };
  /** Per database: forgotten at every write of a design document (and at its deletion). */
  const reads = new ReadPerDatabase();
  const isDesignRead = (opts: unknown) => {
    if (!opts || typeof opts !== 'object') return false;
    const o = opts as Record<string, unknown>;
    const keys = Object.keys(o);
    return keys.length === 3 && o.startkey === '_design/' && o.endkey === '_design0' && o.include_docs === true;
  };
  const allDocs = proto.allDocs;
  proto.allDocs = function (this: Db, ...args: any[]) {
    if (args.length !== 1 || !isDesignRead(args[0])) return allDocs.apply(this, args);
    return reads.read(this, () => allDocs.apply(this, args));
  };
  const writesDesign = (args: any[]) => {
    const req = args[0] as { docs?: unknown } | unknown[] | undefined;
    const docs = Array.isArray(req) ? req : req && Array.isArray((req as { docs?: unknown }).docs) ? ((req as { docs: unknown[] }).docs) : [];
    return docs.some((doc) => !!doc && typeof doc === 'object' && String((doc as { _id?: unknown })._id).startsWith('_design/'));
  };
  onWrites(proto as unknown as WritableProto, ['bulkDocs'], writesDesign, reads.around);
  proto.__registryDesignCache = true;
}

/**
 * One read per PouchDB database (by its prefix and name) kept in memory until `changed` says the
 * database changed in what the read answers; a read that fails is not kept, and one a change
 * overtook is answered but not kept for the next caller.
 */
class ReadPerDatabase {
  private readonly generations = new Map<string, number>();
  private readonly cached = new Map<string, { generation: number; answer: Promise<unknown> }>();

  private static keyOf(db: { name?: string; __opts?: { prefix?: string } }): string {
    return String((db.__opts && db.__opts.prefix) || '') + '\n' + String(db.name);
  }

  read(db: { name?: string; __opts?: { prefix?: string } }, load: () => Promise<unknown>): Promise<unknown> {
    const key = ReadPerDatabase.keyOf(db);
    const generation = this.generations.get(key) || 0;
    const hit = this.cached.get(key);
    if (hit && hit.generation === generation) return hit.answer;
    const entry = { generation, answer: load() };
    this.cached.set(key, entry);
    entry.answer.catch(() => {
      if (this.cached.get(key) === entry) this.cached.delete(key);
    });
    return entry.answer;
  }

  readonly changed = (db: { name?: string; __opts?: { prefix?: string } }): void => {
    const key = ReadPerDatabase.keyOf(db);
    this.generations.set(key, (this.generations.get(key) || 0) + 1);
    this.cached.delete(key);
  };

  /** For `onWrites`: the database changed before the write and again after it. */
  readonly around = (db: { name?: string; __opts?: { prefix?: string } }): (() => void) => {
    this.changed(db);
    return () => this.changed(db);
  };
}

type WritableProto = Record<string, (...args: any[]) => Promise<unknown>>;

/**
 * Has `around(db)` run before each call of the write `methods` of PouchDB's prototype that `writes`
 * says concerns it (whichever instance or path makes it), and what it returns once the write is
 * over; at a database's deletion, both before it. The caches of database reads above are kept
 * coherent this way, and the writes that can conflict are counted.
 */
function onWrites(proto: WritableProto, methods: string[], writes: (args: any[]) => boolean, around: (db: never) => () => void): void {
  for (const method of methods) {
    const original = proto[method];
    proto[method] = function (this: never, ...args: any[]) {
      if (!writes(args)) return original.apply(this, args);
      const after = around(this);
      const callback = typeof args[args.length - 1] === 'function' ? (args.pop() as (err: unknown, result?: unknown) => void) : null;
      const written = original.apply(this, args).finally(after);
      return answered(written, callback);
    };
  }
  const destroy = proto.destroy;
  proto.destroy = function (this: never, ...args: any[]) {
    around(this)();
    return destroy.apply(this, args);
  };
}

/** Per database name, the writes that can leave conflicting revisions: under way, and done. */
const conflictingWrites = new Map<string, { running: number; done: number }>();

/**
 * Counts, per database, the writes that can leave conflicting revisions. On this server only a write
 * with `new_edits: false` can (a replication's, an admin's `_bulk_docs`: every path goes through
 * `bulkDocs`); any other write meeting another revision is refused with 409. A conflict resolver
 * that reads the database's position and then these counts (`LocalReads.conflictingWrites`) knows
 * whether anything it has not read yet could have made a conflict: it then need not read the
 * change feed, which here parses every document written (a mirror's whole ingest, once more).
 */
function countConflictingWrites(): void {
  const proto = PouchDB.prototype as unknown as WritableProto & { __registryConflictCount?: boolean };
  if (proto.__registryConflictCount) return;
  const replicated = (value: unknown) => !!value && typeof value === 'object' && !Array.isArray(value) && (value as { new_edits?: unknown }).new_edits === false;
  const counting = (db: { name?: unknown }) => {
    if (typeof db.name !== 'string') return () => undefined;
    let count = conflictingWrites.get(db.name);
    if (!count) conflictingWrites.set(db.name, (count = { running: 0, done: 0 }));
    const counted = count;
    counted.running++;
    return () => {
      counted.running--;
      counted.done++;
    };
  };
  onWrites(proto, ['bulkDocs'], (args) => replicated(args[0]) || replicated(args[1]), counting);
  proto.__registryConflictCount = true;
}

/**
 * PouchDB answers `_all_docs` with `keys` by opening a LevelDB iterator per key: the feed follower
 * asks which of 500 names each of the two package databases has for every batch of its feed, and
 * those iterators were about a fifteenth of the registry's CPU while it mirrored. Asked with `keys`
 * alone (express-pouchdb adds the caller's `secObj` and `userCtx`), each key's revision tree is read
 * instead (one read of the document's metadata, as `revisions.ts` does), and the answer is PouchDB's:
 * `{id, key, value: {rev}}`, `value.deleted` and `doc: null` for a deleted document, `{key, error:
 * "not_found"}` for a missing one, with the database's `total_rows` and `offset` 0.
 */
function answerKeyedAllDocsFromMetadata(): void {
  const proto = PouchDB.prototype as { allDocs: (...args: any[]) => Promise<unknown>; __registryKeyedAllDocs?: boolean };
  if (proto.__registryKeyedAllDocs) return;
  type Db = {
    adapter?: string;
    _closed?: boolean;
    _destroyed?: boolean;
    taskqueue?: { isReady?: boolean };
    _getRevisionTree?: RevisionsDb['_getRevisionTree'];
  };
  const ALLOWED = new Set(['keys', 'secObj', 'userCtx']);
  const allDocs = proto.allDocs;
  const rowOf = async (db: Db, key: string): Promise<Record<string, unknown>> => {
    const tree = await revisionTree(db as Pick<RevisionsDb, '_getRevisionTree'>, key);
    const winner = tree && winningRevision(tree);
    if (!winner) return { key, error: 'not_found' };
    return winner.deleted ? { id: key, key, value: { rev: winner.rev, deleted: true }, doc: null } : { id: key, key, value: { rev: winner.rev } };
  };
  proto.allDocs = function (this: Db, ...args: any[]) {
    const opts = args[0] as Record<string, unknown> | undefined;
    const callback = args.length === 2 && typeof args[1] === 'function' ? (args[1] as (err: unknown, result?: unknown) => void) : null;
    const plain =
      (args.length === 1 || callback) && !!opts && typeof opts === 'object' && Array.isArray(opts.keys) && opts.keys.length > 0 &&
      (opts.keys as unknown[]).every((key) => typeof key === 'string' && !key.startsWith('_local/')) &&
      Object.keys(opts).every((key) => ALLOWED.has(key)) &&
      this.adapter === 'leveldb' && typeof this._getRevisionTree === 'function' && !this._closed && !this._destroyed && !!this.taskqueue && this.taskqueue.isReady === true;
    if (!plain) return allDocs.apply(this, args);
    const answer = (async () => {
      const [count, rows] = await Promise.all([
        allDocs.call(this, { limit: 0 }) as Promise<{ total_rows: number }>,
        Promise.all((opts.keys as string[]).map((key) => rowOf(this, key))),
      ]);
      return { offset: 0, total_rows: count.total_rows, rows };
    })();
    return answered(answer, callback);
  };
  proto.__registryKeyedAllDocs = true;
}

/**
 * pouchdb-security reads the database's `_local/_security` for every document of a `_bulk_docs` (to
 * check that the writer is a member, and for validate_doc_update's `secObj`): 250 reads for one bulk
 * write of the feed follower. That read is answered from memory, kept per database until any write
 * of that document (put, post, remove or `bulkDocs`, whichever instance: before and after it) or the
 * database's deletion; each caller gets a copy of its own (the caller fills it in).
 */
function cacheSecurityReads(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const security = require('pouchdb-security') as { getSecurity: (...args: any[]) => Promise<unknown>; __registryCached?: boolean };
  const proto = PouchDB.prototype as Record<string, (...args: any[]) => Promise<unknown>> & { __registrySecurityCache?: boolean };
  if (security.__registryCached || proto.__registrySecurityCache) return;
  type Db = { name?: string; __opts?: { prefix?: string }; type?: () => string };
  const reads = new ReadPerDatabase();
  const getSecurity = security.getSecurity;
  security.getSecurity = function (this: Db, ...args: any[]) {
    const type = typeof this.type === 'function' ? this.type() : '';
    if (args.length || type === 'http' || type === 'https') return getSecurity.apply(this, args);
    return reads.read(this, () => getSecurity.apply(this, args)).then((secObj) => structuredClone(secObj));
  };
  const touches = (doc: unknown) => !!doc && typeof doc === 'object' && (doc as { _id?: unknown })._id === SECURITY_DOCUMENT;
  const writing = (args: any[]): boolean => {
    const first = args[0] as unknown;
    if (first === SECURITY_DOCUMENT || touches(first)) return true;
    const docs = Array.isArray(first) ? first : first && typeof first === 'object' && Array.isArray((first as { docs?: unknown }).docs) ? (first as { docs: unknown[] }).docs : null;
    return !!docs && docs.some(touches);
  };
  // `_local/_security` is a local document: PouchDB writes it without `bulkDocs`.
  onWrites(proto, ['put', 'post', 'remove', 'bulkDocs'], writing, reads.around);
  security.__registryCached = true;
  proto.__registrySecurityCache = true;
}

/**
 * PouchDB makes every error it answers with (a missing document is one: the feed follower asks for
 * thousands that are not there yet, validation reads each new document's previous revision) format
 * a stack trace of its own internals at once (`(new Error()).stack`), about a tenth of a millisecond
 * each. Its errors say what failed by `status`, `name` and `reason`; their stack is now that line,
 * written only when read (an error given a stack keeps it).
 */
async function plainPouchErrorStacks(): Promise<void> {
  const probe = Object.create(PouchDB.prototype) as { taskqueue: { isReady: boolean } };
  probe.taskqueue = { isReady: true };
  // A bulk write without documents is refused with PouchDB's own error, before any storage is used.
  const refusal = await Promise.resolve()
    .then(() => (PouchDB.prototype as { bulkDocs: (...args: unknown[]) => Promise<unknown> }).bulkDocs.call(probe, {}))
    .then(
      () => null,
      (err: unknown) => err,
    );
  const proto = refusal instanceof Error && (refusal as { status?: unknown }).status === 400 ? (Object.getPrototypeOf(refusal) as object) : null;
  if (!proto || proto === Error.prototype || Object.prototype.hasOwnProperty.call(proto, 'stack') || !Object.prototype.hasOwnProperty.call(proto, 'toString')) return;
  Object.defineProperty(proto, 'stack', {
    configurable: true,
    get(this: { name?: unknown; reason?: unknown; message?: unknown }) {
      return String(this.name) + ': ' + String(this.reason || this.message || '');
    },
    set(this: object, value: unknown) {
      Object.defineProperty(this, 'stack', { value, writable: true, configurable: true, enumerable: false });
    },
  });
}

/**
 * pouchdb-size adds `disk_size` to every `info()` by walking the database's folder, and express-pouchdb
 * asks `_users` for its info on every request (to build the session). The size is kept for 10 s.
 */
function cacheDiskSizes(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const size = require('pouchdb-size') as { getDiskSize: (...args: unknown[]) => Promise<number>; __registryCached?: boolean };
  if (size.__registryCached) return;
  const getDiskSize = size.getDiskSize;
  const known = new WeakMap<object, { at: number; size: Promise<number> }>();
  size.getDiskSize = function (this: object, ...args: unknown[]) {
    if (args.length) return getDiskSize.apply(this, args);
    const hit = known.get(this);
    if (hit && Date.now() - hit.at < 10_000) return hit.size;
    const measured = getDiskSize.call(this);
    known.set(this, { at: Date.now(), size: measured });
    return measured;
  };
  size.__registryCached = true;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * `_changes?feed=longpoll`, answered by polling the normal feed every 250 ms until something changed
 * or the timeout (at most 60 s) passed. express-pouchdb's own longpoll leaks a heartbeat timer and
 * keeps working for clients that went away (replication abandons longpolls all the time). The caller
 * is authenticated once; the polls are made as the same user through proxy authentication.
 */
function longpollChanges(selfUrl: () => string, secret: string): express.RequestHandler {
  return (req, res, next) => {
    if (req.query.feed !== 'longpoll') return next();
    (async () => {
      const user = pinnedSession(req).userCtx;
      const headers: Record<string, string> = { accept: 'application/json' };
      if (user && user.name) Object.assign(headers, proxyHeaders(secret, user.name, user.roles || []));
      const params = new URLSearchParams(req.originalUrl.split('?')[1] || '');
      for (const live of ['feed', 'heartbeat', 'timeout']) params.delete(live);
      const dbUrl = selfUrl() + '/' + encodeURIComponent(req.params.db);
      if (params.get('since') === 'now') {
        const info = await fetch(dbUrl, { headers });
        params.set('since', String(((await info.json()) as { update_seq?: unknown }).update_seq ?? 0));
      }
      const deadline = Date.now() + Math.min(Number(req.query.timeout) || 60_000, 60_000);
      let gone = false;
      res.on('close', () => (gone = true));
      const body = req.method === 'POST' ? JSON.stringify(req.body || {}) : undefined;
      for (;;) {
        const answer = await fetch(dbUrl + '/_changes?' + params, {
          method: req.method,
          headers: body ? { ...headers, 'content-type': 'application/json' } : headers,
          body,
        });
        const text = await answer.text();
        let empty: boolean;
        try {
          empty = answer.ok && (JSON.parse(text) as { results: unknown[] }).results.length === 0;
        } catch {
          empty = false;
        }
        if (gone) return;
        if (!empty || Date.now() >= deadline) {
          res.status(answer.status).type('application/json').send(text);
          return;
        }
        await sleep(250);
      }
    })().catch(next);
  };
}

/**
 * Replicated writes (`_bulk_docs` with `new_edits: false`) keep the revision history they bring.
 * pouchdb-validation, before it runs a validate_doc_update, replaces each document's `_revisions`
 * with the stored document's, so an update arriving by replication was taken for a revision the
 * database already had and silently dropped: new versions of a package that was already here never
 * arrived. The history is made unassignable for those documents, so validation sees it as CouchDB
 * shows it, and it is what gets written.
 */
function keepReplicatedHistory(req: express.Request, _res: express.Response, next: express.NextFunction): void {
  const body = req.body as { new_edits?: unknown; docs?: unknown } | undefined;
  if (body && body.new_edits === false && Array.isArray(body.docs)) {
    for (const doc of body.docs) {
      if (!doc || typeof doc !== 'object' || !('_revisions' in doc)) continue;
      const history = (doc as { _revisions: unknown })._revisions;
      Object.defineProperty(doc, '_revisions', { enumerable: true, configurable: true, get: () => history, set: () => undefined });
    }
  }
  next();
}

/** What PouchDB's http adapter needs of a fetch: node-fetch 2's (the one it depends on). */
type RemoteFetch = (url: string, init?: Record<string, unknown>) => Promise<NodeFetchResponse>;
interface NodeFetchResponse {
  status: number;
  headers: { get(name: string): string | null };
  body?: { resume?(): void };
}

/** The most agents (one per remote host) kept for their open connections. */
const MAX_REMOTE_AGENTS = 64;

/**
 * The `fetch` of the server's remote databases (PouchDB's http adapter, which replication uses):
 * every request passes the outbound request policy as the registry's own requests do. A URL the
 * policy refuses is never asked; a name is connected to only at an address the policy allows (its
 * `lookup` hook, through the agent); redirects are never followed, and a 3xx answer is a failure of
 * that request, so a source cannot send the replicator (with the source's credentials) elsewhere,
 * and the job backs off instead of spinning. This server itself (`isSelf`: a replication's local
 * target) is asked directly.
 */
function policedFetch(policy: RemotePolicy | undefined, isSelf: (url: URL) => boolean): RemoteFetch {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeFetch = require(require.resolve('node-fetch', { paths: [dirname(require.resolve('pouchdb'))] })) as RemoteFetch;
  const agents = new Map<string, http.Agent>();
  const agentFor = (url: URL): http.Agent => {
    const key = url.protocol + '//' + hostOf(url);
    let agent = agents.get(key);
    if (!agent) {
      const { lookup } = (policy as RemotePolicy).connectOptions(url);
      if (agents.size >= MAX_REMOTE_AGENTS) {
        for (const old of agents.values()) old.destroy();
        agents.clear();
      }
      const options = { keepAlive: true, lookup: lookup as never };
      agent = url.protocol === 'https:' ? new https.Agent(options) : new http.Agent(options);
      agents.set(key, agent);
    }
    return agent;
  };
  return async (raw, init = {}) => {
    const url = new URL(raw);
    const self = isSelf(url);
    if (!self && !policy) throw Object.assign(new Error('this server asks no other server (no outbound request policy was given to it)'), { status: 502, name: 'outbound_refused' });
    // Throws (OutboundRefused) for a refused scheme, credentials in the URL or a refused address written in it.
    if (!self) (policy as RemotePolicy).connectOptions(url);
    const response = await nodeFetch(url.toString(), { ...init, redirect: 'manual', ...(self ? {} : { agent: agentFor(url) }) });
    if (response.status >= 300 && response.status < 400) {
      response.body?.resume?.();
      const location = response.headers.get('location');
      throw Object.assign(
        new Error(url.protocol + '//' + url.host + ' answered ' + response.status + (location ? ' with a redirect to ' + location.replace(/\/\/[^/@]*@/, '//') : '') + ', which replication does not follow: give the replication the URL it ends at'),
        { status: 502, name: 'redirect_refused' },
      );
    }
    return response;
  };
}

/** A running PouchDB replication. */
interface Replication {
  cancel(): void;
  then(onDone?: (value: unknown) => unknown, onError?: (err: unknown) => unknown): Promise<unknown>;
  catch(onError: (err: unknown) => unknown): Promise<unknown>;
}

/**
 * Keeps track of the replications run from `_replicator`, so that closing the server cancels them.
 * express-pouchdb's stop of its replicator daemon does nothing (it refers to a variable it never
 * sets). A replication cancelled by the close never reports its end to the daemon, which would
 * otherwise write to `_replicator` after the server is gone.
 */
function trackReplications(LocalPouch: { replicate: (...args: unknown[]) => Replication }, remoteFetch: RemoteFetch): { cancelAll(): Promise<void> } {
  const running = new Map<Replication, Promise<void>>();
  let closing = false;
  const replicate = LocalPouch.replicate;
  LocalPouch.replicate = function (this: unknown, ...args: unknown[]) {
    // The options of a replication reach the remote database's constructor after its defaults: a
    // `_replicator` document's `fetch` (null, say) must not take the policed fetch's place.
    if (args[2] && typeof args[2] === 'object') args[2] = { ...(args[2] as object), fetch: remoteFetch };
    const replication = replicate.apply(this, args);
    const ended = replication.then.bind(replication);
    let settled!: () => void;
    running.set(replication, new Promise<void>((resolve) => (settled = resolve)));
    const outcome = new Promise((resolve, reject) => {
      ended(
        (value) => {
          running.delete(replication);
          settled();
          if (!closing) resolve(value);
        },
        (err) => {
          running.delete(replication);
          settled();
          if (!closing) reject(err);
        },
      );
    });
    replication.then = outcome.then.bind(outcome);
    replication.catch = outcome.catch.bind(outcome);
    return replication;
  };
  return {
    async cancelAll() {
      closing = true;
      const ends = [...running.values()];
      for (const replication of running.keys()) replication.cancel();
      await Promise.race([Promise.all(ends), new Promise((resolve) => setTimeout(resolve, 3000).unref())]);
    },
  };
}

/** What a stored document says of one of its attachments. */
interface AttachmentStub {
  content_type: string;
  digest: string;
}

type StoredDoc = Record<string, unknown> & { _rev: string; _attachments?: Record<string, AttachmentStub> };

/** A PouchDB database, as far as reading documents goes. */
interface ReadableDb {
  get(id: string): Promise<StoredDoc>;
  allDocs(options: { key: string }): Promise<{ rows: { error?: string; value?: { rev: string; deleted?: boolean } }[] }>;
  /**
   * The adapter's own reads (LevelDB's), which PouchDB's `getAttachment` makes: a document at its
   * winning revision, and an attachment's bytes by its stub. Called only once the database is open
   * (after a call of the public API, which waits for that).
   */
  _get(id: string, options: Record<string, never>, callback: (err: unknown, result?: { doc: StoredDoc }) => void): void;
  _getAttachment(id: string, file: string, stub: AttachmentStub, options: { binary: true }, callback: (err: unknown, data?: Buffer) => void): void;
  /** The adapter's revision tree of a document (its index entry, no document read): 404 when there is none. */
  _getRevisionTree: RevisionsDb['_getRevisionTree'];
  info(): Promise<Record<string, unknown>>;
  /** The adapter's own `info`: `update_seq` and `doc_count` from memory. Called only once the database is open. */
  _info(callback: (err: unknown, info?: { update_seq: number }) => void): void;
  /** pouchdb-size's: `info()` reports the database's `disk_size` too, as express-pouchdb's databases do. */
  installSizeWrapper(): void;
}

/** Attachment stubs remembered per database (a few MB): the documents whose attachments were read last. */
const REMEMBERED_STUBS = 20_000;

/** A database the fast path reads: its own PouchDB handle, and the attachments' stubs of documents read lately, by id. */
interface Opened {
  theirs: unknown;
  mine: ReadableDb;
  stubs: Map<string, { rev: string; attachments: Record<string, AttachmentStub>; count: number; handed?: boolean }>;
  stubCount: number;
  /** A call of PouchDB's public API, which waits for the database to be open (the adapter's own reads need it). */
  ready?: Promise<unknown>;
}

const isNotFound = (err: unknown): boolean => !!err && (err as { status?: number }).status === 404;

const pouchNotFound = (reason: string): Error => Object.assign(new Error(reason), { status: 404, name: 'not_found' });

/**
 * The winning revision of document `id` and whether it is deleted (`winningRevision`): from the
 * revision tree alone, which reads no document and no index (`allDocs` opened and closed a LevelDB
 * iterator for each, a third of the CPU of a tarball's first read). Null when there is no such document.
 */
async function currentRevision(db: Opened, id: string): Promise<{ rev: string; deleted: boolean } | null> {
  // The adapter's own reads need the database open: a call of the public API waits for that.
  if (!db.ready) db.ready = db.mine.info();
  await db.ready;
  const tree = await revisionTree(db.mine, id);
  return tree && winningRevision(tree);
}

/**
 * The stubs of document `id`'s attachments at its current revision. The revision is taken from the
 * document's revision tree (`currentRevision`), which reads no document; the document itself is read (and
 * parsed: a packument of thousands of versions is megabytes of JSON) only when its revision is not
 * the one remembered.
 */
async function attachmentsOf(db: Opened, id: string): Promise<Record<string, AttachmentStub>> {
  const current = await currentRevision(db, id);
  if (!current || current.deleted) throw pouchNotFound(current ? 'deleted' : 'missing');
  const known = db.stubs.get(id);
  if (known && known.rev === current.rev) {
    // Most recently used last.
    db.stubs.delete(id);
    db.stubs.set(id, known);
    return known.attachments;
  }
  const { doc } = await new Promise<{ doc: StoredDoc }>((resolve, reject) => db.mine._get(id, {}, (err, result) => (result ? resolve(result) : reject(err || new Error('no document')))));
  return rememberStubs(db, id, doc);
}

/**
 * Remembers the attachments' stubs of `doc` (document `id` at its winning revision) for `attachmentsOf`,
 * most recently used last, within `REMEMBERED_STUBS`; returns them.
 */
function rememberStubs(db: Opened, id: string, doc: StoredDoc): Record<string, AttachmentStub> {
  const attachments = doc._attachments || {};
  const count = Object.keys(attachments).length;
  const known = db.stubs.get(id);
  if (known) {
    db.stubs.delete(id);
    db.stubCount -= known.count;
  }
  if (count <= REMEMBERED_STUBS) {
    db.stubs.set(id, { rev: doc._rev, attachments, count });
    db.stubCount += count;
    for (const [oldest, entry] of db.stubs) {
      if (db.stubCount <= REMEMBERED_STUBS) break;
      db.stubs.delete(oldest);
      db.stubCount -= entry.count;
    }
  }
  return attachments;
}

/**
 * The databases express-pouchdb has open (so they exist: a deleted one leaves its cache at once),
 * each with a PouchDB handle of this module's own and the stubs of attachments read lately; null
 * for any other name (opening a PouchDB database would create it).
 */
interface LocalDatabases {
  open(name: string): Opened | null;
}

function localDatabases(LocalPouch: new (name: string) => ReadableDb): LocalDatabases {
  const opened = new Map<string, Opened>();
  return {
    open(name) {
      if (!DATABASE_NAME.test(name)) return null;
      const theirs = (LocalPouch as unknown as { __dbCacheMap?: Map<string, unknown> }).__dbCacheMap?.get(name);
      if (!theirs) return null;
      let db = opened.get(name);
      if (!db || db.theirs !== theirs) {
        const mine = new LocalPouch(name);
        mine.installSizeWrapper();
        opened.set(name, (db = { theirs, mine, stubs: new Map(), stubCount: 0 }));
      }
      return db;
    },
  };
}

/** An attachment's bytes with the ETag and type express-pouchdb sends it with; null when the document has no such attachment. */
async function attachmentOf(db: Opened, id: string, file: string): Promise<{ data: Buffer; etag: string; contentType: string } | null> {
  const attachments = await attachmentsOf(db, id);
  const stub = Object.prototype.hasOwnProperty.call(attachments, file) ? attachments[file] : undefined;
  const known = db.stubs.get(id);
  const handed = !!known?.handed && known.attachments === attachments;
  // Stubs handed over by the gateway (`knowAttachments`) may lack a file the document has: read it.
  if (!stub) return handed ? forgetHanded(db, id, file) : null;
  let data: Buffer;
  try {
    data = await new Promise<Buffer>((resolve, reject) => db.mine._getAttachment(id, file, stub, { binary: true }, (err, bytes) => (bytes ? resolve(bytes) : reject(err || new Error('no attachment')))));
  } catch (err) {
    if (handed) return forgetHanded(db, id, file);
    throw err;
  }
  // A stub handed over by the gateway is trusted for its bytes only: LevelDB answers a digest it does
  // not hold with no bytes at all, so what it sent must have that digest, else the document says.
  if (handed && 'md5-' + createHash('md5').update(data).digest('base64') !== stub.digest) return forgetHanded(db, id, file);
  return { data, etag: JSON.stringify(stub.digest.slice(4)), contentType: stub.content_type };
}

/** Forgets stubs the gateway handed over for `id` and reads `file` by the document's own. */
function forgetHanded(db: Opened, id: string, file: string): Promise<{ data: Buffer; etag: string; contentType: string } | null> {
  const known = db.stubs.get(id);
  if (known) {
    db.stubs.delete(id);
    db.stubCount -= known.count;
  }
  return attachmentOf(db, id, file);
}

/**
 * Stubs of `id`'s attachments at `rev` from the gateway (its disk copy of a packument's served bytes
 * knows them), kept as if the document had been read, unless stubs are remembered already. They serve
 * only while `rev` is the document's current revision (`attachmentsOf` checks); a file missing from
 * them, or a digest the store does not hold, is read by the document's own stubs.
 */
function handAttachments(db: Opened, id: string, rev: string, stubs: Record<string, AttachmentStub>): void {
  if (db.stubs.has(id)) return;
  rememberStubs(db, id, { _rev: rev, _attachments: stubs });
  const known = db.stubs.get(id);
  if (known) known.handed = true;
}


/**
 * The server admin's plain reads of a document and of an attachment, in this process, for the gateway
 * that runs in it (`Couch.local`): the same reads, with the same answers, as `adminReads` gives the
 * admin over HTTP, without the request (a client request, a server request, the authentication's
 * HMAC, express's routing, the document serialized to be parsed again). Only what `adminReads` would
 * answer itself: databases express-pouchdb has open, ids that do not start with `_`; undefined for
 * the rest, which the caller asks over HTTP. Who may read a package is the gateway's decision, made
 * before it reads, as before: over HTTP too it reads as the admin.
 */
function inProcessReads(databases: LocalDatabases): LocalReads {
  /** The open database of a document read here: none for a reserved id (`_design/`, `_local/`). */
  const openFor = (dbName: string, id: string) => (id.startsWith('_') ? null : databases.open(dbName));
  return {
    position(dbName) {
      const db = databases.open(dbName);
      if (!db) return undefined;
      // The adapter's own answer, from memory (express-pouchdb's `GET /{db}` adds the size of every
      // file of the database, a stat of each: the gateway's followers ask several times a second).
      if (!db.ready) db.ready = db.mine.info();
      return db.ready.then(() => new Promise<number>((resolve, reject) => db.mine._info((err, info) => (info ? resolve(info.update_seq) : reject(err || new Error('no info'))))));
    },
    conflictingWrites(dbName) {
      if (!databases.open(dbName)) return undefined;
      const count = conflictingWrites.get(dbName);
      return count ? { ...count } : { running: 0, done: 0 };
    },
    document(dbName, id) {
      const db = openFor(dbName, id);
      if (!db) return undefined;
      return db.mine.get(id).then(
        (doc) => {
          // npm reads a package's tarballs after its packument: their first read then needs no read of
          // the document again (a packument of a few MB parsed once more). A copy: the caller may change the document.
          const stubs: Record<string, AttachmentStub> = {};
          for (const [file, stub] of Object.entries(doc._attachments || {})) stubs[file] = { content_type: stub.content_type, digest: stub.digest };
          rememberStubs(db, id, { _rev: doc._rev, _attachments: stubs });
          return doc as Record<string, unknown>;
        },
        (err) => {
          if (isNotFound(err)) return null;
          throw err;
        },
      );
    },
    attachment(dbName, id, file) {
      const db = openFor(dbName, id);
      if (!db) return undefined;
      return attachmentOf(db, id, file).catch((err) => {
        if (isNotFound(err)) return null;
        throw err;
      });
    },
    revision(dbName, id) {
      const db = openFor(dbName, id);
      if (!db) return undefined;
      return currentRevision(db, id).then((current) => (current && !current.deleted ? current.rev : null));
    },
    knowAttachments(dbName, id, rev, stubs) {
      const db = openFor(dbName, id);
      if (db) handAttachments(db, id, rev, stubs);
    },
  };
}

/**
 * Reads by a server admin answered from PouchDB directly (the gateway's reads: a document,
 * `GET /{db}/{id}`, and an attachment, `GET /{db}/{id}/{file}`, without a query), without the rest
 * of express-pouchdb's handling of a request (a session built again, the database's `_security`
 * read twice, the lookup of all databases, compression, its request log): a read of a missing
 * document cost 2-3 ms of CPU, 0.5-0.6 ms this way. The answers are the ones express-pouchdb sends
 * (the document, or CouchDB's `not_found`, with CouchDB's ETag; an attachment with its type, its
 * digest as ETag, 304 to a matching If-None-Match); `_security` binds no admin. Only databases
 * express-pouchdb has open (so they exist: a deleted one leaves its cache at once), and ids that do
 * not start with `_`; anything else, and any failure but a 404, goes the usual way.
 *
 * An attachment is read by its stub, remembered with the document's revision (`attachmentsOf`):
 * PouchDB's `getAttachment` reads and parses the whole document each time, and the first read of
 * each tarball of a package of thousands of versions cost 30-300 ms of CPU.
 *
 * A database's information (`GET /{db}`) is answered the same way: the gateway asks for it four
 * times a second for each database it follows (its caches and search index watch for changes), the
 * most of what an idle registry does. 1.0-1.2 ms of CPU each, 0.5 ms this way. The answer is
 * express-pouchdb's, `instance_start_time` included once `instanceStartTime` knows express-pouchdb's
 * (replication compares it with the one `_ensure_full_commit` reports); until then it goes the usual way.
 */
function adminReads(databases: LocalDatabases, instanceStartTime: () => string | undefined): express.Router {
  /** The database of an admin's plain read, or null when the request goes the usual way. */
  const databaseFor = (req: express.Request): Opened | null => {
    const { db: name, id = '' } = req.params as { db: string; id?: string };
    if (req.method !== 'GET' || req.url.includes('?') || id.startsWith('_')) return null;
    if (!(pinnedSession(req).userCtx.roles || []).includes('_admin')) return null;
    return databases.open(name);
  };
  const notFound = (req: express.Request, res: express.Response, next: express.NextFunction) => (err: { status?: number; name?: string; message?: string } | null | undefined) => {
    if (!err || err.status !== 404) return next();
    answerJson(req, res, 404, { error: err.name || 'not_found', reason: err.message || 'missing' });
  };
  const router = express.Router();
  router.get('/:db', (req, res, next) => {
    const startTime = instanceStartTime();
    const db = startTime === undefined ? null : databaseFor(req);
    if (!db) return next();
    db.mine.info().then((info) => answerJson(req, res, 200, { ...info, db_name: req.params.db, instance_start_time: startTime }), () => next());
  });
  router.get('/:db/:id', (req, res, next) => {
    const db = databaseFor(req);
    if (!db) return next();
    db.mine.get(req.params.id).then((doc) => {
      res.setHeader('ETag', '"' + doc._rev + '"');
      answerJson(req, res, 200, doc);
    }, notFound(req, res, next));
  });
  router.get('/:db/:id/:file', (req, res, next) => {
    const db = databaseFor(req);
    if (!db) return next();
    attachmentOf(db, req.params.id, req.params.file)
      .then((found) => {
        if (!found) return answerJson(req, res, 404, { error: 'not_found', reason: 'missing' });
        res.setHeader('ETag', found.etag);
        res.setHeader('Content-Type', found.contentType);
        res.status(200).send(found.data);
      })
      .catch(notFound(req, res, next));
  });
  return router;
}

/** express-pouchdb's `instance_start_time`, from its answer about `_users` (undefined if it gave none). */
async function expressPouchStartTime(url: string, headers: Record<string, string>): Promise<string | undefined> {
  try {
    const response = await fetch(url + '/_users', { headers: { ...headers, accept: 'application/json' } });
    const info = (await response.json()) as { instance_start_time?: unknown };
    return typeof info.instance_start_time === 'string' ? info.instance_start_time : undefined;
  } catch {
    return undefined;
  }
}

/** JSON as express-pouchdb (and CouchDB) sends it: `application/json` when asked for, else `text/plain`, with a newline. */
function answerJson(req: express.Request, res: express.Response, status: number, body: unknown): void {
  res.status(status);
  res.setHeader('Content-Type', req.accepts(['text', 'json']) === 'json' ? 'application/json' : 'text/plain; charset=utf-8');
  res.end(JSON.stringify(body) + '\n');
}

export async function startEmbeddedCouch(options: EmbeddedOptions): Promise<EmbeddedCouch> {
  const dir = join(options.dataDir, 'couchdb');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const configPath = join(dir, 'config.json');
  await writeServerConfig(configPath, options.adminName, options.adminPassword);
  hashUserPasswordsStrongly();
  cacheCompiledDesignFunctions();
  cacheDesignDocumentReads();
  answerKeyedAllDocsFromMetadata();
  cacheSecurityReads();
  countConflictingWrites();
  await plainPouchErrorStacks();
  cacheDiskSizes();
  removeUploadedFiles();
  let ownHosts = new Set<string>();
  // Remote databases (replication's sources and targets) are asked through the outbound policy.
  const remoteFetch = policedFetch(options.outbound, (url) => ownHosts.has(hostOf(url)));
  const LocalPouch = PouchDB.defaults({ prefix: dir + '/', fetch: remoteFetch });
  const replications = trackReplications(LocalPouch as unknown as { replicate: (...args: unknown[]) => Replication }, remoteFetch);
  const couchApp = expressPouchDB(LocalPouch, {
    configPath,
    logPath: join(dir, 'log.txt'),
    mode: 'fullCouchDB',
    overrideMode: { exclude: EXCLUDED_PARTS },
  });
  guardSecurityDocument(couchApp);
  guardAccessDesign(couchApp);

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  let selfUrl = '';
  const adminHeaders = proxyHeaders(options.proxySecret, options.adminName, ['_admin']);
  const auth = new Authenticator({
    secret: options.proxySecret,
    adminHash: async (name) => {
      const admins = (couchApp.couchConfig.getSection('admins') || {}) as Record<string, unknown>;
      return Object.prototype.hasOwnProperty.call(admins, name) ? admins[name] : undefined;
    },
    readUser: async (name) => {
      const response = await fetch(selfUrl + '/_users/' + encodeURIComponent('org.couchdb.user:' + name), { headers: { ...adminHeaders, accept: 'application/json' } });
      if (response.status === 404) return null;
      if (!response.ok) throw new Error('_users answered ' + response.status);
      return (await response.json()) as StoredUser;
    },
  });
  let hosts = new Set<string>();
  app.use(hostGuard(() => hosts));
  app.use(identify(auth, options.proxySecret));
  app.use(sessionRoutes());
  app.use(authorization(securityReader(() => selfUrl, adminHeaders)));
  app.use(bodyGuard());
  app.use(siteOnUsers());
  app.use(adminConfigRoutes(couchApp.couchConfig));
  app.post('/:db/_bulk_docs', keepReplicatedHistory);
  const longpoll = longpollChanges(() => selfUrl, options.proxySecret);
  app.get('/:db/_changes', longpoll);
  // CouchDB filters a POSTed `_changes?filter=_selector` by the body's `selector` (replication
  // excluding design documents uses it); express-pouchdb reads only `doc_ids` from that body.
  app.post(
    '/:db/_changes',
    express.json({ limit: '1mb' }),
    (req, _res, next) => {
      const body = req.body as { selector?: unknown } | undefined;
      if (body && typeof body.selector === 'object' && body.selector !== null) {
        (req.query as Record<string, unknown>).selector = body.selector;
        (req.query as Record<string, unknown>).filter = '_selector';
      }
      next();
    },
    longpoll,
  );
  // `open_revs` (multipart for CouchDB's replicator), `_bulk_get` and `latest` as CouchDB answers them.
  app.use(documentRevisions(LocalPouch as unknown as RevisionsPouch));
  let startTime: string | undefined = undefined; // until the server has told it (below)
  const databases = localDatabases(LocalPouch);
  app.use(adminReads(databases, () => startTime));
  app.use(couchApp);
  // Whatever fails in a request is answered as CouchDB would, never with an HTML page or a crash.
  app.use((err: { status?: number; statusCode?: number; message?: string }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    void _next;
    const status = err.status || err.statusCode || 500;
    if (res.headersSent) return res.destroy();
    if (status >= 400 && status < 500) res.status(status).json({ error: 'bad_request', reason: err.message || 'Bad request.' });
    else res.status(500).json({ error: 'unknown_error', reason: 'The server failed to handle this request.' });
  });

  const host = options.host || '127.0.0.1';
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port, host, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  hosts = new Set([host, '127.0.0.1', 'localhost', '[::1]'].map((name) => name + ':' + port).concat((options.allowedHosts || []).map((name) => name.toLowerCase())));
  selfUrl = 'http://' + host + ':' + port;
  ownHosts = new Set([host, '127.0.0.1', 'localhost', '[::1]'].map((name) => hostOf(new URL('http://' + (isIP(name) === 6 ? '[' + name + ']' : name) + ':' + port))));
  startTime = await expressPouchStartTime(selfUrl, adminHeaders);
  return {
    url: 'http://' + host + ':' + port,
    port,
    local: inProcessReads(databases),
    close: async () => {
      await replications.cancelAll();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
