/** The supply-chain policy as tables: what the cooldown and blocks hold back, and what is served instead. */
import { nextRelease, parseDuration, Policy, policyActive, policyProblem, withheldTarball, withheldVersions, withoutWithheld } from '../../core/policy';
import { PackageDoc } from '../../core/types';
import { packageDoc } from './fixtures';

const DAY = 86_400_000;
const now = Date.parse('2026-12-01T00:00:00.000Z');
const ago = (days: number) => new Date(now - days * DAY).toISOString();

function mirrored(times: Record<string, number>, tags: Record<string, string>): PackageDoc {
  const doc = packageDoc('pkg', Object.keys(times));
  const time: PackageDoc['time'] = { created: ago(100), modified: ago(0) };
  for (const [v, days] of Object.entries(times)) time[v] = ago(days);
  return { ...doc, time, 'dist-tags': tags, origin: 'https://upstream.example', _attachments: Object.fromEntries(Object.keys(times).map((v) => ['pkg-' + v + '.tgz', { stub: true, digest: 'md5-' + v }])) };
}

const policy = (extra: Partial<Policy> = {}): Policy => ({ minAgeMs: 3 * DAY, exceptions: [], blocked: [], ...extra });

describe('withheldVersions', () => {
  const doc = mirrored({ '1.0.0': 30, '1.1.0': 10, '2.0.0': 1, '3.0.0-beta.1': 0.5 }, { latest: '2.0.0', next: '3.0.0-beta.1' });

  it.each([
    ['no policy', { minAgeMs: 0, exceptions: [], blocked: [] }, []],
    ['a 3-day cooldown', policy(), ['2.0.0:cooldown', '3.0.0-beta.1:cooldown']],
    ['a cooldown with the package excepted', policy({ exceptions: ['pkg'] }), []],
    ['a cooldown with its scope pattern not matching', policy({ exceptions: ['@other/*'] }), ['2.0.0:cooldown', '3.0.0-beta.1:cooldown']],
    ['a blocked version', { minAgeMs: 0, exceptions: [], blocked: [{ package: 'pkg', version: '1.0.0', reason: 'CVE-2026-1' }] }, ['1.0.0:blocked']],
    ['a blocked package', { minAgeMs: 0, exceptions: [], blocked: [{ package: 'pk*', reason: 'malware' }] }, ['1.0.0:blocked', '1.1.0:blocked', '2.0.0:blocked', '3.0.0-beta.1:blocked']],
    ['a block and a cooldown', policy({ blocked: [{ package: 'pkg', version: '2.0.0', reason: 'bad' }] }), ['2.0.0:blocked', '3.0.0-beta.1:cooldown']],
    ['a blocked range', { minAgeMs: 0, exceptions: [], blocked: [{ package: 'pkg', version: '>=1.1.0 <3', reason: 'bad' }] }, ['1.1.0:blocked', '2.0.0:blocked']],
    ['a blocked range with prereleases', { minAgeMs: 0, exceptions: [], blocked: [{ package: 'pkg', version: '>=2', reason: 'bad' }] }, ['2.0.0:blocked', '3.0.0-beta.1:blocked']],
    ['two blocked versions', { minAgeMs: 0, exceptions: [], blocked: [{ package: 'pkg', version: '1.0.0 || 2.0.0', reason: 'bad' }] }, ['1.0.0:blocked', '2.0.0:blocked']],
  ])('%s', (_case, p, expected) => {
    expect([...withheldVersions(doc, p as Policy, now).values()].map((w) => w.version + ':' + w.kind).sort()).toEqual(expected);
  });

  it('says when a held-back version becomes available, and why a blocked one is not served', () => {
    const withheld = withheldVersions(doc, policy({ blocked: [{ package: 'pkg', version: '1.0.0', reason: 'CVE-2026-1' }] }), now);
    expect(withheld.get('2.0.0')?.availableAt).toBe(new Date(Date.parse(ago(1)) + 3 * DAY).toISOString());
    expect(withheld.get('2.0.0')?.reason).toContain('held back');
    expect(withheld.get('1.0.0')?.reason).toContain('CVE-2026-1');
    expect(nextRelease(withheld)).toBe(Date.parse(ago(1)) + 3 * DAY);
    expect(withheldTarball('pkg', 'pkg-2.0.0.tgz', withheld)?.version).toBe('2.0.0');
    expect(withheldTarball('pkg', 'pkg-1.1.0.tgz', withheld)).toBeUndefined();
  });

  it('a version without a publish time is held back by a cooldown', () => {
    const undated = { ...doc, time: { created: ago(100), modified: ago(0) } };
    expect(withheldVersions(undated, policy(), now).get('1.0.0')?.kind).toBe('cooldown');
  });
});

describe('withoutWithheld', () => {
  it.each([
    ['latest falls back to the newest served version below it', { latest: '2.0.0' }, { latest: '1.1.0' }],
    ['a prerelease tag falls back to a served version, prereleases allowed', { latest: '2.0.0', next: '3.0.0-beta.1' }, { latest: '1.1.0', next: '1.1.0' }],
    ['a tag on a served version stays', { latest: '2.0.0', old: '1.0.0' }, { latest: '1.1.0', old: '1.0.0' }],
  ])('%s', (_case, tags, expected) => {
    const doc = mirrored({ '1.0.0': 30, '1.1.0': 10, '2.0.0': 1, '3.0.0-beta.1': 0.5 }, tags);
    const served = withoutWithheld(doc, withheldVersions(doc, policy(), now));
    expect(served['dist-tags']).toEqual(expected);
    expect(Object.keys(served.versions)).toEqual(['1.0.0', '1.1.0']);
    expect(Object.keys(served.time)).not.toContain('2.0.0');
    expect(Object.keys(served._attachments || {})).toEqual(['pkg-1.0.0.tgz', 'pkg-1.1.0.tgz']);
  });

  it('a tag whose versions are all held back is dropped', () => {
    const doc = mirrored({ '2.0.0': 1 }, { latest: '2.0.0' });
    expect(withoutWithheld(doc, withheldVersions(doc, policy(), now))['dist-tags']).toEqual({});
  });
});

describe('settings', () => {
  it.each([
    ['3d', 3 * DAY],
    ['12h', 12 * 3_600_000],
    ['90m', 90 * 60_000],
    ['3600', 3_600_000],
    ['1w', 7 * DAY],
    ['soon', null],
  ])('%s is %j ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('an empty policy holds nothing back', () => {
    expect(policyActive({ minAgeMs: 0, exceptions: ['x'], blocked: [] })).toBe(false);
    expect(policyActive(policy())).toBe(true);
  });
});

describe('the policy document, checked strictly', () => {
  it.each([
    ['the document made at set-up', { _id: 'supply-chain', _rev: '1-a', type: 'policy', help: 'text', cooldownExceptions: [], blocked: [] }],
    ['exceptions and blocks', { cooldownExceptions: ['@types/*', 'typescript'], blocked: [{ package: 'event-stream', version: '3.3.6', reason: 'malicious' }, { package: '@evil/*', reason: 'typosquats' }] }],
    ['a range', { blocked: [{ package: 'lodash', version: '<4.17.21', reason: 'CVE-2021-23337' }] }],
  ])('%s is valid', (_case, doc) => {
    expect(policyProblem(doc)).toBeNull();
  });

  it.each([
    ['a misspelt field', { blocks: [] }, 'unknown field "blocks"'],
    ['exceptions that are not a list', { cooldownExceptions: 'typescript' }, '"cooldownExceptions" must be a list'],
    ['an exception with a space', { cooldownExceptions: ['type script'] }, 'entry 0 of "cooldownExceptions"'],
    ['a block without a reason', { blocked: [{ package: 'evil' }] }, 'needs a "reason"'],
    ['a block without a package', { blocked: [{ name: 'evil', reason: 'x' }] }, 'unknown field "name"'],
    ['a block with a misspelt version field', { blocked: [{ package: 'evil', versions: '1.0.0', reason: 'x' }] }, 'unknown field "versions"'],
    ['a version that is no range', { blocked: [{ package: 'evil', version: 'latest', reason: 'x' }] }, 'neither a version nor a semver range'],
    ['a number as version', { blocked: [{ package: 'evil', version: 1, reason: 'x' }] }, 'neither a version nor a semver range'],
    ['a pattern with two slashes', { blocked: [{ package: '@a/b/c', reason: 'x' }] }, 'not a package pattern'],
    ['blocked as an object', { blocked: { package: 'evil' } }, '"blocked" must be a list'],
  ])('%s is refused, saying what is wrong', (_case, doc, words) => {
    expect(policyProblem(doc)).toContain(words);
  });
});
