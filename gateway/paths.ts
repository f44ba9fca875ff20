/** Parsing of npm API paths: `/name`, `/@scope/name` and `/@scope%2fname`, followed by more segments. */
import { badRequest } from './errors';

export interface PackagePath {
  name: string;
  rest: string[];
}

/** A decoded path segment; 400 when its percent-encoding is broken. */
export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest('The URL is not valid percent-encoding.');
  }
}

export function parsePackagePath(rawPath: string): PackagePath | null {
  const segments = rawPath.split('/').slice(1);
  if (segments.length === 0 || segments[0] === '') return null;
  const first = decodeSegment(segments[0]);
  if (first.startsWith('@') && first.includes('/')) return { name: first, rest: segments.slice(1).map(decodeSegment) };
  if (first.startsWith('@')) {
    if (segments.length < 2 || !segments[1]) return null;
    return { name: first + '/' + decodeSegment(segments[1]), rest: segments.slice(2).map(decodeSegment) };
  }
  return { name: first, rest: segments.slice(1).map(decodeSegment) };
}
