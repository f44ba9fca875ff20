import { accessDesignProblem, allowed, patternMatches, rulesAllow, rulesProblem, AccessRule } from '../../core/access';
import { Orgs } from '../../core/orgs';
import validateAccess from '../../couchapp/access/validate_doc_update';
import { packageDoc } from './fixtures';

const rules: AccessRule[] = [
  { package: '@acme/*', read: ['$authenticated'], publish: ['role:acme', 'root-user'] },
  { package: 'legacy-*', read: ['$all'], publish: [] },
  { package: '**', read: ['$all'], publish: ['$authenticated'] },
];
const anonymous = { name: null, roles: [] };
const bob = { name: 'bob', roles: [] };
const alice = { name: 'alice', roles: ['acme'] };

describe('access patterns and principals', () => {
  it.each([
    ['**', '@x/y', true], ['*', 'lodash', true], ['*', '@x/y', false], ['@acme/*', '@acme/tool', true],
    ['@acme/*', '@acmex/tool', false], ['legacy-*', 'legacy-api', true], ['legacy-*', 'legacyapi', false], ['a.b', 'axb', false],
  ])('%s matches %s: %s', (pattern, name, expected) => {
    expect(patternMatches(pattern, name)).toBe(expected);
  });

  it('the first matching rule decides', () => {
    expect(allowed(rules, '@acme/tool', 'read', anonymous)).toBe(false);
    expect(allowed(rules, '@acme/tool', 'read', bob)).toBe(true);
    expect(allowed(rules, '@acme/tool', 'publish', bob)).toBe(false);
    expect(allowed(rules, '@acme/tool', 'publish', alice)).toBe(true);
    expect(allowed(rules, '@acme/tool', 'publish', { name: 'root-user', roles: [] })).toBe(true);
    expect(allowed(rules, 'legacy-api', 'publish', alice)).toBe(false);
    expect(allowed(rules, 'lodash', 'publish', anonymous)).toBe(false);
    expect(allowed(rules, 'lodash', 'read', anonymous)).toBe(true);
    expect(allowed(rules, 'legacy-api', 'publish', { name: 'x', roles: ['_admin'] })).toBe(true);
    expect(allowed([], 'lodash', 'read', bob)).toBe(false);
  });

  it('checks the shape of the rules', () => {
    expect(rulesProblem(rules)).toBeNull();
    expect(rulesProblem({})).toContain('list');
    expect(rulesProblem([{ read: ['$all'] }])).toContain('package');
    expect(rulesProblem([{ package: '**', read: '$all' }])).toContain('principals');
  });

  it.each([
    ['a misspelt field', [{ package: '**', reed: ['$all'] }], 'unknown field "reed"'],
    ['an unknown $ principal', [{ package: '**', read: ['$everyone'] }], '"$everyone" is not a principal'],
    ['a principal with spaces', [{ package: '**', read: [' $all'] }], 'spaces around it'],
    ['a role without a name', [{ package: '**', publish: ['role:'] }], 'names no role'],
    ['another prefix', [{ package: '**', publish: ['group:acme'] }], 'user names have no ":"'],
    ['an empty principal', [{ package: '**', read: [''] }], 'non-empty string'],
    ['a pattern with a space', [{ package: '@acme /*', read: ['$all'] }], 'not a package pattern'],
    ['a pattern with two slashes', [{ package: 'a/b', read: ['$all'] }], 'not a package pattern'],
    ['a rule that is a string', ['**'], 'must be an object'],
  ])('refuses %s, saying what is wrong and where', (_case, bad, words) => {
    expect(rulesProblem(bad)).toContain(words);
  });

  it('a write of _design/access that leaves broken rules as they were passes; one that breaks them or deletes the document is refused', () => {
    const broken = { rules: [{ package: '**', reed: [] }] };
    expect(accessDesignProblem({ ...broken, validate_doc_update: 'new code' } as never, broken)).toBeNull();
    expect(accessDesignProblem({ rules: rules }, broken)).toBeNull();
    expect(accessDesignProblem(broken, { rules })).toContain('were not saved: rule 0 of "rules" has the unknown field "reed"');
    expect(accessDesignProblem({ _deleted: true }, { rules })).toContain('Deleting _design/access');
  });

  it('the rules may name orgs and teams; a write of _design/access with a broken org table is refused', () => {
    const withOrgs = [{ package: '@acme/*', read: ['org:acme', 'team:acme:developers'], publish: ['org:acme:owner'] }];
    expect(rulesProblem(withOrgs)).toBeNull();
    expect(rulesProblem([{ package: '**', read: ['org:acme:boss'] }])).toContain('is not a principal');
    expect(rulesProblem([{ package: '**', read: ['team:acme'] }])).toContain('is not a principal');
    expect(rulesProblem([{ package: '**', read: ['team:Acme:x'] }])).toContain('names no valid team');
    const orgs = { acme: { members: { alice: 'owner' }, teams: { developers: { members: ['alice'] } } } };
    expect(accessDesignProblem({ rules: withOrgs, orgs }, { rules: withOrgs })).toBeNull();
    expect(accessDesignProblem({ rules: withOrgs, orgs: { acme: { members: { alice: 'king' }, teams: {} } } }, { rules: withOrgs, orgs })).toContain('The orgs in _design/access were not saved');
  });

  it('rulesAllow is what the rules alone say, without an org\'s private packages: what does not depend on which packages exist', () => {
    const open: AccessRule[] = [{ package: '**', read: ['$all'], publish: ['$authenticated'] }];
    const orgs: Orgs = { acme: { members: { alice: 'owner' }, teams: {}, packages: { '@acme/widget': { status: 'private' } } } };
    expect([allowed(open, '@acme/widget', 'read', bob, orgs), rulesAllow(open, '@acme/widget', 'read', bob, orgs)]).toEqual([false, true]);
    expect([allowed(open, '@acme/gizmos', 'read', bob, orgs), rulesAllow(open, '@acme/gizmos', 'read', bob, orgs)]).toEqual([true, true]);
    expect(allowed(open, '@acme/widget', 'read', alice, orgs)).toBe(true);
    // The rules' own refusals stay refusals.
    expect(rulesAllow(rules, '@acme/widget', 'read', anonymous, orgs)).toBe(false);
  });
});

describe('_design/access validate_doc_update', () => {
  const attempt = (self: { rules?: unknown }, user: { name: string | null; roles: string[] }, name = '@acme/tool', oldDoc: any = null, newDoc: any = packageDoc(name, ['1.0.0'], user.name || 'x')) => {
    try {
      validateAccess.call(self, newDoc, oldDoc, user);
      return 'ok';
    } catch (e) {
      return e;
    }
  };

  it('applies the publish rules of the design document it lives in', () => {
    expect(attempt({ rules }, alice)).toBe('ok');
    expect(attempt({ rules }, bob)).toEqual({ forbidden: expect.stringContaining('not allowed to publish') });
    expect(attempt({ rules }, { name: 'root', roles: ['_admin'] })).toBe('ok');
    expect(attempt({ rules }, anonymous, 'lodash')).toEqual({ unauthorized: expect.stringContaining('npm login') });
  });

  it('lets anyone star, and refuses everything when the rules are broken', () => {
    const old = packageDoc('@acme/tool', ['1.0.0'], 'alice');
    const starred = { ...JSON.parse(JSON.stringify(old)), users: { bob: true } };
    expect(attempt({ rules }, bob, '@acme/tool', old, starred)).toBe('ok');
    expect(attempt({ rules: 'nope' }, alice)).toEqual({ forbidden: expect.stringContaining('invalid') });
  });
});
