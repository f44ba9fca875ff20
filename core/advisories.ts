/**
 * The vulnerability policy of mirrored packages: the upstream's security advisories (npm's bulk
 * advisory API, `POST /-/npm/v1/security/advisories/bulk`, the one `npm audit` uses) kept on each
 * mirrored document as `origin_advisories`, and the versions an advisory at or above the policy's
 * severity holds back, with exceptions by package or by advisory. The policy is the `advisories`
 * field of the supply-chain policy document (`core/policy.ts`):
 *
 *   "advisories": { "severity": "high", "unchecked": "hold",
 *                   "exceptions": [{ "package": "lodash", "reason": "…" }, { "advisory": 1096755, "reason": "…" }] }
 *
 * Pure, ES2019, no Node APIs: `advisoriesProblem` runs inside CouchDB too (`_design/config`).
 */
import semver from 'semver';
import { patternMatches, patternProblem } from './access';
import type { Withheld } from './policy';
import { PackageDoc } from './types';

/** npm's severities, lowest first. */
export const SEVERITIES = ['info', 'low', 'moderate', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export interface AdvisoryException {
  /** A package name or pattern of the access rules: no advisory of it holds anything back (with `advisory`: only that one). */
  package?: string;
  /** An advisory's id (npm's number, or the GHSA id at the end of its URL): it holds nothing back (with `package`: there only). */
  advisory?: number | string;
  reason: string;
}

export interface AdvisoryPolicy {
  /** Versions with an advisory of this severity or above are held back. */
  severity: Severity;
  /**
   * Versions the upstream's advisory endpoint has not answered for (not asked yet, down, or absent, as
   * on a registry without audit): `hold` (default) holds them back until it has, `serve` serves them.
   */
  unchecked: 'hold' | 'serve';
  exceptions: AdvisoryException[];
}

/** One advisory as the bulk API answers it (what is kept of it). */
export interface Advisory {
  id: number | string;
  title: string;
  url: string;
  severity: string;
  vulnerable_versions: string;
  cwe?: unknown;
  cvss?: unknown;
}

/**
 * What the mirrored document keeps of the upstream's advisories (`origin_advisories`, written by
 * replication, never served): the versions asked about, the advisories of the package by id, and the
 * versions each covers. `changed`: when this result last changed (a check that finds the same result
 * writes nothing).
 */
export interface OriginAdvisories {
  changed: string;
  checked: string[];
  advisories: Record<string, Advisory>;
  affected: Record<string, string[]>;
  /** A digest of what it says (`recordDigest`): the periodic check compares it without reading the document. */
  digest?: string;
}

/** An example for the messages that refuse an invalid `advisories` field. */
export const ADVISORIES_EXAMPLE = '{"severity": "high", "unchecked": "hold", "exceptions": [{"package": "lodash", "reason": "not reachable in our code"}, {"advisory": 1096755, "reason": "fixed by a patch"}]}';

const ADVISORIES_KEYS = ['severity', 'unchecked', 'exceptions'];
const EXCEPTION_KEYS = ['package', 'advisory', 'reason'];

/** Why the `advisories` field of the policy document is invalid, or null. */
export function advisoriesProblem(value: unknown): string | null {
  const where = '"advisories"';
  if (!value || typeof value !== 'object' || Array.isArray(value)) return where + ' must be an object such as ' + ADVISORIES_EXAMPLE;
  const policy = value as Record<string, unknown>;
  for (const key of Object.keys(policy)) {
    if (ADVISORIES_KEYS.indexOf(key) === -1) return where + ' has the unknown field "' + key + '": it has "severity", "unchecked" and "exceptions", such as ' + ADVISORIES_EXAMPLE;
  }
  if (SEVERITIES.indexOf(policy.severity as Severity) === -1) return where + ' needs a "severity", one of ' + SEVERITIES.join(', ') + ' (versions with an advisory of that severity or above are held back)';
  if (policy.unchecked !== undefined && policy.unchecked !== 'hold' && policy.unchecked !== 'serve') {
    return '"unchecked" of ' + where + ' must be "hold" (versions the upstream\'s advisory endpoint has not answered for are held back, the default) or "serve"';
  }
  const exceptions = policy.exceptions;
  if (exceptions === undefined) return null;
  if (!Array.isArray(exceptions)) return '"exceptions" of ' + where + ' must be a list such as [{"package": "lodash", "reason": "…"}, {"advisory": 1096755, "reason": "…"}]';
  for (let i = 0; i < exceptions.length; i++) {
    const entry = exceptions[i] as Record<string, unknown>;
    const at = 'exception ' + i + ' of ' + where;
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) return at + ' must be an object such as {"advisory": 1096755, "reason": "fixed by a patch"}';
    for (const key of Object.keys(entry)) {
      if (EXCEPTION_KEYS.indexOf(key) === -1) return at + ' has the unknown field "' + key + '": an exception has "package" and/or "advisory", and "reason"';
    }
    if (entry.package === undefined && entry.advisory === undefined) return at + ' needs a "package" (a name or pattern) or an "advisory" (an id such as 1096755 or "GHSA-xxxx-xxxx-xxxx"), or both';
    if (entry.package !== undefined) {
      const problem = patternProblem(entry.package);
      if (problem) return at + ': ' + problem;
    }
    if (entry.advisory !== undefined) {
      const id = entry.advisory;
      const ok = (typeof id === 'number' && isFinite(id) && Math.floor(id) === id && id > 0) || (typeof id === 'string' && /^[A-Za-z0-9._:-]{1,100}$/.test(id));
      if (!ok) return at + ': "advisory" must be an advisory id, a whole number such as 1096755 or a GHSA id such as "GHSA-35jh-r3h4-6jhm"';
    }
    if (typeof entry.reason !== 'string' || !entry.reason.trim()) return at + ' needs a "reason" (why the advisory does not apply here)';
  }
  return null;
}

/** The policy of a valid `advisories` field (checked by `advisoriesProblem`), or undefined when there is none. */
export function advisoryPolicyOf(value: unknown): AdvisoryPolicy | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const v = value as Record<string, unknown>;
  return { severity: v.severity as Severity, unchecked: v.unchecked === 'serve' ? 'serve' : 'hold', exceptions: (v.exceptions as AdvisoryException[] | undefined) || [] };
}

/** The rank of a severity; one npm does not know counts as critical (an unknown is not a reason to serve). */
export function severityRank(severity: unknown): number {
  const rank = SEVERITIES.indexOf(severity as Severity);
  return rank === -1 ? SEVERITIES.length - 1 : rank;
}

const lower = (s: string) => s.toLowerCase();

/** The ids an exception's `advisory` matches: its number, or the GHSA id at the end of its URL. */
function sameAdvisory(wanted: number | string, advisory: Advisory): boolean {
  const w = lower(String(wanted));
  if (lower(String(advisory.id)) === w) return true;
  const tail = typeof advisory.url === 'string' ? advisory.url.split('/').pop() || '' : '';
  return !!tail && lower(tail) === w;
}

/** The exception that lets `advisory` of `name` through, if any. */
export function exceptionFor(policy: AdvisoryPolicy, name: string, advisory: Advisory): AdvisoryException | undefined {
  return policy.exceptions.find((e) => {
    if (!e) return false;
    if (e.package !== undefined && !patternMatches(lower(String(e.package)), lower(name))) return false;
    if (e.advisory !== undefined && !sameAdvisory(e.advisory, advisory)) return false;
    return true;
  });
}

/** Whether the policy may hold back anything of `name` (an exception of the whole package lets everything through). */
export function advisoriesCover(policy: AdvisoryPolicy | undefined, name: string): boolean {
  if (!policy) return false;
  return !policy.exceptions.some((e) => e && e.advisory === undefined && typeof e.package === 'string' && patternMatches(lower(e.package), lower(name)));
}

/** Whether `advisory` holds back versions under `policy` (its severity at or above the threshold). */
export function reachesThreshold(policy: AdvisoryPolicy, advisory: Advisory): boolean {
  return severityRank(advisory.severity) >= SEVERITIES.indexOf(policy.severity);
}

/** The words for one advisory: `1096755 (high) "Prototype Pollution in lodash" https://…`. */
export function advisoryWords(advisory: Advisory): string {
  return 'advisory ' + advisory.id + ' (' + advisory.severity + ') "' + advisory.title + '"' + (advisory.url ? ' ' + advisory.url : '');
}

/**
 * Whether `doc` comes from an npm registry, whose advisory endpoint is asked: mirrored from one (its
 * `origin` is the upstream's URL) or served through from one (no `origin`). A package replicated
 * natively from another instance of this registry (`REPLICATION_COUCHDB`; its `origin` is that
 * registry's id) is that registry's own, under its policies.
 */
export function fromNpmRegistry(doc: PackageDoc): boolean {
  return typeof doc.origin !== 'string' || !doc.origin || /^https?:/i.test(doc.origin);
}

/**
 * Adds to `withheld` the versions of the mirrored `doc` its advisories hold back under `policy`: a
 * version covered by an advisory at or above the severity (the most severe one is named), and, with
 * `unchecked: hold`, a version the upstream's advisory endpoint has not answered for. Versions already
 * held back for another reason keep it.
 */
export function addAdvisoryWithheld(doc: PackageDoc, policy: AdvisoryPolicy | undefined, withheld: Map<string, Withheld>): void {
  if (!policy || !advisoriesCover(policy, doc.name) || !fromNpmRegistry(doc)) return;
  const record = doc.origin_advisories as OriginAdvisories | undefined;
  const checked: Record<string, boolean> = {};
  if (record && Array.isArray(record.checked)) for (const v of record.checked) checked[v] = true;
  const affected = (record && record.affected) || {};
  const advisories = (record && record.advisories) || {};
  for (const version of Object.keys(doc.versions || {})) {
    if (withheld.has(version)) continue;
    let worst: Advisory | undefined;
    const ids = Object.prototype.hasOwnProperty.call(affected, version) && Array.isArray(affected[version]) ? affected[version] : [];
    for (const id of ids) {
      const advisory = Object.prototype.hasOwnProperty.call(advisories, id) ? advisories[id] : undefined;
      if (!advisory || !reachesThreshold(policy, advisory) || exceptionFor(policy, doc.name, advisory)) continue;
      if (!worst || severityRank(advisory.severity) > severityRank(worst.severity)) worst = advisory;
    }
    if (worst) {
      withheld.set(version, {
        version,
        kind: 'advisory',
        reason: doc.name + '@' + version + ' is held back by this registry\'s vulnerability policy: ' + advisoryWords(worst) + '; use a version without it, or ask an admin for an exception.',
        advisory: { id: worst.id, title: worst.title, url: worst.url, severity: worst.severity },
      });
    } else if (policy.unchecked === 'hold' && !checked[version]) {
      withheld.set(version, {
        version,
        kind: 'advisory',
        reason: doc.name + '@' + version + ' is held back by this registry\'s vulnerability policy: the upstream\'s security advisories have not been checked for it yet (its advisory endpoint has not answered); try again later, or ask an admin.',
      });
    }
  }
}

/** Advisories kept per package at most (the document must stay well below CouchDB's size limit). */
const MAX_ADVISORIES = 1000;
/**
 * Advisories kept per package, counted once for each version each covers, at most: a hostile
 * endpoint's thousand advisories of every version of a package of a thousand versions made a record
 * of 10 MB (more than CouchDB takes in a document) and a million rows of `advisoriesByVersion`.
 * Versions past it are left unchecked.
 */
const MAX_AFFECTED = 100_000;

/**
 * `text` without control characters (C0, DEL, C1) or bidirectional overrides: an advisory's words
 * reach terminals (npm's 403 messages, `npm run replication`), where an escape sequence of a hostile
 * endpoint could clear the screen, rewrite what it shows or hide a link.
 */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what is looked for
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '');
}

/** The advisories of one package in a bulk answer, checked: what is not an advisory is left out, missing fields get npm's defaults. */
export function advisoriesOf(value: unknown): Advisory[] {
  if (!Array.isArray(value)) return [];
  const list: Advisory[] = [];
  for (const item of value) {
    if (list.length >= MAX_ADVISORIES) break;
    if (!item || typeof item !== 'object' || Array.isArray(item)) continue;
    const a = item as Record<string, unknown>;
    if ((typeof a.id !== 'number' && typeof a.id !== 'string') || String(a.id) === '' || String(a.id).length > 200) continue;
    const range = typeof a.vulnerable_versions === 'string' && a.vulnerable_versions.trim() ? a.vulnerable_versions : '*';
    const id = typeof a.id === 'string' ? printable(a.id) : a.id;
    if (id === '') continue;
    const advisory: Advisory = {
      id,
      title: typeof a.title === 'string' ? printable(a.title).slice(0, 500) : '',
      // An address as it is written, without spaces or control characters, or none.
      // eslint-disable-next-line no-control-regex -- control characters are what is looked for
      url: typeof a.url === 'string' && /^https?:\/\/[^\s\u0000-\u001f\u007f-\u009f]+$/.test(a.url) ? a.url.slice(0, 2000) : '',
      // As npm reads an advisory without one (metavuln-calculator).
      severity: typeof a.severity === 'string' ? printable(a.severity).toLowerCase() : 'high',
      vulnerable_versions: range.slice(0, 2000),
    };
    // Kept as npm sends them, when they are that (a hostile endpoint's megabytes here went on the document).
    if (Array.isArray(a.cwe) && a.cwe.length <= 20 && a.cwe.every((c) => typeof c === 'string' && c.length <= 100)) advisory.cwe = (a.cwe as string[]).map(printable);
    const cvss = a.cvss as Record<string, unknown> | undefined;
    if (cvss && typeof cvss === 'object' && !Array.isArray(cvss) && typeof cvss.score === 'number' && (cvss.vectorString === null || (typeof cvss.vectorString === 'string' && cvss.vectorString.length <= 200))) {
      advisory.cvss = { score: cvss.score, vectorString: typeof cvss.vectorString === 'string' ? printable(cvss.vectorString) : null };
    }
    list.push(advisory);
  }
  return list;
}

const RANGE_OPTIONS = { includePrerelease: true, loose: true };
/** Ranges joined by `||` an advisory's range may have (real ones have a handful): one with more is not read, and covers every version. */
const MAX_RANGE_SETS = 64;
/** The longest advisory range read (as semver's longest version): reading a range costs about a microsecond a character. */
const MAX_RANGE_LENGTH = 256;

/** Versions in semver's order, for finding those a range covers by bisection. */
interface SortedVersions {
  /** The versions semver can read, ordered. */
  order: { version: string; parsed: semver.SemVer }[];
}

function sortedVersions(versions: string[]): SortedVersions {
  const order: { version: string; parsed: semver.SemVer }[] = [];
  for (const version of versions) {
    try {
      order.push({ version, parsed: new semver.SemVer(version, RANGE_OPTIONS) });
    } catch {
      // not a version semver reads: no range covers it
    }
  }
  order.sort((a, b) => a.parsed.compare(b.parsed));
  return { order };
}

/** The first index of `order` whose version compares above `bound` (or at or above it, with `inclusive`). */
function firstFrom(order: SortedVersions['order'], bound: semver.SemVer, inclusive: boolean): number {
  let low = 0;
  let high = order.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    const c = order[mid].parsed.compare(bound);
    if (c > 0 || (inclusive && c === 0)) high = mid;
    else low = mid + 1;
  }
  return low;
}

/**
 * The versions an advisory's range covers; a range that cannot be read covers every version. Each
 * of the range's sets (the parts joined by `||`) is, with prereleases included, one stretch of the
 * versions in semver's order, found by bisection: a hostile endpoint's thousand distinct ranges of
 * 64 sets, tested against each of a thousand versions, stalled the gateway for more than a minute.
 */
function covered(range: string, versions: string[], sorted: SortedVersions): string[] {
  let matcher: semver.Range;
  try {
    if (range.length > MAX_RANGE_LENGTH || range.split('||').length > MAX_RANGE_SETS) throw new Error('not read');
    // Strictly a range, or it cannot be read; prereleases included.
    matcher = new semver.Range(range, { includePrerelease: true });
  } catch {
    return versions;
  }
  const order = sorted.order;
  const marked = new Uint8Array(order.length);
  for (const set of matcher.set) {
    let from = 0;
    let to = order.length;
    for (const comparator of set) {
      const bound = comparator.semver;
      if (!(bound instanceof semver.SemVer)) continue; // any version
      const op = comparator.operator;
      if (op === '>=' || op === '' || op === '=') from = Math.max(from, firstFrom(order, bound, true));
      if (op === '>') from = Math.max(from, firstFrom(order, bound, false));
      if (op === '<') to = Math.min(to, firstFrom(order, bound, true));
      if (op === '<=' || op === '' || op === '=') to = Math.min(to, firstFrom(order, bound, false));
    }
    for (let i = from; i < to; i++) marked[i] = 1;
  }
  const list: string[] = [];
  for (let i = 0; i < order.length; i++) if (marked[i]) list.push(order[i].version);
  return list;
}

/** The record kept on the document after the upstream answered `advisories` for `versions`. */
export function advisoryRecord(versions: string[], advisories: Advisory[], now: string): OriginAdvisories {
  // Without a prototype: an id or a version named "__proto__" is a key like any other.
  const byId = Object.create(null) as Record<string, Advisory>;
  const affected = Object.create(null) as Record<string, string[]>;
  const sorted = sortedVersions(versions);
  for (const advisory of advisories) {
    const id = String(advisory.id);
    // An id met again: its versions are added to those of the first (each id once per version).
    const again = Object.prototype.hasOwnProperty.call(byId, id);
    byId[id] = advisory;
    for (const version of covered(advisory.vulnerable_versions, versions, sorted)) {
      if (!affected[version]) affected[version] = [];
      if (!again || affected[version].indexOf(id) === -1) affected[version].push(id);
    }
  }
  // The versions whose advisories fit in the record; the rest are left unchecked (as when the endpoint does not answer).
  let pairs = 0;
  const checked: string[] = [];
  for (const version of versions) {
    const ids = Object.prototype.hasOwnProperty.call(affected, version) ? affected[version] : [];
    if (pairs + ids.length > MAX_AFFECTED) {
      delete affected[version];
      continue;
    }
    pairs += ids.length;
    checked.push(version);
  }
  const record: OriginAdvisories = { changed: now, checked: checked.sort(), advisories: byId, affected };
  record.digest = recordDigest(record);
  return record;
}

/** What a record says, as one string (when it was made aside): the versions asked about, the advisories, what each covers. */
function recordText(r: OriginAdvisories): string {
  const own = (o: object, k: string) => Object.prototype.hasOwnProperty.call(o, k);
  const advisories = r.advisories || {};
  const affected = r.affected || {};
  return JSON.stringify([
    (Array.isArray(r.checked) ? r.checked : []).slice().sort(),
    Object.keys(advisories).sort().map((id) => (own(advisories, id) ? [id, advisories[id]] : null)),
    Object.keys(affected).sort().map((v) => [v, Array.isArray(affected[v]) ? affected[v].slice().sort() : []]),
  ]);
}

/** Two 32-bit string hashes (FNV-1a and djb2) of `text`, as 16 hex digits. Pure: runs in CouchDB's views too. */
function hash64(text: string): string {
  let fnv = 0x811c9dc5;
  let djb = 5381;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    fnv = Math.imul(fnv ^ c, 0x01000193) >>> 0;
    djb = (Math.imul(djb, 33) + c) >>> 0;
  }
  return ('0000000' + fnv.toString(16)).slice(-8) + ('0000000' + djb.toString(16)).slice(-8);
}

/** The digest of what a record says (not when it was made). */
export function recordDigest(record: OriginAdvisories): string {
  return hash64(recordText(record));
}

/** Whether two records say the same (when they were made aside). */
export function sameRecord(a: OriginAdvisories | undefined, b: OriginAdvisories | undefined): boolean {
  if (!a || !b) return a === b;
  return recordText(a) === recordText(b);
}

/** Whether every version of `doc` was asked about in its record (else a check is due). */
export function recordCovers(doc: PackageDoc): boolean {
  const record = doc.origin_advisories as OriginAdvisories | undefined;
  if (!record || !Array.isArray(record.checked)) return false;
  const checked: Record<string, boolean> = {};
  for (const v of record.checked) checked[v] = true;
  return Object.keys(doc.versions || {}).every((v) => checked[v]);
}
