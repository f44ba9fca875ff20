/** What is recorded of every answered request: one access-log line at info, and the request metrics. */
import { Context } from './context';

/** The access-log line and the metrics of one answered request (`path` without its query). */
export function requestDone(ctx: Context, method: string, path: string, status: number, started: bigint, user: string | undefined, route?: string): void {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const base = ctx.config.basePath;
  ctx.metrics.request(method, base && path.startsWith(base) ? path.slice(base.length) || '/' : path, status, seconds, route);
  ctx.log.info({ method, path, status, ms: Math.round(seconds * 10000) / 10, user }, 'request');
}
