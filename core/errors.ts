/**
 * What the domain says went wrong, without HTTP: a kind and a message that says what to do. The
 * gateway turns a kind into a status in one place (`gateway/errors.ts`); the design documents turn
 * `forbidden` into CouchDB's `{forbidden}`.
 */
export type DomainErrorKind =
  /** The request itself is wrong (a bad name, a malformed body). */
  | 'invalid'
  /** The request is understood and refused by a rule. */
  | 'forbidden'
  | 'not-found'
  /** Someone else changed it first. */
  | 'conflict'
  /** Something the registry depends on (CouchDB) failed; trying again later may help. */
  | 'unavailable'
  /**
   * The upstream registry failed (unreachable, too slow, a broken answer) for something that is not
   * here: said at once, because clients retry a 5xx for a minute before they show anything.
   */
  | 'upstream-failed'
  /** Something the registry depends on did not answer in time. */
  | 'timed-out';

export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export const invalid = (message: string) => new DomainError('invalid', message);
export const refused = (message: string) => new DomainError('forbidden', message);
export const notFound = (message: string) => new DomainError('not-found', message);
export const unavailable = (message: string) => new DomainError('unavailable', message);
export const upstreamFailed = (message: string) => new DomainError('upstream-failed', message);
