/**
 * Two-factor authentication (TOTP, RFC 6238, with the `otpauth` library), as npm 11 drives it:
 * `npm profile enable-2fa auth-only|auth-and-writes` and `disable-2fa` (`POST /-/npm/v1/user`), and the
 * one-time password npm sends in the `npm-otp` header (`--otp`, or its prompt after a 401 carrying
 * `WWW-Authenticate: OTP`).
 *
 * The state lives in the account's `_users` document (`registry_tfa`), so that it holds on every
 * gateway and at every site: the secret (base32), the mode, whether enabling is still pending (a code
 * from the authenticator app has not been shown yet), and the SHA-256 hashes of the recovery codes,
 * each usable once in place of a code. A code is accepted within one period either side (clock
 * drift), and on one gateway not again by another credential (npm repeats it within one command).
 */
import { createHash, randomBytes, timingSafeEqual } from 'crypto';
import { Response } from 'express';
import { Secret, TOTP } from 'otpauth';
import { HttpError } from './errors';
import { RecentEvents } from '../lib/recent-events';

export type TwoFactorMode = 'auth-only' | 'auth-and-writes';

/** What an account's `_users` document keeps of its two-factor authentication. */
export interface TwoFactorState {
  mode: TwoFactorMode;
  secret: string;
  pending: boolean;
  /** SHA-256 hashes of the recovery codes not used yet. */
  recovery: string[];
}

const RECOVERY_CODES = 8;

const hashCode = (code: string): string => createHash('sha256').update(code.trim().toLowerCase()).digest('hex');

function totpOf(name: string, secret: string, issuer: string): TOTP {
  return new TOTP({ issuer, label: name, algorithm: 'SHA1', digits: 6, period: 30, secret: Secret.fromBase32(secret) });
}

/** A new secret for `name`, and the `otpauth://` URL an authenticator app scans. */
export function newSecret(name: string, issuer: string): { secret: string; url: string } {
  const secret = new Secret({ size: 20 }).base32;
  return { secret, url: totpOf(name, secret, issuer).toString() };
}

/** New recovery codes (shown once) and their hashes (kept): 64 hex digits, the form npm's OTP prompt takes besides a code. */
export function newRecoveryCodes(): { codes: string[]; hashes: string[] } {
  const codes = Array.from({ length: RECOVERY_CODES }, () => randomBytes(32).toString('hex'));
  return { codes, hashes: codes.map(hashCode) };
}

/** The last code each account used on this gateway (its counter) and the credential that used it. */
const lastUsed = new Map<string, { counter: number; credential: string }>();

/**
 * Wrong six-digit codes one account may be sent within `WRONG_CODES_WINDOW_MS` on one gateway; past
 * that, its codes are refused (429) until the window has passed, so that a stolen token cannot try the
 * million codes (three of which are right at any time) at request speed. Recovery codes still work.
 */
export const MAX_WRONG_CODES = 10;
export const WRONG_CODES_WINDOW_MS = 15 * 60_000;
const wrongCodes = new RecentEvents(WRONG_CODES_WINDOW_MS, MAX_WRONG_CODES);

/**
 * Checks `code` against `state`: `totp` when it is the current code (or one period off) and was not
 * used before by another credential than `credential`, `recovery` with the recovery hashes left when
 * it is an unused recovery code, null otherwise. Throws a 429 `HttpError` for a six-digit code of an
 * account sent too many wrong ones lately.
 */
export function checkCode(name: string, state: TwoFactorState, code: string | undefined, credential: string): { kind: 'totp' } | { kind: 'recovery'; left: string[] } | null {
  if (!code) return null;
  const given = code.replace(/\s+/g, '');
  if (/^\d{6}$/.test(given)) {
    const now = Date.now();
    const retryAfter = wrongCodes.waitFor(name, now);
    if (retryAfter) {
      throw new HttpError(
        429,
        'Too many wrong one-time passwords for "' + name + '" lately: codes are refused for ' + retryAfter + ' seconds (a recovery code still works). ' +
          'If you did not send them, someone has one of your tokens: revoke it (`npm token list`, `npm token revoke`).',
        { 'Retry-After': String(retryAfter) },
      );
    }
    const totp = totpOf(name, state.secret, 'registry');
    const delta = totp.validate({ token: given, window: 1 });
    if (delta === null) {
      wrongCodes.add(name, now);
      return null;
    }
    const counter = totp.counter() + delta;
    const key = name + '\0' + state.secret;
    const last = lastUsed.get(key);
    if (last && (last.counter > counter || (last.counter === counter && last.credential !== credential))) return null;
    lastUsed.set(key, { counter, credential });
    if (lastUsed.size > 100_000) lastUsed.clear();
    return { kind: 'totp' };
  }
  const hash = Buffer.from(hashCode(given), 'hex');
  const match = state.recovery.find((kept) => kept.length === 64 && timingSafeEqual(Buffer.from(kept, 'hex'), hash));
  return match ? { kind: 'recovery', left: state.recovery.filter((kept) => kept !== match) } : null;
}

/** The one-time password a request carries (`npm-otp`, as npm sends `--otp` and its prompt's answer). */
export function otpOf(headers: Record<string, string | string[] | undefined>): string | undefined {
  const value = headers['npm-otp'];
  return typeof value === 'string' && value.trim() ? value.trim() : undefined;
}

/** The 401 that makes npm ask for a one-time password (or fail with EOTP, naming `--otp`, when it cannot ask). */
export function otpRequired(res: Response, wrong: boolean): HttpError {
  res.setHeader('www-authenticate', 'OTP');
  return new HttpError(
    401,
    wrong
      ? 'That one-time password is wrong or was used already; enter the current code from your authenticator app (or a recovery code).'
      : 'This operation requires a one-time password from your authenticator app: npm asks for it, or pass --otp <code> (other clients: the npm-otp header).',
  );
}

/** The two-factor state in an account document, if it is one (anything else counts as none). */
export function twoFactorOf(doc: { registry_tfa?: unknown } | null | undefined): TwoFactorState | null {
  const state = doc && (doc.registry_tfa as TwoFactorState | undefined);
  if (!state || typeof state !== 'object' || typeof state.secret !== 'string' || (state.mode !== 'auth-only' && state.mode !== 'auth-and-writes')) return null;
  return { mode: state.mode, secret: state.secret, pending: state.pending === true, recovery: Array.isArray(state.recovery) ? state.recovery.filter((h) => typeof h === 'string') : [] };
}
