/**
 * The orgs of `_design/access` (core/orgs.ts) as the access rules and both validate_doc_update
 * functions apply them: a write must pass `_design/app`'s and `_design/access`'s, as inside CouchDB.
 */
import { allowed, AccessRule, DEFAULT_RULES } from '../../core/access';
import { OrgRole, orgsProblem, Orgs, orgPrincipalMatches } from '../../core/orgs';
import { GATEWAY_ROLE } from '../../core/provenance';
import { PackageDoc } from '../../core/types';
import validateApp from '../../couchapp/validate_doc_update';
import validateAccess from '../../couchapp/access/validate_doc_update';
import { clone, publishOver as publish } from './fixtures';

/** A member named like an inherited key of every object: found as one, and no one else is. */
const members: Record<string, OrgRole> = { alice: 'owner', carol: 'admin', bob: 'developer', dave: 'developer' };
members['constructor'] = 'developer';
const orgs: Orgs = {
  acme: {
    members,
    teams: { developers: { members: ['alice', 'carol', 'bob', 'dave'] }, devs: { members: ['bob'] } },
    packages: { '@acme/widget': { status: 'private', teams: { devs: 'read-write' } }, '@acme/open': { teams: { devs: 'read-only' } } },
  },
};
const user = (name: string | null) => ({ name, roles: name ? [GATEWAY_ROLE] : [] });

/** A write as both design documents judge it inside CouchDB. */
function attempt(self: { rules?: unknown; orgs?: unknown }, newDoc: PackageDoc, oldDoc: PackageDoc | null, who: { name: string | null; roles: string[] }) {
  try {
    validateApp(newDoc, oldDoc, who);
    validateAccess.call(self, newDoc, oldDoc, who);
    return 'ok';
  } catch (e) {
    return e as Record<string, string>;
  }
}


/** `doc` as CouchDB stores it: its tarballs as stubs. */
function stored(doc: PackageDoc): PackageDoc {
  const copy = clone(doc);
  for (const file of Object.keys(copy._attachments || {})) copy._attachments![file] = { content_type: 'application/octet-stream', digest: 'md5-' + file, length: 4, stub: true };
  return copy;
}

describe('the org table', () => {
  it('is checked: names, roles, an owner, team members in the org, grants in the scope', () => {
    expect(orgsProblem(undefined)).toBeNull();
    expect(orgsProblem(orgs)).toBeNull();
    expect(orgsProblem([])).toContain('object');
    expect(orgsProblem({ 'Ac/me': { members: { a: 'owner' }, teams: {} } })).toContain('not a valid org name');
    expect(orgsProblem({ acme: { members: { a: 'developer' }, teams: {} } })).toContain('needs an owner');
    expect(orgsProblem({ acme: { members: { a: 'owner' }, teams: {}, x: 1 } })).toBeNull();
    expect(orgsProblem({ acme: { members: { a: 'god' }, teams: {} } })).toContain('owner, admin or developer');
    expect(orgsProblem({ acme: { members: { a: 'owner' }, teams: { t: { members: ['b'] } } } })).toContain('not a member');
    expect(orgsProblem({ acme: { members: { a: 'owner' }, teams: {}, packages: { '@other/x': {} } } })).toContain('not in the scope');
    expect(orgsProblem({ acme: { members: { a: 'owner' }, teams: {}, packages: { '@acme/x': { teams: { ghost: 'read-write' } } } } })).toContain('not a team');
    expect(orgsProblem({ acme: { members: { a: 'owner' }, teams: {}, packages: { '@acme/x': { status: 'public' } } } })).toContain('"private" or absent');
  });

  it('names members in the rules\' principals, never by inherited keys', () => {
    expect(orgPrincipalMatches(orgs, 'org:acme', { name: 'bob', roles: [] })).toBe(true);
    expect(orgPrincipalMatches(orgs, 'org:acme:owner', { name: 'bob', roles: [] })).toBe(false);
    expect(orgPrincipalMatches(orgs, 'org:acme:owner', { name: 'alice', roles: [] })).toBe(true);
    expect(orgPrincipalMatches(orgs, 'team:acme:devs', { name: 'bob', roles: [] })).toBe(true);
    expect(orgPrincipalMatches(orgs, 'team:acme:devs', { name: 'dave', roles: [] })).toBe(false);
    expect(orgPrincipalMatches(orgs, 'org:toString', { name: 'bob', roles: [] })).toBe(false);
    expect(orgPrincipalMatches(orgs, 'team:acme:constructor', { name: 'bob', roles: [] })).toBe(false);
    expect(orgPrincipalMatches(orgs, 'org:acme', { name: 'hasOwnProperty', roles: [] })).toBe(false);
    const rules: AccessRule[] = [{ package: 'internal-*', read: ['org:acme'], publish: ['team:acme:devs'] }, ...DEFAULT_RULES];
    expect(allowed(rules, 'internal-x', 'read', { name: 'dave', roles: [] }, orgs)).toBe(true);
    expect(allowed(rules, 'internal-x', 'read', { name: 'eve', roles: [] }, orgs)).toBe(false);
    expect(allowed(rules, 'internal-x', 'publish', { name: 'dave', roles: [] }, orgs)).toBe(false);
    expect(allowed(rules, 'internal-x', 'publish', { name: 'bob', roles: [] }, orgs)).toBe(true);
  });

  it('hides private packages from non-members and keeps the scope\'s new packages for members', () => {
    const eve = { name: 'eve', roles: [] };
    expect(allowed(DEFAULT_RULES, '@acme/widget', 'read', eve, orgs)).toBe(false);
    expect(allowed(DEFAULT_RULES, '@acme/widget', 'read', { name: null, roles: [] }, orgs)).toBe(false);
    expect(allowed(DEFAULT_RULES, '@acme/widget', 'read', { name: 'dave', roles: [] }, orgs)).toBe(true);
    expect(allowed(DEFAULT_RULES, '@acme/widget', 'read', { name: 'root', roles: ['_admin'] }, orgs)).toBe(true);
    expect(allowed(DEFAULT_RULES, '@acme/open', 'read', eve, orgs)).toBe(true);
    expect(allowed(DEFAULT_RULES, '@acme/new', 'publish', eve, orgs)).toBe(false);
    expect(allowed(DEFAULT_RULES, '@acme/new', 'publish', { name: 'constructor', roles: [] }, orgs)).toBe(true);
    expect(allowed(DEFAULT_RULES, '@other/new', 'publish', eve, orgs)).toBe(true);
  });
});

describe('validate_doc_update of both design documents with orgs', () => {
  const self = { rules: DEFAULT_RULES, orgs };
  const widget = stored(publish(null, '@acme/widget', '1.0.0', 'alice'));
  const open = stored(publish(null, '@acme/open', '1.0.0', 'alice'));

  it('lets a read-write team member, the owners and the admins publish a package they do not maintain', () => {
    expect(attempt(self, publish(widget, '@acme/widget', '1.1.0', 'alice'), widget, user('bob'))).toBe('ok');
    expect(attempt(self, publish(widget, '@acme/widget', '1.1.0', 'alice'), widget, user('carol'))).toBe('ok');
    expect(attempt(self, publish(open, '@acme/open', '1.1.0', 'alice'), open, user('alice'))).toBe('ok');
  });

  it('refuses members without read-write, non-members, and everyone once the orgs are gone or invalid', () => {
    expect(attempt(self, publish(open, '@acme/open', '1.1.0', 'alice'), open, user('bob'))).toEqual({ forbidden: expect.stringContaining('no team of its org gives you read-write') });
    expect(attempt(self, publish(widget, '@acme/widget', '1.1.0', 'alice'), widget, user('dave'))).toEqual({ forbidden: expect.stringContaining('no team of its org') });
    expect(attempt(self, publish(widget, '@acme/widget', '1.1.0', 'alice'), widget, user('eve'))).toEqual({ forbidden: expect.stringContaining('not a member of the org @acme') });
    expect(attempt(self, publish(null, '@acme/new', '1.0.0', 'eve'), null, user('eve'))).toEqual({ forbidden: expect.stringContaining('not a member of the org @acme') });
    expect(attempt(self, publish(null, '@acme/new', '1.0.0', 'dave'), null, user('dave'))).toBe('ok');
    // Without an org for the scope, a scoped package is its maintainers' only, as before.
    expect(attempt({ rules: DEFAULT_RULES }, publish(widget, '@acme/widget', '1.1.0', 'alice'), widget, user('bob'))).toEqual({ forbidden: expect.stringContaining('not a maintainer') });
    expect(attempt({ rules: DEFAULT_RULES, orgs: { acme: { members: {}, teams: {} } } }, publish(widget, '@acme/widget', '1.1.0', 'alice'), widget, user('alice')))
      .toEqual({ forbidden: expect.stringContaining('an admin must fix them') });
  });

  it('a star of a non-member stays theirs to give, nothing more', () => {
    const starred = clone(widget);
    starred.users = { eve: true };
    expect(attempt(self, starred, widget, user('eve'))).toBe('ok');
    const forOthers = clone(widget);
    forOthers.users = { alice: true };
    expect(attempt(self, forOthers, widget, user('eve'))).toEqual({ forbidden: expect.any(String) });
  });
});
