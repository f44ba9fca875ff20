/**
 * `npm search`: `GET /-/v1/search?text=&size=&from=` over the packages published here and the
 * mirrored ones (a local package hides a mirrored one of the same name), from this gateway's
 * in-memory search index (`core/search.ts`, kept by `gateway/search.ts`). Every term must match (as
 * a prefix, or one edit away); packages rank by where their terms matched, an exact name first.
 * npm's qualifiers narrow a search: `keywords:a,b+c,-d`, `author:`, `maintainer:`, `scope:`,
 * `not:unstable`, `is:unstable`, `boost-exact:false`.
 *
 * Dependents: `GET /-/v1/dependents/<name>?size=&from=` → `{package, total, dependents: [{name,
 * version, description}]}`, the packages (local and mirrored) whose latest version depends on it, in
 * name order, only those the caller may read; the package itself the caller must be able to read.
 */
import { Response, Router } from 'express';
import { queryTerms, SearchEntry, SearchHit } from '../../core/search';
import { Person } from '../../core/types';
import { Context, readPackage } from '../context';
import { policyActive, policyCovers, withoutWithheld } from '../../core/policy';
import { isForeign, isTombstone } from '../../core/packument';
import { isProvisional } from '../../replication/mirror';
import { servedBytes, withheldOf } from '../writes';
import { badRequest, HttpError } from '../errors';
import { parsePackagePath } from '../paths';

const MAX_SIZE = 250;

function asSearchPerson(person: Person | undefined): { username: string; email?: string } | undefined {
  return person ? { username: person.name, email: person.email } : undefined;
}

/**
 * The packages matching every word of `text` that the caller may read (local ones hiding mirrored
 * ones of the same name), best first: `size` of them from `from`, and how many matched in all.
 */
export async function searchPackages(ctx: Context, res: Response, text: string, size: number, from: number): Promise<{ found: SearchHit[]; total: number }> {
  if (!ctx.search) throw new HttpError(503, 'Search is not running on this gateway.');
  const index = await ctx.search.ready();
  const readable = await ctx.access.reader(res);
  const { parts, exactName, filters } = queryTerms(text);
  const { hits, total } = index.query(parts, exactName, readable, from, size, filters);
  return { found: await asServed(ctx, hits), total };
}

/**
 * The hits as clients are served the packages: a mirrored package whose latest version the
 * supply-chain policy holds back shows the version its `latest` falls back to, and one with no
 * version left is not shown. The index keeps the stored documents' summaries (a policy change must
 * not re-index every package); a package's cached served bytes say whether that version is held
 * back, so only those the policy holds something of are read.
 */
async function asServed(ctx: Context, hits: SearchHit[]): Promise<SearchHit[]> {
  const policy = ctx.policy?.current;
  if (!policy || !policyActive(policy)) return hits;
  const served = await Promise.all(hits.map(async (hit) => {
    const { entry } = hit;
    if (!entry.version || !policyCovers(policy, entry.name)) return hit;
    const cached = ctx.cache.get(entry.name);
    if (cached && (!cached.withheld || !cached.withheld.has(entry.version))) return hit;
    const generation = ctx.cache.generation(entry.name);
    const doc = await readPackage(ctx, entry.name).catch(() => null);
    if (!doc || isForeign(doc) || isTombstone(doc)) return hit;
    // Cached as a read of the packument would (the next search, and the install after it, find it).
    if (!cached && !isProvisional(doc)) ctx.cache.set(entry.name, generation, servedBytes(ctx, doc));
    const withheld = withheldOf(ctx, doc);
    if (!withheld.has(entry.version)) return hit;
    const latest = withoutWithheld(doc, withheld)['dist-tags'].latest;
    if (!latest) return null;
    const time = doc.time[latest];
    return { ...hit, entry: { ...entry, version: latest, date: typeof time === 'string' ? time : entry.date } };
  }));
  return served.filter((hit): hit is SearchHit => hit !== null);
}

export async function dependentsOf(ctx: Context, res: Response, name: string, size: number, from: number, options: { wait?: boolean } = {}): Promise<{ dependents: SearchEntry[]; total: number } | null> {
  if (!ctx.search) throw new HttpError(503, 'Search is not running on this gateway.');
  await ctx.access.assertRead(res, name);
  // Of a name with no package, to a caller the org of its scope hides which exist from: as of a private one.
  const hidden = await ctx.access.hidden(res, name);
  if (hidden && !(await readPackage(ctx, name))) throw hidden;
  if (options.wait === false && !ctx.search.loaded) return null;
  const index = await ctx.search.ready();
  const readable = await ctx.access.reader(res);
  const { packages, total } = index.dependentsOf(name, readable, from, size);
  return { dependents: packages, total };
}

export function searchRoutes(ctx: Context): Router {
  const router = Router();

  router.get('/-/v1/search', (req, res, next) => {
    (async () => {
      const text = typeof req.query.text === 'string' ? req.query.text.trim() : '';
      const size = req.query.size === undefined ? 20 : Number(req.query.size);
      const from = req.query.from === undefined ? 0 : Number(req.query.from);
      if (!text) throw badRequest('Give search terms: `npm search <terms>` (query parameter "text").');
      if (!Number.isInteger(size) || size < 1 || size > MAX_SIZE) throw badRequest('"size" must be a whole number from 1 to ' + MAX_SIZE + '.');
      if (!Number.isInteger(from) || from < 0) throw badRequest('"from" must be a whole number of at least 0.');
      const started = Date.now();
      const { found, total } = await searchPackages(ctx, res, text, size, from);
      const objects = found.map(({ entry, rank, exact }) => {
        const score = 1 / (1 + rank);
        return {
          package: {
            name: entry.name,
            scope: entry.name.startsWith('@') ? entry.name.slice(1, entry.name.indexOf('/')) : 'unscoped',
            version: entry.version,
            description: entry.description,
            keywords: entry.keywords,
            date: entry.date,
            links: { npm: ctx.baseUrl + '/' + entry.name },
            // The search API names people by `username`.
            publisher: asSearchPerson(entry.publisher),
            maintainers: entry.maintainers.map(asSearchPerson),
          },
          score: { final: score, detail: { quality: score, popularity: 0, maintenance: 0 } },
          searchScore: exact ? 100000 + score : score,
        };
      });
      res.json({ objects, total, time: new Date(started).toUTCString() });
    })().catch(next);
  });

  router.get('/-/v1/dependents/*', (req, res, next) => {
    (async () => {
      const parsed = parsePackagePath(req.path.slice('/-/v1/dependents'.length));
      if (!parsed || parsed.rest.length) throw badRequest('Name one package: /-/v1/dependents/<name> (a scoped one as @scope/name).');
      const size = req.query.size === undefined ? 20 : Number(req.query.size);
      const from = req.query.from === undefined ? 0 : Number(req.query.from);
      if (!Number.isInteger(size) || size < 1 || size > MAX_SIZE) throw badRequest('"size" must be a whole number from 1 to ' + MAX_SIZE + '.');
      if (!Number.isInteger(from) || from < 0) throw badRequest('"from" must be a whole number of at least 0.');
      const { dependents, total } = (await dependentsOf(ctx, res, parsed.name, size, from)) as { dependents: SearchEntry[]; total: number };
      res.json({ package: parsed.name, total, dependents: dependents.map((entry) => ({ name: entry.name, version: entry.version, description: entry.description })) });
    })().catch(next);
  });

  return router;
}
