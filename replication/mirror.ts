/**
 * Mirrored packages: copies of an npm registry upstream's packuments stored in the mirror database
 * (`<db>-mirror`, `origin` = the upstream's URL), their tarballs fetched, verified against the
 * upstream's integrity and stored as attachments. Used by the pull-through (a name asked for and not
 * here) and by the change-feed follower. Every write is made as the replication user, so
 * `_design/mirror` refuses what replication must never do (mark a package as local, bring a private
 * scope). A name published here is never fetched: the local package shadows it.
 */
import { randomBytes } from 'crypto';
import { createWriteStream, mkdirSync, rmSync } from 'fs';
import { join } from 'path';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import ssri from 'ssri';
import { inPrivateScope, REPLICATOR_ROLE, shadowedReason } from '../couchapp/lib/mirror';
import { tarballFileName } from '../couchapp/lib/names';
import { AttachmentStub, PackageDoc, VersionManifest } from '../couchapp/lib/types';
import { Couch, couchFailure, docPath, Identity } from '../gateway/couch';
import { changedHere, Context, getPackageDoc } from '../gateway/context';
import { HttpError } from '../gateway/errors';
import { TARBALL_CONTENT_TYPE } from '../gateway/packument';
import { sleep } from '../gateway/pause';
import { SingleFlight } from '../gateway/single-flight';
import { fetchFailure, upstreamPath } from '../gateway/upstream';
import { warm } from '../gateway/writes';

/** The user replication writes as: not an admin, recognised by `_design/mirror` through its role. */
export const REPLICATOR: Identity = { name: 'registry-replicator', roles: [REPLICATOR_ROLE] };

/** A packument as an npm registry serves it (full form). */
export interface UpstreamPackument {
  _rev?: string;
  name?: string;
  versions?: Record<string, VersionManifest>;
  'dist-tags'?: Record<string, string>;
  time?: Record<string, unknown>;
  [key: string]: unknown;
}

/** The upstream could not be asked (down, timed out, 5xx): worth trying again later. `status` when it answered. */
export class UpstreamUnavailable extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The revision number of a CouchDB revision (`12-abc` → 12), or 0. */
export function revGeneration(rev: unknown): number {
  const n = typeof rev === 'string' ? parseInt(rev, 10) : NaN;
  return Number.isFinite(n) ? n : 0;
}

const TOP_LEVEL_DROPPED = ['_id', '_rev', '_attachments', '_revisions', 'origin', 'origin_rev'];

/**
 * The document mirroring `packument` from `origin`: the upstream's fields as they are (tarball URLs
 * are rewritten when served), the tarballs already stored here kept for the versions still there.
 */
export function mirroredDoc(name: string, packument: UpstreamPackument, origin: string, existing: PackageDoc | null): PackageDoc {
  const doc: Record<string, unknown> = {};
  for (const key of Object.keys(packument)) if (TOP_LEVEL_DROPPED.indexOf(key) === -1) doc[key] = packument[key];
  const versions = packument.versions && typeof packument.versions === 'object' ? packument.versions : {};
  const attachments: Record<string, AttachmentStub> = {};
  for (const v of Object.keys(versions)) {
    const file = tarballFileName(name, v);
    const stored = existing && existing._attachments && existing._attachments[file];
    if (stored) attachments[file] = { ...stored, stub: true };
  }
  const result = {
    ...doc,
    _id: name,
    name,
    versions,
    'dist-tags': packument['dist-tags'] || {},
    time: packument.time || {},
    maintainers: Array.isArray(packument.maintainers) ? packument.maintainers : [],
    origin,
    _attachments: attachments,
  } as PackageDoc;
  if (typeof packument._rev === 'string') result.origin_rev = packument._rev;
  if (existing && existing._rev) result._rev = existing._rev;
  return result;
}

/** The packages whose `origin` is `origin` (the `byOrigin` view). */
export async function namesByOrigin(couch: Couch, db: string, origin: string): Promise<string[]> {
  const answer = (await couch.server.relax({ db, path: '_design/app/_view/byOrigin', qs: { key: origin } })) as { rows: { id: string }[] };
  return answer.rows.map((row) => row.id);
}

/**
 * What a tarball must match: the manifest's `dist.integrity`, or for old versions its `dist.shasum`
 * as an SRI sha1; null when the manifest has neither (such a tarball is refused).
 */
export function expectedIntegrity(manifest: VersionManifest): string | null {
  const dist = manifest.dist || ({} as VersionManifest['dist']);
  if (typeof dist.integrity === 'string' && ssri.parse(dist.integrity).toString()) return dist.integrity;
  if (typeof dist.shasum === 'string' && /^[0-9a-f]{40}$/i.test(dist.shasum)) return ssri.fromHex(dist.shasum, 'sha1').toString();
  return null;
}

export interface MirrorStats {
  packagesWritten: number;
  tarballsWritten: number;
  /** Names refused because a local package of the same name exists (or a private scope), with the reason. */
  refused: Map<string, string>;
  /** The latest failures, newest last. */
  failures: { name: string; reason: string; at: string }[];
}

/** Pull-through and storage of mirrored packages from the npm registry `upstream`. */
export class Mirror {
  readonly stats: MirrorStats = { packagesWritten: 0, tarballsWritten: 0, refused: new Map(), failures: [] };
  private readonly pulls = new SingleFlight<PackageDoc | null>();
  private readonly tarballPulls = new SingleFlight<void>();
  /** When each mirrored packument was last compared with the upstream (pull-through without a feed). */
  private readonly checkedAt = new Map<string, number>();

  constructor(
    private readonly ctx: Context,
    readonly upstream: string,
  ) {}

  recordFailure(name: string, reason: string): void {
    this.stats.failures.push({ name, reason, at: new Date().toISOString() });
    if (this.stats.failures.length > 50) this.stats.failures.shift();
  }

  private timeoutSignal(): AbortSignal {
    return AbortSignal.timeout(this.ctx.config.upstreamTimeoutMs);
  }

  private unavailable(err: unknown): UpstreamUnavailable {
    return new UpstreamUnavailable('the upstream registry ' + this.upstream + ' ' + fetchFailure(err).words);
  }

  /** The upstream's full packument of `name`, or null when it has none (404). */
  async fetchPackument(name: string): Promise<UpstreamPackument | null> {
    let response: Response;
    try {
      response = await fetch(this.upstream + upstreamPath(name, []), { headers: { accept: 'application/json' }, signal: this.timeoutSignal() });
    } catch (err) {
      throw this.unavailable(err);
    }
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new UpstreamUnavailable('the upstream registry ' + this.upstream + ' answered ' + response.status + ' for "' + name + '"', response.status);
    }
    try {
      const body = (await response.json()) as UpstreamPackument;
      if (typeof body !== 'object' || body === null || (body.name !== undefined && body.name !== name)) throw new Error('not a packument');
      return body;
    } catch {
      throw new UpstreamUnavailable('the upstream registry ' + this.upstream + ' sent something that is not the packument of "' + name + '"');
    }
  }

  /** Bookkeeping after replication wrote revision `rev` of a package. */
  private written(name: string, rev: string): void {
    this.stats.packagesWritten++;
    this.stats.refused.delete(name);
    changedHere(this.ctx, name, rev);
  }

  /** The mirrored packages of this upstream (for the sweeps of the partial modes). */
  async mirroredNames(): Promise<string[]> {
    return namesByOrigin(this.ctx.couch, this.ctx.config.mirrorDb, this.upstream);
  }

  /** The mirrored copy of `name`, or null. */
  readMirrored(name: string): Promise<PackageDoc | null> {
    return getPackageDoc(this.ctx.mirrored, name);
  }

  /** The package published here under `name` (a tombstone too), or null: it shadows the upstream's. */
  readLocal(name: string): Promise<PackageDoc | null> {
    return getPackageDoc(this.ctx.registry, name);
  }

  /** Records that the upstream's `name` is not served because a local package has the name. */
  shadowed(name: string): void {
    this.stats.refused.set(name, shadowedReason(name));
  }

  /**
   * Stores the upstream's `packument` of `name` over the mirrored copy `existing` (or as new), as the
   * replication user. Returns the stored document, or null when the database refused it (a private
   * scope); the refusal is recorded.
   */
  async store(name: string, packument: UpstreamPackument, existing: PackageDoc | null): Promise<PackageDoc | null> {
    const doc = mirroredDoc(name, packument, this.upstream, existing);
    try {
      const written = await this.ctx.couch.putAs(REPLICATOR, this.ctx.config.mirrorDb, doc);
      const stored = { ...doc, _rev: written.rev };
      this.written(name, written.rev);
      warm(this.ctx, stored);
      return stored;
    } catch (err) {
      const failure = couchFailure(err);
      if (failure.statusCode === 403) {
        this.stats.refused.set(name, failure.reason);
        return null;
      }
      throw err;
    }
  }

  /**
   * Writes mirrored documents (JSON) in one `_bulk_docs` as the replication user. Returns, per package
   * that was not written, `refused` (recorded with its reason) or the reason to try again.
   */
  async storeMany(docs: string[]): Promise<Map<string, string>> {
    const path = docPath(this.ctx.config.mirrorDb) + '/_bulk_docs';
    const results = (await this.ctx.couch.requestAs(REPLICATOR, 'POST', path, '{"docs":[' + docs.join(',') + ']}', 'application/json')) as {
      id: string;
      rev?: string;
      error?: string;
      reason?: string;
    }[];
    const failed = new Map<string, string>();
    for (const result of results) {
      if (!result.error && result.rev) {
        this.written(result.id, result.rev);
      } else if (result.error === 'forbidden') {
        this.stats.refused.set(result.id, result.reason || 'refused by _design/mirror');
        failed.set(result.id, 'refused');
      } else {
        failed.set(result.id, (result.error || 'error') + ': ' + (result.reason || 'not written'));
      }
    }
    return failed;
  }

  /** Deletes the mirrored copy of a package the upstream deleted (a local package of that name is another document). */
  async remove(name: string): Promise<boolean> {
    const existing = await this.readMirrored(name);
    if (!existing) return false;
    const path = docPath(this.ctx.config.mirrorDb, name) + '?rev=' + encodeURIComponent(existing._rev as string);
    const answer = await this.ctx.couch.requestAs(REPLICATOR, 'DELETE', path, '', 'application/json');
    changedHere(this.ctx, name, answer.rev);
    this.stats.packagesWritten++;
    return true;
  }

  /** Whether pull-through may fetch `name` at all (private scopes never come from the upstream). */
  mayPull(name: string): boolean {
    return !inPrivateScope(name, this.ctx.config.replication.privateScopes);
  }

  /**
   * Pull-through: fetches `name` from the upstream, stores it as a mirrored package and returns it;
   * null when the upstream does not have it either. Concurrent requests share one fetch.
   */
  pull(name: string): Promise<PackageDoc | null> {
    return this.pulls.run(name, () => this.fetchAndStore(name));
  }

  private async fetchAndStore(name: string): Promise<PackageDoc | null> {
    let packument: UpstreamPackument | null;
    try {
      packument = await this.fetchPackument(name);
    } catch (err) {
      throw new HttpError(502, 'Package "' + name + '" is not here yet and ' + (err as Error).message + '; packages already mirrored are still served. Try again later.');
    }
    if (!packument) return null;
    const local = await this.readLocal(name);
    if (local) {
      this.shadowed(name);
      return local;
    }
    const stored = await this.store(name, packument, await this.readMirrored(name));
    this.checkedAt.set(name, Date.now());
    if (stored && this.ctx.config.upstreamTarballs === 'eager') void this.fetchAllTarballs(stored);
    return stored || this.readMirrored(name);
  }

  /**
   * Without a change feed, a mirrored packument is compared with the upstream when it is read and
   * older than `maxAgeMs`; the stored copy is served meanwhile and whenever the upstream is down.
   */
  refreshIfStale(name: string): void {
    const { config } = this.ctx;
    if (config.replication.feed || config.upstreamMode !== 'mirror') return;
    const last = this.checkedAt.get(name) || 0;
    if (Date.now() - last < config.upstreamMaxAgeSeconds * 1000 || this.pulls.has(name)) return;
    this.checkedAt.set(name, Date.now());
    this.pull(name).catch((err) => this.ctx.log.warn({ package: name, err: (err as Error).message }, 'refreshing a mirrored package failed'));
  }

  /**
   * Fetches the tarball `file` of the mirrored package `doc` from the upstream's `dist.tarball`,
   * verifies it against the version's integrity while it streams to a temporary file, and stores it
   * as an attachment. Resolves once it is stored (the caller then serves it from CouchDB);
   * concurrent requests share one download. Nothing is held in memory.
   */
  tarball(doc: PackageDoc, file: string): Promise<void> {
    return this.tarballPulls.run(doc.name + '/' + file, () => this.fetchTarball(doc, file));
  }

  private async fetchTarball(doc: PackageDoc, file: string): Promise<void> {
    const version = Object.keys(doc.versions).find((v) => tarballFileName(doc.name, v) === file);
    const manifest = version ? doc.versions[version] : undefined;
    const source = manifest && manifest.dist && typeof manifest.dist.tarball === 'string' ? manifest.dist.tarball : undefined;
    if (!manifest || !source) throw new HttpError(404, 'No tarball ' + file + ' for "' + doc.name + '": the version does not exist upstream.');
    const integrity = expectedIntegrity(manifest);
    if (!integrity) {
      this.recordFailure(doc.name, 'tarball ' + file + ' has neither dist.integrity nor dist.shasum; refused');
      throw new HttpError(502, 'The upstream\'s ' + doc.name + '@' + version + ' has neither dist.integrity nor dist.shasum, so its tarball cannot be verified; it is not served.');
    }
    const folder = join(this.ctx.config.dataDir, 'cache', 'mirror-downloads');
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    const temp = join(folder, randomBytes(12).toString('hex') + '.tgz');
    try {
      let response: Response;
      const abort = new AbortController();
      // The time-out is for the upstream to answer; the body may take as long as it streams.
      const timer = setTimeout(() => abort.abort(new DOMException('timed out', 'TimeoutError')), this.ctx.config.upstreamTimeoutMs);
      try {
        response = await fetch(source, { signal: abort.signal });
      } catch (err) {
        throw new HttpError(502, 'The tarball ' + file + ' is not here yet and ' + this.unavailable(err).message + '. Try again later.');
      } finally {
        clearTimeout(timer);
      }
      if (!response.ok || !response.body) {
        await response.body?.cancel();
        throw new HttpError(502, 'The tarball ' + file + ' is not here yet and the upstream registry ' + this.upstream + ' answered ' + response.status + ' for it. Try again later.');
      }
      try {
        await pipeline(Readable.fromWeb(response.body as import('stream/web').ReadableStream), ssri.integrityStream({ integrity }), createWriteStream(temp));
      } catch (err) {
        if ((err as { code?: string }).code !== 'EINTEGRITY') {
          throw new HttpError(502, 'The download of ' + file + ' from the upstream registry ' + this.upstream + ' broke off (' + (err as Error).message + '). Try again.');
        }
        this.recordFailure(doc.name, 'tarball ' + file + ' from ' + source + ' does not match its dist.integrity; refused');
        throw new HttpError(502, 'The upstream\'s tarball ' + file + ' does not match its dist.integrity; it was refused and not stored. Tell the upstream\'s admins.');
      }
      await this.storeTarball(doc.name, file, temp);
    } finally {
      rmSync(temp, { force: true });
    }
  }

  /** Adds a verified tarball (a file) to the mirrored document, on its current revision. */
  private async storeTarball(name: string, file: string, path: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.readMirrored(name);
      if (!current) throw new HttpError(404, 'No tarball ' + file + ' for "' + name + '": the package changed meanwhile; ask again.');
      if (current._attachments && current._attachments[file]) return;
      const target = docPath(this.ctx.config.mirrorDb, name, file) + '?rev=' + encodeURIComponent(current._rev as string);
      try {
        const answer = await this.ctx.couch.putFileAs(REPLICATOR, target, path, TARBALL_CONTENT_TYPE);
        this.stats.tarballsWritten++;
        changedHere(this.ctx, name, answer.rev);
        return;
      } catch (err) {
        const failure = couchFailure(err);
        // 409: changed meanwhile; 412 missing_stub: a cluster copy is a few milliseconds behind.
        if ((failure.statusCode === 409 || failure.error === 'missing_stub') && attempt < 5) {
          await sleep(25 * attempt);
          continue;
        }
        throw new HttpError(502, 'The tarball ' + file + ' was fetched and verified but could not be stored (' + failure.reason + '). Try again.');
      }
    }
  }

  /** Eager tarball policy: every tarball of `doc` not stored yet, one after the other. */
  async fetchAllTarballs(doc: PackageDoc): Promise<void> {
    for (const v of Object.keys(doc.versions)) {
      const file = tarballFileName(doc.name, v);
      if (doc._attachments && doc._attachments[file]) continue;
      try {
        await this.tarball(doc, file);
      } catch (err) {
        this.recordFailure(doc.name, (err as Error).message);
      }
    }
  }
}
