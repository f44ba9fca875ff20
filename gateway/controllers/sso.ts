/**
 * Single sign-on's routes (gateway/sso.ts): `GET /-/sso/login?next=<path>` starts a sign-on for the
 * pages, `GET /-/login/<key>/sso` one for a web login (`npm login`, whose page key it carries), and
 * `GET /-/sso/callback` is where the provider sends the browser back: the pages' session starts (and
 * the browser goes on to `next`, a path of this registry only), or the web login is completed, and
 * `doneUrl` hands npm its token as for a password login.
 *
 * The browser that starts a sign-on gets a binding cookie (HttpOnly, SameSite=Lax, for `/-/`), which
 * the callback must carry: a callback URL sent to someone else's browser logs nobody in there.
 */
import { Request, Response, Router } from 'express';
import { Context } from '../context';
import { asHttpError, HttpError } from '../errors';
import { isBrowserKey, newBrowserKey, SSO_BROWSER_COOKIE, SSO_LOGIN_TTL_MS } from '../sso';
import { escape, layout, sendHtml } from '../web/html';
import { cookie, WebSessions } from '../web/sessions';
import { WebLoginStore } from '../weblogin';
import { safeNext } from './web';

/**
 * What the pages' login page shows for single sign-on: the "Sign in with <provider>" link (empty
 * without single sign-on), and whether the password form is shown too (not when password logins are
 * off for people, unless a server admin asks for it with `?admin`: break-glass).
 */
export function ssoLoginOptions(ctx: Context, next: string, query: Record<string, unknown>): { link: string; passwordForm: boolean } {
  const sso = ctx.config.sso;
  if (!sso) return { link: '', passwordForm: true };
  const link = `<p class="sso"><a class="sso-login" href="${escape(ctx.config.basePath)}/-/sso/login?next=${escape(encodeURIComponent(next))}">Sign in with ${escape(sso.displayName)}</a></p>`;
  if (sso.passwordLogin) return { link, passwordForm: true };
  const admin = query.admin !== undefined;
  const note = admin
    ? '<p class="muted">Password log-in for the server admins only (break-glass).</p>'
    : '<p class="muted">Password logins are turned off for people on this registry.</p>';
  return { link: link + note, passwordForm: admin };
}

/** The link of a web login's page (`npm login`) that signs on instead of a password. */
export function ssoWebLoginLink(ctx: Context, loginKey: string): string {
  const sso = ctx.config.sso;
  if (!sso) return '';
  return `<p class="sso"><a class="sso-login" href="${escape(ctx.config.basePath)}/-/login/${escape(loginKey)}/sso">Sign in with ${escape(sso.displayName)}</a></p>`;
}

export function ssoRoutes(ctx: Context, sessions: WebSessions, webLogins: WebLoginStore): Router {
  const router = Router();
  const base = ctx.config.basePath;

  const failed = (res: Response, status: number, message: string) =>
    sendHtml(res, status, layout({ title: 'Sign-in failed', base, body: `<h1 class="error">${escape(message)}</h1><p><a href="${escape(base)}/-/web/login">Log in</a></p>` }));

  /** The browser's binding cookie, set (or kept) for as long as a sign-on may take. */
  function bindBrowser(req: Request, res: Response): string {
    const present = cookie(req, SSO_BROWSER_COOKIE);
    const key = isBrowserKey(present) ? present : newBrowserKey();
    const secure = (ctx.config.publicUrl || '').startsWith('https:') || req.secure ? '; Secure' : '';
    res.append('Set-Cookie', SSO_BROWSER_COOKIE + '=' + key + '; Path=' + (base || '') + '/-/; HttpOnly; SameSite=Lax; Max-Age=' + SSO_LOGIN_TTL_MS / 1000 + secure);
    return key;
  }

  /** Runs a route; an `HttpError` becomes a page that says what went wrong. */
  const page = (work: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: (err?: unknown) => void) => {
    work(req, res).catch((err) => {
      const known = asHttpError(err);
      if (known && !res.headersSent) return failed(res, known.status, known.message);
      next(err);
    });
  };

  const sso = () => {
    if (!ctx.sso) throw new HttpError(404, 'Single sign-on is not set up on this registry (SSO_ISSUER); log in with your password.');
    return ctx.sso;
  };

  router.get('/-/sso/login', page(async (req, res) => {
    const signOn = sso();
    const next = safeNext(req.query.next, base);
    res.redirect(303, await signOn.start({ page: next }, bindBrowser(req, res)));
  }));

  router.get('/-/login/:sid/sso', page(async (req, res) => {
    const signOn = sso();
    if (!(await webLogins.get(req.params.sid, 'login'))) throw new HttpError(404, 'This login link has expired: run `npm login` again for a new one.');
    res.redirect(303, await signOn.start({ weblogin: req.params.sid }, bindBrowser(req, res)));
  }));

  router.get('/-/sso/callback', page(async (req, res) => {
    const signOn = sso();
    const { account, then } = await signOn.finish(req.query as Record<string, unknown>, cookie(req, SSO_BROWSER_COOKIE));
    if ('weblogin' in then) {
      const session = await webLogins.get(then.weblogin, 'login');
      if (!session) throw new HttpError(404, 'Your `npm login` expired while you signed in: run `npm login` again.');
      await webLogins.complete(session, account.name, account.stamp, true);
      ctx.log.info({ user: account.name }, 'web login by single sign-on');
      return sendHtml(res, 200, layout({ title: 'Logged in', base, body: `<h1 class="ok">Logged in as ${escape(account.name)}</h1><p>You can close this page and return to your terminal.</p>` }));
    }
    await sessions.start(req, res, account.name, account.stamp);
    ctx.log.info({ user: account.name }, 'web page login by single sign-on');
    res.redirect(303, safeNext(then.page, base));
  }));

  return router;
}
