import { allowed, patternMatches, rulesProblem, AccessRule } from '../../core/access';
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
