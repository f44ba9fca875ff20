/**
 * Download counts in the shape of npm's downloads API (api.npmjs.org), from this registry's own
 * tarball downloads (gateway/downloads.ts), for whoever may read the package:
 *
 * - `GET /-/downloads/point/<period>/<name>` → `{downloads, start, end, package}`
 * - `GET /-/downloads/range/<period>/<name>` → `{downloads: [{day, downloads}], start, end, package}`
 * - `GET /-/downloads/versions/<period>/<name>` → `{downloads: {<version>: n}, start, end, package}`
 *
 * `<period>`: `last-day`, `last-week`, `last-month`, `last-year`, `YYYY-MM-DD` or `YYYY-MM-DD:YYYY-MM-DD`
 * (UTC days, ending today: the counts are live). `<name>` may be scoped (`@scope/name` or
 * `@scope%2fname`); point and range take up to 128 unscoped names separated by commas, answered as
 * `{<name>: {...} | null}` (null: no such package, or one the caller may not read), as npm does.
 */
import { Response, Router } from 'express';
import { DownloadCounts, parsePeriod } from '../../core/downloads';
import { packageNameProblem } from '../../core/names';
import { Context, readPackage } from '../context';
import { badRequest, HttpError, notFound } from '../errors';
import { decodeSegment } from '../paths';

/** The most names one bulk request asks for (npm's limit). */
const MAX_BULK = 128;

/** Whether either package database has a document of `name` (the caches and the search index first). */
async function packageExists(ctx: Context, name: string): Promise<boolean> {
  if (ctx.cache.get(name)) return true;
  if (ctx.search && ctx.search.loaded && ctx.search.index.holds(name)) return true;
  return !!(await readPackage(ctx, name));
}

/**
 * `name`'s downloads over `period` (default the last 30 days), per day and per version, when the
 * caller may read the package: throws 401/403 as reading the package would, 404 when there is no such
 * package, 400 for a period that is not one. For the package page: `downloadCounts(ctx, res, name)`.
 */
export async function downloadCounts(ctx: Context, res: Response, name: string, period = 'last-month'): Promise<DownloadCounts> {
  if (!ctx.downloads) throw new HttpError(503, 'Download counts are not kept on this gateway.');
  const days = parsePeriod(period, Date.now());
  if (typeof days === 'string') throw badRequest(days);
  if (packageNameProblem(name, false)) throw notFound('package ' + name + ' not found');
  await ctx.access.assertRead(res, name);
  if (!(await packageExists(ctx, name))) throw await ctx.access.missing(res, name, notFound('package ' + name + ' not found'));
  return ctx.downloads.read(name, days);
}

type Shape = 'point' | 'range' | 'versions';

function shaped(counts: DownloadCounts, shape: Shape): Record<string, unknown> {
  const { start, end } = counts;
  if (shape === 'point') return { downloads: counts.total, start, end, package: counts.package };
  if (shape === 'range') return { downloads: counts.days, start, end, package: counts.package };
  return { downloads: counts.versions, start, end, package: counts.package };
}

export function downloadRoutes(ctx: Context): Router {
  const router = Router();

  router.get(/^\/-\/downloads\/(point|range|versions)\/([^/]+)\/(.+)$/, (req, res, next) => {
    (async () => {
      const params = req.params as unknown as Record<string, string>;
      const shape = params[0] as Shape;
      const period = decodeSegment(params[1]);
      const names = decodeSegment(params[2]);
      const days = parsePeriod(period, Date.now());
      if (typeof days === 'string') throw badRequest(days);
      if (!names.includes(',')) {
        res.json(shaped(await downloadCounts(ctx, res, names, period), shape));
        return;
      }
      const list = [...new Set(names.split(',').filter(Boolean))];
      if (shape === 'versions') throw badRequest('Per-version counts are for one package at a time.');
      if (list.length > MAX_BULK) throw badRequest('Ask for at most ' + MAX_BULK + ' packages at once.');
      if (list.some((name) => name.startsWith('@'))) throw badRequest('Scoped packages are not supported in bulk queries (as on npm): ask for each one alone.');
      // Without a prototype, so that a name such as __proto__ is a key like any other (not dropped).
      const answer: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      for (const name of list) {
        try {
          answer[name] = shaped(await downloadCounts(ctx, res, name, period), shape);
        } catch (err) {
          // Unknown and unreadable alike: nothing to tell about a package the caller may not read.
          if (err instanceof HttpError && [401, 403, 404].includes(err.status)) answer[name] = null;
          else throw err;
        }
      }
      res.json(answer);
    })().catch(next);
  });

  return router;
}
