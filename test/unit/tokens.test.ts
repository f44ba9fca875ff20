import { describeLimits, isLimited, normalScope, tokenCovers, tokenRequest } from '../../core/tokens';

const lifetimes = { maxDays: 90, defaultWriteDays: 7 };
const now = Date.parse('2026-12-01T00:00:00Z');
const days = (iso: string) => (Date.parse(iso) - now) / 86_400_000;

describe('what a granular token may act on', () => {
  it.each([
    [undefined, 'anything', true],
    [{}, 'anything', true],
    [{ packagesAll: true }, '@acme/x', true],
    [{ packages: ['left-pad'] }, 'left-pad', true],
    [{ packages: ['left-pad'] }, 'left-pad-2', false],
    [{ packages: ['left-pad'] }, '@acme/left-pad', false],
    [{ scopes: ['@acme'] }, '@acme/x', true],
    [{ scopes: ['@acme'] }, '@ACME/x', true],
    [{ scopes: ['@acme'] }, '@acme-evil/x', false],
    [{ scopes: ['@acme'] }, 'acme', false],
    [{ scopes: ['@acme'], packages: ['b'] }, 'b', true],
  ])('%j covers %s: %s', (limits, name, expected) => {
    expect(tokenCovers(limits as never, name)).toBe(expected);
  });

  it('knows a limited token, and says what it is limited to', () => {
    expect(isLimited({ packages: ['a'] })).toBe(true);
    expect(isLimited({ packagesAll: true })).toBe(false);
    expect(isLimited({})).toBe(false);
    expect(describeLimits({ packages: ['a'], scopes: ['@b'] })).toBe('"a", the scope @b');
    expect(normalScope('Acme')).toBe('@acme');
    expect(normalScope('@a/b')).toBeNull();
  });
});

describe('npm token create, checked', () => {
  it('expires: write tokens after the default, read-only ones after the maximum, asked ones as asked up to the maximum', () => {
    expect(days(tokenRequest({}, lifetimes, now).expires)).toBe(7);
    expect(days(tokenRequest({ packages_and_scopes_permission: 'read-only' }, lifetimes, now).expires)).toBe(90);
    expect(days(tokenRequest({ expires: 30 }, lifetimes, now).expires)).toBe(30);
    expect(() => tokenRequest({ expires: 91 }, lifetimes, now)).toThrow(/at most 90 days/);
    // npm sends `--packages a,b` as one item: two packages (names hold no comma).
    expect(tokenRequest({ packages: ['a,b', 'c'], scopes: ['@x,@y'] }, lifetimes, now).limits).toMatchObject({ packages: ['a', 'b', 'c'], scopes: ['@x', '@y'] });
    for (const expires of [0, -1, 1.5, '7', true]) expect(() => tokenRequest({ expires }, lifetimes, now)).toThrow(/number of days/);
  });

  it('takes packages, scopes and packages_all, normalised', () => {
    const asked = tokenRequest({ packages: ['a', 'a', '@x/y'], scopes: ['Acme', '@b'], name: 'ci', description: 'for CI' }, lifetimes, now);
    expect(asked.limits).toEqual({ packages: ['a', '@x/y'], scopes: ['@acme', '@b'] });
    expect(asked).toMatchObject({ name: 'ci', description: 'for CI', readonly: false });
    expect(tokenRequest({ packages_all: true }, lifetimes, now).limits).toEqual({ packagesAll: true });
    expect(tokenRequest({ bypass_2fa: true }, lifetimes, now).bypass2fa).toBe(true);
    expect(tokenRequest({}, lifetimes, now).bypass2fa).toBe(false);
  });

  it.each([
    [{ orgs: ['acme'] }, /no npm orgs/],
    [{ orgs_permission: 'read-only' }, /no npm orgs/],
    [{ packages_and_scopes_permission: 'no-access' }, /orgs only/],
    [{ packages_and_scopes_permission: 'owner' }, /must be one of/],
    [{ packages: ['../etc'] }, /not a package name/],
    [{ packages: [3] }, /list of names/],
    [{ scopes: ['@a/b'] }, /not a scope/],
    [{ packages_all: true, scopes: ['@a'] }, /--packages-all/],
  ])('refuses %j', (body, message) => {
    expect(() => tokenRequest(body as Record<string, unknown>, lifetimes, now)).toThrow(message);
  });
});
