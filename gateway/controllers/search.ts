/**
 * `npm search`: `GET /-/v1/search?text=&size=&from=` over the packages published here and the
 * mirrored ones (a local package hides a mirrored one of the same name), from this gateway's
 * in-memory search index (`core/search.ts`, kept by `gateway/search.ts`). Every term must match (as
 * a prefix); packages rank by where their terms matched, an exact name first.
 */
import { Response, Router } from 'express';
import { queryTerms, SearchHit } from '../../core/search';
import { Person } from '../../core/types';
import { Context } from '../context';
import { badRequest, HttpError } from '../errors';

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
  const { parts, exactName } = queryTerms(text);
  const { hits, total } = index.query(parts, exactName, readable, from, size);
  return { found: hits, total };
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

  return router;
}
