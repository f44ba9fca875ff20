/**
 * The fast path of the hottest requests, anonymous reads of what is held in memory: a public
 * tarball, and a public packument. They are answered by the HTTP server itself, before Express (no
 * routing, body parsing or authentication to run), with the same checks and the same answer: the
 * access rules (as read less than two seconds ago), the supply-chain policy, and `If-None-Match`; a
 * tarball download is counted in memory (gateway/downloads.ts), a stale mirrored packument is
 * compared with its upstream. Anything else (a login, a query, a browser asking for a page, a
 * private or held-back package, something not in memory, rules not read lately) goes to Express,
 * which makes the same checks the slow way.
 */
import { IncomingMessage, ServerResponse } from 'http';
import { requestDone } from './access-log';
import { packumentShape } from './cache';
import { Context } from './context';
import { IMMUTABLE, REVALIDATE } from './http-cache';
import { withheldTarballKnown } from './writes';
import { parsePackagePath } from './paths';

/** Single-segment paths other routes answer before the package routes (a package of that name is read through Express). */
const OTHER_ROUTES = new Set(['favicon.ico', 'robots.txt']);

/**
 * Answers the request and returns true, or returns false (and touches nothing) for Express to answer
 * it. `refreshIfStale` is the package route's: a mirrored packument read is compared with its upstream when old.
 */
export function fastPath(ctx: Context, refreshIfStale: (name: string) => void): (req: IncomingMessage, res: ServerResponse) => boolean {
  const base = ctx.config.basePath;
  return (req, res) => {
    const method = req.method;
    if ((method !== 'GET' && method !== 'HEAD') || req.headers.authorization) return false;
    const url = req.url || '';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    if (base && !path.startsWith(base + '/')) return false;
    let parsed;
    try {
      parsed = parsePackagePath(base ? path.slice(base.length) : path);
    } catch {
      return false;
    }
    if (!parsed || parsed.name.startsWith('-') || parsed.name.startsWith('_')) return false;
    const { name, rest } = parsed;
    if (rest.length === 2 && rest[0] === '-' && path.endsWith('.tgz')) return tarball(req, res, method, path, name, rest[1]);
    // A query (`?write=true`), a browser's page or its cookies: Express.
    const plain = query === -1 && !req.headers.cookie && !String(req.headers.accept || '').includes('text/html');
    if (rest.length === 0 && plain && !OTHER_ROUTES.has(name)) return packument(req, res, method, path, name);
    return false;
  };

  function tarball(req: IncomingMessage, res: ServerResponse, method: string, path: string, name: string, file: string): boolean {
    const cached = ctx.tarballs.get(name, file);
    if (!cached || !cached.data || !ctx.access.anonymousMayReadNow(name)) return false;
    // Held back, or not known without reading CouchDB: Express answers it.
    if (withheldTarballKnown(ctx, name, file) !== undefined) return false;
    const started = process.hrtime.bigint();
    ctx.metrics.cache('tarball', true, cached.size);
    if (req.headers['if-none-match'] === cached.etag) {
      res.writeHead(304, { ETag: cached.etag, 'Cache-Control': IMMUTABLE });
      res.end();
    } else {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': cached.size, ETag: cached.etag, 'Cache-Control': IMMUTABLE });
      if (method === 'HEAD') res.end();
      else {
        res.end(cached.data);
        ctx.downloads?.count(name, file);
      }
    }
    requestDone(ctx, method, path, res.statusCode, started, undefined, 'tarball');
    return true;
  }

  function packument(req: IncomingMessage, res: ServerResponse, method: string, path: string, name: string): boolean {
    const cached = ctx.cache.get(name);
    if (!cached || !ctx.access.anonymousMayReadNow(name)) return false;
    // A mirrored package while the supply-chain policy cannot be read: Express refuses it.
    if (cached.mirrored && ctx.policy?.current.problem) return false;
    const started = process.hrtime.bigint();
    ctx.metrics.cache('packument', true, cached.full.length);
    if (cached.mirrored) refreshIfStale(name);
    const shape = packumentShape(cached, req.headers.accept);
    if (req.headers['if-none-match'] === shape.etag) {
      res.writeHead(304, { Vary: 'Accept', ETag: shape.etag, 'Cache-Control': REVALIDATE });
      res.end();
    } else {
      res.writeHead(200, { Vary: 'Accept', ETag: shape.etag, 'Cache-Control': REVALIDATE, 'Content-Type': shape.type, 'Content-Length': shape.body.length });
      if (method === 'HEAD') res.end();
      else res.end(shape.body);
    }
    requestDone(ctx, method, path, res.statusCode, started, undefined, 'packument');
    return true;
  }
}
