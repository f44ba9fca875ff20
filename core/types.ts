/** The registry document: one per package, in the shape of the classic npm registry ("packument"). */
import type { TrustConfig } from './trust';

export interface Person {
  name: string;
  email?: string;
  /** In a version's `_npmUser`: published by a CI through trusted publishing (as npm's registry records it). */
  trustedPublisher?: { id: string; oidcConfigId: string };
}

export interface Dist {
  tarball: string;
  shasum: string;
  integrity: string;
  [key: string]: unknown;
}

export interface VersionManifest {
  name: string;
  version: string;
  dist: Dist;
  deprecated?: string;
  _npmUser?: Person;
  maintainers?: Person[];
  [key: string]: unknown;
}

export interface AttachmentStub {
  content_type?: string;
  data?: string;
  digest?: string;
  length?: number;
  revpos?: number;
  stub?: boolean;
  follows?: boolean;
}

export interface UnpublishedInfo {
  time: string;
  name: string;
  versions: string[];
}

export interface PackageDoc {
  _id: string;
  _rev?: string;
  _deleted?: boolean;
  _attachments?: Record<string, AttachmentStub>;
  name: string;
  description?: string;
  'dist-tags': Record<string, string>;
  versions: Record<string, VersionManifest>;
  /** `created`, `modified`, one entry per version ever published, `unpublished` for a tombstone. */
  time: Record<string, string | UnpublishedInfo>;
  maintainers: Person[];
  users?: Record<string, boolean>;
  readme?: string;
  readmeFilename?: string;
  keywords?: string[];
  /** Where the package comes from: this registry's id, or its upstream (see lib/mirror.ts). */
  origin?: string;
  /** For a package mirrored from an npm registry: the upstream revision it was copied from. */
  origin_rev?: string;
  /** For a mirrored package: when this copy of the upstream's packument was fetched (not served). */
  origin_synced?: string;
  /** For a mirrored package: what the upstream's advisory endpoint said of its versions (core/advisories.ts; not served). */
  origin_advisories?: unknown;
  /** For a mirrored package: how the upstream named the packument copied (its validators and a digest; core/mirrored.ts; not served). */
  origin_validators?: OriginValidators;
  /** When each dist-tag, deprecation, the maintainers and each star last changed (for core/merge.ts). */
  changed_at?: ChangeTimes;
  /** Its maintainers' two-factor requirement for writes (`npm access set mfa=publish|automation`; not served). */
  registry_mfa?: 'publish' | 'automation';
  /** The CI identities that may publish it (`npm trust`, core/trust.ts; not served). */
  registry_trust?: TrustConfig[];
  /**
   * `required`: its versions come through staging only (`npm stage publish`, then a maintainer's
   * `npm stage approve`); a direct `npm publish` is refused. Not served.
   */
  registry_staging?: 'required';
  [key: string]: unknown;
}

/**
 * Times of the last change of the fields that conflicting revisions merge field by field (not served to
 * clients): per dist-tag, per version's deprecation, the maintainers, per user's star.
 */
export interface ChangeTimes {
  'dist-tags'?: Record<string, string>;
  deprecated?: Record<string, string>;
  maintainers?: string;
  users?: Record<string, string>;
  /** Per package setting (`PACKAGE_SETTINGS`): when it last changed. */
  settings?: Record<string, string>;
}

/**
 * The package's own settings its maintainers change as a whole (`npm access set mfa`, `npm trust`,
 * the staging requirement):
 * kept in the package document, never served; a merge of conflicting revisions takes each from the
 * revision that changed it last.
 */
export const PACKAGE_SETTINGS = ['registry_mfa', 'registry_trust', 'registry_staging'] as const;

export interface UserCtx {
  name: string | null;
  roles: string[];
  db?: string;
}

export interface SecurityObject {
  admins?: { names?: string[]; roles?: string[] };
  members?: { names?: string[]; roles?: string[] };
}

/** Keys of `time` that are not versions. */
export const TIME_KEYS = ['created', 'modified', 'unpublished'];

/** Whether a parsed JSON value is an object (not null, not an array). */
export const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * What a mirrored copy keeps of the upstream's answer it was made from, to ask the upstream whether the
 * packument changed since (`If-None-Match`, `If-Modified-Since`) and to tell an answer that repeats it.
 */
export interface OriginValidators {
  /** The upstream's `ETag` for the packument, as it sent it. */
  etag?: string;
  /** The upstream's `Last-Modified`, as it sent it. */
  lastModified?: string;
  /** The SHA-1 (hex) of the packument's JSON as the upstream sent it (decoded). */
  digest: string;
}
