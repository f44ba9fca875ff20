/**
 * validate_doc_update of `_design/access`: the publish rules kept in this same design document
 * (`this.rules`, editable by admins in Fauxton) hold for every write, also straight to CouchDB.
 * A star needs no publish right. Invalid rules refuse every non-admin write until an admin fixes them.
 * Another site's packages arrive as that site's rules let them be written there (site replication).
 *
 * The orgs (`this.orgs`, core/orgs.ts) are checked here too: in an org's scope only its members
 * publish, and an existing package is changed by its maintainers, the org's owners and admins, and the
 * members of a team granted `read-write` on it. `_design/app` leaves that last decision for a scoped
 * package to this function, which alone sees the orgs; without an org for the scope, only maintainers.
 */
import { allowed, rulesProblem, AccessRule } from '../../core/access';
import { notInOrgMessage, orgMayChange, orgOf, orgsProblem, Orgs, roleIn, scopeOf } from '../../core/orgs';
import { maintainerNames } from '../../core/rules';
import { isReplicator, isSite } from '../../core/provenance';
import { PackageDoc, UserCtx } from '../../core/types';
import { onlyOwnStarChanged } from '../../core/rules';

export default function validate_access(
  this: { rules?: unknown; orgs?: unknown },
  newDoc: PackageDoc,
  oldDoc: PackageDoc | null,
  userCtx: UserCtx,
): void {
  const user = { name: userCtx.name, roles: userCtx.roles || [] };
  if (user.roles.indexOf('_admin') !== -1 || isReplicator(userCtx) || isSite(userCtx)) return;
  const problem = rulesProblem(this.rules) || orgsProblem(this.orgs);
  if (problem) throw { forbidden: 'The access rules in _design/access are invalid (' + problem + '); an admin must fix them.' };
  if (!user.name) throw { unauthorized: 'You must be logged in to publish or change packages: run `npm login`.' };
  if (oldDoc && onlyOwnStarChanged(newDoc, oldDoc, user.name)) return;
  const name = String(newDoc.name || newDoc._id);
  const orgs = this.orgs as Orgs | undefined;
  const org = orgOf(orgs, name);
  if (oldDoc && !oldDoc._deleted && scopeOf(name) !== null && maintainerNames(oldDoc).indexOf(user.name) === -1 && !orgMayChange(orgs, name, user)) {
    throw {
      forbidden: org && !roleIn(org, user.name)
        ? notInOrgMessage(user.name, name)
        : org
          ? 'You are not a maintainer of "' + name + '" (maintainers: ' + maintainerNames(oldDoc).join(', ') + ') and no team of its org gives you read-write on it. ' +
            'Ask a maintainer to run `npm owner add ' + user.name + ' ' + name + '`, or an owner of the org `npm access grant read-write ' + scopeOf(name) + ':<team> ' + name + '`.'
          : 'You are not a maintainer of "' + name + '" (maintainers: ' + maintainerNames(oldDoc).join(', ') + '). Ask one of them to run `npm owner add ' + user.name + ' ' + name +
            '`, or publish under another name.',
    };
  }
  if (org && !roleIn(org, user.name)) throw { forbidden: notInOrgMessage(user.name, name) };
  if (!allowed(this.rules as AccessRule[], name, 'publish', user, orgs)) {
    throw {
      forbidden: 'User "' + user.name + '" is not allowed to publish or change "' +
        String(newDoc.name || newDoc._id) + '" by this registry\'s access rules; ask an admin.',
    };
  }
}
