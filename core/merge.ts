/**
 * The merge of conflicting revisions of a package document (a CouchDB cluster that acknowledged writes
 * on fewer copies than its quorum, or sites that published at once): any set of leaf revisions → one
 * document. Pure and deterministic: the same revisions in any order give the same document, and merging
 * a merge again changes nothing, so that any number of gateways resolving at once agree.
 *
 * - Versions are the union. A version number is immutable: two revisions with the same version and
 *   different integrity keep the one published first (`time[version]`, then the lexically smaller
 *   integrity); the other is a refused publish, returned for the caller to count and report.
 * - A version unpublished stays unpublished: a revision that has `time[version]` without the version
 *   descends from one that had it (publishing sets both, unpublishing removes the manifest only).
 * - The tarball kept is the winner's.
 * - dist-tags (per tag), deprecations (per version), maintainers, stars (per user) and the package's
 *   settings (per setting: `npm access set mfa`, `npm trust`) take the latest change by the times in
 *   `changed_at` (written by core/packument.ts); without times, the revision modified last decides
 *   (stars: the union).
 */
import semver from 'semver';
import { versionFileNames } from './names';
import { AttachmentStub, ChangeTimes, PackageDoc, UnpublishedInfo, VersionManifest } from './types';
import { PACKAGE_SETTINGS, TIME_KEYS } from './types';

/** A publish the merge refused: the same version as a kept one, with other bytes. */
export interface RefusedPublish {
  name: string;
  version: string;
  /** The integrity refused, and the one kept. */
  integrity: string;
  kept: string;
  /** The leaf revision that carried it, who published it and when (when known). */
  rev?: string;
  publisher?: string;
  time?: string;
}

export interface MergeResult {
  /** The merged document, without `_rev`. */
  doc: PackageDoc;
  refused: RefusedPublish[];
  /** For each tarball kept, the revision it comes from. */
  attachmentSources: Record<string, string>;
}

const timeOf = (doc: PackageDoc, key: string): string => {
  const value = doc.time ? doc.time[key] : undefined;
  return typeof value === 'string' ? value : '';
};

const integrityOf = (manifest: VersionManifest): string => (manifest && manifest.dist && typeof manifest.dist.integrity === 'string' ? manifest.dist.integrity : '');

/** Compares revisions by `(pos, hash)`, as CouchDB orders them. */
export function compareRevs(a: string, b: string): number {
  const [pa, ha] = [parseInt(a, 10) || 0, a.slice(a.indexOf('-') + 1)];
  const [pb, hb] = [parseInt(b, 10) || 0, b.slice(b.indexOf('-') + 1)];
  if (pa !== pb) return pa - pb;
  return ha < hb ? -1 : ha > hb ? 1 : 0;
}

const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The revision that decides a field: the latest stamp (`stampOf`), then the latest `time.modified`,
 * then the greater revision: a total order, so the pick depends on the revisions only.
 */
function latestBy(revisions: PackageDoc[], stampOf: (doc: PackageDoc) => string): PackageDoc {
  return revisions.reduce((best, doc) => {
    const order = compareText(stampOf(doc), stampOf(best)) || compareText(timeOf(doc, 'modified'), timeOf(best, 'modified')) || compareRevs(doc._rev || '', best._rev || '');
    return order > 0 ? doc : best;
  });
}

const changesOf = (doc: PackageDoc): ChangeTimes => (doc.changed_at && typeof doc.changed_at === 'object' ? (doc.changed_at as ChangeTimes) : {});

/** The latest of two times (ISO strings compare as text). */
const later = (a: string | undefined, b: string | undefined): string | undefined => (!a ? b : !b ? a : a > b ? a : b);

/** Merges the stamps of a per-key map: the latest per key. */
function mergeStamps(revisions: PackageDoc[], pick: (c: ChangeTimes) => Record<string, string> | undefined): Record<string, string> | undefined {
  const merged: Record<string, string> = {};
  for (const doc of revisions) {
    const stamps = pick(changesOf(doc)) || {};
    for (const key of Object.keys(stamps)) merged[key] = later(merged[key], stamps[key]) as string;
  }
  return Object.keys(merged).length ? sortedKeys(merged) : undefined;
}

function sortedKeys<T>(record: Record<string, T>): Record<string, T> {
  const sorted: Record<string, T> = {};
  for (const key of Object.keys(record).sort()) sorted[key] = record[key];
  return sorted;
}

/** JSON with every object's keys sorted: the same for documents that differ only in key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']';
  if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    return '{' + Object.keys(record).sort().filter((k) => record[k] !== undefined).map((k) => JSON.stringify(k) + ':' + canonical(record[k])).join(',') + '}';
  }
  return JSON.stringify(value);
}

/** Whether two documents hold the same content, key order aside (a merge that changes nothing need not be written). */
export function sameContent(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

/** Merges the leaf revisions of one package document (at least one) into one document. */
export function mergeRevisions(leaves: PackageDoc[]): MergeResult {
  if (leaves.length === 0) throw new Error('mergeRevisions needs at least one revision');
  // A canonical order first: whatever order the revisions came in, every step below sees the same.
  const revisions = [...leaves].sort((a, b) => compareRevs(a._rev || '', b._rev || '') || compareText(JSON.stringify(a), JSON.stringify(b)));
  const name = revisions[0].name;
  const newest = latestBy(revisions, () => '');
  const refused: RefusedPublish[] = [];

  // Versions: the union, but for those unpublished in some revision; one winner per version number.
  const unpublished = new Set<string>();
  for (const doc of revisions) {
    for (const key of Object.keys(doc.time || {})) {
      if (TIME_KEYS.indexOf(key) === -1 && !(doc.versions || {})[key]) unpublished.add(key);
    }
    const tomb = doc.time && typeof doc.time.unpublished === 'object' ? (doc.time.unpublished as UnpublishedInfo) : null;
    if (tomb && Array.isArray(tomb.versions)) for (const v of tomb.versions) unpublished.add(v);
  }
  const versions: Record<string, VersionManifest> = {};
  const winners: Record<string, PackageDoc> = {};
  const candidates = new Map<string, PackageDoc[]>();
  for (const doc of revisions) {
    for (const version of Object.keys(doc.versions || {})) {
      if (!candidates.has(version)) candidates.set(version, []);
      (candidates.get(version) as PackageDoc[]).push(doc);
    }
  }
  for (const version of [...candidates.keys()].sort(semver.compare)) {
    if (unpublished.has(version)) continue;
    const carriers = candidates.get(version) as PackageDoc[];
    const ranked = [...carriers].sort((a, b) => {
      const ta = timeOf(a, version) || '\uffff';
      const tb = timeOf(b, version) || '\uffff';
      return compareText(ta, tb) || compareText(integrityOf(a.versions[version]), integrityOf(b.versions[version])) || compareRevs(a._rev || '', b._rev || '');
    });
    const winner = ranked[0];
    const kept = integrityOf(winner.versions[version]);
    const seen = new Set<string>([kept]);
    for (const loser of ranked.slice(1)) {
      const integrity = integrityOf(loser.versions[version]);
      if (seen.has(integrity)) continue;
      seen.add(integrity);
      const publisher = loser.versions[version]._npmUser;
      refused.push({ name, version, integrity, kept, rev: loser._rev, publisher: publisher ? publisher.name : undefined, time: timeOf(loser, version) || undefined });
    }
    winners[version] = winner;
    versions[version] = { ...winner.versions[version] };
  }

  // Deprecations: per version, the latest change.
  const changed: ChangeTimes = {};
  for (const version of Object.keys(versions)) {
    const carriers = candidates.get(version) as PackageDoc[];
    const decider = latestBy(carriers, (doc) => (changesOf(doc).deprecated || {})[version] || '');
    const message = decider.versions[version].deprecated;
    if (typeof message === 'string' && message !== '') versions[version].deprecated = message;
    else delete versions[version].deprecated;
  }
  const deprecatedStamps = mergeStamps(revisions, (c) => c.deprecated);
  if (deprecatedStamps) changed.deprecated = deprecatedStamps;

  // time: every key any revision has; a version's is its winner's; created the first, modified the last.
  const time: Record<string, string | UnpublishedInfo> = {};
  for (const doc of revisions) {
    for (const key of Object.keys(doc.time || {})) {
      if (TIME_KEYS.indexOf(key) !== -1) continue;
      const value = timeOf(doc, key);
      if (value && (time[key] === undefined || value < (time[key] as string))) time[key] = value;
    }
  }
  for (const version of Object.keys(winners)) {
    const value = timeOf(winners[version], version);
    if (value) time[version] = value;
  }
  const created = revisions.map((d) => timeOf(d, 'created')).filter(Boolean).sort()[0];
  const modified = revisions.map((d) => timeOf(d, 'modified')).filter(Boolean).sort().pop();

  // dist-tags: per tag, the latest change; a tag must point at a kept version; `latest` always exists.
  const tagNames = new Set<string>();
  for (const doc of revisions) {
    for (const tag of Object.keys(doc['dist-tags'] || {})) tagNames.add(tag);
    for (const tag of Object.keys(changesOf(doc)['dist-tags'] || {})) tagNames.add(tag);
  }
  const tags: Record<string, string> = {};
  for (const tag of [...tagNames].sort()) {
    const decider = latestBy(revisions, (doc) => (changesOf(doc)['dist-tags'] || {})[tag] || '');
    let target = (decider['dist-tags'] || {})[tag];
    if (target && !versions[target]) {
      // The decider's target is gone (unpublished, or a refused version): the newest other revision's that is kept.
      const others = revisions.filter((doc) => versions[(doc['dist-tags'] || {})[tag]]);
      target = others.length ? latestBy(others, (doc) => (changesOf(doc)['dist-tags'] || {})[tag] || '')['dist-tags'][tag] : '';
    }
    if (target && versions[target]) tags[tag] = target;
  }
  const remaining = Object.keys(versions).sort(semver.compare);
  if (!tags.latest && remaining.length) tags.latest = remaining[remaining.length - 1];
  const tagStamps = mergeStamps(revisions, (c) => c['dist-tags']);
  if (tagStamps) changed['dist-tags'] = tagStamps;

  // Maintainers: the latest change.
  const maintainersFrom = latestBy(revisions, (doc) => changesOf(doc).maintainers || '');
  const maintainerStamp = revisions.map((d) => changesOf(d).maintainers || '').sort().pop();
  if (maintainerStamp) changed.maintainers = maintainerStamp;

  // The package's settings (npm access set mfa, npm trust): each from the revision that changed it last.
  const settings: Partial<Record<(typeof PACKAGE_SETTINGS)[number], unknown>> = {};
  for (const field of PACKAGE_SETTINGS) {
    const decider = latestBy(revisions, (doc) => (changesOf(doc).settings || {})[field] || '');
    if (decider[field] !== undefined) settings[field] = decider[field];
  }
  const settingStamps = mergeStamps(revisions, (c) => c.settings);
  if (settingStamps) changed.settings = settingStamps;

  // Stars: per user, the latest star or unstar; without a time, the union.
  const starrers = new Set<string>();
  for (const doc of revisions) {
    for (const user of Object.keys(doc.users || {})) if ((doc.users as Record<string, boolean>)[user] === true) starrers.add(user);
    for (const user of Object.keys(changesOf(doc).users || {})) starrers.add(user);
  }
  const users: Record<string, boolean> = {};
  for (const user of [...starrers].sort()) {
    const stamped = revisions.filter((doc) => (changesOf(doc).users || {})[user]);
    const starred = stamped.length
      ? (latestBy(stamped, (doc) => (changesOf(doc).users as Record<string, string>)[user]).users || {})[user] === true
      : revisions.some((doc) => (doc.users || {})[user] === true);
    if (starred) users[user] = true;
  }
  const userStamps = mergeStamps(revisions, (c) => c.users);
  if (userStamps) changed.users = userStamps;

  // Tarballs and provenance bundles: each kept version's from its winner.
  const attachments: Record<string, AttachmentStub> = {};
  const attachmentSources: Record<string, string> = {};
  for (const version of remaining) {
    for (const file of versionFileNames(name, version)) {
      const stub = (winners[version]._attachments || {})[file];
      if (!stub) continue;
      attachments[file] = { content_type: stub.content_type, digest: stub.digest, length: stub.length, stub: true };
      attachmentSources[file] = winners[version]._rev || '';
    }
  }

  // The rest of the document (summary, readme, url of a foreign package) is the newest revision's.
  const { _rev, _revisions, _conflicts, _deleted_conflicts, _attachments, users: _users, changed_at: _changed, ...base } = newest as PackageDoc & Record<string, unknown>;
  void _users;
  void _changed;
  void _rev;
  void _revisions;
  void _conflicts;
  void _deleted_conflicts;
  void _attachments;
  const doc: PackageDoc = {
    ...(base as PackageDoc),
    'dist-tags': tags,
    versions,
    maintainers: (maintainersFrom.maintainers || []).map((m) => ({ ...m })),
    time,
    _attachments: attachments,
  };
  if (created) doc.time = { created, ...doc.time };
  if (modified) doc.time.modified = modified;
  if (remaining.length === 0 && !doc.url) {
    // Nothing left: a tombstone, its record the latest unpublish (or none when nothing was ever published).
    const tombs = revisions
      .map((d) => (d.time && typeof d.time.unpublished === 'object' ? (d.time.unpublished as UnpublishedInfo) : null))
      .filter((t): t is UnpublishedInfo => !!t)
      .sort((a, b) => compareText(a.time, b.time) || compareText(JSON.stringify(a), JSON.stringify(b)));
    if (tombs.length) doc.time.unpublished = { ...tombs[tombs.length - 1], versions: [...unpublished].filter((v) => time[v]).sort(semver.compare) };
  }
  for (const field of PACKAGE_SETTINGS) {
    // Deleted first, so that the keys come in one order whichever revision was the newest.
    delete (doc as Record<string, unknown>)[field];
    if (settings[field] !== undefined) (doc as Record<string, unknown>)[field] = settings[field];
  }
  if (Object.keys(users).length) doc.users = users;
  else delete doc.users;
  if (Object.keys(changed).length) doc.changed_at = changed;
  else delete doc.changed_at;
  // The summary follows the `latest` manifest.
  const latest = versions[tags.latest];
  if (latest) {
    for (const field of ['description', 'keywords', 'homepage', 'repository', 'bugs', 'license', 'author']) {
      if (latest[field] !== undefined) doc[field] = latest[field];
    }
  }
  return { doc, refused, attachmentSources };
}
