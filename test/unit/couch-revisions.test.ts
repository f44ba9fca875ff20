/**
 * Which callers of `open_revs` get multipart: CouchDB 3.4 decides with mochiweb's
 * `accepts_content_type("multipart/mixed")` (no Accept counts as `*\/*`); the embedded server decides
 * the same way, so that JSON callers keep JSON and CouchDB's replicator gets multipart.
 */
import { acceptsMultipartMixed } from '../../couchdb/revisions';

it.each([
  [undefined, true],
  ['multipart/mixed', true],
  ['multipart/*', true],
  ['*/*', true],
  ['application/json, */*;q=0.01', true],
  ['text/html, multipart/mixed;q=0.5', true],
  ['application/json', false],
  ['text/plain', false],
  ['multipart/related', false],
  ['multipart/mixed;q=0', false],
  ['*/*, multipart/*;q=0', false],
  ['multipart/mixed;q=abc', false],
  ['', false],
])('Accept %p takes multipart/mixed: %p', (accept, expected) => {
  expect(acceptsMultipartMixed(accept)).toBe(expected);
});
