/**
 * Users of the registry: CouchDB `_users` documents and the server admins of CouchDB's configuration,
 * the rules for new accounts, and the password check every login path uses (Basic auth, legacy login,
 * token creation, the web pages), counted by the login throttle per user and per address before the
 * password is hashed.
 *
 * Identity is the account, not its name: an account's `stamp` changes when its password changes or
 * when it is deleted and made again (it is derived from the salt CouchDB stores with the password
 * hash, new at every password change), and tokens and page sessions carry the stamp of the account
 * they were issued for, so they die with it at once, on every gateway. Server admins' names and
 * reserved names (`admin`, `root`, `npm`, ...: compared case-insensitively, without `.`, `_`, `-`)
 * cannot be signed up.
 */
import { createHash } from 'crypto';
import { Couch, couchFailure, Database, Identity } from '../couchdb/client';
import { LoginAttempt, loginAttempt, LoginRefused, LoginThrottle } from '../lib/login-throttle';
import { badRequest, conflict, forbidden, HttpError } from './errors';
import { TwoFactorState, twoFactorOf } from './two-factor';
import { GATEWAY_ROLE, READER_ROLE, REPLICATOR_ROLE, SITE_ROLE } from '../core/provenance';

export const USER_PREFIX = 'org.couchdb.user:';
/** The shortest password an account may have (NIST SP 800-63B's minimum for passwords people choose). */
export const MIN_PASSWORD_LENGTH = 8;
/** Why `password` may not be an account's password, or null. */
export function passwordProblem(password: string): string | null {
  if (password.length < MIN_PASSWORD_LENGTH) return 'Choose a password of at least ' + MIN_PASSWORD_LENGTH + ' characters.';
  if (password.length > 1024) return 'Choose a password of at most 1024 characters.';
  return null;
}
const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,213}$/i;

/** Names nobody may sign up with, compared after `normalizedUserName`, besides the server admins' names. */
const RESERVED_NAMES = [
  'admin', 'administrator', 'admins', 'root', 'superuser', 'sysadmin', 'system', 'couchdb', 'couch', 'npm', 'npmjs',
  'registry', 'replicator', 'users', 'anonymous', 'nobody', 'null', 'undefined', 'owner', 'owners', 'support', 'security',
  'staff', 'www', 'api', 'node', 'nodejs',
  // The registry's own roles on the CouchDB port (core/provenance.ts): names that would read like them.
  GATEWAY_ROLE, READER_ROLE, REPLICATOR_ROLE, SITE_ROLE,
];
/**
 * Roles of the accounts that only the registry's own machinery logs in with (replication, the other
 * sites): never an npm user at the gateway (no token, no publish, no status), whoever has the password.
 */
const MACHINE_ROLES = [REPLICATOR_ROLE, SITE_ROLE];
const isMachine = (roles: unknown): boolean => Array.isArray(roles) && roles.some((role) => MACHINE_ROLES.includes(role));
const RESERVED = new Set(RESERVED_NAMES.map((name) => normalizedUserName(name)));
/** How long the list of server admins' names is kept (who is an admin changes rarely; their passwords are always read fresh). */
const ADMIN_NAMES_MS = 10_000;

export interface UserDoc {
  _id: string;
  _rev?: string;
  name: string;
  type: 'user';
  roles: string[];
  email?: string;
  password?: string;
  /** What CouchDB stores instead of the password (read as admin). */
  salt?: string;
  derived_key?: string;
  password_sha?: string;
  /** When the account was made and last changed (accounts made before these were kept have none). */
  created?: string;
  updated?: string;
  /** Two-factor authentication (gateway/two-factor.ts). */
  registry_tfa?: TwoFactorState;
  /** The single sign-on identity the account is bound to, and the roles its last sign-on gave (gateway/sso.ts). */
  registry_sso?: SsoBinding;
}

/** An account made or linked by single sign-on: whose it is at which provider, and what its groups gave it. */
export interface SsoBinding {
  issuer: string;
  subject: string;
  /** The roles the groups claim gave at the last sign-on (removed again when the groups no longer give them). */
  roles: string[];
  /** When the user last signed on. */
  login?: string;
}

/** An account as the gateway sees it: a `_users` document or a server admin. */
export interface Account {
  name: string;
  roles: string[];
  email?: string;
  /** Changes with the password and when the account is made again: tokens and sessions carry it. */
  stamp: string;
  admin: boolean;
  /** When a `_users` account was made, if known. */
  created?: string;
  /** Its two-factor authentication, when it set one up (enabled, or pending). */
  twoFactor?: TwoFactorState | null;
}

/** What a token or a session records of the account it was issued for. */
export interface IssuedFor {
  /** The account's stamp when it was issued; absent on tokens made before stamps were kept. */
  account?: string;
  created: string;
}

/** A user name as npm would compare it: Unicode-normalized, lower case, without `.`, `_` and `-`. */
export function normalizedUserName(name: string): string {
  return name.normalize('NFKC').toLowerCase().replace(/[._-]/g, '');
}

/** Why `name` cannot be a user name, or null. */
export function userNameProblem(name: string): string | null {
  return USER_NAME.test(name) ? null : 'User names may contain letters, digits, ".", "_" and "-", and start with a letter or digit.';
}

const stampOf = (...parts: string[]) => createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 32);

export class Accounts {
  private readonly users: Database<UserDoc>;
  private adminNames?: { names: Set<string>; until: number };
  /**
   * The live revisions of the account of that name at the other sites of this registry
   * (replication/sites.ts), none when they have none; it throws when a site cannot be asked. Unset
   * without sites.
   */
  elsewhere?: (name: string) => Promise<string[]>;
  /**
   * Set when password logins are off for people (`SSO_PASSWORD_LOGIN=off`): the words of the refusal.
   * Only CouchDB's server admins may then log in with a password (break-glass).
   */
  passwordLoginsOff?: string;
  /**
   * How long the roles a sign-on's groups gave hold without another sign-on (`SSO_GROUPS_MAX_AGE`, in
   * ms; 0: until the next one): after that the account, and every token of it, acts without them.
   */
  ssoGroupsMaxAgeMs = 0;
  /** Where this CouchDB's configuration is read (`/_node/_local/_config` on CouchDB 3, `/_config` on the embedded server). */
  private configBase?: string;

  constructor(
    private readonly couch: Couch,
    private readonly throttle: LoginThrottle,
    /** Told of every password check's result (for metrics). */
    private readonly checked: (ok: boolean) => void = () => undefined,
  ) {
    this.users = couch.db<UserDoc>('_users');
  }

  /** The `_users` document of `name`, or null; a name that cannot be a user (`_local/x`) is never looked up. */
  async read(name: string): Promise<UserDoc | null> {
    if (userNameProblem(name)) return null;
    try {
      return await this.users.get(USER_PREFIX + name);
    } catch (err) {
      const failure = couchFailure(err);
      throw new HttpError(502, 'The registry database failed: ' + failure.reason + '. Try again later.');
    }
  }

  /** A section or value of CouchDB's configuration, read as admin; undefined when it is not set. */
  private async config(path: string): Promise<unknown> {
    const bases = this.configBase ? [this.configBase] : ['/_node/_local/_config', '/_config'];
    let failure = couchFailure(new Error('no configuration endpoint answered'));
    for (const base of bases) {
      try {
        const value = await this.couch.request<unknown>('GET', base + path);
        this.configBase = base;
        return value;
      } catch (err) {
        failure = couchFailure(err);
        // CouchDB's answer for a value that is not set; any other refusal tries the next endpoint.
        if (failure.statusCode === 404 && failure.reason === 'unknown_config_value') {
          this.configBase = base;
          return undefined;
        }
      }
    }
    throw new HttpError(502, 'CouchDB\'s configuration could not be read: ' + failure.reason + '. Try again later.');
  }

  /** The names of CouchDB's server admins (kept for a few seconds; `fresh` reads them again). */
  async serverAdminNames(fresh = false): Promise<Set<string>> {
    if (!fresh && this.adminNames && this.adminNames.until > Date.now()) return this.adminNames.names;
    const section = await this.config('/admins');
    const names = new Set(section && typeof section === 'object' ? Object.keys(section) : []);
    this.adminNames = { names, until: Date.now() + ADMIN_NAMES_MS };
    return names;
  }

  /** The account `name`: a server admin (their password hash read fresh), else its `_users` document; null when there is none. */
  async account(name: string): Promise<Account | null> {
    if (userNameProblem(name)) return null;
    if ((await this.serverAdminNames()).has(name)) {
      const hash = await this.config('/admins/' + encodeURIComponent(name));
      if (typeof hash === 'string') return { name, roles: ['_admin'], stamp: stampOf('admin', name, hash), admin: true };
      return null;
    }
    const doc = await this.read(name);
    if (!doc || doc.type !== 'user' || doc.name !== name || isMachine(doc.roles)) return null;
    // The roles of a sign-on's groups lapse when the user has not signed on for too long (gateway/sso.ts).
    const sso = doc.registry_sso;
    const lapsed = sso && Array.isArray(sso.roles) && this.ssoGroupsMaxAgeMs > 0 && !(Date.parse(String(sso.login)) > Date.now() - this.ssoGroupsMaxAgeMs) ? sso.roles : [];
    const roles = (Array.isArray(doc.roles) ? doc.roles : []).filter((r) => typeof r === 'string' && !r.startsWith('_') && !lapsed.includes(r));
    return {
      name, roles, email: doc.email, stamp: stampOf('user', name, String(doc.salt), String(doc.derived_key || doc.password_sha)), admin: false, created: doc.created,
      twoFactor: twoFactorOf(doc),
    };
  }

  /**
   * Whether a token or session issued for `account` still belongs to it: its stamp is the account's
   * current one. One made before stamps were kept is honoured only for a `_users` account that
   * existed already when it was issued (a token never survives the account being made again).
   */
  stillFor(issued: IssuedFor, account: Account): boolean {
    if (issued.account !== undefined) return issued.account === account.stamp;
    return !account.admin && !!account.created && issued.created >= account.created;
  }

  /** Why `name` may not be signed up (reserved, or a server admin's), or null. */
  async signupProblem(name: string): Promise<string | null> {
    const problem = userNameProblem(name);
    if (problem) return problem;
    const normalized = normalizedUserName(name);
    const admins = [...(await this.serverAdminNames(true))].map((admin) => normalizedUserName(admin));
    if (RESERVED.has(normalized) || admins.includes(normalized)) {
      return 'The user name "' + name + '" is reserved; choose another name.';
    }
    return null;
  }

  /**
   * Creates an account; 400 for a bad name or password, 403 for a reserved name, 409 when the name is
   * taken. `extra`: fields of the new document besides the name and password (roles, `registry_sso`).
   */
  async create(name: string, password: string, email?: string, extra: Pick<UserDoc, 'roles' | 'registry_sso'> = { roles: [] }): Promise<void> {
    const problem = userNameProblem(name);
    if (problem) throw badRequest(problem);
    const reserved = await this.signupProblem(name);
    if (reserved) throw forbidden(reserved);
    const weak = passwordProblem(password);
    if (weak) throw badRequest(weak);
    const taken = () => conflict('The user name "' + name + '" is taken; choose another, or log in with its password.');
    const elsewhere = this.elsewhere;
    const askSites = (): Promise<string[]> =>
      elsewhere
        ? elsewhere(name).catch((err: Error) => {
          throw new HttpError(503, 'Sign-up needs every site of this registry to confirm that the name is free, and ' + err.message + '. Try again later.');
        })
        : Promise.resolve([]);
    // A name is one account at every site: one created at another site, not replicated here yet, is taken.
    if ((await askSites()).length) throw taken();
    const now = new Date().toISOString();
    const doc: UserDoc = { _id: USER_PREFIX + name, name, type: 'user', password, created: now, updated: now, ...extra };
    if (email) doc.email = email;
    let rev: string;
    try {
      rev = (await this.users.put(doc)).rev;
    } catch (err) {
      if (couchFailure(err).statusCode === 409) throw taken();
      throw err;
    }
    if (!elsewhere) return;
    // The same name signed up at another site at the same moment (each site asked the other before
    // either had it): asked again now, at least one of the two sees the other, and a sign-up that
    // sees another account of its name gives way (both may, then neither succeeds, and the name is
    // free again): never two people under one name. A site that cannot be asked now leaves the name
    // free here, as before the sign-up.
    let rivals: string[];
    try {
      rivals = (await askSites()).filter((other) => other !== rev);
    } catch (err) {
      await this.users.remove(doc._id, rev).catch(() => undefined);
      throw err;
    }
    if (rivals.length) {
      await this.users.remove(doc._id, rev);
      throw taken();
    }
  }

  /**
   * Changes fields of the account `name` (its profile: email, fullname, homepage…, or `password`, which
   * CouchDB hashes: its stamp changes, so its tokens and sessions end at once).
   */
  update(name: string, changes: Record<string, string | null>): Promise<void> {
    return this.edit(name, (next) => {
      for (const [key, value] of Object.entries(changes)) {
        if (value === null) delete next[key];
        else next[key] = value;
      }
    });
  }

  /** Sets (or, with null, removes) the two-factor authentication of the account `name`. */
  setTwoFactor(name: string, state: TwoFactorState | null): Promise<void> {
    return this.edit(name, (next) => {
      if (state) next.registry_tfa = state;
      else delete next.registry_tfa;
    });
  }

  /** Writes the account `name` as `change` makes it from its current document, again when it changed meanwhile (409). */
  async edit(name: string, change: (next: UserDoc & Record<string, unknown>) => void): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const doc = await this.read(name);
      if (!doc) throw new HttpError(404, 'No account "' + name + '".');
      const next = { ...doc, updated: new Date().toISOString() } as UserDoc & Record<string, unknown>;
      change(next);
      try {
        await this.users.put(next);
        return;
      } catch (err) {
        if (couchFailure(err).statusCode !== 409) throw err;
      }
    }
    throw new HttpError(409, 'The account changed while this request was processed; run the command again.');
  }

  /**
   * Throws the login throttle's 429 when `name` may not try to log in from `address` yet: asked before
   * work a log-in makes elsewhere (asking the other sites for an account), which the throttle must
   * bound as it bounds the hashing.
   */
  assertMayTry(name: string, address: string): void {
    try {
      this.throttle.check(name, address);
    } catch (err) {
      if (err instanceof LoginRefused) throw new HttpError(err.status, err.message, err.headers);
      throw err;
    }
  }

  /**
   * Checks a name and password from `address`: the user, or null when they do not match. Every
   * password actually hashed counts against the throttle before it is (a 429 once the user or the
   * address has tried too often); a check waits in the hashing queue only while its client is there
   * (`signal`), and is refused with 503 when the queue is full. An unknown name costs what a known one
   * costs.
   */
  async verify(name: string, password: string, address: string, signal?: AbortSignal): Promise<Identity | null> {
    const attempt: LoginAttempt = { address, throttle: this.throttle, signal };
    let identity: Identity | null = null;
    if (this.passwordLoginsOff && !(await this.serverAdminNames()).has(name)) throw new HttpError(403, this.passwordLoginsOff);
    try {
      // An empty name or password is a failed attempt too, without a hash.
      if (!name || !password) this.throttle.begin(name, address);
      else identity = await loginAttempt.run(attempt, () => this.couch.checkPassword(name, password));
    } catch (err) {
      if (err instanceof LoginRefused) throw new HttpError(err.status, err.message, err.headers);
      if (signal?.aborted) throw new HttpError(400, 'The client left before its password was checked.');
      throw err;
    }
    this.checked(!!identity);
    return identity && isMachine(identity.roles) ? null : identity;
  }
}
