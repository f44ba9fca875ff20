/**
 * The supply-chain policy of mirrored packages: a cooldown that holds back upstream versions younger
 * than a minimum age (with per-package exceptions), and versions or whole packages blocked by an
 * admin, matched against names without regard to case (as npm normalizes them). Applied when a
 * mirrored packument is served (the mirror database keeps everything the upstream has, so a block
 * or a cooldown survives replication and refreshes), and to what `UPSTREAM_MODE=proxy` and
 * `redirect` pass on. Local packages are never held back. Pure.
 */
import semver from 'semver';
import { patternMatches, patternProblem } from './access';
import { EntryWords, packageEntryProblem, versionMatches } from './policy-entries';
import { licenseException, licenseHoldReason, LicensePolicy, licensePolicyProblem } from './licenses';
import { tarballFileName } from './names';
import { addAdvisoryWithheld, AdvisoryPolicy, advisoriesCover, advisoriesProblem } from './advisories';
import { PackageDoc } from './types';

/** The id of the policy document in `<db>-state`. */
export const POLICY_ID = 'supply-chain';

export interface BlockRule {
  /** A package name or pattern of the access rules (`@evil/*`). */
  package: string;
  /** One version or a semver range (`<2.0.0`, `1.2.3 || 1.2.4`); the whole package when left out. */
  version?: string;
  reason: string;
}

export interface Policy {
  /** Upstream versions younger than this (ms since their upstream publish time) are held back; 0 is off. */
  minAgeMs: number;
  /** Packages (names or patterns) the cooldown does not apply to. */
  exceptions: string[];
  blocked: BlockRule[];
  /** The license policy (`licenses` in the policy document), when there is one. */
  licenses?: LicensePolicy;
  /** The vulnerability policy (`advisories` of the document, `core/advisories.ts`); off when absent. */
  advisories?: AdvisoryPolicy;
  /** Why the policy document is invalid (then every mirrored package is blocked with this reason). */
  problem?: string;
}

export const NO_POLICY: Policy = { minAgeMs: 0, exceptions: [], blocked: [] };

export interface Withheld {
  version: string;
  kind: 'cooldown' | 'blocked' | 'license' | 'advisory';
  /** Why, in words for the npm user. */
  reason: string;
  /** For the cooldown: when the version becomes available (ISO). */
  availableAt?: string;
  /** For an advisory: the one that holds it back (none when the version is not checked yet). */
  advisory?: { id: number | string; title: string; url: string; severity: string };
}

/** Whether the policy holds anything back at all (else serving skips it). */
export function policyActive(policy: Policy): boolean {
  return policy.minAgeMs > 0 || policy.blocked.length > 0 || !!policy.licenses || !!policy.advisories;
}

/** Whether `pattern` (of a block or an exception) names `name`, compared as npm normalizes names: without regard to case. */
function names(pattern: unknown, name: string): boolean {
  return typeof pattern === 'string' && patternMatches(pattern.toLowerCase(), name.toLowerCase());
}

/**
 * Whether `policy` may hold back anything of the upstream package `name`: a block names it, or the
 * cooldown applies to it. A name it does not cover can be served without reading its versions.
 */
export function policyCovers(policy: Policy, name: string): boolean {
  if (policy.blocked.some((rule) => rule && names(rule.package, name))) return true;
  if (policy.licenses && !licenseException(policy.licenses, name)) return true;
  if (advisoriesCover(policy.advisories, name)) return true;
  return policy.minAgeMs > 0 && !policy.exceptions.some((pattern) => names(pattern, name));
}

/** The block of the whole package `name` (a rule without a version), if the policy has one. */
export function wholePackageBlock(policy: Policy, name: string): BlockRule | undefined {
  return policy.blocked.find((rule) => rule && names(rule.package, name) && !(typeof rule.version === 'string' && rule.version));
}

/** The fields of the policy document (`supply-chain` in `<db>-state`), besides CouchDB's own (`_id`, `_rev`, …). */
const POLICY_KEYS = ['type', 'help', 'cooldownExceptions', 'blocked', 'licenses', 'advisories'];
const BLOCK_KEYS = ['package', 'version', 'reason'];
const BLOCK_WORDS: EntryWords = {
  example: '{"package": "event-stream", "version": "3.3.6", "reason": "malicious"}',
  fields: 'a block has "package", "reason" and, to block only some versions, "version"',
  pattern: '@evil/*',
  reason: ' (shown to npm users), such as "malicious (flatmap-stream)"',
  version: ': write "1.2.3", "<2.0.0" or "1.2.3 || 1.2.4", or leave "version" out to block every version',
};

/** An example of a valid policy document's content, for the messages that refuse an invalid one. */
export const POLICY_EXAMPLE = '{"cooldownExceptions": ["@types/*", "typescript"], "blocked": [{"package": "event-stream", "version": "3.3.6", "reason": "malicious (flatmap-stream)"}]}';

/**
 * Why the policy document is invalid, or null. Checked strictly, every entry (an entry the gateway
 * would have to skip is a block that silently does not hold): checked by `<db>-state`'s
 * validate_doc_update when it is written, and by the gateway when it reads it.
 */
export function policyProblem(doc: unknown): string | null {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return 'the policy document must be an object such as ' + POLICY_EXAMPLE;
  const policy = doc as Record<string, unknown>;
  for (const key of Object.keys(policy)) {
    if (key.charAt(0) !== '_' && POLICY_KEYS.indexOf(key) === -1) {
      return 'the unknown field "' + key + '": the policy has "cooldownExceptions" (package patterns), "blocked" (a list of blocks), "licenses" (the license policy) and "advisories" (the vulnerability policy), such as ' + POLICY_EXAMPLE;
    }
  }
  if (policy.type !== undefined && policy.type !== 'policy') return '"type" must be "policy"';
  if (policy.help !== undefined && typeof policy.help !== 'string') return '"help" must be a string';
  const exceptions = policy.cooldownExceptions;
  if (exceptions !== undefined) {
    if (!Array.isArray(exceptions)) return '"cooldownExceptions" must be a list of package patterns, such as ["@types/*", "typescript"]';
    for (let i = 0; i < exceptions.length; i++) {
      const problem = patternProblem(exceptions[i]);
      if (problem) return 'entry ' + i + ' of "cooldownExceptions": ' + problem;
    }
  }
  if (policy.advisories !== undefined) {
    const advisories = advisoriesProblem(policy.advisories);
    if (advisories) return advisories;
  }
  const blocked = policy.blocked;
  if (blocked !== undefined) {
    if (!Array.isArray(blocked)) return '"blocked" must be a list of blocks, such as [{"package": "event-stream", "version": "3.3.6", "reason": "malicious"}]';
    for (let i = 0; i < blocked.length; i++) {
      const problem = packageEntryProblem(blocked[i], 'block ' + i + ' of "blocked"', BLOCK_KEYS, BLOCK_WORDS);
      if (problem) return problem;
    }
  }
  if (policy.licenses !== undefined) return licensePolicyProblem(policy.licenses);
  return null;
}

/** The versions among `versions` that `rule` blocks: its one version, those in its range, or all of them. */
function blockedVersions(rule: BlockRule, versions: string[]): string[] {
  const spec = rule.version;
  return typeof spec === 'string' && spec ? versions.filter((v) => versionMatches(spec, v)) : versions;
}

/** The versions of a mirrored package that are not served, by version, under `policy` at `now` (ms). */
export function withheldVersions(doc: PackageDoc, policy: Policy, now: number): Map<string, Withheld> {
  const withheld = new Map<string, Withheld>();
  const name = doc.name;
  for (const rule of policy.blocked) {
    if (!rule || !names(rule.package, name)) continue;
    for (const version of blockedVersions(rule, Object.keys(doc.versions || {}))) {
      if (doc.versions[version]) withheld.set(version, { version, kind: 'blocked', reason: name + '@' + version + ' is blocked on this registry: ' + (rule.reason || 'no reason given') + '.' });
    }
  }
  if (policy.licenses) {
    for (const version of Object.keys(doc.versions || {})) {
      if (withheld.has(version)) continue;
      const why = licenseHoldReason(policy.licenses, name, version, doc.versions[version]);
      if (why) {
        withheld.set(version, { version, kind: 'license', reason: name + '@' + version + ' is held back by this registry\'s license policy: ' + why + '; use another version or package, or ask an admin for an exception.' });
      }
    }
  }
  const exempt = policy.exceptions.some((pattern) => names(pattern, name));
  if (policy.minAgeMs > 0 && !exempt) {
    for (const version of Object.keys(doc.versions || {})) {
      if (withheld.has(version)) continue;
      const published = Date.parse(String((doc.time || {})[version] || ''));
      // A version without a publish time cannot be shown to be old enough.
      const availableAt = Number.isFinite(published) ? published + policy.minAgeMs : Infinity;
      if (availableAt > now) {
        const when = Number.isFinite(availableAt) ? new Date(availableAt).toISOString() : null;
        withheld.set(version, {
          version,
          kind: 'cooldown',
          reason: name + '@' + version + ' is held back by this registry\'s cooldown for new upstream versions' + (when ? ' until ' + when : ' (its publish time is unknown)') + '; use an older version, or ask an admin for an exception.',
          availableAt: when || undefined,
        });
      }
    }
  }
  addAdvisoryWithheld(doc, policy.advisories, withheld);
  return withheld;
}

/** When the next held-back version becomes available (ms), or null: served bytes are good until then. */
export function nextRelease(withheld: Map<string, Withheld>): number | null {
  let next: number | null = null;
  for (const w of withheld.values()) {
    const at = w.availableAt ? Date.parse(w.availableAt) : NaN;
    if (Number.isFinite(at) && (next === null || at < next)) next = at;
  }
  return next;
}

/**
 * The document as served with `withheld` left out: without those versions and their tarballs, and
 * each dist-tag that pointed at one falls back to the newest served version not above it (dropped
 * when there is none), so that installs never pick a held-back version.
 */
export function withoutWithheld(doc: PackageDoc, withheld: Map<string, Withheld>): PackageDoc {
  if (withheld.size === 0) return doc;
  const versions: PackageDoc['versions'] = {};
  for (const v of Object.keys(doc.versions)) if (!withheld.has(v)) versions[v] = doc.versions[v];
  const served = Object.keys(versions).filter((v) => semver.valid(v)).sort(semver.compare);
  const tags: Record<string, string> = {};
  for (const [tag, target] of Object.entries(doc['dist-tags'] || {})) {
    if (versions[target]) {
      tags[tag] = target;
      continue;
    }
    const prerelease = !!semver.prerelease(target);
    const fallback = served.filter((v) => semver.valid(target) ? semver.lte(v, target) : true).filter((v) => prerelease || !semver.prerelease(v)).pop();
    if (fallback) tags[tag] = fallback;
  }
  const time: PackageDoc['time'] = {};
  for (const [key, value] of Object.entries(doc.time || {})) if (!withheld.has(key)) time[key] = value;
  const attachments: NonNullable<PackageDoc['_attachments']> = {};
  for (const [file, stub] of Object.entries(doc._attachments || {})) {
    const version = [...withheld.keys()].find((v) => tarballFileName(doc.name, v) === file);
    if (!version) attachments[file] = stub;
  }
  return { ...doc, versions, 'dist-tags': tags, time, _attachments: attachments };
}

/** The withheld version whose tarball is `file`, or undefined. */
export function withheldTarball(name: string, file: string, withheld: Map<string, Withheld>): Withheld | undefined {
  for (const w of withheld.values()) if (tarballFileName(name, w.version) === file) return w;
  return undefined;
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** A duration such as `3d`, `12h`, `90m`, `3600s` or `3600` (seconds), in ms; null when it is not one. */
export function parseDuration(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$/i.exec(text);
  if (!match) return null;
  return Math.round(Number(match[1]) * UNITS[(match[2] || 's').toLowerCase()]);
}
