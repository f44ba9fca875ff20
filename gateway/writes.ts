/**
 * Writes of package documents, for every controller: read, change, write as the user, again when a
 * concurrent write got there first. What a write makes (the served bytes of the packument, the
 * tarballs that came with it) goes into this gateway's caches at once.
 */
import { isMirrored, mirroredReason } from '../core/provenance';
import { PackageDoc } from '../core/types';
import { CachedPackument } from './cache';
import { asHttpError, forbidden } from './errors';
import { changedHere, Context, fromCouch, isConflict, localPackage, readPackage } from './context';
import { couchFailure } from '../couchdb/client';
import { createHash } from 'crypto';
import { nextRelease, policyActive, Withheld, withheldTarball, withheldVersions, withoutWithheld } from '../core/policy';
import { md5Etag } from './digests';
import { policyFingerprint, ServedCopy } from './served-copies';
import { retry } from '../lib/retry';
import { abbreviatedPackument, fullPackument, isForeign, isTombstone, stampChanges } from '../core/packument';

/**
 * Attempts of a write that concurrent writes of the same package keep beating: a maintainer publishing
 * many versions at once (a monorepo's CI) must see each of them land, not a 409 for most.
 */
const WRITE_ATTEMPTS = 30;
const STUB_ATTEMPTS = 8;

/**
 * Whether the package moved on since `base` was read: the embedded server (pouchdb-validation) runs
 * validate_doc_update against the current revision before it checks the revision written against, so a
 * write based on a revision that another write replaced meanwhile is refused there as if it took away
 * that write's versions or stars (CouchDB answers 409 first). Such a refusal is a conflict.
 */
async function movedOn(ctx: Context, name: string, base: PackageDoc | null): Promise<boolean> {
  const current = await ctx.registry.get(name).catch(() => undefined);
  if (current === undefined) return false;
  return (current ? current._rev : undefined) !== (base ? base._rev : undefined);
}

const CONFLICT = Object.freeze({ statusCode: 409, error: 'conflict', reason: 'Document update conflict.' });

/** The last write of each package this gateway has under way (its queue's tail). */
const writing = new Map<string, Promise<unknown>>();

/**
 * Runs the writes of one package one after the other in this gateway: they would only beat each
 * other with 409s (on a CouchDB 3.4.3 cluster, 100 publishes at once through one gateway left 14 to
 * 26 of them answered 409 after 30 attempts). Writes through other gateways still meet as 409s, retried.
 */
async function oneAtATime<T>(name: string, work: () => Promise<T>): Promise<T> {
  const mine = (writing.get(name) || Promise.resolve()).then(work, work);
  const tail = mine.catch(() => undefined);
  writing.set(name, tail);
  try {
    return await mine;
  } finally {
    if (writing.get(name) === tail) writing.delete(name);
  }
}

/** Reads, changes and writes a package as `user`, re-reading when a concurrent write got there first. */
export async function writeWithRetry(
  ctx: Context,
  user: { name: string; roles: string[] },
  name: string,
  change: (existing: PackageDoc | null) => PackageDoc | null,
): Promise<{ id: string; rev: string } | null> {
  const attempt = async () => {
    const existing = await readPackage(ctx, name);
    // Mirrored packages are the upstream's, in a database only replication writes: _design/mirror refuses too.
    if (existing && isMirrored(existing, ctx.origins)) throw forbidden(mirroredReason(existing));
    const changed = change(existing);
    if (!changed) return null;
    // When dist-tags, deprecations, maintainers and stars changed: what merges conflicting revisions (core/merge.ts).
    const next = stampChanges(existing, changed, new Date().toISOString());
    // A package created here is marked as local; _design/mirror keeps replication off it.
    if (!existing) next.origin = ctx.registryId;
    // Known absent no longer: whoever reads it from now on, or read it as this is written, reads again.
    ctx.localAbsence.changed(name);
    const written = await ctx.couch.putAs(user, ctx.config.registryDb, next).catch(async (err) => {
      if (couchFailure(err).statusCode === 403 && (await movedOn(ctx, name, existing))) throw Object.assign(new Error(CONFLICT.reason), CONFLICT);
      throw err;
    });
    ctx.localAbsence.changed(name);
    changedHere(ctx, name, written.rev);
    warm(ctx, { ...next, _rev: written.rev });
    ctx.search?.wrote('local', { ...next, _rev: written.rev });
    await ctx.webhooks?.written(existing, next, user.name);
    return written;
  };
  const retried = () => retry(attempt, {
    attempts: Math.max(WRITE_ATTEMPTS, STUB_ATTEMPTS),
    // A concurrent write got there first: read again at once. On a CouchDB cluster a copy of the
    // document may not have the previous revision's tarballs yet (internal replication is a few
    // milliseconds behind): 412 missing_stub, worth another try a little later.
    retryable: (err, n) => (isConflict(err) ? n < WRITE_ATTEMPTS : couchFailure(err).error === 'missing_stub' && n < STUB_ATTEMPTS),
    // Writers that keep colliding spread out (a random wait that grows), so that each round one lands.
    delay: (n, err) => (isConflict(err) ? Math.floor(Math.random() * 10 * Math.min(n, 10)) : 25 * n),
  });
  return oneAtATime(name, retried).catch((err) => {
    throw asHttpError(err) || fromCouch(err);
  });
}

/** The versions of `doc` the supply-chain policy leaves out now (none for a local package). */
export function withheldOf(ctx: Pick<Context, 'policy' | 'origins'>, doc: PackageDoc): Map<string, Withheld> {
  const policy = ctx.policy?.current;
  if (!policy || !policyActive(policy) || !isMirrored(doc, ctx.origins)) return new Map();
  return withheldVersions(doc, policy, Date.now());
}

/**
 * What the supply-chain policy says of the tarball `file` of `name` as far as this gateway knows
 * without reading CouchDB: from its cached packument, or from the document pull-through is storing
 * (not cached until it is stored); `unknown` when it has neither. Undefined: not held back.
 */
export function withheldTarballKnown(ctx: Pick<Context, 'policy' | 'origins' | 'cache' | 'upstreams'>, name: string, file: string): Withheld | undefined | 'unknown' {
  const policy = ctx.policy?.current;
  if (!policy || !policyActive(policy)) return undefined;
  const entry = ctx.cache.get(name);
  if (entry) return entry.withheld ? withheldTarball(name, file, entry.withheld) : undefined;
  const pulled = ctx.upstreams.mirrorFor(name)?.inFlight(name);
  return pulled ? withheldTarball(name, file, withheldOf(ctx, pulled)) : 'unknown';
}

/**
 * The bytes served for a package document: both shapes, made once per revision and policy. What the
 * policy leaves out is not in them; they go stale when a held-back version becomes available, and
 * their ETag changes with what is left out.
 */
export function servedBytes(ctx: Context, doc: PackageDoc): CachedPackument {
  const withheld = withheldOf(ctx, doc);
  const served = withoutWithheld(doc, withheld);
  const next = nextRelease(withheld);
  const variant = withheld.size ? createHash('sha1').update([...withheld.keys()].sort().join(',')).digest('hex').slice(0, 12) : '';
  const mirrored = isMirrored(doc, ctx.origins);
  // The stubs of the attachments as stored (a document read from CouchDB); those written with it are added by `warm`.
  const attachments: NonNullable<CachedPackument['attachments']> = {};
  for (const [file, stub] of Object.entries(doc._attachments || {})) {
    if (typeof stub.digest === 'string' && typeof stub.content_type === 'string' && stub.data === undefined) attachments[file] = { content_type: stub.content_type, digest: stub.digest };
  }
  return {
    rev: doc._rev as string,
    variant,
    full: Buffer.from(JSON.stringify(fullPackument(served, ctx.baseUrl))),
    abbreviated: Buffer.from(JSON.stringify(abbreviatedPackument(served, ctx.baseUrl))),
    mirrored,
    withheld: withheld.size ? withheld : undefined,
    validUntil: next === null ? undefined : next,
    policy: policyFingerprint(ctx.policy?.current, mirrored),
    origin: typeof doc.origin === 'string' ? doc.origin : undefined,
    validators: doc.origin_validators,
    attachments,
  };
}

/**
 * Work done at write time: the packument just written is put in the cache as served bytes, and the
 * tarballs that came with it onto the disk cache, so that the first reads after a publish are hits.
 */
export function warm(ctx: Context, doc: PackageDoc, generations = { cache: ctx.cache.generation(doc.name), tarballs: ctx.tarballs.generation(doc.name) }): void {
  if (isTombstone(doc) || isForeign(doc)) return;
  const served = servedBytes(ctx, doc);
  ctx.cache.set(doc.name, generations.cache, served);
  for (const [file, attachment] of Object.entries(doc._attachments || {})) {
    if (typeof attachment.data !== 'string' || !file.endsWith('.tgz')) continue; // provenance bundles are not tarballs
    const data = Buffer.from(attachment.data, 'base64');
    const etag = md5Etag(data);
    knownDigest(served, file, attachment.content_type, etag);
    void ctx.tarballs.put(doc.name, file, generations.tarballs, data, etag);
  }
}

/**
 * Notes the stub of attachment `file` written with the package (CouchDB's digest is the MD5 of its
 * bytes, as in `md5Etag`): a first read of it after a restart needs no read of the document. The
 * embedded server checks the bytes it reads against it.
 */
function knownDigest(served: CachedPackument, file: string, contentType: string | undefined, etag: string): void {
  if (!served.attachments || served.attachments[file]) return;
  served.attachments[file] = { content_type: contentType || 'application/octet-stream', digest: 'md5-' + etag.slice(1, -1) };
}

/**
 * `warm` for a document replication wrote to the mirror database, with the verified bytes of the
 * `tarballs` written with it, unless a package of that name is published here: that one is what
 * clients are served (a publish meanwhile changes the generations, and the caches keep nothing of this one).
 */
export function warmMirrored(ctx: Context, doc: PackageDoc, tarballs?: ReadonlyMap<string, Buffer>): void {
  const generations = { cache: ctx.cache.generation(doc.name), tarballs: ctx.tarballs.generation(doc.name) };
  void localPackage(ctx, doc.name).then(
    (local) => {
      if (local) return;
      warm(ctx, doc, generations);
      const served = ctx.cache.get(doc.name);
      for (const [file, data] of tarballs || []) {
        const known = ctx.tarballs.get(doc.name, file);
        const etag = known ? known.etag : md5Etag(data);
        if (served && served.rev === doc._rev) knownDigest(served, file, doc._attachments?.[file]?.content_type, etag);
        if (!known) void ctx.tarballs.put(doc.name, file, generations.tarballs, data, etag);
      }
    },
    () => undefined,
  );
}

/**
 * The served bytes of `name` from its copy on disk (served-copies.ts), when the copy is of the
 * revision clients are served now, as `readPackage` finds it: the local package's, else the mirrored
 * one's (of the upstream the name is routed to). The revisions are read from the revision trees, not
 * the documents; null when there is no such copy, or where the revisions cannot be read that way (a
 * real CouchDB). The stubs of the document's attachments go to the in-process reads, so that the first
 * read of each tarball needs no read of the document either.
 */
export async function packumentFromCopy(ctx: Context, name: string): Promise<ServedCopy | null> {
  const copies = ctx.copies;
  if (!copies || !copies.has(name)) return null;
  const local = ctx.localAbsence.knows(name) ? Promise.resolve(null) : ctx.registry.revision(name);
  const mirrored = ctx.mirrored.revision(name);
  if (local === undefined || mirrored === undefined) return null;
  const [localRev, mirroredRev] = await Promise.all([local, mirrored]);
  const rev = localRev || mirroredRev || '';
  const copy = await copies.take(name, rev, ctx.origins, ctx.policy?.current);
  if (copy === null) return null;
  // A mirrored copy of an upstream the name is not routed to (any more) is not served (`readPackage`).
  if (typeof copy === 'string' || (!localRev && !ctx.upstreams.serves({ name, origin: copy.entry.origin } as PackageDoc))) {
    ctx.metrics.copy(typeof copy === 'string' ? copy : 'outdated');
    if (typeof copy !== 'string') copies.forget(name);
    return null;
  }
  if (copy.entry.attachments) (localRev ? ctx.registry : ctx.mirrored).knowAttachments(name, rev, copy.entry.attachments);
  ctx.metrics.copy('used');
  return copy;
}
