/** The vulnerability policy as tables: the `advisories` field checked, the record kept of the upstream's answer, and what it holds back. */
import { advisoriesOf, advisoriesProblem, advisoryRecord, AdvisoryPolicy, recordCovers, sameRecord } from '../../core/advisories';
import { mirroredDoc } from '../../core/mirrored';
import { fullPackument } from '../../core/packument';
import { Policy, policyActive, policyCovers, policyProblem, withheldVersions, withoutWithheld } from '../../core/policy';
import { PackageDoc } from '../../core/types';
import { packageDoc } from './fixtures';
import advisoriesByVersion from '../../couchapp/views/advisoriesByVersion';
import advisoryChecks from '../../couchapp/views/advisoryChecks';

const now = Date.parse('2026-12-01T00:00:00.000Z');
const VERSIONS = ['4.17.19', '4.17.20', '4.17.21', '5.0.0-beta.1'];
const PROTO = { id: 1096755, title: 'Prototype Pollution in lodash', url: 'https://github.com/advisories/GHSA-35jh-r3h4-6jhm', severity: 'high', vulnerable_versions: '<4.17.21' };
const REDOS = { id: 1094500, title: 'ReDoS in lodash', url: 'https://github.com/advisories/GHSA-x5rq-j2xg-h7qm', severity: 'moderate', vulnerable_versions: '<4.17.21' };
const EVIL = { id: 1100000, title: 'Malware in lodash', url: 'https://github.com/advisories/GHSA-aaaa-bbbb-cccc', severity: 'critical', vulnerable_versions: '4.17.19' };

function mirrored(advisories: object[] | null, checked = VERSIONS): PackageDoc {
  const doc = packageDoc('lodash', VERSIONS);
  const record = advisories ? advisoryRecord(checked, advisoriesOf(advisories), '2026-11-30T00:00:00.000Z') : undefined;
  return { ...doc, 'dist-tags': { latest: '4.17.21', next: '5.0.0-beta.1' }, origin: 'https://registry.npmjs.org', origin_advisories: record };
}

const policy = (advisories: Partial<AdvisoryPolicy>): Policy => ({ minAgeMs: 0, exceptions: [], blocked: [], advisories: { severity: 'high', unchecked: 'hold', exceptions: [], ...advisories } });
const held = (doc: PackageDoc, p: Policy) => [...withheldVersions(doc, p, now).values()].map((w) => w.version + (w.advisory ? ':' + w.advisory.id : ':unchecked')).sort();

describe('what advisories hold back', () => {
  it.each([
    ['no advisories field', { minAgeMs: 0, exceptions: [], blocked: [] }, [PROTO, EVIL], []],
    ['high: a high and a critical advisory', policy({}), [PROTO, EVIL], ['4.17.19:1100000', '4.17.20:1096755']],
    ['critical: the high one is served', policy({ severity: 'critical' }), [PROTO, EVIL], ['4.17.19:1100000']],
    ['moderate: a moderate one holds back too', policy({ severity: 'moderate' }), [REDOS], ['4.17.19:1094500', '4.17.20:1094500']],
    ['high: a moderate one is below it', policy({}), [REDOS], []],
    ['an exception by advisory id', policy({ exceptions: [{ advisory: 1096755, reason: 'patched' }] }), [PROTO, EVIL], ['4.17.19:1100000']],
    ['an exception by GHSA id', policy({ exceptions: [{ advisory: 'ghsa-35jh-r3h4-6jhm', reason: 'patched' }] }), [PROTO], []],
    ['an exception of the package', policy({ exceptions: [{ package: 'lodash', reason: 'vetted' }] }), [PROTO, EVIL], []],
    ['an exception of another package', policy({ exceptions: [{ package: 'underscore', reason: 'vetted' }] }), [PROTO], ['4.17.19:1096755', '4.17.20:1096755']],
    ['an exception of one advisory in another package', policy({ exceptions: [{ package: 'underscore', advisory: 1096755, reason: 'x' }] }), [PROTO], ['4.17.19:1096755', '4.17.20:1096755']],
    ['an unknown severity counts as critical', policy({ severity: 'critical' }), [{ ...PROTO, severity: 'catastrophic' }], ['4.17.19:1096755', '4.17.20:1096755']],
    ['a range that cannot be read covers every version', policy({}), [{ ...PROTO, vulnerable_versions: 'not a range' }], ['4.17.19:1096755', '4.17.20:1096755', '4.17.21:1096755', '5.0.0-beta.1:1096755']],
  ])('%s', (_case, p, advisories, expected) => {
    expect(held(mirrored(advisories), p as Policy)).toEqual(expected);
  });

  it('versions the endpoint has not answered for are held back with "unchecked": "hold", served with "serve"', () => {
    expect(held(mirrored(null), policy({}))).toEqual(['4.17.19:unchecked', '4.17.20:unchecked', '4.17.21:unchecked', '5.0.0-beta.1:unchecked']);
    expect(held(mirrored([], ['4.17.19', '4.17.20']), policy({}))).toEqual(['4.17.21:unchecked', '5.0.0-beta.1:unchecked']);
    expect(held(mirrored(null), policy({ unchecked: 'serve' }))).toEqual([]);
    expect(withheldVersions(mirrored(null), policy({}), now).get('4.17.21')?.reason).toContain('have not been checked for it yet');
  });

  it('a package replicated natively from another instance of this registry (its origin is that registry\'s id) is left to that registry', () => {
    expect(held({ ...mirrored(null), origin: 'registry-8f3a' }, policy({}))).toEqual([]);
    expect(held({ ...mirrored(null), origin: undefined }, policy({}))).toHaveLength(4);
  });

  it('the reason names the most severe advisory: id, severity, title and URL; dist-tags fall back', () => {
    const doc = mirrored([REDOS, PROTO, { ...EVIL, vulnerable_versions: '>=4.17.21 <5' }]);
    const withheld = withheldVersions(doc, policy({ severity: 'moderate' }), now);
    expect(withheld.get('4.17.21')?.reason).toBe('lodash@4.17.21 is held back by this registry\'s vulnerability policy: advisory 1100000 (critical) "Malware in lodash" https://github.com/advisories/GHSA-aaaa-bbbb-cccc; use a version without it, or ask an admin for an exception.');
    expect(withheld.get('4.17.20')?.advisory).toEqual({ id: 1096755, title: PROTO.title, url: PROTO.url, severity: 'high' });
    const served = withoutWithheld(doc, withheld);
    expect(Object.keys(served.versions)).toEqual(['5.0.0-beta.1']);
    expect(served['dist-tags']).toEqual({ next: '5.0.0-beta.1' });
  });

  it('a policy with advisories is active and covers every name but the packages excepted as a whole', () => {
    const p = policy({ exceptions: [{ package: '@types/*', reason: 'types' }, { advisory: 1, reason: 'x' }] });
    expect(policyActive(p)).toBe(true);
    expect(policyCovers(p, 'lodash')).toBe(true);
    expect(policyCovers(p, '@types/node')).toBe(false);
  });
});

describe('the record of the upstream\'s answer', () => {
  it('keeps the advisories by id and the versions each covers; the same answer is the same record', () => {
    const record = advisoryRecord(VERSIONS, advisoriesOf([PROTO, EVIL]), '2026-12-01T00:00:00.000Z');
    expect(record.affected).toEqual({ '4.17.19': ['1096755', '1100000'], '4.17.20': ['1096755'] });
    expect(sameRecord(record, advisoryRecord([...VERSIONS].reverse(), advisoriesOf([EVIL, PROTO]), 'later'))).toBe(true);
    expect(sameRecord(record, advisoryRecord(VERSIONS, advisoriesOf([PROTO]), 'later'))).toBe(false);
  });

  it('reads what the endpoint sent leniently where npm does and drops what is no advisory', () => {
    expect(advisoriesOf([{ id: 7 }, null, 'x', { title: 'no id' }, { id: 8, severity: 'LOW', url: 'javascript:alert(1)' }])).toEqual([
      { id: 7, title: '', url: '', severity: 'high', vulnerable_versions: '*' },
      { id: 8, title: '', url: '', severity: 'low', vulnerable_versions: '*' },
    ]);
    expect(advisoriesOf({ not: 'a list' })).toEqual([]);
  });

  it('is kept through refreshes from the upstream, never taken from the upstream\'s packument, never served', () => {
    const doc = mirrored([PROTO]);
    const upstream = { name: 'lodash', versions: doc.versions, 'dist-tags': doc['dist-tags'], time: {}, origin_advisories: { checked: VERSIONS, advisories: {}, affected: {} } };
    const refreshed = mirroredDoc('lodash', upstream, 'https://registry.npmjs.org', doc);
    expect(refreshed.origin_advisories).toEqual(doc.origin_advisories);
    expect(mirroredDoc('lodash', upstream, 'https://registry.npmjs.org', null).origin_advisories).toBeUndefined();
    expect(fullPackument(doc, 'http://registry.example')).not.toHaveProperty('origin_advisories');
    expect(recordCovers(doc)).toBe(true);
    expect(recordCovers({ ...doc, versions: { ...doc.versions, '4.17.22': doc.versions['4.17.21'] } })).toBe(false);
  });
});

describe('the views of the records', () => {
  const emitted = (map: (doc: PackageDoc, emit: (k: unknown, v: unknown) => void) => void, doc: PackageDoc) => {
    const rows: unknown[] = [];
    map(doc, (k, v) => rows.push([k, v]));
    return rows;
  };

  it('advisoryChecks gives the periodic check each mirrored package\'s versions and the digest of its answer, nothing for a local one', () => {
    const doc = mirrored([PROTO]);
    expect(emitted(advisoryChecks, doc)).toEqual([[['https://registry.npmjs.org', 'lodash'], [VERSIONS, (doc.origin_advisories as { digest: string }).digest]]]);
    expect(emitted(advisoryChecks, { ...doc, origin_advisories: undefined })).toEqual([[['https://registry.npmjs.org', 'lodash'], [VERSIONS, null]]]);
    expect(emitted(advisoryChecks, { ...doc, origin: 'registry-id' })).toEqual([]);
  });

  it('advisoriesByVersion lists each version an advisory covers, with it', () => {
    expect(emitted(advisoriesByVersion, mirrored([PROTO, EVIL]))).toEqual([
      [['lodash', '4.17.19'], { id: 1096755, title: PROTO.title, url: PROTO.url, severity: 'high' }],
      [['lodash', '4.17.19'], { id: 1100000, title: EVIL.title, url: EVIL.url, severity: 'critical' }],
      [['lodash', '4.17.20'], { id: 1096755, title: PROTO.title, url: PROTO.url, severity: 'high' }],
    ]);
  });

  it('the digest changes with what the answer says, not with when it came; an advisory id "__proto__" is an id like another', () => {
    const a = advisoryRecord(VERSIONS, advisoriesOf([PROTO]), 'now');
    expect(advisoryRecord(VERSIONS, advisoriesOf([PROTO]), 'later').digest).toBe(a.digest);
    expect(advisoryRecord(VERSIONS, advisoriesOf([PROTO, REDOS]), 'now').digest).not.toBe(a.digest);
    const odd = JSON.parse(JSON.stringify(advisoryRecord(['1.0.0'], advisoriesOf([{ ...PROTO, id: '__proto__', vulnerable_versions: '*' }]), 'now')));
    expect(Object.keys(odd.advisories)).toEqual(['__proto__']);
    expect(odd.affected).toEqual({ '1.0.0': ['__proto__'] });
    const doc = { ...packageDoc('odd', ['1.0.0']), origin: 'https://registry.npmjs.org', origin_advisories: odd };
    expect(withheldVersions(doc, policy({}), now).get('1.0.0')?.advisory?.id).toBe('__proto__');
  });
});

describe('the "advisories" field of the policy document', () => {
  it.each([
    [{ severity: 'high' }, null],
    [{ severity: 'critical', unchecked: 'serve', exceptions: [{ package: '@types/*', reason: 'types' }, { advisory: 1096755, reason: 'patched' }, { advisory: 'GHSA-35jh-r3h4-6jhm', package: 'lodash', reason: 'x' }] }, null],
    [[], 'must be an object'],
    [{}, 'needs a "severity"'],
    [{ severity: 'severe' }, 'needs a "severity", one of info, low, moderate, high, critical'],
    [{ severity: 'high', unchecked: 'ignore' }, '"unchecked"'],
    [{ severity: 'high', level: 'x' }, 'unknown field "level"'],
    [{ severity: 'high', exceptions: {} }, 'must be a list'],
    [{ severity: 'high', exceptions: [{ reason: 'x' }] }, 'needs a "package"'],
    [{ severity: 'high', exceptions: [{ advisory: 1 }] }, 'needs a "reason"'],
    [{ severity: 'high', exceptions: [{ advisory: -1, reason: 'x' }] }, 'must be an advisory id'],
    [{ severity: 'high', exceptions: [{ advisory: 1, reason: 'x', until: 'never' }] }, 'unknown field "until"'],
    [{ severity: 'high', exceptions: [{ package: 'Bad Name', reason: 'x' }] }, 'exception 0'],
  ])('%j', (value, problem) => {
    const found = advisoriesProblem(value);
    if (problem === null) expect(found).toBeNull();
    else expect(found).toContain(problem);
    expect(policyProblem({ type: 'policy', advisories: value }) === null).toBe(problem === null);
  });
});
