/**
 * Users of the registry: CouchDB `_users` documents, the rules for new accounts, and the password
 * check every login path uses (Basic auth, legacy login, token creation, the web login page), with
 * failed attempts throttled per user and per address.
 */
import { Couch, couchFailure, Database, Identity } from '../couchdb/client';
import { badRequest, conflict, HttpError } from './errors';
import { LoginThrottle } from './throttle';

export const USER_PREFIX = 'org.couchdb.user:';
const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,213}$/i;

export interface UserDoc {
  _id: string;
  _rev?: string;
  name: string;
  type: 'user';
  roles: string[];
  email?: string;
  password?: string;
  /** When the account was made and last changed (accounts made before these were kept have none). */
  created?: string;
  updated?: string;
}

/** Why `name` cannot be a user name, or null. */
export function userNameProblem(name: string): string | null {
  return USER_NAME.test(name) ? null : 'User names may contain letters, digits, ".", "_" and "-", and start with a letter or digit.';
}

export class Accounts {
  private readonly users: Database<UserDoc>;

  constructor(
    private readonly couch: Couch,
    private readonly throttle: LoginThrottle,
    /** Told of every password check's result (for metrics). */
    private readonly checked: (ok: boolean) => void = () => undefined,
  ) {
    this.users = couch.db<UserDoc>('_users');
  }

  /** The account of `name`, or null; a name that cannot be a user (`_local/x`) is never looked up. */
  async read(name: string): Promise<UserDoc | null> {
    if (userNameProblem(name)) return null;
    try {
      return await this.users.get(USER_PREFIX + name);
    } catch (err) {
      const failure = couchFailure(err);
      throw new HttpError(502, 'The registry database failed: ' + failure.reason + '. Try again later.');
    }
  }

  /** Creates an account; 400 for a bad name or password, 409 when the name is taken. */
  async create(name: string, password: string, email?: string): Promise<void> {
    const problem = userNameProblem(name);
    if (problem) throw badRequest(problem);
    if (password.length < 4) throw badRequest('Choose a password of at least 4 characters.');
    const now = new Date().toISOString();
    const doc: UserDoc = { _id: USER_PREFIX + name, name, type: 'user', roles: [], password, created: now, updated: now };
    if (email) doc.email = email;
    try {
      await this.users.put(doc);
    } catch (err) {
      if (couchFailure(err).statusCode === 409) throw conflict('The user name "' + name + '" is taken; choose another, or log in with its password.');
      throw err;
    }
  }

  /**
   * Checks a name and password from `address`: the user, or null when they do not match. Throws 429
   * once the user or the address has failed too often.
   */
  async verify(name: string, password: string, address: string): Promise<Identity | null> {
    this.throttle.check(name, address);
    const identity = name && password ? await this.couch.checkPassword(name, password) : null;
    if (identity) this.throttle.succeed(name, address);
    else this.throttle.fail(name, address);
    this.checked(!!identity);
    return identity;
  }
}
