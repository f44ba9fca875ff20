/**
 * `npm org set|rm|ls` and `npm team create|destroy|add|rm|ls`, `npm access grant|revoke` and
 * `npm access list packages`, as npm 11 sends them (libnpmorg, libnpmteam, libnpmaccess):
 *
 *   PUT|DELETE|GET /-/org/<org>/user          {user, role?} · {user} · → {user: role}
 *   PUT|GET        /-/org/<org>/team          {name, description?} · → ["org:team"]
 *   GET            /-/org/<org>/package       → {package: "read-write"}
 *   DELETE         /-/team/<org>/<team>
 *   PUT|DELETE|GET /-/team/<org>/<team>/user  {user} · {user} · → ["user"]
 *   PUT|DELETE|GET /-/team/<org>/<team>/package {package, permissions} · {package} · → {package: permission}
 *   GET            /-/user/<user>/package     → {package: "read-write"} (what npm asks when no org has the name)
 *
 * The orgs live in `_design/access` (core/orgs.ts, gateway/orgs.ts), where CouchDB's validation reads
 * them too. Who may do what, checked here on a fresh copy before it is written:
 * - An org is made by `npm org set <org> <user>` on a name no org has: by a server admin (for any
 *   scope; the user named becomes its owner), or by a user for an unclaimed scope, who becomes its
 *   owner. A scope is unclaimed when its name is no reserved or admin name, no other person's account
 *   name, not in `REPLICATION_PRIVATE_SCOPES` (the company's own scopes, its admins' to give), has no
 *   mirrored package (the upstream's scope) and no package here with another maintainer.
 * - Owners add, remove and change members (never the last owner away); a member may leave.
 * - Owners and admins create and destroy teams (not `developers`, which every member joins), add
 *   the org's members to them and grant them packages of the org's scope.
 * - Members (and server admins) list the members, teams and packages.
 * Writes need a full credential (not read-only, not limited to packages) and the second factor that
 * writes need.
 */
import { Request, Response, Router } from 'express';
import {
  DEVELOPERS_TEAM, managesTeams, memberNameProblem, Org, ORG_ROLES, OrgRole, orgNameProblem, Orgs, Permission, roleIn, teamGrant, teamNameProblem,
} from '../../core/orgs';
import { isTombstone } from '../../core/packument';
import { isMirrored } from '../../core/provenance';
import { maintainerNames } from '../../core/rules';
import { PackageDoc } from '../../core/types';
import { AuthenticatedUser, requireUser } from '../auth';
import { Context, getPackageDoc } from '../context';
import { badRequest, forbidden, HttpError, notFound } from '../errors';
import { OrgStore } from '../orgs';
import { requireWriteFactor } from '../second-factor';
import { isLimited } from '../../core/tokens';

/**
 * Bounds on what one user can add to `_design/access`, which every read loads and every write's
 * validation reads: the orgs a user may own (more from an admin), the teams of an org.
 */
export const MAX_ORGS_OWNED = 10;
export const MAX_TEAMS = 100;

const isAdmin = (user: AuthenticatedUser): boolean => user.roles.includes('_admin');
const own = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);

function checkedOrgName(name: string): string {
  const problem = orgNameProblem(name);
  if (problem) throw badRequest('"' + name + '": ' + problem);
  return name;
}

function checkedTeamName(name: string): string {
  const problem = teamNameProblem(name);
  if (problem) throw badRequest('"' + name + '": ' + problem);
  return name;
}

function bodyString(req: Request, key: string, what: string): string {
  const body = (req.body || {}) as Record<string, unknown>;
  const value = body[key];
  if (typeof value !== 'string' || !value) throw badRequest('Send {"' + key + '": "<' + what + '>"} as JSON.');
  return value;
}

function checkedMemberName(name: string): string {
  const user = name.replace(/^[~@]/, '');
  const problem = memberNameProblem(user);
  if (problem) throw badRequest('"' + name + '": ' + problem);
  return user;
}

function orgNamed(orgs: Orgs, name: string): Org {
  if (!own(orgs, name)) throw notFound('No org @' + name + ' on this registry: `npm org set ' + name + ' <your user name>` makes it, if the scope is free.');
  return orgs[name];
}

function teamNamed(org: Org, orgName: string, team: string): Org['teams'][string] {
  if (!own(org.teams, team)) throw notFound('No team "' + team + '" in @' + orgName + ': `npm team ls ' + orgName + '` lists them.');
  return org.teams[team];
}

/** Only its members (and server admins) see an org's members, teams and grants. */
function assertMember(org: Org, orgName: string, user: AuthenticatedUser): void {
  if (!isAdmin(user) && !roleIn(org, user.name)) throw forbidden('Only members of @' + orgName + ' see its members, teams and packages.');
}

function assertManagesTeams(org: Org, orgName: string, user: AuthenticatedUser): void {
  if (isAdmin(user) || managesTeams(org, user)) return;
  throw forbidden('Only the owners and admins of @' + orgName + ' manage its teams and their packages' + (roleIn(org, user.name) ? '' : ' (you are no member)') + '.');
}

/** Adds `user` to the org's developers team (made again if an admin removed it). */
function joinDevelopers(org: Org, user: string): void {
  if (!own(org.teams, DEVELOPERS_TEAM)) org.teams[DEVELOPERS_TEAM] = { description: 'Every member of the org', members: [] };
  const members = org.teams[DEVELOPERS_TEAM].members;
  if (members.indexOf(user) === -1) members.push(user);
}

export function orgRoutes(ctx: Context): Router {
  const router = Router();
  const store = new OrgStore(ctx.registry, ctx.access);

  /** The caller, if their credentials may change orgs (a full login, its second factor given). */
  async function manager(res: Response): Promise<AuthenticatedUser> {
    const user = requireUser(res);
    if (user.readonly) throw forbidden('This token is read-only; log in with a full token to change orgs and teams.');
    if (isLimited(user.limits)) throw forbidden('This token is limited to some packages; orgs and teams are changed with a full token (`npm login`).');
    await requireWriteFactor(ctx.accounts, ctx.config, res, user);
    return user;
  }

  /** Why `user` may not claim the scope `name` for a new org, or null. */
  async function claimProblem(name: string, user: AuthenticatedUser): Promise<string | null> {
    if (isAdmin(user)) return null;
    const reserved = await ctx.accounts.signupProblem(name);
    if (reserved) return 'The scope @' + name + ' is reserved; ask an admin to make the org.';
    // The company's own scopes (never taken from the upstream) are its admins' to give.
    if (ctx.config.replication.privateScopes.includes('@' + name)) return 'The scope @' + name + ' is one of this registry\'s private scopes (REPLICATION_PRIVATE_SCOPES); ask an admin to make the org.';
    if (name !== user.name && (await ctx.accounts.account(name))) return 'The scope @' + name + ' is the user ' + name + '\'s; choose another org name.';
    const range = '_all_docs?startkey=' + encodeURIComponent(JSON.stringify('@' + name + '/')) + '&endkey=' + encodeURIComponent(JSON.stringify('@' + name + '/\ufff0'));
    const mirrored = await ctx.mirrored.request<{ rows: unknown[] }>('GET', range + '&limit=1');
    if (mirrored.rows.length) return 'The scope @' + name + ' has packages mirrored from the upstream registry; ask an admin to make the org.';
    const local = await ctx.registry.request<{ rows: { doc?: PackageDoc }[] }>('GET', range + '&include_docs=true');
    for (const row of local.rows) {
      if (row.doc && maintainerNames(row.doc).some((m) => m !== user.name)) {
        return 'The scope @' + name + ' has packages of other maintainers (' + row.doc.name + '); ask an admin to make the org.';
      }
    }
    return null;
  }

  async function setMember(req: Request, res: Response, orgName: string): Promise<void> {
    const user = await manager(res);
    const member = checkedMemberName(bodyString(req, 'user', 'user name'));
    const body = (req.body || {}) as Record<string, unknown>;
    const role = (body.role === undefined || body.role === null ? 'developer' : body.role) as OrgRole;
    if (ORG_ROLES.indexOf(role) === -1) throw badRequest('The role must be owner, admin or developer.');
    const account = await ctx.accounts.account(member);
    if (!account || account.admin) throw notFound('No account "' + member + '" on this registry.');
    const exists = own(await store.current(), orgName);
    const claim = exists ? null : await claimProblem(orgName, user);
    if (claim) throw forbidden(claim);
    const answer = await store.change((orgs) => {
      if (!own(orgs, orgName)) {
        // A new org: its maker (a user) becomes its owner; a server admin makes the user named its owner.
        const owner = isAdmin(user) ? member : user.name;
        const owned = Object.keys(orgs).filter((name) => roleIn(orgs[name], user.name) === 'owner').length;
        if (!isAdmin(user) && owned >= MAX_ORGS_OWNED) throw forbidden('You own ' + owned + ' orgs already, as many as a user may make; ask an admin to make more.');
        orgs[orgName] = { created: new Date().toISOString(), members: { [owner]: 'owner' }, teams: {} };
        joinDevelopers(orgs[orgName], owner);
        if (owner === member) return { org: { name: orgName, size: 1 }, user: member, role: 'owner' };
      } else if (!exists && !isAdmin(user) && roleIn(orgs[orgName], user.name) !== 'owner') {
        throw forbidden('The org @' + orgName + ' was just made by someone else; ask its owners.');
      }
      const org = orgs[orgName];
      if (!isAdmin(user) && roleIn(org, user.name) !== 'owner') throw forbidden('Only the owners of @' + orgName + ' add members or change their roles.');
      if (roleIn(org, member) === 'owner' && role !== 'owner' && owners(org).length === 1) {
        throw forbidden(member + ' is the last owner of @' + orgName + '; make another member an owner first.');
      }
      org.members[member] = role;
      joinDevelopers(org, member);
      return { org: { name: orgName, size: Object.keys(org.members).length }, user: member, role };
    });
    ctx.log.info({ user: user.name, org: orgName, member, role: answer.role }, 'org member set');
    res.json(answer);
  }

  const owners = (org: Org): string[] => Object.keys(org.members).filter((m) => org.members[m] === 'owner');

  async function removeMember(req: Request, res: Response, orgName: string): Promise<void> {
    const user = await manager(res);
    const member = checkedMemberName(bodyString(req, 'user', 'user name'));
    await store.change((orgs) => {
      const org = orgNamed(orgs, orgName);
      if (!isAdmin(user) && roleIn(org, user.name) !== 'owner' && member !== user.name) throw forbidden('Only the owners of @' + orgName + ' remove members (a member may leave).');
      if (!roleIn(org, member)) throw notFound(member + ' is not a member of @' + orgName + '.');
      if (org.members[member] === 'owner' && owners(org).length === 1) throw forbidden(member + ' is the last owner of @' + orgName + '; make another member an owner first.');
      delete org.members[member];
      for (const team of Object.keys(org.teams)) org.teams[team].members = org.teams[team].members.filter((m) => m !== member);
    });
    ctx.log.info({ user: user.name, org: orgName, member }, 'org member removed');
    res.status(204).end();
  }

  async function listMembers(res: Response, orgName: string): Promise<void> {
    const user = requireUser(res);
    const org = orgNamed(await store.current(), orgName);
    assertMember(org, orgName, user);
    const roster: Record<string, OrgRole> = {};
    for (const member of Object.keys(org.members).sort()) roster[member] = org.members[member];
    res.json(roster);
  }

  async function createTeam(req: Request, res: Response, orgName: string): Promise<void> {
    const user = await manager(res);
    const team = checkedTeamName(bodyString(req, 'name', 'team name'));
    const body = (req.body || {}) as Record<string, unknown>;
    const description = typeof body.description === 'string' ? body.description.slice(0, 1000) : undefined;
    await store.change((orgs) => {
      const org = orgNamed(orgs, orgName);
      assertManagesTeams(org, orgName, user);
      if (own(org.teams, team)) throw new HttpError(409, 'The team ' + orgName + ':' + team + ' exists already.');
      if (Object.keys(org.teams).length >= MAX_TEAMS) throw forbidden('@' + orgName + ' has ' + MAX_TEAMS + ' teams, as many as an org may have; destroy one first.');
      org.teams[team] = { ...(description ? { description } : {}), members: [] };
    });
    ctx.log.info({ user: user.name, org: orgName, team }, 'team created');
    res.status(201).json({ name: team, ...(description ? { description } : {}) });
  }

  async function destroyTeam(res: Response, orgName: string, team: string): Promise<void> {
    const user = await manager(res);
    await store.change((orgs) => {
      const org = orgNamed(orgs, orgName);
      assertManagesTeams(org, orgName, user);
      teamNamed(org, orgName, team);
      if (team === DEVELOPERS_TEAM) throw forbidden('The developers team of @' + orgName + ' holds every member and cannot be destroyed.');
      delete org.teams[team];
      for (const pkg of Object.keys(org.packages || {})) delete (org.packages![pkg].teams || {})[team];
    });
    ctx.log.info({ user: user.name, org: orgName, team }, 'team destroyed');
    res.status(204).end();
  }

  async function listTeams(res: Response, orgName: string): Promise<void> {
    const user = requireUser(res);
    const org = orgNamed(await store.current(), orgName);
    assertMember(org, orgName, user);
    res.json(Object.keys(org.teams).sort().map((team) => orgName + ':' + team));
  }

  async function changeTeamMember(req: Request, res: Response, orgName: string, team: string, add: boolean): Promise<void> {
    const user = await manager(res);
    const member = checkedMemberName(bodyString(req, 'user', 'user name'));
    await store.change((orgs) => {
      const org = orgNamed(orgs, orgName);
      assertManagesTeams(org, orgName, user);
      const members = teamNamed(org, orgName, team).members;
      if (add && !roleIn(org, member)) throw badRequest(member + ' is not a member of @' + orgName + ': an owner adds them first with `npm org set ' + orgName + ' ' + member + '`.');
      if (!add && team === DEVELOPERS_TEAM && roleIn(org, member)) throw forbidden('Every member of @' + orgName + ' is in its developers team: remove them from the org instead (`npm org rm`).');
      const at = members.indexOf(member);
      if (add && at === -1) members.push(member);
      if (!add) {
        if (at === -1) throw notFound(member + ' is not in ' + orgName + ':' + team + '.');
        members.splice(at, 1);
      }
    });
    ctx.log.info({ user: user.name, org: orgName, team, member, change: add ? 'added' : 'removed' }, 'team member changed');
    if (add) res.status(201).json({ user: member, team: orgName + ':' + team });
    else res.status(204).end();
  }

  async function listTeamMembers(res: Response, orgName: string, team: string): Promise<void> {
    const user = requireUser(res);
    const org = orgNamed(await store.current(), orgName);
    assertMember(org, orgName, user);
    res.json([...teamNamed(org, orgName, team).members].sort());
  }

  /** The local package `name` in the scope of `orgName`, or a 4xx that says why it cannot be granted. */
  async function orgPackage(res: Response, orgName: string, name: string): Promise<void> {
    if (name.indexOf('@' + orgName + '/') !== 0) throw badRequest('"' + name + '" is not in the scope @' + orgName + '; teams of @' + orgName + ' are granted its packages only.');
    await ctx.access.assertRead(res, name);
    const doc = await getPackageDoc(ctx.registry, name);
    if (!doc || isTombstone(doc) || isMirrored(doc, ctx.origins)) throw notFound('Package "' + name + '" is not published on this registry.');
  }

  async function grant(req: Request, res: Response, orgName: string, team: string): Promise<void> {
    const user = await manager(res);
    const name = bodyString(req, 'package', 'package name');
    const permissions = bodyString(req, 'permissions', 'read-only|read-write');
    if (permissions !== 'read-only' && permissions !== 'read-write') throw badRequest('"permissions" must be read-only or read-write.');
    const before = orgNamed(await store.current(), orgName);
    assertManagesTeams(before, orgName, user);
    await orgPackage(res, orgName, name);
    await store.change((orgs) => {
      const org = orgNamed(orgs, orgName);
      assertManagesTeams(org, orgName, user);
      teamNamed(org, orgName, team);
      org.packages = org.packages || {};
      const entry = (org.packages[name] = org.packages[name] || {});
      entry.teams = { ...(entry.teams || {}), [team]: permissions as Permission };
    });
    ctx.log.info({ user: user.name, org: orgName, team, package: name, permissions }, 'package granted to team');
    res.status(201).json({ ok: true });
  }

  async function revoke(req: Request, res: Response, orgName: string, team: string): Promise<void> {
    const user = await manager(res);
    const name = bodyString(req, 'package', 'package name');
    await store.change((orgs) => {
      const org = orgNamed(orgs, orgName);
      assertManagesTeams(org, orgName, user);
      teamNamed(org, orgName, team);
      const entry = org.packages && own(org.packages, name) ? org.packages[name] : null;
      if (!entry || !entry.teams || !own(entry.teams, team)) throw notFound(orgName + ':' + team + ' has no grant on "' + name + '".');
      delete entry.teams[team];
      if (!Object.keys(entry.teams).length) delete entry.teams;
      if (!Object.keys(entry).length) delete org.packages![name];
    });
    ctx.log.info({ user: user.name, org: orgName, team, package: name }, 'package revoked from team');
    res.status(204).end();
  }

  async function teamPackages(res: Response, orgName: string, team: string): Promise<void> {
    const user = requireUser(res);
    const org = orgNamed(await store.current(), orgName);
    assertMember(org, orgName, user);
    teamNamed(org, orgName, team);
    const list: Record<string, Permission> = {};
    for (const pkg of Object.keys(org.packages || {}).sort()) {
      const permission = (org.packages![pkg].teams || {})[team];
      if (permission) list[pkg] = permission;
    }
    res.json(list);
  }

  /** The org's packages: every package of its scope here, with the caller's permission on it. */
  async function orgPackages(res: Response, orgName: string): Promise<void> {
    const user = requireUser(res);
    const org = orgNamed(await store.current(), orgName);
    assertMember(org, orgName, user);
    const range = '_all_docs?startkey=' + encodeURIComponent(JSON.stringify('@' + orgName + '/')) + '&endkey=' + encodeURIComponent(JSON.stringify('@' + orgName + '/\ufff0')) + '&include_docs=true';
    const rows = (await ctx.registry.request<{ rows: { id: string; doc?: PackageDoc }[] }>('GET', range)).rows;
    const list: Record<string, Permission> = {};
    for (const row of rows) {
      if (!row.doc || isTombstone(row.doc)) continue;
      const mine = isAdmin(user) || managesTeams(org, user) || maintainerNames(row.doc).includes(user.name) ? 'read-write' : teamGrant(org, row.id, user.name);
      list[row.id] = mine || 'read-only';
    }
    res.json(list);
  }

  /** The packages `name` maintains or is granted through teams (npm asks this when no org has the name). */
  async function userPackages(res: Response, name: string): Promise<void> {
    const user = requireUser(res);
    const list: Record<string, Permission> = {};
    const rows = (await ctx.registry.view<string>('byMaintainer', { key: name })).rows;
    for (const row of rows) if (await ctx.access.mayRead(res, row.value)) list[row.value] = 'read-write';
    const orgs = await store.current();
    for (const orgName of Object.keys(orgs)) {
      // What the teams of an org grant someone tells that they are its member: for its members to see (and the user themself, and admins).
      if (user.name !== name && !isAdmin(user) && !roleIn(orgs[orgName], user.name)) continue;
      for (const pkg of Object.keys(orgs[orgName].packages || {})) {
        const permission = teamGrant(orgs[orgName], pkg, name);
        if (permission && !list[pkg] && (await ctx.access.mayRead(res, pkg))) list[pkg] = permission;
      }
    }
    res.json(list);
  }

  const handle = (work: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: (err?: unknown) => void) => {
    work(req, res).catch(next);
  };
  const methodNotAllowed = (allowed: string) => handle(async () => {
    throw new HttpError(405, 'Use ' + allowed + ' here.');
  });

  router.put('/-/org/:org/user', handle((req, res) => setMember(req, res, checkedOrgName(req.params.org))));
  router.delete('/-/org/:org/user', handle((req, res) => removeMember(req, res, checkedOrgName(req.params.org))));
  router.get('/-/org/:org/user', handle((req, res) => listMembers(res, checkedOrgName(req.params.org))));
  router.all('/-/org/:org/user', methodNotAllowed('PUT, DELETE or GET'));
  router.put('/-/org/:org/team', handle((req, res) => createTeam(req, res, checkedOrgName(req.params.org))));
  router.get('/-/org/:org/team', handle((req, res) => listTeams(res, checkedOrgName(req.params.org))));
  router.all('/-/org/:org/team', methodNotAllowed('PUT or GET'));
  router.get('/-/org/:org/package', handle((req, res) => orgPackages(res, checkedOrgName(req.params.org))));
  router.delete('/-/team/:org/:team', handle((req, res) => destroyTeam(res, checkedOrgName(req.params.org), checkedTeamName(req.params.team))));
  router.put('/-/team/:org/:team/user', handle((req, res) => changeTeamMember(req, res, checkedOrgName(req.params.org), checkedTeamName(req.params.team), true)));
  router.delete('/-/team/:org/:team/user', handle((req, res) => changeTeamMember(req, res, checkedOrgName(req.params.org), checkedTeamName(req.params.team), false)));
  router.get('/-/team/:org/:team/user', handle((req, res) => listTeamMembers(res, checkedOrgName(req.params.org), checkedTeamName(req.params.team))));
  router.put('/-/team/:org/:team/package', handle((req, res) => grant(req, res, checkedOrgName(req.params.org), checkedTeamName(req.params.team))));
  router.delete('/-/team/:org/:team/package', handle((req, res) => revoke(req, res, checkedOrgName(req.params.org), checkedTeamName(req.params.team))));
  router.get('/-/team/:org/:team/package', handle((req, res) => teamPackages(res, checkedOrgName(req.params.org), checkedTeamName(req.params.team))));
  router.get('/-/user/:user/package', handle((req, res) => userPackages(res, checkedMemberName(req.params.user))));
  return router;
}
