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

/** The settings of `_design/mirror`. */
export interface MirrorSettings {
  /** This registry's id: the `origin` of every package published here. */
  registry?: unknown;
  /** Scopes (`@acme`) never accepted from an upstream. */
  privateScopes?: unknown;
  /** Which package database this design document guards: `local` (published here) or `mirror`. */
  database?: unknown;
}

export function isReplicator(userCtx: UserCtx): boolean {
  return (userCtx.roles || []).indexOf(REPLICATOR_ROLE) !== -1;
}

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

/** True when `doc` is a mirrored package: its origin is not this registry (`registryId`). */
export function isMirrored(doc: PackageDoc, registryId: unknown): boolean {
  return doc.origin !== registryId;
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
