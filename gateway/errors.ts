/**
 * Errors that reach an npm user: a status and a message that says what went wrong and what to do.
 * The domain's errors (`core/errors.ts`) become HTTP here and nowhere else.
 */
import { DomainError, DomainErrorKind } from '../core/errors';
import { isNotDurable } from '../couchdb/client';

export class HttpError extends Error {
  constructor(
    public readonly status: number,
    message: string,
    public readonly headers: Record<string, string> = {},
    /** More of the JSON answer than its `error` (the web one-time password's `authUrl` and `doneUrl`). */
    public readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string) => new HttpError(400, message);
export const unauthorized = (message: string) =>
  new HttpError(401, message, { 'WWW-Authenticate': 'Basic realm="registry", charset="UTF-8"' });
export const forbidden = (message: string) => new HttpError(403, message);
export const notFound = (message: string) => new HttpError(404, message);
export const conflict = (message: string) => new HttpError(409, message);

const STATUS_OF: Record<DomainErrorKind, number> = {
  invalid: 400,
  forbidden: 403,
  'not-found': 404,
  conflict: 409,
  unavailable: 502,
  'timed-out': 504,
  // 424 Failed Dependency: npm, yarn and pnpm retry every 5xx (npm for 70 s) before they show the
  // reason; a 4xx reaches the user at once, with the upstream named.
  'upstream-failed': 424,
};

/** The status for a failure of the upstream registry (see `upstream-failed`). */
export const UPSTREAM_FAILED = STATUS_OF['upstream-failed'];

/** The answer for an error the gateway knows how to explain (its own or the domain's), or null. */
export function asHttpError(err: unknown): HttpError | null {
  if (err instanceof HttpError) return err;
  if (err instanceof DomainError) return new HttpError(STATUS_OF[err.kind], err.message);
  // A write CouchDB could not confirm on a quorum: not done, and worth a retry (clients retry a 503).
  if (isNotDurable(err)) return new HttpError(503, (err as Error).message + '.', { 'Retry-After': '2' });
  return null;
}
