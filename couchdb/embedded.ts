/**
 * The embedded CouchDB-compatible server: express-pouchdb over PouchDB with LevelDB storage under
 * `<dataDir>/couchdb`, Fauxton at `/_utils`, an admin user (no admin party), and proxy
 * authentication so that the gateway can write as the real user. It listens on 127.0.0.1 only:
 * design-document code runs in this process.
 */
import express from 'express';
import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'fs';
import { Server } from 'http';
import { AddressInfo } from 'net';
import { join } from 'path';
import { proxyHeaders, verifyProxyHeaders } from './proxy-auth';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const PouchDB = require('pouchdb');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const expressPouchDB = require('express-pouchdb');

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  host?: string;
  adminName: string;
  adminPassword: string;
  proxySecret: string;
}

export interface EmbeddedCouch {
  url: string;
  port: number;
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

interface CouchSession {
  ok: boolean;
  userCtx: { name: string | null; roles: string[] };
  info: { authentication_db: string; authentication_handlers: string[]; authenticated?: string };
}

/**
 * express-pouchdb builds `req.couchSession` from cookies and Basic auth only. A request with valid proxy
 * headers gets its session pinned here, before that middleware, so the later assignment cannot replace it.
 */
function proxyAuthentication(secret: string): express.RequestHandler {
  return (req, _res, next) => {
    const user = verifyProxyHeaders(secret, req.headers);
    if (user) {
      pinSession(req, {
        ok: true,
        userCtx: { name: user.name, roles: user.roles },
        info: { authentication_db: '_users', authentication_handlers: ['proxy', 'cookie', 'default'], authenticated: 'proxy' },
      });
    }
    next();
  };
}

/** Gives the request its session for good: express-pouchdb's own authentication cannot replace it. */
function pinSession(req: express.Request, session: CouchSession): void {
  delete req.headers.authorization;
  Object.defineProperty(req, 'couchSession', {
    configurable: true,
    get: () => session,
    set: () => undefined,
  });
}

const BASIC_AUTH_TTL_MS = 60_000;

/**
 * Remembers successful Basic authentications for a minute, as CouchDB 3.4 does: express-pouchdb
 * checks the password with a PBKDF2 in plain JavaScript on every request (over 100 ms for a server
 * admin), which made a replication from this server spend most of its time hashing. Only successes
 * are kept, under a SHA-256 of the header; a changed password is seen within the minute.
 */
function basicAuthCache(sessionOf: (req: express.Request) => Promise<CouchSession | null>): express.RequestHandler {
  const known = new Map<string, { session: CouchSession; until: number }>();
  return (req, _res, next) => {
    const header = req.headers.authorization;
    if (!header || !/^basic /i.test(header) || req.path === '/_session' || (req as unknown as { couchSession?: unknown }).couchSession) return next();
    const key = createHash('sha256').update(header).digest('hex');
    const hit = known.get(key);
    if (hit && hit.until > Date.now()) {
      pinSession(req, hit.session);
      return next();
    }
    sessionOf(req)
      .then((session) => {
        if (session && session.userCtx && session.userCtx.name) {
          if (known.size >= 1000) known.clear();
          known.set(key, { session, until: Date.now() + BASIC_AUTH_TTL_MS });
          pinSession(req, session);
        }
        next();
      })
      .catch(next);
  };
}

/**
 * express-pouchdb crashes the process when a non-admin creates or deletes a database (its security
 * wrapper hands the route a rejected promise instead of a database). Those two requests are admin-only
 * in CouchDB, so they are checked here first, by asking the server's own `_session` who the caller is.
 */
function databaseAdminGuard(sessionOf: (req: express.Request) => Promise<CouchSession | null>): express.RequestHandler {
  return (req, res, next) => {
    const isDatabasePath = /^\/[^/]+\/?$/.test(req.path) && !req.path.startsWith('/_');
    if (!isDatabasePath || (req.method !== 'PUT' && req.method !== 'DELETE')) return next();
    sessionOf(req)
      .then((session) => {
        if (session && session.userCtx.roles.indexOf('_admin') !== -1) return next();
        res.status(401).json({ error: 'unauthorized', reason: 'You are not a server admin.' });
      })
      .catch(next);
  };
}

const ADMIN_HASH = /^-pbkdf2-([\da-f]+),([\da-f]+),(\d+)$/;
const PBKDF2_ITERATIONS = 10000;

/** CouchDB's admin password hash: `-pbkdf2-<derived key>,<salt>,<iterations>` (PBKDF2-SHA1, 20 bytes). */
export function hashAdminPassword(password: string, salt = randomBytes(16).toString('hex'), iterations = PBKDF2_ITERATIONS): string {
  return '-pbkdf2-' + pbkdf2Sync(password, salt, iterations, 20, 'sha1').toString('hex') + ',' + salt + ',' + iterations;
}

function adminHashMatches(hash: unknown, password: string): boolean {
  const match = typeof hash === 'string' ? ADMIN_HASH.exec(hash) : null;
  if (!match) return false;
  const expected = Buffer.from(hashAdminPassword(password, match[2], Number(match[3])));
  const given = Buffer.from(hash as string);
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/**
 * Writes express-pouchdb's configuration file before it starts: the admin (hashed, never in clear)
 * and the log level. Its own `set` rewrites the file through one shared temporary file, which races
 * with the rewrite it does at start-up, so the file is prepared here instead.
 */
function writeServerConfig(file: string, adminName: string, adminPassword: string): void {
  const config = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>) : {};
  const admins = (config.admins = config.admins || {});
  if (!adminHashMatches(admins[adminName], adminPassword)) admins[adminName] = hashAdminPassword(adminPassword);
  config.log = { ...(config.log || {}), level: 'warning' };
  const temp = file + '.registry-tmp';
  writeFileSync(temp, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  renameSync(temp, file);
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
  const compiled = new Map<string, unknown>();
  couchEval.evaluate = function (this: unknown, context: { _id?: string; _rev?: string } | undefined, extraVars: object | undefined, program: string) {
    if (extraVars && Object.keys(extraVars).length) return evaluate.call(this, context, extraVars, program);
    const key = String(context && context._id) + '@' + String(context && context._rev) + '\n' + program;
    let func = compiled.get(key);
    if (!func) {
      func = evaluate.call(this, context, extraVars, program);
      if (compiled.size > 100) compiled.clear();
      compiled.set(key, func);
    }
    return func;
  };
  couchEval.__registryCached = true;
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
function longpollChanges(selfUrl: () => string, secret: string, sessionOf: (req: express.Request) => Promise<CouchSession | null>): express.RequestHandler {
  return (req, res, next) => {
    if (req.query.feed !== 'longpoll') return next();
    (async () => {
      const session = await sessionOf(req);
      const user = session && session.userCtx;
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
        let empty = false;
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
function trackReplications(LocalPouch: { replicate: (...args: unknown[]) => Replication }): { cancelAll(): Promise<void> } {
  const running = new Map<Replication, Promise<void>>();
  let closing = false;
  const replicate = LocalPouch.replicate;
  LocalPouch.replicate = function (this: unknown, ...args: unknown[]) {
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

export async function startEmbeddedCouch(options: EmbeddedOptions): Promise<EmbeddedCouch> {
  const dir = join(options.dataDir, 'couchdb');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const configPath = join(dir, 'config.json');
  writeServerConfig(configPath, options.adminName, options.adminPassword);
  cacheCompiledDesignFunctions();
  cacheDiskSizes();
  const LocalPouch = PouchDB.defaults({ prefix: dir + '/' });
  const replications = trackReplications(LocalPouch as unknown as { replicate: (...args: unknown[]) => Replication });
  const couchApp = expressPouchDB(LocalPouch, {
    configPath,
    logPath: join(dir, 'log.txt'),
    mode: 'fullCouchDB',
    overrideMode: { exclude: EXCLUDED_PARTS },
  });

  const app = express();
  app.disable('x-powered-by');
  app.use(proxyAuthentication(options.proxySecret));
  let selfUrl = '';
  /** The session of a request: pinned by proxy authentication, or asked of the server once. */
  const sessionOf = async (req: express.Request): Promise<CouchSession | null> => {
    const pinned = (req as unknown as { couchSession?: CouchSession }).couchSession;
    if (pinned) return pinned;
    const headers: Record<string, string> = {};
    if (req.headers.authorization) headers.authorization = req.headers.authorization;
    if (req.headers.cookie) headers.cookie = req.headers.cookie;
    const response = await fetch(selfUrl + '/_session', { headers });
    return response.ok ? ((await response.json()) as CouchSession) : null;
  };
  app.use(basicAuthCache(sessionOf));
  app.use(databaseAdminGuard(sessionOf));
  const longpoll = longpollChanges(() => selfUrl, options.proxySecret, sessionOf);
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
  app.use(couchApp);

  const host = options.host || '127.0.0.1';
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port, host, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  selfUrl = 'http://' + host + ':' + port;
  return {
    url: 'http://' + host + ':' + port,
    port,
    close: async () => {
      await replications.cancelAll();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
