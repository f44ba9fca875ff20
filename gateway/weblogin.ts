/**
 * Web login sessions (`npm login`'s default flow), kept in CouchDB so that any gateway can finish a
 * login another one started. The session id travels in the URLs; the database keeps only its hash.
 * A session expires after `WEB_LOGIN_TTL_MS`; its token is created when `doneUrl` is first polled
 * after the user logged in, and handed out once.
 */
import { createHash, randomBytes } from 'crypto';
import { Couch, Database } from '../couchdb/client';

export const WEB_LOGIN_TTL_MS = 10 * 60 * 1000;

export interface WebLoginSession {
  _id: string;
  _rev?: string;
  type: 'weblogin';
  created: string;
  expires: string;
  /** `npm adduser`: the page offers sign-up. */
  create: boolean;
  /** Set once the user has logged in on the page. */
  user?: string;
}

const idOf = (sid: string) => 'weblogin:' + createHash('sha256').update(sid).digest('hex');

export class WebLoginStore {
  private readonly db: Database<WebLoginSession>;

  constructor(couch: Couch, dbName: string) {
    this.db = couch.db<WebLoginSession>(dbName);
  }

  async start(create: boolean, now = Date.now()): Promise<string> {
    const sid = randomBytes(24).toString('base64url');
    await this.db.put({
      _id: idOf(sid),
      type: 'weblogin',
      created: new Date(now).toISOString(),
      expires: new Date(now + WEB_LOGIN_TTL_MS).toISOString(),
      create,
    });
    return sid;
  }

  /** The live session of `sid`, or null when unknown or expired. */
  async get(sid: string, now = Date.now()): Promise<WebLoginSession | null> {
    if (!/^[A-Za-z0-9_-]{16,64}$/.test(sid)) return null;
    const session = await this.db.get(idOf(sid));
    if (!session || session.type !== 'weblogin') return null;
    if (Date.parse(session.expires) <= now) {
      await this.db.remove(session._id, session._rev).catch(() => undefined);
      return null;
    }
    return session;
  }

  async complete(session: WebLoginSession, user: string): Promise<void> {
    await this.db.put({ ...session, user });
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
}
