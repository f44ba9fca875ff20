/** Hostile advisory answers against the record kept of them: pathological ranges cost little, and are read as semver reads them. */
import semver from 'semver';
import { advisoriesOf, advisoryRecord } from '../../core/advisories';

const versionsOf = (n: number) => Array.from({ length: n }, (_, i) => '1.' + i + '.0');
/** 64 distinct sets joined by `||`, each with a prerelease bound (about 1,700 characters before the length limit). */
const manySets = (k: number) => Array.from({ length: 64 }, (_, j) => '>=' + k + '.' + j + '.0-beta.1 <' + k + '.' + j + '.5').join(' || ');
/** As many sets as fit in 250 characters. */
const shortSets = (k: number) => Array.from({ length: 30 }, (_, j) => '>=1.' + (k % 900 + j) + '.0 <1.' + (k % 900 + j) + '.1').join('||').slice(0, 250).replace(/\|+[^|]*$/, '');

describe('a hostile advisory endpoint\'s ranges', () => {
  it.each([
    ['a thousand distinct ranges of 64 sets', manySets],
    ['a thousand distinct ranges that cannot be read', (k: number) => 'x'.repeat(1990) + k],
    ['a thousand distinct 250-character ranges of many sets', shortSets],
  ])('%s against a thousand versions take a few seconds at most (minutes before)', (_case, range) => {
    const advisories = advisoriesOf(Array.from({ length: 1000 }, (_, i) => ({ id: i + 1, title: 't', url: 'https://example.test/' + i, severity: 'high', vulnerable_versions: range(i) })));
    const started = Date.now();
    advisoryRecord(versionsOf(1000), advisories, '2026-12-01T00:00:00.000Z');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('covers the versions semver.satisfies does (prereleases included), and every version for a range too long or of too many sets', () => {
    const versions = ['0.9.0', '1.0.0-alpha', '1.0.0-beta.2', '1.0.0', '1.0.1', '1.2.3-rc.1', '1.2.3', '1.2.3+build', '2.0.0-0', '2.0.0', '2.5.0', '3.0.0-beta', '3.1.0', '10.0.0', 'not-a-version'];
    const ranges = ['<1.0.0', '<=1.0.0', '>1.0.0 <2.0.0', '>=1.0.0-beta.1 <1.2.3 || >=2.0.0-0 <2.0.1', '1.2.3', '=1.0.1', '^1.0.0', '~1.2.0', '1.x || >=3', '*', '', '>=2.0.0 <1.0.0', '1.0.0 - 2.0.0', '<2.0.0-0', '>3.0.0-alpha <3.0.0-gamma', '>=0.0.0'];
    const advisories = advisoriesOf(ranges.map((r, i) => ({ id: i + 1, severity: 'high', vulnerable_versions: r })));
    const record = advisoryRecord(versions, advisories, '2026-12-01T00:00:00.000Z');
    advisories.forEach((advisory, i) => {
      const expected = versions.filter((v) => semver.satisfies(v, advisory.vulnerable_versions, { includePrerelease: true, loose: true })).sort();
      const got = versions.filter((v) => (record.affected[v] || []).indexOf(String(i + 1)) !== -1).sort();
      expect([advisory.vulnerable_versions, got]).toEqual([advisory.vulnerable_versions, expected]);
    });
    const tooMany = advisoryRecord(['1.0.0', '9.0.0'], advisoriesOf([{ id: 'x', vulnerable_versions: Array.from({ length: 65 }, (_, j) => '=0.0.' + j).join('||') }]), 'now');
    expect(tooMany.affected).toEqual({ '1.0.0': ['x'], '9.0.0': ['x'] });
    const tooLong = advisoryRecord(['1.0.0', '9.0.0'], advisoriesOf([{ id: 'y', vulnerable_versions: '<0.0.1' + ' '.repeat(300) }]), 'now');
    expect(tooLong.affected).toEqual({ '1.0.0': ['y'], '9.0.0': ['y'] });
  });

  it('an id sent twice covers the versions of both ranges, once each', () => {
    const record = advisoryRecord(['1.0.0', '2.0.0', '3.0.0'], advisoriesOf([{ id: 7, vulnerable_versions: '<2.0.0' }, { id: '7', vulnerable_versions: '<3.0.0' }]), 'now');
    expect({ ...record.affected }).toEqual({ '1.0.0': ['7'], '2.0.0': ['7'] });
  });
});

describe('a hostile advisory endpoint\'s words', () => {
  it('keep no control characters or bidirectional overrides, and an address with spaces or control characters is none', () => {
    const [advisory] = advisoriesOf([{ id: 'GHSA-\u001b[31mx', title: 'a\u001b[2Jb\u0007c\u009bd\u202ee', url: 'https://example.test/x\n\u001b[1A', severity: 'HIGH\u0000' }]);
    expect(advisory).toEqual({ id: 'GHSA-[31mx', title: 'a[2Jbcde', url: '', severity: 'high', vulnerable_versions: '*' });
    expect(advisoriesOf([{ id: '\u001b\u0007', title: 'only controls as its id' }])).toEqual([]);
    expect(advisoriesOf([{ id: 5, url: 'https://github.com/advisories/GHSA-35jh-r3h4-6jhm' }])[0].url).toBe('https://github.com/advisories/GHSA-35jh-r3h4-6jhm');
  });
});

describe('a hostile advisory endpoint\'s size', () => {
  it('a thousand advisories of every version of a thousand versions make a record of a few MB at most; the versions past it stay unchecked', () => {
    const versions = versionsOf(1000);
    const advisories = advisoriesOf(Array.from({ length: 1000 }, (_, i) => ({ id: 1000000 + i, title: 'x'.repeat(100), url: 'https://github.com/advisories/GHSA-aaaa-bbbb-' + i, severity: 'low', vulnerable_versions: '*' })));
    const record = advisoryRecord(versions, advisories, 'now');
    expect(JSON.stringify(record).length).toBeLessThan(3_000_000);
    expect(record.checked.length).toBeGreaterThan(0);
    expect(record.checked.length).toBeLessThan(versions.length);
    for (const version of versions) expect(!!record.affected[version]).toBe(record.checked.indexOf(version) !== -1);
  });

  it('keeps cwe and cvss only as npm sends them (a list of CWE ids, a score and a vector), not megabytes of anything', () => {
    const big = { score: 9.8, vectorString: 'x'.repeat(1_000_000) };
    const [odd, usual] = advisoriesOf([
      { id: 1, cwe: Array.from({ length: 100000 }, () => 'CWE-1'), cvss: big },
      { id: 2, cwe: ['CWE-1321'], cvss: { score: 7.5, vectorString: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H' } },
    ]);
    expect(odd.cwe).toBeUndefined();
    expect(odd.cvss).toBeUndefined();
    expect(usual).toMatchObject({ cwe: ['CWE-1321'], cvss: { score: 7.5, vectorString: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H' } });
  });
});
