/**
 * Replication's part of the HTTP API:
 * - `GET /-/replication`: the state of replication from the upstreams, each upstream with its
 *   patterns, mode and health (any logged-in user);
 * - `GET /-/replicate` and `GET /-/replicate/_changes?since=<seq>&limit=<n>`: this registry's own
 *   change feed, in the public registry's contract (no documents), so that another instance can
 *   follow it. Packages the caller may not read are left out.
 */
import { Response, Router } from 'express';
import { shadowedReason } from '../../core/provenance';
import { requireUser } from '../auth';
import { Context } from '../context';
import { docPath } from '../../couchdb/client';
import type { Mirror, Refusal } from '../../replication/mirror';
import type { UpstreamRoute } from '../../replication/routes';
import { shadowedNames } from '../../replication/couchdb';
import { refusedPublishes } from '../resolver';
import { patternMatches } from '../../core/access';
import { NO_POLICY } from '../../core/policy';
import { licenseException, LicensePolicy, licenseVerdict } from '../../core/licenses';
import { badRequest, HttpError } from '../errors';
import { heldByAdvisories, HeldByAdvisory } from '../advisories';

const MAX_LIMIT = 10_000;

/**
 * The feed's sequences are opaque to its followers. Each one holds a position in both package
 * databases: `<sum of their numbers>-<base64url JSON [local, mirror]>`; the leading number keeps the
 * follower's lag figures meaningful (it grows with every change of either database). A plain CouchDB sequence (from before the mirror database) is
 * read as a position in the local database.
 */
export function feedSeq(local: unknown, mirror: unknown): string {
  const number = (seq: unknown) => Number(/^\d+/.exec(String(seq))?.[0] || 0);
  return number(local) + number(mirror) + '-' + Buffer.from(JSON.stringify([local, mirror])).toString('base64url');
}

export function parseFeedSeq(since: string): [unknown, unknown] | null {
  if (since === 'now') return ['now', 'now'];
  if (!/^\d+(-[A-Za-z0-9_-]+)?$/.test(since)) return null;
  const encoded = since.slice(since.indexOf('-') + 1);
  if (since.includes('-')) {
    try {
      const pair = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
      if (Array.isArray(pair) && pair.length === 2) return [pair[0], pair[1]];
    } catch {
      /* a CouchDB sequence */
    }
  }
  return [since, 0];
}

async function databaseSeq(ctx: Context, db: string): Promise<unknown> {
  const response = await ctx.couch.adminFetch(docPath(db));
  if (!response.ok) throw new HttpError(502, 'The registry database cannot be read (' + response.status + '). Try again later.');
  return ((await response.json()) as { update_seq: unknown }).update_seq;
}

/**
 * Appends up to `limit` changes of `db` after `since` to `results` and returns the position reached.
 * Design documents and packages the caller may not read are left out, and so are mirrored packages
 * that a local one shadows; the page is filled up from further changes (up to 10 reads), so that
 * fewer than `limit` results means the feed's end.
 */
async function changesPage(ctx: Context, res: Response, db: string, since: unknown, otherSeq: unknown, limit: number, results: Record<string, unknown>[]): Promise<unknown> {
  const isMirror = db === ctx.config.mirrorDb;
  let position = since;
  let added = 0;
  for (let reads = 1; ; reads++) {
    const wanted = limit - added;
    const response = await ctx.couch.adminFetch(docPath(db) + '/_changes?since=' + encodeURIComponent(String(position)) + '&limit=' + wanted);
    if (response.status === 400) throw badRequest('"since" is not a sequence of this feed; start from 0 or a last_seq it gave.');
    if (!response.ok) throw new HttpError(502, 'The registry database failed to list changes (' + response.status + '). Try again later.');
    const feed = (await response.json()) as { results: { seq: unknown; id: string; changes: { rev: string }[]; deleted?: boolean }[]; last_seq: unknown };
    const ids = feed.results.map((change) => change.id).filter((id) => !id.startsWith('_'));
    // A mirrored package behind a local one, or a local document gone while a mirrored copy serves the name.
    const other = await ctx.couch.liveRevs(isMirror ? ctx.config.registryDb : ctx.config.mirrorDb, ids);
    for (const change of feed.results) {
      if (change.id.startsWith('_')) continue;
      if (isMirror && other.has(change.id)) continue;
      if (!(await ctx.access.mayRead(res, change.id))) continue;
      const entry: Record<string, unknown> = { seq: isMirror ? feedSeq(otherSeq, change.seq) : feedSeq(change.seq, otherSeq), id: change.id, changes: change.changes.map((c) => ({ rev: c.rev })) };
      if (change.deleted && !(!isMirror && other.has(change.id))) entry.deleted = true;
      results.push(entry);
      added++;
    }
    position = feed.last_seq;
    if (feed.results.length < wanted || added >= limit || reads >= 10) return position;
  }
}

export function replicationRoutes(ctx: Context): Router {
  const router = Router();

  router.get('/-/replication', (_req, res, next) => {
    (async () => {
      requireUser(res);
      res.json(await replicationStatus(ctx, (name) => ctx.access.mayRead(res, name)));
    })().catch(next);
  });

  router.get(['/-/replicate', '/-/replicate/'], (_req, res, next) => {
    (async () => {
      const [local, mirror] = await Promise.all([databaseSeq(ctx, ctx.config.registryDb), databaseSeq(ctx, ctx.config.mirrorDb)]);
      res.json({ db_name: 'registry', update_seq: feedSeq(local, mirror) });
    })().catch(next);
  });

  router.get('/-/replicate/_changes', (req, res, next) => {
    (async () => {
      const limit = req.query.limit === undefined ? 1000 : Number(req.query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw badRequest('"limit" must be a whole number from 1 to ' + MAX_LIMIT + '.');
      const since = parseFeedSeq(req.query.since === undefined ? '0' : String(req.query.since));
      if (!since) throw badRequest('"since" is not a sequence of this feed; start from 0 or a last_seq it gave.');
      if (since[0] === 'now') since[0] = await databaseSeq(ctx, ctx.config.registryDb);
      if (since[1] === 'now') since[1] = await databaseSeq(ctx, ctx.config.mirrorDb);
      // Packages published here first, then the mirrored ones, each database from its own position.
      const results: Record<string, unknown>[] = [];
      const local = await changesPage(ctx, res, ctx.config.registryDb, since[0], since[1], limit, results);
      const mirror = results.length < limit ? await changesPage(ctx, res, ctx.config.mirrorDb, since[1], local, limit - results.length, results) : since[1];
      res.json({ results, last_seq: feedSeq(local, mirror) });
    })().catch(next);
  });

  return router;
}

/**
 * What `GET /-/replication` answers: pull-through, the feed follower and the native replication.
 * Packages named in it (refused publishes, shadowed and refused names) are those the caller may read
 * (`mayRead`): the status names no package the access rules hide from them.
 */
export async function replicationStatus(ctx: Context, mayRead: (name: string) => Promise<boolean>): Promise<Record<string, unknown>> {
  const readable = async <T>(items: T[], nameOf: (item: T) => string): Promise<T[]> => {
    const kept: T[] = [];
    for (const item of items) if (await mayRead(nameOf(item))) kept.push(item);
    return kept;
  };
  const routes = ctx.upstreams.all;
  const mirrors = routes.flatMap((route) => (route.mirror ? [route.mirror] : []));
  // What pull-through served and still holds is stored first: the status counts and reads it.
  await Promise.all(mirrors.map((mirror) => mirror.storeNow()));
  const replication = ctx.replication;
  const refused = new Map<string, Refusal>(mirrors.flatMap((mirror) => [...mirror.stats.refused]));
  const native = replication?.native ? await replication.native.status() : null;
  if (replication?.native) {
    for (const name of await shadowedNames(ctx.couch, { local: ctx.config.registryDb, mirror: ctx.config.mirrorDb }, ctx.origins)) {
      if (!refused.has(name)) refused.set(name, { kind: 'shadowed', reason: shadowedReason(name) });
    }
  }
  const upstreams = await Promise.all(routes.map((route) => upstreamStatus(route)));
  // The upstream of every name (or the only one), and the first feed: as this status said with one upstream.
  const main = ctx.upstreams.catchAll || routes[0];
  const sum = (count: (mirror: NonNullable<UpstreamRoute['mirror']>) => number) => mirrors.reduce((total, mirror) => total + count(mirror), 0);
  return {
    registry: ctx.registryId,
    upstream: main ? main.url : null,
    pullThrough: main ? main.mode : null,
    tarballs: ctx.config.upstreamTarballs,
    privateScopes: ctx.config.replication.privateScopes,
    upstreams,
    feed: upstreams.find((upstream) => upstream.feed)?.feed || null,
    couchdb: native,
    sites: ctx.sites ? { origins: ctx.origins, peers: await ctx.sites.status() } : null,
    // Publishes the merge of conflicting revisions refused (the same version published twice with other bytes).
    refusedPublishes: await readable(await refusedPublishes(ctx.couch, ctx.config.stateDb).catch(() => []), (refusal) => refusal.name),
    packagesWritten: sum((mirror) => mirror.stats.packagesWritten),
    tarballsWritten: sum((mirror) => mirror.stats.tarballsWritten),
    shadowed: await readable([...refused].filter(([, refusal]) => refusal.kind === 'shadowed').map(([name]) => name).sort(), (name) => name),
    refused: await readable([...refused].map(([name, refusal]) => ({ name, kind: refusal.kind, reason: refusal.reason })), (refusal) => refusal.name),
    failures: await readable(
      mirrors.flatMap((mirror) => mirror.stats.failures).sort((a, b) => a.at.localeCompare(b.at)).slice(-50),
      (failure) => failure.name,
    ),
    supplyChain: await supplyChainStatus(ctx, (items) => readable(items, (item) => item.name), mayRead),
  };
}

/**
 * One upstream as the status shows it: its URL (configured without credentials), mode, patterns and
 * time limit, whether a token is sent to it and where it comes from (never the token), whether it
 * answered lately (the last error), its requests and failures, and its feed's position.
 */
async function upstreamStatus(route: UpstreamRoute): Promise<Record<string, any>> {
  const stats = route.registry.stats;
  return {
    name: route.name,
    url: route.url,
    mode: route.mode,
    patterns: route.patterns,
    timeoutMs: route.config.timeoutMs,
    token: route.config.tokenFrom || null,
    reachable: stats.reachable,
    lastError: stats.lastError,
    lastErrorAt: stats.lastErrorAt,
    lastOkAt: stats.lastOkAt,
    requests: stats.requests,
    failures: stats.failures,
    packagesWritten: route.mirror ? route.mirror.stats.packagesWritten : 0,
    tarballsWritten: route.mirror ? route.mirror.stats.tarballsWritten : 0,
    // Copies compared with it when read: 304, the same bytes again (nothing written), changed.
    revalidations: route.mirror ? { ...route.mirror.stats.revalidations } : null,
    feed: route.follower ? await route.follower.status() : null,
  };
}

/**
 * The supply-chain policy in force: the cooldown and the mirrored versions it holds back now, with
 * when each becomes available (at most 1,000, newest first), the blocks, and the license policy with
 * the mirrored versions it holds back.
 */
async function supplyChainStatus(ctx: Context, readable: <T extends { name: string }>(items: T[]) => Promise<T[]>, mayRead: (name: string) => Promise<boolean>): Promise<Record<string, unknown>> {
  const policy = ctx.policy?.current || NO_POLICY;
  const heldBack: { name: string; version: string; publishedAt: string; availableAt: string }[] = [];
  if (policy.minAgeMs > 0) {
    const since = new Date(Date.now() - policy.minAgeMs).toISOString();
    const rows = (await ctx.mirrored.view<string>('versionsByTime', { startkey: '\ufff0', endkey: since, descending: true, limit: 1000 })).rows;
    for (const row of rows) {
      if (policy.exceptions.some((pattern) => patternMatches(pattern, row.id))) continue;
      heldBack.push({ name: row.id, version: row.value, publishedAt: String(row.key), availableAt: new Date(Date.parse(String(row.key)) + policy.minAgeMs).toISOString() });
    }
  }
  return {
    minAgeSeconds: Math.round(policy.minAgeMs / 1000),
    cooldownExceptions: policy.exceptions,
    // Only what the caller may read is named.
    heldBack: await readable(heldBack),
    blocked: policy.blocked,
    licenses: policy.licenses ? { policy: policy.licenses, heldBack: await readable(await licenseHolds(ctx, policy.licenses)) } : null,
    advisories: await advisoriesStatus(ctx, mayRead),
  };
}

/** Most versions held back by the license policy listed in the status. */
const LICENSE_HOLDS_LISTED = 1000;
/**
 * Most distinct licenses not allowed whose versions are listed, and how many of their queries run at
 * once: each is a query of the view, and an upstream can publish a license of its own for every
 * version (a status read made a thousand queries one after the other, for ten seconds and more).
 */
const LICENSE_GROUPS_LISTED = 100;
const LICENSE_QUERIES_AT_ONCE = 8;

/**
 * The mirrored versions the license policy holds back, with their license and why (at most
 * `LICENSE_HOLDS_LISTED`, of at most `LICENSE_GROUPS_LISTED` licenses): each distinct license is judged
 * once (`versionsByLicense`, grouped), and the versions of those not allowed are listed.
 */
async function licenseHolds(ctx: Context, licenses: LicensePolicy): Promise<{ name: string; version: string; license: string | null; reason: string }[]> {
  const held: { name: string; version: string; license: string | null; reason: string }[] = [];
  const groups = (await ctx.mirrored.view<number>('versionsByLicense', { group_level: 1 })).rows;
  const notAllowed: { license: string | null; why: string }[] = [];
  for (const group of groups) {
    const license = (group.key as string[])[0] || null;
    const verdict = licenseVerdict(licenses, license);
    if (!verdict.ok) notAllowed.push({ license, why: verdict.why });
    if (notAllowed.length >= LICENSE_GROUPS_LISTED) break;
  }
  for (let at = 0; at < notAllowed.length && held.length < LICENSE_HOLDS_LISTED; at += LICENSE_QUERIES_AT_ONCE) {
    const batch = notAllowed.slice(at, at + LICENSE_QUERIES_AT_ONCE);
    const answers = await Promise.all(
      batch.map(({ license }) => ctx.mirrored.view<null>('versionsByLicense', { startkey: [license || ''], endkey: [license || '', {}], reduce: false, limit: LICENSE_HOLDS_LISTED })),
    );
    answers.forEach((answer, i) => {
      for (const row of answer.rows) {
        const version = (row.key as string[])[1];
        if (held.length < LICENSE_HOLDS_LISTED && !licenseException(licenses, row.id, version)) held.push({ name: row.id, version, license: batch[i].license, reason: batch[i].why });
      }
    });
  }
  return held;
}

/**
 * The vulnerability policy in force (null when off): its settings, the upstream's advisory endpoint
 * (its state, and what happens while it cannot answer), the last periodic check, and the mirrored
 * versions an advisory holds back now (those the caller may read, at most 1,000), each with it.
 */
async function advisoriesStatus(ctx: Context, mayRead: (name: string) => Promise<boolean>): Promise<Record<string, unknown> | null> {
  const policy = ctx.policy?.current.advisories;
  if (!policy) return null;
  // Only what the caller may read, filtered before the list is cut.
  const heldBack: HeldByAdvisory[] = await heldByAdvisories(ctx, policy, mayRead).catch(() => []);
  return {
    severity: policy.severity,
    unchecked: policy.unchecked,
    exceptions: policy.exceptions,
    // Each upstream's advisory endpoint, and its periodic check's last pass.
    endpoints: await Promise.all(ctx.upstreams.all.filter((route) => route.mirror).map(async (route, i) => ({
      upstream: route.name,
      ...(route.mirror as Mirror).advisories.status,
      lastCheck: ctx.replication?.advisories[i] ? await ctx.replication.advisories[i].lastPass() : null,
    }))),
    whenUnavailable: policy.unchecked === 'hold'
      ? 'versions the advisory endpoint has not answered for are held back until it does'
      : 'versions the advisory endpoint has not answered for are served unchecked',
    heldBack,
  };
}
