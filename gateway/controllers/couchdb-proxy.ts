/**
 * CouchDB's API and Fauxton through the gateway's own port, for server admins only: `/-/couchdb/<path>`
 * is CouchDB's `/<path>` (Fauxton at `/-/couchdb/_utils/`), so that a container exposes one port. No
 * npm package name starts with `-/`, so the prefix collides with none.
 *
 * - Who: a server admin (CouchDB's `[admins]`), by the pages' session (log in at `/-/web/login`; the
 *   cookie is `HttpOnly`, `SameSite=Lax`) or by Basic credentials (scripts). The check is the gateway's
 *   (throttled as every login here) and happens before anything reaches CouchDB: anonymous callers get
 *   401, everyone else 403, and a request body is then never read. npm tokens do not open CouchDB.
 * - As whom: the request goes on with CouchDB proxy authentication as that admin (the gateway's secret),
 *   so no password travels further. What the caller sent that could speak for someone at CouchDB
 *   (`Authorization`, `Cookie`, `X-Auth-CouchDB-*`, forwarding headers) is removed, and CouchDB's
 *   `Set-Cookie` never reaches the browser.
 * - Cross-site requests: a browser request from another site (its `Sec-Fetch-Site`, or an `Origin`
 *   that is not this registry) is refused unless it is a plain navigation (a link to Fauxton), and the
 *   answers may not be framed, so a page elsewhere cannot make an admin's browser write.
 * - Streaming: bodies go through as they arrive, both ways (`http-proxy-middleware`); only what can
 *   write `_design/access` is read first, to check its rules: a write of it, and `POST` and `_bulk_docs`
 *   of the registry database (CouchDB runs no validate_doc_update for design documents; the embedded
 *   server checks them too, however they are written).
 */
import { NextFunction, Request, Response, Router } from 'express';
import { IncomingMessage, ServerResponse } from 'http';
import { createProxyMiddleware, fixRequestBody } from 'http-proxy-middleware';
import { ACCESS_DESIGN_ID, accessDesignProblem } from '../../core/access';
import { abandonSignal, clientAddress } from '../auth';
import { Context } from '../context';
import { crossSitePost, WebSessions } from '../web/sessions';

export const COUCHDB_PREFIX = '/-/couchdb';

/** Largest `_design/access` accepted through the proxy (it is read whole, to be checked). */
const ACCESS_DESIGN_BYTES = 1024 * 1024;
/** Largest `POST /<registry db>` or `_bulk_docs` to it accepted through the proxy (read whole: it may hold `_design/access`). */
const REGISTRY_BULK_BYTES = 64 * 1024 * 1024;

/** Request headers that could make CouchDB take the request for someone else's, or that it must not see. */
function strippedHeader(name: string): boolean {
  return name === 'authorization' || name === 'cookie' || name.startsWith('x-auth-couchdb-') || name.startsWith('x-forwarded-') || name === 'forwarded' || name === 'x-real-ip';
}

/** CouchDB's kind of error answer, which Fauxton shows (`reason`). */
function refuse(res: Response, status: number, error: string, reason: string, headers: Record<string, string> = {}): void {
  // A body the caller is still sending is not read: the connection closes after this answer.
  if (Number(res.req.headers['content-length']) > 0 || res.req.headers['transfer-encoding'] !== undefined) res.setHeader('Connection', 'close');
  res.status(status).set({ 'Cache-Control': 'no-store', ...headers }).json({ error, reason });
}

/**
 * The document a request writes, when it names one: `/<db>/<id>` (also `_design/<name>` and `%2F`);
 * `id` is empty for the database itself. Empty segments are dropped as CouchDB drops them, for which
 * `/db//_design/access` and `/db/_design/access/` are `/db/_design/access`.
 */
function documentOf(url: string): { db: string; id: string } | null {
  const segments = url.split('?')[0].split('/').filter(Boolean);
  let decoded: string[];
  try {
    decoded = segments.map((s) => decodeURIComponent(s));
  } catch {
    return null;
  }
  if (decoded.length < 1 || !decoded[0]) return null;
  const [db, ...rest] = decoded;
  return { db, id: rest.join('/') };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The JSON object in `body`, or null when it holds something else (a body forwarded after a check must be one: see fixRequestBody). */
function jsonObjectOf(body: Buffer): Record<string, unknown> | null {
  try {
    const value = JSON.parse(body.toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** Reads a request body of at most `limit` bytes; null when it is larger. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        resolve(null);
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * A script put at the top of Fauxton's page: Fauxton takes CouchDB to be two levels above its page
 * (`../..`, the parent of the prefix here), asks some paths absolutely (`/_session`), and its router
 * expects its page at `/_utils/`, as if it were served at the root (apache/couchdb-fauxton#944, #1199).
 * Its requests are kept under the prefix, and its router sees the page's path without it.
 */
export function fauxtonShim(prefix: string): string {
  const parent = prefix.slice(0, prefix.lastIndexOf('/') + 1);
  return '<script>(function () {\n' +
    '  var prefix = ' + JSON.stringify(prefix) + ', parent = ' + JSON.stringify(parent) + ';\n' +
    '  function under(url) {\n' +
    '    var a = new URL(String(url), location.href);\n' +
    '    if (a.origin !== location.origin || a.pathname === prefix || a.pathname.indexOf(prefix + "/") === 0) return url;\n' +
    '    var path = a.pathname.indexOf(parent) === 0 ? "/" + a.pathname.slice(parent.length) : a.pathname;\n' +
    '    return prefix + path + a.search + a.hash;\n' +
    '  }\n' +
    '  var open = XMLHttpRequest.prototype.open;\n' +
    '  XMLHttpRequest.prototype.open = function (method, url) { arguments[1] = under(url); return open.apply(this, arguments); };\n' +
    '  if (window.fetch) { var f = window.fetch; window.fetch = function (input, init) { return f.call(this, typeof input === "string" || input instanceof URL ? under(input) : input, init); }; }\n' +
    // Its router (Backbone's, root `/_utils/`) routes only when the page's path, which it decodes, starts with its root.
    '  var decode = window.decodeURI;\n' +
    '  window.decodeURI = function (text) { return decode(text === location.pathname && text.indexOf(prefix + "/") === 0 ? text.slice(prefix.length) : text); };\n' +
    '})();</script>';
}

export function couchdbProxyRoutes(ctx: Context, sessions: WebSessions): Router {
  const router = Router();
  const base = ctx.config.basePath;
  const prefix = base + COUCHDB_PREFIX;
  // The base URL is known once the server listens.
  const publicOrigin = () => new URL(ctx.baseUrl).origin;
  const target = ctx.couch.url.origin;

  /** The server admin asking, by Basic credentials or the pages' session; a refusal is answered here. */
  async function admin(req: Request, res: Response): Promise<string | null> {
    const header = req.headers.authorization;
    let name: string | null = null;
    if (header) {
      const [scheme, value = ''] = header.split(' ', 2);
      if (!/^basic$/i.test(scheme)) {
        refuse(res, 401, 'unauthorized', 'CouchDB through the registry takes a server admin\'s Basic credentials or the registry pages\' login (' + base + '/-/web/login), not npm tokens.');
        return null;
      }
      const decoded = Buffer.from(value.trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const identity = await ctx.accounts.verify(colon === -1 ? decoded : decoded.slice(0, colon), colon === -1 ? '' : decoded.slice(colon + 1), clientAddress(req), abandonSignal(res));
      if (!identity) {
        refuse(res, 401, 'unauthorized', 'Wrong user name or password.');
        return null;
      }
      name = identity.name;
    } else {
      const session = await sessions.user(req);
      const account = session ? await ctx.accounts.account(session.user) : null;
      if (session && account && session.account === account.stamp) name = account.name;
    }
    if (!name) {
      const navigation = req.method === 'GET' && String(req.headers.accept || '').includes('text/html');
      if (navigation) {
        res.redirect(303, base + '/-/web/login?next=' + encodeURIComponent(req.originalUrl.split('?')[0]));
        return null;
      }
      refuse(res, 401, 'unauthorized', 'CouchDB and Fauxton here are for the registry\'s server admins: log in at ' + publicOrigin() + base + '/-/web/login, or send Basic credentials.');
      return null;
    }
    const account = await ctx.accounts.account(name);
    if (!account || !account.admin) {
      refuse(res, 403, 'forbidden', 'User "' + name + '" is not a server admin of this registry; CouchDB and Fauxton here are for server admins only.');
      return null;
    }
    return account.name;
  }

  /** Whether a browser sent this from another site (a navigation by link is allowed: it writes nothing). */
  function crossSite(req: Request): boolean {
    const navigation = (req.method === 'GET' || req.method === 'HEAD') && req.headers['sec-fetch-mode'] === 'navigate';
    if (navigation) return false;
    if (crossSitePost(req, publicOrigin())) return true;
    const site = req.headers['sec-fetch-site'];
    return typeof site === 'string' && site !== 'same-origin' && site !== 'none';
  }

  /** Refuses a write of `_design/access` whose rules are invalid (answered here); true when it may go on. */
  async function accessDesignAllowed(req: Request, res: Response): Promise<boolean> {
    const doc = documentOf(req.url);
    if (!doc || doc.db !== ctx.config.registryDb) return true;
    const destination = String(req.headers.destination || '').split('?')[0];
    if (req.method === 'COPY' && safeDecode(destination) === ACCESS_DESIGN_ID) {
      refuse(res, 403, 'forbidden', 'Write _design/access with PUT (as Fauxton saves it), so that its rules are checked; a COPY over it is refused.');
      return false;
    }
    if (req.method === 'POST' && (doc.id === '' || doc.id === '_bulk_docs')) return writtenDocsAllowed(req, res, doc.id === '_bulk_docs');
    if (doc.id !== ACCESS_DESIGN_ID) return true;
    if (req.method === 'GET' || req.method === 'HEAD') return true;
    if (req.method === 'DELETE') {
      refuse(res, 403, 'forbidden', accessDesignProblem({ _deleted: true }, null) as string);
      return false;
    }
    if (req.method !== 'PUT') {
      refuse(res, 403, 'forbidden', 'Write _design/access with PUT (as Fauxton saves it), so that its rules are checked.');
      return false;
    }
    const body = await readBody(req, ACCESS_DESIGN_BYTES);
    if (!body) {
      refuse(res, 413, 'too_large', '_design/access is larger than ' + ACCESS_DESIGN_BYTES / 1024 + ' KiB; access rules never need that much.');
      return false;
    }
    const newDoc = jsonObjectOf(body) as { rules?: unknown; _deleted?: unknown } | null;
    if (!newDoc) {
      refuse(res, 400, 'bad_request', 'The body is not a JSON document (an object).');
      return false;
    }
    if (!(await accessDesignsAllowed(res, [newDoc]))) return false;
    (req as Request & { body: unknown }).body = newDoc;
    return true;
  }

  /** Whether each `_design/access` a request writes is valid against the live one; refused (403) with the first problem if not. */
  async function accessDesignsAllowed(res: Response, written: { rules?: unknown; orgs?: unknown; _deleted?: unknown }[]): Promise<boolean> {
    if (!written.length) return true;
    const live = (await ctx.registry.get(ACCESS_DESIGN_ID)) as { rules?: unknown; orgs?: unknown } | null;
    for (const newDoc of written) {
      const problem = accessDesignProblem(newDoc, live);
      if (problem) {
        refuse(res, 403, 'forbidden', problem);
        return false;
      }
    }
    return true;
  }

  /**
   * `POST /<registry db>` and its `_bulk_docs` can write `_design/access` too (CouchDB checks no design
   * document): read whole, each `_design/access` in them is checked as a PUT of it is.
   */
  async function writtenDocsAllowed(req: Request, res: Response, bulk: boolean): Promise<boolean> {
    const body = await readBody(req, REGISTRY_BULK_BYTES);
    if (!body) {
      refuse(res, 413, 'too_large', 'Writes to the registry database through the registry are read whole and checked, up to ' + REGISTRY_BULK_BYTES / 1024 / 1024 + ' MiB: send fewer documents at once.');
      return false;
    }
    const parsed = jsonObjectOf(body) as { docs?: unknown } | null;
    if (!parsed) {
      refuse(res, 400, 'bad_request', 'The body is not a JSON object (writes to the registry database through the registry are checked, so they are plain JSON, not compressed).');
      return false;
    }
    const docs = bulk ? (parsed && Array.isArray(parsed.docs) ? parsed.docs : []) : [parsed];
    const written = docs.filter((d): d is { _id: string; rules?: unknown; orgs?: unknown; _deleted?: unknown } => !!d && typeof d === 'object' && (d as { _id?: unknown })._id === ACCESS_DESIGN_ID);
    if (!(await accessDesignsAllowed(res, written))) return false;
    (req as Request & { body: unknown }).body = parsed;
    return true;
  }

  const forward = createProxyMiddleware<Request, Response>({
    target,
    changeOrigin: true,
    xfwd: false,
    // Long feeds (`_changes?feed=continuous`, replication) stay open as long as CouchDB keeps them.
    proxyTimeout: 0,
    on: {
      proxyReq: (proxyReq, req) => {
        for (const name of proxyReq.getHeaderNames()) if (strippedHeader(name)) proxyReq.removeHeader(name);
        const who = (req as Request).res?.locals.couchAdmin as string;
        for (const [name, value] of Object.entries(ctx.couch.proxyAuthHeaders(who, ['_admin']))) proxyReq.setHeader(name, value);
        // A body read here (to check the `_design/access` in it) is written on whole, with its length, however it came (in chunks, too).
        if ((req as Request & { body?: unknown }).body !== undefined) {
          proxyReq.removeHeader('transfer-encoding');
          proxyReq.setHeader('content-type', 'application/json');
          fixRequestBody(proxyReq, req as Request);
        }
      },
      proxyRes: (proxyRes) => {
        delete proxyRes.headers['set-cookie'];
        // CouchDB's redirects (`/_utils` → `/_utils/`) name its own paths: they stay under the prefix.
        const location = proxyRes.headers.location;
        if (typeof location === 'string') {
          const path = location.startsWith(target) ? location.slice(target.length) : location;
          if (path.startsWith('/')) proxyRes.headers.location = prefix + path;
        }
        proxyRes.headers['x-frame-options'] = 'DENY';
        proxyRes.headers['content-security-policy'] = "frame-ancestors 'none'";
      },
      error: (err, _req, res) => {
        const response = res as ServerResponse;
        if (response.headersSent || typeof response.writeHead !== 'function') return void response.destroy?.();
        response.writeHead(502, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
        response.end(JSON.stringify({ error: 'bad_gateway', reason: 'CouchDB cannot be reached from the registry right now (' + ((err as { code?: string }).code || err.message) + '); try again shortly.' }));
      },
    },
  });

  /** Fauxton's page, with `fauxtonShim` in it (a few kilobytes, read whole). */
  async function fauxtonPage(res: Response): Promise<void> {
    const answer = await ctx.couch.adminFetch('/_utils/index.html', { headers: { 'accept-encoding': 'identity' } });
    const html = await answer.text();
    if (!answer.ok) return refuse(res, 502, 'bad_gateway', 'CouchDB did not send Fauxton (' + answer.status + ').');
    const page = html.replace(/<head[^>]*>/i, (head) => head + fauxtonShim(prefix));
    res.status(200).set({ 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store', 'Content-Security-Policy': "frame-ancestors 'none'" }).send(page);
  }

  router.use(COUCHDB_PREFIX, (req: Request, res: Response, next: NextFunction) => {
    (async () => {
      res.setHeader('X-Frame-Options', 'DENY');
      if (crossSite(req)) {
        return refuse(res, 403, 'forbidden', 'This request to CouchDB was sent by a page of another site; use Fauxton or the API from this registry itself.');
      }
      if (req.method === 'DELETE' && req.url.split('?')[0] === '/_session') {
        // Fauxton's "Logout" (sent with dummy credentials): it ends the registry pages' session.
        await sessions.end(req, res);
        return void res.set('Cache-Control', 'no-store').json({ ok: true });
      }
      const name = await admin(req, res);
      if (!name) return;
      res.locals.couchAdmin = name;
      if (!(await accessDesignAllowed(req, res))) return;
      const path = req.url.split('?')[0];
      if (req.method === 'GET' && (path === '/_utils/' || path === '/_utils/index.html')) return fauxtonPage(res);
      await forward(req, res, next);
    })().catch(next);
  });

  return router;
}
