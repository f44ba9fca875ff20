/**
 * Single sign-on with OpenID Connect (`SSO_ISSUER`): people log in with the company's OpenID provider,
 * on the pages and for `npm login` (web login), with the authorization code flow, PKCE (S256), `state`
 * and `nonce`, through `openid-client`.
 *
 * A sign-on in progress is a document in `<db>-state` (admins only), named by the SHA-256 of its
 * `state`, holding its nonce, its PKCE verifier and the SHA-256 of the browser's binding cookie; the
 * callback must come with that state, from that browser, within ten minutes, once (it is removed
 * before the code is exchanged; one nobody finished is swept with the web logins). The provider's
 * answer is checked by openid-client: its issuer, that the ID token is for this client (`aud`, `azp`),
 * signed with a key of the provider's JWKS, carrying this sign-on's nonce, current; the code was
 * issued for this sign-on's PKCE challenge (checked by the provider when the verifier is sent).
 *
 * Identity is the account: an account made by single sign-on is bound to the provider's (issuer,
 * subject), and a sign-on logs in to the account of its name only when the account is bound to that
 * same pair. A name that belongs to a local account (made with a password) or to another subject is
 * refused with words that say so and what to do: never taken over, never renamed behind the user's
 * back. Accounts are made at the first sign-on, with a random password nobody knows (its salt makes
 * the account's stamp, so tokens die if the account is made again).
 *
 * Groups: a user in none of `SSO_ALLOWED_GROUPS` (when set) is refused; the roles that
 * `SSO_GROUP_ROLES` gives the groups in the groups claim are set on the account at every sign-on, and
 * roles an admin gave the account by hand stay. Tokens and page sessions read the account's roles at
 * every request, so after a sign-on without a group, no token of the account has that group's role
 * any more; without a sign-on for `SSO_GROUPS_MAX_AGE`, they lapse (gateway/accounts.ts).
 *
 * Such an account has no password anyone knows: `npm token create` takes a sign-on within the last
 * 15 minutes instead (`signOnStandsForPassword`).
 *
 * Every request to the provider (discovery, JWKS, token, userinfo) goes through the outbound request
 * policy: `SSO_ISSUER`'s exact host is configured (it may be on a private network or, in tests,
 * loopback); an endpoint elsewhere must pass the policy on its own.
 */
import { createHash, randomBytes } from 'crypto';
import { BaseClient, custom, errors as oidcErrors, generators, Issuer, IssuerMetadata, TokenSet, UserinfoResponse } from 'openid-client';
import { Logger } from 'pino';
import { OutboundPolicy, SsoConfig, ssoRoleProblem } from '../config';
import { Couch, Database } from '../couchdb/client';
import { fetchFailure, outboundRequest, readAll } from '../replication/upstream';
import { Account, Accounts, UserDoc, userNameProblem } from './accounts';
import { HttpError } from './errors';

/** How long a sign-on may take, from the registry's redirect to the provider's callback. */
export const SSO_LOGIN_TTL_MS = 10 * 60_000;
/** The cookie that binds a sign-on to the browser that started it. */
export const SSO_BROWSER_COOKIE = 'registry_sso';
/** How long the provider's discovery document is used before it is read again. */
const DISCOVERY_TTL_MS = 60 * 60_000;
const FETCH_TIMEOUT_MS = 5000;
const MAX_DISCOVERY_BYTES = 256 * 1024;
/** The clock skew allowed on the ID token's times. */
const CLOCK_SKEW_SECONDS = 60;

/** How long after `npm login` through the provider its token stands for the password an account of single sign-on does not have. */
export const SIGN_ON_FRESH_MS = 15 * 60_000;

/**
 * For `npm token create` by an account of single sign-on, which has no password anyone knows: whether
 * the request's token (`record`) comes from `npm login` through the provider within the last 15
 * minutes; false for an account with a password of its own (its password is asked); a 401 that says
 * what to do for a token of a sign-on longer ago, or not of one.
 */
export async function signOnStandsForPassword(accounts: Accounts, name: string, record: { signOn?: boolean; created: string } | undefined, displayName: string, now = Date.now()): Promise<boolean> {
  const doc = await accounts.read(name);
  if (!doc || !doc.registry_sso) return false;
  if (record && record.signOn && Date.parse(record.created) > now - SIGN_ON_FRESH_MS) return true;
  throw new HttpError(401, 'The account "' + name + '" signs in with ' + displayName + ' and has no password here: run `npm login` (sign in with ' + displayName +
    '), then create the token within ' + SIGN_ON_FRESH_MS / 60_000 + ' minutes (the password npm asks for is not used).');
}

/** Where a sign-on returns: a page of the registry, or the web login (`npm login`) whose page key it carries. */
export type SsoReturn = { page: string } | { weblogin: string };

interface SsoLogin {
  _id: string;
  _rev?: string;
  type: 'ssologin';
  created: string;
  expires: string;
  nonce: string;
  verifier: string;
  /** SHA-256 of the browser's binding cookie. */
  browser: string;
  then: SsoReturn;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Whether `value` looks like a binding cookie this registry set. */
export const isBrowserKey = (value: unknown): value is string => typeof value === 'string' && /^[A-Za-z0-9_-]{43}$/.test(value);

/** A new binding cookie's value. */
export const newBrowserKey = (): string => randomBytes(32).toString('base64url');

/** The roles `groups` give under `SSO_GROUP_ROLES`: mapped groups, and with a prefix every group (registry-machine roles never). */
export function rolesForGroups(config: Pick<SsoConfig, 'groupRoles'>, groups: string[]): string[] {
  const roles = new Set<string>();
  for (const group of groups) {
    for (const role of config.groupRoles.map.get(group) || []) roles.add(role);
    if (config.groupRoles.prefix !== undefined && !ssoRoleProblem(config.groupRoles.prefix + group)) roles.add(config.groupRoles.prefix + group);
  }
  return [...roles].sort();
}

/** The groups a claim lists: a list of strings (or one string), anything else none. */
function groupsOf(claim: unknown): string[] {
  if (typeof claim === 'string') return [claim];
  return Array.isArray(claim) ? claim.filter((g): g is string => typeof g === 'string' && g.length > 0 && g.length <= 256) : [];
}

const refused = (status: number, message: string) => new HttpError(status, message);

export class SingleSignOn {
  private readonly logins: Database<SsoLogin>;
  private discovered?: { client: BaseClient; at: number };

  constructor(
    readonly config: SsoConfig,
    private readonly outbound: OutboundPolicy,
    private readonly accounts: Accounts,
    couch: Couch,
    stateDb: string,
    /** Where the provider sends the browser back: `<base URL>/-/sso/callback` (known once the server listens). */
    private readonly redirectUri: () => string,
    private readonly log: Logger,
  ) {
    this.logins = couch.db<SsoLogin>(stateDb);
  }

  /** What people are told when password logins are off. */
  get passwordOffMessage(): string {
    return 'Password logins are turned off for people on this registry: log in with ' + this.config.displayName +
      '. Run `npm login` (npm\'s web login, the default; not --auth-type=legacy) and sign in in the browser, or use "Sign in with ' + this.config.displayName +
      '" on the registry\'s pages. Tokens you have keep working.';
  }

  /** The options every request to the provider is opened with: the outbound policy's checked lookup, a time limit. */
  private readonly httpOptions = (url: URL) => ({ ...this.outbound.connectOptions(url), timeout: FETCH_TIMEOUT_MS });

  /** The client of this registry at the provider, from its discovery document (read again after an hour; a failure is not kept). */
  private async client(): Promise<BaseClient> {
    if (this.discovered && Date.now() - this.discovered.at < DISCOVERY_TTL_MS) return this.discovered.client;
    const metadata = await this.discover();
    const issuer = new Issuer(metadata);
    (issuer as unknown as Record<symbol, unknown>)[custom.http_options] = this.httpOptions;
    const client = new issuer.Client({
      client_id: this.config.clientId,
      client_secret: this.config.clientSecret.value,
      redirect_uris: [this.redirectUri()],
      response_types: ['code'],
    });
    client[custom.http_options] = this.httpOptions as never;
    client[custom.clock_tolerance] = CLOCK_SKEW_SECONDS;
    this.discovered = { client, at: Date.now() };
    return client;
  }

  /** The provider's discovery document, fetched through the outbound policy, bounded; it must name `SSO_ISSUER` as its issuer. */
  private async discover(): Promise<IssuerMetadata> {
    const issuer = this.config.issuer;
    const url = issuer + '/.well-known/openid-configuration';
    let text: string;
    try {
      const answer = await outboundRequest(new URL(url), {
        policy: this.outbound,
        headers: { accept: 'application/json', 'user-agent': 'couch-npm-registry-sso' },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        maxBytes: MAX_DISCOVERY_BYTES,
      });
      if (answer.status !== 200) {
        answer.body.resume();
        throw unreachable(issuer, 'its discovery document ' + url + ' answered ' + answer.status);
      }
      text = (await readAll(answer.body)).toString('utf8');
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw unreachable(issuer, 'its discovery document ' + url + ' ' + fetchFailure(err).words);
    }
    let metadata: IssuerMetadata;
    try {
      metadata = JSON.parse(text) as IssuerMetadata;
    } catch {
      throw unreachable(issuer, 'its discovery document is not JSON');
    }
    if (!metadata || typeof metadata !== 'object' || String(metadata.issuer || '').replace(/\/+$/, '') !== issuer) {
      throw unreachable(issuer, 'its discovery document names another issuer ("' + String(metadata && metadata.issuer) + '"); SSO_ISSUER must be the issuer exactly as the provider names it');
    }
    for (const key of ['authorization_endpoint', 'token_endpoint', 'jwks_uri'] as const) {
      if (typeof metadata[key] !== 'string' || !/^https?:\/\//.test(metadata[key] as string)) throw unreachable(issuer, 'its discovery document names no http(s) ' + key);
    }
    return metadata;
  }

  /**
   * Starts a sign-on for the browser whose binding cookie is `browserKey`, returning to `then`: the
   * provider's authorization URL to send the browser to.
   */
  async start(then: SsoReturn, browserKey: string, now = Date.now()): Promise<string> {
    const client = await this.client();
    const state = generators.state();
    const nonce = generators.nonce();
    const verifier = generators.codeVerifier();
    await this.logins.put({
      _id: 'ssologin:' + sha256(state),
      type: 'ssologin',
      created: new Date(now).toISOString(),
      expires: new Date(now + SSO_LOGIN_TTL_MS).toISOString(),
      nonce,
      verifier,
      browser: sha256(browserKey),
      then,
    });
    return client.authorizationUrl({
      scope: this.config.scopes.join(' '),
      redirect_uri: this.redirectUri(),
      response_type: 'code',
      state,
      nonce,
      code_challenge: generators.codeChallenge(verifier),
      code_challenge_method: 'S256',
    });
  }

  /**
   * The provider's callback (`query`: its parameters) in the browser whose binding cookie is
   * `browserKey`: the account signed on to (made at the first sign-on, its roles set from the groups
   * claim) and where the sign-on returns. Throws an `HttpError` that says what is wrong.
   */
  async finish(query: Record<string, unknown>, browserKey: string | undefined, now = Date.now()): Promise<{ account: Account; then: SsoReturn }> {
    const state = query.state;
    const again = 'Start the sign-in again from the registry (its login page, or `npm login`).';
    if (typeof state !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(state)) throw refused(400, 'This sign-in answer carries no valid state. ' + again);
    const login = await this.logins.get('ssologin:' + sha256(state));
    if (!login || login.type !== 'ssologin') throw refused(400, 'This sign-in is unknown, expired or was already used. ' + again);
    if (!isBrowserKey(browserKey) || sha256(browserKey) !== login.browser) {
      throw refused(403, 'This sign-in was started in another browser (or this browser lost its cookie): it is not completed here. ' + again);
    }
    // Once: whoever removes it first completes it; a replayed callback finds nothing.
    try {
      await this.logins.remove(login._id, login._rev as string);
    } catch {
      throw refused(400, 'This sign-in was already used. ' + again);
    }
    if (Date.parse(login.expires) <= now) throw refused(400, 'This sign-in took longer than ' + SSO_LOGIN_TTL_MS / 60_000 + ' minutes and expired. ' + again);
    const params: Record<string, string> = {};
    for (const key of ['code', 'state', 'error', 'error_description', 'iss', 'session_state']) {
      if (typeof query[key] === 'string') params[key] = query[key] as string;
    }
    const client = await this.client();
    let tokens: TokenSet;
    try {
      tokens = await client.callback(this.redirectUri(), params, { state, nonce: login.nonce, code_verifier: login.verifier, response_type: 'code' });
    } catch (err) {
      throw this.refusal(err);
    }
    const claims: Record<string, unknown> = { ...tokens.claims() };
    const wanted = [this.config.usernameClaim, this.config.groupsClaim, 'email'];
    if (wanted.some((claim) => claims[claim] === undefined) && client.issuer.metadata.userinfo_endpoint && tokens.access_token) {
      let info: UserinfoResponse;
      try {
        // openid-client checks that the userinfo's subject is the ID token's.
        info = await client.userinfo(tokens);
      } catch (err) {
        throw this.refusal(err);
      }
      for (const claim of wanted) if (claims[claim] === undefined && info[claim] !== undefined) claims[claim] = info[claim];
    }
    const account = await this.provision(claims, now);
    return { account, then: login.then };
  }

  /** The words for a failed exchange or check: the provider refused (its error), its answer does not verify, or it could not be asked. */
  private refusal(err: unknown): HttpError {
    if (err instanceof HttpError) return err;
    if (err instanceof oidcErrors.OPError) {
      this.log.info({ error: err.error }, 'single sign-on refused by the provider');
      return refused(401, this.config.displayName + ' refused the sign-in: ' + err.error + (err.error_description ? ' (' + err.error_description + ')' : '') + '. Start the sign-in again from the registry.');
    }
    if (err instanceof oidcErrors.RPError && !/^outgoing request timed out/.test(err.message)) {
      this.log.warn({ reason: err.message }, 'single sign-on answer refused');
      return refused(401, 'The sign-in answer from ' + this.config.displayName + ' does not verify (' + err.message + '); nobody was logged in. Start the sign-in again from the registry.');
    }
    // The provider could not be asked (the outbound policy, the network, a timeout); anything else is a fault here.
    const e = err as { code?: string; message?: string };
    if (!(err instanceof oidcErrors.RPError) && !(typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code))) throw err;
    this.log.warn({ err: e.message }, 'single sign-on provider unreachable');
    return unreachable(this.config.issuer, err instanceof oidcErrors.RPError ? 'it did not answer in time' : fetchFailure(err).words);
  }

  /**
   * The account of a verified sign-on: made at the first one, bound to (issuer, subject); later ones
   * must come from the same pair. Its roles are set from the groups claim.
   */
  async provision(claims: Record<string, unknown>, now = Date.now()): Promise<Account> {
    const issuer = this.config.issuer;
    const subject = claims.sub;
    if (typeof subject !== 'string' || !subject) throw refused(401, 'The ID token from ' + this.config.displayName + ' names no subject (sub); nobody was logged in.');
    const rawName = claims[this.config.usernameClaim];
    const name = typeof rawName === 'string' ? rawName.trim() : '';
    const nameProblem = name ? userNameProblem(name) : 'it is missing';
    if (nameProblem) {
      throw refused(403, 'Your ' + this.config.displayName + ' account has no name this registry can use in its claim "' + this.config.usernameClaim + '" (' +
        (name ? '"' + name.slice(0, 80) + '": ' : '') + nameProblem + '). Ask an admin to set SSO_USERNAME_CLAIM or your name at ' + this.config.displayName + '.');
    }
    const groups = groupsOf(claims[this.config.groupsClaim]);
    if (this.config.allowedGroups.length && !groups.some((group) => this.config.allowedGroups.includes(group))) {
      this.log.info({ user: name }, 'single sign-on refused: in no allowed group');
      throw refused(403, 'Your ' + this.config.displayName + ' account is in none of the groups allowed to use this registry (' + this.config.allowedGroups.join(', ') +
        '); ask an admin to add you to one of them at ' + this.config.displayName + '.');
    }
    const roles = rolesForGroups(this.config, groups);
    const email = typeof claims.email === 'string' && claims.email_verified !== false ? claims.email : undefined;
    const login = new Date(now).toISOString();
    for (let attempt = 0; attempt < 3; attempt++) {
      const doc = await this.accounts.read(name);
      if (!doc) {
        const reserved = await this.accounts.signupProblem(name);
        if (reserved) throw refused(403, 'The user name "' + name + '" from ' + this.config.displayName + ' is reserved on this registry; ask an admin to give you another name there.');
        try {
          await this.accounts.create(name, randomBytes(32).toString('base64url'), email, { roles, registry_sso: { issuer, subject, roles, login } });
          this.log.info({ user: name, roles }, 'account made by single sign-on');
        } catch (err) {
          // Made meanwhile (another sign-on, another site): looked at again.
          if (err instanceof HttpError && err.status === 409) continue;
          throw err;
        }
      } else {
        if (!boundTo(doc, issuer, subject)) {
          this.log.warn({ user: name }, 'single sign-on refused: the name is another account\'s');
          throw refused(409, 'The user name "' + name + '" belongs to another account of this registry (one made with a password, or another ' + this.config.displayName +
            ' user\'s): signing in with ' + this.config.displayName + ' does not take it over. Ask an admin to link that account to your sign-in (if it is yours) or to rename it.');
        }
        await this.accounts.edit(name, (next) => {
          const previous = next.registry_sso?.roles || [];
          const byHand = (Array.isArray(next.roles) ? next.roles : []).filter((role) => !previous.includes(role));
          next.roles = [...new Set([...byHand, ...roles])].sort();
          next.registry_sso = { issuer, subject, roles: roles.filter((role) => !byHand.includes(role)), login };
          if (email && email !== next.email) next.email = email;
        });
        this.log.info({ user: name, roles }, 'single sign-on');
      }
      const account = await this.accounts.account(name);
      if (account) return account;
    }
    throw refused(409, 'The account "' + name + '" changed while you signed in; sign in again.');
  }
}

/** Whether the `_users` document `doc` is bound to the provider's (issuer, subject). */
function boundTo(doc: UserDoc, issuer: string, subject: string): boolean {
  const binding = doc.registry_sso;
  return doc.type === 'user' && !!binding && typeof binding === 'object' && binding.issuer === issuer && binding.subject === subject;
}

/** The provider could not be asked: 424, as for an upstream that failed. */
function unreachable(issuer: string, why: string): HttpError {
  return new HttpError(424, 'The sign-in provider ' + issuer + ' could not be asked: ' + why + '. Try again later; if it lasts, an admin should check SSO_ISSUER and the outbound policy (OUTBOUND_ALLOW_PRIVATE).');
}
