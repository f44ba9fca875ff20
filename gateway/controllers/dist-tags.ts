/**
 * `npm dist-tag ls/add/rm`: `/-/package/<name>/dist-tags[/<tag>]`. Tags are read as the packument
 * serves them: those that point at a version the supply-chain policy holds back fall back as there.
 */
import { Request, Response, Router } from 'express';
import { distTagProblem } from '../../core/names';
import { PackageDoc } from '../../core/types';
import { requireWriter } from '../auth';
import { requireWriteFactor } from '../second-factor';
import { packageMfaOf } from './package-access';
import { assertReadable, Context, readPackage } from '../context';
import { withheldOf, writeWithRetry } from '../writes';
import { withoutWithheld } from '../../core/policy';
import { badRequest, forbidden, HttpError, notFound } from '../errors';
import { isTombstone } from '../../core/packument';
import { decodeSegment } from '../paths';

const PATH = /^\/-\/package\/(.+)\/dist-tags(?:\/([^/]+))?\/?$/;

export function distTagRoutes(ctx: Context): Router {
  const router = Router();

  async function live(res: Response, name: string): Promise<PackageDoc> {
    const doc = await readPackage(ctx, name);
    if (!doc || isTombstone(doc)) throw await ctx.access.missing(res, name, notFound('Package "' + name + '" is not in this registry.'));
    return doc;
  }

  async function change(res: Response, name: string, edit: (tags: Record<string, string>, doc: PackageDoc) => void): Promise<void> {
    const user = requireWriter(res, name);
    await assertReadable(ctx, res, name);
    await requireWriteFactor(ctx.accounts, ctx.config, res, user, await packageMfaOf(ctx, name), name);
    let tags: Record<string, string> = {};
    await writeWithRetry(ctx, user, name, (doc) => {
      if (!doc || isTombstone(doc)) throw notFound('Package "' + name + '" is not in this registry.');
      tags = { ...doc['dist-tags'] };
      edit(tags, doc);
      return { ...doc, 'dist-tags': tags, time: { ...doc.time, modified: new Date().toISOString() } };
    });
    res.status(201).json({ ok: true, 'dist-tags': tags });
  }

  async function handle(req: Request, res: Response): Promise<void> {
    const match = PATH.exec(req.path) as RegExpExecArray;
    const name = decodeSegment(match[1]);
    const tag = match[2] === undefined ? undefined : decodeSegment(match[2]);
    if (req.method === 'GET' || req.method === 'HEAD') {
      await ctx.access.assertRead(res, name);
      // As the packument is served: a tag never names a version the supply-chain policy holds back.
      const stored = await live(res, name);
      const doc = withoutWithheld(stored, withheldOf(ctx, stored));
      if (tag === undefined) res.json(doc['dist-tags']);
      else if (doc['dist-tags'][tag]) res.json(doc['dist-tags'][tag]);
      else throw notFound('"' + name + '" has no dist-tag "' + tag + '".');
      return;
    }
    if (tag === undefined) throw new HttpError(405, 'Name a tag: /-/package/<name>/dist-tags/<tag>.');
    const problem = distTagProblem(tag);
    if (problem) throw badRequest('Invalid dist-tag "' + tag + '": ' + problem + '.');
    if (req.method === 'PUT' || req.method === 'POST') {
      const version = req.body;
      if (typeof version !== 'string') throw badRequest('The body must be the version as a JSON string, e.g. "1.2.3".');
      await change(res, name, (tags, doc) => {
        if (!doc.versions[version]) throw badRequest('"' + name + '" has no version ' + version + ' to tag.');
        tags[tag] = version;
      });
    } else if (req.method === 'DELETE') {
      if (tag === 'latest') throw forbidden('The "latest" tag cannot be removed; point it at another version instead.');
      await change(res, name, (tags) => {
        if (!tags[tag]) throw notFound('"' + name + '" has no dist-tag "' + tag + '".');
        delete tags[tag];
      });
    } else {
      throw new HttpError(405, 'Use GET, PUT or DELETE on dist-tags.');
    }
  }

  router.all(PATH, (req, res, next) => handle(req, res).catch(next));
  return router;
}
