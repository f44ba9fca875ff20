/**
 * Accounts: `npm adduser` / `npm login --auth-type=legacy` (the CouchDB-style
 * `PUT /-/user/org.couchdb.user:NAME`), `npm whoami`, user look-up for `npm owner`, and
 * `npm logout` (revokes the token it used). Users are CouchDB `_users` documents.
 *
 * Nobody learns which names exist from a login: an unknown name is checked as a known one is (the
 * same hash, the same throttle, the same 401). Reserved names and server admins' names cannot be
 * signed up. A read-only token revokes only itself (what `npm logout` sends).
 */
import { Request, Response, Router } from 'express';
import { USER_PREFIX, userNameProblem } from '../accounts';
import { abandonSignal, clientAddress, currentUser, requireUser } from '../auth';
import { Context, signupClosed } from '../context';
import { badRequest, conflict, forbidden, notFound, unauthorized } from '../errors';
import { isLimited } from '../../core/tokens';
import { hashToken, issueToken as newToken } from '../tokens';
import { requireSecondFactor } from '../second-factor';
import { decodeSegment } from '../paths';

const USER_PATH = /^\/-\/user\/org\.couchdb\.user:([^/]+)(?:\/-rev\/([^/]+))?\/?$/;

export function userRoutes(ctx: Context): Router {
  const router = Router();

  async function issueToken(res: Response, name: string, status: number, extra: Record<string, unknown> = {}): Promise<void> {
    const expires = new Date(Date.now() + ctx.config.tokens.maxDays * 86_400_000).toISOString();
    const { token } = await newToken(ctx.accounts, ctx.tokens, name, { name: 'npm login', expires });
    ctx.log.info({ user: name }, 'token issued');
    res.status(status).json({ ok: true, id: USER_PREFIX + name, token, ...extra });
  }

  /** PUT /-/user/org.couchdb.user:NAME[/-rev/REV]: sign up, or log in and get a token. */
  function pathParts(req: Request): { name: string; rev?: string } {
    const match = USER_PATH.exec(req.path) as RegExpExecArray;
    return { name: decodeSegment(match[1]), rev: match[2] === undefined ? undefined : decodeSegment(match[2]) };
  }

  async function login(req: Request, res: Response): Promise<void> {
    const { name, rev } = pathParts(req);
    const body = req.body as Record<string, unknown>;
    if (typeof body !== 'object' || body === null) throw badRequest('The body must be a JSON object with "name" and "password".');
    if (body.name !== name) throw badRequest('The user name in the body must match the URL.');
    const nameProblem = userNameProblem(name);
    if (nameProblem) throw badRequest(nameProblem);
    const caller = currentUser(res);
    const password = typeof body.password === 'string' ? body.password : '';
    // The second step of npm's legacy login sends the credentials as Basic auth.
    if (caller && caller.name === name && caller.via === 'basic') return issueToken(res, name, 201);
    let existing = await ctx.accounts.account(name);
    // An account made at another site a moment ago is copied from it first (a log-in there and here is
    // one account): only for a log-in the throttle lets through, so that nobody makes this site ask
    // its peers about names faster than logins may be tried.
    if (!existing && ctx.sites && password) {
      ctx.accounts.assertMayTry(name, clientAddress(req));
      if (await ctx.sites.pullAccount(name)) existing = await ctx.accounts.account(name);
    }
    if (existing || rev) {
      // A log-in (`-rev/` is npm's): an unknown name is checked like a known one and answered alike.
      if (await ctx.accounts.verify(name, password, clientAddress(req), abandonSignal(res))) {
        // With two-factor authentication on, a one-time password too (npm asks for it after this 401).
        await requireSecondFactor(ctx.accounts, ctx.config, res, { name, credential: 'login:' + name }, existing?.twoFactor, 'login');
        return issueToken(res, name, 201);
      }
      if (rev || !existing) throw unauthorized('Wrong user name or password.');
      throw conflict('The user name "' + name + '" is taken: log in with its password, or choose another name.');
    }
    const reserved = await ctx.accounts.signupProblem(name);
    if (reserved) throw forbidden(reserved);
    const isAdmin = !!caller && caller.roles.includes('_admin');
    const closed = signupClosed(ctx);
    if (closed && !isAdmin) throw forbidden(closed);
    await ctx.accounts.create(name, password, typeof body.email === 'string' ? body.email : undefined);
    ctx.log.info({ user: name }, 'user created');
    return issueToken(res, name, 201);
  }

  router.put(USER_PATH, (req, res, next) => login(req, res).catch(next));

  router.get(USER_PATH, (req, res, next) => {
    (async () => {
      // Only logged-in users look accounts up (npm owner add; npm login sends its credentials), so
      // that nobody can list the user names of a registry.
      requireUser(res);
      const { name } = pathParts(req);
      const doc = await ctx.accounts.read(name);
      if (!doc) throw notFound('There is no user "' + name + '".');
      const body: Record<string, unknown> = { _id: doc._id, _rev: doc._rev, name: doc.name, type: 'user' };
      // npm owner add records the new owner's email.
      if (doc.email) body.email = doc.email;
      res.json(body);
    })().catch(next);
  });

  router.get('/-/whoami', (_req, res, next) => {
    try {
      res.json({ username: requireUser(res, true).name });
    } catch (err) {
      next(err);
    }
  });

  router.delete('/-/user/token/:token', (req, res, next) => {
    (async () => {
      const user = requireUser(res);
      // Express has decoded the path already: decoding again would turn "%25zz" into a broken escape.
      const token = req.params.token;
      // A read-only or limited token revokes itself only (npm logout), never the user's other tokens.
      if ((user.readonly || isLimited(user.limits)) && (res.locals.tokenRecord as { _id?: string } | undefined)?._id !== hashToken(token)) {
        throw forbidden('A read-only or limited token can revoke only itself; log in with a full token to revoke others.');
      }
      const record = await ctx.tokens.lookup(token);
      if (!record || (record.user !== user.name && !user.roles.includes('_admin'))) {
        throw notFound('No such token of yours; it may already be revoked.');
      }
      await ctx.tokens.revoke(token);
      ctx.log.info({ user: user.name }, 'token revoked');
      res.json({ ok: true });
    })().catch(next);
  });

  return router;
}
