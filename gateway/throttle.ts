/**
 * Client addresses: whether one lies in a CIDR block (token restrictions). The login throttle moved to
 * `lib/login-throttle.ts`, where the embedded CouchDB port's logins share it; it is re-exported here.
 */
export { DEFAULT_LIMITS, LOGIN_THROTTLE, LoginRefused, LoginThrottle, type ThrottleLimits } from '../lib/login-throttle';

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
