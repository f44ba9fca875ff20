/**
 * For operators: `GET /-/health` (is this gateway able to serve: CouchDB reachable, design documents
 * current, the access rules valid: 200, or 503 with the reasons; an invalid supply-chain policy, replication not working or the caches off: still 200, with
 * status `degraded` and the reasons, since the registry serves what it holds) and `GET /-/metrics`
 * (Prometheus). `GET /-/ping` stays the bare liveness answer npm uses.
 */
import { timingSafeEqual } from 'crypto';
import { Request, Response, Router } from 'express';
import { DESIGN, designId } from '../../couchapp/design';
import { authenticate, currentUser } from '../auth';
import type { Mirror } from '../../replication/mirror';
import { Context } from '../context';
import { forbidden, HttpError, notFound, unauthorized } from '../errors';

export interface Check {
  ok: boolean;
  /** A failing critical check makes the gateway unhealthy (503); a failing other one makes it degraded (200). */
  critical: boolean;
  detail: string;
}

async function couchCheck(ctx: Context): Promise<Check> {
  try {
    const response = await ctx.couch.adminFetch('/', { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return { ok: response.ok, critical: true, detail: response.ok ? 'reachable' : 'answered ' + response.status };
  } catch (err) {
    return { ok: false, critical: true, detail: 'not reachable at ' + ctx.couch.url.origin + ': ' + ((err as { cause?: { code?: string } }).cause?.code || (err as Error).message) };
  }
}

async function designCheck(ctx: Context): Promise<Check> {
  if (!ctx.designHash) return { ok: true, critical: false, detail: 'not checked' };
  try {
    const stale: string[] = [];
    for (const [db, hash] of [[ctx.registry, ctx.designHash], [ctx.mirrored, ctx.designHash + '-views']] as const) {
      const live = (await db.get(designId(DESIGN.app))) as { build_hash?: string } | null;
      if (!live || live.build_hash !== hash) stale.push(db.name);
    }
    return stale.length ? { ok: false, critical: true, detail: '_design/app is not the one this gateway was built with in ' + stale.join(', ') + ' (another version of the registry pushed its own, or it was changed by hand); restart this gateway to push it again' } : { ok: true, critical: true, detail: 'current' };
  } catch (err) {
    return { ok: false, critical: true, detail: 'cannot be read: ' + (err as Error).message };
  }
}

/** The access rules an admin keeps in `_design/access`: invalid ones make every read fail (critical). */
async function accessRulesCheck(ctx: Context): Promise<Check> {
  try {
    const problem = await ctx.access.problem();
    return problem
      ? { ok: false, critical: true, detail: 'the rules in _design/access of ' + ctx.config.registryDb + ' are invalid (' + problem + '); nobody but admins can read or publish until an admin fixes that document' }
      : { ok: true, critical: true, detail: 'valid' };
  } catch (err) {
    return { ok: false, critical: true, detail: 'cannot be read: ' + (err as Error).message };
  }
}

/** The supply-chain policy (`supply-chain` in `<db>-state`): an invalid one holds back every mirrored package. */
async function policyCheck(ctx: Context): Promise<Check | null> {
  if (!ctx.policy) return null;
  try {
    await ctx.policy.refresh();
  } catch (err) {
    return { ok: false, critical: false, detail: 'cannot be read: ' + (err as Error).message };
  }
  const problem = ctx.policy.current.problem;
  return problem ? { ok: false, critical: false, detail: problem + '; until then no mirrored package is served' } : { ok: true, critical: false, detail: 'valid' };
}

/**
 * Each upstream's advisory endpoint, while the vulnerability policy is on: absent (a registry without
 * the bulk advisory API) or unreachable is degraded, and says what happens to unchecked versions.
 * Upstreams by name only: /-/health is public, and /-/replication has their addresses and errors.
 */
function advisoriesCheck(ctx: Context): Check | null {
  const policy = ctx.policy?.current.advisories;
  const routes = ctx.upstreams ? ctx.upstreams.all.filter((route) => route.mirror) : [];
  if (!policy || !routes.length) return null;
  const meanwhile = policy.unchecked === 'hold' ? 'new mirrored versions are held back until it answers ("unchecked": "hold")' : 'new mirrored versions are served unchecked ("unchecked": "serve")';
  const problems: string[] = [];
  const states: string[] = [];
  for (const route of routes) {
    const status = (route.mirror as Mirror).advisories.status;
    if (status.state === 'absent') problems.push('the upstream "' + route.name + '" has no advisory endpoint; ' + meanwhile);
    else if (status.state === 'unreachable') problems.push('the advisory endpoint of the upstream "' + route.name + '" cannot be asked (since ' + status.lastFailure + '); ' + meanwhile);
    else states.push('"' + route.name + '" ' + (status.state === 'ok' ? 'answering (last ' + status.lastAnswer + ')' : 'not asked yet'));
  }
  return problems.length ? { ok: false, critical: false, detail: problems.join('; ') + '; /-/replication says why' } : { ok: true, critical: false, detail: states.join(', ') };
}

async function replicationCheck(ctx: Context): Promise<Check | null> {
  const { followers = [], native } = ctx.replication || {};
  if (!followers.length && !native && !ctx.sites) return null;
  const problems: string[] = [];
  const states: string[] = [];
  for (const follower of followers) {
    const status = await follower.status();
    // Named by the upstream's name only: /-/health is public, the feeds' addresses may be internal.
    const which = followers.length > 1 ? ' of the upstream "' + follower.upstreamName + '"' : '';
    states.push('feed' + which + ' ' + status.state);
    if (status.state === 'upstream-unreachable') problems.push('the change feed' + which + ' cannot be followed: ' + (status.lastError || 'the upstream is unreachable'));
  }
  if (native) {
    const job = await native.jobState();
    states.push('couchdb ' + job.state);
    if (['crashing', 'failed', 'error', 'missing'].includes(job.state)) problems.push('the CouchDB replication is ' + job.state + (job.error ? ': ' + job.error : ''));
  }
  if (ctx.sites) {
    // Peers by their place in SITE_PEERS: /-/health is public, and their addresses are internal (/-/replication names them).
    (await ctx.sites.states()).forEach((peer, i) => {
      const site = 'site ' + (i + 1) + ' of SITE_PEERS';
      states.push(site + ' ' + peer.state);
      if (peer.state !== 'running' && peer.state !== 'pending') problems.push('the replication from ' + site + ' is ' + peer.state + ' (see /-/replication)');
      if (peer.rulesDiffer) problems.push('the access rules or orgs (_design/access) of ' + site + ' differ from these: a package private at one site may be readable at the other, and a scope an org owns here open there; give every site the same rules and orgs');
    });
  }
  // The registry serves what it holds while replication is down (an upstream outage): degraded, not down.
  return problems.length ? { ok: false, critical: false, detail: problems.join('; ') } : { ok: true, critical: false, detail: states.join(', ') };
}

/**
 * Each upstream as its last request found it: one that did not answer leaves the registry serving what
 * it holds (degraded, not down). Named by their names only: /-/health is public, and their addresses
 * and errors are in /-/replication.
 */
function upstreamsCheck(ctx: Context): Check | null {
  const routes = ctx.upstreams ? ctx.upstreams.all : [];
  if (!routes.length) return null;
  const down = routes.filter((route) => route.registry.stats.reachable === false);
  if (down.length) {
    return {
      ok: false,
      critical: false,
      detail: down.map((route) => 'the upstream "' + route.name + '" did not answer its last request (since ' + route.registry.stats.lastErrorAt + ')').join('; ') + '; what is here is still served, and /-/replication says why',
    };
  }
  return { ok: true, critical: false, detail: routes.map((route) => '"' + route.name + '" ' + (route.registry.stats.reachable === null ? 'not asked yet' : 'answering')).join(', ') };
}

/** What `GET /-/health` answers: `ok`, `degraded` (serving, some part not working) or `unhealthy` (503). */
export type HealthStatus = 'ok' | 'degraded' | 'unhealthy';

/** The health of this gateway: every check, whether it can serve, and whether all of it works. */
export async function health(ctx: Context): Promise<{ healthy: boolean; status: HealthStatus; checks: Record<string, Check> }> {
  const checks: Record<string, Check> = { gateway: { ok: true, critical: true, detail: 'serving' } };
  checks.couchdb = await couchCheck(ctx);
  if (checks.couchdb.ok) {
    checks.design = await designCheck(ctx);
    checks.accessRules = await accessRulesCheck(ctx);
    const policy = await policyCheck(ctx);
    if (policy) checks.supplyChainPolicy = policy;
    const advisories = advisoriesCheck(ctx);
    if (advisories) checks.advisories = advisories;
    const replication = await replicationCheck(ctx);
    if (replication) checks.replication = replication;
  }
  const upstreams = upstreamsCheck(ctx);
  if (upstreams) checks.upstreams = upstreams;
  const live = ctx.cache.enabled;
  checks.caches = { ok: live, critical: false, detail: live ? 'on' : 'off: the databases\' _changes are not followed right now, so every read goes to CouchDB' };
  const healthy = Object.values(checks).every((c) => c.ok || !c.critical);
  const status: HealthStatus = !healthy ? 'unhealthy' : Object.values(checks).every((c) => c.ok) ? 'ok' : 'degraded';
  return { healthy, status, checks };
}

/** Whether `given` is the metrics token, compared in constant time. */
function isMetricsToken(given: string, wanted: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(wanted);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Routes that come before the ordinary authentication (the metrics token is not a user's token). */
export function operationsRoutes(ctx: Context): Router {
  const router = Router();

  router.get('/-/health', (_req, res, next) => {
    health(ctx)
      .then(({ healthy, status, checks }) => {
        // What stops this gateway from serving first, then what does not work while it serves.
        const failing = Object.entries(checks).filter(([, c]) => !c.ok);
        const reasons = [...failing.filter(([, c]) => c.critical), ...failing.filter(([, c]) => !c.critical)].map(([name, c]) => name + ': ' + c.detail);
        res.status(healthy ? 200 : 503).set('Cache-Control', 'no-store').json({ status, reasons, checks });
      })
      .catch(next);
  });

  const userAuth = authenticate(ctx.accounts, ctx.tokens, ctx.config);
  router.get('/-/metrics', (req: Request, res: Response, next) => {
    (async () => {
      const { metrics: access, metricsToken } = ctx.config;
      if (access === 'off') throw notFound('Metrics are off on this registry (METRICS=off).');
      if (access === 'token') {
        const [scheme, value = ''] = String(req.headers.authorization || '').split(' ', 2);
        if (!/^bearer$/i.test(scheme) || !isMetricsToken(value.trim(), metricsToken as string)) {
          throw new HttpError(401, 'Metrics need the metrics token: Authorization: Bearer <METRICS_TOKEN>.', { 'WWW-Authenticate': 'Bearer realm="metrics"' });
        }
      } else {
        await new Promise<void>((resolve, reject) => void userAuth(req, res, (err?: unknown) => (err ? reject(err) : resolve())));
        const user = currentUser(res);
        if (!user) throw unauthorized('Metrics are for admins: log in as a CouchDB admin (Basic auth or a token), or set METRICS=token.');
        if (!user.roles.includes('_admin')) throw forbidden('Metrics are for admins of this registry.');
      }
      res.type('text/plain; version=0.0.4; charset=utf-8').send(await ctx.metrics.render());
    })().catch(next);
  });

  return router;
}
