/**
 * The rules of a package document that both sides apply: the gateway when it builds a document
 * (`packument.ts`), `validate_doc_update` when CouchDB stores one, replication when it copies one.
 * One place for each rule and for the words that explain it. Plain ES2019 without Node APIs: it is
 * bundled into the design documents.
 */
import { versionFileNames } from './names';
import { AttachmentStub, PackageDoc, Person, TIME_KEYS } from './types';

/** The content type of every stored tarball. */
export const TARBALL_CONTENT_TYPE = 'application/octet-stream';

/** Structural equality of JSON values. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    const k = ka[i];
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/** True when the only change from oldDoc to newDoc is `users[user]` (a star or an unstar). */
export function onlyOwnStarChanged(newDoc: PackageDoc, oldDoc: PackageDoc, user: string): boolean {
  const without = (doc: PackageDoc) => {
    const copy: Record<string, unknown> = {};
    for (const k of Object.keys(doc)) if (k !== '_rev' && k !== '_revisions' && k !== 'users') copy[k] = doc[k];
    const users: Record<string, boolean> = {};
    const source = doc.users || {};
    for (const u of Object.keys(source)) if (u !== user) users[u] = source[u];
    copy.users = users;
    // The time of the user's own star (core/merge.ts) changes with it.
    const changed = doc.changed_at as Record<string, unknown> | undefined;
    if (changed) {
      const kept: Record<string, unknown> = {};
      for (const k of Object.keys(changed)) if (k !== 'users') kept[k] = changed[k];
      const stars = (changed.users || {}) as Record<string, string>;
      const times: Record<string, string> = {};
      for (const u of Object.keys(stars)) if (u !== user) times[u] = stars[u];
      if (Object.keys(times).length) kept.users = times;
      if (Object.keys(kept).length) copy.changed_at = kept;
      else delete copy.changed_at;
    }
    return copy;
  };
  return jsonEqual(without(newDoc), without(oldDoc));
}

/** Every version ever published in `doc` (its `time` keys), unpublished ones included. */
export function publishedVersions(doc: PackageDoc | null): string[] {
  if (!doc || !doc.time) return [];
  return Object.keys(doc.time).filter((k) => TIME_KEYS.indexOf(k) === -1);
}

/** The maintainers' names of `doc` (an empty string for an entry without one). */
export function maintainerNames(doc: PackageDoc | null): string[] {
  const list = doc && Array.isArray(doc.maintainers) ? doc.maintainers : [];
  return list.map((m) => (m && typeof m.name === 'string' ? m.name : ''));
}

export const MAINTAINER_NEEDS_NAME = 'Each maintainer needs a "name".';

/** A maintainer entry as stored (`{name, email?}`), or null when it has no name. A bare string is a name. */
export function maintainerOf(entry: unknown): Person | null {
  const person = typeof entry === 'string' ? { name: entry } : (entry as { name?: unknown; email?: unknown });
  if (!person || typeof person !== 'object' || typeof person.name !== 'string' || !person.name) return null;
  return typeof person.email === 'string' && person.email ? { name: person.name, email: person.email } : { name: person.name };
}

/** Whether `url` is the http(s) URL of a registry (the `url` of a foreign package). */
export function isRegistryUrl(url: unknown): url is string {
  return typeof url === 'string' && /^https?:\/\/[^\s/]+/.test(url);
}

/** Why publishing `version` of `name` is refused: the number was used before. */
export function versionReusedMessage(name: string, version: string): string {
  return 'You cannot publish over the previously published version ' + version + ' of ' + name +
    ' (versions are never reused, even after unpublish). Bump the version and publish again.';
}

/** Why a foreign package (`url`) cannot have versions here. */
export function hostedElsewhereMessage(name: string, url: unknown): string {
  return '"' + name + '" is registered as hosted at ' + String(url) + '; publish it there, or have a maintainer remove this entry with `npm unpublish ' + name + ' --force`.';
}

/**
 * Stubs of the stored tarballs and provenance bundles of `doc` (or of `stored`, the document they are
 * kept from) for every version in `versions`: what a new revision keeps without sending them again.
 */
export function keptAttachments(name: string, versions: string[], stored: PackageDoc | null): Record<string, AttachmentStub> {
  const kept: Record<string, AttachmentStub> = {};
  const attachments = (stored && stored._attachments) || {};
  for (const v of versions) {
    for (const file of versionFileNames(name, v)) if (attachments[file]) kept[file] = { ...attachments[file], stub: true };
  }
  return kept;
}

/** A package whose whole content was unpublished: no versions, its times kept. */
export function isTombstone(doc: PackageDoc): boolean {
  return !!doc.time && typeof doc.time.unpublished === 'object' && Object.keys(doc.versions || {}).length === 0;
}

/** A package hosted by another registry, registered here with that registry's `url`. */
export function isForeign(doc: PackageDoc): boolean {
  return typeof doc.url === 'string' && Object.keys(doc.versions || {}).length === 0 && !isTombstone(doc);
}
