/**
 * Web login sessions (`npm login`'s default flow), kept in CouchDB so that any gateway can finish a
 * login another one started. A session has a public handle and two independent secrets: the login
 * page's URL carries the handle and the login secret, the `doneUrl` npm polls carries the handle and
 * the done secret, so whoever sees the login URL (a shared screen, a browser history) cannot collect
 * the token. The database keeps only the secrets' hashes. A session expires after `WEB_LOGIN_TTL_MS`;
 * its token is created when `doneUrl` is first polled after the user logged in, and handed out once.
 * Expired sessions (and expired page sessions, `websession`, in the same database) are swept, at most
 * once a minute, when a login starts.
 */
import { createHash, randomBytes, timingSafeEqual } from 'crypto';
import { Couch, Database } from '../couchdb/client';

export const WEB_LOGIN_TTL_MS = 10 * 60 * 1000;
const SWEEP_EVERY_MS = 60 * 1000;

export interface WebLoginSession {
  _id: string;
  _rev?: string;
  type: 'weblogin';
  created: string;
  expires: string;
  /** `npm adduser`: the page offers sign-up. */
  create: boolean;
  /** SHA-256 of the login page's secret and of the done URL's secret. */
  loginHash: string;
  doneHash: string;
  /** Set once the user has logged in on the page, with the stamp of their account then. */
  user?: string;
  account?: string;
}

/** Which URL a secret comes from. */
export type WebLoginPart = 'login' | 'done';

/** `<handle>.<secret>` as the URLs carry it. */
const KEY = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{32})$/;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

export class WebLoginStore {
  private readonly db: Database<WebLoginSession>;
  private lastSweep = 0;

  constructor(couch: Couch, dbName: string) {
    this.db = couch.db<WebLoginSession>(dbName);
  }

  /** A new session: the key of its login page and the key of its done URL (`<handle>.<secret>` each). */
  async start(create: boolean, now = Date.now()): Promise<{ login: string; done: string }> {
    this.sweepSoon(now);
    const handle = randomBytes(16).toString('base64url');
    const login = randomBytes(24).toString('base64url');
    const done = randomBytes(24).toString('base64url');
    await this.db.put({
      _id: 'weblogin:' + handle,
      type: 'weblogin',
      created: new Date(now).toISOString(),
      expires: new Date(now + WEB_LOGIN_TTL_MS).toISOString(),
      create,
      loginHash: sha256(login),
      doneHash: sha256(done),
    });
    return { login: handle + '.' + login, done: handle + '.' + done };
  }

  /** The live session whose `part` key is `key`, or null when unknown, expired or the wrong secret. */
  async get(key: string, part: WebLoginPart, now = Date.now()): Promise<WebLoginSession | null> {
    const match = KEY.exec(key);
    if (!match) return null;
    const session = await this.db.get('weblogin:' + match[1]);
    if (!session || session.type !== 'weblogin' || typeof session.loginHash !== 'string' || typeof session.doneHash !== 'string') return null;
    const expected = Buffer.from(part === 'login' ? session.loginHash : session.doneHash);
    const given = Buffer.from(sha256(match[2]));
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
    if (Date.parse(session.expires) <= now) {
      await this.db.remove(session._id, session._rev as string).catch(() => undefined);
      return null;
    }
    return session;
  }

  async complete(session: WebLoginSession, user: string, account: string): Promise<void> {
    await this.db.put({ ...session, user, account });
  }

  /** Ends a completed session; true for the one caller that removed it (the token is handed out once). */
  async consume(session: WebLoginSession): Promise<boolean> {
    try {
      await this.db.remove(session._id, session._rev as string);
      return true;
    } catch (err) {
      if ([404, 409].includes((err as { statusCode?: number }).statusCode || 0)) return false;
      throw err;
    }
  }

  /** Starts a sweep in the background unless one ran within the last minute. */
  private sweepSoon(now: number): void {
    if (now - this.lastSweep < SWEEP_EVERY_MS) return;
    this.lastSweep = now;
    this.sweep(now).catch(() => undefined);
  }

  /** Removes expired web logins and page sessions; how many. */
  async sweep(now = Date.now()): Promise<number> {
    let removed = 0;
    for (;;) {
      const expired = await this.db.find({ selector: { type: { $in: ['weblogin', 'websession'] }, expires: { $lt: new Date(now).toISOString() } }, limit: 200 });
      const before = removed;
      for (const doc of expired) {
        await this.db.remove(doc._id, doc._rev as string).then(() => removed++, () => undefined);
      }
      if (expired.length < 200 || removed === before) return removed;
    }
  }
}
