/**
 * Throttling of failed logins, per user name and per client address: after `limit` failures within
 * `windowMs`, further attempts are refused with 429 and `Retry-After` until the window has passed.
 * Kept in memory: each gateway throttles what it sees (a cache, not state to share).
 */
import { HttpError } from './errors';

export class LoginThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limit = 10,
    private readonly windowMs = 15 * 60 * 1000,
  ) {}

  private recent(key: string, now: number): number[] {
    const list = (this.failures.get(key) || []).filter((t) => now - t < this.windowMs);
    if (list.length) this.failures.set(key, list);
    else this.failures.delete(key);
    return list;
  }

  /** Throws 429 when the user or the address has failed too often recently. */
  check(user: string, address: string, now = Date.now()): void {
    for (const key of ['user:' + user, 'addr:' + address]) {
      const list = this.recent(key, now);
      if (list.length >= this.limit) {
        const retryAfter = Math.ceil((list[0] + this.windowMs - now) / 1000);
        throw new HttpError(429, 'Too many failed logins; try again in ' + retryAfter + ' seconds.', { 'Retry-After': String(retryAfter) });
      }
    }
  }

  fail(user: string, address: string, now = Date.now()): void {
    for (const key of ['user:' + user, 'addr:' + address]) {
      const list = this.recent(key, now);
      list.push(now);
      this.failures.set(key, list);
    }
    if (this.failures.size > 100_000) this.failures.clear();
  }

  succeed(user: string): void {
    this.failures.delete('user:' + user);
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
