/**
 * Errors that reach an npm user: a status and a message that says what went wrong and what to do.
 * The domain's errors (`core/errors.ts`) become HTTP here and nowhere else.
 */
import { DomainError, DomainErrorKind } from '../core/errors';

export class HttpError extends Error {
  constructor(
    public readonly status: number,
    message: string,
    public readonly headers: Record<string, string> = {},
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
};

/** The answer for an error the gateway knows how to explain (its own or the domain's), or null. */
export function asHttpError(err: unknown): HttpError | null {
  if (err instanceof HttpError) return err;
  if (err instanceof DomainError) return new HttpError(STATUS_OF[err.kind], err.message);
  return null;
}
