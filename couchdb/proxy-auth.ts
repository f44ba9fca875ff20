/**
 * CouchDB's proxy-authentication contract (chttpd_auth with `proxy_use_secret = true`): the caller
 * names the user in `X-Auth-CouchDB-UserName`, the roles in `X-Auth-CouchDB-Roles` (comma separated)
 * and proves it knows the shared secret with `X-Auth-CouchDB-Token`, the hex HMAC-SHA256 of the name.
 */
import { createHmac, timingSafeEqual } from 'crypto';

export const PROXY_HEADERS = {
  user: 'x-auth-couchdb-username',
  roles: 'x-auth-couchdb-roles',
  token: 'x-auth-couchdb-token',
} as const;

export function proxyToken(secret: string, user: string): string {
  return createHmac('sha256', secret).update(user).digest('hex');
}

/** The headers that make CouchDB treat a request as `user` with `roles`. */
export function proxyHeaders(secret: string, user: string, roles: string[]): Record<string, string> {
  return {
    'X-Auth-CouchDB-UserName': user,
    'X-Auth-CouchDB-Roles': roles.join(','),
    'X-Auth-CouchDB-Token': proxyToken(secret, user),
  };
}

/** The user a request proves with proxy headers, or null when the headers are absent or the token is wrong. */
export function verifyProxyHeaders(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
): { name: string; roles: string[] } | null {
  const name = headers[PROXY_HEADERS.user];
  const token = headers[PROXY_HEADERS.token];
  if (typeof name !== 'string' || !name || typeof token !== 'string') return null;
  const expected = Buffer.from(proxyToken(secret, name), 'utf8');
  const given = Buffer.from(token, 'utf8');
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
  const rolesHeader = headers[PROXY_HEADERS.roles];
  const roles = typeof rolesHeader === 'string' && rolesHeader ? rolesHeader.split(',').map((r) => r.trim()) : [];
  return { name, roles: roles.filter(Boolean) };
}
