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
 * - Other sites of this registry (`this.sites`, learned from `SITE_PEERS`) replicate their packages
 *   into the local database as the site account (role `registry-site`): a package published at any
 *   site is local at every site, and the conflicts of concurrent publishes are merged by the
 *   resolver. Only the local database takes them; what the mirror database holds is never another
 *   site's.
 */
import {
  DIRECT_WRITE_REASON, inPrivateScope, isGateway, isReplicator, isSite, localOrigins, MirrorSettings, mirroredReason, shadowedReason,
} from '../../core/provenance';
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
  const origins = localOrigins(this);

  if (this.database === 'mirror') {
    if (!isReplicator(userCtx)) throw { forbidden: mirroredReason(oldDoc || newDoc) };
    if (newDoc._deleted) return;
    if (origins.indexOf(newDoc.origin as string) !== -1) throw { forbidden: 'Replication cannot write a package marked as published here.' };
    if (inPrivateScope(name, this.privateScopes)) {
      throw { forbidden: 'private scope: "' + name + '" is in a private scope of this registry and is never taken from the upstream.' };
    }
    return;
  }

  if (isReplicator(userCtx)) throw { forbidden: shadowedReason(newDoc._id) };
  // Another site's packages (and the merges and removed conflict leaves of its resolver) as they are there.
  if (isSite(userCtx)) {
    if (!newDoc._deleted && typeof newDoc.origin === 'string' && /^https?:/i.test(newDoc.origin)) {
      throw { forbidden: 'Site replication brings the packages published at another site, never a package mirrored from ' + newDoc.origin + '.' };
    }
    return;
  }
  if (!userCtx.name) return; // anonymous writes are refused with 401 by _design/app
  if (!isGateway(userCtx)) throw { forbidden: DIRECT_WRITE_REASON };
  if (!newDoc._deleted && origins.indexOf(newDoc.origin as string) === -1) {
    throw {
      forbidden: 'A package published here must carry "origin": "' + local + '" (this registry\'s id from _design/mirror), or the id of one of its other sites.',
    };
  }
}
