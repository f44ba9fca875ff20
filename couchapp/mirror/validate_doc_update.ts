/**
 * validate_doc_update of `_design/mirror`, installed in both package databases: `<db>` holds the
 * packages published here, `<db>-mirror` the packages mirrored from an upstream. The settings are
 * this design document's own fields (`this.registry`, `this.privateScopes`, `this.database`),
 * written by the gateway from its configuration.
 *
 * - In the mirror database only replication writes (the replication user, role
 *   `registry-replicator`): it never marks anything as published here and never brings a package of
 *   a private scope. Local users publish under a private scope instead.
 * - In the local database replication writes nothing, so no replication, whatever CouchDB does with
 *   revisions and conflicts, can replace a package published here: the gateway reads it first, and
 *   the mirrored copy of the same name stays behind it (the defence against dependency confusion).
 *   What local users create is marked as published here, and they write only through the gateway
 *   (role `registry-gateway`): a direct write cannot put a package in front of a mirrored one.
 */
import { DIRECT_WRITE_REASON, inPrivateScope, isGateway, isReplicator, MirrorSettings, mirroredReason, shadowedReason } from '../../core/provenance';
import { PackageDoc, UserCtx } from '../../core/types';

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

  if (this.database === 'mirror') {
    if (!isReplicator(userCtx)) throw { forbidden: mirroredReason(oldDoc || newDoc) };
    if (newDoc._deleted) return;
    if (newDoc.origin === local) throw { forbidden: 'Replication cannot write a package marked as published here.' };
    if (inPrivateScope(name, this.privateScopes)) {
      throw { forbidden: 'private scope: "' + name + '" is in a private scope of this registry and is never taken from the upstream.' };
    }
    return;
  }

  if (isReplicator(userCtx)) throw { forbidden: shadowedReason(newDoc._id) };
  if (!userCtx.name) return; // anonymous writes are refused with 401 by _design/app
  if (!isGateway(userCtx)) throw { forbidden: DIRECT_WRITE_REASON };
  if (!newDoc._deleted && newDoc.origin !== local) {
    throw { forbidden: 'A package published here must carry "origin": "' + local + '" (this registry\'s id from _design/mirror).' };
  }
}
