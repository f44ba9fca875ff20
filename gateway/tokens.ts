/**
 * Access tokens. A token is shown to its owner once; CouchDB keeps only its SHA-256, as the id of a
 * document in the tokens database (readable by admins only), so a revoked token is refused at once
 * by every gateway. A token records the stamp of the account it was issued for (`Accounts.account`):
 * it dies with the account and with a password change, at once. It may expire, and be limited to some
 * packages and scopes (core/tokens.ts).
 */
import { createHash, randomBytes } from 'crypto';
import { Couch, Database } from '../couchdb/client';
import { Accounts } from './accounts';
import { HttpError } from './errors';
import { TokenLimits } from '../core/tokens';

export interface TokenRecord {
  _id: string;
  _rev?: string;
  type: 'token';
  user: string;
  created: string;
  readonly: boolean;
  cidr_whitelist: string[];
  /** The first characters of the token, to recognise it in a list. */
  preview: string;
  name?: string;
  /** The stamp of the account it was issued for; tokens made before stamps were kept have none. */
  account?: string;
  /** When it stops working (ISO time); tokens made before expiry was kept have none. */
  expires?: string;
  /** The packages and scopes it is limited to (core/tokens.ts); none: every package its account may. */
  limits?: TokenLimits;
  description?: string;
  /** Writes with it need no one-time password (`npm token create --bypass-2fa`, for automation). */
  bypass2fa?: boolean;
  /** A deploy token: read-only, for scopes, of no person (`user` is `deploy:<name>`), made by an admin. */
  deploy?: boolean;
  /**
   * A token a CI got through trusted publishing (`POST /-/npm/v1/oidc/token/exchange/package/<name>`):
   * short-lived, limited to one package, and good for publishing it only (gateway/controllers/trust.ts).
   */
  trustedPublisher?: TrustedPublisherMark;
  /** Made by `npm login` through single sign-on (gateway/sso.ts): soon after, it stands for the password of an account that has none. */
  signOn?: boolean;
}

/** What marks a token made by trusted publishing: the provider, the trust it was exchanged under, the CI's subject. */
export interface TrustedPublisherMark {
  provider: string;
  trustId: string;
  issuer: string;
  subject?: string;
  /** What the trust let it do (`createPackage`, `createStagedPackage`); none kept: publish. */
  permissions?: string[];
}

/** The principal a deploy token acts as: no user name can contain ":". */
export const DEPLOY_PREFIX = 'deploy:';

/** What a new token may carry besides its account: its record's settings (`cidr` for `cidr_whitelist`). */
export type TokenOptions = Partial<Pick<TokenRecord, 'readonly' | 'name' | 'expires' | 'limits' | 'description' | 'bypass2fa' | 'deploy' | 'trustedPublisher' | 'signOn'>> & {
  cidr?: string[];
};

export const hashToken = (token: string): string => createHash('sha256').update(token).digest('hex');

export class TokenStore {
  private readonly db: Database<TokenRecord>;

  constructor(
    couch: Couch,
    dbName: string,
    /** Whether other sites replicate this database (`SITE_PEERS`): a token's account may then only be late here. */
    private readonly replicated = false,
  ) {
    this.db = couch.db<TokenRecord>(dbName);
  }

  /**
   * Removes a token found no longer to belong to its account (deleted, made again, password changed),
   * unless sites replicate tokens: there its account may only not have arrived here yet, and a removal
   * would reach every site. Such a token is refused either way.
   */
  async discard(record: TokenRecord): Promise<void> {
    if (this.replicated) return;
    await this.revokeKey(record._id, null).catch(() => undefined);
  }

  /** A new token for `user`, whose account's current stamp is `options.account`. */
  async create(user: string, options: TokenOptions & { account: string }): Promise<{ token: string; record: TokenRecord }> {
    const token = 'cnr_' + randomBytes(30).toString('base64url');
    const record: TokenRecord = {
      _id: hashToken(token),
      type: 'token',
      user,
      created: new Date().toISOString(),
      readonly: !!options.readonly,
      cidr_whitelist: options.cidr || [],
      preview: token.slice(0, 10),
      account: options.account,
    };
    if (options.name) record.name = options.name;
    if (options.expires) record.expires = options.expires;
    if (options.limits && Object.keys(options.limits).length) record.limits = options.limits;
    if (options.description) record.description = options.description;
    if (options.bypass2fa) record.bypass2fa = true;
    if (options.deploy) record.deploy = true;
    if (options.trustedPublisher) record.trustedPublisher = options.trustedPublisher;
    if (options.signOn) record.signOn = true;
    await this.db.put(record);
    return { token, record };
  }

  async lookup(token: string): Promise<TokenRecord | null> {
    return this.db.get(hashToken(token));
  }

  /** The tokens of a user, newest first (a Mango query on the `user` index made at set-up). */
  async listByUser(user: string): Promise<TokenRecord[]> {
    const docs = await this.db.find({ selector: { type: 'token', user }, limit: 10000 });
    return docs.sort((a, b) => b.created.localeCompare(a.created));
  }

  /** The deploy tokens (which belong to no person), newest first. */
  async listDeploy(): Promise<TokenRecord[]> {
    const docs = await this.db.find({ selector: { type: 'token', deploy: true }, limit: 10000 });
    return docs.sort((a, b) => b.created.localeCompare(a.created));
  }

  /** The token whose key (hash) is `key`, or null. */
  async byKey(key: string): Promise<TokenRecord | null> {
    return /^[0-9a-f]{64}$/.test(key) ? this.db.get(key) : null;
  }

  /** Removes the token whose key (hash) is `key` if it belongs to `user`; true when it did. */
  async revokeKey(key: string, user: string | null): Promise<boolean> {
    const record = await this.db.get(key);
    if (!record) return false;
    if (record.type !== 'token' || (user !== null && record.user !== user)) return false;
    await this.db.remove(record._id, record._rev as string);
    return true;
  }

  /** Removes a token; true when it existed. */
  async revoke(token: string): Promise<boolean> {
    const record = await this.lookup(token);
    if (!record) return false;
    try {
      await this.db.remove(record._id, record._rev as string);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    }
    return true;
  }
}

/** A new token for the account `user` as it is now (its stamp read afresh), for `npm login` and `npm token create`. */
export async function issueToken(accounts: Accounts, tokens: TokenStore, user: string, options: TokenOptions): Promise<{ token: string; record: TokenRecord }> {
  const account = await accounts.account(user);
  if (!account) throw new HttpError(409, 'The account "' + user + '" no longer exists; sign up or log in again.');
  return tokens.create(user, { ...options, account: account.stamp });
}
