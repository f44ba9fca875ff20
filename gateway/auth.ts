/**
 * Who is asking: a Bearer token (from `npm login`) or Basic credentials checked by CouchDB. The result
 * is `res.locals.user`; requests without credentials are anonymous. Wrong credentials are answered
 * with 401 at once, so that npm asks the user to log in again instead of acting anonymously.
 */
import { NextFunction, Request, Response } from 'express';
import { Accounts } from './accounts';
import { Identity } from '../couchdb/client';
import { forbidden, HttpError, unauthorized } from './errors';
import { inCidr } from './throttle';
import { DEPLOY_PREFIX, TokenStore, TrustedPublisherMark } from './tokens';
import { TwoFactorState, twoFactorOf } from './two-factor';
import { requireSecondFactor, SecondFactorSettings } from './second-factor';
import { describeLimits, tokenCovers, TokenLimits } from '../core/tokens';
import { trustAllows } from '../core/trust';

export interface AuthenticatedUser extends Identity {
  email?: string;
  readonly: boolean;
  /** The packages and scopes a token is limited to (core/tokens.ts); none for other credentials. */
  limits?: TokenLimits;
  /** The account's two-factor authentication, if it set one up. */
  twoFactor?: TwoFactorState | null;
  /** How the user logged in: a token or Basic for the npm API, the pages' session for the web pages (read only). */
  via: 'token' | 'basic' | 'web';
  /** A token a CI got through trusted publishing: it publishes (or stages, as its trust allows) its one package and does nothing else. */
  trustedPublisher?: TrustedPublisherMark;
}

/** The refusal of a trusted publishing token for anything but publishing its package. */
function onlyPublishes(user: AuthenticatedUser): HttpError {
  return forbidden(
    'This token comes from trusted publishing (' + user.trustedPublisher!.provider + ' CI) and may only publish ' + describeLimits(user.limits || {}) +
      '; anything else needs a maintainer\'s own credentials (`npm login`).',
  );
}

export function currentUser(res: Response): AuthenticatedUser | undefined {
  return res.locals.user as AuthenticatedUser | undefined;
}

/**
 * The logged-in user, or a 401 that tells the npm user how to log in. A trusted publishing token
 * (which only publishes) is refused unless `trustedPublisherToo` (reading who it is).
 */
export function requireUser(res: Response, trustedPublisherToo = false): AuthenticatedUser {
  const user = currentUser(res);
  if (!user) throw unauthorized('You must be logged in to do this: run `npm login --registry <this registry>`.');
  if (user.trustedPublisher && !trustedPublisherToo) throw onlyPublishes(user);
  return user;
}

/**
 * The logged-in user, if they may write the package `name` with these credentials (not read-only, not
 * limited to other packages). `publish`: the write publishes new versions, the only one a trusted
 * publishing token may make.
 */
export function requireWriter(res: Response, name: string, action: 'publish' | 'stage' | 'change' = 'change'): AuthenticatedUser {
  const user = requireUser(res, action !== 'change');
  if (user.trustedPublisher && action !== 'change' && !trustAllows(user.trustedPublisher.permissions, action)) {
    throw forbidden(
      'This token comes from trusted publishing (' + user.trustedPublisher.provider + ' CI), whose trust allows ' +
        (action === 'publish' ? 'staging only: run `npm stage publish`, and a maintainer approves it' : 'publishing only, not staging: run `npm publish`, or have a maintainer add --allow-stage-publish to the trust') + '.',
    );
  }
  if (user.readonly) throw forbidden('This token is read-only; log in with a full token to publish or change packages.');
  if (!tokenCovers(user.limits, name)) {
    throw forbidden('This token is limited to ' + describeLimits(user.limits!) + '; it cannot publish or change "' + name + '". Use a token made for it (`npm token create --packages ' + name + '`).');
  }
  return user;
}

/** The client's address: the socket's, or from `X-Forwarded-For` only through the proxies `TRUST_PROXY` names. */
export function clientAddress(req: Request): string {
  return (req.ip || req.socket.remoteAddress || '').replace(/^::ffff:/, '');
}

/** A signal aborted when the client leaves before its answer is sent (its queued password check is then dropped). */
export function abandonSignal(res: Response): AbortSignal {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort(new Error('The client left before its answer.'));
  });
  return controller.signal;
}

export function authenticate(accounts: Accounts, tokens: TokenStore, settings: SecondFactorSettings) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    try {
      const header = req.headers.authorization;
      if (!header) return next();
      const [scheme, value = ''] = header.split(' ', 2);
      if (/^bearer$/i.test(scheme)) {
        const record = await tokens.lookup(value.trim());
        if (!record) throw unauthorized('This token is not valid (revoked or unknown): run `npm login` again.');
        if (record.expires && Date.parse(record.expires) <= Date.now()) {
          throw unauthorized('This token expired on ' + record.expires + ': run `npm login` again, or make a new one with `npm token create`.');
        }
        if (record.cidr_whitelist.length && !record.cidr_whitelist.some((cidr) => inCidr(clientAddress(req), cidr))) {
          throw forbidden('This token may only be used from ' + record.cidr_whitelist.join(', ') + '; this request comes from ' + clientAddress(req) + '.');
        }
        if (record.deploy && record.user.startsWith(DEPLOY_PREFIX)) {
          // A deploy token belongs to no person: it reads the packages of its scopes, as the access rules let anyone logged in.
          res.locals.user = { name: record.user, roles: [], readonly: true, limits: record.limits, twoFactor: null, via: 'token' } satisfies AuthenticatedUser;
          res.locals.tokenRecord = record;
          return next();
        }
        // The token is the account's it was issued for: not another account made later under the same
        // name, and not the account after a password change (its stamp changed).
        const account = await accounts.account(record.user);
        if (!account || !accounts.stillFor(record, account)) {
          await tokens.discard(record);
          throw unauthorized('This token is no longer valid: its account was deleted or its password changed since. Run `npm login` again.');
        }
        res.locals.user = {
          name: record.user, roles: account.roles, email: account.email, readonly: record.readonly, limits: record.limits, twoFactor: account.twoFactor, via: 'token',
          ...(record.trustedPublisher ? { trustedPublisher: record.trustedPublisher } : {}),
        } satisfies AuthenticatedUser;
        res.locals.tokenRecord = record;
        return next();
      }
      if (/^basic$/i.test(scheme)) {
        const decoded = Buffer.from(value, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        const name = colon === -1 ? decoded : decoded.slice(0, colon);
        const password = colon === -1 ? '' : decoded.slice(colon + 1);
        const identity = await accounts.verify(name, password, clientAddress(req), abandonSignal(res));
        if (!identity) throw unauthorized('Wrong user name or password.');
        const doc = identity.roles.includes('_admin') ? null : await accounts.read(identity.name);
        // The account's roles as a token would have them (those of a single sign-on's groups lapse, gateway/sso.ts).
        const roles = doc ? (await accounts.account(identity.name))?.roles ?? identity.roles : identity.roles;
        const user = { ...identity, roles, email: doc?.email, readonly: false, twoFactor: twoFactorOf(doc), via: 'basic' } satisfies AuthenticatedUser;
        // A password is a log-in: with two-factor authentication on, it needs a one-time password too.
        await requireSecondFactor(accounts, settings, res, { name: identity.name, admin: identity.roles.includes('_admin'), credential: 'basic:' + identity.name }, user.twoFactor, 'login');
        res.locals.user = user;
        return next();
      }
      throw unauthorized('Unsupported authorization scheme "' + scheme + '": use a Bearer token or Basic credentials.');
    } catch (err) {
      next(err);
    }
  };
}
