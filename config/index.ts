/**
 * Every setting of the registry, read from the environment, with safe defaults. The README's
 * configuration table documents the same list.
 */
import { parseDuration } from '../core/policy';
import { resolve } from 'path';
import { GATEWAY_ROLE, parseScopes, READER_ROLE, REPLICATOR_ROLE, SITE_ROLE } from '../core/provenance';
import { listOf, OutboundPolicy } from './outbound';
import { AllowedIssuer, TRUST_PROVIDERS, TrustProvider } from '../core/trust';
import { HiddenSecret } from './secret';
import { UpstreamConfig, UpstreamMode, upstreamsOf } from './upstreams';

export { OutboundPolicy, OutboundRefused } from './outbound';
export { HiddenSecret } from './secret';
export { routeOf } from './upstreams';
export type { UpstreamConfig, UpstreamMode } from './upstreams';

export type SignupMode = 'open' | 'closed';
export type ReplicationMode = 'all' | 'existing' | 'list';
/** How foreign packages are served: `redirect` (302 to the registry that hosts it) or `proxy` (served through). */
export type ForeignMode = 'redirect' | 'proxy';

export interface ReplicationConfig {
  /** Change feed of an npm registry upstream (`REPLICATION_FEED`): `<feed>/_changes`; the follower runs when set. */
  feed?: string;
  /** Which packages the follower mirrors (`REPLICATION_MODE`, default existing). */
  mode: ReplicationMode;
  /** Names and package-lock.json paths for the `list` mode (`REPLICATION_PACKAGES`). */
  packages: string[];
  /** Packuments fetched at once (`REPLICATION_CONCURRENCY`, default 8). */
  concurrency: number;
  /** Pause between feed polls once caught up (`REPLICATION_POLL_MS`, default 2000). */
  pollMs: number;
  /** How far back the feed is read again for late entries, and how often (`REPLICATION_RECHECK_SECONDS`, default 300). */
  recheckSeconds: number;
  /** Modes existing and list: how often every mirrored package is compared with the upstream, for entries the feed never showed (`REPLICATION_SWEEP_SECONDS`, default 86400). */
  sweepSeconds: number;
  /** A CouchDB database to replicate natively through `_replicator` (`REPLICATION_COUCHDB`, with credentials). */
  couchdb?: string;
  /** Scopes never taken from an upstream (`REPLICATION_PRIVATE_SCOPES`, e.g. `@acme,@internal`). */
  privateScopes: string[];
}

export interface Config {
  /** Gateway port (`PORT`, default 5080). */
  port: number;
  /** Gateway bind address (`HOST`, default 127.0.0.1). */
  host: string;
  /** A real CouchDB with admin credentials (`COUCHDB_URL`); unset runs the embedded server. */
  couchdbUrl?: string;
  /** CouchDB's proxy-authentication secret (`COUCHDB_PROXY_SECRET`); read from its config API when unset. */
  couchdbProxySecret?: string;
  /** Port of the embedded server (`COUCHDB_PORT`, default 5984). */
  couchdbPort: number;
  /**
   * Address the embedded server listens on (`COUCHDB_BIND`, default 127.0.0.1): another address only
   * for what must reach it from elsewhere (other sites, a reverse proxy in front of it, Fauxton for admins).
   */
  couchdbBind: string;
  /**
   * `Host` values besides 127.0.0.1, localhost and [::1] at `COUCHDB_PORT` that the embedded server
   * answers (`COUCHDB_HOSTS`, comma separated, e.g. a reverse proxy's `couch.example.com`); others get 400.
   */
  couchdbHosts: string[];
  /** Storage of the embedded server and generated secrets (`DATA_DIR`, default ./data). */
  dataDir: string;
  /** Base of tarball URLs (`REGISTRY_PUBLIC_URL`, default http://HOST:PORT). */
  publicUrl?: string;
  /**
   * The path the registry is served under, from `REGISTRY_PUBLIC_URL` (`https://host/npm` → `/npm`;
   * `''` when it has none): requests are expected under it, as a reverse proxy passes them on.
   */
  basePath: string;
  /** Admin password of the embedded server (`REGISTRY_ADMIN_PASSWORD`); generated once when unset. */
  adminPassword?: string;
  /** `open`: anyone may create an account; `closed`: only admins create users (`REGISTRY_SIGNUP`). */
  signup: SignupMode;
  /** Name of the registry database (`REGISTRY_DB`, default `registry`): the packages published here. */
  registryDb: string;
  /** The database of mirrored packages, `<REGISTRY_DB>-mirror`: written by replication only, read after the registry database. */
  mirrorDb: string;
  /** Access tokens, stored hashed: `<REGISTRY_DB>-tokens`, admins only. */
  tokensDb: string;
  /** The registry's own bookkeeping (web-login sessions, the feed follower's checkpoints): `<REGISTRY_DB>-state`, admins only. */
  stateDb: string;
  /**
   * Staged publishes (`npm stage publish`), each with its tarball, until a maintainer approves or
   * rejects it: `<REGISTRY_DB>-stage`, admins (the gateway) and the other sites only. Never served,
   * searched or replicated downstream: a staged version is not in the registry database.
   */
  stageDb: string;
  /**
   * Download counts of this registry's own tarball downloads (`<REGISTRY_DB>-downloads`), one document
   * per package, day and gateway run: admins (the gateway) and the other sites only.
   */
  downloadsDb: string;
  /**
   * How often each gateway writes the downloads it counted in memory (`DOWNLOADS_FLUSH_SECONDS`,
   * default 30): a gateway killed without a clean stop loses at most that much of its counts.
   */
  downloadsFlushMs: number;
  /** Largest accepted publish body in bytes (`MAX_PUBLISH_BYTES`, default 100 MiB). */
  maxPublishBytes: number;
  /**
   * `UPSTREAM_REGISTRY` as set: the single upstream of every name, the last of `upstreams` (named
   * `default`). Names are routed through `upstreams` only; this is what the setting said.
   */
  upstreamRegistry?: string;
  /**
   * The upstream registries, in order, each with the package patterns routed to it (`UPSTREAMS`, a
   * JSON list, then `UPSTREAM_REGISTRY` for every name): a name not here is asked of the first whose
   * pattern matches it, and of no other (config/upstreams.ts).
   */
  upstreams: UpstreamConfig[];
  /**
   * What happens to a name unknown here (`UPSTREAM_MODE`, default mirror; the default of each
   * upstream's `mode`): `mirror` fetches it from the upstream and stores it as a mirrored package
   * (pull-through); `proxy` serves it through without storing; `redirect` answers 302 to the upstream.
   */
  upstreamMode: UpstreamMode;
  /**
   * When tarballs of mirrored packages are fetched (`UPSTREAM_TARBALLS`): `lazy` on first request;
   * `ahead` (default) also, with a dependency pull-through fetches ahead, the tarball of the version
   * its parent's range picks (a small one, not for some platforms only); `eager` all with the packument.
   */
  upstreamTarballs: 'lazy' | 'ahead' | 'eager';
  /** Without a change feed, how old a mirrored packument may get before a read compares it with the upstream (`UPSTREAM_MAX_AGE_SECONDS`, default 120). */
  upstreamMaxAgeSeconds: number;
  /** How long to wait for the upstream before answering 502/504 (`UPSTREAM_TIMEOUT_MS`, default 10000; the default of each upstream's `timeoutMs`). */
  upstreamTimeoutMs: number;
  /**
   * Pull-through fetches the packuments a pulled package depends on ahead of the client, this many at
   * once (`UPSTREAM_PREFETCH`, default 8; 0 turns it off).
   */
  upstreamPrefetch: number;
  /** Memory for packuments kept ready to serve (`PACKUMENT_CACHE_MB`, default 256; 0 turns it off). */
  packumentCacheBytes: number;
  /** Memory for small tarballs (up to 512 KB each) served without touching the disk (`TARBALL_MEMORY_MB`, default 64; 0 is off). */
  tarballMemoryBytes: number;
  /** Replication settings (see replication/README.md). */
  replication: ReplicationConfig;
  /**
   * Which reverse proxies may name the client address in `X-Forwarded-For` (`TRUST_PROXY`, default
   * none): `true` (any), a number of hops, or addresses and subnets (`loopback`, `10.0.0.0/8`). The
   * address is used by the login throttle and by tokens bound to CIDR blocks.
   */
  trustProxy: boolean | number | string;
  /** Log level for pino (`LOG_LEVEL`, default info). */
  logLevel: string;
  /**
   * Who may read `GET /-/metrics` (`METRICS`): `admins` (default, CouchDB admins by Basic auth or
   * token), `token` (whoever sends `Authorization: Bearer <METRICS_TOKEN>`, for Prometheus), `off`.
   */
  metrics: 'off' | 'admins' | 'token';
  metricsToken?: string;
  /**
   * A Sigstore trusted root (`trusted_root.json`, `PROVENANCE_TRUSTED_ROOT`): provenance bundles
   * published here must be signed with a certificate one of its authorities issued. Unset: any
   * certificate (the bundle's own signature is still verified).
   */
  provenanceTrustedRoot?: string;
  /**
   * Cooldown of new upstream versions (`UPSTREAM_MIN_AGE`, e.g. `3d`, `12h`; default off): mirrored
   * versions younger than this (by their upstream publish time) are not served. In ms; 0 is off.
   */
  upstreamMinAgeMs: number;
  /**
   * With the vulnerability policy on (`advisories` in the supply-chain policy document): how often the
   * upstream's advisory endpoint is asked again about every mirrored package (`ADVISORIES_CHECK_SECONDS`,
   * default 3600); new versions are asked about when they arrive.
   */
  advisoriesCheckSeconds: number;
  /**
   * The outbound request policy (`config/outbound.ts`): every request the registry makes to another
   * host asks it. From `OUTBOUND_ALLOW_PRIVATE`, `FOREIGN_HOSTS` and the configured upstream, feed and
   * replication source.
   */
  outbound: OutboundPolicy;
  /**
   * Foreign packages (`FOREIGN_MODE`): `redirect` (default) answers 302 to the registry that hosts
   * it and fetches nothing; `proxy` serves it through, only from hosts listed in `FOREIGN_HOSTS`.
   */
  foreignMode: ForeignMode;
  /** Largest upstream packument accepted, decoded (`UPSTREAM_MAX_PACKUMENT_MB`, default 64), in bytes. */
  upstreamMaxPackumentBytes: number;
  /** Largest upstream tarball accepted (`UPSTREAM_MAX_TARBALL_MB`, default 256), in bytes. */
  upstreamMaxTarballBytes: number;
  /**
   * Token lifetimes in days: the longest any token lives (`TOKEN_MAX_DAYS`, default 90; `npm login`
   * tokens live this long), and a write token made by `npm token create` without `--expires`
   * (`TOKEN_DEFAULT_DAYS`, default 7).
   */
  tokens: { maxDays: number; defaultWriteDays: number };
  /**
   * Two-factor authentication (`TWO_FACTOR`): `optional` (default; each account chooses with `npm
   * profile enable-2fa`) or `required` (publishing and changing packages need an account with
   * two-factor authentication for writes).
   */
  twoFactor: 'optional' | 'required';
  /**
   * Sites of one registry (replication/sites.ts): the other sites' registry databases, each a URL with
   * the credentials of that site's account (`SITE_PEERS`, comma separated), and this site's account
   * password (`SITE_PASSWORD`), which the other sites put in their `SITE_PEERS`; how often the peers'
   * ids, jobs and access rules are checked (`SITE_CHECK_SECONDS`, default 30).
   */
  sites: { peers: string[]; password?: string; checkSeconds: number };
  /** The first wait before a failed webhook delivery is sent again (`WEBHOOK_BACKOFF_MS`, default 5000); the waits double up to an hour. */
  webhookBackoffMs: number;
  /**
   * Trusted publishing (`OIDC_ISSUERS`): the issuers whose ID tokens CI jobs may exchange for a
   * publish token, each with the provider whose tokens it signs. Default: GitHub Actions
   * (`https://token.actions.githubusercontent.com`) and GitLab.com (`https://gitlab.com`).
   */
  oidcIssuers: AllowedIssuer[];
  /** Single sign-on with OpenID Connect for people (`SSO_ISSUER` and the other `SSO_` settings); off when unset. */
  sso?: SsoConfig;
}

/**
 * Single sign-on (gateway/sso.ts): the company's OpenID provider logs people in to the pages and to
 * `npm login` (web login), with the authorization code flow and PKCE.
 */
export interface SsoConfig {
  /** The provider's issuer URL (`SSO_ISSUER`), exactly as its ID tokens name it in `iss`; its discovery document is `<issuer>/.well-known/openid-configuration`. */
  issuer: string;
  /** This registry's client at the provider (`SSO_CLIENT_ID`, `SSO_CLIENT_SECRET`); the secret is never logged or shown. */
  clientId: string;
  clientSecret: HiddenSecret;
  /** Scopes asked for (`SSO_SCOPES`, default `openid profile email`; `openid` is always asked). */
  scopes: string[];
  /** What the button says: "Sign in with <name>" (`SSO_NAME`, default the issuer's host). */
  displayName: string;
  /** The claim whose value is the account's name (`SSO_USERNAME_CLAIM`, default `preferred_username`). */
  usernameClaim: string;
  /** The claim that lists the user's groups (`SSO_GROUPS_CLAIM`, default `groups`). */
  groupsClaim: string;
  /**
   * How groups become registry roles (`SSO_GROUP_ROLES`): `group=role` entries (a group may be listed
   * more than once); `*=<prefix>` makes every group `g` the role `<prefix>g`. Groups not mapped give no role.
   */
  groupRoles: { map: Map<string, string[]>; prefix?: string };
  /** Groups one of which a user must be in to sign on (`SSO_ALLOWED_GROUPS`); none: whoever the provider signs in. */
  allowedGroups: string[];
  /** Whether people may still log in with a password (`SSO_PASSWORD_LOGIN`, `on` by default, `off`: only CouchDB's server admins may). */
  passwordLogin: boolean;
  /**
   * How long the roles a sign-on's groups gave hold without another sign-on (`SSO_GROUPS_MAX_AGE`,
   * default `7d`; `0`: until the next sign-on), in ms: a user removed from a group at the provider who
   * never signs in again loses the group's roles, on every token, after this.
   */
  groupsMaxAgeMs: number;
}

/** Roles a group may never become: CouchDB's (`_…`) and the registry's own machinery's. */
const MACHINE_ROLE_NAMES = [GATEWAY_ROLE, REPLICATOR_ROLE, READER_ROLE, SITE_ROLE];

/** Why `role` cannot be given from a group, or null. */
export function ssoRoleProblem(role: string): string | null {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$/.test(role)) return 'a role is 1 to 128 letters, digits and . _ : @ / -, starting with a letter or digit';
  if (MACHINE_ROLE_NAMES.includes(role.toLowerCase())) return 'it is a role of the registry\'s own machinery';
  return null;
}

/** The `SSO_` settings, checked; undefined when `SSO_ISSUER` is unset. */
export function ssoSettings(env: NodeJS.ProcessEnv): SsoConfig | undefined {
  const issuerRaw = (env.SSO_ISSUER || '').trim();
  const others = ['SSO_CLIENT_ID', 'SSO_CLIENT_SECRET', 'SSO_GROUP_ROLES', 'SSO_PASSWORD_LOGIN'].filter((key) => env[key]);
  if (!issuerRaw) {
    if (others.length) throw new Error(others.join(', ') + ' need SSO_ISSUER: the issuer URL of the company\'s OpenID provider, such as "https://login.example.com/realms/acme"');
    return undefined;
  }
  let issuerUrl: URL;
  try {
    issuerUrl = new URL(issuerRaw);
  } catch {
    throw new Error('SSO_ISSUER must be the issuer URL of an OpenID provider, such as "https://login.example.com/realms/acme"; got "' + issuerRaw + '"');
  }
  if (!/^https?:$/.test(issuerUrl.protocol) || issuerUrl.username || issuerUrl.password || issuerUrl.search || issuerUrl.hash) {
    throw new Error('SSO_ISSUER must be an http(s) URL without credentials, query or fragment; got "' + issuerRaw + '"');
  }
  const clientId = (env.SSO_CLIENT_ID || '').trim();
  if (!clientId) throw new Error('SSO_ISSUER needs SSO_CLIENT_ID: the client id this registry has at the provider (register its redirect URI <REGISTRY_PUBLIC_URL>/-/sso/callback there)');
  if (!env.SSO_CLIENT_SECRET) throw new Error('SSO_ISSUER needs SSO_CLIENT_SECRET: the client secret this registry has at the provider (a confidential client)');
  const scopes = listOf(env.SSO_SCOPES || 'openid profile email');
  if (!scopes.includes('openid')) scopes.unshift('openid');
  const map = new Map<string, string[]>();
  let prefix: string | undefined;
  for (const entry of listOf(env.SSO_GROUP_ROLES)) {
    const at = entry.lastIndexOf('=');
    const group = entry.slice(0, at);
    const role = entry.slice(at + 1);
    if (at <= 0 || !role) throw new Error('SSO_GROUP_ROLES lists group=role entries (or *=prefix), such as "npm-publishers=acme-publishers, *=idp-"; got "' + entry + '"');
    const problem = ssoRoleProblem(group === '*' ? role + 'x' : role);
    if (problem) throw new Error('SSO_GROUP_ROLES: "' + entry + '" cannot give the role "' + role + '": ' + problem);
    if (group === '*') prefix = role;
    else map.set(group, [...(map.get(group) || []), role]);
  }
  const passwordLogin = oneOf(env, 'SSO_PASSWORD_LOGIN', ['on', 'off'] as const, 'on') === 'on';
  const groupsMaxAgeMs = parseDuration(env.SSO_GROUPS_MAX_AGE === undefined || env.SSO_GROUPS_MAX_AGE === '' ? '7d' : env.SSO_GROUPS_MAX_AGE);
  if (groupsMaxAgeMs === null) throw new Error('SSO_GROUPS_MAX_AGE must be a duration such as 7d, 12h or 0 (never), got "' + env.SSO_GROUPS_MAX_AGE + '"');
  return {
    issuer: issuerRaw.replace(/\/+$/, ''),
    clientId,
    clientSecret: new HiddenSecret(env.SSO_CLIENT_SECRET),
    scopes,
    displayName: (env.SSO_NAME || '').trim() || issuerUrl.host,
    usernameClaim: (env.SSO_USERNAME_CLAIM || '').trim() || 'preferred_username',
    groupsClaim: (env.SSO_GROUPS_CLAIM || '').trim() || 'groups',
    groupRoles: { map, prefix },
    allowedGroups: listOf(env.SSO_ALLOWED_GROUPS),
    passwordLogin,
    groupsMaxAgeMs,
  };
}

/** The default of `OIDC_ISSUERS`: the public GitHub Actions and GitLab.com issuers. */
export const DEFAULT_OIDC_ISSUERS = 'github=https://token.actions.githubusercontent.com gitlab=https://gitlab.com';

/** `OIDC_ISSUERS`, checked: `provider=https://issuer` entries, separated by commas or white space. */
export function oidcIssuers(raw: string | undefined): AllowedIssuer[] {
  const example = 'such as "github=https://token.actions.githubusercontent.com, gitlab=https://gitlab.example.com, circleci=https://oidc.circleci.com/org/<org-id>"';
  const entries = listOf(raw === undefined ? DEFAULT_OIDC_ISSUERS : raw);
  return entries.map((entry) => {
    const match = /^([a-z]+)=(.+)$/.exec(entry);
    if (!match || TRUST_PROVIDERS.indexOf(match[1] as TrustProvider) === -1) {
      throw new Error('OIDC_ISSUERS lists provider=issuer entries (providers: ' + TRUST_PROVIDERS.join(', ') + '), ' + example + '; got "' + entry + '"');
    }
    let url: URL;
    try {
      url = new URL(match[2]);
    } catch {
      throw new Error('OIDC_ISSUERS: "' + match[2] + '" is not a URL; each issuer is the https URL its ID tokens name in "iss", ' + example);
    }
    if (!/^https?:$/.test(url.protocol) || url.username || url.password || url.search || url.hash) {
      throw new Error('OIDC_ISSUERS: "' + match[2] + '" must be an http(s) URL without credentials, query or fragment, ' + example);
    }
    return { provider: match[1] as TrustProvider, issuer: match[2].replace(/\/+$/, '') };
  });
}

function oneOf<T extends string>(env: NodeJS.ProcessEnv, key: string, allowed: readonly T[], fallback: T): T {
  const value = (env[key] || fallback).toLowerCase() as T;
  if (allowed.indexOf(value) === -1) throw new Error(key + ' must be one of ' + allowed.map((a) => '"' + a + '"').join(', ') + ', got "' + env[key] + '"');
  return value;
}

function trustProxy(raw: string | undefined): boolean | number | string {
  const value = (raw || '').trim();
  if (value === '' || value === 'false') return false;
  if (value === 'true') return true;
  if (/^\d+$/.test(value)) return Number(value);
  if (!/^[\w.:/,\s-]+$/.test(value)) throw new Error('TRUST_PROXY must be true, false, a number of hops, or addresses and subnets such as "loopback, 10.0.0.0/8"; got "' + raw + '"');
  return value;
}

function integer(env: NodeJS.ProcessEnv, key: string, fallback: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(key + ' must be a non-negative integer, got "' + raw + '"');
  return n;
}

/** `TOKEN_MAX_DAYS` and `TOKEN_DEFAULT_DAYS`, checked. */
function tokenLifetimes(env: NodeJS.ProcessEnv): { maxDays: number; defaultWriteDays: number } {
  const maxDays = integer(env, 'TOKEN_MAX_DAYS', 90);
  const defaultWriteDays = integer(env, 'TOKEN_DEFAULT_DAYS', 7);
  if (maxDays < 1 || defaultWriteDays < 1) throw new Error('TOKEN_MAX_DAYS and TOKEN_DEFAULT_DAYS are numbers of days, at least 1');
  if (defaultWriteDays > maxDays) throw new Error('TOKEN_DEFAULT_DAYS (' + defaultWriteDays + ') cannot be longer than TOKEN_MAX_DAYS (' + maxDays + ')');
  return { maxDays, defaultWriteDays };
}

/** `SITE_PEERS` and `SITE_PASSWORD`, checked: each peer is a database URL with the credentials of that site's account. */
function siteSettings(env: NodeJS.ProcessEnv): { peers: string[]; password?: string; checkSeconds: number } {
  const peers = (env.SITE_PEERS || '').split(/[\s,]+/).filter(Boolean).map((url) => url.replace(/\/+$/, ''));
  const example = 'such as "https://registry-site:PASSWORD@couch.site-b.example.com/registry"';
  for (const peer of peers) {
    let url: URL;
    try {
      url = new URL(peer);
    } catch {
      throw new Error('SITE_PEERS: "' + peer.replace(/\/\/[^@/]*@/, '//…@') + '" is not a URL; each peer is the URL of another site\'s registry database, ' + example);
    }
    const shown = peer.replace(/\/\/[^@/]*@/, '//…@');
    if (!/^https?:$/.test(url.protocol)) throw new Error('SITE_PEERS: "' + shown + '" must be an http(s) URL, ' + example);
    if (!url.username || !url.password) throw new Error('SITE_PEERS: "' + shown + '" needs the credentials of that site\'s account (registry-site and its SITE_PASSWORD), ' + example);
    if (url.pathname.replace(/\/+$/, '').split('/').filter(Boolean).length !== 1) {
      throw new Error('SITE_PEERS: "' + shown + '" must name that site\'s registry database (its REGISTRY_DB) as the path, ' + example);
    }
  }
  const password = env.SITE_PASSWORD || undefined;
  if (peers.length && !password) throw new Error('SITE_PEERS needs SITE_PASSWORD: the password of this site\'s account "registry-site", which the other sites use to pull from it and this site\'s replication writes with');
  if (password && password.length < 16) throw new Error('SITE_PASSWORD must be at least 16 characters: it is the password of the account other sites replicate with');
  return { peers, password, checkSeconds: Math.max(1, integer(env, 'SITE_CHECK_SECONDS', 30)) };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const signup = (env.REGISTRY_SIGNUP || 'open').toLowerCase();
  if (signup !== 'open' && signup !== 'closed') {
    throw new Error('REGISTRY_SIGNUP must be "open" or "closed", got "' + env.REGISTRY_SIGNUP + '"');
  }
  const registryDb = env.REGISTRY_DB || 'registry';
  if (!/^[a-z][a-z0-9_$()+/-]*$/.test(registryDb)) {
    throw new Error('REGISTRY_DB must be a valid CouchDB database name (lower case, starting with a letter)');
  }
  const upstreamMode = oneOf(env, 'UPSTREAM_MODE', ['mirror', 'proxy', 'redirect'] as const, 'mirror');
  const upstreamTarballs = oneOf(env, 'UPSTREAM_TARBALLS', ['lazy', 'ahead', 'eager'] as const, 'ahead');
  for (const key of ['REGISTRY_PUBLIC_URL', 'UPSTREAM_REGISTRY', 'REPLICATION_FEED', 'REPLICATION_COUCHDB']) {
    if (env[key] && !/^https?:\/\/[^/]+/.test(env[key] as string)) throw new Error(key + ' must be an http(s) URL, got "' + env[key] + '"');
  }
  const privateScopes = parseScopes(env.REPLICATION_PRIVATE_SCOPES || '');
  const upstreamTimeoutMs = integer(env, 'UPSTREAM_TIMEOUT_MS', 10000);
  const upstreams = upstreamsOf(env, { mode: upstreamMode, timeoutMs: Math.max(1, upstreamTimeoutMs), privateScopes });
  const upstreamMinAgeMs = env.UPSTREAM_MIN_AGE ? parseDuration(env.UPSTREAM_MIN_AGE) : 0;
  if (upstreamMinAgeMs === null) throw new Error('UPSTREAM_MIN_AGE must be a duration such as 3d, 12h, 90m or 3600 (seconds), got "' + env.UPSTREAM_MIN_AGE + '"');
  const foreignMode = oneOf(env, 'FOREIGN_MODE', ['redirect', 'proxy'] as const, 'redirect');
  const foreignHosts = listOf(env.FOREIGN_HOSTS);
  if (foreignMode === 'proxy' && foreignHosts.length === 0) {
    throw new Error('FOREIGN_MODE=proxy needs FOREIGN_HOSTS: the hosts of the registries foreign packages may be served through from, such as "npm.pkg.github.com"');
  }
  const sites = siteSettings(env);
  if (sites.peers.length && env.COUCHDB_URL && signup === 'open') {
    throw new Error(
      'SITE_PEERS on a real CouchDB needs REGISTRY_SIGNUP=closed: accounts do not replicate between sites there (CouchDB lets only server admins ' +
        'read _users as a whole), so a name is one account at every site only if admins create it at every site. Open sign-up would let ' +
        'anyone take a maintainer\'s name at another site and publish their packages there.',
    );
  }
  const issuers = oidcIssuers(env.OIDC_ISSUERS);
  const sso = ssoSettings(env);
  const outbound = new OutboundPolicy({
    allowPrivate: listOf(env.OUTBOUND_ALLOW_PRIVATE),
    // An issuer the admin listed may be on the company's network (its GitLab): its exact host is configured.
    // Every upstream's exact host and its feed's (UPSTREAMS too): they may be on the company's network.
    configured: ['UPSTREAM_REGISTRY', 'REPLICATION_FEED', 'REPLICATION_COUCHDB'].filter((key) => env[key]).map((key) => env[key] as string)
      .concat(upstreams.flatMap((u) => (u.feed ? [u.url, u.feed] : [u.url])), sites.peers, issuers.map((i) => i.issuer), sso ? [sso.issuer] : []),
    foreignHosts,
  });
  const metrics = oneOf(env, 'METRICS', ['admins', 'token', 'off'] as const, 'admins');
  if (metrics === 'token' && (env.METRICS_TOKEN || '').length < 16) {
    throw new Error('METRICS=token needs METRICS_TOKEN, a secret of at least 16 characters that Prometheus sends as a Bearer token');
  }
  const replicationMode = oneOf(env, 'REPLICATION_MODE', ['existing', 'all', 'list'] as const, 'existing');
  const packages = (env.REPLICATION_PACKAGES || '').split(/[\s,]+/).filter(Boolean);
  if (replicationMode === 'list' && packages.length === 0) {
    throw new Error('REPLICATION_MODE=list needs REPLICATION_PACKAGES: package names and/or paths of package-lock.json files');
  }
  return {
    port: integer(env, 'PORT', 5080),
    host: env.HOST || '127.0.0.1',
    couchdbUrl: env.COUCHDB_URL || undefined,
    couchdbProxySecret: env.COUCHDB_PROXY_SECRET || undefined,
    couchdbPort: integer(env, 'COUCHDB_PORT', 5984),
    couchdbBind: env.COUCHDB_BIND || '127.0.0.1',
    couchdbHosts: (env.COUCHDB_HOSTS || '').split(/[\s,]+/).filter(Boolean).map((name) => name.toLowerCase()),
    dataDir: resolve(env.DATA_DIR || './data'),
    publicUrl: env.REGISTRY_PUBLIC_URL ? env.REGISTRY_PUBLIC_URL.replace(/\/+$/, '') : undefined,
    basePath: env.REGISTRY_PUBLIC_URL ? new URL(env.REGISTRY_PUBLIC_URL).pathname.replace(/\/+$/, '') : '',
    adminPassword: env.REGISTRY_ADMIN_PASSWORD || undefined,
    signup: signup as SignupMode,
    registryDb,
    mirrorDb: registryDb + '-mirror',
    tokensDb: registryDb + '-tokens',
    stateDb: registryDb + '-state',
    stageDb: registryDb + '-stage',
    downloadsDb: registryDb + '-downloads',
    downloadsFlushMs: Math.max(1, integer(env, 'DOWNLOADS_FLUSH_SECONDS', 30)) * 1000,
    maxPublishBytes: integer(env, 'MAX_PUBLISH_BYTES', 100 * 1024 * 1024),
    provenanceTrustedRoot: env.PROVENANCE_TRUSTED_ROOT ? resolve(env.PROVENANCE_TRUSTED_ROOT) : undefined,
    upstreamRegistry: env.UPSTREAM_REGISTRY ? env.UPSTREAM_REGISTRY.replace(/\/+$/, '') : undefined,
    upstreams,
    upstreamMode,
    upstreamTarballs,
    upstreamTimeoutMs,
    upstreamPrefetch: integer(env, 'UPSTREAM_PREFETCH', 8),
    upstreamMaxAgeSeconds: integer(env, 'UPSTREAM_MAX_AGE_SECONDS', 120),
    packumentCacheBytes: integer(env, 'PACKUMENT_CACHE_MB', 256) * 1024 * 1024,
    tarballMemoryBytes: integer(env, 'TARBALL_MEMORY_MB', 64) * 1024 * 1024,
    replication: {
      feed: env.REPLICATION_FEED ? env.REPLICATION_FEED.replace(/\/+$/, '') : undefined,
      mode: replicationMode,
      packages,
      concurrency: Math.max(1, integer(env, 'REPLICATION_CONCURRENCY', 8)),
      pollMs: integer(env, 'REPLICATION_POLL_MS', 2000),
      recheckSeconds: integer(env, 'REPLICATION_RECHECK_SECONDS', 300),
      sweepSeconds: integer(env, 'REPLICATION_SWEEP_SECONDS', 86400),
      couchdb: env.REPLICATION_COUCHDB ? env.REPLICATION_COUCHDB.replace(/\/+$/, '') : undefined,
      privateScopes,
    },
    trustProxy: trustProxy(env.TRUST_PROXY),
    logLevel: env.LOG_LEVEL || 'info',
    metrics,
    metricsToken: env.METRICS_TOKEN || undefined,
    webhookBackoffMs: integer(env, 'WEBHOOK_BACKOFF_MS', 5000),
    oidcIssuers: issuers,
    sso,
    sites,
    tokens: tokenLifetimes(env),
    twoFactor: oneOf(env, 'TWO_FACTOR', ['optional', 'required'] as const, 'optional'),
    outbound,
    foreignMode,
    upstreamMaxPackumentBytes: Math.max(1, integer(env, 'UPSTREAM_MAX_PACKUMENT_MB', 64)) * 1024 * 1024,
    upstreamMaxTarballBytes: Math.max(1, integer(env, 'UPSTREAM_MAX_TARBALL_MB', 256)) * 1024 * 1024,
    upstreamMinAgeMs,
    advisoriesCheckSeconds: Math.max(1, integer(env, 'ADVISORIES_CHECK_SECONDS', 3600)),
  };
}
