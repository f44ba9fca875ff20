/**
 * Sessions of the web pages: a random value in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` over
 * HTTPS), kept in CouchDB (`<db>-state`) only as its SHA-256, so that every gateway knows it and a
 * database reader learns nothing usable. A session lasts 12 hours and is used by the pages only,
 * never by the npm API (whose writes a cookie must not be able to make). A session records the stamp
 * of the account it was started for: it ends with the account and with a password change.
 */
import { createHash, randomBytes } from 'crypto';
import { Request, Response } from 'express';
import { Couch, Database } from '../../couchdb/client';

export const SESSION_COOKIE = 'registry_session';
const SESSION_MS = 12 * 60 * 60 * 1000;

interface WebSession {
  _id: string;
  _rev?: string;
  type: 'websession';
  user: string;
  /** The account's stamp when the session started (`Accounts.account`). */
  account?: string;
  expires: string;
}

/**
 * Whether a form was posted from another site (login CSRF, forced logout): the browser's
 * `Sec-Fetch-Site` says so, or its `Origin` is neither the registry's public origin nor the origin the
 * request was sent to. Clients that send neither (curl, old browsers) are not browsers at risk.
 */
export function crossSitePost(req: Request, publicOrigin: string): boolean {
  const site = req.headers['sec-fetch-site'];
  if (typeof site === 'string' && site !== 'same-origin' && site !== 'none') return true;
  const origin = req.headers.origin;
  if (typeof origin !== 'string') return false;
  return origin !== publicOrigin && origin !== req.protocol + '://' + req.get('host');
}

const idOf = (value: string) => 'websession:' + createHash('sha256').update(value).digest('hex');

/** The value of one cookie of the request, or undefined. */
export function cookie(req: Request, name: string): string | undefined {
  for (const part of String(req.headers.cookie || '').split(';')) {
    const at = part.indexOf('=');
    if (at !== -1 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

export class WebSessions {
  private readonly db: Database<WebSession>;

  constructor(
    couch: Couch,
    dbName: string,
    /** The path the cookie is sent for (the registry's base path, or `/`). */
    private readonly path: string,
    /** Whether the registry is reached over HTTPS (then the cookie is `Secure`). */
    private readonly httpsOnly: boolean,
  ) {
    this.db = couch.db<WebSession>(dbName);
  }

  private attributes(req: Request, maxAgeSeconds: number): string {
    const secure = this.httpsOnly || req.secure ? '; Secure' : '';
    return '; Path=' + this.path + '; HttpOnly; SameSite=Lax; Max-Age=' + maxAgeSeconds + secure;
  }

  /** Starts a session for `user` and sets its cookie. */
  async start(req: Request, res: Response, user: string, account: string): Promise<void> {
    const value = randomBytes(32).toString('base64url');
    await this.db.put({ _id: idOf(value), type: 'websession', user, account, expires: new Date(Date.now() + SESSION_MS).toISOString() });
    res.append('Set-Cookie', SESSION_COOKIE + '=' + value + this.attributes(req, SESSION_MS / 1000));
  }

  /** The user of the request's session cookie and their account's stamp then, or null (no cookie, unknown, expired). */
  async user(req: Request): Promise<{ user: string; account?: string } | null> {
    const value = cookie(req, SESSION_COOKIE);
    if (!value || !/^[A-Za-z0-9_-]{43}$/.test(value)) return null;
    const session = await this.db.get(idOf(value));
    if (!session || session.type !== 'websession') return null;
    if (Date.parse(session.expires) <= Date.now()) {
      await this.db.remove(session._id, session._rev).catch(() => undefined);
      return null;
    }
    return { user: session.user, account: session.account };
  }

  /** Ends the request's session and clears its cookie. */
  async end(req: Request, res: Response): Promise<void> {
    const value = cookie(req, SESSION_COOKIE);
    if (value && /^[A-Za-z0-9_-]{43}$/.test(value)) {
      const session = await this.db.get(idOf(value));
      if (session) await this.db.remove(session._id, session._rev).catch(() => undefined);
    }
    res.append('Set-Cookie', SESSION_COOKIE + '=' + this.attributes(req, 0));
  }
}
