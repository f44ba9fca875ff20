/**
 * The outbound request policy: every request the registry itself makes to another host (the upstream
 * registry and its tarball hosts, the change feed, a CouchDB replication source's status, foreign
 * registries served through, webhook receivers, audit forwarding) asks it first, and every
 * connection it opens is checked again on the addresses its name resolved to (a `lookup` hook, so
 * DNS rebinding cannot bypass the check, and each redirect hop is a request of its own).
 *
 * Refused unless configured: loopback, link-local, private (RFC 1918, unique local, CGNAT),
 * unspecified, multicast, documentation and other special addresses, in every spelling Node accepts
 * (IPv4-mapped IPv6 included), and CouchDB's own address (its host and port). Configured means:
 * - the exact host (name and port) of a URL the admin set (`UPSTREAM_REGISTRY`, `REPLICATION_FEED`,
 *   `REPLICATION_COUCHDB`) or listed with its port in `FOREIGN_HOSTS`: requests to it may reach a
 *   private address;
 * - `OUTBOUND_ALLOW_PRIVATE`: host names, `host:port`s, addresses and CIDR blocks that may be reached
 *   despite being private. Only an exact `host:port` opens CouchDB's own address; a name or a CIDR
 *   block never does.
 * Only http and https are spoken. Host names are compared as DNS sees them: lower case, IDNA (as
 * `new URL` spells them) and without the trailing dot of a fully qualified name, so `LOCALHOST.` is
 * `localhost` and `Registry.Example.com.` a configured `registry.example.com`.
 */
import { lookup as dnsLookup, LookupAddress } from 'dns';
import { BlockList, isIP } from 'net';
import { bareHostname, hostOf, normalHostname } from '../core/hosts';

/** A refusal of the outbound policy: the words say what was refused and which setting opens it. */
export class OutboundRefused extends Error {
  readonly code = 'EOUTBOUND';
}

/** Addresses never requested unless configured. */
const SPECIAL = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as [string, number][]) SPECIAL.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  // Unspecified, loopback, IPv4-compatible (deprecated), NAT64, discard, documentation, 6to4 (may carry
  // a private IPv4 address), unique local, link-local, site-local, multicast. IPv4-mapped addresses
  // (::ffff:0:0/96) are checked as the IPv4 address they carry.
  ['::', 96], ['::1', 128], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001:db8::', 32], ['2002::', 16],
  ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as [string, number][]) SPECIAL.addSubnet(net, prefix, 'ipv6');

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addSubnet('0.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addAddress('::', 'ipv6');

/** Names of this machine in every resolver (RFC 6761 `localhost`, and the names of /etc/hosts' loopback lines). */
const LOCAL_NAMES = new Set(['localhost', 'localhost.localdomain', 'localhost6', 'localhost6.localdomain6', 'ip6-localhost', 'ip6-loopback']);

/** Whether `address` (an IP address) is loopback, private or otherwise special, and so refused unless configured. */
export function isSpecialAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return SPECIAL.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

function familyOf(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 6 ? 'ipv6' : 'ipv4';
}

/** Hosts are compared in the spelling of core/hosts.ts, which the embedded server shares. */
export { bareHostname, hostOf, normalHostname };

/**
 * A host an admin listed in a setting (`name`, `name:port`, `[v6]:port`), spelled as requests' hosts
 * are compared (through `new URL`, so IDNA, case and trailing dots as for a request): its bare name
 * (`bareHostname`), and with its port the `host:port` of `hostOf`; null when it is not a host.
 */
function listedHost(entry: string): { name: string; hostPort: string | null } | null {
  if (!/^(\[[0-9a-fA-F:.]+\]|[^\s/?#@:[\]\\]+)(:\d{1,5})?$/.test(entry)) return null;
  let url: URL;
  try {
    url = new URL('http://' + entry);
  } catch {
    return null;
  }
  const name = bareHostname(url);
  if (!name) return null;
  const port = /:(\d+)$/.exec(entry);
  return { name, hostPort: port ? normalHostname(url.hostname) + ':' + Number(port[1]) : null };
}

/** A list setting: entries split at commas and white space. */
export function listOf(raw: string | undefined): string[] {
  return (raw || '').split(/[\s,]+/).map((entry) => entry.trim()).filter(Boolean);
}

export interface OutboundSettings {
  /** `OUTBOUND_ALLOW_PRIVATE`: host names, host:ports, addresses and CIDR blocks that may be private. */
  allowPrivate: string[];
  /** URLs the admin configured (upstream, feed, replication source): their exact hosts may be private. */
  configured: string[];
  /** `FOREIGN_HOSTS`: hosts (`name` or `name:port`) foreign packages may be registered at. */
  foreignHosts: string[];
}

/** A Node `lookup` function (the shape `net.connect` calls). */
type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;
export type Lookup = (hostname: string, options: { all?: boolean; family?: number | string }, callback: LookupCallback) => void;

export class OutboundPolicy {
  /** Exact `host:port`s that may resolve to private addresses. */
  private readonly trustedHosts = new Set<string>();
  /** Host names (any port) that may resolve to private addresses. */
  private readonly trustedNames = new Set<string>();
  /** Addresses and blocks that may be reached although private. */
  private readonly allowedBlocks = new BlockList();
  /** CouchDB's own addresses and port: never requested unless its exact host is configured. */
  private readonly couchdb: { hostname: string; addresses: Set<string>; port: string }[] = [];
  /**
   * What `refusal` answered, by scheme, host, port and address (a feed follower asks the same
   * upstream address for every packument; each answer took a dozen address-block checks). The
   * policy is fixed once made, but for CouchDB's address (`denyCouchDB`), which empties this.
   */
  private readonly refusals = new Map<string, string | null>();
  /** Foreign registries' hosts (`FOREIGN_HOSTS`): `name:port`, or a name for any port. */
  private readonly foreignHosts = new Set<string>();
  private readonly foreignNames = new Set<string>();

  constructor(readonly settings: OutboundSettings) {
    for (const entry of settings.allowPrivate) this.allowPrivate(entry, 'OUTBOUND_ALLOW_PRIVATE');
    for (const url of settings.configured) this.trustedHosts.add(hostOf(new URL(url)));
    for (const entry of settings.foreignHosts) {
      const host = listedHost(entry);
      if (!host) throw new Error('FOREIGN_HOSTS lists host names or host:port, such as "registry.example.com, npm.pkg.github.com"; got "' + entry + '"');
      // Named with its port by the admin: served through even when it resolves to a private address.
      if (host.hostPort) {
        this.foreignHosts.add(host.hostPort);
        this.trustedHosts.add(host.hostPort);
      } else {
        this.foreignNames.add(host.name);
      }
    }
  }

  private allowPrivate(entry: string, setting: string): void {
    const value = entry.toLowerCase();
    const cidr = /^([0-9a-f:.]+)\/(\d{1,3})$/.exec(value);
    if (cidr && isIP(cidr[1])) {
      const prefix = Number(cidr[2]);
      if (prefix > (isIP(cidr[1]) === 6 ? 128 : 32)) throw new Error(setting + ': "' + entry + '" has a prefix longer than its address');
      this.allowedBlocks.addSubnet(cidr[1], prefix, familyOf(cidr[1]));
    } else if (isIP(value.replace(/^\[(.*)\]$/, '$1'))) {
      const address = value.replace(/^\[(.*)\]$/, '$1');
      this.allowedBlocks.addAddress(address, familyOf(address));
    } else if (/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d+$/.test(value) && listedHost(value)?.hostPort) {
      this.trustedHosts.add(listedHost(value)?.hostPort as string);
    } else if (/^[a-z0-9.-]+$/.test(value) && listedHost(value)) {
      this.trustedNames.add(listedHost(value)?.name as string);
    } else {
      throw new Error(setting + ' lists host names, host:port, addresses and CIDR blocks such as "127.0.0.1:4873, 10.0.0.0/8"; got "' + entry + '"');
    }
  }

  /**
   * CouchDB's own address (`http://host:port`): never requested, whatever CIDR block is allowed,
   * unless that exact host is configured. Its host name is resolved now.
   */
  async denyCouchDB(origin: string): Promise<void> {
    const url = new URL(origin);
    const hostname = bareHostname(url);
    const entry = { hostname, addresses: new Set<string>(), port: url.port || (url.protocol === 'https:' ? '443' : '80') };
    if (isIP(hostname)) entry.addresses.add(hostname);
    else {
      const found = await new Promise<LookupAddress[]>((resolve) => dnsLookup(hostname, { all: true }, (err, addresses) => resolve(err ? [] : addresses)));
      for (const a of found) entry.addresses.add(a.address);
    }
    this.couchdb.push(entry);
    this.refusals.clear();
  }

  /** Whether `url`'s exact host was configured by the admin (it may then be private, even CouchDB's). */
  private configuredHost(url: URL): boolean {
    return this.trustedHosts.has(hostOf(url)) || this.trustedNames.has(bareHostname(url));
  }

  /** Why connecting to `address` for `url` is refused, or null. */
  private refusal(url: URL, address: string): string | null {
    const key = url.protocol + '//' + url.host + '\n' + address;
    const known = this.refusals.get(key);
    if (known !== undefined) return known;
    const why = this.decide(url, address);
    if (this.refusals.size >= 1000) this.refusals.clear();
    this.refusals.set(key, why);
    return why;
  }

  private decide(url: URL, address: string): string | null {
    const configured = this.configuredHost(url);
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    const loopback = LOOPBACK.check(address, familyOf(address));
    for (const couch of this.couchdb) {
      const same = couch.addresses.has(address) || (loopback && [...couch.addresses].some((a) => LOOPBACK.check(a, familyOf(a))));
      if (same && couch.port === port && !this.trustedHosts.has(hostOf(url))) return 'it is the address of this registry\'s CouchDB (' + address + ':' + port + ')';
    }
    if (!isSpecialAddress(address) || configured || this.allowedBlocks.check(address, familyOf(address))) return null;
    return 'it resolves to ' + address + ', a loopback, private or otherwise special address; an admin may allow it with OUTBOUND_ALLOW_PRIVATE';
  }

  private refused(url: URL, why: string): OutboundRefused {
    return new OutboundRefused('the request to ' + url.protocol + '//' + url.host + ' was refused by the outbound request policy: ' + why);
  }

  /**
   * The options to open a request to `url` with: a `lookup` that refuses what the policy refuses
   * once the name is resolved. Throws `OutboundRefused` at once for a scheme other than http(s) or a
   * refused address written in the URL (Node does not look those up).
   */
  connectOptions(url: URL): { lookup: Lookup } {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw this.refused(url, 'only http and https are requested');
    if (url.username || url.password) throw this.refused(url, 'a URL with credentials is not requested');
    const literal = bareHostname(url);
    if (isIP(literal)) {
      const why = this.refusal(url, literal);
      if (why) throw this.refused(url, why);
    }
    const lookup: Lookup = (hostname, options, callback) => {
      dnsLookup(hostname, { family: options.family as number, all: true }, (err, addresses) => {
        if (err) return callback(err, options.all ? [] : '', 0);
        for (const a of addresses) {
          const why = this.refusal(url, a.address);
          if (why) return callback(this.refused(url, why), options.all ? [] : '', 0);
        }
        if (options.all) return callback(null, addresses);
        if (addresses.length === 0) return callback(Object.assign(new Error('no address for ' + hostname), { code: 'ENOTFOUND' }), '', 0);
        callback(null, addresses[0].address, addresses[0].family);
      });
    };
    return { lookup };
  }

  /** Whether foreign packages may be registered at `url`'s host (always, when `FOREIGN_HOSTS` is empty). */
  foreignHostListed(url: URL): boolean {
    return this.foreignHosts.has(hostOf(url)) || this.foreignNames.has(bareHostname(url));
  }

  /** Whether `FOREIGN_HOSTS` lists any host. */
  get foreignHostsSet(): boolean {
    return this.foreignHosts.size + this.foreignNames.size > 0;
  }

  /**
   * Why `url` (as parsed from a foreign package's `url`) written as an address is refused even for
   * a redirect: a loopback or private address not allowed (the npm client would ask its own
   * network), or null.
   */
  literalProblem(url: URL): string | null {
    const literal = bareHostname(url);
    if (LOCAL_NAMES.has(literal) || literal.endsWith('.localhost')) return this.configuredHost(url) ? null : 'its host is this machine (' + literal + ')';
    if (!isIP(literal)) return null;
    return this.refusal(url, literal);
  }
}
