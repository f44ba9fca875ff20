/**
 * Hosts as the outbound request policy compares them (config/outbound.ts) and as the embedded server
 * recognizes itself among them (couchdb/embedded.ts): one spelling per host. Pure.
 */

/**
 * A host name as DNS sees it: lower case and without the trailing dots of a fully qualified name
 * (`LOCALHOST.` and `localhost` are one host). `new URL` has already applied IDNA and read the
 * spellings of IPv4 addresses (`127.1`, `0x7f.1`, `2130706433`).
 */
export function normalHostname(hostname: string): string {
  return hostname.toLowerCase().replace(/\.+$/, '');
}

/** `host:port` of a URL, its host name normalized (`normalHostname`), with the scheme's default port spelled out. */
export function hostOf(url: URL): string {
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return normalHostname(url.hostname) + ':' + port;
}

/** An URL's host name, normalized (`normalHostname`), without the brackets of an IPv6 literal. */
export function bareHostname(url: URL): string {
  return normalHostname(url.hostname.replace(/^\[(.*)\]$/, '$1'));
}
