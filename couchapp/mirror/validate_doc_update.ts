/**
 * validate_doc_update of `_design/mirror`: what replication may write and what local users may do
 * with mirrored packages. The settings are this design document's own fields (`this.registry`,
 * `this.privateScopes`), written by the gateway from its configuration.
 *
 * - Replication (the replication user, role `registry-replicator`) never overwrites or deletes a
 *   package published here, never claims to be local, and never brings a package of a private scope.
 *   This is the defence against dependency confusion: a local name always wins.
 * - Local users cannot publish to, re-tag or deprecate a mirrored package (only star it); they
 *   publish under a private scope instead. What they create is marked as published here.
 */
import { inPrivateScope, isMirrored, isReplicator, mirroredReason, MirrorSettings, shadowedReason } from '../lib/mirror';
import { PackageDoc, UserCtx } from '../lib/types';
import { onlyOwnStarChanged } from '../validate_doc_update';

export default function validate_mirror(
  this: MirrorSettings,
  newDoc: PackageDoc,
  oldDoc: PackageDoc | null,
  userCtx: UserCtx,
): void {
  if ((userCtx.roles || []).indexOf('_admin') !== -1) return;
  if (newDoc._id.indexOf('_design/') === 0) return; // CouchDB itself keeps design documents for admins
  const local = this.registry;
  if (typeof local !== 'string' || !local) {
    throw { forbidden: '_design/mirror has no "registry" id; restart the gateway (it writes one) or ask an admin.' };
  }
  const name = String(newDoc.name || newDoc._id);
  const oldLive = !!oldDoc && !oldDoc._deleted;

  if (isReplicator(userCtx)) {
    if (oldLive && !isMirrored(oldDoc as PackageDoc, local)) throw { forbidden: shadowedReason(newDoc._id) };
    if (newDoc._deleted) return;
    if (newDoc.origin === local) throw { forbidden: 'Replication cannot write a package marked as published here.' };
    if (inPrivateScope(name, this.privateScopes)) {
      throw { forbidden: 'private scope: "' + name + '" is in a private scope of this registry and is never taken from the upstream.' };
    }
    return;
  }

  if (!userCtx.name) return; // anonymous writes are refused with 401 by _design/app
  if (oldLive && isMirrored(oldDoc as PackageDoc, local)) {
    if (onlyOwnStarChanged(newDoc, oldDoc as PackageDoc, userCtx.name)) return;
    throw { forbidden: mirroredReason(oldDoc as PackageDoc) };
  }
  if (!newDoc._deleted && newDoc.origin !== local) {
    throw { forbidden: 'A package published here must carry "origin": "' + local + '" (this registry\'s id from _design/mirror).' };
  }
}
