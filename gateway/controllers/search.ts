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
import { policyActive, policyCovers } from '../../core/policy';
import { isForeign, isTombstone } from '../../core/packument';
import { isProvisional } from '../../replication/mirror';
import { servedBytes } from '../writes';
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
  return { found: hits, total };
}

/**
 * The packages whose latest version depends on `name` (dependencies, optional or peer ones) that the
 * caller may read, in name order: `size` of them from `from`, and how many in all. Throws 401/403 when
 * the caller may not read `name` itself. While the search index loads it waits (up to 15 s, then 503),
 * or with `wait: false` answers null at once. For the package page:
 * `await dependentsOf(ctx, res, name, 20, 0, { wait: false })`.
 */
export async function dependentsOf(ctx: Context, res: Response, name: string, size: number, from: number, options: { wait?: boolean } = {}): Promise<{ dependents: SearchEntry[]; total: number } | null> {
  if (!ctx.search) throw new HttpError(503, 'Search is not running on this gateway.');
  await ctx.access.assertRead(res, name);
  if (options.wait === false && !ctx.search.loaded) return null;
  const index = await ctx.search.ready();
  const readable = await ctx.access.reader(res);
  const { packages, total } = index.dependentsOf(name, readable, from, size);
  return { dependents: packages, total };
}

/**
 * The version a hit names as clients are served it: the latest, unless the supply-chain policy holds
 * it back (a mirrored package's new version in the cooldown, blocked, or with an advisory): then the
 * version `latest` falls back to, as in the packument. Read from the packument cache (or once from
 * CouchDB, then cached) only for names the policy covers.
 */
async function servedVersion(ctx: Context, name: string, version: string): Promise<string> {
  const policy = ctx.policy?.current;
  if (!version || !policy || !policyActive(policy) || !policyCovers(policy, name)) return version;
  let entry = ctx.cache.get(name);
  if (!entry) {
    const generation = ctx.cache.generation(name);
    const doc = await readPackage(ctx, name).catch(() => null);
    if (!doc || isForeign(doc) || isTombstone(doc) || isProvisional(doc)) return version;
    entry = servedBytes(ctx, doc);
    ctx.cache.set(name, generation, entry);
  }
  if (!entry.withheld || !entry.withheld.has(version)) return version;
  const tags = (JSON.parse(entry.abbreviated.toString('utf8')) as { 'dist-tags'?: Record<string, string> })['dist-tags'] || {};
  return tags.latest || '';
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
      const versions = await Promise.all(found.map(({ entry }) => servedVersion(ctx, entry.name, entry.version)));
      const objects = found.map(({ entry, rank, exact }, i) => {
        const score = 1 / (1 + rank);
        return {
          package: {
            name: entry.name,
            scope: entry.name.startsWith('@') ? entry.name.slice(1, entry.name.indexOf('/')) : 'unscoped',
            version: versions[i],
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
