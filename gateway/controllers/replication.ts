/**
 * Replication's part of the HTTP API:
 * - `GET /-/replication`: the state of replication from the upstream (any logged-in user);
 * - `GET /-/replicate` and `GET /-/replicate/_changes?since=<seq>&limit=<n>`: this registry's own
 *   change feed, in the public registry's contract (no documents), so that another instance can
 *   follow it. Packages the caller may not read are left out.
 */
import { Router } from 'express';
import { shadowedReason } from '../../couchapp/lib/mirror';
import { requireUser } from '../auth';
import { Context } from '../context';
import { docPath } from '../couch';
import { badRequest, HttpError } from '../errors';

const MAX_LIMIT = 10_000;

export function replicationRoutes(ctx: Context): Router {
  const router = Router();

  router.get('/-/replication', (_req, res, next) => {
    (async () => {
      requireUser(res);
      res.json(await replicationStatus(ctx));
    })().catch(next);
  });

  router.get(['/-/replicate', '/-/replicate/'], (_req, res, next) => {
    (async () => {
      const response = await ctx.couch.adminFetch(docPath(ctx.config.registryDb));
      if (!response.ok) throw new HttpError(502, 'The registry database cannot be read (' + response.status + '). Try again later.');
      const info = (await response.json()) as { update_seq: unknown };
      res.json({ db_name: 'registry', update_seq: info.update_seq });
    })().catch(next);
  });

  router.get('/-/replicate/_changes', (req, res, next) => {
    (async () => {
      const since = req.query.since === undefined ? '0' : String(req.query.since);
      const limit = req.query.limit === undefined ? 1000 : Number(req.query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw badRequest('"limit" must be a whole number from 1 to ' + MAX_LIMIT + '.');
      if (!/^(now|\d+(-[A-Za-z0-9_-]+)?)$/.test(since)) throw badRequest('"since" is not a sequence of this feed; start from 0 or a last_seq it gave.');
      // Design documents and packages the caller may not read are left out; the page is filled up
      // from further changes (up to 10 reads), so that fewer than `limit` results means the feed's end.
      const results: Record<string, unknown>[] = [];
      let position: unknown = since;
      for (let reads = 1; ; reads++) {
        const wanted = limit - results.length;
        const response = await ctx.couch.adminFetch(
          docPath(ctx.config.registryDb) + '/_changes?since=' + encodeURIComponent(String(position)) + '&limit=' + wanted,
        );
        if (response.status === 400) throw badRequest('"since" is not a sequence of this feed; start from 0 or a last_seq it gave.');
        if (!response.ok) throw new HttpError(502, 'The registry database failed to list changes (' + response.status + '). Try again later.');
        const feed = (await response.json()) as { results: { seq: unknown; id: string; changes: { rev: string }[]; deleted?: boolean }[]; last_seq: unknown };
        for (const change of feed.results) {
          if (change.id.startsWith('_')) continue;
          if (!(await ctx.access.mayRead(res, change.id))) continue;
          const entry: Record<string, unknown> = { seq: change.seq, id: change.id, changes: change.changes.map((c) => ({ rev: c.rev })) };
          if (change.deleted) entry.deleted = true;
          results.push(entry);
        }
        position = feed.last_seq;
        if (feed.results.length < wanted || results.length >= limit || reads >= 10) break;
      }
      res.json({ results, last_seq: position });
    })().catch(next);
  });

  return router;
}

/** What `GET /-/replication` answers: pull-through, the feed follower and the native replication. */
export async function replicationStatus(ctx: Context): Promise<Record<string, unknown>> {
  const mirror = ctx.mirror;
  const replication = ctx.replication;
  const refused = new Map<string, string>(mirror ? mirror.stats.refused : []);
  const native = replication?.native ? await replication.native.status() : null;
  if (replication?.native) {
    for (const name of await replication.native.shadowedNames(ctx.registryId)) {
      if (!refused.has(name)) refused.set(name, shadowedReason(name));
    }
  }
  return {
    registry: ctx.registryId,
    upstream: ctx.config.upstreamRegistry || null,
    pullThrough: ctx.config.upstreamRegistry ? ctx.config.upstreamMode : null,
    tarballs: ctx.config.upstreamTarballs,
    privateScopes: ctx.config.replication.privateScopes,
    feed: replication?.follower ? await replication.follower.status() : null,
    couchdb: native,
    packagesWritten: mirror ? mirror.stats.packagesWritten : 0,
    tarballsWritten: mirror ? mirror.stats.tarballsWritten : 0,
    shadowed: [...refused].filter(([, reason]) => reason.startsWith('shadowed')).map(([name]) => name).sort(),
    refused: [...refused].map(([name, reason]) => ({ name, reason })),
    failures: mirror ? mirror.stats.failures : [],
  };
}
