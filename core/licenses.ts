/**
 * The license policy: which licenses the versions this registry serves may carry, as SPDX
 * expressions (`MIT OR Apache-2.0`, `(MIT AND BSD-3-Clause)`, `GPL-2.0-only WITH Classpath-exception-2.0`),
 * parsed with `spdx-expression-parse` and matched with `spdx-satisfies`. It is the `licenses` field of
 * the supply-chain policy document:
 *
 *   "licenses": { "allowed": ["MIT", "ISC", "Apache-2.0", "BSD-3-Clause"], "denied": ["AGPL-3.0-only"],
 *                 "unknown": "hold", "exceptions": [{"package": "caniuse-lite", "reason": "CC-BY-4.0 cleared by legal"}],
 *                 "checkPublishes": true }
 *
 * A version passes when one way of taking its license (one side of each `OR`, every part of an `AND`)
 * uses only allowed licenses (when `allowed` is given) and no denied one. A license given with `+`
 * or `-or-later` is allowed by a later version of it; a license `WITH` an exception is allowed only by
 * an entry naming that exception, and denied by an entry denying the license it extends or that exact
 * pair. A version without a license, `UNLICENSED` (npm's word for "not licensed to others"),
 * `SEE LICENSE IN …` or anything that is not an SPDX expression is `unknown`: held back by default when
 * `allowed` is given, served otherwise, or as `unknown` says. Pure, and bundled into the
 * `_design/config` validation inside CouchDB.
 */
import parse from 'spdx-expression-parse';
import satisfies from 'spdx-satisfies';
import spdxExceptions from 'spdx-exceptions/index.json';
import spdxDeprecated from 'spdx-license-ids/deprecated.json';
import spdxLicenses from 'spdx-license-ids/index.json';
import { patternMatches } from './access';
import { EntryWords, packageEntryProblem, versionMatches } from './policy-entries';
import { declaredLicense } from './license-field';
import { VersionManifest } from './types';

export { declaredLicense };

export interface LicenseException {
  /** A package name or pattern (`@company/*`). */
  package: string;
  /** One version or a semver range; every version of the package when left out. */
  version?: string;
  reason: string;
}

export interface LicensePolicy {
  /** Single licenses (`MIT`, `GPL-2.0-or-later`, `Apache-2.0 WITH LLVM-exception`); when given, only these are served. */
  allowed?: string[];
  /** Single licenses never served. */
  denied?: string[];
  /** What happens to a version whose license is missing or not an SPDX expression: `hold` (default when `allowed` is given) or `serve`. */
  unknown?: 'hold' | 'serve';
  exceptions?: LicenseException[];
  /** Publishes here are checked too, and refused with the reason. */
  checkPublishes?: boolean;
}

const POLICY_KEYS = ['allowed', 'denied', 'unknown', 'exceptions', 'checkPublishes'];
const EXCEPTION_KEYS = ['package', 'version', 'reason'];
const EXCEPTION_WORDS: EntryWords = {
  example: '{"package": "caniuse-lite", "reason": "cleared by legal"}',
  fields: 'an exception has "package", "reason" and, for only some versions, "version"',
  pattern: '@company/*',
  reason: ', such as "cleared by legal on 2026-11-02"',
  version: '',
};

export const LICENSES_EXAMPLE = '{"allowed": ["MIT", "ISC", "Apache-2.0"], "denied": ["AGPL-3.0-only"], "unknown": "hold", "exceptions": [{"package": "caniuse-lite", "reason": "CC-BY-4.0 cleared by legal"}]}';

/** Longest license text looked at; longer ones are `unknown` (no package needs more). */
const MAX_EXPRESSION = 512;
/** Most ways of taking one expression looked at (an expression of many `AND`s of `OR`s multiplies them). */
const MAX_CHOICES = 256;
/** The end of SPDX's deprecated identifiers of a license with an exception (`GPL-2.0-with-classpath-exception`). */
const DEPRECATED_WITH = /-with-[A-Za-z]+-exception$/;
/** Most licenses in one expression looked at (each is matched against the lists once; real ones name a few). */
const MAX_LEAVES = 32;

/** Why `entry` cannot be one entry of `allowed` or `denied`, or null. */
function singleLicenseProblem(entry: unknown): string | null {
  if (typeof entry !== 'string' || !entry.trim() || entry.length > 200) return 'must be an SPDX license identifier such as "MIT" or "Apache-2.0 WITH LLVM-exception"';
  let info: parse.Info;
  try {
    info = parse(entry);
  } catch {
    return JSON.stringify(entry) + ' is not an SPDX license identifier (see https://spdx.org/licenses/; write "MIT", "GPL-2.0-or-later", "LicenseRef-…" for your own)';
  }
  if ('conjunction' in info) return JSON.stringify(entry) + ' combines licenses with AND or OR: list each license on its own';
  return null;
}

/** Why the `licenses` field of the policy document is invalid, or null. */
export function licensePolicyProblem(value: unknown): string | null {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return '"licenses" must be an object such as ' + LICENSES_EXAMPLE;
  const policy = value as Record<string, unknown>;
  for (const key of Object.keys(policy)) {
    if (POLICY_KEYS.indexOf(key) === -1) return '"licenses" has the unknown field "' + key + '": it has "allowed", "denied", "unknown", "exceptions" and "checkPublishes", such as ' + LICENSES_EXAMPLE;
  }
  for (const list of ['allowed', 'denied']) {
    const entries = policy[list];
    if (entries === undefined) continue;
    if (!Array.isArray(entries)) return '"licenses.' + list + '" must be a list of SPDX license identifiers, such as ["MIT", "ISC"]';
    for (let i = 0; i < entries.length; i++) {
      const problem = singleLicenseProblem(entries[i]);
      if (problem) return 'entry ' + i + ' of "licenses.' + list + '" ' + problem;
    }
  }
  if (policy.unknown !== undefined && policy.unknown !== 'hold' && policy.unknown !== 'serve') return '"licenses.unknown" must be "hold" or "serve" (what happens to a version without an SPDX license)';
  if (policy.checkPublishes !== undefined && typeof policy.checkPublishes !== 'boolean') return '"licenses.checkPublishes" must be true or false';
  const exceptions = policy.exceptions;
  if (exceptions !== undefined) {
    if (!Array.isArray(exceptions)) return '"licenses.exceptions" must be a list such as [{"package": "caniuse-lite", "reason": "cleared by legal"}]';
    for (let i = 0; i < exceptions.length; i++) {
      const problem = packageEntryProblem(exceptions[i], 'exception ' + i + ' of "licenses.exceptions"', EXCEPTION_KEYS, EXCEPTION_WORDS);
      if (problem) return problem;
    }
  }
  return null;
}

type Leaf = parse.LicenseInfo;

/** The number of licenses named in `info`, counted up to `MAX_LEAVES + 1`. */
function leafCount(info: parse.Info): number {
  if (!('conjunction' in info)) return 1;
  const left = leafCount(info.left);
  return left > MAX_LEAVES ? left : left + leafCount(info.right);
}

/** The SPDX identifiers (licenses, deprecated ones, exceptions) by their lower case, made when first needed. */
let canonicalIds: Map<string, string> | null = null;

/**
 * `license` with every SPDX identifier in the case SPDX spells it: identifiers are matched without
 * regard to case (SPDX specification, annex D), and the parser knows them in one case only, so
 * `agpl-3.0-only` would otherwise be no SPDX expression, and served where AGPL-3.0-only is denied.
 */
function canonicalCase(license: string): string {
  if (!canonicalIds) {
    canonicalIds = new Map();
    for (const id of ([] as string[]).concat(spdxLicenses, spdxDeprecated, spdxExceptions)) canonicalIds.set(id.toLowerCase(), id);
  }
  const ids = canonicalIds;
  return license.replace(/[A-Za-z0-9.-]+/g, (token) => ids.get(token.toLowerCase()) || token);
}

/** Every way of taking `info`: one side of each OR, every part of an AND; null beyond `MAX_CHOICES`. */
function choices(info: parse.Info): Leaf[][] | null {
  if (!('conjunction' in info)) return [[info]];
  const left = choices(info.left);
  const right = choices(info.right);
  if (!left || !right) return null;
  if (info.conjunction === 'or') return left.length + right.length > MAX_CHOICES ? null : left.concat(right);
  if (left.length * right.length > MAX_CHOICES) return null;
  const all: Leaf[][] = [];
  for (const a of left) for (const b of right) all.push(a.concat(b));
  return all;
}

/** A license as written (`plus`), or as its own version only (a `+` or `-or-later` license may be taken under the version it names). */
const leafText = (leaf: Leaf, plus = true) => (plus ? leaf.license + (leaf.plus ? '+' : '') : leaf.license.replace(/-or-later$/, '-only')) + (leaf.exception ? ' WITH ' + leaf.exception : '');

function satisfiedBy(text: string, list: string[]): boolean {
  try {
    return satisfies(text, list);
  } catch {
    return list.indexOf(text) !== -1; // `spdx-satisfies` knows no ranges for it (LicenseRef-…): compared as written
  }
}

/** What the policy says of a license: served, or held back and why (in words that end a sentence about the version). */
export type LicenseVerdict = { ok: true } | { ok: false; why: string };

const OK: LicenseVerdict = { ok: true };
const verdicts = new WeakMap<LicensePolicy, Map<string, LicenseVerdict>>();

function unknownVerdict(policy: LicensePolicy, why: string): LicenseVerdict {
  const hold = policy.unknown ? policy.unknown === 'hold' : !!(policy.allowed && policy.allowed.length);
  return hold ? { ok: false, why } : OK;
}

function judge(policy: LicensePolicy, license: string | null): LicenseVerdict {
  if (!license) return unknownVerdict(policy, 'it declares no license');
  if (/^UNLICENSED$/i.test(license)) return unknownVerdict(policy, 'it is UNLICENSED (not licensed for use by others)');
  if (/^SEE LICEN[CS]E IN /i.test(license)) return unknownVerdict(policy, 'its license is not an SPDX expression ("' + license.slice(0, 100) + '")');
  let ways: Leaf[][] | null = null;
  if (license.length <= MAX_EXPRESSION) {
    let info: parse.Info;
    try {
      info = parse(canonicalCase(license));
    } catch {
      return unknownVerdict(policy, 'its license "' + license.slice(0, 100) + '" is not an SPDX expression');
    }
    if (leafCount(info) <= MAX_LEAVES) ways = choices(info);
  }
  if (!ways) return unknownVerdict(policy, 'its license expression is too long or too complex to check');
  const allowed = policy.allowed && policy.allowed.length ? policy.allowed : null;
  const denied = policy.denied && policy.denied.length ? policy.denied : [];
  // Each license of the expression is matched once: the ways of taking it share them.
  const deniedLeaves = new Map<Leaf, boolean>();
  const allowedLeaves = new Map<Leaf, boolean>();
  const isDenied = (leaf: Leaf): boolean => {
    let hit = deniedLeaves.get(leaf);
    if (hit === undefined) {
      hit =
        satisfiedBy(leafText(leaf, false), denied) ||
        (leaf.exception !== undefined && satisfiedBy(leafText({ license: leaf.license }, false), denied)) ||
        // The deprecated identifiers of a license with an exception (`GPL-3.0-with-GCC-exception`) extend it too.
        (DEPRECATED_WITH.test(leaf.license) && satisfiedBy(leaf.license.replace(DEPRECATED_WITH, ''), denied));
      deniedLeaves.set(leaf, hit);
    }
    return hit;
  };
  const isAllowed = (leaf: Leaf): boolean => {
    let hit = allowedLeaves.get(leaf);
    if (hit === undefined) allowedLeaves.set(leaf, (hit = satisfiedBy(leafText(leaf), allowed || [])));
    return hit;
  };
  let deniedHit: string | null = null;
  for (const way of ways) {
    const deniedLeaf = way.find(isDenied);
    if (deniedLeaf) {
      deniedHit = deniedHit || leafText(deniedLeaf);
      continue;
    }
    if (!allowed || way.every(isAllowed)) return OK;
  }
  if (deniedHit && (!allowed || ways.length === 1)) return { ok: false, why: 'its license "' + license + '" includes ' + deniedHit + ', which is denied here' };
  return { ok: false, why: 'its license "' + license + '" is not among those allowed here (' + (allowed || []).join(', ') + ')' + (deniedHit ? ', and ' + deniedHit + ' is denied' : '') };
}

/** What `policy` says of `license` (a version's declared license, or null), remembered per policy. */
export function licenseVerdict(policy: LicensePolicy, license: string | null): LicenseVerdict {
  let known = verdicts.get(policy);
  if (!known) verdicts.set(policy, (known = new Map()));
  const key = license === null ? '\u0000none' : license;
  let verdict = known.get(key);
  if (!verdict) {
    verdict = judge(policy, license);
    if (known.size < 10_000) known.set(key, verdict);
  }
  return verdict;
}

/** Whether `pattern` names `name`, without regard to case. */
const names = (pattern: unknown, name: string) => typeof pattern === 'string' && patternMatches(pattern.toLowerCase(), name.toLowerCase());

/** The exception of `policy` for `name`@`version` (`version` undefined: one for every version), if any. */
export function licenseException(policy: LicensePolicy, name: string, version?: string): LicenseException | undefined {
  return (policy.exceptions || []).find((e) => {
    if (!e || !names(e.package, name)) return false;
    if (!(typeof e.version === 'string' && e.version)) return true;
    if (version === undefined) return false;
    return versionMatches(e.version, version);
  });
}

/**
 * Why the license policy holds back `name`@`version` with `manifest`, in words for the npm user, or
 * null when it is served.
 */
export function licenseHoldReason(policy: LicensePolicy, name: string, version: string, manifest: VersionManifest | undefined): string | null {
  if (licenseException(policy, name, version)) return null;
  const verdict = licenseVerdict(policy, declaredLicense(manifest));
  return verdict.ok ? null : verdict.why;
}

/**
 * Why a publish here of `versions` of `name` is refused by the license policy (when it checks
 * publishes), in words for the publisher, or null.
 */
export function publishLicenseProblem(policy: LicensePolicy | undefined, name: string, versions: unknown): string | null {
  if (!policy || !policy.checkPublishes || !versions || typeof versions !== 'object') return null;
  for (const [version, manifest] of Object.entries(versions as Record<string, VersionManifest>)) {
    const why = licenseHoldReason(policy, name, version, manifest && typeof manifest === 'object' ? manifest : undefined);
    if (why) {
      return name + '@' + version + ' cannot be published here: ' + why + '. Set "license" in package.json to an allowed SPDX expression, or ask an admin for an exception in the license policy ("licenses" of the supply-chain document).';
    }
  }
  return null;
}
