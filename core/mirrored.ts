/**
 * Mirrored packages as documents: the upstream's packument stored as it is, with its `origin` (the
 * upstream) and `origin_rev` (the upstream revision it copies). Pure: the replication code fetches,
 * this decides what is written.
 */
import { keptAttachments } from './rules';
import { PackageDoc, VersionManifest } from './types';

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

const TOP_LEVEL_DROPPED = ['_id', '_rev', '_attachments', '_revisions', 'origin', 'origin_rev'];

/**
 * The document mirroring `packument` from `origin`: the upstream's fields as they are (tarball URLs
 * are rewritten when served), the tarballs already stored here kept for the versions still there.
 */
export function mirroredDoc(name: string, packument: UpstreamPackument, origin: string, existing: PackageDoc | null): PackageDoc {
  const doc: Record<string, unknown> = {};
  for (const key of Object.keys(packument)) if (TOP_LEVEL_DROPPED.indexOf(key) === -1) doc[key] = packument[key];
  const versions = packument.versions && typeof packument.versions === 'object' ? packument.versions : {};
  const result = {
    ...doc,
    _id: name,
    name,
    versions,
    'dist-tags': packument['dist-tags'] || {},
    time: packument.time || {},
    maintainers: Array.isArray(packument.maintainers) ? packument.maintainers : [],
    origin,
    _attachments: keptAttachments(name, Object.keys(versions), existing),
  } as PackageDoc;
  if (typeof packument._rev === 'string') result.origin_rev = packument._rev;
  if (existing && existing._rev) result._rev = existing._rev;
  return result;
}
