/** HTTP caching of what the registry serves: one place for ETag, Cache-Control and 304. */
import { Request, Response } from 'express';

/** Packuments and versions change: clients keep them and ask again each time. */
export const REVALIDATE = 'max-age=0, must-revalidate';
/** Tarballs never change once published. */
export const IMMUTABLE = 'public, max-age=31536000, immutable';

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
