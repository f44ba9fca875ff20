/**
 * Provenance of package documents, shared by the gateway and `_design/mirror`'s validate_doc_update.
 *
 * Packages published here live in the registry database and carry this registry's id in `origin`
 * (kept in `_design/mirror` as `registry`). Mirrored packages live in a database of their own
 * (`<db>-mirror`), written only by replication, and carry their upstream in `origin` (the URL of an
 * npm registry, or whatever the upstream CouchDB's document said). Where a package lives decides what
 * it is; `origin` says the same in the document itself.
 */
import { PackageDoc, UserCtx } from './types';

/** The CouchDB role of the user that replication writes as. It is not an admin. */
export const REPLICATOR_ROLE = 'registry-replicator';

/**
 * The CouchDB role the gateway adds to every request it makes as a user (proxy authentication, whose
 * token only the holder of the proxy secret can make): the user's write was checked by the gateway
 * (integrity, provenance, signatures). No `_users` document carries it: users cannot set their own
 * roles, and the registry's sign-up writes none.
 */
export const GATEWAY_ROLE = 'registry-gateway';

/**
 * The CouchDB role of a downstream registry's reader account: a member of the package databases, so
 * it reads (and replicates) every package, and writes none (validate_doc_update refuses it). An admin
 * gives it to a `_users` account (README, "Replicate").
 */
export const READER_ROLE = 'registry-reader';

/**
 * The CouchDB role of a site's account (`registry-site`): another site of this registry pulls this
 * site's packages with it, and this site's own replication writes its peers' packages into the
 * registry database with it. Sites of one registry trust each other's publishes: each site's gateway
 * and validate_doc_update checked them where they were made. An admin never gives it to a person.
 */
export const SITE_ROLE = 'registry-site';

/**
 * The `_security` of the package databases: the gateway, replication and downstream readers are
 * members, nobody else (anonymous callers and plain users read nothing on the CouchDB port); server
 * admins are admins.
 */
export const PACKAGE_DB_SECURITY = {
  admins: { names: [] as string[], roles: ['_admin'] },
  members: { names: [] as string[], roles: ['_admin', GATEWAY_ROLE, REPLICATOR_ROLE, READER_ROLE, SITE_ROLE] },
};

/** The settings of `_design/mirror`. */
export interface MirrorSettings {
  /** This registry's id: the `origin` of every package published here. */
  registry?: unknown;
  /** Scopes (`@acme`) never accepted from an upstream. */
  privateScopes?: unknown;
  /** Which package database this design document guards: `local` (published here) or `mirror`. */
  database?: unknown;
  /** The ids of the other sites of this registry (learned from `SITE_PEERS`): their packages are local here too. */
  sites?: unknown;
  /**
   * Whether this site shares accounts with its peers (it runs on the embedded server). A site on a real
   * CouchDB says false: its accounts do not replicate, so its peers keep theirs apart and close sign-up.
   */
  accounts?: unknown;
}

/** The origins of the packages that are this registry's own: this site's id and its other sites' ids. */
export function localOrigins(settings: MirrorSettings): string[] {
  const own = typeof settings.registry === 'string' && settings.registry ? [settings.registry] : [];
  const sites = Array.isArray(settings.sites) ? settings.sites.filter((id): id is string => typeof id === 'string' && id !== '') : [];
  return own.concat(sites);
}

export function isReplicator(userCtx: UserCtx): boolean {
  return (userCtx.roles || []).indexOf(REPLICATOR_ROLE) !== -1;
}

/** True when the write is another site's package arriving through site replication. */
export function isSite(userCtx: UserCtx): boolean {
  return (userCtx.roles || []).indexOf(SITE_ROLE) !== -1;
}

/** True when the write comes through the gateway (proxy authentication with the gateway's role). */
export function isGateway(userCtx: UserCtx): boolean {
  return (userCtx.roles || []).indexOf(GATEWAY_ROLE) !== -1;
}

/** Why a write straight to the CouchDB port is refused, and what to do instead. */
export const DIRECT_WRITE_REASON =
  'Packages are written through the registry (npm publish, npm dist-tag, npm owner, npm deprecate), which checks ' +
  'their tarballs and provenance; only server admins write package documents on the CouchDB port.';

/** The scope of a package name (`@acme`), or null for an unscoped name. */
export function scopeOf(name: string): string | null {
  const match = /^(@[^/]+)\//.exec(name);
  return match ? match[1].toLowerCase() : null;
}

/** True when `name` is in one of the private scopes. */
export function inPrivateScope(name: string, privateScopes: unknown): boolean {
  const scope = scopeOf(name);
  if (!scope || !Array.isArray(privateScopes)) return false;
  return privateScopes.some((s) => typeof s === 'string' && s.toLowerCase() === scope);
}

/**
 * True when `doc` is a mirrored package: its origin is not this registry, that is neither this site's
 * id nor one of its other sites' (`local`, as `localOrigins` gives them, or this site's id alone).
 */
export function isMirrored(doc: PackageDoc, local: string | readonly string[]): boolean {
  return typeof local === 'string' ? doc.origin !== local : local.indexOf(doc.origin as string) === -1;
}

/** Why the upstream's `name` is not served: a package of that name is published here. */
export function shadowedReason(name: string): string {
  return 'shadowed: "' + name + '" is published in this registry; the upstream package of that name is not served ' +
    '(replication never replaces a local package).';
}

/** Why a local user may not change the mirrored package `doc`, and what to do instead. */
export function mirroredReason(doc: PackageDoc): string {
  const name = String(doc.name || doc._id);
  return '"' + name + '" is mirrored from ' + String(doc.origin || 'the upstream registry') +
    '; it cannot be published to, re-tagged, deprecated or starred here. Publish your own package under a private scope, ' +
    'for example "@your-company/' + name.replace(/^@[^/]+\//, '') + '".';
}

/** A scope list from configuration (`@acme,@internal` or `acme internal`), normalised to `@acme`. */
export function parseScopes(raw: string): string[] {
  return raw
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((s) => (s.charAt(0) === '@' ? s : '@' + s).toLowerCase());
}
