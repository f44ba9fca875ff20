/**
 * Entries of the supply-chain policy that name a package and, optionally, some of its versions, with
 * a reason (the blocks, the license policy's exceptions): checked strictly the same way, and their
 * versions matched the same way. Pure.
 */
import semver from 'semver';
import { patternProblem } from './access';

/** The words of the messages about one kind of entry, beside what is wrong. */
export interface EntryWords {
  /** A valid entry, for "must be an object such as …". */
  example: string;
  /** What fields the entry has, after its unknown field is named. */
  fields: string;
  /** A package pattern, for "needs a \"package\": a name or a pattern such as …". */
  pattern: string;
  /** After "needs a \"reason\"". */
  reason: string;
  /** After "\"version\" … is neither a version nor a semver range". */
  version: string;
}

/** Why `value` cannot be the entry `where` (`block 0 of "blocked"`) with the fields `keys`, or null. */
export function packageEntryProblem(value: unknown, where: string, keys: string[], words: EntryWords): string | null {
  const entry = value as Record<string, unknown>;
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) return where + ' must be an object such as ' + words.example;
  for (const key of Object.keys(entry)) {
    if (keys.indexOf(key) === -1) return where + ' has the unknown field "' + key + '": ' + words.fields;
  }
  if (entry.package === undefined) return where + ' needs a "package": a name or a pattern such as "' + words.pattern + '"';
  const pattern = patternProblem(entry.package);
  if (pattern) return where + ': ' + pattern;
  if (typeof entry.reason !== 'string' || !entry.reason.trim()) return where + ' needs a "reason"' + words.reason;
  if (entry.version !== undefined && (typeof entry.version !== 'string' || !entry.version.trim() || semver.validRange(entry.version) === null)) {
    return where + ': "version" ' + JSON.stringify(entry.version) + ' is neither a version nor a semver range' + words.version;
  }
  return null;
}

/** Whether `version` is the one version `spec` names, or in its range (prereleases included). */
export function versionMatches(spec: string, version: string): boolean {
  const exact = semver.valid(spec);
  if (exact || semver.validRange(spec) === null) return version === spec || (!!exact && semver.valid(version) === exact);
  return semver.valid(version) !== null && semver.satisfies(version, spec, { includePrerelease: true });
}
