/** The gateway's Express application: the npm API in front of CouchDB. */
import express, { NextFunction, Request, Response } from 'express';
import { IncomingMessage, ServerResponse } from 'http';
import { redactedPath, requestDone } from './access-log';
import { fastPath } from './fast-path';
import { authenticate } from './auth';
import { Context } from './context';
import { distTagRoutes } from './controllers/dist-tags';
import { stageRoutes } from './controllers/stage';
import { packageAccessRoutes } from './controllers/package-access';
import { orgRoutes } from './controllers/orgs';
import { packageRoutes, refreshIfStale } from './controllers/packages';
import { replicationRoutes } from './controllers/replication';
import { searchRoutes } from './controllers/search';
import { downloadRoutes } from './controllers/downloads';
import { tokenRoutes } from './controllers/tokens';
import { oidcExchangeRoutes, trustRoutes } from './controllers/trust';
import { userRoutes } from './controllers/users';
import { webLoginRoutes } from './controllers/weblogin';
import { WebLoginStore } from './weblogin';
import type { WebOtpSetting } from './second-factor';
import { viewRoutes } from './controllers/views';
import { siteFileRoutes } from './controllers/site-files';
import { operationsRoutes } from './controllers/operations';
import { webRoutes } from './controllers/web';
import { ssoRoutes } from './controllers/sso';
import { supplyChainRoutes } from './controllers/supply-chain';
import { couchdbProxyRoutes } from './controllers/couchdb-proxy';
import { WebSessions } from './web/sessions';
import { asHttpError, badRequest } from './errors';
import { Budget } from '../lib/budget';
import { jsonDepth } from '../lib/json-depth';

/**
 * The largest body read from a request without credentials: sign-up and login, `npm audit` of a large
 * tree (its bulk advisory request lists names and versions, well under this for thousands of packages).
 */
export const ANONYMOUS_BODY_BYTES = 2 * 1024 * 1024;

/**
 * How many bytes of large bodies (publishes) are read and parsed at once, at least one of the largest
 * allowed (`MAX_PUBLISH_BYTES`); the others wait their turn. A parsed body costs a few times its size.
 */
export const LARGE_BODY_BUDGET_BYTES = 128 * 1024 * 1024;

/** Whether a request's body comes compressed (`Content-Encoding` other than identity). */
const compressed = (req: IncomingMessage): boolean => !!req.headers['content-encoding'] && req.headers['content-encoding'] !== 'identity';

/** Deeper JSON bodies are refused: they serve no npm request and would exhaust the stack when written. */
export const MAX_JSON_DEPTH = 64;

const NETWORK_CODES = ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT'];

/** Whether an error is CouchDB being out of reach (nano's and fetch's ways of saying it), not a fault of the request. */
export function couchUnreachable(err: unknown): boolean {
  const e = err as { message?: string; code?: string; cause?: { code?: string } } | null;
  if (!e || typeof e !== 'object') return false;
  if (typeof e.message === 'string' && e.message.startsWith('error happened in your connection')) return true;
  return NETWORK_CODES.indexOf(String(e.code || (e.cause && e.cause.code))) !== -1;
}

/**
 * What the registry's HTTP server runs for every request: the fast path of the hottest ones (an
 * anonymous read of a tarball or a packument held in memory), else the Express application.
 */
export function createHandler(ctx: Context): (req: IncomingMessage, res: ServerResponse) => void {
  const app = createApp(ctx);
  const fast = fastPath(ctx, (name) => refreshIfStale(ctx, name));
  return (req, res) => {
    if (!fast(req, res)) app(req, res);
  };
}

export function createApp(ctx: Context): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('trust proxy', ctx.config.trustProxy);

  const base = ctx.config.basePath;
  // One access-log line per request (never credentials: the path without its query, the user's name)
  // and the request metrics.
  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    // The path as asked: a mounted router (the CouchDB proxy) shortens `req.path` while it answers.
    const path = req.path;
    res.on('finish', () => requestDone(ctx, req.method, path, res.statusCode, started, (res.locals.user as { name?: string } | undefined)?.name ?? (res.locals.couchAdmin as string | undefined)));
    next();
  });

  const api = express.Router();
  if (base) {
    app.use(base, api);
    app.use((req, res, next) => {
      if (req.path.startsWith(base + '/') || req.path === base) return next();
      res.status(404).json({ error: 'This registry is served under ' + base + '/: use --registry ' + ctx.baseUrl + '/ (REGISTRY_PUBLIC_URL).' });
    });
  } else {
    app.use(api);
  }

  // What no route marks otherwise (search, dist-tags, the replication feed, views, errors) is for the
  // caller only: no shared cache in front of the registry keeps it. Packuments and tarballs anyone
  // may read are marked public by their routes.
  api.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'private, no-cache');
    next();
  });
  api.get('/-/ping', (_req, res) => res.json({}));
  api.use(siteFileRoutes());
  api.use(operationsRoutes(ctx));

  const webSessions = new WebSessions(ctx.couch, ctx.config.stateDb, base || '/', (ctx.config.publicUrl || '').startsWith('https:'));
  // CouchDB and Fauxton under /-/couchdb/ for server admins, streamed: before any body is read here.
  api.use(couchdbProxyRoutes(ctx, webSessions));
  // The pages authenticate with their own session cookie, never with the API's credentials, and read
  // only small forms of their own.
  api.use(webRoutes(ctx, webSessions));
  const webLogins = new WebLoginStore(ctx.couch, ctx.config.stateDb);
  // Single sign-on for the pages and for web logins (gateway/sso.ts); answers 404 pages when not configured.
  api.use(ssoRoutes(ctx, webSessions, webLogins));
  // Who asks is known before a body is read: only a logged-in user may send a publish-sized body, so
  // that nobody can make the registry hold large bodies in memory without credentials.
  // Trusted publishing's exchange authenticates with the CI's ID token, not with a token of this registry.
  api.use(oidcExchangeRoutes(ctx));
  api.use(authenticate(ctx.accounts, ctx.tokens, ctx.config));
  const parseAs = (limit: number) => express.json({ limit, strict: false, type: ['application/json', 'application/*+json', 'text/plain'] });
  const parseLarge = parseAs(ctx.config.maxPublishBytes);
  const parseSmall = parseAs(ANONYMOUS_BODY_BYTES);
  // Large bodies are read and parsed a few at a time: a parsed publish costs several times its size.
  const largeBodies = new Budget(Math.max(ctx.config.maxPublishBytes, LARGE_BODY_BUDGET_BYTES));
  api.use((req, res, next) => {
    // npm compresses no large body (only `npm audit` sends gzip): a compressed body inflates to no more
    // than a small one, so that a few kilobytes cannot become a publish-sized body in memory.
    const large = !!res.locals.user && !compressed(req);
    const limit = large ? ctx.config.maxPublishBytes : ANONYMOUS_BODY_BYTES;
    const declared = Number(req.headers['content-length']);
    // A body declared too large is refused before a byte of it is read (the body parser would read it
    // to the end first); Node discards what the client still sends.
    if (declared > limit) {
      return next(Object.assign(new Error('request entity too large'), { type: 'entity.too.large', status: 413 }));
    }
    const hasBody = declared > 0 || req.headers['transfer-encoding'] !== undefined;
    if (!large || !hasBody || declared <= ANONYMOUS_BODY_BYTES) return (large ? parseLarge : parseSmall)(req, res, next);
    void largeBodies.take(Number.isFinite(declared) && declared > 0 ? declared : limit).then((release) => {
      res.on('close', release);
      if (res.destroyed) return release();
      parseLarge(req, res, next);
    });
  });
  api.use((req, _res, next) => {
    const depth = jsonDepth(req.body, MAX_JSON_DEPTH);
    if (depth > MAX_JSON_DEPTH) return next(badRequest('The request body nests deeper than ' + MAX_JSON_DEPTH + ' levels; package manifests never need that many. Flatten it.'));
    next();
  });

  api.use(userRoutes(ctx));
  api.use(tokenRoutes(ctx));
  // The second factor offers npm the web one-time password through the same store (gateway/second-factor.ts).
  const webOtp: WebOtpSetting = { store: webLogins, baseUrl: () => ctx.baseUrl };
  app.locals.webOtp = webOtp;
  api.use(webLoginRoutes(ctx, webLogins));
  api.use(searchRoutes(ctx));
  api.use(downloadRoutes(ctx));
  api.use(distTagRoutes(ctx));
  api.use(packageAccessRoutes(ctx));
  api.use(orgRoutes(ctx));
  api.use(trustRoutes(ctx));
  api.use(stageRoutes(ctx));
  api.use(viewRoutes(ctx));
  api.use(replicationRoutes(ctx));
  api.use(supplyChainRoutes(ctx));
  api.use(packageRoutes(ctx));

  api.use((req, res) => {
    res.status(404).json({ error: 'Nothing here: ' + req.method + ' ' + req.path + ' is not part of the npm registry API.' });
  });

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const known = asHttpError(err);
    if (known) {
      res.set(known.headers).status(known.status).json({ ...known.extra, error: known.message });
      return;
    }
    const e = err as { type?: string; status?: number; message?: string; limit?: number };
    if (e.type === 'entity.too.large' && res.locals.user && compressed(req)) {
      res.status(413).json({ error: 'A compressed request body is read up to ' + ANONYMOUS_BODY_BYTES / 1024 / 1024 + ' MiB once inflated; send a large body (a publish) uncompressed, as npm does.' });
      return;
    }
    if (e.type === 'entity.too.large' && !res.locals.user) {
      res.status(413).json({ error: 'The request body is larger than this registry reads without credentials (' + ANONYMOUS_BODY_BYTES / 1024 / 1024 + ' MiB: enough for sign-up, login and `npm audit`). Log in (`npm login`) to send larger bodies, such as a publish.' });
      return;
    }
    if (e.type === 'entity.too.large') {
      const mb = Math.round((ctx.config.maxPublishBytes / 1024 / 1024) * 10) / 10;
      res.status(413).json({ error: 'The request body is larger than this registry accepts (' + mb + ' MiB, MAX_PUBLISH_BYTES). Make the package smaller or ask an admin to raise the limit.' });
      return;
    }
    if (e.type === 'entity.parse.failed') {
      res.status(400).json({ error: 'The request body is not valid JSON: ' + e.message });
      return;
    }
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      res.status(e.status).json({ error: e.message || 'Bad request.' });
      return;
    }
    if (couchUnreachable(err)) {
      ctx.log.warn({ err: (err as Error).message, method: req.method, url: redactedPath(req.originalUrl.split('?')[0]) }, 'CouchDB unreachable');
      res.status(502).json({ error: 'The registry\'s database (CouchDB) cannot be reached right now; try again shortly. Admins: check CouchDB.' });
      return;
    }
    ctx.log.error({ err, method: req.method, url: redactedPath(req.originalUrl.split('?')[0]) }, 'request failed');
    res.status(500).json({ error: 'The registry failed to handle this request; the error is logged. Try again later.' });
  });

  return app;
}
