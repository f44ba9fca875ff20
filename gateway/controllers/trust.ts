/**
 * Trusted publishing, as npm 11 drives it:
 *
 * - `npm trust github|gitlab|circleci <pkg> …` (`POST /-/package/<name>/trust`, a list of
 *   `{type, claims, permissions}`), `npm trust list` (`GET`) and `npm trust revoke --id`
 *   (`DELETE /-/package/<name>/trust/<id>`): the package's maintainers (and admins) keep its trusts in
 *   its document (`registry_trust`, never served); changing them asks for the second factor whenever
 *   the account has one, a `--bypass-2fa` token notwithstanding (a trust makes publish tokens);
 * - the exchange npm makes in CI (`POST /-/npm/v1/oidc/token/exchange/package/<name>`, the ID token
 *   as its Bearer credential, lib/utils/oidc.js): the ID token is verified (gateway/oidc.ts), a trust
 *   of the package must match its claims (core/trust.ts), and the answer `{token}` is a token of the
 *   account that made the trust, for 15 minutes, limited to that package, that only publishes
 *   (gateway/auth.ts), needs no one-time password, and marks the versions it publishes
 *   (`_npmUser.trustedPublisher`). Refused while that account is no longer a maintainer.
 *
 * Every refusal is a 4xx whose `error` (and `message`, which npm logs with --loglevel verbose before
 * it falls back to its other credentials) says what is wrong and what to do.
 */
import { randomUUID } from 'crypto';
import { NextFunction, Request, Response, Router } from 'express';
import { isTombstone } from '../../core/packument';
import { maintainerNames } from '../../core/rules';
import { MAX_TRUSTS, servedTrust, TrustConfig, trustProblem, trustRequest, trustsOf } from '../../core/trust';
import { PackageDoc } from '../../core/types';
import { isAdminUser } from '../../core/access';
import { AuthenticatedUser, requireWriter } from '../auth';
import { Context, getPackageDoc } from '../context';
import { asHttpError, badRequest, forbidden, HttpError, notFound } from '../errors';
import { IdTokenVerifier, refusedToken } from '../oidc';
import { decodeSegment } from '../paths';
import { credentialOf, requireSecondFactor, twoFactorOn } from '../second-factor';
import { issueToken } from '../tokens';
import { writeWithRetry } from '../writes';
import { packageMfaOf } from './package-access';

/** How long a token exchanged by trusted publishing lives. */
export const TRUSTED_TOKEN_MINUTES = 15;

/** The largest body the exchange reads (npm sends none). */
const EXCHANGE_BODY_BYTES = 64 * 1024;

const TRUST_PATH = /^\/-\/package\/(.+)\/trust(?:\/([^/]+))?\/?$/;
const EXCHANGE_PATH = /^\/-\/npm\/v1\/oidc\/token\/exchange\/package\/(.+?)\/?$/;


/** The local package `name` for its trusts, if the caller maintains it (or is an admin). */
async function maintainedPackage(ctx: Context, res: Response, user: AuthenticatedUser, name: string): Promise<PackageDoc> {
  await ctx.access.assertRead(res, name);
  const doc = await getPackageDoc(ctx.registry, name);
  if (!doc || isTombstone(doc)) {
    throw await ctx.access.missing(res, name, notFound('Package "' + name + '" is not published on this registry: publish its first version with `npm publish`, then set up trusted publishing for it.'));
  }
  if (!isAdminUser(user) && maintainerNames(doc).indexOf(user.name) === -1) {
    throw forbidden('Only the maintainers of "' + name + '" may see or change its trusted publishers (maintainers: ' + maintainerNames(doc).join(', ') + ').');
  }
  return doc;
}

/**
 * The second factor for changing trusts: a code whenever the account has two-factor authentication
 * (either mode; a `--bypass-2fa` token does not stand in for it), and an account with it when the
 * package's maintainers require it (`npm access set mfa=…`).
 */
async function requireTrustFactor(ctx: Context, res: Response, user: AuthenticatedUser, name: string): Promise<void> {
  const who = credentialOf(res, user);
  if (!who.admin && (await packageMfaOf(ctx, name)) && !twoFactorOn(user.twoFactor)) {
    throw forbidden('The maintainers of "' + name + '" require two-factor authentication to change it: run `npm profile enable-2fa auth-and-writes` first.');
  }
  await requireSecondFactor(ctx.accounts, ctx.config, res, who, user.twoFactor, 'credentials');
}

/**
 * Throws when `user` writes with a trusted publishing token whose trust has since been revoked from
 * `doc` (`npm trust revoke`): it publishes and stages no more, though it has not expired.
 */
export function assertTrustStands(user: AuthenticatedUser, name: string, doc: PackageDoc | null): void {
  const trusted = user.trustedPublisher;
  if (trusted && !trustsOf(doc).some((t) => t.id === trusted.trustId)) {
    throw forbidden('The trusted publisher this token was exchanged for has been revoked from "' + name + '"; a maintainer must set it up again (`npm trust …`) before this CI publishes.');
  }
}

export function trustRoutes(ctx: Context): Router {
  const router = Router();

  async function list(res: Response, name: string): Promise<void> {
    const user = requireWriter(res, name);
    const doc = await maintainedPackage(ctx, res, user, name);
    res.json(trustsOf(doc).map(servedTrust));
  }

  async function add(req: Request, res: Response, name: string): Promise<void> {
    const user = requireWriter(res, name);
    await maintainedPackage(ctx, res, user, name);
    let made: TrustConfig[];
    try {
      made = trustRequest(req.body, ctx.config.oidcIssuers, { by: user.name, now: new Date().toISOString(), newId: randomUUID });
    } catch (err) {
      throw badRequest((err as Error).message);
    }
    await requireTrustFactor(ctx, res, user, name);
    await writeWithRetry(ctx, user, name, (existing) => {
      if (!existing || isTombstone(existing)) throw notFound('Package "' + name + '" is not published on this registry.');
      const trusts = trustsOf(existing).concat(made);
      if (trusts.length > MAX_TRUSTS) throw badRequest('"' + name + '" would have more than ' + MAX_TRUSTS + ' trusted publishers; revoke some first (`npm trust list`, `npm trust revoke --id`).');
      return { ...existing, registry_trust: trusts };
    });
    ctx.log.info({ user: user.name, package: name, trusts: made.map((t) => ({ id: t.id, type: t.type, issuer: t.issuer })) }, 'trusted publisher added');
    res.status(201).json(made.map(servedTrust));
  }

  async function revoke(res: Response, name: string, id: string): Promise<void> {
    const user = requireWriter(res, name);
    const doc = await maintainedPackage(ctx, res, user, name);
    const missing = () => notFound('"' + name + '" has no trusted publisher with the id "' + id + '"; `npm trust list ' + name + '` shows their ids.');
    if (!trustsOf(doc).some((t) => t.id === id)) throw missing();
    await requireTrustFactor(ctx, res, user, name);
    await writeWithRetry(ctx, user, name, (existing) => {
      const trusts = trustsOf(existing);
      if (!existing || !trusts.some((t) => t.id === id)) throw missing();
      const next: PackageDoc = { ...existing, registry_trust: trusts.filter((t) => t.id !== id) };
      if (!next.registry_trust!.length) delete next.registry_trust;
      return next;
    });
    ctx.log.info({ user: user.name, package: name, trust: id }, 'trusted publisher revoked');
    res.json({ ok: true });
  }

  router.all(TRUST_PATH, (req, res, next) => {
    const match = TRUST_PATH.exec(req.path) as RegExpExecArray;
    const run = async () => {
      const name = decodeSegment(match[1]);
      const id = match[2] === undefined ? undefined : decodeSegment(match[2]);
      if (id === undefined && req.method === 'GET') return list(res, name);
      if (id === undefined && req.method === 'POST') return add(req, res, name);
      if (id !== undefined && req.method === 'DELETE') return revoke(res, name, id);
      throw new HttpError(405, 'Use GET (npm trust list) or POST (npm trust github|gitlab|circleci) on /-/package/<name>/trust, and DELETE (npm trust revoke --id) on /-/package/<name>/trust/<id>.');
    };
    run().catch(next);
  });
  return router;
}

/**
 * The exchange of a CI's ID token for a publish token. Mounted before the API's authentication: its
 * Bearer credential is the ID token, not a token of this registry. It reads no body.
 */
export function oidcExchangeRoutes(ctx: Context, verifier: IdTokenVerifier = new IdTokenVerifier(ctx.config)): Router {
  const router = Router();

  async function exchange(req: Request, res: Response, name: string): Promise<void> {
    if (Number(req.headers['content-length']) > EXCHANGE_BODY_BYTES) {
      throw new HttpError(413, 'The token exchange reads no body; send the ID token as the Bearer credential only.');
    }
    const header = req.headers.authorization || '';
    const match = /^bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) {
      throw refusedToken('Send your CI\'s OIDC ID token as the Bearer credential (npm does so in GitHub Actions, GitLab CI/CD and CircleCI when the job may have an ID token).');
    }
    const audience = 'npm:' + new URL(ctx.baseUrl).hostname;
    const verified = await verifier.verify(match[1], audience);
    const doc = await getPackageDoc(ctx.registry, name);
    const setUp = 'a maintainer sets it up with `npm trust github|gitlab|circleci ' + name + ' …`';
    const notHere = () => notFound('Package "' + name + '" is not published on this registry, so it has no trusted publishers: publish its first version as a maintainer, then ' + setUp.replace(/^a /, 'have a ') + '.');
    if (!doc || isTombstone(doc)) throw notHere();
    // The ID token is nobody's here: a package the access rules hide is, to a CI it does not trust, one that does not exist.
    const hidden = !(await ctx.access.anyoneMayRead(name));
    const trusts = trustsOf(doc).filter((t) => t.type === verified.issuer.provider && t.issuer.replace(/\/+$/, '') === verified.issuer.issuer.replace(/\/+$/, ''));
    if (trusts.length === 0) {
      if (hidden) throw notHere();
      throw notFound('"' + name + '" trusts no ' + verified.issuer.provider + ' publisher of ' + verified.issuer.issuer + ' on this registry; ' + setUp + '.');
    }
    const problems: string[] = [];
    const trust = trusts.find((t) => {
      const problem = trustProblem(t, verified.claims);
      if (problem) problems.push('trust ' + t.id + ': ' + problem);
      return !problem;
    });
    if (!trust) {
      if (hidden) throw notHere();
      throw forbidden('This ID token matches no trusted publisher of "' + name + '" (' + problems.join('; ') + '). Publish from the repository, workflow and environment the trust names, or have a maintainer change it (`npm trust list ' + name + '`).');
    }
    if (maintainerNames(doc).indexOf(trust.createdBy) === -1) {
      throw forbidden('The trusted publisher ' + trust.id + ' of "' + name + '" was set up by "' + trust.createdBy + '", who is no longer a maintainer of it: a maintainer must set it up again (`npm trust revoke`, then `npm trust …`).');
    }
    const subject = typeof verified.claims.sub === 'string' ? verified.claims.sub.slice(0, 300) : undefined;
    let issued;
    try {
      issued = await issueToken(ctx.accounts, ctx.tokens, trust.createdBy, {
        name: 'trusted publishing (' + trust.type + ') of ' + name,
        expires: new Date(Date.now() + TRUSTED_TOKEN_MINUTES * 60_000).toISOString(),
        limits: { packages: [name] },
        trustedPublisher: { provider: trust.type, trustId: trust.id, issuer: verified.issuer.issuer, permissions: [...(trust.permissions || ['createPackage'])], ...(subject ? { subject } : {}) },
      });
    } catch (err) {
      const known = asHttpError(err);
      if (known && known.status === 409) {
        throw forbidden('The account "' + trust.createdBy + '" that set up the trusted publisher ' + trust.id + ' of "' + name + '" no longer exists: a maintainer must set it up again.');
      }
      throw err;
    }
    ctx.log.info({ user: trust.createdBy, package: name, trust: trust.id, provider: trust.type, subject }, 'trusted publishing token issued');
    res.status(201).json({ token: issued.token, expires: issued.record.expires });
    void sweepExpired(trust.createdBy).catch((err) => ctx.log.warn({ err: (err as Error).message, user: trust.createdBy }, 'expired trusted publishing tokens could not be removed'));
  }

  /** Removes the expired trusted publishing tokens of `user` (a CI makes one per publish), a bounded number at a time. */
  async function sweepExpired(user: string): Promise<void> {
    const now = Date.now();
    const expired = (await ctx.tokens.listByUser(user)).filter((t) => t.trustedPublisher && t.expires && Date.parse(t.expires) <= now).slice(0, 100);
    for (const record of expired) await ctx.tokens.revokeKey(record._id, user);
  }

  // npm logs `message` of a refused exchange (--loglevel verbose); the gateway's errors carry `error`.
  const answerError = (res: Response, next: NextFunction) => (err: unknown) => {
    const known = asHttpError(err);
    if (!known) return next(err);
    res.set(known.headers).status(known.status).json({ error: known.message, message: known.message });
  };
  router.all(EXCHANGE_PATH, (req, res, next) => {
    const match = EXCHANGE_PATH.exec(req.path) as RegExpExecArray;
    const run = async () => {
      if (req.method !== 'POST') throw new HttpError(405, 'Use POST for the token exchange of trusted publishing.');
      await exchange(req, res, decodeSegment(match[1]));
    };
    run().catch(answerError(res, next));
  });
  return router;
}
