/**
 * Reads served from registries elsewhere: the upstream a name unknown here is routed to
 * (replication/routes.ts), in its mode `redirect` or `proxy`, with its token (to its origin only),
 * and foreign packages registered here with the `url` of the
 * registry that hosts them (`FOREIGN_MODE=redirect`, the default, answers 302 and fetches nothing;
 * `proxy` serves them through, only from hosts in `FOREIGN_HOSTS`). Every request goes through the
 * outbound request policy (`config/outbound.ts`). Proxied packuments point their tarball URLs at
 * this registry, which streams the tarballs through; nothing of the client's credentials is passed
 * on. Private scopes are never asked of the upstream, and the supply-chain policy (cooldown, blocks)
 * holds back in every mode what it holds back of mirrored packages: what it covers is served through
 * this registry, filtered, and a tarball is redirected only when its version is allowed. The
 * upstream's HTTP client for mirroring is `replication/upstream.ts`.
 */
import { Request, Response } from 'express';
import { badRequest, HttpError, forbidden, notFound, UPSTREAM_FAILED } from './errors';
import { resolveVersion, tarballUrl } from '../core/packument';
import { versionOfTarball } from '../core/names';
import { Policy, policyActive, policyCovers, Withheld, withheldTarball, withheldVersions, withoutWithheld } from '../core/policy';
import { PackageDoc } from '../core/types';
import { Config } from '../config';
import { hostOf } from '../config/outbound';
import { Budget } from '../lib/budget';
import { advisoriesCover } from '../core/advisories';
import { capped, fetchFailure, MAX_PACKUMENT_DEPTH, outboundRequest, readAll, UpstreamAnswer, upstreamObject, upstreamPath, UpstreamRegistry } from '../replication/upstream';
import type { UpstreamRoutes } from '../replication/routes';

/** What reads from elsewhere need of the gateway. */
export interface ElsewhereHost {
  config: Config;
  baseUrl: string;
  /** The supply-chain policy in force. */
  policy?: { current: Policy };
  /** The upstreams and the names routed to each (each route's mirror asks its advisory endpoint, with a cache of a minute, for the vulnerability policy). */
  upstreams: UpstreamRoutes;
}

/**
 * The upstream's packument as the policy judges it: with the vulnerability policy on, with what the
 * advisory endpoint of the upstream the name is routed to says of its versions (nothing when it
 * cannot answer: they are unchecked).
 */
async function judged(host: ElsewhereHost, doc: PackageDoc, policy: Policy): Promise<PackageDoc> {
  if (!policy.advisories || !advisoriesCover(policy.advisories, doc.name)) return doc;
  const mirror = host.upstreams.upstreamFor(doc.name)?.mirror;
  const record = mirror ? await mirror.advisories.recordFor(doc.name, Object.keys(doc.versions)) : undefined;
  return { ...doc, origin_advisories: record };
}

function unreachable(upstream: string, err: unknown): HttpError {
  if ((err as { code?: string }).code === 'EENCODED') {
    return new HttpError(UPSTREAM_FAILED, 'The registry ' + upstream + ' ' + fetchFailure(err).words + ', as a tarball\'s integrity is that of its bytes unencoded. Tell its admins.');
  }
  return new HttpError(UPSTREAM_FAILED, 'The registry ' + upstream + ' ' + fetchFailure(err).words + '; packages already here are still served. Try again later.');
}

/** Headers worth passing to an upstream registry (not the client's credentials for this registry). */
function forwardHeaders(req: Request): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of ['accept', 'if-none-match', 'user-agent', 'npm-command', 'npm-session']) {
    const value = req.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  headers['accept-encoding'] = 'gzip, deflate, br';
  return headers;
}

const isTarballPath = (rest: string[]) => rest.length === 2 && rest[0] === '-';

/** The supply-chain policy when it may hold back something of `name`, else undefined. */
function coveringPolicy(host: ElsewhereHost, name: string): Policy | undefined {
  const policy = host.policy?.current;
  return policy && policyActive(policy) && policyCovers(policy, name) ? policy : undefined;
}

/**
 * Serves `GET /<name>[/...]` for a name that is not here from the upstream it is routed to, in that
 * upstream's mode `proxy` or `redirect`; false when it has none (a private scope, a name no upstream
 * is routed) or its upstream mirrors (pull-through answers).
 */
export async function forwardToUpstream(host: ElsewhereHost, req: Request, res: Response, name: string, rest: string[]): Promise<boolean> {
  const route = host.upstreams.upstreamFor(name);
  if (!route || route.mode === 'mirror') return false;
  const upstream = route.url;
  const client = route.registry;
  const policy = coveringPolicy(host, name);
  const missing = 'Package "' + name + '" is neither in this registry nor in its upstream ' + upstream + '.';
  if (route.mode === 'redirect') {
    if (!policy) {
      res.redirect(302, upstream + upstreamPath(name, rest));
      return true;
    }
    if (isTarballPath(rest)) {
      // Redirected only once its version is known to be allowed.
      await assertTarballAllowed(host, upstream, name, rest[1], policy, missing, client);
      res.redirect(302, upstream + upstreamPath(name, rest));
      return true;
    }
  }
  await proxyRead(host, upstream, req, res, name, rest, missing, policy, client);
  return true;
}

/**
 * Why `raw` cannot be the `url` of a foreign package, in words for its maintainer, or null: it must
 * be a registry's base URL (http or https, a host, an optional path; no query, fragment or
 * credentials), on a host `FOREIGN_HOSTS` lists (always in `FOREIGN_MODE=proxy`; in `redirect` when
 * it is set), not on a private address nor this registry itself.
 */
export function foreignUrlProblem(host: ElsewhereHost, raw: unknown): string | null {
  const base = '"url" must be the base URL of the registry that hosts the package (http or https, a host and an optional path, such as "https://npm.pkg.github.com")';
  if (typeof raw !== 'string' || raw.length > 2000) return base + '.';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return base + '; "' + raw + '" is not a URL.';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return base + '; it is ' + url.protocol.slice(0, -1) + '.';
  if (url.username || url.password) return base + '; it must carry no credentials.';
  if (raw.includes('?') || raw.includes('#')) return base + '; it must have no query and no fragment.';
  if (!url.hostname) return base + '; it has no host.';
  const { config } = host;
  const outbound = config.outbound;
  if ((config.foreignMode === 'proxy' || outbound.foreignHostsSet) && !outbound.foreignHostListed(url)) {
    return 'Foreign packages may be registered only at the hosts an admin listed in FOREIGN_HOSTS, and ' + url.host + ' is not one of them; ask an admin to add it.';
  }
  if (hostOf(url) === hostOf(new URL(host.baseUrl))) return base + '; it points at this registry itself.';
  const literal = outbound.literalProblem(url);
  if (literal) return 'A foreign package cannot be hosted at ' + url.host + ': ' + literal + '.';
  return null;
}

/** The stored form of a foreign package's `url` (checked by `foreignUrlProblem`): origin and path, without a trailing slash. */
export function foreignBaseUrl(raw: string): string {
  const url = new URL(raw);
  return (url.origin + url.pathname).replace(/\/+$/, '');
}

/**
 * Serves a read of the foreign package `name` registered at `url`: a 302 there (`FOREIGN_MODE=redirect`)
 * or served through (`proxy`, from hosts in `FOREIGN_HOSTS` only).
 */
export async function readForeign(host: ElsewhereHost, req: Request, res: Response, name: string, rest: string[], url: string): Promise<void> {
  const problem = foreignUrlProblem(host, url);
  if (problem) {
    throw new HttpError(UPSTREAM_FAILED, '"' + name + '" is registered here as hosted at ' + url + ', which this registry does not ask: ' + problem + ' Its maintainers may register it again with another url.');
  }
  const base = foreignBaseUrl(url);
  if (host.config.foreignMode === 'redirect') {
    res.redirect(302, base + upstreamPath(name, rest));
    return;
  }
  await proxyRead(host, base, req, res, name, rest, '"' + name + '" is registered here as hosted at ' + base + ', which does not have it.');
}

/**
 * The status, body and headers of a GET at `registry` for `name`, or the error for an answer that
 * did not come. A tarball is asked unencoded, and refused when sent encoded anyway: inflated, a few
 * kilobytes could become `UPSTREAM_MAX_TARBALL_MB` sent to each client, and the bytes would no longer
 * be the ones the integrity in the packument speaks of.
 */
async function ask(host: ElsewhereHost, registry: string, name: string, rest: string[], headers: Record<string, string>, client?: UpstreamRegistry): Promise<UpstreamAnswer> {
  const tarball = isTarballPath(rest);
  const target = new URL(registry + upstreamPath(name, rest));
  const options = {
    headers: tarball ? { ...headers, 'accept-encoding': 'identity' } : headers,
    signal: AbortSignal.timeout(client ? client.timeoutMs : host.config.upstreamTimeoutMs),
    unencoded: tarball ? 'the tarball ' + rest[1] : undefined,
  };
  let answer: UpstreamAnswer;
  try {
    // An upstream's client adds its token (to its own origin only) and counts the request.
    answer = client ? await client.request(target, options) : await outboundRequest(target, { ...options, policy: host.config.outbound });
  } catch (err) {
    throw unreachable(registry, err);
  }
  if (client && (answer.status === 401 || answer.status === 403)) {
    answer.body.resume();
    throw new HttpError(UPSTREAM_FAILED, 'Package "' + name + '" is not here and ' + client.refusedWords(answer.status, '"' + name + '"') + '.');
  }
  return answer;
}

/** The upstream's full packument of `name` (bounded in size and depth), or the error for it. */
async function packumentFrom(host: ElsewhereHost, registry: string, name: string, missing: string, client?: UpstreamRegistry): Promise<PackageDoc> {
  const answer = await ask(host, registry, name, [], { accept: 'application/json', 'accept-encoding': 'gzip, deflate, br' }, client);
  if (answer.status === 404) {
    answer.body.resume();
    throw notFound(missing);
  }
  if (answer.status !== 200) {
    answer.body.resume();
    throw new HttpError(UPSTREAM_FAILED, 'The registry ' + registry + ' answered ' + answer.status + ' for "' + name + '"; packages already here are still served. Try again later.');
  }
  return parsePackument(registry, name, await readBounded(host, registry, answer));
}

async function readBounded(host: ElsewhereHost, registry: string, answer: UpstreamAnswer): Promise<Buffer> {
  try {
    return await readAll(capped(answer.body, host.config.upstreamMaxPackumentBytes, 'a packument', 'UPSTREAM_MAX_PACKUMENT_MB'));
  } catch (err) {
    throw new HttpError(UPSTREAM_FAILED, 'The registry ' + registry + ' ' + fetchFailure(err).words + '. Try again later, or ask an admin.');
  }
}

function parsePackument(registry: string, name: string, text: Buffer): PackageDoc {
  const doc = upstreamObject(text.toString('utf8'));
  if (!doc) {
    throw new HttpError(UPSTREAM_FAILED, 'The registry ' + registry + ' sent something for "' + name + '" that is not a packument (not JSON, or nested deeper than ' + MAX_PACKUMENT_DEPTH + ' levels). Tell its admins.');
  }
  if (!doc.versions || typeof doc.versions !== 'object' || Array.isArray(doc.versions)) doc.versions = {};
  if (!doc['dist-tags'] || typeof doc['dist-tags'] !== 'object') doc['dist-tags'] = {};
  if (!doc.time || typeof doc.time !== 'object') doc.time = {};
  return { ...doc, name } as PackageDoc;
}

/** Refuses (403) the tarball `file` of `name` when the policy holds its version back; 404 when the upstream has no such version. */
async function assertTarballAllowed(host: ElsewhereHost, registry: string, name: string, file: string, policy: Policy, missing: string, client?: UpstreamRegistry): Promise<void> {
  const doc = await packumentFrom(host, registry, name, missing, client);
  const held = withheldTarball(name, file, withheldVersions(await judged(host, doc, policy), policy, Date.now()));
  if (held) throw forbidden(held.reason);
  if (!versionOfTarball(doc, file)) throw notFound('No tarball ' + file + ' for "' + name + '" in ' + registry + ': the version does not exist there.');
}

/**
 * The tarball `file` of `name` from where the upstream's packument lists it (`dist.tarball`), when
 * that is not npm's usual path on the upstream; null when it lists it nowhere else. The upstream's
 * token goes with it only when that place is on the upstream's origin (`UpstreamRegistry.request`).
 */
async function tarballWhereListed(host: ElsewhereHost, registry: string, name: string, file: string, missing: string, client: UpstreamRegistry): Promise<UpstreamAnswer | null> {
  const doc = await packumentFrom(host, registry, name, missing, client);
  const version = versionOfTarball(doc, file);
  const listed = version ? doc.versions[version]?.dist?.tarball : undefined;
  if (typeof listed !== 'string' || listed === registry + upstreamPath(name, ['-', file])) return null;
  let target: URL;
  try {
    target = new URL(listed);
  } catch {
    return null;
  }
  try {
    return await client.request(target, { headers: { 'accept-encoding': 'identity' }, signal: AbortSignal.timeout(client.timeoutMs), unencoded: 'the tarball ' + file });
  } catch (err) {
    throw unreachable(target.origin, err);
  }
}

/** Points a packument's (or a version's) tarball URLs at this registry, which streams them through. */
function pointTarballs(baseUrl: string, name: string, doc: Record<string, unknown>): void {
  const point = (manifest: { version?: string; dist?: { tarball?: string } }) => {
    if (manifest && manifest.dist && typeof manifest.version === 'string') manifest.dist.tarball = tarballUrl(baseUrl, name, manifest.version);
  };
  if (doc.versions && typeof doc.versions === 'object') for (const manifest of Object.values(doc.versions)) point(manifest);
  else point(doc);
}

/**
 * Serves a read of `name` (its packument, a version, a tarball) from the registry at `registry`;
 * `missing` is the answer when that registry does not have it either. With `policy`, what it holds
 * back is left out (a packument), refused with its reason (a version or a tarball). `client`: the
 * upstream's client (its token, its time limit, its counts); none for a foreign registry.
 */
export async function proxyRead(host: ElsewhereHost, registry: string, req: Request, res: Response, name: string, rest: string[], missing: string, policy?: Policy, client?: UpstreamRegistry): Promise<void> {
  const isTarball = isTarballPath(rest);
  if (policy) {
    // The full packument decides (its publish times): a packument or a version is served from it, filtered.
    if (isTarball) {
      await assertTarballAllowed(host, registry, name, rest[1], policy, missing, client);
    } else {
      const stored = await packumentFrom(host, registry, name, missing, client);
      const withheld: Map<string, Withheld> = withheldVersions(await judged(host, stored, policy), policy, Date.now());
      const served = withoutWithheld(stored, withheld);
      let body: unknown = served;
      if (rest.length === 1) {
        const manifest = resolveVersion(served, rest[0]);
        const held = withheld.get(rest[0]);
        if (!manifest && held) throw forbidden(held.reason);
        if (!manifest) throw notFound('"' + name + '" has no version or tag "' + rest[0] + '" in ' + registry + '.');
        body = JSON.parse(JSON.stringify(manifest));
      }
      pointTarballs(host.baseUrl, name, body as Record<string, unknown>);
      delete (body as Record<string, unknown>)._attachments;
      res.setHeader('X-Registry-Upstream', registry);
      res.type('application/json').send(JSON.stringify(body));
      return;
    }
  }
  const headers = forwardHeaders(req);
  let response = await ask(host, registry, name, rest, headers, client);
  if (response.status === 404 && isTarball && client) {
    // Not at npm's usual path: where the upstream's packument says it is (GitHub Packages' /download/…).
    response.body.resume();
    response = (await tarballWhereListed(host, registry, name, rest[1], missing, client)) || response;
  }
  if (response.status === 404) {
    response.body.resume();
    throw new HttpError(404, missing);
  }
  if (response.status >= 500) {
    response.body.resume();
    throw new HttpError(UPSTREAM_FAILED, 'The registry ' + registry + ' answered ' + response.status + ' for "' + name + '"; packages already here are still served. Try again later.');
  }
  res.setHeader('X-Registry-Upstream', registry);
  if (isTarball || response.status !== 200) {
    res.status(response.status);
    res.setHeader('content-type', isTarball ? 'application/octet-stream' : 'application/json');
    if (response.length !== null) res.setHeader('content-length', String(response.length));
    if (req.method === 'HEAD' || response.status === 304) {
      response.body.resume();
      res.end();
      return;
    }
    const body = capped(response.body, host.config.upstreamMaxTarballBytes, 'a tarball', 'UPSTREAM_MAX_TARBALL_MB');
    body.on('error', () => res.destroy());
    body.pipe(res);
    return;
  }
  // A packument or a version: its tarball URLs are pointed at this registry, which streams them through.
  const text = await readBounded(host, registry, response);
  const doc = rest.length === 0 ? (parsePackument(registry, name, text) as unknown as Record<string, unknown>) : parseVersion(registry, name, text);
  pointTarballs(host.baseUrl, name, doc);
  res.type('application/json').send(JSON.stringify(doc));
}

function parseVersion(registry: string, name: string, text: Buffer): Record<string, unknown> {
  const doc = upstreamObject(text.toString('utf8'));
  if (doc) return doc;
  throw new HttpError(UPSTREAM_FAILED, 'The registry ' + registry + ' sent something for a version of "' + name + '" that is not a version manifest. Tell its admins.');
}

/** The most bytes of an audit answer accepted, decoded: npm's answers for large projects are a few hundred kilobytes. */
export const AUDIT_MAX_BYTES = 8 * 1024 * 1024;
/** Audit requests relayed to the upstream at once, and how many may wait for their turn (beyond, 503). */
export const AUDITS_AT_ONCE = 4;
export const AUDITS_WAITING = 16;

/** The audit turns of each configuration (of each gateway in this process): one turn each. */
const auditTurns = new WeakMap<Config, Budget>();

function auditTurnsOf(config: Config): Budget {
  let turns = auditTurns.get(config);
  if (!turns) {
    const busy = () => new HttpError(503, 'Too many `npm audit` requests are being relayed to the upstream registry right now; try again in a few seconds.', { 'Retry-After': '5' });
    turns = new Budget(AUDITS_AT_ONCE, { maxWaiting: AUDITS_WAITING, patienceMs: Math.min(config.upstreamTimeoutMs, 30_000), busy });
    auditTurns.set(config, turns);
  }
  return turns;
}

/** The path of npm's bulk advisory request (`npm audit`, npm 7 and later): a body of names and their versions. */
export const BULK_ADVISORIES = '/-/npm/v1/security/advisories/bulk';

/**
 * npm's audit requests relayed to the upstreams, with a clear answer when they cannot help. The bulk
 * advisory request (`{name: [versions]}`) is split by route: each upstream is asked about the names
 * routed to it, with its token, and the answers are merged; names of private scopes and names no
 * upstream is routed are asked of none. The older quick audit (one tree of the whole project) cannot
 * be split, so it is relayed only when one upstream is configured. Anyone may ask (npm audits
 * anonymously), so at most `AUDITS_AT_ONCE` are relayed at a time, a few more wait their turn and the
 * rest are answered 503; an answer beyond `AUDIT_MAX_BYTES` (decoded) is refused with 424 naming the
 * upstream.
 */
export async function postToUpstream(host: Pick<ElsewhereHost, 'config' | 'upstreams'>, path: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const { config, upstreams } = host;
  if (!upstreams.any) {
    // 424 as for a name nobody here has: a 5xx makes npm, yarn and pnpm retry for a minute and more.
    throw new HttpError(UPSTREAM_FAILED, 'This registry has no upstream to ask for security advisories (UPSTREAM_REGISTRY is not set, nor UPSTREAMS); `npm audit` cannot check here.');
  }
  if (path !== BULK_ADVISORIES) {
    if (upstreams.all.length > 1) {
      throw new HttpError(UPSTREAM_FAILED, 'This registry routes packages to several upstreams, and the older quick audit sends the whole project to one: use npm 7 or later, whose `npm audit` asks for advisories in bulk.');
    }
    return auditTurnsOf(config).run(1, () => auditOf(config, upstreams.all[0].registry, path, body));
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('The body of a bulk advisory request is a JSON object of package names, each with the list of its versions.');
  const parts = new Map<UpstreamRegistry, Record<string, unknown>>();
  for (const [name, versions] of Object.entries(body as Record<string, unknown>)) {
    const route = upstreams.upstreamFor(name);
    if (!route) continue;
    const part = parts.get(route.registry) || {};
    part[name] = versions;
    parts.set(route.registry, part);
  }
  if (parts.size === 0) return { status: 200, body: {} };
  return auditTurnsOf(config).run(1, async () => {
    const answers = await Promise.all([...parts].map(([client, part]) => auditOf(config, client, path, part).then((answer) => ({ client, answer }))));
    // One upstream: its answer as it is.
    if (answers.length === 1) return answers[0].answer;
    const merged: Record<string, unknown> = {};
    for (const { client, answer } of answers) {
      if (answer.status !== 200 || !answer.body || typeof answer.body !== 'object' || Array.isArray(answer.body)) {
        throw new HttpError(UPSTREAM_FAILED, 'The upstream registry ' + client.url + ' answered the audit of the packages routed to it with ' + answer.status + '; the audit is incomplete without it. Try again later.');
      }
      // Only what it was asked: an upstream's word on a name routed to another is not taken (it could hide or invent advisories).
      const asked = parts.get(client) || {};
      for (const [name, advisories] of Object.entries(answer.body as Record<string, unknown>)) {
        if (Object.prototype.hasOwnProperty.call(asked, name)) Object.defineProperty(merged, name, { value: advisories, enumerable: true, writable: true, configurable: true });
      }
    }
    return { status: 200, body: merged };
  });
}

/** One audit request to one upstream, its answer parsed. */
async function auditOf(config: Config, client: UpstreamRegistry, path: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const upstream = client.url;
  const max = Math.min(AUDIT_MAX_BYTES, config.upstreamMaxPackumentBytes);
  let answer: { status: number; text: string };
  try {
    answer = await client.post(path, body, max);
  } catch (err) {
    if ((err as { code?: string }).code === 'ETOOLARGE') {
      throw new HttpError(UPSTREAM_FAILED, 'The upstream registry ' + upstream + ' answered the audit with more than ' + max + ' bytes (decoded), which is not an audit report; it was refused. Tell its admins.');
    }
    throw unreachable(upstream, err);
  }
  try {
    return { status: answer.status, body: JSON.parse(answer.text) };
  } catch {
    throw new HttpError(UPSTREAM_FAILED, 'The upstream registry ' + upstream + ' answered the audit with something that is not JSON (' + answer.status + ').');
  }
}
