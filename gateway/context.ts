/** What every controller works with: configuration, CouchDB access, the token store and the logger. */
import type { Response } from 'express';
import { Logger } from 'pino';
import { isTombstone } from '../core/packument';
import { PackageDoc } from '../core/types';
import { Config } from '../config';
import { Couch, couchFailure, Database } from '../couchdb/client';
import { HttpError } from './errors';
import { Accounts } from './accounts';
import { AccessRules } from './access';
import { LocalAbsence, PackumentCache } from './cache';
import { TarballCache } from './tarball-cache';
import type { ServedCopies } from './served-copies';
import { Metrics } from './metrics';
import { PolicyStore } from './policy';
import { SearchService } from './search';
import { DownloadCounter } from './downloads';
import { KeyRing } from './signing';
import { TrustedRoot } from './provenance';
import { TokenStore } from './tokens';
import { Webhooks } from './webhooks';
import type { SingleSignOn } from './sso';
import type { UpstreamRoutes } from '../replication/routes';
import type { Replication } from '../replication/start';
import type { Sites } from '../replication/sites';

export interface Context {
  config: Config;
  couch: Couch;
  tokens: TokenStore;
  accounts: Accounts;
  access: AccessRules;
  cache: PackumentCache;
  /** The served bytes of the packuments the cache held when the gateway last stopped (its data folder). */
  copies?: ServedCopies;
  tarballs: TarballCache;
  /** The last revision this gateway wrote of each package, until the feed reports it. */
  ownWrites: Map<string, string>;
  /** Names the local package database is known not to have (kept coherent by its feed). */
  localAbsence: LocalAbsence;
  /** The packages published here. */
  registry: Database<PackageDoc>;
  /** The packages mirrored from an upstream (`<db>-mirror`), read after `registry`. */
  mirrored: Database<PackageDoc>;
  /** This registry's id: the `origin` of packages published here (kept in `_design/mirror`). */
  registryId: string;
  /**
   * The origins of this registry's own packages: its id, then its other sites' ids (replaced when a
   * site is learned). A package of any other origin is mirrored.
   */
  origins: readonly string[];
  /** The replication from and to the other sites of this registry, when `SITE_PEERS` names any. */
  sites?: Sites;
  /** The in-memory search index of both package databases. */
  search?: SearchService;
  /** This gateway's count of tarball downloads, written to the downloads database now and then. */
  downloads?: DownloadCounter;
  /**
   * The upstreams and the names routed to each (`UPSTREAMS`, `UPSTREAM_REGISTRY`):
   * `upstreams.upstreamFor(name)` is the one upstream a name may be asked of (its client with its
   * token, its mode, its mirror once replication started), null for a private scope or a name no
   * pattern routes.
   */
  upstreams: UpstreamRoutes;
  /** The running replications from the upstreams, for their status. */
  replication?: Pick<Replication, 'followers' | 'native' | 'advisories'>;
  /** Base of the URLs the registry hands out (tarballs, login pages). */
  baseUrl: string;
  /** The build of `_design/app` this gateway pushed (its `build_hash`), for the health check. */
  designHash?: string;
  metrics: Metrics;
  /** This registry's signing key and the keys it lists (its own and the upstream's). */
  keys?: KeyRing;
  /** The certificate authorities provenance bundles published here must come from (`PROVENANCE_TRUSTED_ROOT`), or any. */
  provenanceTrust?: TrustedRoot;
  /** The supply-chain policy of mirrored packages (cooldown, blocks). */
  policy?: PolicyStore;
  /** Single sign-on with the company's OpenID provider (`SSO_ISSUER`), when configured. */
  sso?: SingleSignOn;
  /** Tells the configured webhooks of every change this gateway writes. */
  webhooks?: Webhooks;
  log: Logger;
}

/**
 * The package published here under `name`, or null: read unless the local database is known not to
 * have it (`LocalAbsence`), and its absence recorded.
 */
export async function localPackage(ctx: Pick<Context, 'registry' | 'localAbsence'>, name: string): Promise<PackageDoc | null> {
  if (ctx.localAbsence.knows(name)) return null;
  const generation = ctx.localAbsence.generation(name);
  const local = await getPackageDoc(ctx.registry, name);
  if (!local) ctx.localAbsence.seen(name, generation);
  return local;
}

/** A document of one package database, or null when it has none (or a deleted one). */
export async function getPackageDoc(db: Database<PackageDoc>, name: string): Promise<PackageDoc | null> {
  if (name.startsWith('_')) return null; // reserved ids (`_design/…`, `_local/…`) are never packages
  try {
    return await db.get(name);
  } catch (err) {
    // CouchDB down or refusing: a 502 that says so, not a 500.
    throw fromCouch(err);
  }
}

/**
 * The package of `name` as clients see it: the one published here (even unpublished, a tombstone),
 * else the mirrored one; null when neither database has it. A local package always shadows the
 * mirrored package of the same name; a package being stored by pull-through is found too. A mirrored
 * copy of an upstream the name is not routed to (any more) is not served (`UpstreamRoutes.serves`).
 * `both`: the two databases are read at once (when most packages are mirrored, as in pull-through,
 * the second read is rarely wasted).
 */
export async function readPackage(ctx: Pick<Context, 'registry' | 'mirrored' | 'upstreams'>, name: string, both = false): Promise<PackageDoc | null> {
  const routed = (doc: PackageDoc | null) => (doc && ctx.upstreams.serves(doc) ? doc : null);
  const found = both
    ? await Promise.all([getPackageDoc(ctx.registry, name), getPackageDoc(ctx.mirrored, name)]).then(([local, mirrored]) => local || routed(mirrored))
    : (await getPackageDoc(ctx.registry, name)) || routed(await getPackageDoc(ctx.mirrored, name));
  // A package pull-through has just served is found while CouchDB stores it.
  return found || ctx.upstreams.mirrorFor(name)?.inFlight(name) || null;
}

/**
 * Throws unless the caller may read `name` (`AccessRules.assertRead`) and, when the org of its scope
 * hides from them which packages exist there (`AccessRules.hidden`), unless a live package of that
 * name is here: before anything that answers otherwise for a name that exists (a second factor asked
 * for, a revision compared), so that a private package and a name with no package answer alike.
 */
export async function assertReadable(ctx: Context, res: Response, name: string): Promise<void> {
  await ctx.access.assertRead(res, name);
  const hidden = await ctx.access.hidden(res, name);
  if (!hidden) return;
  const doc = await readPackage(ctx, name);
  if (!doc || isTombstone(doc)) throw hidden;
}

/**
 * Why people cannot sign up here (the message for them), or null when they can: closed by the settings
 * (`REGISTRY_SIGNUP=closed`), or by a site of this registry whose accounts do not replicate.
 */
export function signupClosed(ctx: Pick<Context, 'config' | 'sites'>): string | null {
  // Accounts come from the sign-in provider when people log in with it only.
  if (ctx.config.sso && !ctx.config.sso.passwordLogin) {
    return 'Accounts on this registry come from ' + ctx.config.sso.displayName + ': run `npm login` (npm\'s web login, the default) and sign in with it; your account is made then.';
  }
  if (ctx.config.signup !== 'open') return 'Sign-up is closed on this registry: ask an administrator to create your account.';
  return ctx.sites ? ctx.sites.signupClosedBy() : null;
}

/** A CouchDB refusal turned into the answer the npm user sees (validate_doc_update's reason included). */
export function fromCouch(err: unknown): HttpError {
  const failure = couchFailure(err);
  switch (failure.statusCode) {
    case 401:
    case 403:
      return new HttpError(failure.statusCode, failure.reason);
    case 409:
      return new HttpError(409, 'The package changed while this request was processed; run the command again.');
    case 413:
      return new HttpError(413, 'The package document is larger than CouchDB accepts (max_document_size); ask an admin to raise it.');
    default:
      return new HttpError(502, 'The registry database failed: ' + failure.reason + '. Try again later.');
  }
}

/**
 * After this gateway wrote revision `rev` of a package: its caches drop the package at once (other
 * gateways follow through _changes), and the feed's report of this same revision is not acted on
 * again, so that what the write put in the caches stays.
 */
export function changedHere(ctx: Context, name: string, rev: string, tarballOnly = false): void {
  ctx.cache.invalidate(name);
  // A tarball added changes no other tarball: those already kept stay.
  if (!tarballOnly) ctx.tarballs.invalidate(name);
  ctx.ownWrites.set(name, rev);
  if (ctx.ownWrites.size > 10_000) ctx.ownWrites.clear();
}

/** The feed reports a change: caches drop the package unless the change is this gateway's own write. */
export function changedElsewhere(ctx: Pick<Context, 'cache' | 'tarballs' | 'ownWrites'>, name: string, rev: string | undefined): void {
  if (rev !== undefined && ctx.ownWrites.get(name) === rev) {
    ctx.ownWrites.delete(name);
    ctx.cache.invalidate(name, rev);
    return;
  }
  ctx.cache.invalidate(name);
  ctx.tarballs.invalidate(name);
}

export const isConflict = (err: unknown): boolean => (err as { statusCode?: number }).statusCode === 409;
