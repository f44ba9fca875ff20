/**
 * Who is asking, on the embedded server: decided here for every request, as CouchDB 3.4's
 * authentication handlers do (proxy, cookie, Basic), instead of by express-pouchdb. The gateway
 * checks passwords with the same `Authenticator`, against whichever CouchDB it uses. Each request gets
 * a session object of its own that express-pouchdb cannot replace, and its credentials are removed
 * before express-pouchdb sees them, so nothing one request does to its session reaches another.
 *
 * Passwords are checked with Node's native PBKDF2: `_users` documents as CouchDB 3.4 stores them
 * (`password_scheme: "pbkdf2"`, `pbkdf2_prf: "sha256"`, 600,000 iterations; older SHA-1 hashes are
 * still understood), server admins in the config file's `-pbkdf2-` format. A successful check is
 * remembered for a minute, as CouchDB caches password hashes, but only while the account keeps the
 * salt it had (a changed password is checked afresh at once); failures are not. Hashing goes through
 * a fair, bounded queue, and the port's logins (Basic, `POST /_session`) count against the login
 * throttle the gateway uses (`lib/login-throttle.ts`), before their password is hashed.
 */
import { AsyncLocalStorage } from 'async_hooks';
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'crypto';
import express from 'express';
import { promisify } from 'util';
import { LOGIN_THROTTLE, LoginAttempt, loginAttempt, LoginRefused } from '../lib/login-throttle';
import { Caller } from './authorization';
import { verifyProxyHeaders } from './proxy-auth';

const pbkdf2Raw = promisify(pbkdf2);

/**
 * At most two password hashes are computed at once, each ~0.1-0.3 s of CPU: more wait in a queue
 * instead of filling libuv's thread pool, which LevelDB needs for every read. The queue is fair: a
 * line per client address, and within it a line per account, served in turn, with one hash at a time
 * per account. A flood of guesses against one account leaves the other slot to everyone else, and one
 * address guessing many accounts waits its turn among the other addresses: another user's login waits
 * a hash or two at most. It is bounded (`MAX_WAITING` in all, per address and per account): beyond, a
 * check is refused at once (503 with Retry-After). A check whose client has gone (its `signal`
 * aborted) leaves the queue without being computed.
 */
const HASHING_SLOTS = 2;
const MAX_WAITING = 64;
const MAX_WAITING_PER_ADDRESS = 16;
const MAX_WAITING_PER_ACCOUNT = 8;
let hashing = 0;
let waitingCount = 0;
let unnamed = 0;
/** The accounts whose hash is being computed (one at a time each). */
const hashingNow = new Set<string>();
/** The waiting checks: by address, then by account, each map in the order it is served (a served line moves to its end). */
const waiting = new Map<string, Map<string, (() => void)[]>>();

/** Whom a hash is for: the client's address and the account (lines of the queue). */
interface HashFor {
  address: string;
  account: string;
  signal?: AbortSignal;
}

function waitingFrom(address: string): number {
  let count = 0;
  for (const line of (waiting.get(address) || new Map<string, unknown[]>()).values()) count += line.length;
  return count;
}

/** The first waiting check whose account has no hash being computed, taken out of its lines. */
function nextWaiter(): { account: string; start: () => void } | undefined {
  for (const [address, accounts] of waiting) {
    for (const [account, line] of accounts) {
      if (hashingNow.has(account)) continue;
      const start = line.shift() as () => void;
      accounts.delete(account);
      if (line.length) accounts.set(account, line);
      waiting.delete(address);
      if (accounts.size) waiting.set(address, accounts);
      waitingCount--;
      return { account, start };
    }
  }
  return undefined;
}

/** Waits for a hashing slot in the lines of `who`; throws when the queue is full or the signal aborts first. */
function hashingSlot(who: HashFor): Promise<void> {
  const { address, account, signal } = who;
  signal?.throwIfAborted();
  if (hashing < HASHING_SLOTS && !hashingNow.has(account)) {
    hashing++;
    hashingNow.add(account);
    return Promise.resolve();
  }
  const accounts = waiting.get(address) || new Map<string, (() => void)[]>();
  const line = accounts.get(account) || [];
  if (waitingCount >= MAX_WAITING || waitingFrom(address) >= MAX_WAITING_PER_ADDRESS || line.length >= MAX_WAITING_PER_ACCOUNT) {
    return Promise.reject(new LoginRefused(503, 'Too many password checks are waiting; try again in a second (tokens keep working).', 1));
  }
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => {
      const at = line.indexOf(start);
      if (at === -1) return;
      line.splice(at, 1);
      waitingCount--;
      if (line.length === 0 && accounts.get(account) === line) accounts.delete(account);
      if (accounts.size === 0 && waiting.get(address) === accounts) waiting.delete(address);
      reject(signal?.reason);
    };
    const start = () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    line.push(start);
    waitingCount++;
    accounts.set(account, line);
    waiting.set(address, accounts);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Hands a finished check's slot to the next waiting check that may run, or frees it. */
function releaseSlot(account: string): void {
  hashingNow.delete(account);
  const next = nextWaiter();
  if (!next) {
    hashing--;
    return;
  }
  hashingNow.add(next.account); // the slot is handed over
  next.start();
}

/** PBKDF2 through the fair, bounded queue; its lines and its abandonment come from the login being checked (`currentCheck`). */
async function pbkdf2Async(password: string, salt: string, iterations: number, keylen: number, digest: string): Promise<Buffer> {
  // A hash made for no login (a password being stored) has lines of its own.
  const who = currentCheck.getStore() || { address: '', account: '\0' + unnamed++ };
  await hashingSlot(who);
  try {
    return await pbkdf2Raw(password, salt, iterations, keylen, digest);
  } finally {
    releaseSlot(who.account);
  }
}

/** Whom the password check under way is for, for the hashing queue. */
const currentCheck = new AsyncLocalStorage<HashFor>();

/** CouchDB 3.4's defaults for `_users` documents. */
export const USER_ITERATIONS = 600_000;
export const USER_PRF = 'sha256';
/** Server admins are kept in the `-pbkdf2-` (SHA-1) format that express-pouchdb leaves alone, with OWASP's count for it. */
export const ADMIN_ITERATIONS = 1_300_000;
/** A stored count above this is refused instead of computed (a document could otherwise cost minutes of CPU). */
const MAX_ITERATIONS = 10_000_000;
const REMEMBER_MS = 60_000;
export const SESSION_SECONDS = 600;

export interface StoredUser {
  name?: unknown;
  type?: unknown;
  roles?: unknown;
  password_scheme?: unknown;
  pbkdf2_prf?: unknown;
  iterations?: unknown;
  derived_key?: unknown;
  salt?: unknown;
  password_sha?: unknown;
}

export interface PasswordFields {
  password_scheme: 'pbkdf2';
  pbkdf2_prf: string;
  iterations: number;
  salt: string;
  derived_key: string;
}

/** The fields a `_users` document stores instead of a clear password. */
export async function hashUserPassword(password: string): Promise<PasswordFields> {
  const salt = randomBytes(16).toString('hex');
  const key = await pbkdf2Async(password, salt, USER_ITERATIONS, 32, USER_PRF);
  return { password_scheme: 'pbkdf2', pbkdf2_prf: USER_PRF, iterations: USER_ITERATIONS, salt, derived_key: key.toString('hex') };
}

function sameHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Whether `password` is the one stored in a `_users` document (pbkdf2 with any PRF, or CouchDB's old "simple" scheme). */
export async function userPasswordMatches(doc: StoredUser, password: string): Promise<boolean> {
  if (typeof doc.salt !== 'string') return false;
  if (doc.password_scheme === 'pbkdf2') {
    const iterations = doc.iterations;
    const prf = doc.pbkdf2_prf === undefined ? 'sha1' : doc.pbkdf2_prf;
    if (typeof doc.derived_key !== 'string' || !/^[0-9a-f]{2,256}$/.test(doc.derived_key)) return false;
    if (typeof iterations !== 'number' || !Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) return false;
    if (prf !== 'sha1' && prf !== 'sha224' && prf !== 'sha256' && prf !== 'sha384' && prf !== 'sha512') return false;
    const key = await pbkdf2Async(password, doc.salt, iterations, doc.derived_key.length / 2, prf);
    return sameHex(key.toString('hex'), doc.derived_key);
  }
  if (doc.password_scheme === 'simple' || doc.password_scheme === undefined) {
    if (typeof doc.password_sha !== 'string') return false;
    return sameHex(createHash('sha1').update(password + doc.salt).digest('hex'), doc.password_sha);
  }
  return false;
}

const ADMIN_HASH = /^-pbkdf2-([\da-f]+),([\da-f]+),(\d+)$/;

/** A server admin's password as the config file keeps it: `-pbkdf2-<derived key>,<salt>,<iterations>` (PBKDF2-SHA1). */
export async function hashAdminPassword(password: string): Promise<string> {
  const salt = randomBytes(16).toString('hex');
  const key = await pbkdf2Async(password, salt, ADMIN_ITERATIONS, 20, 'sha1');
  return '-pbkdf2-' + key.toString('hex') + ',' + salt + ',' + ADMIN_ITERATIONS;
}

/** Whether a config file's admin hash is strong enough to keep (else it is made again at start). */
export function adminHashIsCurrent(hash: unknown): boolean {
  const match = typeof hash === 'string' ? ADMIN_HASH.exec(hash) : null;
  return !!match && Number(match[3]) >= ADMIN_ITERATIONS;
}

/** CouchDB's admin hashes: `-pbkdf2-` (SHA-1), `-pbkdf2:sha256-` (CouchDB 3.4's default) and the old `-hashed-`. */
const ANY_ADMIN_HASH = /^-pbkdf2(?::(sha1|sha224|sha256|sha384|sha512))?-([\da-f]+),([\da-f]+),(\d+)$/;
const OLD_ADMIN_HASH = /^-hashed-([\da-f]{40}),(.+)$/;

export async function adminPasswordMatches(hash: unknown, password: string): Promise<boolean> {
  if (typeof hash !== 'string') return false;
  const old = OLD_ADMIN_HASH.exec(hash);
  if (old) return sameHex(createHash('sha1').update(password + old[2]).digest('hex'), old[1]);
  const match = ANY_ADMIN_HASH.exec(hash);
  if (!match || Number(match[4]) < 1 || Number(match[4]) > MAX_ITERATIONS) return false;
  const key = await pbkdf2Async(password, match[3], Number(match[4]), match[2].length / 2, match[1] || 'sha1');
  return sameHex(key.toString('hex'), match[2]);
}

export interface AuthenticatorOptions {
  /** The key of session cookies (the proxy-authentication secret). */
  secret: string;
  /** The password hash of the server admin `name` (from the configuration), or undefined. */
  adminHash(name: string): Promise<unknown>;
  /** A `_users` document, read as admin, or null. */
  readUser(name: string): Promise<StoredUser | null>;
}

/** Roles a `_users` document grants: strings, never a reserved `_` role such as `_admin`. */
function grantedRoles(doc: StoredUser): string[] {
  return Array.isArray(doc.roles) ? doc.roles.filter((r): r is string => typeof r === 'string' && !r.startsWith('_')) : [];
}

/** A salt that no stored password uses: an unknown name costs the same hash as a known one. */
const DUMMY_SALT = createHash('sha256').update('no such account').digest('hex').slice(0, 32);

export class Authenticator {
  /** Successful checks by name and password, with the salt the account had then. */
  private readonly remembered = new Map<string, { caller: Caller; salt: string; until: number }>();
  /** Checks under way, by name and password: concurrent identical logins share one hash. */
  private readonly checking = new Map<string, Promise<{ caller: Caller; salt: string } | null>>();

  constructor(private readonly options: AuthenticatorOptions) {}

  /**
   * The user a name and password prove, or null. Successes are remembered for a minute, but only
   * while the account keeps the salt it had (a changed password, or an account deleted and made
   * again, is checked afresh at once). An unknown name costs the same hash as a known one (its
   * answer says nothing about the name). Inside a `loginAttempt`, every check that will hash is
   * counted by the throttle as soon as it arrives, before any read (a 429 `LoginRefused` when over),
   * and its hash is dropped when the client leaves.
   */
  async logIn(name: string, password: string): Promise<Caller | null> {
    if (!name || !password) return null;
    const attempt = loginAttempt.getStore();
    const key = createHash('sha256').update(name + '\0' + password).digest('hex');
    const hit = this.remembered.get(key);
    if (hit && hit.until > Date.now()) {
      const account = await this.account(name);
      if (account && account.salt === hit.salt) return { name, roles: [...account.roles] };
      this.remembered.delete(key);
    }
    let running = this.checking.get(key);
    const joined = !!running;
    if (!running) {
      // Counted before anything is read, synchronously: parallel guesses cannot all pass the check.
      const ticket = attempt ? attempt.throttle.begin(name, attempt.address) : null;
      running = this.check(name, password, attempt?.address ?? '', attempt?.signal).then(
        (checked) => {
          if (checked && ticket) attempt?.throttle.succeed(ticket);
          return checked;
        },
        (err: unknown) => {
          // Never checked (the client left, the queue was full): the attempt does not count.
          if (ticket) attempt?.throttle.release(ticket);
          throw err;
        },
      );
      this.checking.set(key, running);
      running.then(
        (checked) => {
          this.checking.delete(key);
          if (!checked) return;
          if (this.remembered.size >= 1000) this.remembered.clear();
          this.remembered.set(key, { ...checked, until: Date.now() + REMEMBER_MS });
        },
        () => this.checking.delete(key),
      );
    }
    let checked: { caller: Caller; salt: string } | null;
    try {
      checked = await running;
    } catch (err) {
      // The check this login joined was dropped because its own client left: this one checks anew.
      if (joined && !(err instanceof LoginRefused) && !attempt?.signal?.aborted) return this.logIn(name, password);
      throw err;
    }
    return checked ? copy(checked.caller) : null;
  }

  /** Hashes `password` for the account `name` (a dummy hash for an unknown name) in the lines of `address` and the account in the hashing queue. */
  private async check(name: string, password: string, address: string, signal?: AbortSignal): Promise<{ caller: Caller; salt: string } | null> {
    const account = await this.account(name);
    const ok = await currentCheck.run({ address, account: name, signal }, () =>
      account ? account.matches(password) : pbkdf2Async(password, DUMMY_SALT, USER_ITERATIONS, 32, USER_PRF).then(() => false),
    );
    return ok && account ? { caller: { name, roles: account.roles }, salt: account.salt } : null;
  }

  /**
   * The account `name`: a server admin of the configuration, else a `_users` document of that name,
   * with its roles, what binds a session cookie to its current password, and its password check.
   */
  private async account(name: string): Promise<{ roles: string[]; salt: string; matches(password: string): Promise<boolean> } | null> {
    const adminHash = await this.options.adminHash(name);
    if (adminHash !== undefined) {
      if (typeof adminHash !== 'string') return null;
      return { roles: ['_admin'], salt: adminHash, matches: (password) => adminPasswordMatches(adminHash, password) };
    }
    const doc = await this.options.readUser(name);
    if (!doc || doc.type !== 'user' || doc.name !== name || typeof doc.salt !== 'string') return null;
    return { roles: grantedRoles(doc), salt: doc.salt, matches: (password) => userPasswordMatches(doc, password) };
  }

  private mac(name: string, expires: number, salt: string): string {
    return createHmac('sha256', this.options.secret + '\0' + salt).update(name + ':' + expires).digest('hex');
  }

  /** The value of the `AuthSession` cookie for a user who just logged in. */
  async cookieFor(name: string): Promise<string | null> {
    const known = await this.account(name);
    if (!known) return null;
    const expires = Math.floor(Date.now() / 1000) + SESSION_SECONDS;
    return Buffer.from(name + ':' + expires + ':' + this.mac(name, expires, known.salt)).toString('base64url');
  }

  /** The user of a session cookie, or null when it is forged, expired or from before a password change. */
  async fromCookie(value: string): Promise<{ caller: Caller; renew: boolean } | null> {
    const decoded = Buffer.from(value, 'base64url').toString('utf8');
    const match = /^(.+):(\d{1,12}):([0-9a-f]{64})$/.exec(decoded);
    if (!match) return null;
    const [, name, expiresText, mac] = match;
    const expires = Number(expiresText);
    const now = Math.floor(Date.now() / 1000);
    if (expires <= now) return null;
    // The salt binds the cookie to the current password: a changed password ends the session.
    const known = await this.account(name);
    if (!known || !sameHex(mac, this.mac(name, expires, known.salt))) return null;
    return { caller: { name, roles: known.roles }, renew: expires - now < SESSION_SECONDS / 2 };
  }
}

const copy = (caller: Caller): Caller => ({ name: caller.name, roles: [...caller.roles] });

export interface CouchSession {
  ok: boolean;
  userCtx: Caller;
  info: { authentication_db: string; authentication_handlers: string[]; authenticated?: string };
}

const HANDLERS = ['proxy', 'cookie', 'default'];

/** A session object for one request: never shared, so what express-pouchdb adds to it stays in that request. */
export function sessionOf(caller: Caller, authenticated?: string): CouchSession {
  const info: CouchSession['info'] = { authentication_db: '_users', authentication_handlers: [...HANDLERS] };
  if (authenticated) info.authenticated = authenticated;
  return { ok: true, userCtx: copy(caller), info };
}

/** Gives the request its session for good, and takes its credentials away from express-pouchdb. */
export function pinSession(req: express.Request, session: CouchSession): void {
  delete req.headers.authorization;
  delete req.headers.cookie;
  Object.defineProperty(req, 'couchSession', { configurable: true, get: () => session, set: () => undefined });
}

export function pinnedSession(req: express.Request): CouchSession {
  return (req as unknown as { couchSession: CouchSession }).couchSession;
}

export const ANONYMOUS: Caller = { name: null, roles: [] };

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(value: string, maxAge: number): string {
  return 'AuthSession=' + value + '; Version=1; Path=/; Max-Age=' + maxAge + '; HttpOnly; SameSite=Strict';
}

/** Parses `Authorization: Basic …` into a name and password, or null. */
export function basicCredentials(header: string): { name: string; password: string } | null {
  const match = /^basic\s+([A-Za-z0-9+/=]*)\s*$/i.exec(header);
  if (!match) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return null;
  return { name: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** An abort signal for a request, aborted when its client leaves before the answer is sent. */
export function abandonSignal(res: express.Response): AbortSignal {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort(new Error('The client left before its login was checked.'));
  });
  return controller.signal;
}

/** The request's login, counted by the shared throttle and dropped from the hashing queue when its client leaves. */
function attemptOf(req: express.Request, res: express.Response): LoginAttempt {
  return { address: (req.socket.remoteAddress || '').replace(/^::ffff:/, ''), throttle: LOGIN_THROTTLE, signal: abandonSignal(res) };
}

/** Answers a login the throttle or the hashing queue refused, as CouchDB-style JSON with Retry-After. */
function refuseLogin(res: express.Response, err: LoginRefused): void {
  res.setHeader('Retry-After', String(err.retryAfter));
  res.status(err.status).json({ error: err.status === 429 ? 'too_many_requests' : 'service_unavailable', reason: err.message });
}

const sessionBody = [express.json({ limit: '64kb' }), express.urlencoded({ extended: false, limit: '64kb' })];

/**
 * `POST /_session`: logs in with a name and password from a JSON or form body, as CouchDB's cookie
 * authentication does, counted by the login throttle (the route of the same name further on is then
 * never reached).
 */
function sessionLogin(auth: Authenticator, req: express.Request, res: express.Response, next: express.NextFunction): void {
  sessionBody[0](req, res, (err?: unknown) => {
    if (err) return next(err);
    sessionBody[1](req, res, (err2?: unknown) => {
      if (err2) return next(err2);
      const body = (req.body || {}) as { name?: unknown; password?: unknown };
      const name = typeof body.name === 'string' ? body.name : '';
      const password = typeof body.password === 'string' ? body.password : '';
      loginAttempt
        .run(attemptOf(req, res), async () => {
          const caller = await auth.logIn(name, password);
          const cookie = caller ? await auth.cookieFor(name) : null;
          if (!caller || !cookie) {
            res.status(401).json({ error: 'unauthorized', reason: 'Name or password is incorrect.' });
            return;
          }
          res.setHeader('Set-Cookie', sessionCookie(cookie, SESSION_SECONDS));
          res.json({ ok: true, name: caller.name, roles: caller.roles });
        })
        .catch((failure: unknown) => {
          if (failure instanceof LoginRefused) return refuseLogin(res, failure);
          if (req.socket.destroyed || res.writableEnded) return undefined; // the client left: nothing to answer
          next(failure);
        });
    });
  });
}

/**
 * Identifies every request: valid proxy headers, else Basic credentials (wrong ones are answered 401,
 * as CouchDB does), else a session cookie (an invalid one counts as no cookie), else anonymous.
 * Password logins (Basic, `POST /_session`) count against the login throttle before they are hashed.
 */
export function identify(auth: Authenticator, secret: string): express.RequestHandler {
  return (req, res, next) => {
    (async () => {
      const proxied = verifyProxyHeaders(secret, req.headers);
      if (proxied) return pinSession(req, sessionOf(proxied, 'proxy'));
      if (req.method === 'POST' && req.path === '/_session') {
        // A login with the body's credentials, whatever else the request carries.
        pinSession(req, sessionOf(ANONYMOUS));
        sessionLogin(auth, req, res, next);
        return 'answered';
      }
      const header = req.headers.authorization;
      if (header && /^basic\s/i.test(header)) {
        const credentials = basicCredentials(header);
        let caller: Caller | null;
        try {
          caller = credentials ? await loginAttempt.run(attemptOf(req, res), () => auth.logIn(credentials.name, credentials.password)) : null;
        } catch (err) {
          if (err instanceof LoginRefused) {
            refuseLogin(res, err);
            return 'answered';
          }
          if (req.socket.destroyed || res.writableEnded) return 'answered'; // the client left: nothing to answer
          throw err;
        }
        if (!caller) {
          res.status(401).json({ error: 'unauthorized', reason: 'Name or password is incorrect.' });
          return 'answered';
        }
        return pinSession(req, sessionOf(caller, 'default'));
      }
      const cookie = cookieValue(req.headers.cookie, 'AuthSession');
      const session = cookie ? await auth.fromCookie(cookie) : null;
      if (session) {
        if (session.renew) {
          const renewed = await auth.cookieFor(session.caller.name as string);
          if (renewed) res.setHeader('Set-Cookie', sessionCookie(renewed, SESSION_SECONDS));
        }
        return pinSession(req, sessionOf(session.caller, 'cookie'));
      }
      pinSession(req, sessionOf(ANONYMOUS));
    })().then((outcome) => {
      if (outcome !== 'answered') next();
    }, next);
  };
}
