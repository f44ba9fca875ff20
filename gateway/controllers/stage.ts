/**
 * Staged publishing (`npm stage`, npm 11.15 and later): CI stages a version without a second factor,
 * a maintainer reviews it and approves it (with their one-time password) or rejects it.
 *
 * - `POST /-/stage/package/<name>` (`npm stage publish`): the body of a publish. It passes every check a
 *   publish passes (a token allowed to publish the package, or a CI's trusted publishing token whose
 *   trust allows staging, a maintainer, the access rules, the name,
 *   integrity and size, a version never published, the supply-chain checks of a name) and is stored
 *   with its tarball in `<db>-stage` (gateway/staging.ts), never in the registry database: a staged
 *   version is not served, not searched, not in the change feed a downstream registry follows. Answers
 *   `{stageId}`. The package must exist (its first version is published with `npm publish`).
 * - `GET /-/stage?package=&page=&perPage=` (`npm stage list`): `{items, total}`, the staged versions of the
 *   packages the caller maintains (every one for an admin).
 * - `GET /-/stage/<id>` (`npm stage view`), `GET /-/stage/<id>/tarball` (`npm stage download`).
 * - `POST /-/stage/<id>/approve` (`npm stage approve`): publishes the staged body, the same tarball and
 *   manifest, through the publish write path, as the approving maintainer (validate_doc_update sees
 *   them). It needs their second factor when their account has one, and a person: a token made with
 *   `--bypass-2fa` is refused. A version published meanwhile: 409.
 * - `DELETE /-/stage/<id>` (`npm stage reject`): removes it (the second factor as for approval).
 *
 * A staged publish of a package the caller does not maintain is answered as one that does not exist.
 * Stage ids are UUID-shaped digests of `<name>@<version>` (gateway/staging.ts), so that a version is
 * staged once at a time, at every site.
 */
import { publishLicenseProblem } from '../../core/licenses';
import { tarballLicenseProblem } from '../tarball-license';
import { assertTrustStands } from './trust';
import { Request, Response, Router } from 'express';
import { applyPublish, assertValidName, isTombstone, parsePublish, PublishBody, PublishInput } from '../../core/packument';
import { isMirrored, mirroredReason } from '../../core/provenance';
import { maintainerNames, publishedVersions } from '../../core/rules';
import { tokenCovers } from '../../core/tokens';
import { isObject, PackageDoc } from '../../core/types';
import { isAdminUser } from '../../core/access';
import { AuthenticatedUser, requireUser, requireWriter } from '../auth';
import { Context, readPackage } from '../context';
import { checkDigests } from '../digests';
import { badRequest, conflict, forbidden, HttpError, notFound } from '../errors';
import { assertMayTakeName } from '../new-names';
import { decodeSegment } from '../paths';
import { credentialOf, requireWriteFactor, twoFactorOn } from '../second-factor';
import { isStageId, StagedPublish, stagedItem, StagedStore, stageIdOf } from '../staging';
import { writeWithRetry } from '../writes';
import { packageMfaOf } from './package-access';

/** The most versions of one package that may wait in staging at once. */
export const MAX_STAGED_PER_PACKAGE = 50;
/** The most items of one page of `npm stage list` (npm asks for 100). */
const MAX_PER_PAGE = 100;


function noSuchStaged(id: string): HttpError {
  return notFound('No staged publish ' + id + ' among the packages you maintain here: `npm stage list` shows yours.');
}

/** What `npm stage list` and `npm stage view` call who staged it: the account, and how it logged in. */
function actorTypeOf(res: Response, user: AuthenticatedUser): string {
  if (user.trustedPublisher) return 'trusted publisher (' + user.trustedPublisher.provider + ')';
  if (credentialOf(res, user).bypass2fa) return 'automation token';
  return user.via === 'token' ? 'token' : 'password';
}

export function stageRoutes(ctx: Context): Router {
  const router = Router();
  const store = new StagedStore(ctx.couch, ctx.config.stageDb);

  /** Whether `user` may see and manage the staged versions of `doc` (a maintainer, with a token that covers it, or an admin). */
  function manages(user: AuthenticatedUser, name: string, doc: PackageDoc | null | undefined): boolean {
    if (isAdminUser(user)) return true;
    if (!doc || isTombstone(doc) || isMirrored(doc, ctx.origins)) return false;
    return maintainerNames(doc).includes(user.name) && tokenCovers(user.limits, name);
  }

  /** The staged publish `id` if the caller manages its package; 400 for what is no stage id, else 404. */
  async function loadManaged(res: Response, id: string): Promise<{ staged: StagedPublish; user: AuthenticatedUser }> {
    const user = requireUser(res);
    if (!isStageId(id)) throw badRequest('"' + id.slice(0, 80) + '" is not a stage id (a UUID, as `npm stage list` shows them).');
    const staged = await store.get(id);
    if (!staged || !manages(user, staged.package, await readPackage(ctx, staged.package))) throw noSuchStaged(id);
    return { staged, user };
  }

  /**
   * The second factor of an approval or a rejection: the account's when it has one (in either mode),
   * the package's requirement (`npm access set mfa=…`), and `TWO_FACTOR=required`, as for writes.
   */
  async function requireApprovalFactor(res: Response, user: AuthenticatedUser, name: string): Promise<void> {
    const packageMfa = await packageMfaOf(ctx, name);
    await requireWriteFactor(ctx.accounts, ctx.config, res, user, packageMfa || (twoFactorOn(user.twoFactor) ? 'publish' : undefined), name);
  }

  async function stagePublish(req: Request, res: Response, name: string): Promise<void> {
    // A CI's trusted publishing token stages when its trust allows it (`npm trust … --allow-stage-publish`).
    const user = requireWriter(res, name, 'stage');
    const body = req.body as PublishBody;
    if (!isObject(body)) throw badRequest('The body must be the JSON of a publish, as `npm stage publish` sends it.');
    assertValidName(name);
    // A package the access rules hide from the caller answers as one that does not exist would.
    await ctx.access.assertRead(res, name);
    const existing = await readPackage(ctx, name);
    if (!existing || isTombstone(existing)) {
      throw await ctx.access.missing(res, name, notFound('"' + name + '" is not published here yet: only versions of an existing package are staged. Publish its first version with `npm publish`.'));
    }
    if (isMirrored(existing, ctx.origins)) throw forbidden(mirroredReason(existing));
    assertTrustStands(user, name, existing);
    if (!isAdminUser(user) && !maintainerNames(existing).includes(user.name)) {
      throw forbidden('You are not a maintainer of "' + name + '" (maintainers: ' + maintainerNames(existing).join(', ') + '): only its maintainers stage versions of it.');
    }
    await ctx.access.assertPublish(user, name);
    await assertMayTakeName(ctx, user, name);
    const licenseProblem = publishLicenseProblem(ctx.policy?.current.licenses, name, body.versions) || tarballLicenseProblem(ctx.policy?.current.licenses, name, body.versions, body._attachments);
    if (licenseProblem) throw forbidden(licenseProblem);
    const input: PublishInput = { name, body, user, now: new Date().toISOString(), baseUrl: ctx.baseUrl, checkDigests };
    const versions = parsePublish(input);
    if (versions.length !== 1) throw badRequest('Stage one version at a time (this body has ' + versions.length + '), as `npm stage publish` does.');
    const { version, manifest, data, file } = versions[0];
    // Every rule of a publish, against the package as it is now; nothing is written.
    if (!applyPublish(existing, input)) throw conflict(name + '@' + version + ' is already published here with this very tarball; there is nothing to stage.');
    const tags = Object.keys(isObject(body['dist-tags']) ? body['dist-tags'] : {});
    if (tags.length > 1) throw badRequest('A staged version carries one dist-tag (this body has ' + tags.join(', ') + '), as `npm stage publish --tag <tag>` sends it.');
    const waiting = await store.ofPackage(name);
    if (waiting.length >= MAX_STAGED_PER_PACKAGE) {
      throw new HttpError(429, '"' + name + '" has ' + waiting.length + ' staged versions waiting, the most this registry keeps: approve or reject some (`npm stage list ' + name + '`) first.');
    }
    const { _attachments, ...kept } = body;
    void _attachments;
    const id = stageIdOf(name, version);
    const staged: StagedPublish = {
      _id: id,
      type: 'staged',
      package: name,
      version,
      tag: tags[0] || 'latest',
      createdAt: input.now,
      actor: user.name,
      actorType: actorTypeOf(res, user),
      integrity: manifest.dist.integrity,
      shasum: manifest.dist.shasum,
      size: Buffer.byteLength(data, 'base64'),
      file,
      body: kept,
    };
    const stored = await store.add(staged, data);
    if (!stored) {
      throw conflict(name + '@' + version + ' is staged already (stage id ' + id + ', shown by `npm stage list ' + name + '`): approve it (`npm stage approve ' + id + '`), or reject it (`npm stage reject ' + id + '`) and stage again.');
    }
    ctx.log.info({ user: user.name, package: name, version, stageId: id }, 'staged');
    await ctx.webhooks?.staging('package:stage', name, { version, stageId: id, tag: staged.tag, integrity: staged.integrity }, user.name);
    res.status(201).json({ ok: true, stageId: id, id: name, version });
  }

  async function list(req: Request, res: Response): Promise<void> {
    const user = requireUser(res);
    const number = (key: string, fallback: number, max: number): number => {
      const raw = req.query[key];
      if (raw === undefined) return fallback;
      const value = typeof raw === 'string' && /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
      if (!(value <= max)) throw badRequest('"' + key + '" must be a whole number up to ' + max + '.');
      return value;
    };
    const page = number('page', 0, 1e9);
    const perPage = Math.max(1, number('perPage', MAX_PER_PAGE, MAX_PER_PAGE));
    const filter = req.query.package;
    if (filter !== undefined && typeof filter !== 'string') throw badRequest('"package" must be one package name.');
    const all = filter !== undefined ? await store.ofPackage(filter) : await store.all();
    const names = [...new Set(all.map((s) => s.package))];
    const docs = await ctx.registry.getMany(names);
    const mine = all.filter((s) => manages(user, s.package, docs.get(s.package)));
    mine.sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a._id < b._id ? -1 : 1));
    res.json({ items: mine.slice(page * perPage, (page + 1) * perPage).map(stagedItem), total: mine.length });
  }

  async function view(res: Response, id: string): Promise<void> {
    const { staged } = await loadManaged(res, id);
    res.json(stagedItem(staged));
  }

  async function download(req: Request, res: Response, id: string): Promise<void> {
    const { staged } = await loadManaged(res, id);
    const upstream = await store.tarball(staged);
    if (upstream.statusCode !== 200) {
      upstream.resume();
      if (upstream.statusCode === 404) throw noSuchStaged(id);
      throw new HttpError(502, 'The staging database failed to send the tarball (' + upstream.statusCode + '). Try again later.');
    }
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Content-Disposition', 'attachment; filename="' + staged.file.replace(/[^A-Za-z0-9._-]/g, '_') + '"');
    const length = upstream.headers['content-length'];
    if (length !== undefined) res.setHeader('Content-Length', length);
    if (req.method === 'HEAD') {
      upstream.resume();
      res.end();
      return;
    }
    upstream.pipe(res);
    res.on('close', () => {
      if (!upstream.complete) upstream.destroy();
    });
  }

  async function approve(res: Response, id: string): Promise<void> {
    const { staged } = await loadManaged(res, id);
    const name = staged.package;
    const user = requireWriter(res, name);
    if (credentialOf(res, user).bypass2fa) {
      throw forbidden(
        'A token made with --bypass-2fa is for automation, and approving a staged version is for a person: ' +
          'approve with your own login (`npm login`, then `npm stage approve ' + id + '` with your one-time password; `npm stage list` shows the id).',
      );
    }
    await ctx.access.assertPublish(user, name);
    await requireApprovalFactor(res, user, name);
    // The license policy may have changed since the version was staged.
    const data = await store.tarballData(staged);
    if (data === null) throw noSuchStaged(id);
    const licenseProblem =
      publishLicenseProblem(ctx.policy?.current.licenses, name, staged.body.versions) || tarballLicenseProblem(ctx.policy?.current.licenses, name, staged.body.versions, { [staged.file]: { data } });
    if (licenseProblem) throw forbidden(licenseProblem + ' Reject the staged version with `npm stage reject ' + id + '`.');
    const body: PublishBody = { ...staged.body, _attachments: { [staged.file]: { content_type: 'application/octet-stream', data, length: staged.size } } };
    const now = new Date().toISOString();
    const sign = ctx.keys ? (n: string, v: string, i: string) => ctx.keys!.sign(n, v, i) : undefined;
    // Taken out of staging first, so that of an approval and a rejection at once only one happens;
    // put back if the publish fails.
    if (!(await store.remove(staged))) throw noSuchStaged(id);
    const published = writeWithRetry(ctx, user, name, (existing) => {
      if (!existing) throw notFound('"' + name + '" is no longer in this registry; reject the staged version with `npm stage reject ' + id + '`.');
      if (publishedVersions(existing).includes(staged.version)) {
        throw conflict(
          name + '@' + staged.version + ' was published meanwhile (a version number is used once), so the staged one cannot be: ' +
            'reject it (`npm stage reject ' + id + '`) and stage a new version.',
        );
      }
      return applyPublish(existing, { name, body, user, now, baseUrl: ctx.baseUrl, checkDigests, sign });
    });
    await published.catch(async (err) => {
      await store.add({ ...staged, _rev: undefined }, data);
      throw err;
    });
    ctx.metrics.published();
    ctx.log.info({ user: user.name, package: name, version: staged.version, stageId: id, stagedBy: staged.actor }, 'staged version approved and published');
    await ctx.webhooks?.staging('package:stage-approve', name, { version: staged.version, stageId: id, stagedBy: staged.actor, integrity: staged.integrity }, user.name);
    res.json({ ok: true, id: name, version: staged.version });
  }

  async function reject(res: Response, id: string): Promise<void> {
    const { staged } = await loadManaged(res, id);
    const user = requireWriter(res, staged.package);
    await requireApprovalFactor(res, user, staged.package);
    if (!(await store.remove(staged))) throw noSuchStaged(id);
    ctx.log.info({ user: user.name, package: staged.package, version: staged.version, stageId: id }, 'staged version rejected');
    await ctx.webhooks?.staging('package:stage-reject', staged.package, { version: staged.version, stageId: id, stagedBy: staged.actor }, user.name);
    res.json({ ok: true });
  }

  const STAGE_PACKAGE = /^\/-\/stage\/package\/(.+?)\/?$/;
  const STAGE_ITEM = /^\/-\/stage\/([^/]+)(\/approve|\/tarball)?\/?$/;

  router.all(['/-/stage', '/-/stage/', '/-/stage/*'], (req, res, next) => {
    const run = async (): Promise<void> => {
      const publishPath = STAGE_PACKAGE.exec(req.path);
      if (publishPath) {
        if (req.method !== 'POST') throw new HttpError(405, 'Stage a version with POST (`npm stage publish`).');
        return stagePublish(req, res, decodeSegment(publishPath[1]));
      }
      if (req.path === '/-/stage' || req.path === '/-/stage/') {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'List staged versions with GET (`npm stage list`).');
        return list(req, res);
      }
      const item = STAGE_ITEM.exec(req.path);
      if (!item) throw notFound('Nothing here: ' + req.method + ' ' + req.path + ' is not part of staged publishing (`npm stage`).');
      const id = decodeSegment(item[1]);
      const action = item[2];
      if (action === '/approve') {
        if (req.method !== 'POST') throw new HttpError(405, 'Approve with POST (`npm stage approve <id>`).');
        return approve(res, id);
      }
      if (action === '/tarball') {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'Download with GET (`npm stage download <id>`).');
        return download(req, res, id);
      }
      if (req.method === 'GET' || req.method === 'HEAD') return view(res, id);
      if (req.method === 'DELETE') return reject(res, id);
      throw new HttpError(405, 'View a staged version with GET, reject it with DELETE (`npm stage view|reject <id>`).');
    };
    run().catch(next);
  });
  return router;
}

