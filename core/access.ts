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
import { orgAllows, orgPrincipalMatches, Orgs } from './orgs';

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

/** Why `rules` is not a valid list of rules, or null. */
export function rulesProblem(rules: unknown): string | null {
  if (!Array.isArray(rules)) return '"rules" must be a list';
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as AccessRule;
    if (!rule || typeof rule.package !== 'string' || !rule.package) return 'rule ' + i + ' needs a "package" pattern';
    for (const key of ['read', 'publish'] as const) {
      const list = rule[key];
      if (list !== undefined && (!Array.isArray(list) || !list.every((p) => typeof p === 'string'))) {
        return 'rule ' + i + ': "' + key + '" must be a list of principals';
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
