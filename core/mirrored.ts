/**
 * Mirrored packages as documents: the upstream's packument stored as it is, with its `origin` (the
 * upstream), `origin_rev` (the upstream revision it copies) and `origin_synced` (when that copy was
 * made), and `origin_validators` (how to ask the upstream whether it changed since). Pure: the replication code fetches, this decides what is written.
 */
import { compareRevs, MergeResult } from './merge';
import { versionFileNames } from './names';
import { keptAttachments } from './rules';
import { AttachmentStub, OriginValidators, PackageDoc, VersionManifest } from './types';

/** A packument as an npm registry serves it (full form). */
export interface UpstreamPackument {
  _rev?: string;
  name?: string;
  versions?: Record<string, VersionManifest>;
  'dist-tags'?: Record<string, string>;
  time?: Record<string, unknown>;
  [key: string]: unknown;
}

/** The revision number of a CouchDB revision (`12-abc` → 12), or 0. */
export function revGeneration(rev: unknown): number {
  const n = typeof rev === 'string' ? parseInt(rev, 10) : NaN;
  return Number.isFinite(n) ? n : 0;
}

/** Whether two `dist`s name the same bytes (integrity and shasum alike). */
function sameDist(a: VersionManifest['dist'] | undefined, b: VersionManifest['dist']): boolean {
  return !!a && a.integrity === b.integrity && a.shasum === b.shasum;
}

const TOP_LEVEL_DROPPED = ['_id', '_rev', '_attachments', '_revisions', 'origin', 'origin_rev', 'origin_synced', 'origin_advisories', 'origin_validators'];

/**
 * The document mirroring `packument` from `origin`: the upstream's fields as they are (tarball URLs
 * are rewritten when served), the tarballs already stored here kept for the versions still there,
 * and the first `dist` of every version kept (a version republished upstream is not taken).
 * `syncedAt` is when the packument was fetched (shown on the package page). A copy of another origin
 * (the name was routed to another upstream since it was stored) is replaced whole: nothing of it is
 * kept but its revision, so no tarball or `dist` of one upstream is ever served as another's.
 * `validators`: how the upstream named the packument (its ETag, Last-Modified, digest), kept to
 * revalidate the copy.
 */
export function mirroredDoc(name: string, packument: UpstreamPackument, origin: string, stored: PackageDoc | null, syncedAt = new Date().toISOString(), validators?: OriginValidators): PackageDoc {
  const existing = stored && stored.origin === origin ? stored : null;
  const doc: Record<string, unknown> = {};
  for (const key of Object.keys(packument)) if (TOP_LEVEL_DROPPED.indexOf(key) === -1) doc[key] = packument[key];
  const versions = { ...(packument.versions && typeof packument.versions === 'object' ? packument.versions : {}) };
  // A published version never changes here: an upstream that republishes it with other bytes keeps
  // the first `dist` (integrity, shasum, tarball), so the manifest always matches the tarball served.
  const before = (existing && existing.versions) || {};
  for (const version of Object.keys(versions)) {
    const kept = Object.prototype.hasOwnProperty.call(before, version) ? before[version] : undefined;
    if (kept && kept.dist && versions[version] && !sameDist(versions[version].dist, kept.dist)) versions[version] = { ...versions[version], dist: kept.dist };
  }
  const result = {
    ...doc,
    _id: name,
    name,
    versions,
    'dist-tags': packument['dist-tags'] || {},
    time: packument.time || {},
    maintainers: Array.isArray(packument.maintainers) ? packument.maintainers : [],
    origin,
    origin_synced: syncedAt,
    _attachments: keptAttachments(name, Object.keys(versions), existing),
  } as PackageDoc;
  if (typeof packument._rev === 'string') result.origin_rev = packument._rev;
  if (validators) result.origin_validators = validators;
  // What the upstream's advisory endpoint said stays until a check writes anew (replication/advisories.ts); a copy of another origin keeps none of it.
  if (existing && existing.origin_advisories) result.origin_advisories = existing.origin_advisories;
  if (stored && stored._rev) result._rev = stored._rev;
  return result;
}

/** Orders two leaves of a mirrored document: the copy of the later upstream revision first. */
function laterCopy(a: PackageDoc, b: PackageDoc): number {
  if (a.origin === b.origin) {
    const generations = revGeneration(b.origin_rev) - revGeneration(a.origin_rev);
    if (generations) return generations;
  }
  const synced = String(b.origin_synced || '').localeCompare(String(a.origin_synced || ''));
  if (synced) return synced;
  const versions = Object.keys(b.versions || {}).length - Object.keys(a.versions || {}).length;
  return versions || compareRevs(b._rev || '', a._rev || '');
}

/**
 * Merges the leaf revisions of one mirrored document (at least one): a CouchDB cluster keeps two
 * when two gateways store the same package at once, each on a copy of its own. The copy of the later
 * upstream revision (its `origin_rev`, then the later fetch) is kept whole, with every tarball any
 * leaf stored for a version it keeps with the same `dist` (the tarballs are the same bytes; which
 * gateway fetched one does not matter). Nothing is refused: a mirror only copies.
 */
export function mergeMirrored(leaves: PackageDoc[]): MergeResult {
  if (leaves.length === 0) throw new Error('mergeMirrored needs at least one revision');
  const ranked = [...leaves].sort(laterCopy);
  const kept = ranked[0];
  const { _rev, _revisions, _conflicts, _deleted_conflicts, _attachments, ...content } = kept as PackageDoc & Record<string, unknown>;
  void _rev;
  void _revisions;
  void _conflicts;
  void _deleted_conflicts;
  void _attachments;
  const doc = content as PackageDoc;
  const versions = doc.versions || {};
  const versionOfFile = new Map<string, string>();
  for (const version of Object.keys(versions)) for (const file of versionFileNames(doc.name, version)) versionOfFile.set(file, version);
  const attachments: Record<string, AttachmentStub> = {};
  const attachmentSources: Record<string, string> = {};
  for (const leaf of ranked) {
    for (const [file, stub] of Object.entries(leaf._attachments || {})) {
      const version = versionOfFile.get(file);
      if (!version || attachments[file]) continue;
      const dist = (leaf.versions || {})[version]?.dist;
      if (leaf !== kept && !(dist && sameDist(dist, versions[version].dist))) continue;
      attachments[file] = { content_type: stub.content_type, digest: stub.digest, length: stub.length, stub: true };
      attachmentSources[file] = leaf._rev || '';
    }
  }
  return { doc: { ...doc, _attachments: attachments }, refused: [], attachmentSources };
}
