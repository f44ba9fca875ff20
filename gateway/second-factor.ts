/**
 * Where the second factor is asked for (gateway/two-factor.ts has the codes themselves):
 *
 * - `login`: a password log-in (`npm login`, the web login, the pages, Basic credentials) of an
 *   account with two-factor authentication on, in either mode;
 * - `credentials`: making or revoking tokens and changing the account's two-factor authentication,
 *   in either mode;
 * - `write`: publishing and every other change of a package, in mode `auth-and-writes` (a token made
 *   with `--bypass-2fa`, for automation, needs none). With `TWO_FACTOR=required` a write also needs
 *   an account that has turned on `auth-and-writes`.
 *
 * A code counts for one credential within its period: npm sends the same `--otp` with each request
 * of one command (an unpublish is two writes), and no other token or session may use it again.
 * Writes and credential changes also offer npm's web one-time password (a page where the account's
 * owner approves; see gateway/weblogin.ts): its approval counts for the credential that asked.
 */
import { Response } from 'express';
import { Accounts } from './accounts';
import type { AuthenticatedUser } from './auth';
import { forbidden, HttpError } from './errors';
import { checkCode, otpOf, otpRequired, TwoFactorState } from './two-factor';
import { isWebApproval, WEB_LOGIN_TTL_MS, WebLoginStore } from './weblogin';
import { RecentEvents } from '../lib/recent-events';

/**
 * What the app gives the second factor (in `app.locals.webOtp`) to offer npm the web one-time password:
 * the store of challenges and the registry's public URL.
 */
export interface WebOtpSetting {
  store: WebLoginStore;
  /** The registry's public URL (known once the server listens). */
  baseUrl: () => string;
}

/** Web challenges one account may have open within their time to live; beyond, npm asks for a code. */
export const MAX_WEB_CHALLENGES_PER_USER = 30;
const challengesOf = new RecentEvents(WEB_LOGIN_TTL_MS, MAX_WEB_CHALLENGES_PER_USER);

export type SecondFactorPurpose = 'login' | 'credentials' | 'write';

export interface SecondFactorSettings {
  /** `required`: writes need an account with two-factor authentication for writes (`TWO_FACTOR`). */
  twoFactor: 'optional' | 'required';
}

/** Whether `state` is turned on (set up and confirmed with a first code). */
export const twoFactorOn = (state: TwoFactorState | null | undefined): state is TwoFactorState => !!state && !state.pending;

/**
 * Throws the 401 that makes npm ask for a one-time password unless the request carries a right one
 * for `purpose`; a recovery code is used up. `state` is the account's (read fresh for a log-in).
 */
export async function requireSecondFactor(
  accounts: Accounts,
  settings: SecondFactorSettings,
  res: Response,
  who: { name: string; admin?: boolean; bypass2fa?: boolean; credential: string },
  state: TwoFactorState | null | undefined,
  purpose: SecondFactorPurpose,
  code: string | undefined = otpOf(res.req.headers),
): Promise<void> {
  if (who.admin) return;
  if (purpose === 'write') {
    if (who.bypass2fa) return;
    if (settings.twoFactor === 'required' && !(twoFactorOn(state) && state.mode === 'auth-and-writes')) {
      throw forbidden('This registry requires two-factor authentication to publish or change packages: run `npm profile enable-2fa auth-and-writes` first.');
    }
    if (!twoFactorOn(state) || state.mode !== 'auth-and-writes') return;
  } else if (!twoFactorOn(state)) {
    return;
  }
  if (!code) throw purpose === 'login' ? otpRequired(res, false) : await webChallenge(res, who);
  const web = res.app.locals.webOtp as WebOtpSetting | undefined;
  if (isWebApproval(code)) {
    if (web && (await web.store.approves(code, who.name, who.credential))) return;
    throw otpRequired(res, true);
  }
  const checked = checkCode(who.name, state, code, who.credential);
  if (!checked) throw otpRequired(res, true);
  if (checked.kind === 'recovery') await accounts.setTwoFactor(who.name, { ...state, recovery: checked.left });
}

/**
 * The 401 for a write or a credential change without a code, offering the web one-time password too
 * (`authUrl`, `doneUrl`) when npm asked for web authentication (`npm-auth-type: web`, its default):
 * npm on a terminal shows the page's URL and waits for the approval made there; npm elsewhere prints
 * both URLs. Without a web setting, or past the account's bound of open
 * challenges, the plain 401 (npm asks for a code).
 */
/** What a request that waits for a web approval does, for the page (`PUT /some-package`). */
function actionOf(res: Response): string {
  const path = res.req.originalUrl.split('?')[0];
  let action: string;
  try {
    action = res.req.method + ' ' + decodeURIComponent(path);
  } catch {
    action = res.req.method + ' ' + path;
  }
  // A publish names its versions, so that the approver sees what they let through.
  const body = res.req.body as { versions?: unknown } | undefined;
  const versions = body && typeof body.versions === 'object' && body.versions !== null ? Object.keys(body.versions).slice(0, 10) : [];
  return versions.length ? action + ' (version ' + versions.join(', ') + ')' : action;
}

async function webChallenge(res: Response, who: { name: string; credential: string }): Promise<HttpError> {
  const plain = otpRequired(res, false);
  const web = res.app.locals.webOtp as WebOtpSetting | undefined;
  // Only for a client that asked for web authentication (npm's default `auth-type`): with
  // `--auth-type=legacy` npm asks for the code on the terminal.
  if (!web || res.req.headers['npm-auth-type'] !== 'web') return plain;
  const now = Date.now();
  if (challengesOf.waitFor(who.name, now)) return plain;
  challengesOf.add(who.name, now);
  const keys = await web.store.startOtp(who.name, who.credential, actionOf(res), now);
  return new HttpError(
    401,
    'This operation requires a one-time password: approve it at the authUrl with your password and a code from your authenticator app (npm waits for it), or pass --otp <code>.',
    plain.headers,
    { authUrl: web.baseUrl() + '/-/otp/' + keys.login, doneUrl: web.baseUrl() + '/-/v1/otp/done/' + keys.done },
  );
}

/**
 * The second factor for a write by the logged-in `user` (their account's state came with their
 * credentials). `packageMfa` is what the package's maintainers set with `npm access set mfa=…`:
 * `publish` (every write needs a code, automation tokens too), `automation` (a code, or a
 * `--bypass-2fa` token); either needs the writer to have two-factor authentication on.
 */
export async function requireWriteFactor(
  accounts: Accounts, settings: SecondFactorSettings, res: Response, user: AuthenticatedUser, packageMfa?: PackageMfa, name?: string,
): Promise<void> {
  const who = credentialOf(res, user);
  // A CI's trusted publishing token: its verified ID token stands in for the second factor, as on npm.
  if (user.trustedPublisher) return;
  if (!packageMfa || who.admin) return requireSecondFactor(accounts, settings, res, who, user.twoFactor, 'write');
  if (!twoFactorOn(user.twoFactor)) {
    throw forbidden('The maintainers of "' + name + '" require two-factor authentication to change it: run `npm profile enable-2fa auth-and-writes` first.');
  }
  if (packageMfa === 'automation' && who.bypass2fa) return;
  // As for an account in mode auth-and-writes, whatever the writer's own mode and token.
  await requireSecondFactor(accounts, settings, res, { ...who, bypass2fa: false }, { ...user.twoFactor, mode: 'auth-and-writes' }, 'write');
}

/** A package's own two-factor requirement (`npm access set mfa=publish|automation`); none when unset. */
export type PackageMfa = 'publish' | 'automation' | undefined;

/** Who is asking, for the second factor: the name, and the credential a code is bound to. */
export function credentialOf(res: Response, user: AuthenticatedUser): { name: string; admin: boolean; bypass2fa: boolean; credential: string } {
  const token = res.locals.tokenRecord as { _id?: string; bypass2fa?: boolean } | undefined;
  return {
    name: user.name,
    admin: user.roles.includes('_admin'),
    bypass2fa: !!(token && token.bypass2fa),
    credential: token && token._id ? 'token:' + token._id : user.via + ':' + user.name,
  };
}
