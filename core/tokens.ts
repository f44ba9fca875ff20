/**
 * Granular tokens: what `npm token create` may ask for, checked, and what a token so made may do.
 * Pure (no Node APIs): the gateway applies it on every read of a private package and every write.
 *
 * A token without `packages`, `scopes` or `packages_all` acts on every package its account may (as
 * before granular tokens); one with them acts only on the packages named, the packages of the scopes
 * named, or all (`packages_all`). Every token expires: at most `maxDays` after it is made, and
 * `defaultWriteDays` (write tokens) or `maxDays` (read-only tokens) when `expires` is not given.
 */
import { packageNameProblem } from './names';

/** The limits a token carries (stored with it). */
export interface TokenLimits {
  packages?: string[];
  scopes?: string[];
  packagesAll?: boolean;
}

/** What `POST /-/npm/v1/tokens` asks for, checked. */
export interface TokenRequest {
  name: string;
  description?: string;
  readonly: boolean;
  /** When it stops working (ISO time). */
  expires: string;
  limits: TokenLimits;
  /** Writes with it need no one-time password (automation). */
  bypass2fa: boolean;
}

export interface TokenLifetimes {
  /** The longest a token may live, in days. */
  maxDays: number;
  /** The lifetime of a write token made without `--expires`, in days. */
  defaultWriteDays: number;
}

const PERMISSIONS = ['read-only', 'read-write', 'no-access'];
const SCOPE = /^@?[a-z0-9][a-z0-9._~-]*$/;

/** A scope as given (`acme`, `@Acme`), as `@acme`; null when it is not a scope name. */
export function normalScope(scope: string): string | null {
  const lower = scope.trim().toLowerCase();
  if (!SCOPE.test(lower)) return null;
  return lower.charAt(0) === '@' ? lower : '@' + lower;
}

/** Whether a token with `limits` may act on the package `name`. */
export function tokenCovers(limits: TokenLimits | undefined, name: string): boolean {
  if (!limits || limits.packagesAll) return true;
  const packages = limits.packages || [];
  const scopes = limits.scopes || [];
  if (packages.length === 0 && scopes.length === 0) return true;
  if (packages.indexOf(name) !== -1) return true;
  const match = /^(@[^/]+)\//.exec(name);
  return !!match && scopes.indexOf(match[1].toLowerCase()) !== -1;
}

/** Whether a token carries package limits at all. */
export function isLimited(limits: TokenLimits | undefined): boolean {
  return !!limits && !limits.packagesAll && ((limits.packages || []).length > 0 || (limits.scopes || []).length > 0);
}

/** What a token's limits read like, for error messages. */
export function describeLimits(limits: TokenLimits): string {
  const parts = (limits.packages || []).map((p) => '"' + p + '"').concat((limits.scopes || []).map((s) => 'the scope ' + s));
  return parts.join(', ');
}

function stringList(value: unknown, what: string): string[] {
  if (value === undefined || value === null) return [];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || !list.every((item) => typeof item === 'string')) throw new Error('"' + what + '" must be a list of names.');
  // npm sends `--packages a,b` as one item "a,b": names hold no comma, so it is two.
  return list.flatMap((item) => item.split(',')).map((item) => item.trim()).filter(Boolean);
}

/**
 * Checks what `npm token create` sent (`body`) and makes the token's settings, or throws an Error
 * whose message says what to change. Nothing asked for is ignored: what this registry does not
 * support (tokens limited to orgs) is refused.
 */
export function tokenRequest(body: Record<string, unknown>, lifetimes: TokenLifetimes, now: number): TokenRequest {
  if (body.orgs !== undefined && stringList(body.orgs, 'orgs').length) {
    throw new Error('This registry\'s tokens know no npm orgs; limit the token to packages (--packages) or scopes (--scopes, such as --scopes @acme for the org acme) instead of --orgs.');
  }
  if (body.orgs_permission !== undefined && body.orgs_permission !== null) {
    throw new Error('This registry\'s tokens know no npm orgs, so --orgs-permission has nothing to apply to; leave it out.');
  }
  const permission = body.packages_and_scopes_permission;
  if (permission !== undefined && permission !== null && (typeof permission !== 'string' || PERMISSIONS.indexOf(permission) === -1)) {
    throw new Error('--packages-and-scopes-permission must be one of ' + PERMISSIONS.join(', ') + '.');
  }
  const packages = stringList(body.packages, 'packages');
  for (const name of packages) {
    const problem = packageNameProblem(name, false);
    if (problem) throw new Error('--packages: "' + name + '" is not a package name (' + problem + ').');
  }
  const scopes = stringList(body.scopes, 'scopes').map((scope) => {
    const normal = normalScope(scope);
    if (!normal) throw new Error('--scopes: "' + scope + '" is not a scope; give scopes as @acme.');
    return normal;
  });
  const packagesAll = body.packages_all === true;
  if (packagesAll && (packages.length || scopes.length)) throw new Error('--packages-all gives the token every package; leave out --packages and --scopes with it.');
  if (permission === 'no-access') {
    throw new Error('--packages-and-scopes-permission no-access is for tokens that act on orgs only, which this registry does not have; choose read-only or read-write.');
  }
  const readonly = body.readonly === true || permission === 'read-only';
  let days: number;
  if (body.expires === undefined || body.expires === null) days = readonly ? lifetimes.maxDays : Math.min(lifetimes.defaultWriteDays, lifetimes.maxDays);
  else if (typeof body.expires === 'number' && Number.isInteger(body.expires) && body.expires >= 1) days = body.expires;
  else throw new Error('--expires is a number of days, at least 1.');
  if (days > lifetimes.maxDays) throw new Error('Tokens live at most ' + lifetimes.maxDays + ' days on this registry; ask for --expires ' + lifetimes.maxDays + ' or less.');
  const limits: TokenLimits = {};
  if (packages.length) limits.packages = [...new Set(packages)];
  if (scopes.length) limits.scopes = [...new Set(scopes)];
  if (packagesAll) limits.packagesAll = true;
  const description = typeof body.description === 'string' && body.description ? body.description.slice(0, 1000) : undefined;
  return {
    name: typeof body.name === 'string' && body.name ? body.name.slice(0, 100) : 'npm token create',
    description,
    readonly,
    expires: new Date(now + days * 86_400_000).toISOString(),
    limits,
    bypass2fa: body.bypass_2fa === true,
  };
}
