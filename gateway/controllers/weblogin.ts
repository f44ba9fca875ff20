/**
 * Web login for npm 9–11: `POST /-/v1/login` answers `{loginUrl, doneUrl}`; `loginUrl` is a page of
 * this registry with a login form (and a sign-up form when sign-up is open); `doneUrl` answers 202
 * with `Retry-After` until the user has logged in on the page, then 200 `{token}`, once. The two URLs
 * carry independent secrets (the login URL never lets anyone collect the token). One address may have
 * at most `MAX_PENDING_PER_ADDRESS` logins started within their time to live; the page's form refuses
 * posts from other sites.
 */
import express, { Request, Response, Router } from 'express';
import { MIN_PASSWORD_LENGTH } from '../accounts';
import { abandonSignal, clientAddress } from '../auth';
import { Context, signupClosed } from '../context';
import { HttpError, notFound } from '../errors';
import { requireSecondFactor, twoFactorOn } from '../second-factor';
import { checkCode } from '../two-factor';
import { issueToken } from '../tokens';
import { crossSitePost } from '../web/sessions';
import { ssoWebLoginLink } from './sso';
import { escape } from '../web/html';
import { RecentEvents } from '../../lib/recent-events';
import { isWebApproval, WEB_LOGIN_TTL_MS, WebLoginSession, WebLoginStore, WebOtpChallenge } from '../weblogin';

/** Logins one address may start within their time to live (each is a document until it is swept). */
export const MAX_PENDING_PER_ADDRESS = 30;


function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 26rem; margin: 3rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
  label { display: block; margin: .6rem 0 .2rem; } input { width: 100%; padding: .45rem; box-sizing: border-box; }
  button { margin-top: 1rem; padding: .5rem 1.2rem; } .error { color: #b00020; } .ok { color: #1b5e20; }
  form { border: 1px solid #ddd; border-radius: 6px; padding: 0 1rem 1rem; } form + form { margin-top: 1.5rem; }
</style></head><body>${body}</body></html>`;
}

function forms(session: WebLoginSession, signupOpen: boolean, error?: string, sso = ''): string {
  const login = `<form method="post" id="login"><h2>Log in</h2><input type="hidden" name="action" value="login">
<label for="login-name">User name</label><input id="login-name" name="name" autocomplete="username" required>
<label for="login-password">Password</label><input id="login-password" name="password" type="password" autocomplete="current-password" required>
<label for="login-otp">One-time password (if you turned on two-factor authentication)</label><input id="login-otp" name="otp" inputmode="numeric" autocomplete="one-time-code">
<button type="submit">Log in</button></form>`;
  const signup = signupOpen
    ? `<form method="post" id="signup"><h2>Create an account</h2><input type="hidden" name="action" value="signup">
<label for="signup-name">User name</label><input id="signup-name" name="name" autocomplete="username" required>
<label for="signup-email">Email</label><input id="signup-email" name="email" type="email" autocomplete="email" required>
<label for="signup-password">Password (at least ${MIN_PASSWORD_LENGTH} characters)</label><input id="signup-password" name="password" type="password" autocomplete="new-password" minlength="${MIN_PASSWORD_LENGTH}" required>
<button type="submit">Create account</button></form>`
    : '';
  const first = session.create ? signup + login : login + signup;
  return page('Log in to the npm registry', `<h1>Log in to the npm registry</h1>
<p>Your terminal is waiting for this login.</p>${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}${sso}${first}`);
}

export function webLoginRoutes(ctx: Context, store: WebLoginStore): Router {
  const router = Router();

  /** When each address started its recent logins (kept in memory: each gateway bounds what it sees). */
  const started = new RecentEvents(WEB_LOGIN_TTL_MS, MAX_PENDING_PER_ADDRESS);
  function countStart(address: string, now: number): void {
    const retryAfter = started.waitFor(address, now);
    if (retryAfter) {
      throw new HttpError(429, 'Too many logins started from your address; finish one, or try again in ' + retryAfter + ' seconds.', { 'Retry-After': String(retryAfter) });
    }
    started.add(address, now);
  }

  router.post('/-/v1/login', (req, res, next) => {
    (async () => {
      const body = (req.body || {}) as { create?: unknown };
      countStart(clientAddress(req), Date.now());
      const keys = await store.start(body.create === true);
      res.json({ loginUrl: ctx.baseUrl + '/-/login/' + keys.login, doneUrl: ctx.baseUrl + '/-/v1/done/' + keys.done });
    })().catch(next);
  });

  router.get('/-/v1/done/:sid', (req, res, next) => {
    (async () => {
      const session = await store.get(req.params.sid, 'done');
      if (!session) throw notFound('This login session is unknown or expired; run `npm login` again.');
      if (!session.user) {
        res.setHeader('Retry-After', '1');
        res.status(202).json({});
        return;
      }
      if (!(await store.consume(session))) throw notFound('This login was already completed; run `npm login` again.');
      // The token is for the account the user logged in to, as it was then (a password changed since kills it).
      const { token } = session.account
        ? await ctx.tokens.create(session.user, { account: session.account, name: session.signOn ? 'npm login (single sign-on)' : 'npm login (web)', signOn: session.signOn })
        : await issueToken(ctx.accounts, ctx.tokens, session.user, { name: 'npm login (web)', expires: new Date(Date.now() + ctx.config.tokens.maxDays * 86_400_000).toISOString() });
      ctx.log.info({ user: session.user }, 'web login completed');
      res.json({ token });
    })().catch(next);
  });

  function sendPage(res: Response, status: number, html: string) {
    res.status(status)
      .set({ 'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'", 'X-Frame-Options': 'DENY', 'Cache-Control': 'no-store' })
      .type('html')
      .send(html);
  }

  async function liveSession(req: Request, res: Response): Promise<WebLoginSession | null> {
    const session = await store.get(req.params.sid, 'login');
    if (!session) {
      sendPage(res, 404, page('Login expired', '<h1>This login link has expired</h1><p>Run <code>npm login</code> again for a new one.</p>'));
      return null;
    }
    return session;
  }

  router.get('/-/login/:sid', (req, res, next) => {
    (async () => {
      const session = await liveSession(req, res);
      if (!session) return;
      // With single sign-on only (password logins off), the login goes straight to the provider.
      if (ctx.config.sso && !ctx.config.sso.passwordLogin) return res.redirect(303, ctx.config.basePath + '/-/login/' + req.params.sid + '/sso');
      sendPage(res, 200, forms(session, !signupClosed(ctx), undefined, ssoWebLoginLink(ctx, req.params.sid)));
    })().catch(next);
  });

  router.post('/-/login/:sid', express.urlencoded({ extended: false, limit: '16kb' }), (req, res, next) => {
    (async () => {
      if (crossSitePost(req, new URL(ctx.baseUrl).origin)) {
        return sendPage(res, 403, page('Refused', '<h1>This form was sent from another site</h1><p>Log in from the page this registry showed you.</p>'));
      }
      const session = await liveSession(req, res);
      if (!session) return;
      const form = req.body as Record<string, string>;
      const name = String(form.name || '').trim();
      const password = String(form.password || '');
      const retry = (status: number, error: string) => sendPage(res, status, forms(session, !signupClosed(ctx), error, ssoWebLoginLink(ctx, req.params.sid)));
      if (form.action === 'signup') {
        const closed = signupClosed(ctx);
        if (closed) return retry(403, closed);
        const email = String(form.email || '').trim();
        if (!/^[^@\s]+@[^@\s]+$/.test(email)) return retry(400, 'Give a valid email address.');
        try {
          await ctx.accounts.create(name, password, email);
        } catch (err) {
          if (err instanceof HttpError) return retry(err.status, err.message);
          throw err;
        }
        ctx.log.info({ user: name }, 'user created');
      } else {
        try {
          if (!(await ctx.accounts.verify(name, password, clientAddress(req), abandonSignal(res)))) return retry(401, 'Wrong user name or password.');
        } catch (err) {
          if (err instanceof HttpError) return retry(err.status, err.message);
          throw err;
        }
      }
      const account = await ctx.accounts.account(name);
      if (!account) return retry(409, 'The account "' + name + '" no longer exists; sign up again.');
      try {
        await requireSecondFactor(ctx.accounts, ctx.config, res, { name, credential: 'weblogin:' + name }, account.twoFactor, 'login', String(form.otp || '').trim() || undefined);
      } catch (err) {
        if (err instanceof HttpError) return retry(err.status, err.message.replace(/npm asks for it, or pass --otp <code>( \(other clients: the npm-otp header\))?/, 'enter it below'));
        throw err;
      }
      await store.complete(session, name, account.stamp);
      sendPage(res, 200, page('Logged in', `<h1 class="ok">Logged in as ${escape(name)}</h1><p>You can close this page and return to your terminal.</p>`));
    })().catch(next);
  });

  // npm's web one-time password (gateway/second-factor.ts): the page where the account's owner approves
  // a write or token change npm is waiting on, with their password and a code; the URL npm polls.
  const otpPage = (challenge: WebOtpChallenge, error?: string) => page('Approve with your one-time password', `<h1>Approve with your one-time password</h1>
<p>Your terminal is waiting for <strong>${escape(challenge.user)}</strong> to approve, with two-factor authentication:</p>
<p><code>${escape(challenge.action || '')}</code></p><p>Approve only a command you ran yourself.</p>${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
<form method="post" id="approve"><label for="otp-password">Password of ${escape(challenge.user)}</label><input id="otp-password" name="password" type="password" autocomplete="current-password" required>
<label for="otp-code">One-time password from your authenticator app</label><input id="otp-code" name="otp" inputmode="numeric" autocomplete="one-time-code" required>
<button type="submit">Approve</button></form>`);

  async function liveChallenge(req: Request, res: Response): Promise<WebOtpChallenge | null> {
    const challenge = await store.getOtp(req.params.sid, 'login');
    if (!challenge) {
      sendPage(res, 404, page('Approval expired', '<h1>This approval link has expired</h1><p>Run the npm command again for a new one.</p>'));
      return null;
    }
    return challenge;
  }

  router.get('/-/otp/:sid', (req, res, next) => {
    (async () => {
      const challenge = await liveChallenge(req, res);
      if (challenge) sendPage(res, 200, otpPage(challenge));
    })().catch(next);
  });

  router.post('/-/otp/:sid', express.urlencoded({ extended: false, limit: '16kb' }), (req, res, next) => {
    (async () => {
      if (crossSitePost(req, new URL(ctx.baseUrl).origin)) {
        return sendPage(res, 403, page('Refused', '<h1>This form was sent from another site</h1><p>Approve from the page this registry showed you.</p>'));
      }
      const challenge = await liveChallenge(req, res);
      if (!challenge) return;
      const form = req.body as Record<string, string>;
      const retry = (status: number, error: string) => sendPage(res, status, otpPage(challenge, error));
      try {
        if (!(await ctx.accounts.verify(challenge.user, String(form.password || ''), clientAddress(req), abandonSignal(res)))) return retry(401, 'Wrong password.');
      } catch (err) {
        if (err instanceof HttpError) return retry(err.status, err.message);
        throw err;
      }
      const account = await ctx.accounts.account(challenge.user);
      if (!account || !twoFactorOn(account.twoFactor)) return retry(409, 'Two-factor authentication is off for this account; run the npm command again.');
      const code = String(form.otp || '').trim();
      let checked: ReturnType<typeof checkCode>;
      try {
        checked = code && !isWebApproval(code) ? checkCode(challenge.user, account.twoFactor, code, 'webotp:' + challenge._id) : null;
      } catch (err) {
        if (err instanceof HttpError) return retry(err.status, err.message);
        throw err;
      }
      if (!checked) return retry(401, 'That one-time password is wrong or was used already; enter the current code from your authenticator app (or a recovery code).');
      // A recovery code is used up here as anywhere (requireSecondFactor does the same).
      if (checked.kind === 'recovery') await ctx.accounts.setTwoFactor(challenge.user, { ...account.twoFactor, recovery: checked.left });
      await store.approveOtp(challenge);
      ctx.log.info({ user: challenge.user }, 'web one-time password approved');
      sendPage(res, 200, page('Approved', `<h1 class="ok">Approved</h1><p>You can close this page and return to your terminal.</p>`));
    })().catch(next);
  });

  router.get('/-/v1/otp/done/:sid', (req, res, next) => {
    (async () => {
      const challenge = await store.getOtp(req.params.sid, 'done');
      if (!challenge) throw notFound('This approval is unknown or expired; run the npm command again.');
      if (!challenge.approved) {
        res.setHeader('Retry-After', '1');
        res.status(202).json({});
        return;
      }
      const approval = await store.handOutApproval(challenge);
      if (!approval) throw notFound('This approval was already handed out; run the npm command again.');
      res.json({ token: approval });
    })().catch(next);
  });

  return router;
}
