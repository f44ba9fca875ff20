/**
 * `npm access` for one package: `set mfa=none|publish|automation` (`POST /-/package/<name>/access`
 * with `publish_requires_tfa` and `automation_token_overrides_tfa`), which its maintainers set and
 * every write of the package then obeys (gateway/second-factor.ts), and `get status`
 * (`GET /-/package/<name>/visibility`: whether anyone may read it, by the access rules). Visibility is
 * the access rules' to decide (an admin edits `_design/access`): `set status=…` is refused, saying so.
 */
import { Request, Response, Router } from 'express';
import { isTombstone } from '../../core/packument';
import { PackageDoc } from '../../core/types';
import { requireWriter } from '../auth';
import { Context, getPackageDoc, readPackage } from '../context';
import { badRequest, HttpError, notFound } from '../errors';
import { decodeSegment } from '../paths';
import { PackageMfa, requireWriteFactor } from '../second-factor';
import { writeWithRetry } from '../writes';

const PATH = /^\/-\/package\/(.+)\/(access|visibility)\/?$/;

/** The two-factor requirement the maintainers of the local package `name` set, if any. */
export async function packageMfaOf(ctx: Context, name: string): Promise<PackageMfa> {
  const doc = await getPackageDoc(ctx.registry, name).catch(() => null);
  const mfa = doc ? doc.registry_mfa : undefined;
  return mfa === 'publish' || mfa === 'automation' ? mfa : undefined;
}

export function packageAccessRoutes(ctx: Context): Router {
  const router = Router();

  async function visibility(res: Response, name: string): Promise<void> {
    await ctx.access.assertRead(res, name);
    const doc = await readPackage(ctx, name);
    if (!doc || isTombstone(doc)) throw notFound('Package "' + name + '" is not in this registry.');
    res.json({ public: await ctx.access.anyoneMayRead(name) });
  }

  async function setAccess(req: Request, res: Response, name: string): Promise<void> {
    const user = requireWriter(res, name);
    const body = (req.body || {}) as Record<string, unknown>;
    if (body.access !== undefined) {
      throw badRequest('Who may read "' + name + '" is decided by this registry\'s access rules (_design/access), not per package: ask an admin.');
    }
    if (typeof body.publish_requires_tfa !== 'boolean') throw badRequest('Send {"publish_requires_tfa": true|false, "automation_token_overrides_tfa": true|false} (npm access set mfa=none|publish|automation).');
    const mfa: PackageMfa = !body.publish_requires_tfa ? undefined : body.automation_token_overrides_tfa === true ? 'automation' : 'publish';
    // Changing the requirement is a write like any other: it needs what writes need now.
    await requireWriteFactor(ctx.accounts, ctx.config, res, user, await packageMfaOf(ctx, name), name);
    await writeWithRetry(ctx, user, name, (existing) => {
      if (!existing || isTombstone(existing)) throw notFound('Package "' + name + '" is not in this registry.');
      const next: PackageDoc = { ...existing };
      if (mfa) next.registry_mfa = mfa;
      else delete next.registry_mfa;
      return next;
    });
    ctx.log.info({ user: user.name, package: name, mfa: mfa || 'none' }, 'package two-factor requirement set');
    res.json({ ok: true });
  }

  router.all(PATH, (req, res, next) => {
    const match = PATH.exec(req.path) as RegExpExecArray;
    const name = decodeSegment(match[1]);
    const kind = match[2];
    const run = async () => {
      if (kind === 'visibility' && (req.method === 'GET' || req.method === 'HEAD')) return visibility(res, name);
      if (kind === 'access' && req.method === 'POST') return setAccess(req, res, name);
      throw new HttpError(405, kind === 'visibility' ? 'Use GET on visibility.' : 'Use POST on access (npm access set mfa=…).');
    };
    run().catch(next);
  });
  return router;
}
