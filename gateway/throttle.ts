/**
 * Throttling of failed logins, so that guessing passwords is slow while nobody else is locked out for
 * long (tokens are never throttled):
 * - one account from one address: `pairLimit` failures within `windowMs`, then that pair waits;
 * - one account from everywhere: `accountLimit` failures within the shorter `accountWindowMs`, then
 *   the account waits, except from addresses it logged in from successfully (so an attacker cannot
 *   keep its owner out);
 * - one address across accounts (password spraying): `addressLimit` failures within `windowMs`,
 *   except for accounts that logged in from there successfully (behind a reverse proxy without
 *   `TRUST_PROXY`, every user shares one address).
 * Kept in memory: each gateway throttles what it sees (a cache, not state to share).
 */
import { HttpError } from './errors';

export interface ThrottleLimits {
  pairLimit: number;
  accountLimit: number;
  addressLimit: number;
  windowMs: number;
  accountWindowMs: number;
  /** How long a successful login keeps an address known for its account. */
  knownMs: number;
}

export const DEFAULT_LIMITS: ThrottleLimits = {
  pairLimit: 10,
  accountLimit: 50,
  addressLimit: 100,
  windowMs: 15 * 60 * 1000,
  accountWindowMs: 5 * 60 * 1000,
  knownMs: 30 * 24 * 60 * 60 * 1000,
};

export class LoginThrottle {
  private readonly failures = new Map<string, number[]>();
  private readonly known = new Map<string, number>();
  private readonly limits: ThrottleLimits;

  constructor(limits: Partial<ThrottleLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  private recent(key: string, windowMs: number, now: number): number[] {
    const list = (this.failures.get(key) || []).filter((t) => now - t < windowMs);
    if (list.length) this.failures.set(key, list);
    else this.failures.delete(key);
    return list;
  }

  private buckets(user: string, address: string, now: number): { key: string; limit: number; windowMs: number }[] {
    const { pairLimit, accountLimit, addressLimit, windowMs, accountWindowMs, knownMs } = this.limits;
    const pair = 'pair:' + user + '\0' + address;
    const knownAt = this.known.get(pair);
    const isKnown = knownAt !== undefined && now - knownAt < knownMs;
    const buckets = [{ key: pair, limit: pairLimit, windowMs }];
    if (!isKnown) {
      buckets.push({ key: 'user:' + user, limit: accountLimit, windowMs: accountWindowMs });
      buckets.push({ key: 'addr:' + address, limit: addressLimit, windowMs });
    }
    return buckets;
  }

  /** Throws 429 with Retry-After when this account, from this address, may not try again yet. */
  check(user: string, address: string, now = Date.now()): void {
    for (const { key, limit, windowMs } of this.buckets(user, address, now)) {
      const list = this.recent(key, windowMs, now);
      if (list.length >= limit) {
        const retryAfter = Math.max(1, Math.ceil((list[list.length - limit] + windowMs - now) / 1000));
        throw new HttpError(429, 'Too many failed logins; try again in ' + retryAfter + ' seconds (tokens keep working).', { 'Retry-After': String(retryAfter) });
      }
    }
  }

  fail(user: string, address: string, now = Date.now()): void {
    const { windowMs, accountWindowMs } = this.limits;
    const keys: [string, number][] = [['pair:' + user + '\0' + address, windowMs], ['user:' + user, accountWindowMs], ['addr:' + address, windowMs]];
    for (const [key, window] of keys) {
      const list = this.recent(key, window, now);
      list.push(now);
      this.failures.set(key, list);
    }
    if (this.failures.size > 100_000) this.failures.clear();
  }

  /** A successful login: the pair starts again, and the address becomes known for the account. */
  succeed(user: string, address: string, now = Date.now()): void {
    const pair = 'pair:' + user + '\0' + address;
    this.failures.delete(pair);
    this.known.set(pair, now);
    if (this.known.size > 100_000) this.known.clear();
  }
}

/** Whether an IPv4 address lies in a CIDR block (`10.0.0.0/8`); IPv4-mapped IPv6 addresses are understood. */
export function inCidr(address: string, cidr: string): boolean {
  const ip = address.replace(/^::ffff:/, '');
  const [base, bitsText] = cidr.split('/');
  const bits = bitsText === undefined ? 32 : Number(bitsText);
  const toInt = (text: string): number | null => {
    const parts = text.split('.');
    if (parts.length !== 4) return null;
    let value = 0;
    for (const part of parts) {
      if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return null;
      value = value * 256 + Number(part);
    }
    return value;
  };
  const a = toInt(ip);
  const b = toInt(base);
  if (a === null || b === null || !Number.isInteger(bits) || bits < 0 || bits > 32) return false;
  const size = 2 ** (32 - bits);
  return Math.floor(a / size) === Math.floor(b / size);
}
