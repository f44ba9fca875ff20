/**
 * The fast path of the hottest request, an anonymous download of a public tarball held in memory:
 * answered by the HTTP server itself, before Express (no routing, body parsing or authentication to
 * run), with the same checks: the access rules (as read less than two seconds ago), the supply-chain
 * policy, and `If-None-Match`; a download is counted in memory (gateway/downloads.ts). Anything else
 * (a login, a private or held-back package, a tarball not in memory, rules not read lately) goes to
 * Express, which makes the same checks the slow way.
 */
import { IncomingMessage, ServerResponse } from 'http';
import { requestDone } from './access-log';
import { Context } from './context';
import { IMMUTABLE } from './http-cache';
import { withheldTarballKnown } from './writes';
import { parsePackagePath } from './paths';

/** Answers the request and returns true, or returns false (and touches nothing) for Express to answer it. */
export function tarballFastPath(ctx: Context): (req: IncomingMessage, res: ServerResponse) => boolean {
  const base = ctx.config.basePath;
  return (req, res) => {
    const method = req.method;
    if ((method !== 'GET' && method !== 'HEAD') || req.headers.authorization) return false;
    const url = req.url || '';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    if (!path.endsWith('.tgz') || (base && !path.startsWith(base + '/'))) return false;
    let parsed;
    try {
      parsed = parsePackagePath(base ? path.slice(base.length) : path);
    } catch {
      return false;
    }
    if (!parsed || parsed.rest.length !== 2 || parsed.rest[0] !== '-') return false;
    const { name } = parsed;
    const file = parsed.rest[1];
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
  };
}
