import { distTagProblem, isVersion, packageNameProblem, tarballFileName } from '../../core/names';

describe('package names', () => {
  it.each(['lodash', 'left-pad', '@acme/widget', 'a.b_c-d', 'x'])('accepts %s', (name) => {
    expect(packageNameProblem(name, true)).toBeNull();
  });
  it.each([
    ['', 'non-empty'],
    ['../etc/passwd', 'must not start'],
    ['@acme/../x', 'URL-safe'],
    ['@acme/..', 'must not start'],
    ['a/b', 'URL-safe'],
    ['.hidden', 'must not start'],
    ['_private', 'must not start'],
    [' space', 'spaces'],
    ['has space', 'URL-safe'],
    ['node_modules', 'blocked'],
    ['Upper', 'lower case'],
    ['@acme/Upper', 'lower case'],
    ['crazy!', '~\'!()*'],
    ['a'.repeat(215), '214'],
    ['@/x', 'URL-safe'],
  ])('refuses %j (%s)', (name, reason) => {
    expect(packageNameProblem(name, true)).toContain(reason);
  });
  it('keeps existing upper-case names usable but refuses new ones', () => {
    expect(packageNameProblem('JSONStream', false)).toBeNull();
    expect(packageNameProblem('JSONStream', true)).toContain('lower case');
  });
  it('names tarballs without the scope', () => {
    expect(tarballFileName('@acme/widget', '1.2.3')).toBe('widget-1.2.3.tgz');
    expect(tarballFileName('lodash', '4.17.21')).toBe('lodash-4.17.21.tgz');
  });
  it('knows versions and dist-tags', () => {
    expect(isVersion('1.2.3-beta.1+build.5')).toBe(true);
    expect(isVersion('v1.2.3')).toBe(false);
    expect(isVersion('1.2')).toBe(false);
    expect(distTagProblem('next')).toBeNull();
    expect(distTagProblem('1.x')).toContain('version');
    expect(distTagProblem('a/b')).toContain('URL-safe');
  });
});
