/**
 * Mirrored packages: copies of an npm registry upstream's packuments stored in the mirror database
 * (`<db>-mirror`, `origin` = the upstream's URL), their tarballs fetched, verified against the
 * upstream's integrity and stored as attachments. Used by the pull-through (a name asked for and not
 * here) and by the change-feed follower. Every write is made as the replication user, so
 * `_design/mirror` refuses what replication must never do (mark a package as local, bring a private
 * scope). A name published here is never fetched: the local package shadows it.
 */
import { createHash, randomBytes } from 'crypto';
import { createWriteStream, mkdirSync, readFileSync, rmSync, statSync } from 'fs';
import { join } from 'path';
import { Logger } from 'pino';
import { pipeline } from 'stream/promises';
import ssri from 'ssri';
import { Config, UpstreamMode } from '../config';
import { notFound, unavailable, upstreamFailed } from '../core/errors';
import { mirroredDoc, revGeneration, UpstreamPackument } from '../core/mirrored';
import { tarballFileName, versionOfTarball } from '../core/names';
import { inPrivateScope, REPLICATOR_ROLE, shadowedReason } from '../core/provenance';
import { TARBALL_CONTENT_TYPE } from '../core/rules';
import { OriginValidators, PackageDoc, VersionManifest } from '../core/types';
import { Couch, couchFailure, Database, docPath, Identity } from '../couchdb/client';
import { Batcher } from '../lib/batcher';
import { linear, retry } from '../lib/retry';
import { SingleFlight } from '../lib/single-flight';
import { Dependency, Prefetcher, versionFor } from './prefetch';
import { FetchedPackument, NOT_MODIFIED, readAll, UpstreamAnswer, UpstreamRegistry } from './upstream';
import { AdvisoryClient, checkOnArrival, RecordChange } from './advisories';
import { AdvisoryPolicy } from '../core/advisories';

/** Tarballs up to this size are served from memory as soon as they are verified, while they are stored. */
const SERVE_WHILE_STORING = 8 * 1024 * 1024;
/**
 * Pulled-through packages are stored once pull-through has been quiet this long (an install asks
 * for one package after another), or once the first has waited `STORE_MAX_WAIT_MS`, or when their
 * packuments and tarballs reach `STORE_MAX_BYTES`: together, each with its tarballs, in few
 * `_bulk_docs`, instead of a write per package and per tarball while the install waits for its
 * next answer.
 */
const STORE_QUIET_MS = 1_000;
const STORE_MAX_WAIT_MS = 10_000;
const STORE_MAX_BYTES = 32 * 1024 * 1024;
/**
 * A package none of whose tarballs is held yet waits this long at most (or until a tarball comes):
 * npm reads packuments for a while before it downloads tarballs, and a tarball added to a package
 * already stored is a new revision of the whole document, which CouchDB validates, writes and hands
 * to every reader of its changes again.
 */
const STORE_HOLD_MS = 30_000;
/** ...unless pull-through was quiet this long: then no client is at work, and what waits is stored. */
const STORE_HOLD_QUIET_MS = 3_000;
/** Tarballs up to this size are written inside their package's first write; larger ones are attached after it. */
const INLINE_TARBALL_BYTES = 1024 * 1024;
/** About this much JSON per `_bulk_docs` of waiting packages. */
const BULK_BYTES = 4 * 1024 * 1024;

/** A pulled-through package waiting to be stored, with the verified tarballs served meanwhile. */
interface Waiting {
  name: string;
  doc: PackageDoc;
  packument: UpstreamPackument;
  /** Its verified tarballs served so far, written with it (one served after it was taken to be written is attached after it). */
  tarballs: Map<string, Buffer>;
  /** When the upstream answered with it. */
  fetchedAt: number;
  stored(doc: PackageDoc | null): void;
  /** Its dependencies were queued to be fetched ahead (once a client had it: prefetching runs one level ahead of clients). */
  expanded?: boolean;
  /** The ranges its dependents asked for (a few): the versions whose dependencies are fetched ahead, as npm will pick them. */
  specs?: Set<string>;
}

/** Ranges of a waiting package's dependents kept at most. */
const MAX_SPECS = 8;

/** A waiting package's document with its tarballs as attachments, each described by `attachment` (inline bytes, or a stub once stored). */
function withTarballs(entry: Waiting, attachment: (data: Buffer) => Record<string, unknown>): PackageDoc {
  const attachments: Record<string, unknown> = { ...(entry.doc._attachments || {}) };
  for (const [file, data] of entry.tarballs) attachments[file] = { content_type: TARBALL_CONTENT_TYPE, ...attachment(data) };
  return { ...entry.doc, _attachments: attachments } as PackageDoc;
}

/**
 * What `recentDoc` keeps of a stored document: its identity, revision, origin and attachments, and of
 * each version only its `dist` (where its tarball comes from, and its integrity), all that serving and
 * fetching a tarball read (a whole packument can be megabytes).
 */
function thinned(doc: PackageDoc): PackageDoc {
  const versions: Record<string, VersionManifest> = {};
  for (const [version, manifest] of Object.entries(doc.versions || {})) {
    versions[version] = { name: manifest.name, version: manifest.version, dist: manifest.dist } as VersionManifest;
  }
  const { _id, _rev, name, origin, _attachments } = doc;
  return { _id, _rev, name, origin, 'dist-tags': doc['dist-tags'], time: doc.time, maintainers: doc.maintainers, versions, _attachments } as PackageDoc;
}

/** The start of the revision a pulled-through document is served with while CouchDB stores it (CouchDB's start at 1-). */
const PROVISIONAL = '0-';

/** Whether `doc` is a pulled-through document not stored yet (served with a revision of its own making). */
export function isProvisional(doc: PackageDoc): boolean {
  return String(doc._rev).startsWith(PROVISIONAL);
}

/**
 * What a caller of `pull` knows of a name here: `nothing`; `absent`: it has just read both databases
 * (or its cache of names read as absent says so) and found neither has it, so the local database is
 * not read again; `unlisted`: the search index, current but for a poll, has no document of that
 * name, so the mirror database is not read and the local one is read while the upstream is asked. A
 * local package written meanwhile still shadows the mirrored one on the next read.
 */
export type Known = 'nothing' | 'absent' | 'unlisted';

/**
 * What this gateway keeps of the documents it stored lately, for the tarball requests that follow
 * (`recentDoc`, `thinned`): at most this many documents, and this many versions in all (a few hundred
 * bytes each). npm asks for the tarballs of a tree once it has read all of its packuments: with the
 * 500 whole documents kept before, a cold install of a tree of 888 packages read about a hundred of
 * them back from CouchDB, whole, to learn where a tarball comes from.
 */
const RECENT_DOCS = 10_000;
const RECENT_VERSIONS = 200_000;

/** The user replication writes as: not an admin, recognised by `_design/mirror` through its role. */
export const REPLICATOR: Identity = { name: 'registry-replicator', roles: [REPLICATOR_ROLE] };

/** What the mirror needs from the registry it runs in. */
export interface MirrorHost {
  couch: Couch;
  config: Config;
  log: Logger;
  /**
   * Told after replication wrote revision `rev` of a package (the gateway drops it from its caches),
   * with the whole document when replication has it (the gateway then serves it from memory at once);
   * `tarballOnly` when the write only added a tarball (the tarballs already served stay valid);
   * `tarballs`: the verified bytes of the tarballs written with it (the gateway keeps them to serve).
   */
  written(name: string, rev: string, doc?: PackageDoc, tarballOnly?: boolean, tarballs?: ReadonlyMap<string, Buffer>): void;
  /**
   * The package published here under `name`, or null, as the gateway knows it (`LocalAbsence`: a name
   * known not to be there is not read again); without it, the local database is read.
   */
  readLocal?(name: string): Promise<PackageDoc | null>;
  /**
   * Told of each document the feed follower stored in bulk (`storeMany`), as stored (its revision
   * set), after `written`: the gateway's search index takes it, so its feed brings only the revision.
   * The caches are not warmed with it (an ingest is not what clients read next).
   */
  indexed?(doc: PackageDoc): void;
  /**
   * Whether neither package database has `name`, as far as the gateway knows without reading them
   * (its search index, current but for a poll): pull-through then fetches it ahead of the client.
   */
  unlisted?(name: string): boolean;
  /**
   * The package as clients are served it (without the versions the supply-chain policy holds back):
   * what npm picks from, so what pull-through fetches ahead for it.
   */
  asServed?(doc: PackageDoc): PackageDoc;
  /**
   * The vulnerability policy in force (`advisories` of the supply-chain policy): while it is on,
   * versions are asked about at the upstream's advisory endpoint when they arrive.
   */
  advisoryPolicy?(): AdvisoryPolicy | undefined;
  /** Told of advisory records that changed (the gateway tells the webhooks what they hold back). */
  advisoriesChanged?(changes: RecordChange[]): void;
}

/** Why a package of the upstream is not mirrored: a local package of that name, or a refusal by `_design/mirror`. */
export interface Refusal {
  kind: 'shadowed' | 'refused';
  reason: string;
}

/** A package that one bulk write did not store: refused for good, or failed for now (worth another try). */
export interface StoreFailure {
  refused: boolean;
  reason: string;
}

/** The packages whose `origin` is `origin` (the `byOrigin` view). */
export async function namesByOrigin(couch: Couch, db: string, origin: string): Promise<string[]> {
  return (await couch.db(db).view<null>('byOrigin', { key: origin })).rows.map((row) => row.id);
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
  /** Names not mirrored because a local package of the same name exists, or `_design/mirror` refused them. */
  refused: Map<string, Refusal>;
  /** The latest failures, newest last. */
  failures: { name: string; reason: string; at: string }[];
  revalidations: RevalidationCounts;
}

/**
 * Mirrored packuments compared with the upstream when read (pull-through without a feed): answered
 * 304 (`notModified`), answered in full with what the copy holds (`unchanged`: nothing written), or
 * changed (written).
 */
export interface RevalidationCounts {
  notModified: number;
  unchanged: number;
  changed: number;
}

/** What a mirror knows of its upstream's route (replication/routes.ts); the single-upstream settings otherwise. */
export interface MirrorRoute {
  /** The upstream's client, with its time limit and token. */
  registry?: UpstreamRegistry;
  /** Its mode (`UPSTREAM_MODE` by default): pull-through and the refresh of stale copies in `mirror` only. */
  mode?: UpstreamMode;
  /** Its change feed (`REPLICATION_FEED` by default): with one, copies are kept fresh by the feed, not on reads. */
  feed?: string;
  /** Whether a name is routed to this upstream (every name by default): no other name is ever fetched from it. */
  routesHere?(name: string): boolean;
}

/** Pull-through and storage of mirrored packages from the npm registry `upstream`. */
export class Mirror {
  readonly stats: MirrorStats = { packagesWritten: 0, tarballsWritten: 0, refused: new Map(), failures: [], revalidations: { notModified: 0, unchanged: 0, changed: 0 } };
  readonly upstream: string;
  readonly registry: UpstreamRegistry;
  /** The upstream's bulk advisory endpoint (the vulnerability policy). */
  readonly advisories: AdvisoryClient;
  private readonly pulls = new SingleFlight<PackageDoc | null>();
  private readonly tarballPulls = new SingleFlight<Buffer | null>();
  /** Tarballs being fetched ahead of the client (`tarballAhead`), by package and file. */
  private readonly tarballsAhead = new SingleFlight<void>();
  /**
   * When each mirrored packument was last compared with the upstream (pull-through without a feed),
   * and the validators of the copy then held, so that the next comparison asks without reading it.
   */
  private readonly checked = new Map<string, { at: number; validators?: OriginValidators }>();
  /** Mirrored packuments being compared with the upstream now. */
  private readonly revalidating = new Set<string>();
  private readonly local: Database<PackageDoc>;
  private readonly mirrored: Database<PackageDoc>;
  /**
   * The documents this gateway stored last (by name, a few hundred), so that the tarball requests
   * that follow a pull-through find the document without reading it again. Only a caller that knows
   * the revision it wants (from its coherent packument cache) uses one.
   */
  private readonly recent = new Map<string, PackageDoc>();
  private recentVersions = 0;
  /** Documents handed out by pull-through while CouchDB stores them. */
  private readonly storing = new Map<string, { doc: PackageDoc; stored: Promise<PackageDoc | null> }>();
  /** Pulled-through packages not written yet, by name. */
  private readonly waiting = new Map<string, Waiting>();
  private readonly behind = new Batcher<Waiting>(
    (batch) => this.storeWaiting(batch),
    { quietMs: STORE_QUIET_MS, maxWaitMs: STORE_MAX_WAIT_MS, maxBytes: STORE_MAX_BYTES, holdMs: STORE_HOLD_MS, holdQuietMs: STORE_HOLD_QUIET_MS },
    (batch) => {
      for (const entry of batch) this.waiting.delete(entry.name);
    },
    (entry) => entry.tarballs.size > 0,
  );

  /** The dependencies of pulled packages, fetched ahead of the client. */
  private readonly prefetch: Prefetcher;

  /** This upstream's mode and feed. */
  readonly mode: UpstreamMode;
  readonly feed?: string;
  private readonly routesHere: (name: string) => boolean;

  constructor(
    private readonly host: MirrorHost,
    upstream: string,
    route: MirrorRoute = {},
  ) {
    this.upstream = upstream;
    this.registry = route.registry || new UpstreamRegistry(upstream, host.config);
    this.mode = route.mode || host.config.upstreamMode;
    this.feed = route.registry ? route.feed : route.feed || host.config.replication.feed;
    this.routesHere = route.routesHere || (() => true);
    this.advisories = new AdvisoryClient(this.registry, this.registry.timeoutMs);
    this.prefetch = new Prefetcher(
      host.config.upstreamPrefetch,
      (name) => !!host.unlisted && this.mayPull(name) && !this.pulls.has(name) && !this.storing.has(name) && host.unlisted(name),
      // Shared with a client's pull of the same name, but not expanded: that waits for a client.
      (dependency) =>
        this.pullOnce(dependency.name, 'unlisted')
          .then((doc) => {
            this.wantedWith(dependency);
            return doc && this.tarballAhead(doc, dependency);
          })
          .catch((err) => host.log.debug({ package: dependency.name, err: (err as Error).message }, 'prefetching a dependency failed')),
    );
    this.local = host.couch.db<PackageDoc>(host.config.registryDb);
    this.mirrored = host.couch.db<PackageDoc>(host.config.mirrorDb);
  }

  private get config(): Config {
    return this.host.config;
  }

  recordFailure(name: string, reason: string): void {
    this.stats.failures.push({ name, reason, at: new Date().toISOString() });
    if (this.stats.failures.length > 50) this.stats.failures.shift();
  }

  /**
   * The upstream's full packument of `name` with its validators, or null when it has none (404);
   * asked conditionally with `since` (the validators of the copy held here), and then `NOT_MODIFIED`
   * when the upstream answered 304.
   */
  fetchPackument(name: string, since?: OriginValidators): Promise<FetchedPackument | null | typeof NOT_MODIFIED> {
    return this.registry.packumentSince(name, since);
  }

  /** Bookkeeping after replication wrote revision `rev` of a package. */
  private written(name: string, rev: string, doc?: PackageDoc, tarballOnly = false, tarballs?: ReadonlyMap<string, Buffer>): void {
    this.stats.packagesWritten++;
    this.stats.refused.delete(name);
    this.host.written(name, rev, doc, tarballOnly, tarballs);
  }

  /** Stores at once what pull-through still holds (for a status read from the database, and at stop); resolves once it is written. */
  storeNow(): Promise<void> {
    return this.behind.flush();
  }

  stop(): Promise<void> {
    this.prefetch.stop();
    return this.storeNow();
  }

  /** The mirrored packages of this upstream (for the sweeps of the partial modes). */
  async mirroredNames(): Promise<string[]> {
    return namesByOrigin(this.host.couch, this.config.mirrorDb, this.upstream);
  }

  /** The mirrored copy of `name`, or null. */
  readMirrored(name: string): Promise<PackageDoc | null> {
    return name.startsWith('_') ? Promise.resolve(null) : this.mirrored.get(name);
  }

  /** The package published here under `name` (a tombstone too), or null: it shadows the upstream's. */
  readLocal(name: string): Promise<PackageDoc | null> {
    if (name.startsWith('_')) return Promise.resolve(null);
    return this.host.readLocal ? this.host.readLocal(name) : this.local.get(name);
  }

  /** Records that the upstream's `name` is not served because a local package has the name. */
  shadowed(name: string): void {
    this.stats.refused.set(name, { kind: 'shadowed', reason: shadowedReason(name) });
  }

  /**
   * Stores the upstream's `packument` of `name` over the mirrored copy `existing` (or as new), as the
   * replication user. Returns the stored document, or null when the database refused it (a private
   * scope); the refusal is recorded.
   */
  async store(name: string, packument: UpstreamPackument, existing: PackageDoc | null, validators?: OriginValidators): Promise<PackageDoc | null> {
    const doc = mirroredDoc(name, packument, this.upstream, existing, undefined, validators);
    await this.checkAdvisories([doc]);
    return this.storeDoc(name, doc).catch((err) => {
      if (couchFailure(err).statusCode !== 403) throw err;
      return null;
    });
  }

  /**
   * With the vulnerability policy on, the arrival check: the documents whose versions were not all
   * asked about at the upstream's advisory endpoint get its answer as their `origin_advisories` (in
   * place), before they are stored and served. The changes are told to the host (the webhooks) unless
   * `quiet` (the caller tells them once they are written, `advisoriesWritten`).
   */
  async checkAdvisories(docs: PackageDoc[], quiet = false): Promise<RecordChange[]> {
    if (!this.host.advisoryPolicy || !this.host.advisoryPolicy()) return [];
    const changes = await checkOnArrival(this.advisories, docs, this.host.log);
    if (!quiet) this.advisoriesWritten(changes);
    return changes;
  }

  /** Tells the host of advisory records written. */
  advisoriesWritten(changes: RecordChange[]): void {
    if (changes.length && this.host.advisoriesChanged) this.host.advisoriesChanged(changes);
  }

  /** Writes a mirrored document as the replication user; a refusal (403) is recorded and thrown. */
  private async storeDoc(name: string, doc: PackageDoc): Promise<PackageDoc> {
    try {
      const written = await this.host.couch.putAs(REPLICATOR, this.config.mirrorDb, doc);
      const stored = { ...doc, _rev: written.rev };
      this.remember(stored);
      this.written(name, written.rev, stored);
      return stored;
    } catch (err) {
      const failure = couchFailure(err);
      if (failure.statusCode === 403) this.stats.refused.set(name, { kind: 'refused', reason: failure.reason });
      throw err;
    }
  }

  /**
   * Writes mirrored documents (JSON) in one `_bulk_docs` as the replication user. Returns the packages
   * that were not written: refused for good (recorded with the reason), or failed for now. `objects`:
   * the same documents parsed, for the host's `indexed`.
   */
  async storeMany(docs: string[], objects?: PackageDoc[]): Promise<Map<string, StoreFailure>> {
    const path = docPath(this.config.mirrorDb) + '/_bulk_docs';
    const results = (await this.host.couch.requestAs(REPLICATOR, 'POST', path, '{"docs":[' + docs.join(',') + ']}', 'application/json')) as {
      id: string;
      rev?: string;
      error?: string;
      reason?: string;
    }[];
    const failed = new Map<string, StoreFailure>();
    const byName = objects && this.host.indexed ? new Map(objects.map((doc) => [doc._id, doc])) : null;
    for (const result of results) {
      if (!result.error && result.rev) {
        this.written(result.id, result.rev);
        const doc = byName && byName.get(result.id);
        if (doc) (this.host.indexed as (doc: PackageDoc) => void)({ ...doc, _rev: result.rev });
      } else if (result.error === 'forbidden') {
        const reason = result.reason || 'refused by _design/mirror';
        this.stats.refused.set(result.id, { kind: 'refused', reason });
        failed.set(result.id, { refused: true, reason });
      } else {
        failed.set(result.id, { refused: false, reason: (result.error || 'error') + ': ' + (result.reason || 'not written') });
      }
    }
    return failed;
  }

  /** Deletes the mirrored copy of a package the upstream deleted (a local package of that name is another document). */
  async remove(name: string): Promise<boolean> {
    const existing = await this.readMirrored(name);
    if (!existing) return false;
    const path = docPath(this.config.mirrorDb, name) + '?rev=' + encodeURIComponent(existing._rev as string);
    const answer = await this.host.couch.requestAs(REPLICATOR, 'DELETE', path, '', 'application/json');
    this.host.written(name, answer.rev);
    this.stats.packagesWritten++;
    return true;
  }

  /** Whether `name` is in a private scope: never taken from any upstream. */
  isPrivate(name: string): boolean {
    return inPrivateScope(name, this.config.replication.privateScopes);
  }

  /** Records that the upstream's `name` is not mirrored: its scope is private here. */
  refusePrivate(name: string): void {
    this.stats.refused.set(name, { kind: 'refused', reason: 'private scope: "' + name + '" is in a private scope of this registry and is never taken from an upstream.' });
  }

  /**
   * Whether `name` may be fetched from this upstream at all: private scopes never come from any
   * upstream, and a name routed to another upstream never from this one (pull-through, prefetching,
   * the feed).
   */
  mayPull(name: string): boolean {
    return !this.isPrivate(name) && this.routesHere(name);
  }

  /**
   * Pull-through: fetches `name` from the upstream, stores it as a mirrored package and returns it;
   * null when the upstream does not have it either. Concurrent requests share one fetch. `known`:
   * what the caller knows of `name` here (see `Known`).
   */
  pull(name: string, known: Known = 'nothing'): Promise<PackageDoc | null> {
    return this.pullOnce(name, known).then((doc) => {
      this.fetchDependenciesAhead(name);
      return doc;
    });
  }

  /** Pull-through of `name`, one fetch for all who ask at once (clients and prefetching). */
  private pullOnce(name: string, known: Known): Promise<PackageDoc | null> {
    return this.pulls.run(name, () => this.fetchAndStore(name, known));
  }

  /**
   * A client has `name`, pulled through and waiting to be stored: the packages it depends on are
   * fetched ahead of the client's next requests. Only what a client asked for is expanded, so that
   * prefetching stays one level ahead of clients, never a cascade through the whole upstream.
   */
  private fetchDependenciesAhead(name: string): void {
    const entry = this.waiting.get(name);
    if (!entry || entry.expanded) return;
    entry.expanded = true;
    // Once the client's answer is on its way: starting the fetches would otherwise delay it.
    setImmediate(() => {
      const served = this.asServed(entry.doc) as UpstreamPackument;
      // The versions its dependents' ranges pick (npm picks the same), else its latest: expanding the
      // latest of a package the tree pins to an older major fetched what npm never asks for.
      const picked = entry.specs ? [...entry.specs].map((spec) => versionFor(served, spec)).filter((version): version is string => !!version) : [];
      for (const dependency of this.prefetch.dependenciesOf(served, [...new Set(picked)])) this.wantedWith(dependency);
    });
  }

  /** Records the range a dependent asks `dependency` with, while that package waits to be expanded. */
  private wantedWith(dependency: Dependency): void {
    const entry = this.waiting.get(dependency.name);
    if (!entry || entry.expanded) return;
    if (!entry.specs) entry.specs = new Set();
    if (entry.specs.size < MAX_SPECS) entry.specs.add(dependency.spec);
  }

  private asServed(doc: PackageDoc): PackageDoc {
    return this.host.asServed ? this.host.asServed(doc) : doc;
  }

  /** The document of `name` at revision `rev` if this gateway stored it lately. */
  recentDoc(name: string, rev: string): PackageDoc | null {
    const doc = this.recent.get(name);
    return doc && doc._rev === rev ? doc : null;
  }

  private remember(doc: PackageDoc): void {
    this.forget(doc.name);
    const kept = thinned(doc);
    this.recent.set(doc.name, kept);
    this.recentVersions += Object.keys(kept.versions).length;
    for (const oldest of this.recent.keys()) {
      if (this.recent.size <= RECENT_DOCS && this.recentVersions <= RECENT_VERSIONS) break;
      this.forget(oldest);
    }
  }

  private forget(name: string): void {
    const kept = this.recent.get(name);
    if (!kept) return;
    this.recent.delete(name);
    this.recentVersions -= Object.keys(kept.versions).length;
  }

  private async fetchAndStore(name: string, known: Known): Promise<PackageDoc | null> {
    const storing = this.storing.get(name);
    if (storing) {
      // Read while it waits: the client is still at work, so pull-through is not quiet yet.
      if (this.waiting.has(name)) this.behind.grow();
      return storing.doc;
    }
    // A name the index has not seen: the local database is asked while the upstream is.
    const [fetched, local] = await Promise.all([
      this.registry.sizedPackument(name).then(
        (sized) => ({ packument: sized ? sized.body : null, bytes: sized ? sized.bytes : 0, validators: sized ? sized.validators : undefined }),
        (err: Error) => ({ err }),
      ),
      known === 'unlisted' ? this.readLocal(name) : null,
    ]);
    if (local) {
      if ('packument' in fetched && fetched.packument) this.shadowed(name);
      return local;
    }
    if ('err' in fetched) {
      throw upstreamFailed('Package "' + name + '" is not here yet and ' + fetched.err.message + '; packages already mirrored are still served. Try again later.');
    }
    const { packument, bytes, validators } = fetched;
    if (!packument) return null;
    if (known !== 'nothing' && this.config.upstreamTarballs !== 'eager') return await this.storeBehind(name, packument, bytes, validators);
    if (known !== 'unlisted') {
      const shadowing = await this.readLocal(name);
      if (shadowing) {
        this.shadowed(name);
        return shadowing;
      }
    }
    const stored = await this.store(name, packument, await this.readMirrored(name), validators);
    this.checkedNow(name, validators);
    if (stored && this.config.upstreamTarballs === 'eager') void this.fetchAllTarballs(stored);
    return stored || this.readMirrored(name);
  }

  /**
   * A package neither database had a moment ago: its document is handed back at once, to be served
   * until CouchDB has stored it (with a revision of its own making until then: `0-` and a digest of
   * what it holds), and the tarball requests that follow find it here. It waits to be stored with
   * the others pull-through brings (`STORE_QUIET_MS`), its tarballs with it: until it holds a tarball,
   * it is left waiting while pull-through is busy (at most `STORE_HOLD_MS`). A failure to store is
   * logged and recorded; the next request fetches the package again, as after a crash.
   */
  private async storeBehind(name: string, packument: UpstreamPackument, bytes: number, validators?: OriginValidators): Promise<PackageDoc> {
    const doc = mirroredDoc(name, packument, this.upstream, null, undefined, validators);
    // Served at once: with the vulnerability policy on, not before its versions were asked about.
    await this.checkAdvisories([doc]);
    const digest = createHash('sha1').update(JSON.stringify([doc.time, doc['dist-tags'], Object.keys(doc.versions)])).digest('hex');
    const served = { ...doc, _rev: PROVISIONAL + digest };
    let resolve: (doc: PackageDoc | null) => void = () => undefined;
    const stored = new Promise<PackageDoc | null>((r) => (resolve = r)).finally(() => {
      this.storing.delete(name);
      // As old as the upstream's answer it was made from, however long it waited to be stored.
      this.checked.set(name, { at: entry.fetchedAt, validators });
    });
    const entry: Waiting = { name, doc, packument, fetchedAt: Date.now(), tarballs: new Map(), stored: resolve };
    this.storing.set(name, { doc: served, stored });
    this.waiting.set(name, entry);
    // Held until stored: its packument counts towards what may wait, as its tarballs do.
    this.behind.add(entry, bytes);
    return served;
  }

  /** Writes waiting packages, each with its tarballs, in `_bulk_docs` of about `BULK_BYTES`. */
  private async storeWaiting(batch: Waiting[]): Promise<void> {
    let chunk: Waiting[] = [];
    let json: string[] = [];
    let bytes = 0;
    for (const entry of batch) {
      const text = JSON.stringify(withTarballs(entry, (data) => ({ data: data.toString('base64') })));
      if (chunk.length > 0 && bytes + text.length > BULK_BYTES) {
        await this.writeWaiting(chunk, json);
        [chunk, json, bytes] = [[], [], 0];
      }
      chunk.push(entry);
      json.push(text);
      bytes += text.length;
    }
    if (chunk.length > 0) await this.writeWaiting(chunk, json);
  }

  private async writeWaiting(chunk: Waiting[], json: string[]): Promise<void> {
    let results: { id: string; rev?: string; error?: string; reason?: string }[];
    try {
      results = await this.host.couch.requestAs(REPLICATOR, 'POST', docPath(this.config.mirrorDb) + '/_bulk_docs', '{"docs":[' + json.join(',') + ']}', 'application/json');
    } catch (err) {
      for (const entry of chunk) this.notStored(entry, (err as Error).message);
      return;
    }
    const byId = new Map(results.map((result) => [result.id, result]));
    for (const entry of chunk) {
      const result = byId.get(entry.name);
      if (result && result.rev && !result.error) {
        const stored = { ...withTarballs(entry, (data) => ({ length: data.length, stub: true })), _rev: result.rev };
        this.remember(stored);
        this.stats.tarballsWritten += entry.tarballs.size;
        // The tarballs served meanwhile are the ones written: they stay in the caches, with those
        // fetched ahead that no client asked for yet (npm asks once it has read the whole tree).
        this.written(entry.name, result.rev, stored, true, entry.tarballs);
        entry.stored(stored);
      } else if (result && result.error === 'conflict') {
        await this.storeOver(entry);
      } else {
        const reason = result ? (result.error || 'error') + ': ' + (result.reason || 'not written') : 'no answer for it';
        if (result && result.error === 'forbidden') this.stats.refused.set(entry.name, { kind: 'refused', reason: result.reason || reason });
        this.notStored(entry, reason);
      }
    }
  }

  /**
   * A waiting package stored meanwhile (by the feed, or another gateway): written over what is there
   * now, unless what is there copies a later upstream revision (the feed stored a change made after
   * this packument was fetched: it stays); then its tarballs, for the versions still there.
   */
  private async storeOver(entry: Waiting): Promise<void> {
    let stored: PackageDoc;
    try {
      const existing = await this.readMirrored(entry.name);
      const newer = !!existing && existing.origin === this.upstream && revGeneration(existing.origin_rev) > revGeneration(entry.packument._rev);
      const next = mirroredDoc(entry.name, entry.packument, this.upstream, existing, undefined, entry.doc.origin_validators);
      // The arrival check's answer, newer than what the document had.
      if (entry.doc.origin_advisories) next.origin_advisories = entry.doc.origin_advisories;
      stored = newer ? (existing as PackageDoc) : await this.storeDoc(entry.name, next);
      entry.stored(stored);
    } catch (err) {
      this.notStored(entry, (err as Error).message);
      return;
    }
    for (const [file, data] of entry.tarballs) {
      if (!versionOfTarball(stored, file)) continue;
      await this.storeTarball(entry.name, file, data).catch((err) => this.recordFailure(entry.name, (err as Error).message));
    }
  }

  private notStored(entry: Waiting, reason: string): void {
    this.recordFailure(entry.name, 'storing the packument failed: ' + reason);
    this.host.log.warn({ package: entry.name, err: reason }, 'a pulled-through packument could not be stored; it is fetched again on its next request');
    entry.stored(null);
  }

  /**
   * Whether `name` is being pulled through: fetched from the upstream now, or fetched and waiting to
   * be stored. The feed follower counts such a name as present (it is about to be), and applies a
   * change of it once `pulledThrough` resolves: the packument being stored may be older than the change.
   */
  pullingThrough(name: string): boolean {
    return this.pulls.has(name) || this.storing.has(name);
  }

  /** Resolves once the pull-through of `name` under way is over: stored, or given up (at once when none is). */
  async pulledThrough(name: string): Promise<void> {
    await this.pulls.current(name)?.catch(() => undefined);
    this.storeOneNow(name);
    await this.storing.get(name)?.stored;
  }

  /** Stores `name` now if it waits to be stored (alone: the others wait on). */
  private storeOneNow(name: string): void {
    const entry = this.waiting.get(name);
    if (entry) void this.behind.flush((waiting) => waiting === entry);
  }

  /** The mirrored document of `name` being stored now (its tarballs are fetched from the upstream meanwhile). */
  inFlight(name: string): PackageDoc | null {
    return this.storing.get(name)?.doc || null;
  }

  /**
   * Without a change feed, a mirrored packument is compared with the upstream when it is read and
   * older than `UPSTREAM_MAX_AGE_SECONDS`, off the client's path: the stored copy is served meanwhile
   * and whenever the upstream is down. `held`: the copy the reader has, when it has the document.
   */
  refreshIfStale(name: string, held?: Pick<PackageDoc, 'origin' | 'origin_validators'>): void {
    const { config } = this;
    if (this.feed || this.mode !== 'mirror' || !this.mayPull(name)) return;
    const maxAge = config.upstreamMaxAgeSeconds * 1000;
    const last = this.checked.get(name);
    if ((last && Date.now() - last.at < maxAge) || this.pulls.has(name) || this.revalidating.has(name)) return;
    // Held for a tarball no client asks for (npm view, again and again) longer than a copy may be old: stored now, compared on a read once it is.
    const waiting = this.waiting.get(name);
    if (waiting && Date.now() - waiting.fetchedAt >= maxAge) this.storeOneNow(name);
    if (this.storing.has(name)) return;
    const validators = held && held.origin === this.upstream ? held.origin_validators : last && last.validators;
    this.checkedNow(name, validators);
    this.revalidating.add(name);
    this.revalidate(name, validators)
      .catch((err) => this.host.log.warn({ package: name, err: (err as Error).message }, 'comparing a mirrored package with the upstream failed'))
      .finally(() => this.revalidating.delete(name));
  }

  /**
   * Asks the upstream whether the packument of `name` changed since the copy held here was made
   * (`If-None-Match` / `If-Modified-Since` with the copy's validators), and stores it only when it
   * did: an answer of 304, or a full answer with the bytes the copy was made from, writes nothing.
   * A copy from another origin is never refreshed from this upstream; a name the upstream no longer
   * has keeps its copy (as before).
   */
  private async revalidate(name: string, known: OriginValidators | undefined): Promise<void> {
    let validators = known;
    if (!validators) {
      const existing = await this.readMirrored(name);
      if (!existing) {
        await this.pull(name);
        return;
      }
      if (existing.origin !== this.upstream) return;
      validators = existing.origin_validators;
    }
    const fetched = await this.registry.packumentSince(name, validators);
    if (fetched === NOT_MODIFIED) {
      this.stats.revalidations.notModified++;
      return;
    }
    if (fetched === null) return;
    const unchanged = (held: OriginValidators | undefined) => !!held && held.digest === fetched.validators.digest;
    if (unchanged(validators)) {
      this.stats.revalidations.unchanged++;
      this.checkedNow(name, fetched.validators);
      return;
    }
    // What this gateway knew may be older than the copy stored (another gateway, the routes' change).
    const [existing, local] = await Promise.all([this.readMirrored(name), this.readLocal(name)]);
    if (local) return this.shadowed(name);
    if (existing && existing.origin !== this.upstream) return;
    if (existing && unchanged(existing.origin_validators)) {
      this.stats.revalidations.unchanged++;
      this.checkedNow(name, existing.origin_validators);
      return;
    }
    await this.store(name, fetched.body, existing, fetched.validators);
    this.stats.revalidations.changed++;
    this.checkedNow(name, fetched.validators);
  }

  /** When the packument of `name` was last fetched from the upstream or compared with it (epoch ms), if this gateway knows. */
  lastChecked(name: string): number | undefined {
    return this.checked.get(name)?.at;
  }

  /**
   * The packument of `name` was compared with the upstream at `at`, before this gateway started (its
   * copy on disk says so): it is compared again once that is `UPSTREAM_MAX_AGE_SECONDS` old, as if the
   * gateway had not stopped, rather than at its first read. Unless this gateway knows of a comparison already.
   */
  checkedBefore(name: string, at: number, validators: OriginValidators | undefined): void {
    if (!this.checked.has(name) && Number.isFinite(at) && at <= Date.now()) this.checked.set(name, { at, validators });
  }

  /** Records that the packument of `name` was compared with the upstream now, and the validators of the copy held. */
  private checkedNow(name: string, validators: OriginValidators | undefined): void {
    this.checked.set(name, { at: Date.now(), validators });
  }

  /**
   * Fetches the tarball `file` of the mirrored package `doc` from the upstream's `dist.tarball`,
   * verifies it against the version's integrity (in memory when it is small and its length is
   * declared, else while it streams to a temporary file), and stores it as an attachment. Resolves
   * with the verified bytes of a tarball of up to 8 MB while CouchDB stores it (unless
   * `storeFirst`), else with null once it is stored (the caller then serves it from CouchDB).
   * Concurrent requests share one download; a larger tarball is never held in memory.
   */
  async tarball(doc: PackageDoc, file: string, storeFirst = false): Promise<Buffer | null> {
    const key = doc.name + '/' + file;
    // Being fetched ahead: waiting with its package once that is done (a download given up is made here).
    if (!storeFirst) await this.tarballsAhead.current(key)?.catch(() => undefined);
    return this.tarballPulls.run(key + (storeFirst ? ' stored' : ''), () => this.fetchTarball(doc, file, storeFirst));
  }

  /**
   * With `UPSTREAM_TARBALLS=ahead`, the tarball npm will most likely ask for next of a dependency
   * just fetched ahead: the version its parent's range picks, as npm picks it from the versions
   * clients are served (the supply-chain policy's held-back versions left out). Fetched only for a
   * package still waiting to be stored (it is stored with it), and only when the upstream declares
   * it small (`INLINE_TARBALL_BYTES`); never for an optional dependency or a version for some
   * platforms only, which npm skips where they do not fit.
   */
  private async tarballAhead(doc: PackageDoc, dependency: Dependency): Promise<void> {
    const entry = this.waiting.get(doc.name);
    if (this.config.upstreamTarballs !== 'ahead' || dependency.optional || !entry) return;
    const served = this.asServed(doc);
    const version = versionFor(served, dependency.spec);
    const manifest = version ? served.versions[version] : undefined;
    if (!version || !manifest || manifest.os || manifest.cpu || manifest.libc) return;
    const file = tarballFileName(doc.name, version);
    const key = doc.name + '/' + file;
    if (entry.tarballs.has(file) || this.tarballPulls.has(key)) return;
    await this.tarballsAhead.run(key, async () => {
      // Pull-through is not quiet while it downloads: its package waits for it.
      this.behind.grow();
      const { response, source, integrity } = await this.download(doc, file);
      if (response.length === null || response.length > INLINE_TARBALL_BYTES) {
        response.body.destroy();
        return;
      }
      const data = await this.downloadInMemory(response, doc.name, file, source, integrity);
      // Not taken to be written meanwhile: stored with its package.
      if (this.waiting.get(doc.name) !== entry) return;
      entry.tarballs.set(file, data);
      this.behind.grow(data.length, entry);
    });
  }

  /**
   * The verified bytes of a tarball up to `SERVE_WHILE_STORING` in size: handed back at once to be
   * served while they are stored in CouchDB (a failure to store is recorded, and the next request
   * fetches again); larger tarballs are stored first (null), then served from CouchDB.
   */
  private async fetchTarball(doc: PackageDoc, file: string, storeFirst: boolean): Promise<Buffer | null> {
    // Verified a moment ago and waiting to be stored with its package (the gateway's memory let it go).
    const held = storeFirst ? undefined : this.waiting.get(doc.name)?.tarballs.get(file);
    if (held) return held;
    const { response, source, integrity } = await this.download(doc, file);
    if (!storeFirst && response.length !== null && response.length <= SERVE_WHILE_STORING) {
      // Small and of a known length (not unpacked on the way, which could make it larger): read into memory and checked there.
      return this.keepBehind(doc.name, file, await this.downloadInMemory(response, doc.name, file, source, integrity));
    }
    const folder = join(this.config.dataDir, 'cache', 'mirror-downloads');
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    const temp = join(folder, randomBytes(12).toString('hex') + '.tgz');
    try {
      try {
        await pipeline(response.body, ssri.integrityStream({ integrity }), createWriteStream(temp));
      } catch (err) {
        throw this.downloadFailure(err, doc.name, file, source);
      }
      if (!storeFirst && statSync(temp).size <= SERVE_WHILE_STORING) {
        return this.keepBehind(doc.name, file, readFileSync(temp));
      }
      await this.storeTarball(doc.name, file, temp);
      return null;
    } finally {
      rmSync(temp, { force: true });
    }
  }

  /**
   * Starts the download of the tarball `file` of the mirrored package `doc` from its `dist.tarball`:
   * the upstream's answer (200 with a body), where it came from and the integrity it must match.
   */
  private async download(doc: PackageDoc, file: string): Promise<{ response: UpstreamAnswer; source: string; integrity: string }> {
    const version = versionOfTarball(doc, file);
    const manifest = version ? doc.versions[version] : undefined;
    const source = manifest && manifest.dist && typeof manifest.dist.tarball === 'string' ? manifest.dist.tarball : undefined;
    if (!manifest || !source) throw notFound('No tarball ' + file + ' for "' + doc.name + '": the version does not exist upstream.');
    const integrity = expectedIntegrity(manifest);
    if (!integrity) {
      this.recordFailure(doc.name, 'tarball ' + file + ' has neither dist.integrity nor dist.shasum; refused');
      throw upstreamFailed('The upstream\'s ' + doc.name + '@' + version + ' has neither dist.integrity nor dist.shasum, so its tarball cannot be verified; it is not served.');
    }
    let response: UpstreamAnswer;
    try {
      response = await this.registry.download(source);
    } catch (err) {
      if ((err as { code?: string }).code === 'EENCODED') {
        // Never inflated (a few kilobytes could become UPSTREAM_MAX_TARBALL_MB), as in UPSTREAM_MODE=proxy.
        this.recordFailure(doc.name, 'tarball ' + file + ' from ' + source + ' was sent encoded although asked unencoded; refused');
        throw upstreamFailed('The tarball ' + file + ' is not here yet: ' + (err as Error).message + ' and not stored. Tell the upstream\'s admins.');
      }
      throw upstreamFailed('The tarball ' + file + ' is not here yet and ' + (err as Error).message + '. Try again later.');
    }
    if (response.status < 200 || response.status >= 300) {
      response.body.resume();
      throw upstreamFailed('The tarball ' + file + ' is not here yet and the upstream registry ' + this.upstream + ' answered ' + response.status + ' for it. Try again later.');
    }
    return { response, source, integrity };
  }

  /** Stores verified bytes while they are served; a failure is recorded, and the next request fetches them again. */
  private keepBehind(name: string, file: string, data: Buffer): Buffer {
    const waiting = this.waiting.get(name);
    if (waiting && data.length <= INLINE_TARBALL_BYTES) {
      waiting.tarballs.set(file, data);
      this.behind.grow(data.length, waiting);
      return data;
    }
    this.storeTarball(name, file, data).catch((err) => {
      this.recordFailure(name, (err as Error).message);
      this.host.log.warn({ package: name, file, err: (err as Error).message }, 'a verified tarball could not be stored; it is fetched again on its next request');
    });
    return data;
  }

  /** The body of a tarball whose length the upstream declared (at most `SERVE_WHILE_STORING`), checked against `integrity`. */
  private async downloadInMemory(response: UpstreamAnswer, name: string, file: string, source: string, integrity: string): Promise<Buffer> {
    let data: Buffer;
    try {
      data = await readAll(response.body);
    } catch (err) {
      throw this.downloadFailure(err, name, file, source);
    }
    if (!ssri.checkData(data, integrity)) throw this.integrityRefused(name, file, source);
    return data;
  }

  /** The error for a download that broke off, or whose bytes do not match the integrity (ssri's EINTEGRITY). */
  private downloadFailure(err: unknown, name: string, file: string, source: string): Error {
    if ((err as { code?: string }).code === 'EINTEGRITY') return this.integrityRefused(name, file, source);
    if ((err as { code?: string }).code === 'ETOOLARGE') {
      this.recordFailure(name, 'tarball ' + file + ' from ' + source + ' ' + (err as Error).message + '; refused');
      return upstreamFailed('The upstream registry ' + this.upstream + ' ' + (err as Error).message + ' for ' + file + '; it was refused and not stored. Tell the upstream\'s admins, or ask an admin of this registry.');
    }
    return upstreamFailed('The download of ' + file + ' from the upstream registry ' + this.upstream + ' broke off (' + (err as Error).message + '). Try again.');
  }

  /** The error for a tarball that does not match its integrity, recorded: the upstream sent a wrong tarball. */
  private integrityRefused(name: string, file: string, source: string): Error {
    this.recordFailure(name, 'tarball ' + file + ' from ' + source + ' does not match its dist.integrity; refused');
    return upstreamFailed('The upstream\'s tarball ' + file + ' does not match its dist.integrity; it was refused and not stored. Tell the upstream\'s admins.');
  }

  /** Adds a verified tarball (a file, or its bytes) to the mirrored document, on its current revision. */
  private async storeTarball(name: string, file: string, source: string | Buffer): Promise<void> {
    // A document being stored is waited for (one still waiting is stored now); the one this gateway
    // stored last is tried first, and a conflict reads the current one.
    this.storeOneNow(name);
    await this.storing.get(name)?.stored;
    let known = this.recent.get(name) || null;
    const stored = await retry(
      async () => {
        const current = known || (await this.readMirrored(name));
        known = null;
        if (!current) throw notFound('No tarball ' + file + ' for "' + name + '": the package changed meanwhile; ask again.');
        if (current._attachments && current._attachments[file]) return null;
        const target = docPath(this.config.mirrorDb, name, file) + '?rev=' + encodeURIComponent(current._rev as string);
        return typeof source === 'string'
          ? this.host.couch.putFileAs(REPLICATOR, target, source, TARBALL_CONTENT_TYPE)
          : (this.host.couch.requestAs(REPLICATOR, 'PUT', target, source, TARBALL_CONTENT_TYPE) as Promise<{ rev: string }>);
      },
      {
        attempts: 5,
        delay: linear(25),
        // 409: changed meanwhile; 412 missing_stub: a cluster copy is a few milliseconds behind.
        retryable: (err) => couchFailure(err).statusCode === 409 || couchFailure(err).error === 'missing_stub',
      },
    ).catch((err) => {
      if (!('statusCode' in (err as object))) throw err;
      throw unavailable('The tarball ' + file + ' was fetched and verified but could not be stored (' + couchFailure(err).reason + '). Try again.');
    });
    if (!stored) return;
    this.forget(name);
    this.stats.tarballsWritten++;
    this.host.written(name, stored.rev, undefined, true);
  }

  /** Eager tarball policy: every tarball of `doc` not stored yet, one after the other. */
  async fetchAllTarballs(doc: PackageDoc): Promise<void> {
    for (const v of Object.keys(doc.versions)) {
      const file = tarballFileName(doc.name, v);
      if (doc._attachments && doc._attachments[file]) continue;
      try {
        // One after the other, each stored before the next (they are revisions of one document).
        await this.tarball(doc, file, true);
      } catch (err) {
        this.recordFailure(doc.name, (err as Error).message);
      }
    }
  }
}
