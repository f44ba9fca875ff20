/**
 * `npm access` for one package: `set mfa=none|publish|automation` (`POST /-/package/<name>/access`
 * with `publish_requires_tfa` and `automation_token_overrides_tfa`), which its maintainers set and
 * every write of the package then obeys (gateway/second-factor.ts), and `get status`
 * (`GET /-/package/<name>/visibility`: whether anyone may read it, by the access rules and its org).
 * `set status=private|public` (`{"access": "restricted"|"public"}`) is for a package in the scope of
 * an org (core/orgs.ts), by the org's owners and admins or a maintainer of the package who is a
 * member: a private package is read by the org's members only. Other packages' visibility is the
 * access rules' to decide (an admin edits `_design/access`), and is refused, saying so.
 * `npm access list collaborators` (`GET /-/package/<name>/collaborators`): its maintainers, the org's
 * owners and admins (`read-write`) and the members of the teams granted it; the org's members are
 * listed only to its members (and server admins), others see the maintainers.
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
import { AuthenticatedUser, requireUser, requireWriter } from '../auth';
import { managesTeams, orgOf, Permission, roleIn, scopeOf, teamGrant } from '../../core/orgs';
import { maintainerNames } from '../../core/rules';
import { OrgStore } from '../orgs';
import { assertReadable, Context, getPackageDoc, readPackage } from '../context';
import { badRequest, forbidden, HttpError, notFound } from '../errors';
import { decodeSegment } from '../paths';
import { credentialOf, PackageMfa, requireWriteFactor } from '../second-factor';
import { writeWithRetry } from '../writes';

const PATH = /^\/-\/package\/(.+)\/(access|visibility|staging|collaborators)\/?$/;

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
    if (!doc || isTombstone(doc)) throw await ctx.access.missing(res, name, notFound('Package "' + name + '" is not in this registry.'));
    res.json({ public: await ctx.access.anyoneMayRead(name) });
  }

  async function setAccess(req: Request, res: Response, name: string): Promise<void> {
    const user = requireWriter(res, name);
    // A package the access rules hide from the caller answers as one that does not exist would.
    await assertReadable(ctx, res, name);
    const body = (req.body || {}) as Record<string, unknown>;
    if (body.access !== undefined) return setStatus(res, user, name, body.access);
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

  /** `npm access set status=private|public`: for a package of an org's scope. */
  async function setStatus(res: Response, user: AuthenticatedUser, name: string, access: unknown): Promise<void> {
    if (access !== 'restricted' && access !== 'private' && access !== 'public') throw badRequest('Send {"access": "public"|"restricted"} (npm access set status=public|private).');
    const orgName = scopeOf(name);
    const orgs = await new OrgStore(ctx.registry, ctx.access).current();
    if (!orgName || !Object.prototype.hasOwnProperty.call(orgs, orgName)) {
      throw badRequest('Who may read "' + name + '" is decided by this registry\'s access rules (_design/access): `npm access set status` is for packages in the scope of an org (`npm org`). Ask an admin.');
    }
    const doc = await getPackageDoc(ctx.registry, name);
    if (!doc || isTombstone(doc)) throw notFound('Package "' + name + '" is not in this registry.');
    const maintainer = maintainerNames(doc).includes(user.name);
    await requireWriteFactor(ctx.accounts, ctx.config, res, user, await packageMfaOf(ctx, name), name);
    await new OrgStore(ctx.registry, ctx.access).change((fresh) => {
      const org = fresh[orgName];
      if (!org) throw notFound('No org @' + orgName + ' on this registry.');
      const admin = user.roles.includes('_admin');
      if (!admin && !managesTeams(org, user) && !(maintainer && roleIn(org, user.name))) {
        throw forbidden('Only the owners and admins of @' + orgName + ', and maintainers of "' + name + '" who are its members, set its status.');
      }
      org.packages = org.packages || {};
      const entry = (org.packages[name] = org.packages[name] || {});
      if (access === 'public') delete entry.status;
      else entry.status = 'private';
      if (!Object.keys(entry).length) delete org.packages[name];
    });
    // Cached answers of its packument and tarballs were made for whom could read them before.
    ctx.cache.invalidate(name);
    ctx.tarballs.invalidate(name);
    ctx.log.info({ user: user.name, package: name, status: access === 'public' ? 'public' : 'private' }, 'package status set');
    res.json({ ok: true });
  }

  async function collaborators(res: Response, name: string): Promise<void> {
    const user = requireUser(res);
    await ctx.access.assertRead(res, name);
    const doc = await readPackage(ctx, name);
    if (!doc || isTombstone(doc)) throw await ctx.access.missing(res, name, notFound('Package "' + name + '" is not in this registry.'));
    const list: Record<string, Permission> = {};
    const org = orgOf(await new OrgStore(ctx.registry, ctx.access).current(), name);
    // The org's members and their grants are for its members (and server admins) to see, as `npm org ls` and `npm team ls` are.
    if (org && (user.roles.includes('_admin') || roleIn(org, user.name))) {
      for (const member of Object.keys(org.members)) {
        const grant = org.members[member] === 'developer' ? teamGrant(org, name, member) : 'read-write';
        if (grant) list[member] = grant;
      }
    }
    for (const maintainer of maintainerNames(doc)) if (maintainer) list[maintainer] = 'read-write';
    res.json(list);
  }

  async function staging(res: Response, name: string): Promise<void> {
    await ctx.access.assertRead(res, name);
    const doc = await readPackage(ctx, name);
    if (!doc || isTombstone(doc)) throw await ctx.access.missing(res, name, notFound('Package "' + name + '" is not in this registry.'));
    res.json({ required: doc.registry_staging === 'required' });
  }

  async function setStaging(req: Request, res: Response, name: string): Promise<void> {
    const user = requireWriter(res, name);
    await assertReadable(ctx, res, name);
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
      if (kind === 'collaborators' && (req.method === 'GET' || req.method === 'HEAD')) return collaborators(res, name);
      if (kind === 'collaborators') throw new HttpError(405, 'Use GET on collaborators.');
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
