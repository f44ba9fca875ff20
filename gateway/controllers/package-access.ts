/**
 * `npm access` for one package: `set mfa=none|publish|automation` (`POST /-/package/<name>/access`
 * with `publish_requires_tfa` and `automation_token_overrides_tfa`), which its maintainers set and
 * every write of the package then obeys (gateway/second-factor.ts), and `get status`
 * (`GET /-/package/<name>/visibility`: whether anyone may read it, by the access rules). Visibility is
 * the access rules' to decide (an admin edits `_design/access`): `set status=…` is refused, saying so.
 *
 * Staging (npm has no command for it): `GET /-/package/<name>/staging` answers `{"required": bool}`;
 * `PUT /-/package/<name>/staging` with `{"required": true|false}`, by a maintainer with what writes
 * need (their second factor) and never with a `--bypass-2fa` token, makes every new version of the
 * package come through `npm stage publish` and a maintainer's `npm stage approve`: a direct
 * `npm publish` is then refused (gateway/controllers/packages.ts). Stored as `registry_staging` on the
 * package document, not served.
 */
import { Request, Response, Router } from 'express';
import { isTombstone } from '../../core/packument';
import { PackageDoc } from '../../core/types';
import { requireWriter } from '../auth';
import { Context, getPackageDoc, readPackage } from '../context';
import { badRequest, forbidden, HttpError, notFound } from '../errors';
import { decodeSegment } from '../paths';
import { credentialOf, PackageMfa, requireWriteFactor } from '../second-factor';
import { writeWithRetry } from '../writes';

const PATH = /^\/-\/package\/(.+)\/(access|visibility|staging)\/?$/;

/** Why a direct publish of `name` is refused: its maintainers require staging. */
export function stagingRequiredMessage(name: string): string {
  return (
    'The maintainers of "' + name + '" require every version to be staged and approved: run `npm stage publish` instead of `npm publish`, ' +
    'then a maintainer approves it with `npm stage approve <id>` (`npm stage list` shows the ids).'
  );
}

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
    // A package the access rules hide from the caller answers as one that does not exist would.
    await ctx.access.assertRead(res, name);
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

  async function staging(res: Response, name: string): Promise<void> {
    await ctx.access.assertRead(res, name);
    const doc = await readPackage(ctx, name);
    if (!doc || isTombstone(doc)) throw notFound('Package "' + name + '" is not in this registry.');
    res.json({ required: doc.registry_staging === 'required' });
  }

  async function setStaging(req: Request, res: Response, name: string): Promise<void> {
    const user = requireWriter(res, name);
    await ctx.access.assertRead(res, name);
    const body = (req.body || {}) as Record<string, unknown>;
    if (typeof body.required !== 'boolean' || Object.keys(body).length !== 1) throw badRequest('Send {"required": true|false}: whether every version of "' + name + '" must be staged and approved.');
    // CI may stage, only people approve: an automation token changes neither this nor the rule it guards.
    if (credentialOf(res, user).bypass2fa) throw forbidden('A token made with --bypass-2fa (for automation) cannot change whether "' + name + '" requires staging: use your own login.');
    await requireWriteFactor(ctx.accounts, ctx.config, res, user, await packageMfaOf(ctx, name), name);
    await writeWithRetry(ctx, user, name, (existing) => {
      if (!existing || isTombstone(existing)) throw notFound('Package "' + name + '" is not in this registry.');
      const next: PackageDoc = { ...existing };
      if (body.required) next.registry_staging = 'required';
      else delete next.registry_staging;
      return next;
    });
    ctx.log.info({ user: user.name, package: name, staging: body.required ? 'required' : 'optional' }, 'package staging requirement set');
    res.json({ ok: true, required: body.required });
  }

  router.all(PATH, (req, res, next) => {
    const match = PATH.exec(req.path) as RegExpExecArray;
    const name = decodeSegment(match[1]);
    const kind = match[2];
    const run = async () => {
      if (kind === 'visibility' && (req.method === 'GET' || req.method === 'HEAD')) return visibility(res, name);
      if (kind === 'access' && req.method === 'POST') return setAccess(req, res, name);
      if (kind === 'staging' && (req.method === 'GET' || req.method === 'HEAD')) return staging(res, name);
      if (kind === 'staging' && (req.method === 'PUT' || req.method === 'POST')) return setStaging(req, res, name);
      if (kind === 'staging') throw new HttpError(405, 'Use GET on staging, or PUT {"required": true|false}.');
      throw new HttpError(405, kind === 'visibility' ? 'Use GET on visibility.' : 'Use POST on access (npm access set mfa=…).');
    };
    run().catch(next);
  });
  return router;
}
