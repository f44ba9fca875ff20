/**
 * The package area of the npm API: packuments (full and abbreviated), single versions, tarballs,
 * publish, metadata updates (deprecate, owner, star, unpublish of a version) and unpublish. The
 * routes are the table at the end (`PACKAGE_ROUTES`); each handler gets the package name and the
 * named parts of the rest of the path.
 */
import { createReadStream } from 'fs';
import { Request, Response, Router } from 'express';
import {
  applyForeign, applyPublish, applyUpdate, assertValidName, fullPackument, isForeign, isTombstone,
  resolveVersion, tarballUrl, tombstone, withoutTarball,
} from '../../core/packument';
import { isMirrored } from '../../core/provenance';
import { PackageDoc } from '../../core/types';
import { requireUser, requireWriter } from '../auth';
import { requireWriteFactor } from '../second-factor';
import { packageMfaOf, stagingRequiredMessage } from './package-access';
import { CachedPackument, packumentShape } from '../cache';
import { assertReadable, Context, localPackage, readPackage } from '../context';
import { checkDigests, md5Etag } from '../digests';
import { checkProvenanceBundle } from '../provenance';
import { badRequest, conflict, forbidden, HttpError, notFound } from '../errors';
import { answeredNotModified, immutable, revalidate } from '../http-cache';
import { assertMayTakeName } from '../new-names';
import { parsePackagePath } from '../paths';
import { CachedTarball, MEMORY_TARBALL_BYTES } from '../tarball-cache';
import { foreignBaseUrl, foreignUrlProblem, forwardToUpstream, postToUpstream, readForeign } from '../upstream';
import { publishLicenseProblem } from '../../core/licenses';
import { tarballLicenseProblem } from '../tarball-license';
import { packumentFromCopy, servedBytes, withheldOf, withheldTarballKnown, writeWithRetry } from '../writes';
import { Withheld, withheldTarball, withoutWithheld } from '../../core/policy';
import { versionOfTarball } from '../../core/names';
import { isProvisional, Mirror } from '../../replication/mirror';
import { StagedStore } from '../staging';
import { maintainerNames } from '../../core/rules';
import { orgMayChange } from '../../core/orgs';
import { grantDevelopers } from '../orgs';
import { assertTrustStands } from './trust';


function notFoundPackage(name: string): HttpError {
  return notFound('Package "' + name + '" is not in this registry. Check the name, or publish it with `npm publish`.');
}

function unpublishedError(doc: PackageDoc): HttpError {
  const info = doc.time.unpublished as { time?: string };
  return notFound(
    'Package "' + doc.name + '" was unpublished' + (info && info.time ? ' on ' + info.time : '') +
      '. Its version numbers cannot be reused; its maintainers may publish new versions.',
  );
}

/**
 * The mirror that pulls `name` through: that of the upstream the name is routed to, when its mode is
 * `mirror`; undefined for a private scope, a name no upstream is routed, or another mode.
 */
function pullThroughFor(ctx: Context, name: string): Mirror | undefined {
  const route = ctx.upstreams.upstreamFor(name);
  return route && route.mode === 'mirror' ? route.mirror : undefined;
}

/**
 * Whether pull-through may take `name` as a package this registry does not have without reading
 * both databases: the search index, current but for a poll, has no document of that name (the mirror
 * then reads the local database while it asks the upstream).
 */
function unlistedForPull(ctx: Context, name: string): boolean {
  return !!ctx.search && !!pullThroughFor(ctx, name) && ctx.search.knowsAbsent(name);
}

/** A mirrored package read: compared with its upstream when it is old (pull-through without a feed), by the mirror of its route. */
export function refreshIfStale(ctx: Context, name: string, held?: Pick<PackageDoc, 'origin' | 'origin_validators'>): void {
  pullThroughFor(ctx, name)?.refreshIfStale(name, held);
}

/**
 * The local package for a read, or null when the request was answered elsewhere: a foreign package
 * redirects to the registry that hosts it, a name unknown here goes to the one upstream it is routed
 * to (pulled through, proxied or redirected). A name that exists here (even unpublished) is never
 * forwarded; a private scope or a name no upstream is routed is never asked of any.
 */
async function loadForRead(ctx: Context, req: Request, res: Response, name: string, rest: string[]): Promise<PackageDoc | null> {
  await ctx.access.assertRead(res, name);
  // Taken before anything is read: a change of the name meanwhile keeps what is learnt below from being remembered.
  const generation = ctx.cache.generation(name);
  const absent = ctx.cache.isAbsent(name);
  const unlisted = !absent && unlistedForPull(ctx, name);
  let doc = absent || unlisted ? null : await readPackage(ctx, name);
  // No package here, for a caller the org of its scope hides which exist from: answered as a private
  // one is, never asked of an upstream (which would take longer, or answer otherwise).
  const hidden = doc ? null : await ctx.access.hidden(res, name);
  if (hidden) throw hidden;
  const pulling = doc ? undefined : pullThroughFor(ctx, name);
  if (!doc && pulling) {
    const missing = () => notFound('Package "' + name + '" is neither in this registry nor in its upstream ' + pulling.upstream + '.');
    // Asked of the upstream a moment ago, in vain: not again until UNKNOWN_UPSTREAM_MS passed, or the name changed here.
    if (ctx.cache.isUnknownUpstream(name)) throw missing();
    doc = await pulling.pull(name, absent ? 'absent' : unlisted ? 'unlisted' : 'nothing');
    if (!doc) {
      ctx.cache.setUnknownUpstream(name, generation);
      throw missing();
    }
  }
  if (!doc) {
    if (await forwardToUpstream(ctx, req, res, name, rest)) return null;
    const unrouted = ctx.upstreams.noRouteMessage(name);
    throw unrouted ? notFound(unrouted) : notFoundPackage(name);
  }
  if (isMirrored(doc, ctx.origins)) refreshIfStale(ctx, name, doc);
  // Only a package registered here is foreign: an upstream's document with a `url` never is.
  if (isForeign(doc) && !isMirrored(doc, ctx.origins)) {
    // Its maintainers read the entry itself to change or remove it (`npm unpublish --force`).
    if (req.query.write === 'true' && rest.length === 0) return doc;
    await readForeign(ctx, req, res, name, rest, String(doc.url));
    return null;
  }
  if (isTombstone(doc)) throw await ctx.access.missing(res, name, unpublishedError(doc));
  return doc;
}

/** Sends JSON with an ETag; answers 304 when the client already has it. */
function sendJson(req: Request, res: Response, body: unknown, etag: string): void {
  if (answeredNotModified(req, res, etag, revalidate(res))) return;
  res.type('application/json').send(JSON.stringify(body));
}

/** Whether an update takes versions or dist-tags away (unpublish, retag): such writes must carry a revision. */
function removesReleases(before: PackageDoc, after: PackageDoc): boolean {
  const gone = (was: object, is: object | undefined) => Object.keys(was).some((key) => !is || !(key in is));
  return gone(before.versions, after.versions) || gone(before['dist-tags'], after['dist-tags']);
}

function checkRev(doc: PackageDoc, rev: string | undefined): void {
  if (rev && rev !== doc._rev) {
    throw conflict('"' + doc.name + '" changed since you read it (revision ' + rev + ' is not current); run the command again.');
  }
}

export function packageRoutes(ctx: Context): Router {
  const router = Router();
  const staging = new StagedStore(ctx.couch, ctx.config.stageDb);

  /** Sends a packument's served bytes, full or abbreviated as the client asked, with its ETag. */
  function sendPackument(req: Request, res: Response, entry: CachedPackument): void {
    const broken = entry.mirrored && ctx.policy?.current.problem;
    if (broken) throw new HttpError(503, 'This mirrored package cannot be served: ' + broken + '.');
    const shape = packumentShape(entry, req.headers.accept);
    res.setHeader('Vary', 'Accept');
    if (answeredNotModified(req, res, shape.etag, revalidate(res))) return;
    const body = shape.body;
    res.setHeader('Content-Type', shape.type);
    res.setHeader('Content-Length', body.length);
    if (req.method === 'HEAD') res.end();
    else res.end(body);
  }

  async function getPackument(req: Request, res: Response, name: string): Promise<void> {
    if (req.query.write === 'true') {
      const doc = await loadForRead(ctx, req, res, name, []);
      if (!doc) return;
      requireUser(res);
      sendJson(req, res, fullPackument(doc, ctx.baseUrl), '"' + doc._rev + '-w"');
      return;
    }
    await ctx.access.assertRead(res, name);
    const cached = ctx.cache.get(name);
    ctx.metrics.cache('packument', !!cached, cached ? cached.full.length : 0);
    if (cached) {
      if (cached.mirrored) refreshIfStale(ctx, name);
      return sendPackument(req, res, cached);
    }
    // Concurrent misses share one read: a large packument is parsed and serialized once.
    const entry = await ctx.cache.once(name, async () => {
      const generation = ctx.cache.generation(name);
      if (ctx.cache.isAbsent(name) || unlistedForPull(ctx, name)) return null;
      // The bytes served before the gateway last stopped, if the package is still at that revision.
      const copied = await packumentFromCopy(ctx, name);
      if (copied) {
        const { entry } = copied;
        if (entry.mirrored) {
          if (copied.checkedAt !== undefined) pullThroughFor(ctx, name)?.checkedBefore(name, copied.checkedAt, entry.validators);
          refreshIfStale(ctx, name, { origin: entry.origin, origin_validators: entry.validators });
        }
        ctx.cache.set(name, generation, entry);
        return entry;
      }
      const doc = await readPackage(ctx, name, !!pullThroughFor(ctx, name));
      if (!doc) ctx.cache.setAbsent(name, generation);
      if (!doc || isForeign(doc) || isTombstone(doc)) return null;
      if (isMirrored(doc, ctx.origins)) refreshIfStale(ctx, name, doc);
      const made = servedBytes(ctx, doc);
      // Not a document being stored by pull-through: the stored one is cached.
      if (!isProvisional(doc)) ctx.cache.set(name, generation, made);
      return made;
    });
    if (entry) return sendPackument(req, res, entry);
    // Not a live local package: forwarding, redirects and errors take the ordinary path.
    const doc = await loadForRead(ctx, req, res, name, []);
    if (doc) sendPackument(req, res, servedBytes(ctx, doc));
  }

  async function getVersion(req: Request, res: Response, name: string, spec: string): Promise<void> {
    const stored = await loadForRead(ctx, req, res, name, [spec]);
    if (!stored) return;
    const withheld = withheldOf(ctx, stored);
    const doc = withoutWithheld(stored, withheld);
    const manifest = resolveVersion(doc, spec);
    const held = withheld.get(spec);
    if (!manifest && held) throw forbidden(held.reason);
    if (!manifest) {
      throw notFound('"' + name + '" has no version or dist-tag "' + spec + '" (versions: ' + Object.keys(doc.versions).join(', ') + ').');
    }
    const body = { ...manifest, dist: { ...manifest.dist, tarball: tarballUrl(ctx.baseUrl, name, manifest.version) } };
    sendJson(req, res, body, '"' + doc._rev + '-v-' + manifest.version + (withheld.size ? '-' + withheld.size : '') + '"');
  }

  /**
   * Sends a tarball: from the disk cache, else streamed from the database that holds the package
   * (the local one first; the mirror's when no local package has the name), fetched from the
   * upstream first when a mirrored package does not have it yet.
   */
  async function getTarball(req: Request, res: Response, name: string, file: string, from?: { db: string; pulled: boolean }): Promise<void> {
    if (!file.endsWith('.tgz') || file.includes('/') || file.startsWith('.')) throw notFound('No such tarball: ' + file);
    await ctx.access.assertRead(res, name);
    const held = await withheldTarballOf(name, file);
    if (held) throw forbidden(held.reason);
    const cached = ctx.tarballs.get(name, file);
    ctx.metrics.cache('tarball', !!cached, cached ? cached.size : 0);
    if (cached) return sendTarballFile(req, res, cached, name, file);
    const generation = ctx.tarballs.generation(name);
    // Fetched from the upstream and verified: served at once (and kept) while CouchDB stores it, or,
    // for a large one, stored first and served like any stored tarball.
    // The mirror of the upstream the name is routed to (every mode: a feed mirrors in proxy mode too).
    const mirror = ctx.upstreams.mirrorFor(name);
    const fromUpstream = async (doc: PackageDoc): Promise<void> => {
      const data = await (mirror as Mirror).tarball(doc, file);
      if (!data) return getTarball(req, res, name, file, { db: ctx.config.mirrorDb, pulled: true });
      const entry = { etag: md5Etag(data), size: data.length, data };
      void ctx.tarballs.put(name, file, generation, data, entry.etag);
      return sendTarballFile(req, res, entry, name, file);
    };
    const packument = ctx.cache.get(name);
    // Just pulled through (being stored, or the cached packument is of the document this gateway
    // stored) and without this tarball yet: straight to the upstream, without asking CouchDB for what
    // it does not have. Never when a package of that name is published here: it is served instead.
    const pulled = from || !mirror ? null : await pulledNotShadowed(mirror, name, packument);
    if (pulled && !(pulled._attachments && pulled._attachments[file]) && versionOfTarball(pulled, file) !== undefined) return fromUpstream(pulled);
    // A package known to be mirrored (its packument is cached) is looked for in the mirror database first.
    if (!from && packument?.mirrored) from = { db: ctx.config.mirrorDb, pulled: false };
    const db = from ? from.db : ctx.config.registryDb;
    const headers: Record<string, string> = {};
    if (typeof req.headers['if-none-match'] === 'string') headers['if-none-match'] = req.headers['if-none-match'];
    const upstream = await ctx.couch.attachment(db, name, file, headers);
    if (upstream.statusCode === 404) {
      upstream.resume();
      const doc = await loadForRead(ctx, req, res, name, ['-', file]);
      if (!doc) return;
      if (isMirrored(doc, ctx.origins) && !from) return getTarball(req, res, name, file, { db: ctx.config.mirrorDb, pulled: false });
      // A copy is completed by the mirror of the upstream its name is routed to: readPackage served it,
      // so it came from that upstream (or from the native replication, whose origin is not a URL).
      if (mirror && isMirrored(doc, ctx.origins) && from && !from.pulled) return fromUpstream(doc);
      throw notFound('No tarball ' + file + ' for "' + name + '": the version does not exist or was unpublished.');
    }
    if (upstream.statusCode !== 200 && upstream.statusCode !== 304) {
      upstream.resume();
      throw new HttpError(502, 'The registry database failed to send the tarball (' + upstream.statusCode + '). Try again later.');
    }
    res.status(upstream.statusCode);
    for (const header of ['etag', 'content-length', 'last-modified']) {
      const value = upstream.headers[header];
      if (value !== undefined) res.setHeader(header, value);
    }
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Cache-Control', immutable(res));
    if (req.method === 'HEAD' || upstream.statusCode === 304) {
      upstream.resume();
      res.end();
      return;
    }
    ctx.downloads?.count(name, file);
    const size = Number(upstream.headers['content-length']);
    const keepable = upstream.statusCode === 200 && Number.isFinite(size);
    const etag = String(upstream.headers.etag || '');
    // A small tarball is gathered as it streams and kept in memory, without a file (CouchDB has it);
    // a larger one is written to the disk cache as it streams.
    const download = keepable && size > MEMORY_TARBALL_BYTES ? ctx.tarballs.begin(name, file, generation) : null;
    if (keepable && size <= MEMORY_TARBALL_BYTES) {
      const chunks: Buffer[] = [];
      upstream.on('data', (chunk: Buffer) => chunks.push(chunk));
      upstream.on('end', () => {
        const data = Buffer.concat(chunks);
        if (data.length === size) void ctx.tarballs.put(name, file, generation, data, etag);
      });
    } else if (download) {
      upstream.pipe(download.stream);
      upstream.on('error', download.drop);
      download.stream.on('finish', () => download.keep(etag, size));
    }
    upstream.pipe(res);
    res.on('close', () => {
      if (!upstream.complete) {
        download?.drop();
        upstream.destroy();
      }
    });
  }

  /**
   * The document pull-through has just brought for `name` (being stored, or the one this gateway
   * stored if the cached packument is of it), unless a package of that name is published here.
   */
  async function pulledNotShadowed(mirror: Mirror, name: string, packument: CachedPackument | undefined): Promise<PackageDoc | null> {
    if (packument && !packument.mirrored) return null;
    const inFlight = mirror.inFlight(name);
    if (packument) return inFlight || mirror.recentDoc(name, packument.rev);
    return inFlight && !(await localPackage(ctx, name)) ? inFlight : null;
  }

  /** The held-back or blocked version whose tarball `file` is, or undefined (always, without a policy). */
  async function withheldTarballOf(name: string, file: string): Promise<Withheld | undefined> {
    const known = withheldTarballKnown(ctx, name, file);
    if (known !== 'unknown') return known;
    const doc = await readPackage(ctx, name);
    return doc ? withheldTarball(name, file, withheldOf(ctx, doc)) : undefined;
  }

  /** Sends a tarball this gateway holds; a download (a GET answered with the bytes) is counted. */
  function sendTarballFile(req: Request, res: Response, cached: CachedTarball, name: string, file: string): void {
    res.setHeader('Content-Type', 'application/octet-stream');
    if (answeredNotModified(req, res, cached.etag, immutable(res))) return;
    res.setHeader('Content-Length', cached.size);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    ctx.downloads?.count(name, file);
    // Without its bytes in memory, a cached tarball has its file (one kept in memory only leaves with them).
    if (cached.data || !cached.path) {
      res.end(cached.data);
      return;
    }
    const stream = createReadStream(cached.path);
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  }

  async function put(req: Request, res: Response, name: string, rev: string | undefined): Promise<void> {
    const body = req.body as Record<string, unknown>;
    const publishes = !rev && typeof body === 'object' && body !== null && !Array.isArray(body) && body._attachments !== undefined;
    const user = requireWriter(res, name, publishes ? 'publish' : 'change');
    // A change of a package (not a publish, nor a foreign entry: those make it) is for those who may read it.
    const registersForeign = !rev && typeof body === 'object' && body !== null && body.url !== undefined;
    if (!publishes && !registersForeign) await assertReadable(ctx, res, name);
    // A publish or a foreign entry in an org's scope by a non-member: refused before anything tells whether the name is taken.
    else await ctx.access.assertOrgMember(user, name);
    await requireWriteFactor(ctx.accounts, ctx.config, res, user, await packageMfaOf(ctx, name), name);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('The body must be a JSON object.');
    assertValidName(name);
    const now = new Date().toISOString();
    if (!rev && body.url !== undefined && body._attachments === undefined && body.versions === undefined) {
      const problem = foreignUrlProblem(ctx, body.url);
      if (problem) throw badRequest(problem);
      await assertMayTakeName(ctx, user, name);
      const url = foreignBaseUrl(body.url as string);
      const result = await writeWithRetry(ctx, user, name, (existing) => applyForeign(existing, name, { ...body, url }, now));
      ctx.log.info({ user: user.name, package: name, url }, 'foreign package registered');
      res.status(201).json({ ok: true, success: true, id: result?.id, rev: result?.rev });
      return;
    }
    if (publishes) {
      await assertMayTakeName(ctx, user, name);
      await assertNotStaged(user, name, body.versions);
      const licenseProblem = publishLicenseProblem(ctx.policy?.current.licenses, name, body.versions) || tarballLicenseProblem(ctx.policy?.current.licenses, name, body.versions, body._attachments);
      if (licenseProblem) throw forbidden(licenseProblem);
      const trusted = user.trustedPublisher;
      let created = false;
      const result = await writeWithRetry(ctx, user, name, (existing) => {
        created = !existing || isTombstone(existing);
        if (existing && existing.registry_staging === 'required') throw forbidden(stagingRequiredMessage(name));
        // A trusted publisher publishes new versions of a package that exists, as its trust's maker.
        if (trusted && (!existing || isTombstone(existing))) throw notFoundPackage(name);
        // Its trust revoked (`npm trust revoke`), the token publishes no more, though it has not expired.
        assertTrustStands(user, name, existing);
        return applyPublish(existing, {
          name, body, user, now, baseUrl: ctx.baseUrl, checkDigests, checkProvenance: (text, version) => checkProvenanceBundle(text, version, ctx.provenanceTrust),
          sign: ctx.keys ? (n, v, i) => ctx.keys!.sign(n, v, i) : undefined,
          trustedPublisher: trusted ? { provider: trusted.provider, trustId: trusted.trustId } : undefined,
        });
      });
      ctx.log.info({ user: user.name, package: name, versions: Object.keys((body.versions as object) || {}), repeated: !result, trustedPublisher: trusted?.provider }, 'published');
      if (result) ctx.metrics.published();
      // As on npm, an org's developers team gets read-write on each new package of the org's scope.
      if (result && created) await grantDevelopers(ctx, name).catch((err: Error) => ctx.log.warn({ package: name, err: err.message }, 'the developers team of the package\'s org could not be granted it'));
      res.status(201).json({ ok: true, success: true, id: name, rev: result?.rev });
      return;
    }
    const expectedRev = rev || (typeof body._rev === 'string' ? body._rev : undefined);
    const result = await writeWithRetry(ctx, user, name, (existing) => {
      if (!existing || isTombstone(existing)) throw notFoundPackage(name);
      checkRev(existing, expectedRev);
      const next = applyUpdate(existing, body, user, now);
      if (!expectedRev && removesReleases(existing, next)) {
        throw conflict(
          'This change removes versions or dist-tags of "' + name + '", so it must name the revision it was made from: ' +
            'read the package with ?write=true and send PUT /' + name + '/-rev/<_rev> (as npm unpublish does). To publish, include the tarball in "_attachments".',
        );
      }
      return next;
    });
    res.status(200).json({ ok: true, success: true, id: result?.id, rev: result?.rev });
  }

  /**
   * Throws 409 when a version of this publish is staged (`npm stage publish`): staged and published
   * versions share one version number space, as on npmjs.com. Only to the package's maintainers (and
   * admins): anyone else's publish is refused by validate_doc_update, without learning what waits in staging.
   */
  async function assertNotStaged(user: { name: string; roles: string[] }, name: string, versions: unknown): Promise<void> {
    if (typeof versions !== 'object' || versions === null) return;
    const existing = await readPackage(ctx, name);
    if (!existing) return;
    // Those who may change the package: its maintainers, admins, and whom its org lets (core/orgs.ts).
    const orgs = (await ctx.access.load()).orgs || undefined;
    if (!user.roles.includes('_admin') && !maintainerNames(existing).includes(user.name) && !orgMayChange(orgs, name, user)) return;
    const [staged] = await staging.among(name, Object.keys(versions));
    if (!staged) return;
    throw conflict(
      name + '@' + staged.version + ' is staged (stage id ' + staged._id + ', shown by `npm stage list ' + name + '`), waiting for a maintainer: approve it (`npm stage approve ' + staged._id + '`), ' +
        'or reject it (`npm stage reject ' + staged._id + '`) to publish another tarball under that version.',
    );
  }

  async function unpublishAll(res: Response, name: string, rev: string): Promise<void> {
    const user = requireWriter(res, name);
    await assertReadable(ctx, res, name);
    await requireWriteFactor(ctx.accounts, ctx.config, res, user, await packageMfaOf(ctx, name), name);
    const now = new Date().toISOString();
    await writeWithRetry(ctx, user, name, (existing) => {
      if (!existing || isTombstone(existing)) throw notFoundPackage(name);
      checkRev(existing, rev);
      return tombstone(existing, user, now);
    });
    ctx.log.info({ user: user.name, package: name }, 'unpublished');
    res.status(200).json({ ok: true, success: true });
  }

  async function deleteTarball(res: Response, name: string, file: string): Promise<void> {
    const user = requireWriter(res, name);
    await assertReadable(ctx, res, name);
    await requireWriteFactor(ctx.accounts, ctx.config, res, user, await packageMfaOf(ctx, name), name);
    await writeWithRetry(ctx, user, name, (existing) => {
      if (!existing) throw notFoundPackage(name);
      return withoutTarball(existing, file);
    });
    res.status(200).json({ ok: true, success: true });
  }

  router.post(['/-/npm/v1/security/advisories/bulk', '/-/npm/v1/security/audits/quick'], (req, res, next) => {
    postToUpstream(ctx, req.path, req.body)
      .then((answer) => res.status(answer.status).json(answer.body))
      .catch(next);
  });

  const routes: PackageRoute[] = [
    { methods: ['GET', 'HEAD'], rest: [], handle: (req, res, name) => getPackument(req, res, name) },
    { methods: ['GET', 'HEAD'], rest: [':spec'], handle: (req, res, name, p) => getVersion(req, res, name, p.spec) },
    { methods: ['GET', 'HEAD'], rest: ['-', ':file'], handle: (req, res, name, p) => getTarball(req, res, name, p.file) },
    { methods: ['PUT'], rest: [], handle: (req, res, name) => put(req, res, name, undefined) },
    { methods: ['PUT'], rest: ['-rev', ':rev'], handle: (req, res, name, p) => put(req, res, name, p.rev) },
    { methods: ['DELETE'], rest: ['-rev', ':rev'], handle: (_req, res, name, p) => unpublishAll(res, name, p.rev) },
    { methods: ['DELETE'], rest: ['-', ':file', '-rev', ':rev'], handle: (_req, res, name, p) => deleteTarball(res, name, p.file) },
    { methods: ['DELETE'], rest: ['-', ':file'], handle: (_req, res, name, p) => deleteTarball(res, name, p.file) },
  ];

  router.all('*', (req, res, next) => {
    const parsed = parsePackagePath(req.path);
    if (!parsed || parsed.name.startsWith('-') || parsed.name.startsWith('_')) return next();
    for (const route of routes) {
      if (!route.methods.includes(req.method)) continue;
      const params = matchRest(route.rest, parsed.rest);
      if (params) return void route.handle(req, res, parsed.name, params).catch(next);
    }
    next();
  });

  return router;
}

/**
 * A route of the package area: the methods, and the path after the package name as segments, where
 * `:x` takes any one segment as the parameter `x`.
 */
interface PackageRoute {
  methods: string[];
  rest: string[];
  handle(req: Request, res: Response, name: string, params: Record<string, string>): Promise<void>;
}

/** The parameters when `rest` (decoded segments after the name) fits `pattern`, else null. */
export function matchRest(pattern: string[], rest: string[]): Record<string, string> | null {
  if (pattern.length !== rest.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i].startsWith(':')) params[pattern[i].slice(1)] = rest[i];
    else if (pattern[i] !== rest[i]) return null;
  }
  return params;
}
