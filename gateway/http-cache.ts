/** HTTP caching of what the registry serves: one place for ETag, Cache-Control and 304. */
import { Request, Response } from 'express';

/** Packuments and versions change: clients keep them and ask again each time. */
export const REVALIDATE = 'max-age=0, must-revalidate';
/** Tarballs never change once published. */
export const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * What a shared cache (a CDN, a caching proxy) may keep: only what anyone may read. A package that
 * only some may read is marked `private`, so that no cache in front of the registry hands it to
 * others. Whether anyone may read is set by the access check of the request (`markReadable`); a
 * response whose request was not checked that way is private.
 */
export function markReadable(res: Response, byAnyone: boolean): void {
  res.locals.readableByAnyone = byAnyone;
}

function readableByAnyone(res: Response): boolean {
  return res.locals.readableByAnyone === true;
}

/** Cache-Control of a packument or a version. */
export const revalidate = (res: Response): string => (readableByAnyone(res) ? REVALIDATE : 'private, ' + REVALIDATE);
/** Cache-Control of a tarball. */
export const immutable = (res: Response): string => (readableByAnyone(res) ? IMMUTABLE : 'private, max-age=31536000, immutable');

/**
 * Sets the ETag and Cache-Control of a response; answers 304 and returns true when the client has
 * this very version already (`If-None-Match`), so the caller sends nothing more.
 */
export function answeredNotModified(req: Request, res: Response, etag: string, cacheControl: string): boolean {
  res.setHeader('ETag', etag);
  res.setHeader('Cache-Control', cacheControl);
  if (req.headers['if-none-match'] !== etag) return false;
  res.status(304).end();
  return true;
}
