/**
 * validate_doc_update of `_design/access`: the publish rules kept in this same design document
 * (`this.rules`, editable by admins in Fauxton) hold for every write, also straight to CouchDB.
 * A star needs no publish right. Invalid rules refuse every non-admin write until an admin fixes them.
 * Another site's packages arrive as that site's rules let them be written there (site replication).
 */
import { allowed, rulesProblem, AccessRule } from '../../core/access';
import { isReplicator, isSite } from '../../core/provenance';
import { PackageDoc, UserCtx } from '../../core/types';
import { onlyOwnStarChanged } from '../../core/rules';

export default function validate_access(
  this: { rules?: unknown },
  newDoc: PackageDoc,
  oldDoc: PackageDoc | null,
  userCtx: UserCtx,
): void {
  const user = { name: userCtx.name, roles: userCtx.roles || [] };
  if (user.roles.indexOf('_admin') !== -1 || isReplicator(userCtx) || isSite(userCtx)) return;
  const problem = rulesProblem(this.rules);
  if (problem) throw { forbidden: 'The access rules in _design/access are invalid (' + problem + '); an admin must fix them.' };
  if (!user.name) throw { unauthorized: 'You must be logged in to publish or change packages: run `npm login`.' };
  if (oldDoc && onlyOwnStarChanged(newDoc, oldDoc, user.name)) return;
  if (!allowed(this.rules as AccessRule[], String(newDoc.name || newDoc._id), 'publish', user)) {
    throw {
      forbidden: 'User "' + user.name + '" is not allowed to publish or change "' +
        String(newDoc.name || newDoc._id) + '" by this registry\'s access rules; ask an admin.',
    };
  }
}
