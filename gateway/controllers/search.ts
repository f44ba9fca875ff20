/**
 * `npm search`: `GET /-/v1/search?text=&size=&from=` over the packages published here and the
 * mirrored ones (a local package hides a mirrored one of the same name), from the couchapp's `search`
 * view of each database (terms of names, keywords and descriptions). Every term must match (as a prefix);
 * packages rank by where their terms matched, an exact name first.
 */
import { Response, Router } from 'express';
import { terms } from '../../core/search';
import { PackageDoc, Person } from '../../core/types';
import { Database } from '../../couchdb/client';
import { Context, fromCouch } from '../context';
import { badRequest } from '../errors';

const MAX_SIZE = 250;

function asSearchPerson(person: Person | undefined): { username: string; email?: string } | undefined {
  return person ? { username: person.name, email: person.email } : undefined;
}

interface Hit {
  name: string;
  /** Sum over the query terms of the best rank each matched with (0 best). */
  rank: number;
  exact: boolean;
}

/** The packages of one database matching every search word (as a prefix of a term), with their rank. */
async function matching(db: Database<PackageDoc>, wanted: string[], exactName: string | null): Promise<Map<string, Hit>> {
  let hits: Map<string, Hit> | null = null;
  for (const word of wanted) {
    const parts = word.startsWith('@') || word.includes('/') ? [word] : terms(word).length ? terms(word) : [word];
    for (const term of parts) {
      let rows;
      try {
        rows = (await db.view<number>('search', { startkey: term, endkey: term + '\ufff0', limit: 5000 })).rows;
      } catch (err) {
        throw fromCouch(err);
      }
      const best = new Map<string, number>();
      for (const row of rows) {
        const rank = (row.value as number) + (row.key === term ? 0 : 0.5);
        if (!best.has(row.id) || (best.get(row.id) as number) > rank) best.set(row.id, rank);
      }
      const next = new Map<string, Hit>();
      for (const [id, rank] of best) {
        const previous: Hit | undefined = hits ? hits.get(id) : { name: id, rank: 0, exact: false };
        if (previous) next.set(id, { name: id, rank: previous.rank + rank, exact: id === exactName });
      }
      hits = next;
    }
  }
  return hits || new Map();
}

/** A package found by a search: its document and how well it matched. */
export interface Found {
  doc: PackageDoc;
  rank: number;
  exact: boolean;
}

/**
 * The packages matching every word of `text` that the caller may read (local ones hiding mirrored
 * ones of the same name), best first: `size` of them from `from`, and how many matched in all.
 */
export async function searchPackages(ctx: Context, res: Response, text: string, size: number, from: number): Promise<{ found: Found[]; total: number }> {
  const wanted = text.toLowerCase().split(/\s+/).filter(Boolean).slice(0, 10);
  const exactName = wanted.length === 1 ? wanted[0] : null;
  const local = await matching(ctx.registry, wanted, exactName);
  const mirrored = await matching(ctx.mirrored, wanted, exactName);
  // A mirrored package behind a local one of the same name is not found: the local one is.
  for (const name of (await ctx.couch.liveRevs(ctx.config.registryDb, [...mirrored.keys()])).keys()) mirrored.delete(name);
  const visible: Hit[] = [];
  for (const hit of [...local.values(), ...mirrored.values()]) if (await ctx.access.mayRead(res, hit.name)) visible.push(hit);
  const ranked = visible.sort((a, b) => Number(b.exact) - Number(a.exact) || a.rank - b.rank || a.name.localeCompare(b.name));
  const page = ranked.slice(from, from + size);
  const docs = new Map<string, PackageDoc>();
  for (const db of [ctx.registry, ctx.mirrored]) {
    const keys = page.map((h) => h.name).filter((name) => !docs.has(name));
    if (keys.length === 0) break;
    for (const [name, doc] of await db.getMany(keys)) docs.set(name, doc);
  }
  const found: Found[] = [];
  for (const hit of page) {
    const doc = docs.get(hit.name);
    if (doc) found.push({ doc, rank: hit.rank, exact: hit.exact });
  }
  return { found, total: ranked.length };
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
      const objects = found.map(({ doc, rank, exact }) => {
        const latest = doc.versions[doc['dist-tags'].latest] || {};
        const score = 1 / (1 + rank);
        return {
          package: {
            name: doc.name,
            scope: doc.name.startsWith('@') ? doc.name.slice(1, doc.name.indexOf('/')) : 'unscoped',
            version: doc['dist-tags'].latest,
            description: doc.description,
            keywords: doc.keywords,
            date: doc.time.modified,
            links: { npm: ctx.baseUrl + '/' + doc.name },
            // The search API names people by `username`.
            publisher: asSearchPerson((latest as { _npmUser?: Person })._npmUser),
            maintainers: (doc.maintainers || []).map(asSearchPerson),
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
