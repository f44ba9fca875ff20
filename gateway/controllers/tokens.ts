/**
 * `npm token list/create/revoke` (`/-/npm/v1/tokens`) and `npm profile get` (`/-/npm/v1/user`).
 * Creating a token asks for the password again; a token is shown once and stored as its hash. It
 * expires, and may be limited to packages and scopes (core/tokens.ts checks what npm asks for). A
 * read-only or limited token neither creates nor revokes tokens; tokens of an account's former password (or of a
 * former account of the same name) are not listed, and are removed when seen.
 */
import { Response, Router } from 'express';
import { abandonSignal, AuthenticatedUser, clientAddress, requireUser } from '../auth';
import { Context } from '../context';
import { badRequest, forbidden, notFound, unauthorized } from '../errors';
import { inCidr } from '../throttle';
import { hashToken, issueToken, TokenRecord } from '../tokens';
import { isLimited, tokenRequest, TokenRequest } from '../../core/tokens';

const CIDR = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;

function listed(record: TokenRecord) {
  const limits = record.limits || {};
  return {
    key: record._id,
    token: record.preview,
    // npm prints the name of every token; tokens made before names were kept get one that says so.
    name: record.name || 'unnamed',
    description: record.description || null,
    created: record.created,
    updated: record.created,
    expires: record.expires || null,
    readonly: record.readonly,
    packages_and_scopes_permission: record.readonly ? 'read-only' : 'read-write',
    packages: limits.packages || null,
    scopes: limits.scopes || null,
    packages_all: isLimited(limits) ? false : true,
    cidr_whitelist: record.cidr_whitelist.length ? record.cidr_whitelist : null,
  };
}

/** The user, if their credentials may manage tokens: a read-only token may not, nor one limited to some packages. */
function tokenManager(res: Response): AuthenticatedUser {
  const user = requireUser(res);
  if (user.readonly) throw forbidden('A read-only token cannot create or revoke tokens; use a full token, or `npm login`.');
  if (isLimited(user.limits)) throw forbidden('A token limited to some packages cannot create or revoke tokens; use `npm login`.');
  return user;
}

export function tokenRoutes(ctx: Context): Router {
  const router = Router();

  router.get('/-/npm/v1/tokens', (_req, res, next) => {
    (async () => {
      const user = requireUser(res);
      const account = await ctx.accounts.account(user.name);
      const all = await ctx.tokens.listByUser(user.name);
      const records = all.filter((record) => account && ctx.accounts.stillFor(record, account));
      for (const dead of all.filter((record) => !records.includes(record))) await ctx.tokens.revokeKey(dead._id, user.name).catch(() => undefined);
      res.json({ objects: records.map(listed), total: records.length, urls: {} });
    })().catch(next);
  });

  router.post('/-/npm/v1/tokens', (req, res, next) => {
    (async () => {
      const user = tokenManager(res);
      const body = (req.body || {}) as Record<string, unknown>;
      if (typeof body.password !== 'string' || !body.password) {
        throw badRequest('Creating a token needs your password: `npm token create --password <password>` or answer the prompt.');
      }
      if (!(await ctx.accounts.verify(user.name, body.password, clientAddress(req), abandonSignal(res)))) {
        throw unauthorized('Wrong password for "' + user.name + '".');
      }
      const cidr = body.cidr_whitelist === undefined || body.cidr_whitelist === null ? [] : body.cidr_whitelist;
      if (!Array.isArray(cidr) || !cidr.every((c) => typeof c === 'string' && CIDR.test(c) && inCidr(c.split('/')[0], c))) {
        throw badRequest('"cidr_whitelist" must be a list of IPv4 CIDR blocks such as 192.168.0.0/24.');
      }
      let asked: TokenRequest;
      try {
        asked = tokenRequest(body, ctx.config.tokens, Date.now());
      } catch (err) {
        throw badRequest((err as Error).message);
      }
      const { readonly, name, expires, limits, description } = asked;
      const { token, record } = await issueToken(ctx.accounts, ctx.tokens, user.name, { readonly, cidr: cidr as string[], name, expires, limits, description });
      ctx.log.info({ user: user.name, readonly, cidr, expires, limits }, 'token created');
      res.status(201).json({ ...listed(record), token });
    })().catch(next);
  });

  router.delete('/-/npm/v1/tokens/token/:key', (req, res, next) => {
    (async () => {
      const user = tokenManager(res);
      // `npm token revoke` sends the key (the token's hash) of a listed token, or the token itself.
      const given = req.params.key;
      const key = /^[0-9a-f]{64}$/.test(given) ? given : hashToken(given);
      const removed = await ctx.tokens.revokeKey(key, user.roles.includes('_admin') ? null : user.name);
      if (!removed) throw notFound('No token of yours has that key or value; see `npm token list`.');
      ctx.log.info({ user: user.name }, 'token revoked');
      res.status(204).end();
    })().catch(next);
  });

  router.get('/-/npm/v1/user', (_req, res, next) => {
    (async () => {
      const user = requireUser(res);
      const doc = await ctx.accounts.read(user.name);
      if (!doc) throw notFound('No profile for "' + user.name + '".');
      res.json({ name: doc.name, email: doc.email || null, email_verified: false, tfa: false, created: doc.created || null, updated: doc.updated || doc.created || null, fullname: null, homepage: null });
    })().catch(next);
  });

  return router;
}
