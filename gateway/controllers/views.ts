/** Read-only views of the registry for the npm CLI (`npm stars` reads `/-/_view/starredByUser`), over both package databases. */
import { Router } from 'express';
import { Context, fromCouch } from '../context';
import { badRequest } from '../errors';

const PUBLIC_VIEWS = ['starredByUser', 'byMaintainer'];

export function viewRoutes(ctx: Context): Router {
  const router = Router();
  router.get('/-/_view/:view', (req, res, next) => {
    (async () => {
      const view = req.params.view;
      if (!PUBLIC_VIEWS.includes(view)) throw badRequest('Unknown view "' + view + '"; available: ' + PUBLIC_VIEWS.join(', ') + '.');
      let key: unknown;
      try {
        key = typeof req.query.key === 'string' ? JSON.parse(req.query.key) : undefined;
      } catch {
        throw badRequest('"key" must be JSON, e.g. key="alice".');
      }
      if (typeof key !== 'string') throw badRequest('Give the user as key="<name>".');
      try {
        // Both package databases; a mirrored package behind a local one of the same name is left out.
        const local = (await ctx.registry.view(view, { key, limit: 10000 })).rows;
        const mirrored = (await ctx.mirrored.view(view, { key, limit: 10000 })).rows;
        const shadowed = await ctx.couch.liveRevs(ctx.config.registryDb, mirrored.map((r) => r.id));
        const rows = [];
        for (const r of [...local, ...mirrored.filter((m) => !shadowed.has(m.id))]) {
          if (await ctx.access.mayRead(res, r.id)) rows.push({ id: r.id, key: r.key, value: r.value });
        }
        res.json({ rows });
      } catch (err) {
        throw fromCouch(err);
      }
    })().catch(next);
  });
  return router;
}
