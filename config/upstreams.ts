/**
 * The upstream registries and the package patterns routed to each (`UPSTREAMS`, and the single
 * upstream of `UPSTREAM_REGISTRY`), checked at start. They live in the environment, not in a
 * document: the routes decide where the registry's tokens are sent and which hosts the outbound
 * request policy lets it ask, and a document that database admins write in Fauxton, and that is
 * replicated between sites, must never be able to send the registry's tokens or requests to another
 * host.
 *
 *   UPSTREAMS='[{"name": "github", "url": "https://npm.pkg.github.com", "packages": ["@company-gh/*"],
 *                "mode": "proxy", "tokenEnv": "GITHUB_PACKAGES_TOKEN"},
 *               {"name": "npmjs", "url": "https://registry.npmjs.org", "packages": ["**"]}]'
 *
 * In the order given, the first entry with a pattern that matches a name is the one that name is
 * asked of (patterns as in the access rules, core/access.ts). `UPSTREAM_REGISTRY`, when set too, is
 * one more entry at the end, named `default`, for every name (`**`), with `REPLICATION_FEED` as its
 * feed. `UPSTREAM_MODE` and `UPSTREAM_TIMEOUT_MS` are the defaults of every entry.
 */
import { patternMatches, patternProblem } from '../core/access';
import { HiddenSecret } from './secret';

export type UpstreamMode = 'mirror' | 'proxy' | 'redirect';

export interface UpstreamConfig {
  /** Its name in the status, the metrics and the messages: letters, digits, `-`, `_`. */
  name: string;
  /** Its URL, without credentials and without a trailing slash. */
  url: string;
  /** The package patterns routed to it (`@company-gh/*`, `**`). */
  packages: string[];
  /** What a name routed to it and not here does (see `UPSTREAM_MODE`). */
  mode: UpstreamMode;
  /** How long to wait for it before answering 424/504. */
  timeoutMs: number;
  /** The token sent as `Authorization: Bearer` to its origin only; never shown. */
  token?: HiddenSecret;
  /** Where the token comes from, as shown in the status: `env:<NAME>` or `UPSTREAMS`. */
  tokenFrom?: string;
  /** Its change feed (`<feed>/_changes`), followed when set. */
  feed?: string;
}

const FIELDS = ['name', 'url', 'packages', 'mode', 'timeoutMs', 'token', 'tokenEnv', 'feed'];
const MODES: UpstreamMode[] = ['mirror', 'proxy', 'redirect'];
const EXAMPLE =
  '[{"name": "github", "url": "https://npm.pkg.github.com", "packages": ["@company-gh/*"], "mode": "proxy", "tokenEnv": "GITHUB_PACKAGES_TOKEN"}, ' +
  '{"name": "npmjs", "url": "https://registry.npmjs.org", "packages": ["**"]}]';

/** The settings the upstreams are read from. */
export interface UpstreamDefaults {
  /** `UPSTREAM_MODE`: the mode of an entry that names none. */
  mode: UpstreamMode;
  /** `UPSTREAM_TIMEOUT_MS`: the time limit of an entry that names none. */
  timeoutMs: number;
  /** `REPLICATION_PRIVATE_SCOPES`: never asked of any upstream. */
  privateScopes: string[];
}

/**
 * Whether every name `later` matches is matched by `earlier` too (so `later` can never decide where
 * a name goes). Sound, not complete: `earlier`'s `*` matches what `later`'s `*` stands for when it
 * matches `later` read as a name (a `*` never crosses a `/`).
 */
export function patternCovers(earlier: string, later: string): boolean {
  if (earlier === '**') return true;
  if (later.includes('**')) return false;
  // Names are routed without regard to case (`routeOf`).
  return patternMatches(earlier.toLowerCase(), later.toLowerCase());
}

/** An http(s) URL setting, checked: no credentials, query or fragment; without trailing slashes. */
function baseUrl(raw: unknown, what: string, hint: string): string {
  if (typeof raw !== 'string' || !raw) throw new Error(what + ' must be an http(s) URL such as "https://registry.npmjs.org"' + hint);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(what + ' must be an http(s) URL such as "https://registry.npmjs.org", got "' + raw + '"' + hint);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(what + ' must be an http(s) URL, got "' + url.protocol + '//…"' + hint);
  if (url.username || url.password) throw new Error(what + ' must carry no credentials (they would be sent to every host): give the upstream a token with "tokenEnv"' + hint);
  if (url.search || url.hash || raw.includes('?') || raw.includes('#')) throw new Error(what + ' must have no query and no fragment, got "' + raw + '"' + hint);
  return raw.replace(/\/+$/, '');
}

/** One entry of `UPSTREAMS`, checked. */
function upstreamEntry(raw: unknown, index: number, env: NodeJS.ProcessEnv, defaults: UpstreamDefaults): UpstreamConfig {
  const at = 'UPSTREAMS entry ' + (index + 1);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(at + ' must be an object such as ' + EXAMPLE.slice(1, EXAMPLE.indexOf('}') + 1));
  const entry = raw as Record<string, unknown>;
  const unknown = Object.keys(entry).filter((key) => !FIELDS.includes(key));
  if (unknown.length) throw new Error(at + ' has unknown fields ' + unknown.map((k) => '"' + k + '"').join(', ') + '; an entry has ' + FIELDS.map((k) => '"' + k + '"').join(', '));
  if (typeof entry.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(entry.name)) {
    throw new Error(at + ' needs a "name" of 1 to 64 letters, digits, "-" and "_" (shown in the status and the metrics), such as "github"');
  }
  const name = entry.name;
  const which = 'UPSTREAMS: the upstream "' + name + '"';
  const url = baseUrl(entry.url, which + ': "url"', '');
  if (!Array.isArray(entry.packages) || entry.packages.length === 0) {
    throw new Error(which + ' needs "packages": the package patterns routed to it, such as ["@company-gh/*"] or ["**"] for every name');
  }
  for (const pattern of entry.packages) {
    const problem = patternProblem(pattern);
    if (problem) throw new Error(which + ': ' + problem);
  }
  const packages = entry.packages as string[];
  for (const pattern of packages) {
    const scope = /^(@[^/]+)\/[^*]*\*?[^*]*$/.exec(pattern);
    if (scope && defaults.privateScopes.includes(scope[1].toLowerCase())) {
      throw new Error(which + ': the pattern "' + pattern + '" is in the private scope ' + scope[1] + ' (REPLICATION_PRIVATE_SCOPES), which is never asked of any upstream; remove the pattern or the scope');
    }
  }
  const mode = entry.mode === undefined ? defaults.mode : entry.mode;
  if (typeof mode !== 'string' || !MODES.includes(mode as UpstreamMode)) {
    throw new Error(which + ': "mode" must be one of ' + MODES.map((m) => '"' + m + '"').join(', ') + ', got ' + JSON.stringify(entry.mode));
  }
  const timeoutMs = entry.timeoutMs === undefined ? defaults.timeoutMs : entry.timeoutMs;
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1) {
    throw new Error(which + ': "timeoutMs" must be a whole number of milliseconds, at least 1, got ' + JSON.stringify(entry.timeoutMs));
  }
  let token: HiddenSecret | undefined;
  let tokenFrom: string | undefined;
  if (entry.token !== undefined && entry.tokenEnv !== undefined) throw new Error(which + ' has both "token" and "tokenEnv": keep one ("tokenEnv" keeps the secret out of UPSTREAMS)');
  if (entry.tokenEnv !== undefined) {
    if (typeof entry.tokenEnv !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(entry.tokenEnv)) {
      throw new Error(which + ': "tokenEnv" must be the name of an environment variable that holds its token, such as "GITHUB_PACKAGES_TOKEN"');
    }
    const value = (env[entry.tokenEnv] || '').trim();
    if (!value) {
      throw new Error(which + ' takes its token from the environment variable ' + entry.tokenEnv + ', which is not set or empty: set it to the token for ' + url + ', or remove "tokenEnv"');
    }
    token = new HiddenSecret(value);
    tokenFrom = 'env:' + entry.tokenEnv;
  } else if (entry.token !== undefined) {
    if (typeof entry.token !== 'string' || !entry.token.trim() || /\s/.test(entry.token.trim())) throw new Error(which + ': "token" must be a token without white space (better: "tokenEnv", the name of a variable that holds it)');
    token = new HiddenSecret(entry.token.trim());
    tokenFrom = 'UPSTREAMS';
  }
  if (token && mode === 'redirect') {
    throw new Error(
      which + ' has a token and mode "redirect": clients redirected there ask it themselves, without this registry\'s token. Use mode "proxy" or "mirror" (the registry asks with the token), or remove the token',
    );
  }
  const feed = entry.feed === undefined ? undefined : baseUrl(entry.feed, which + ': "feed"', ' (the change feed: <feed>/_changes)');
  return { name, url, packages, mode: mode as UpstreamMode, timeoutMs, token, tokenFrom, feed };
}

/**
 * The upstreams, in order: the entries of `UPSTREAMS` (a JSON list), then `UPSTREAM_REGISTRY` as
 * the catch-all `default` when set. Checked: unknown fields, URLs, modes, names and feeds used twice,
 * tokens (a token with `redirect`, a `tokenEnv` not set), and patterns that can never match because
 * an earlier one already routes every name they match.
 */
export function upstreamsOf(env: NodeJS.ProcessEnv, defaults: UpstreamDefaults): UpstreamConfig[] {
  const upstreams: UpstreamConfig[] = [];
  const raw = (env.UPSTREAMS || '').trim();
  if (raw) {
    let list: unknown;
    try {
      list = JSON.parse(raw);
    } catch (err) {
      throw new Error('UPSTREAMS must be a JSON list of upstreams, such as ' + EXAMPLE + '; it is not JSON (' + (err as Error).message + ')', { cause: err });
    }
    if (!Array.isArray(list) || list.length === 0) throw new Error('UPSTREAMS must be a non-empty JSON list of upstreams, such as ' + EXAMPLE);
    list.forEach((entry, index) => upstreams.push(upstreamEntry(entry, index, env, defaults)));
  }
  if (env.UPSTREAM_REGISTRY) {
    const url = baseUrl(env.UPSTREAM_REGISTRY, 'UPSTREAM_REGISTRY', '');
    if (upstreams.some((u) => u.name === 'default')) {
      throw new Error('UPSTREAMS: the name "default" is the upstream of UPSTREAM_REGISTRY; name the entry otherwise, or unset UPSTREAM_REGISTRY');
    }
    upstreams.push({ name: 'default', url, packages: ['**'], mode: defaults.mode, timeoutMs: defaults.timeoutMs, feed: env.REPLICATION_FEED ? baseUrl(env.REPLICATION_FEED, 'REPLICATION_FEED', '') : undefined });
  } else if (env.REPLICATION_FEED) {
    throw new Error(
      upstreams.length
        ? 'REPLICATION_FEED is the feed of UPSTREAM_REGISTRY, which is not set: give the feed to its upstream in UPSTREAMS ("feed")'
        : 'REPLICATION_FEED needs UPSTREAM_REGISTRY: packuments and tarballs are fetched from the upstream registry',
    );
  }
  const names = new Set<string>();
  const feeds = new Map<string, string>();
  const earlier: { pattern: string; upstream: string }[] = [];
  for (const upstream of upstreams) {
    if (names.has(upstream.name.toLowerCase())) throw new Error('UPSTREAMS: the name "' + upstream.name + '" is used twice; every upstream needs a name of its own');
    names.add(upstream.name.toLowerCase());
    if (upstream.feed) {
      const other = feeds.get(upstream.feed);
      if (other) throw new Error('UPSTREAMS: the upstreams "' + other + '" and "' + upstream.name + '" follow the same feed ' + upstream.feed + '; give it to one of them');
      feeds.set(upstream.feed, upstream.name);
    }
    for (const pattern of upstream.packages) {
      const cover = earlier.find((e) => patternCovers(e.pattern, pattern));
      if (cover) {
        const source = upstream.name === 'default' && env.UPSTREAM_REGISTRY ? 'UPSTREAM_REGISTRY (every name, "**")' : 'the pattern "' + pattern + '" of the upstream "' + upstream.name + '"';
        throw new Error(
          'UPSTREAMS: ' + source + ' can never be used: "' + cover.pattern + '" of the upstream "' + cover.upstream + '" comes first and matches every name it matches ' +
            '(the first matching pattern decides); put the narrower pattern first, or remove it',
        );
      }
      earlier.push({ pattern, upstream: upstream.name });
    }
  }
  return upstreams;
}

/**
 * The upstream `name` is routed to (the first whose patterns match), or null; private scopes are the
 * caller's to check. Compared without regard to case, as npm normalizes names (and as the private
 * scopes and the supply-chain policy compare them): `@Company-GH/x` goes where `@company-gh/*` goes.
 */
export function routeOf<T extends Pick<UpstreamConfig, 'packages'>>(upstreams: readonly T[], name: string): T | null {
  const lower = name.toLowerCase();
  for (const upstream of upstreams) if (upstream.packages.some((pattern) => patternMatches(pattern.toLowerCase(), lower))) return upstream;
  return null;
}
