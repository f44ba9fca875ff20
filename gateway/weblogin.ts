/**
 * Web login sessions (`npm login`'s default flow), kept in CouchDB so that any gateway can finish a
 * login another one started. A session has a public handle and two independent secrets: the login
 * page's URL carries the handle and the login secret, the `doneUrl` npm polls carries the handle and
 * the done secret, so whoever sees the login URL (a shared screen, a browser history) cannot collect
 * the token. The database keeps only the secrets' hashes. A session expires after `WEB_LOGIN_TTL_MS`;
 * its token is created when `doneUrl` is first polled after the user logged in, and handed out once.
 * Expired sessions (and expired page sessions, `websession`, and web one-time-password challenges,
 * `webotp`, and single sign-ons nobody finished, `ssologin`, in the same database) are swept, at most
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
  /** The user signed on with the company's provider (gateway/sso.ts) rather than a password. */
  signOn?: boolean;
}

/**
 * A one-time password asked for on the web (npm's "web OTP"): a write or a token change of `user`
 * with `credential` (the token npm sent) needs the second factor, and npm, instead of asking for a
 * code, shows the page (`authUrl`) and polls `doneUrl`. The account's owner approves on the page with
 * their password and a code; `doneUrl` then hands npm an approval, once, which npm sends as its
 * one-time password: it counts for that user and credential until the challenge expires.
 */
export interface WebOtpChallenge {
  _id: string;
  _rev?: string;
  type: 'webotp';
  created: string;
  expires: string;
  user: string;
  credential: string;
  /** What waits for the approval, for the page to show (`PUT /some-package`). */
  action: string;
  loginHash: string;
  doneHash: string;
  approved?: boolean;
  /** SHA-256 of the approval's secret, once handed out. */
  approvalHash?: string;
}

/** Which URL a secret comes from. */
export type WebLoginPart = 'login' | 'done';

/** `<handle>.<secret>` as the URLs carry it. */
const KEY = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{32})$/;
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function secretMatches(hash: string, secret: string): boolean {
  const expected = Buffer.from(hash);
  const given = Buffer.from(sha256(secret));
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** How a web approval starts, where npm sends a one-time password. */
const APPROVAL_PREFIX = 'webotp.';

/** Whether a one-time password npm sent is a web approval (rather than a code or a recovery code). */
export const isWebApproval = (code: string): boolean => code.startsWith(APPROVAL_PREFIX);

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
    return this.live<WebLoginSession>('weblogin', key, part, now);
  }

  /** The live document of `type` whose `part` key is `key` (`<handle>.<secret>`), or null. */
  private async live<T extends WebLoginSession | WebOtpChallenge>(type: T['type'], key: string, part: WebLoginPart, now: number): Promise<T | null> {
    const match = KEY.exec(key);
    if (!match) return null;
    const session = (await this.db.get(type + ':' + match[1])) as T | null;
    if (!session || session.type !== type || typeof session.loginHash !== 'string' || typeof session.doneHash !== 'string') return null;
    if (!secretMatches(part === 'login' ? session.loginHash : session.doneHash, match[2])) return null;
    if (Date.parse(session.expires) <= now) {
      await this.db.remove(session._id, session._rev as string).catch(() => undefined);
      return null;
    }
    return session;
  }

  /** A new web one-time-password challenge for `user` writing with `credential`: its page's key and its done URL's key. */
  async startOtp(user: string, credential: string, action: string, now = Date.now()): Promise<{ login: string; done: string }> {
    this.sweepSoon(now);
    const handle = randomBytes(16).toString('base64url');
    const login = randomBytes(24).toString('base64url');
    const done = randomBytes(24).toString('base64url');
    const challenge: WebOtpChallenge = {
      _id: 'webotp:' + handle,
      type: 'webotp',
      created: new Date(now).toISOString(),
      expires: new Date(now + WEB_LOGIN_TTL_MS).toISOString(),
      user,
      credential,
      action: action.slice(0, 300),
      loginHash: sha256(login),
      doneHash: sha256(done),
    };
    await this.db.put(challenge as unknown as WebLoginSession);
    return { login: handle + '.' + login, done: handle + '.' + done };
  }

  /** The live challenge whose `part` key is `key`, or null when unknown, expired or the wrong secret. */
  getOtp(key: string, part: WebLoginPart, now = Date.now()): Promise<WebOtpChallenge | null> {
    return this.live<WebOtpChallenge>('webotp', key, part, now);
  }

  async approveOtp(challenge: WebOtpChallenge): Promise<void> {
    await this.db.put({ ...challenge, approved: true } as unknown as WebLoginSession);
  }

  /**
   * The approval of an approved challenge (`webotp.<handle>.<secret>`), made and handed out once: null
   * when it was handed out already (a second poll, or another gateway first).
   */
  async handOutApproval(challenge: WebOtpChallenge): Promise<string | null> {
    if (!challenge.approved || challenge.approvalHash) return null;
    const secret = randomBytes(24).toString('base64url');
    try {
      await this.db.put({ ...challenge, approvalHash: sha256(secret) } as unknown as WebLoginSession);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 409) return null;
      throw err;
    }
    return APPROVAL_PREFIX + challenge._id.slice('webotp:'.length) + '.' + secret;
  }

  /** Whether `code` is a live approval handed out for `user` writing with `credential`. */
  async approves(code: string, user: string, credential: string, now = Date.now()): Promise<boolean> {
    if (!isWebApproval(code)) return false;
    const match = KEY.exec(code.slice(APPROVAL_PREFIX.length));
    if (!match) return false;
    const challenge = (await this.db.get('webotp:' + match[1])) as WebOtpChallenge | null;
    if (!challenge || challenge.type !== 'webotp' || !challenge.approved || typeof challenge.approvalHash !== 'string') return false;
    if (!secretMatches(challenge.approvalHash, match[2]) || Date.parse(challenge.expires) <= now) return false;
    return challenge.user === user && challenge.credential === credential;
  }

  async complete(session: WebLoginSession, user: string, account: string, signOn = false): Promise<void> {
    await this.db.put({ ...session, user, account, ...(signOn ? { signOn } : {}) });
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
      const expired = await this.db.find({ selector: { type: { $in: ['weblogin', 'websession', 'webotp', 'ssologin'] }, expires: { $lt: new Date(now).toISOString() } }, limit: 200 });
      const before = removed;
      for (const doc of expired) {
        await this.db.remove(doc._id, doc._rev as string).then(() => removed++, () => undefined);
      }
      if (expired.length < 200 || removed === before) return removed;
    }
  }
}
