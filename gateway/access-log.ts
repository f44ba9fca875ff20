/**
 * What is recorded of every answered request: one access-log line at info, and the request metrics.
 * Paths that carry a secret (a token in `npm logout`'s and `npm token revoke`'s, a web login's key)
 * are recorded with that segment replaced by `<redacted>`.
 */
import { Context } from './context';

/** Routes whose last segment is a secret: `/-/user/token/<token>`, `/-/npm/v1/tokens/token/<token or key>`, `/-/v1/done/<key>`, `/-/login/<key>`. */
const SECRET_SEGMENT = /(\/-\/user\/token\/|\/-\/npm\/v1\/tokens\/token\/|\/-\/v1\/done\/|\/-\/login\/)[^/?]*/gi;

/** `path` with the secrets of the routes above replaced, for logs and metrics. */
export function redactedPath(path: string): string {
  return path.replace(SECRET_SEGMENT, '$1<redacted>');
}

/** The access-log line and the metrics of one answered request (`path` without its query). */
export function requestDone(ctx: Context, method: string, path: string, status: number, started: bigint, user: string | undefined, route?: string): void {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const base = ctx.config.basePath;
  const shown = redactedPath(path);
  ctx.metrics.request(method, base && shown.startsWith(base) ? shown.slice(base.length) || '/' : shown, status, seconds, route);
  ctx.log.info({ method, path: shown, status, ms: Math.round(seconds * 10000) / 10, user }, 'request');
}
