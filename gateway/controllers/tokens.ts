/**
 * `npm token list/create/revoke` (`/-/npm/v1/tokens`) and `npm profile get` (`/-/npm/v1/user`).
 * Creating a token asks for the password again; a token is shown once and stored as its hash. It
 * expires, and may be limited to packages and scopes (core/tokens.ts checks what npm asks for). A
 * read-only or limited token neither creates nor revokes tokens; tokens of an account's former password (or of a
 * former account of the same name) are not listed, and are removed when seen.
 */
import { Request, Response, Router } from 'express';
import { abandonSignal, AuthenticatedUser, clientAddress, requireUser } from '../auth';
import { Context } from '../context';
import { badRequest, forbidden, notFound, unauthorized } from '../errors';
import { inCidr } from '../throttle';
import { DEPLOY_PREFIX, hashToken, issueToken, TokenRecord } from '../tokens';
import { credentialOf, requireSecondFactor, twoFactorOn } from '../second-factor';
import { checkCode, newRecoveryCodes, newSecret, otpRequired, twoFactorOf, TwoFactorState } from '../two-factor';
import { UserDoc } from '../accounts';
import { checkPasswordChange } from '../password-change';
import { signOnStandsForPassword } from '../sso';
import { isLimited, tokenRequest, TokenRequest } from '../../core/tokens';

const CIDR = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;

/** What `npm profile set` may change besides the password. */
const PROFILE_FIELDS = ['email', 'fullname', 'homepage', 'freenode', 'twitter', 'github'];

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
    bypass_2fa: !!record.bypass2fa,
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
      for (const dead of all.filter((record) => !records.includes(record))) await ctx.tokens.discard(dead);
      res.json({ objects: records.map(listed), total: records.length, urls: {} });
    })().catch(next);
  });

  router.post('/-/npm/v1/tokens', (req, res, next) => {
    (async () => {
      const user = tokenManager(res);
      const body = (req.body || {}) as Record<string, unknown>;
      // An account of single sign-on has no password: a recent sign-on stands for it (gateway/sso.ts).
      const signedOn = ctx.sso ? await signOnStandsForPassword(ctx.accounts, user.name, res.locals.tokenRecord as TokenRecord | undefined, ctx.sso.config.displayName) : false;
      if (!signedOn && (typeof body.password !== 'string' || !body.password)) {
        throw badRequest('Creating a token needs your password: `npm token create --password <password>` or answer the prompt.');
      }
      if (!signedOn && !(await ctx.accounts.verify(user.name, body.password as string, clientAddress(req), abandonSignal(res)))) {
        throw unauthorized('Wrong password for "' + user.name + '".');
      }
      await requireSecondFactor(ctx.accounts, ctx.config, res, credentialOf(res, user), user.twoFactor, 'credentials');
      const cidr = body.cidr_whitelist === undefined || body.cidr_whitelist === null ? [] : body.cidr_whitelist;
      if (!Array.isArray(cidr) || !cidr.every((c) => typeof c === 'string' && CIDR.test(c) && inCidr(c.split('/')[0], c))) {
        throw badRequest('"cidr_whitelist" must be a list of IPv4 CIDR blocks such as 192.168.0.0/24.');
      }
      const { readonly, name, expires, limits, description, bypass2fa } = askedFor(body);
      const { token, record } = await issueToken(ctx.accounts, ctx.tokens, user.name, { readonly, cidr: cidr as string[], name, expires, limits, description, bypass2fa });
      ctx.log.info({ user: user.name, readonly, cidr, expires, limits }, 'token created');
      res.status(201).json({ ...listed(record), token });
    })().catch(next);
  });

  /** What a token is asked for with `body` (core/tokens.ts), or a 400 that says what to change. */
  function askedFor(body: Record<string, unknown>): TokenRequest {
    try {
      return tokenRequest(body, ctx.config.tokens, Date.now());
    } catch (err) {
      throw badRequest((err as Error).message);
    }
  }

  /** The logged-in server admin, or 403. */
  function requireAdmin(res: Response): AuthenticatedUser {
    const user = requireUser(res);
    if (!user.roles.includes('_admin')) throw forbidden('Deploy tokens are made and revoked by admins of this registry.');
    return user;
  }

  /**
   * Deploy tokens (`/-/registry/deploy-tokens`, admins): read-only tokens for scopes that belong to no
   * person (a build server, a deployment), `{name, scopes, expires?}`; listed and revoked by admins.
   */
  router.post('/-/registry/deploy-tokens', (req, res, next) => {
    (async () => {
      const admin = requireAdmin(res);
      const body = (req.body || {}) as Record<string, unknown>;
      const name = typeof body.name === 'string' ? body.name.trim() : '';
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) throw badRequest('Name the deploy token (letters, digits, ".", "_", "-"): {"name": "prod-deploy", "scopes": ["@acme"]}.');
      const asked = askedFor({ scopes: body.scopes, expires: body.expires, packages_and_scopes_permission: 'read-only', name, description: body.description });
      if (!asked.limits.scopes || !asked.limits.scopes.length) throw badRequest('A deploy token is for one or more scopes: {"scopes": ["@acme"]}.');
      const { token, record } = await ctx.tokens.create(DEPLOY_PREFIX + name, {
        account: 'deploy', readonly: true, name, expires: asked.expires, limits: asked.limits, description: asked.description, deploy: true,
      });
      ctx.log.info({ admin: admin.name, deploy: name, scopes: asked.limits.scopes, expires: asked.expires }, 'deploy token created');
      res.status(201).json({ ...listed(record), token });
    })().catch(next);
  });

  router.get('/-/registry/deploy-tokens', (_req, res, next) => {
    (async () => {
      requireAdmin(res);
      const records = await ctx.tokens.listDeploy();
      res.json({ objects: records.map(listed), total: records.length });
    })().catch(next);
  });

  router.delete('/-/registry/deploy-tokens/:key', (req, res, next) => {
    (async () => {
      requireAdmin(res);
      const record = await ctx.tokens.byKey(req.params.key);
      if (!record || !record.deploy) throw notFound('No deploy token has that key; see GET /-/registry/deploy-tokens.');
      await ctx.tokens.revokeKey(record._id, null);
      res.status(204).end();
    })().catch(next);
  });

  router.delete('/-/npm/v1/tokens/token/:key', (req, res, next) => {
    (async () => {
      const user = tokenManager(res);
      // `npm token revoke` sends the key (the token's hash) of a listed token, or the token itself.
      const given = req.params.key;
      const key = /^[0-9a-f]{64}$/.test(given) ? given : hashToken(given);
      await requireSecondFactor(ctx.accounts, ctx.config, res, credentialOf(res, user), user.twoFactor, 'credentials');
      const removed = await ctx.tokens.revokeKey(key, user.roles.includes('_admin') ? null : user.name);
      if (!removed) throw notFound('No token of yours has that key or value; see `npm token list`.');
      ctx.log.info({ user: user.name }, 'token revoked');
      res.status(204).end();
    })().catch(next);
  });

  /** The profile npm shows (`npm profile get`): `tfa` is false, or the mode and whether it is still pending. */
  async function profileOf(name: string): Promise<Record<string, unknown>> {
    const doc = (await ctx.accounts.read(name)) as (UserDoc & Record<string, unknown>) | null;
    if (!doc) throw notFound('No profile for "' + name + '".');
    const tfa = twoFactorOf(doc);
    const fields: Record<string, unknown> = {};
    for (const key of PROFILE_FIELDS) fields[key] = typeof doc[key] === 'string' ? doc[key] : null;
    return {
      name: doc.name, ...fields, email_verified: false, tfa: tfa ? { mode: tfa.mode, pending: tfa.pending } : false,
      created: doc.created || null, updated: doc.updated || doc.created || null,
    };
  }

  router.get('/-/npm/v1/user', (_req, res, next) => {
    (async () => {
      const user = requireUser(res);
      res.json(await profileOf(user.name));
    })().catch(next);
  });

  /**
   * `npm profile set <field> <value>` (npm sends every field it can set, the others as they were):
   * email, fullname, homepage, freenode, twitter, github; `password` as `{old, new}`, after which the
   * account's tokens and sessions end (its stamp changed). A one-time password with 2FA on.
   */
  async function setProfile(req: Request, res: Response, user: AuthenticatedUser, state: TwoFactorState | null, body: Record<string, unknown>): Promise<void> {
    const changes: Record<string, string | null> = {};
    for (const [key, value] of Object.entries(body)) {
      if (key === 'password') {
        if (value === null || value === undefined) continue;
        const { old, new: next } = (value || {}) as { old?: unknown; new?: unknown };
        if (typeof old !== 'string' || typeof next !== 'string') throw badRequest('Send the password as {"old": "…", "new": "…"} (npm profile set password asks for both).');
        await checkPasswordChange(ctx.accounts, req, res, user.name, old, next);
        changes.password = next;
        continue;
      }
      if (PROFILE_FIELDS.indexOf(key) === -1) throw badRequest('"' + key + '" is not a profile field here; npm profile sets ' + PROFILE_FIELDS.join(', ') + ' and password.');
      if (value === null || value === '') {
        if (key === 'email') continue; // an account keeps its email
        changes[key] = null;
        continue;
      }
      if (typeof value !== 'string' || value.length > 200) throw badRequest('"' + key + '" must be text of at most 200 characters.');
      if (key === 'email' && !/^[^@\s]+@[^@\s]+$/.test(value)) throw badRequest('Give a valid email address.');
      changes[key] = value;
    }
    const doc = await ctx.accounts.read(user.name);
    const changed = Object.entries(changes).filter(([key, value]) => key === 'password' || (doc as Record<string, unknown> | null)?.[key] !== (value ?? undefined));
    if (changed.length) {
      await requireSecondFactor(ctx.accounts, ctx.config, res, credentialOf(res, user), state, 'credentials');
      await ctx.accounts.update(user.name, Object.fromEntries(changed));
      ctx.log.info({ user: user.name, fields: changed.map(([key]) => key) }, 'profile changed');
    }
    res.json(await profileOf(user.name));
  }

  /**
   * `npm profile enable-2fa` and `disable-2fa`: `{tfa: {password, mode}}` starts (a new secret, its
   * `otpauth://` URL answered), changes the mode of, or (`mode: "disable"`) turns off two-factor
   * authentication; `{tfa: ["<code>"]}` confirms a pending one with a first code, answered with the
   * recovery codes. Changing or turning off one that is on needs a one-time password.
   */
  router.post('/-/npm/v1/user', (req, res, next) => {
    (async () => {
      const user = tokenManager(res);
      if (user.roles.includes('_admin') && !(await ctx.accounts.read(user.name))) throw badRequest('Server admins have no profile here; two-factor authentication is for accounts.');
      const body = (req.body || {}) as Record<string, unknown>;
      const account = await ctx.accounts.account(user.name);
      if (!account) throw notFound('No account "' + user.name + '".');
      if (body.tfa === undefined) {
        await setProfile(req, res, user, account.twoFactor || null, body);
        return;
      }
      const state = account.twoFactor || null;
      const tfa = body.tfa;
      if (Array.isArray(tfa)) {
        // The first code from the authenticator app confirms a pending set-up.
        if (!state || !state.pending) throw badRequest('There is no two-factor authentication waiting for its first code; run `npm profile enable-2fa` again.');
        if (tfa.length !== 1 || typeof tfa[0] !== 'string') throw badRequest('Send the first code from your authenticator app as {"tfa": ["123456"]}.');
        if (!checkCode(user.name, state, tfa[0], credentialOf(res, user).credential)) throw otpRequired(res, true);
        const { codes, hashes } = newRecoveryCodes();
        await ctx.accounts.setTwoFactor(user.name, { ...state, pending: false, recovery: hashes });
        ctx.log.info({ user: user.name, mode: state.mode }, 'two-factor authentication turned on');
        res.json({ ...(await profileOf(user.name)), tfa: codes });
        return;
      }
      if (!tfa || typeof tfa !== 'object' || typeof (tfa as { password?: unknown }).password !== 'string') {
        throw badRequest('Send {"tfa": {"password": "…", "mode": "auth-and-writes" | "auth-only" | "disable"}}.');
      }
      const { password, mode } = tfa as { password: string; mode?: unknown };
      if (mode !== 'auth-only' && mode !== 'auth-and-writes' && mode !== 'disable') throw badRequest('The two-factor mode must be auth-only, auth-and-writes or disable.');
      if (!(await ctx.accounts.verify(user.name, password, clientAddress(req), abandonSignal(res)))) throw unauthorized('Wrong password for "' + user.name + '".');
      await requireSecondFactor(ctx.accounts, ctx.config, res, credentialOf(res, user), state, 'credentials');
      if (mode === 'disable') {
        await ctx.accounts.setTwoFactor(user.name, null);
        ctx.log.info({ user: user.name }, 'two-factor authentication turned off');
        res.json(await profileOf(user.name));
        return;
      }
      if (twoFactorOn(state)) {
        await ctx.accounts.setTwoFactor(user.name, { ...state, mode });
        res.json({ ...(await profileOf(user.name)), tfa: { mode, pending: false } });
        return;
      }
      const issuer = new URL(ctx.baseUrl).host;
      const { secret, url } = newSecret(user.name, issuer);
      await ctx.accounts.setTwoFactor(user.name, { mode, secret, pending: true, recovery: [] });
      res.json({ ...(await profileOf(user.name)), tfa: url });
    })().catch(next);
  });

  return router;
}
