/**
 * Access rules, shared by the gateway (reads) and `_design/access`'s validate_doc_update (writes).
 * The rules live in the design document `_design/access` as `rules`: a list tried in order, the
 * first whose `package` pattern matches the package name decides.
 *
 *   { "package": "@acme/*", "read": ["$authenticated"], "publish": ["role:acme"] }
 *
 * Patterns: `**` any name, `*` any unscoped name, `@acme/*` any name in the scope, `foo-*` a prefix;
 * `*` never crosses a `/`. Principals: `$all` (anyone, also anonymous), `$authenticated`, a user
 * name, `role:<role>` (a CouchDB role of the user), or an org's members (`org:acme`,
 * `org:acme:owner|admin|developer`, `team:acme:<team>`: core/orgs.ts). Admins may do anything.
 *
 * The orgs (`_design/access`'s `orgs`) add to the rules: in a scope an org owns, only its members
 * publish, and its private packages are read by its members only, whatever the rules say.
 */
import { orgAllows, orgNameProblem, orgPrincipalMatches, OrgRole, Orgs, orgsProblem, ORG_ROLES, teamNameProblem } from './orgs';

export interface AccessRule {
  package: string;
  read?: string[];
  publish?: string[];
}

export interface AccessUser {
  name: string | null;
  roles: string[];
}

export const DEFAULT_RULES: AccessRule[] = [{ package: '**', read: ['$all'], publish: ['$authenticated'] }];

/** An example of valid rules, for the messages that refuse invalid ones. */
export const RULES_EXAMPLE = '[{"package": "@acme/*", "read": ["$authenticated"], "publish": ["role:acme"]}, {"package": "**", "read": ["$all"], "publish": ["$authenticated"]}]';

const RULE_KEYS = ['package', 'read', 'publish'];
const PATTERN_PART = /^[A-Za-z0-9*~-][A-Za-z0-9*._~-]*$/;

/**
 * Why `pattern` is not a package pattern of the rules (or of the supply-chain policy), or null: `**`,
 * or a package name (`@scope/name` or `name`) in which `*` may stand for any characters.
 */
export function patternProblem(pattern: unknown): string | null {
  if (typeof pattern !== 'string' || !pattern) return 'a package pattern must be a non-empty string such as "@acme/*", "left-pad" or "**"';
  if (pattern === '**') return null;
  const scoped = pattern.charAt(0) === '@';
  const parts = (scoped ? pattern.slice(1) : pattern).split('/');
  if (scoped ? parts.length !== 2 : parts.length !== 1) {
    return '"' + pattern + '" is not a package pattern: write "name", "prefix-*", "@scope/name", "@scope/*" or "**" (only a scoped name has one "/")';
  }
  for (const part of parts) {
    if (!PATTERN_PART.test(part)) {
      return '"' + pattern + '" is not a package pattern: names are made of letters, digits, "-", ".", "_", "~" (and "*" for any characters), with no spaces';
    }
  }
  return null;
}

/** Why `principal` is not one the rules know, or null. */
function principalProblem(principal: unknown): string | null {
  const known = 'write "$all", "$authenticated", "role:<role>", "org:<org>", "org:<org>:owner|admin|developer", "team:<org>:<team>" or a user name';
  if (typeof principal !== 'string' || !principal.trim()) return 'a principal must be a non-empty string: ' + known;
  if (principal !== principal.trim()) return '"' + principal + '" has spaces around it: ' + known;
  if (principal === '$all' || principal === '$authenticated') return null;
  if (principal.charAt(0) === '$') return '"' + principal + '" is not a principal: ' + known;
  if (principal.indexOf('role:') === 0) return principal.length > 5 ? null : '"role:" names no role: ' + known;
  const parts = principal.split(':');
  if (parts[0] === 'org' && (parts.length === 2 || (parts.length === 3 && ORG_ROLES.indexOf(parts[2] as OrgRole) !== -1))) {
    return orgNameProblem(parts[1]) ? '"' + principal + '" names no valid org: ' + known : null;
  }
  if (parts[0] === 'team' && parts.length === 3) {
    return orgNameProblem(parts[1]) || teamNameProblem(parts[2]) ? '"' + principal + '" names no valid team: ' + known : null;
  }
  if (principal.indexOf(':') !== -1) return '"' + principal + '" is not a principal (user names have no ":"): ' + known;
  return null;
}

/**
 * Why `rules` is not a valid list of rules, or null: checked when `_design/access` is written (through
 * the admin proxy, and on the embedded server) and whenever the rules are used.
 */
export function rulesProblem(rules: unknown): string | null {
  if (!Array.isArray(rules)) return '"rules" must be a list of rules, such as ' + RULES_EXAMPLE;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as AccessRule;
    const where = 'rule ' + i + ' of "rules"';
    if (!rule || typeof rule !== 'object' || Array.isArray(rule)) return where + ' must be an object such as {"package": "**", "read": ["$all"], "publish": ["$authenticated"]}';
    for (const key of Object.keys(rule)) {
      if (RULE_KEYS.indexOf(key) === -1) return where + ' has the unknown field "' + key + '": a rule has only "package", "read" and "publish"';
    }
    if (rule.package === undefined) return where + ' needs a "package" pattern, such as "@acme/*" or "**"';
    const pattern = patternProblem(rule.package);
    if (pattern) return where + ': ' + pattern;
    for (const key of ['read', 'publish'] as const) {
      const list = rule[key];
      if (list === undefined) continue;
      if (!Array.isArray(list)) return where + ': "' + key + '" must be a list of principals, such as ["$authenticated"]';
      for (const principal of list) {
        const problem = principalProblem(principal);
        if (problem) return where + ', "' + key + '": ' + problem;
      }
    }
  }
  return null;
}

const compiled = new Map<string, RegExp>();

export function patternMatches(pattern: string, name: string): boolean {
  if (pattern === '**') return true;
  let regex = compiled.get(pattern);
  if (!regex) {
    let source = '^';
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern.charAt(i);
      if (c === '*' && pattern.charAt(i + 1) === '*') {
        source += '.*';
        i++;
      } else if (c === '*') source += '[^/]*';
      else source += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    }
    regex = new RegExp(source + '$');
    if (compiled.size > 1000) compiled.clear();
    compiled.set(pattern, regex);
  }
  return regex.test(name);
}

export function ruleFor(rules: AccessRule[], name: string): AccessRule | null {
  for (const rule of rules) if (patternMatches(rule.package, name)) return rule;
  return null;
}

export function isAdminUser(user: AccessUser): boolean {
  return user.roles.indexOf('_admin') !== -1;
}

/**
 * Whether `user` may `action` the package `name` under `rules` and the `orgs`. No matching rule:
 * nobody but admins.
 */
export function allowed(rules: AccessRule[], name: string, action: 'read' | 'publish', user: AccessUser, orgs?: Orgs): boolean {
  if (isAdminUser(user)) return true;
  if (orgAllows(orgs, name, action, user) === false) return false;
  return rulesAllow(rules, name, action, user, orgs);
}

/**
 * Whether the rules alone (without what an org adds: its private packages, its members-only
 * publishing) let `user` `action` the package `name`: what does not depend on which packages exist.
 */
export function rulesAllow(rules: AccessRule[], name: string, action: 'read' | 'publish', user: AccessUser, orgs?: Orgs): boolean {
  if (isAdminUser(user)) return true;
  const rule = ruleFor(rules, name);
  const principals = (rule && rule[action]) || [];
  for (const principal of principals) {
    if (principal === '$all') return true;
    if (principal === '$authenticated' && user.name) return true;
    if (principal.indexOf('role:') === 0 && user.roles.indexOf(principal.slice(5)) !== -1) return true;
    if ((principal.indexOf('org:') === 0 || principal.indexOf('team:') === 0) && orgPrincipalMatches(orgs, principal, user)) return true;
    if (user.name && principal === user.name) return true;
  }
  return false;
}

/** The id of the design document that holds the rules. */
export const ACCESS_DESIGN_ID = '_design/access';

/**
 * Why a write of `_design/access` must be refused, or null. CouchDB runs no validate_doc_update for
 * design documents, so this is checked by whatever writes or forwards it: the gateway's admin proxy
 * (on any CouchDB) and the embedded server. A write that leaves the rules as they were passes (the
 * registry's own push of new code keeps an admin's rules, even ones that are broken already; those are
 * reported by `/-/health`).
 */
export function accessDesignProblem(newDoc: { _deleted?: unknown; rules?: unknown; orgs?: unknown } | null | undefined, oldDoc: { rules?: unknown; orgs?: unknown } | null): string | null {
  if (!newDoc) return null;
  if (newDoc._deleted) {
    return 'Deleting _design/access would leave no access rules, and every read would fail. To let everyone read and every logged-in user publish, save it with "rules": ' + JSON.stringify(DEFAULT_RULES) + '.';
  }
  if (oldDoc && JSON.stringify(oldDoc.rules) === JSON.stringify(newDoc.rules) && JSON.stringify(oldDoc.orgs) === JSON.stringify(newDoc.orgs)) return null;
  const problem = rulesProblem(newDoc.rules);
  if (problem) return 'The access rules in _design/access were not saved: ' + problem + '. Fix them and save again.';
  const orgs = orgsProblem(newDoc.orgs);
  return orgs ? 'The orgs in _design/access were not saved: ' + orgs + '. Fix them (or use npm org, npm team and npm access) and save again.' : null;
}
