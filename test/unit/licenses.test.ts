/** The license policy as tables: which declared licenses each policy serves, and the documents it refuses. */
import { declaredLicense, LicensePolicy, licensePolicyProblem, licenseVerdict, publishLicenseProblem } from '../../core/licenses';
import { Policy, policyCovers, policyProblem, withheldVersions, withoutWithheld } from '../../core/policy';
import { PackageDoc, VersionManifest } from '../../core/types';
import { packageDoc } from './fixtures';

const PERMISSIVE: LicensePolicy = { allowed: ['MIT', 'ISC', 'Apache-2.0', 'BSD-3-Clause', 'GPL-2.0-or-later'] };
const DENY_COPYLEFT: LicensePolicy = { denied: ['AGPL-3.0-only', 'GPL-3.0-only'] };

describe('licenseVerdict', () => {
  it.each([
    // allowed list
    [PERMISSIVE, 'MIT', true],
    [PERMISSIVE, 'MIT OR GPL-3.0-only', true], // one side of an OR is enough
    [PERMISSIVE, 'GPL-3.0-only OR MIT', true],
    [PERMISSIVE, 'MIT AND ISC', true],
    [PERMISSIVE, '(MIT AND ISC) OR WTFPL', true],
    [PERMISSIVE, 'MIT AND WTFPL', false], // every part of an AND
    [PERMISSIVE, 'WTFPL', false],
    [PERMISSIVE, 'GPL-3.0-only', true], // GPL-2.0-or-later allows a later GPL
    [PERMISSIVE, 'GPL-2.0-only', true],
    [PERMISSIVE, 'LGPL-2.1-only', false],
    [PERMISSIVE, 'Apache-2.0 WITH LLVM-exception', false], // an exception is allowed only by name
    [{ allowed: ['Apache-2.0 WITH LLVM-exception'] }, 'Apache-2.0 WITH LLVM-exception', true],
    [PERMISSIVE, 'GPL-2.0+', true],
    // unknown licenses: held when an allowed list is given, unless said otherwise
    [PERMISSIVE, null, false],
    [PERMISSIVE, 'UNLICENSED', false],
    [PERMISSIVE, 'SEE LICENSE IN LICENSE.md', false],
    [PERMISSIVE, 'Apache 2.0', false],
    [{ ...PERMISSIVE, unknown: 'serve' }, 'Apache 2.0', true],
    [{ ...PERMISSIVE, unknown: 'serve' }, null, true],
    // denied list
    [DENY_COPYLEFT, 'MIT', true],
    [DENY_COPYLEFT, 'AGPL-3.0-only', false],
    [DENY_COPYLEFT, 'AGPL-3.0', false], // the deprecated id is the same license
    [DENY_COPYLEFT, 'MIT OR AGPL-3.0-only', true], // taken under MIT
    [DENY_COPYLEFT, 'MIT AND AGPL-3.0-only', false],
    [DENY_COPYLEFT, 'GPL-2.0-or-later', true], // may be taken as GPL-2.0
    [DENY_COPYLEFT, 'GPL-3.0-only WITH GCC-exception-3.1', false], // the license it extends is denied
    [DENY_COPYLEFT, null, true],
    [{ ...DENY_COPYLEFT, unknown: 'hold' }, 'UNLICENSED', false],
    // both
    [{ allowed: ['MIT', 'AGPL-3.0-only'], denied: ['AGPL-3.0-only'] }, 'AGPL-3.0-only', false],
  ] as [LicensePolicy, string | null, boolean][])('%j: %s → %s', (policy, license, ok) => {
    expect(licenseVerdict(policy, license).ok).toBe(ok);
  });

  it('says why in words that name the license and the policy', () => {
    expect(licenseVerdict(PERMISSIVE, 'WTFPL')).toEqual({ ok: false, why: expect.stringContaining('"WTFPL" is not among those allowed here (MIT, ISC, Apache-2.0') });
    expect(licenseVerdict(DENY_COPYLEFT, 'MIT AND AGPL-3.0-only')).toEqual({ ok: false, why: expect.stringContaining('includes AGPL-3.0-only, which is denied here') });
    expect(licenseVerdict(PERMISSIVE, 'UNLICENSED')).toEqual({ ok: false, why: expect.stringContaining('UNLICENSED (not licensed for use by others)') });
    expect(licenseVerdict(PERMISSIVE, null)).toEqual({ ok: false, why: 'it declares no license' });
  });

  it('an expression that would multiply into too many choices is unknown, not a hang', () => {
    const huge = Array.from({ length: 20 }, () => '(MIT OR ISC)').join(' AND ');
    const started = Date.now();
    expect(licenseVerdict(PERMISSIVE, huge)).toEqual({ ok: false, why: expect.stringContaining('too long or too complex') });
    expect(licenseVerdict({ ...PERMISSIVE, unknown: 'serve' }, huge).ok).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('declaredLicense', () => {
  it.each([
    [{ license: 'MIT' }, 'MIT'],
    [{ license: { type: 'ISC', url: 'https://example.com' } }, 'ISC'],
    [{ licenses: [{ type: 'MIT' }, { type: 'Apache-2.0' }] }, '(MIT) OR (Apache-2.0)'],
    [{ licenses: [{ type: 'BSD-3-Clause' }] }, 'BSD-3-Clause'],
    [{ license: '' }, null],
    [{}, null],
    [{ license: 42 }, null],
  ])('%j → %s', (manifest, expected) => {
    expect(declaredLicense(manifest as unknown as VersionManifest)).toBe(expected);
  });
});

describe('the license policy applied to a mirrored package', () => {
  const doc: PackageDoc = (() => {
    const base = packageDoc('pkg', ['1.0.0', '1.1.0', '2.0.0']);
    base.versions['1.0.0'] = { ...base.versions['1.0.0'], license: 'MIT' } as VersionManifest;
    base.versions['1.1.0'] = { ...base.versions['1.1.0'], license: 'MIT' } as VersionManifest;
    base.versions['2.0.0'] = { ...base.versions['2.0.0'], license: 'AGPL-3.0-only' } as VersionManifest;
    return { ...base, 'dist-tags': { latest: '2.0.0' }, origin: 'https://upstream.example' };
  })();
  const policy = (licenses: LicensePolicy): Policy => ({ minAgeMs: 0, exceptions: [], blocked: [], licenses });

  it('holds back the versions whose license is denied, and latest falls back', () => {
    const withheld = withheldVersions(doc, policy(DENY_COPYLEFT), Date.now());
    expect([...withheld.keys()]).toEqual(['2.0.0']);
    expect(withheld.get('2.0.0')).toMatchObject({ kind: 'license', reason: expect.stringContaining('pkg@2.0.0 is held back by this registry\'s license policy: its license "AGPL-3.0-only" includes AGPL-3.0-only, which is denied here') });
    expect(withoutWithheld(doc, withheld)['dist-tags'].latest).toBe('1.1.0');
  });

  it.each([
    ['the package', [{ package: 'pkg', reason: 'cleared by legal' }], []],
    ['a pattern', [{ package: 'p*', reason: 'cleared by legal' }], []],
    ['the version', [{ package: 'pkg', version: '2.0.0', reason: 'cleared' }], []],
    ['a range that misses it', [{ package: 'pkg', version: '<2', reason: 'cleared' }], ['2.0.0']],
    ['another package', [{ package: 'other', reason: 'cleared' }], ['2.0.0']],
  ])('an exception for %s', (_case, exceptions, held) => {
    expect([...withheldVersions(doc, policy({ ...DENY_COPYLEFT, exceptions }), Date.now()).keys()]).toEqual(held);
  });

  it('covers every name but those excepted as a whole', () => {
    expect(policyCovers(policy(DENY_COPYLEFT), 'anything')).toBe(true);
    expect(policyCovers(policy({ ...DENY_COPYLEFT, exceptions: [{ package: '@ok/*', reason: 'ours' }] }), '@ok/x')).toBe(false);
    expect(policyCovers(policy({ ...DENY_COPYLEFT, exceptions: [{ package: '@ok/*', version: '1.0.0', reason: 'one' }] }), '@ok/x')).toBe(true);
  });

  it('refuses a publish here only when the policy checks publishes', () => {
    const versions = { '1.0.0': { name: 'mine', version: '1.0.0', license: 'AGPL-3.0-only' } };
    expect(publishLicenseProblem(DENY_COPYLEFT, 'mine', versions)).toBeNull();
    expect(publishLicenseProblem({ ...DENY_COPYLEFT, checkPublishes: true }, 'mine', versions)).toContain('mine@1.0.0 cannot be published here: its license "AGPL-3.0-only" includes AGPL-3.0-only, which is denied here. Set "license" in package.json');
    expect(publishLicenseProblem({ ...DENY_COPYLEFT, checkPublishes: true, exceptions: [{ package: 'mine', reason: 'ours' }] }, 'mine', versions)).toBeNull();
  });
});

describe('the license policy document, checked strictly', () => {
  it.each([
    [{ allowed: ['MIT'] }, null],
    [{ allowed: ['MIT'], denied: ['GPL-3.0-only'], unknown: 'serve', checkPublishes: true, exceptions: [{ package: '@a/*', version: '^1', reason: 'ok' }] }, null],
    [{ allowed: ['Apache-2.0 WITH LLVM-exception', 'LicenseRef-acme'] }, null],
    [[], '"licenses" must be an object'],
    [{ allow: ['MIT'] }, 'unknown field "allow"'],
    [{ allowed: 'MIT' }, '"licenses.allowed" must be a list'],
    [{ allowed: ['Apache 2.0'] }, 'entry 0 of "licenses.allowed" "Apache 2.0" is not an SPDX license identifier'],
    [{ denied: ['MIT OR ISC'] }, 'combines licenses with AND or OR'],
    [{ unknown: 'allow' }, '"licenses.unknown" must be "hold" or "serve"'],
    [{ checkPublishes: 'yes' }, 'must be true or false'],
    [{ exceptions: [{ package: 'x' }] }, 'needs a "reason"'],
    [{ exceptions: [{ package: 'x', reason: 'r', version: 'not a range' }] }, 'neither a version nor a semver range'],
    [{ exceptions: [{ package: 'x', reason: 'r', why: 'r' }] }, 'unknown field "why"'],
    [{ exceptions: ['x'] }, 'must be an object'],
  ])('%j → %s', (licenses, problem) => {
    const found = licensePolicyProblem(licenses);
    if (problem === null) expect(found).toBeNull();
    else expect(found).toContain(problem);
    // The policy document carries it as "licenses".
    expect(policyProblem({ licenses }) === null).toBe(problem === null);
  });
});
