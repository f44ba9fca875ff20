/**
 * Orgs and teams (`npm org`, `npm team`, `npm access grant|revoke|set status`), kept where the access
 * rules are: in `_design/access`, as its `orgs` field beside `rules`. That design document is `this`
 * for its validate_doc_update, so CouchDB itself checks every write against the same memberships,
 * grants and statuses the gateway reads: no second copy (such as roles on `_users` accounts) that
 * could disagree with them, and a member removed is refused at once by CouchDB and within the
 * gateways' two-second cache of `_design/access` by every gateway, whatever credentials they use.
 *
 *   "orgs": {
 *     "acme": {
 *       "created": "2026-12-07T04:00:00.000Z",
 *       "members": { "alice": "owner", "bob": "developer" },
 *       "teams": { "developers": { "description": "", "members": ["alice", "bob"] } },
 *       "packages": { "@acme/widget": { "status": "private", "teams": { "developers": "read-write" } } }
 *     }
 *   }
 *
 * An org owns the scope of its name (`@acme/…`). Roles are npm's: `owner` (manages the members, the
 * teams and the packages), `admin` (the teams and the packages), `developer` (publishes new packages
 * in the scope; changes existing ones as a maintainer or through a team's `read-write` grant). Every
 * member is in the `developers` team, which cannot be destroyed. In the org's scope only members
 * publish new packages; a `private` package is read by the org's members only. The rules'
 * principals `org:acme`, `org:acme:owner|admin|developer` and `team:acme:developers` name members.
 *
 * Plain ES2019 without Node APIs: bundled into `_design/access`.
 */
export type OrgRole = 'owner' | 'admin' | 'developer';
export type Permission = 'read-only' | 'read-write';

export interface Team {
  description?: string;
  members: string[];
}

export interface OrgPackage {
  /** `private`: only the org's members read it (`npm access set status=private`). */
  status?: 'private';
  teams?: Record<string, Permission>;
}

export interface Org {
  created?: string;
  members: Record<string, OrgRole>;
  teams: Record<string, Team>;
  packages?: Record<string, OrgPackage>;
}

export type Orgs = Record<string, Org>;

export interface OrgUser {
  name: string | null;
  roles: string[];
}

export const ORG_ROLES: OrgRole[] = ['owner', 'admin', 'developer'];
export const DEVELOPERS_TEAM = 'developers';
/** Org names as npm's scopes (and user names) are: lower case. */
const ORG_NAME = /^[a-z0-9][a-z0-9._-]{0,213}$/;
const TEAM_NAME = /^[a-z0-9][a-z0-9._-]{0,99}$/;
/** User names as accounts have them (gateway/accounts.ts). */
const MEMBER_NAME = /^[a-z0-9][a-z0-9._-]{0,213}$/i;

const own = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);
const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

export function orgNameProblem(name: string): string | null {
  return ORG_NAME.test(name) ? null : 'Org names (the scope without "@") may contain lower-case letters, digits, ".", "_" and "-", and start with a letter or digit.';
}

export function teamNameProblem(name: string): string | null {
  return TEAM_NAME.test(name) ? null : 'Team names may contain lower-case letters, digits, ".", "_" and "-" (at most 100), and start with a letter or digit.';
}

export function memberNameProblem(name: string): string | null {
  return MEMBER_NAME.test(name) ? null : 'User names may contain letters, digits, ".", "_" and "-", and start with a letter or digit.';
}

/** Why `orgs` is not a valid org table, or null. An absent table is an empty one. */
export function orgsProblem(orgs: unknown): string | null {
  if (orgs === undefined) return null;
  if (!isPlainObject(orgs)) return '"orgs" must be an object of orgs by name';
  for (const name of Object.keys(orgs)) {
    const org = orgs[name];
    const where = 'org "' + name + '"';
    if (orgNameProblem(name)) return where + ': not a valid org name';
    if (!isPlainObject(org)) return where + ' must be an object';
    if (!isPlainObject(org.members)) return where + ': "members" must be an object of roles by user name';
    let owners = 0;
    for (const member of Object.keys(org.members)) {
      if (memberNameProblem(member)) return where + ': "' + member + '" is not a user name';
      if (ORG_ROLES.indexOf(org.members[member] as OrgRole) === -1) return where + ': the role of "' + member + '" must be owner, admin or developer';
      if (org.members[member] === 'owner') owners++;
    }
    if (owners === 0) return where + ' needs an owner';
    if (!isPlainObject(org.teams)) return where + ': "teams" must be an object of teams by name';
    for (const team of Object.keys(org.teams)) {
      const value = org.teams[team] as Record<string, unknown>;
      if (teamNameProblem(team)) return where + ': "' + team + '" is not a valid team name';
      if (!isPlainObject(value) || !Array.isArray(value.members)) return where + ': team "' + team + '" needs a list of "members"';
      for (const member of value.members) {
        if (typeof member !== 'string' || !own(org.members, member)) return where + ': team "' + team + '" has "' + String(member) + '", who is not a member of the org';
      }
    }
    if (org.packages !== undefined) {
      if (!isPlainObject(org.packages)) return where + ': "packages" must be an object by package name';
      for (const pkg of Object.keys(org.packages)) {
        const value = org.packages[pkg] as Record<string, unknown>;
        if (pkg.indexOf('@' + name + '/') !== 0) return where + ': "' + pkg + '" is not in the scope @' + name;
        if (!isPlainObject(value)) return where + ': package "' + pkg + '" must be an object';
        if (value.status !== undefined && value.status !== 'private') return where + ': the status of "' + pkg + '" must be "private" or absent';
        if (value.teams !== undefined) {
          if (!isPlainObject(value.teams)) return where + ': the teams of "' + pkg + '" must be an object';
          for (const team of Object.keys(value.teams)) {
            if (!own(org.teams, team)) return where + ': "' + pkg + '" is granted to "' + team + '", which is not a team of the org';
            if (value.teams[team] !== 'read-only' && value.teams[team] !== 'read-write') return where + ': the grant of "' + pkg + '" to "' + team + '" must be read-only or read-write';
          }
        }
      }
    }
  }
  return null;
}

/** The scope of a package name without its `@` (`@acme/widget` → `acme`), or null for an unscoped name. */
export function scopeOf(name: string): string | null {
  const match = /^@([^/]+)\//.exec(name);
  return match ? match[1] : null;
}

/** The org that owns the scope of `name`, if any. */
export function orgOf(orgs: Orgs | undefined, name: string): Org | null {
  const scope = scopeOf(name);
  return orgs && scope !== null && own(orgs, scope) ? orgs[scope] : null;
}

export function roleIn(org: Org, user: string | null): OrgRole | null {
  return user && own(org.members, user) ? org.members[user] : null;
}

/** Owners and admins manage teams and packages; owners also the org's members. */
export function managesTeams(org: Org, user: OrgUser): boolean {
  const role = roleIn(org, user.name);
  return role === 'owner' || role === 'admin';
}

/** The grant of `pkg` to `user` through the teams they are in: `read-write` beats `read-only`; null without one. */
export function teamGrant(org: Org, pkg: string, user: string | null): Permission | null {
  const grants = (org.packages && own(org.packages, pkg) && org.packages[pkg].teams) || {};
  let found: Permission | null = null;
  for (const team of Object.keys(grants)) {
    if (!user || !own(org.teams, team) || org.teams[team].members.indexOf(user) === -1) continue;
    if (grants[team] === 'read-write') return 'read-write';
    found = 'read-only';
  }
  return found;
}

export function isPrivate(org: Org, pkg: string): boolean {
  return !!org.packages && own(org.packages, pkg) && org.packages[pkg].status === 'private';
}

/** Whether a principal of the access rules that names an org or a team (`org:acme`, `org:acme:owner`, `team:acme:developers`) names `user`. */
export function orgPrincipalMatches(orgs: Orgs | undefined, principal: string, user: OrgUser): boolean {
  if (!orgs || !user.name) return false;
  const parts = principal.split(':');
  if (parts[0] === 'org' && (parts.length === 2 || parts.length === 3) && own(orgs, parts[1])) {
    const role = roleIn(orgs[parts[1]], user.name);
    return !!role && (parts.length === 2 || role === parts[2]);
  }
  if (parts[0] === 'team' && parts.length === 3 && own(orgs, parts[1])) {
    const org = orgs[parts[1]];
    return own(org.teams, parts[2]) && org.teams[parts[2]].members.indexOf(user.name) !== -1;
  }
  return false;
}

/**
 * What an org adds to the access rules for `name`, or null when it has nothing to say (no org owns
 * its scope): reading a private package needs membership; publishing in the scope needs membership.
 */
export function orgAllows(orgs: Orgs | undefined, name: string, action: 'read' | 'publish', user: OrgUser): boolean | null {
  const org = orgOf(orgs, name);
  if (!org) return null;
  if (action === 'read' && !isPrivate(org, name)) return null;
  return !!roleIn(org, user.name);
}

/**
 * Whether `user`, not a maintainer of the existing package `name`, may change it through the org of
 * its scope: its owners and admins, and the members of a team with `read-write` on it.
 */
export function orgMayChange(orgs: Orgs | undefined, name: string, user: OrgUser): boolean {
  const org = orgOf(orgs, name);
  if (!org || !user.name) return false;
  return managesTeams(org, user) || teamGrant(org, name, user.name) === 'read-write';
}

/** Why a user without a right to `name` in its org is refused (for both the gateway and CouchDB). */
export function notInOrgMessage(user: string, name: string): string {
  return 'User "' + user + '" is not a member of the org @' + scopeOf(name) + ', which owns "' + name + '": an owner of the org adds members with `npm org set ' +
    scopeOf(name) + ' <user>`.';
}
