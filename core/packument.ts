/**
 * The registry's domain, apart from HTTP and storage: what a publish or an update does to a package
 * document, and the shapes served to clients (full and abbreviated packuments). Pure functions
 * without Node APIs; what goes wrong is a domain error (`errors.ts`).
 */
import semver from 'semver';
import { invalid, refused } from './errors';
import { distTagProblem, isVersion, packageNameProblem, provenanceFileName, tarballFileName, versionOfTarball } from './names';
import {
  hostedElsewhereMessage, isForeign, isRegistryUrl, isTombstone, keptAttachments, MAINTAINER_NEEDS_NAME, maintainerOf,
  publishedVersions, TARBALL_CONTENT_TYPE, versionReusedMessage,
} from './rules';
import { AttachmentStub, ChangeTimes, isObject, PACKAGE_SETTINGS, PackageDoc, Person, UnpublishedInfo, VersionManifest } from './types';

export { isForeign, isTombstone, TARBALL_CONTENT_TYPE };

/** Fields of a version kept in the abbreviated ("corgi") packument, as the public registry keeps them. */
const ABBREVIATED_FIELDS = [
  'name', 'version', 'deprecated', 'dependencies', 'optionalDependencies', 'devDependencies', 'bundleDependencies',
  'bundledDependencies', 'peerDependencies', 'peerDependenciesMeta', 'acceptDependencies', 'bin', 'directories',
  'dist', 'engines', 'cpu', 'os', 'libc', 'funding', 'license', '_hasShrinkwrap', 'hasInstallScript',
];

/** Top-level fields copied from the `latest` manifest onto the document. */
const SUMMARY_FIELDS = ['description', 'keywords', 'homepage', 'repository', 'bugs', 'license', 'author', 'readme', 'readmeFilename'];

export function tarballUrl(baseUrl: string, name: string, version: string): string {
  return baseUrl + '/' + name + '/-/' + tarballFileName(name, version);
}

/** Where this registry serves the provenance of a version published here (npm's attestations endpoint). */
export function attestationsUrl(baseUrl: string, name: string, version: string): string {
  return baseUrl + '/-/npm/v1/attestations/' + name + '@' + version;
}

/**
 * The largest provenance bundle accepted, in characters of its JSON. A bundle npm makes in CI (a
 * certificate, a signed statement, a transparency-log entry) is 5 to 20 KB.
 */
export const PROVENANCE_BUNDLE_MAX_CHARS = 256 * 1024;

/**
 * Registers (or updates) a foreign package: `{name, maintainers, url, description?, keywords?}`.
 * Requests for it are redirected to `url`, the registry that hosts it.
 */
export function applyForeign(existing: PackageDoc | null, name: string, body: Record<string, unknown>, now: string): PackageDoc {
  if (body.name !== name) throw invalid('The body is for "' + String(body.name) + '" but was sent to "' + name + '".');
  const nameProblem = packageNameProblem(name, !existing);
  if (nameProblem) throw invalid('Invalid package name "' + name + '": ' + nameProblem + '.');
  if (!isRegistryUrl(body.url)) {
    throw invalid('"url" must be the http(s) URL of the registry that hosts "' + name + '".');
  }
  if (!Array.isArray(body.maintainers) || body.maintainers.length === 0) {
    throw invalid('"maintainers" must list at least one user who may change this entry.');
  }
  const maintainers = body.maintainers.map((m) => {
    const person = maintainerOf(m);
    if (!person) throw invalid(MAINTAINER_NEEDS_NAME);
    return person;
  });
  if (existing && !isTombstone(existing) && Object.keys(existing.versions).length > 0) {
    throw refused('"' + name + '" is published in this registry; it cannot become a foreign package.');
  }
  const doc: PackageDoc = {
    ...(existing || {}),
    _id: name,
    name,
    url: body.url.replace(/\/+$/, ''),
    maintainers,
    'dist-tags': {},
    versions: {},
    time: { ...(existing ? existing.time : { created: now }), modified: now },
    _attachments: {},
  };
  delete doc.time.unpublished;
  if (typeof body.description === 'string') doc.description = body.description;
  if (Array.isArray(body.keywords)) doc.keywords = body.keywords.filter((k): k is string => typeof k === 'string');
  return doc;
}

/**
 * The versions with this registry's URLs: of each tarball, and of each provenance bundle kept here
 * (a version published here, or replicated with its bundle from another site or a CouchDB upstream).
 * A mirrored version whose bundle is not kept keeps its upstream's attestations URL: npm asks the
 * registry it installs from at that URL's path, and this registry fetches the bundle from the upstream.
 */
function withTarballUrls(doc: PackageDoc, baseUrl: string): Record<string, VersionManifest> {
  const versions: Record<string, VersionManifest> = {};
  const attachments = doc._attachments || {};
  for (const v of Object.keys(doc.versions)) {
    const manifest = doc.versions[v];
    const dist: VersionManifest['dist'] = { ...manifest.dist, tarball: tarballUrl(baseUrl, doc.name, v) };
    const attestations = dist.attestations;
    if (attachments[provenanceFileName(doc.name, v)] && isObject(attestations)) {
      dist.attestations = { ...attestations, url: attestationsUrl(baseUrl, doc.name, v) };
    }
    versions[v] = { ...manifest, dist };
  }
  return versions;
}

/**
 * The full packument served to clients: the document without its attachments, tarball URLs of this
 * registry, and, as npm's registry serves it, the readme once at the top (the latest version's) rather
 * than a copy in every version: a package of many versions with a long readme would otherwise be sent
 * that readme as many times to every install. A version's own readme stays in its manifest
 * (`GET /<name>/<version>`) and on its page.
 */
export function fullPackument(doc: PackageDoc, baseUrl: string): Record<string, unknown> {
  const { _attachments, _revisions, origin, origin_rev, origin_synced, origin_advisories, origin_validators, changed_at, registry_mfa, registry_trust, registry_staging, ...rest } = doc as PackageDoc & { _revisions?: unknown };
  void changed_at;
  void registry_mfa;
  void registry_trust;
  void registry_staging;
  void _attachments;
  void _revisions;
  void origin;
  void origin_rev;
  void origin_synced;
  void origin_advisories;
  void origin_validators;
  const versions = withTarballUrls(doc, baseUrl);
  for (const v of Object.keys(versions)) {
    if (versions[v].readme === undefined) continue;
    const { readme, ...manifest } = versions[v];
    void readme;
    versions[v] = manifest as VersionManifest;
  }
  const latest = doc.versions[doc['dist-tags'].latest];
  const readme = typeof doc.readme === 'string' ? doc.readme : latest && typeof latest.readme === 'string' ? latest.readme : undefined;
  // `_id` and `_rev` first, where a read from CouchDB has them: the bytes of one revision are the same
  // whether made from the document a gateway wrote or from the one it read (one ETag, one body).
  const { _id, _rev, ...body } = rest;
  return { _id, _rev, ...body, ...(readme !== undefined ? { readme } : {}), maintainers: servedPeople(doc.maintainers), versions };
}

/**
 * People as clients print them: npm shows `name <email>` (`npm owner ls`), so an account without an
 * email gets an empty one rather than "undefined".
 */
function servedPeople(people: Person[] | undefined): Person[] | undefined {
  if (!Array.isArray(people)) return people;
  return people.map((p) => (p && typeof p === 'object' && typeof p.email !== 'string' ? { ...p, email: '' } : p));
}

/** The abbreviated packument (`application/vnd.npm.install-v1+json`); keeps `time` for clients' age gates. */
export function abbreviatedPackument(doc: PackageDoc, baseUrl: string): Record<string, unknown> {
  const versions: Record<string, Record<string, unknown>> = {};
  const full = withTarballUrls(doc, baseUrl);
  for (const v of Object.keys(full)) {
    const picked: Record<string, unknown> = {};
    for (const field of ABBREVIATED_FIELDS) if (full[v][field] !== undefined) picked[field] = full[v][field];
    versions[v] = picked;
  }
  return { name: doc.name, modified: doc.time.modified, 'dist-tags': doc['dist-tags'], versions, time: doc.time };
}

/** A version number or dist-tag of the document → its manifest, or undefined. */
export function resolveVersion(doc: PackageDoc, versionOrTag: string): VersionManifest | undefined {
  const version = doc['dist-tags'][versionOrTag] || versionOrTag;
  if (doc.versions[version]) return doc.versions[version];
  const clean = semver.valid(versionOrTag, { loose: true });
  return clean ? doc.versions[clean] : undefined;
}

function recomputeSummary(doc: PackageDoc): void {
  const latest = doc.versions[doc['dist-tags'].latest];
  if (!latest) return;
  for (const field of SUMMARY_FIELDS) {
    if (latest[field] !== undefined) doc[field] = latest[field];
  }
}

export interface PublishBody {
  _id?: unknown;
  name?: unknown;
  versions?: unknown;
  'dist-tags'?: unknown;
  _attachments?: unknown;
  readme?: unknown;
  [key: string]: unknown;
}

/**
 * Checks a tarball (base64) against the digests of its manifest and says which one it fails, or null.
 * Hashing needs the platform's crypto, so the caller supplies it (the gateway: `gateway/digests.ts`).
 */
export type DigestCheck = (data: string, dist: { integrity: string; shasum: string }) => 'integrity' | 'shasum' | null;

export interface PublishInput {
  name: string;
  body: PublishBody;
  user: { name: string; email?: string };
  now: string;
  baseUrl: string;
  checkDigests: DigestCheck;
  /**
   * The registry's signatures of a version (`dist.signatures`, over `<name>@<version>:<integrity>`);
   * signing needs the platform's crypto and the key, so the caller supplies it. Without it, versions
   * carry no signatures.
   */
  sign?: (name: string, version: string, integrity: string) => { keyid: string; sig: string }[];
  /** Published by a CI through trusted publishing: recorded in each version's `_npmUser`, as npm's registry does. */
  trustedPublisher?: { provider: string; trustId: string };
  /**
   * Checks the provenance bundle npm sent with a version (`npm publish --provenance`: the attachment
   * `<name>-<version>.sigstore`, a Sigstore bundle as JSON text) against that version, and answers
   * what to keep: its predicate type, its media type and its bytes (base64). Throws a domain error
   * saying what is wrong. Verifying signatures needs the platform's crypto, so the caller supplies it
   * (the gateway: `gateway/provenance.ts`); without it, a bundle is refused.
   */
  checkProvenance?: (bundle: string, version: { name: string; version: string; integrity: string }) => KeptProvenance;
}

/** A verified provenance bundle, as it is kept with its version. */
export interface KeptProvenance {
  predicateType: string;
  mediaType: string;
  /** The bundle's JSON, base64 (a CouchDB attachment's inline data). */
  data: string;
}

/** The number of bytes that base64 `data` decodes to. */
function decodedLength(data: string): number {
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  return Math.floor((data.length * 3) / 4) - padding;
}

/**
 * Checks an npm publish body and returns, per new version, its manifest and decoded tarball, verified
 * against `dist.integrity` and `dist.shasum`. Throws a 400 naming the first problem.
 */
export function parsePublish(
  input: PublishInput,
): { version: string; manifest: VersionManifest; data: string; file: string; provenance?: KeptProvenance }[] {
  const { name, body } = input;
  if (!isObject(body)) throw invalid('The publish body must be a JSON object.');
  if (body.name !== name || (body._id !== undefined && body._id !== name)) {
    throw invalid('The body is for "' + String(body.name) + '" but was sent to "' + name + '".');
  }
  if (!isObject(body.versions) || Object.keys(body.versions).length === 0) {
    throw invalid('The publish body has no "versions": publish with `npm publish`.');
  }
  if (!isObject(body._attachments) || Object.keys(body._attachments).length === 0) {
    throw invalid('The publish body has no tarball in "_attachments": publish with `npm publish`.');
  }
  if (body['dist-tags'] !== undefined && !isObject(body['dist-tags'])) throw invalid('"dist-tags" must be an object.');
  const attachments = body._attachments as Record<string, unknown>;
  const versions = body.versions as Record<string, unknown>;
  const result = [];
  const used = new Set<string>();
  for (const version of Object.keys(versions)) {
    const manifest = versions[version];
    if (!isVersion(version)) throw invalid('"' + version + '" is not a valid semver version.');
    if (!isObject(manifest)) throw invalid('The manifest of ' + version + ' must be an object.');
    if (manifest.name !== name || manifest.version !== version) {
      throw invalid('The manifest of ' + version + ' must have name "' + name + '" and version "' + version + '".');
    }
    const dist = manifest.dist;
    if (!isObject(dist) || typeof dist.integrity !== 'string' || typeof dist.shasum !== 'string') {
      throw invalid(name + '@' + version + ' needs "dist.integrity" and "dist.shasum".');
    }
    const file = tarballFileName(name, version);
    const key = Object.keys(attachments).find((k) => k === file || k === name + '-' + version + '.tgz');
    const attachment = key ? attachments[key] : undefined;
    if (!key || !isObject(attachment) || typeof attachment.data !== 'string') {
      throw invalid('The tarball of ' + name + '@' + version + ' is missing: "_attachments" needs "' + file + '" with base64 "data".');
    }
    used.add(key);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(attachment.data)) throw invalid('The tarball data of ' + version + ' is not base64.');
    const length = decodedLength(attachment.data);
    if (length === 0) throw invalid('The tarball of ' + name + '@' + version + ' is empty.');
    if (typeof attachment.length === 'number' && attachment.length !== length) {
      throw invalid('The tarball of ' + version + ' is ' + length + ' bytes but "length" says ' + attachment.length + '.');
    }
    const mismatch = input.checkDigests(attachment.data, { integrity: dist.integrity, shasum: dist.shasum });
    if (mismatch) {
      throw invalid('The tarball of ' + name + '@' + version + ' does not match its "dist.' + mismatch + '"; pack and publish it again.');
    }
    const provenance = provenanceOf(input, version, dist.integrity, attachments, used);
    result.push({ version, manifest: manifest as unknown as VersionManifest, data: attachment.data, file, provenance });
  }
  const stray = Object.keys(attachments).filter((k) => !used.has(k));
  if (stray.length) throw invalid('"_attachments" holds files of no version in "versions": ' + stray.join(', ') + '.');
  return result;
}

/**
 * The provenance bundle published with `version`, checked, or undefined when there is none. npm names
 * the attachment after the full package name (`@scope/name-1.0.0.sigstore`) and sends the bundle as
 * JSON text, not base64. The attachment's key is marked as used.
 */
function provenanceOf(
  input: PublishInput, version: string, integrity: string, attachments: Record<string, unknown>, used: Set<string>,
): KeptProvenance | undefined {
  const { name } = input;
  const key = Object.keys(attachments).find((k) => k === name + '-' + version + '.sigstore' || k === provenanceFileName(name, version));
  if (!key) return undefined;
  used.add(key);
  const spec = name + '@' + version;
  const attachment = attachments[key];
  if (!isObject(attachment) || typeof attachment.data !== 'string' || attachment.data === '') {
    throw invalid('The provenance bundle of ' + spec + ' ("' + key + '") needs its Sigstore bundle as JSON text in "data".');
  }
  if (attachment.data.length > PROVENANCE_BUNDLE_MAX_CHARS) {
    throw invalid('The provenance bundle of ' + spec + ' is ' + attachment.data.length + ' characters; this registry takes bundles of up to ' +
      PROVENANCE_BUNDLE_MAX_CHARS + ' (one npm makes in CI is 5 to 20 KB).');
  }
  if (!input.checkProvenance) throw invalid('This registry does not take provenance bundles; publish without --provenance.');
  return input.checkProvenance(attachment.data, { name, version, integrity });
}

/** Whether `version` is published in `doc` with this very tarball (same integrity, tarball stored). */
function isSameRelease(doc: PackageDoc, version: string, manifest: VersionManifest, file: string): boolean {
  const stored = doc.versions[version];
  return !!stored && !!doc._attachments && !!doc._attachments[file] && !!stored.dist && stored.dist.integrity === manifest.dist.integrity;
}

/**
 * Applies a verified publish to the existing document (or none) and returns the document to write,
 * or null when every version in it is already published with the same tarball (an identical retry).
 */
export function applyPublish(existing: PackageDoc | null, input: PublishInput): PackageDoc | null {
  const { name, body, user, now, baseUrl, sign } = input;
  const nameProblem = packageNameProblem(name, !existing);
  if (nameProblem) throw invalid('Invalid package name "' + name + '": ' + nameProblem + '.');
  if (existing && isForeign(existing)) {
    throw refused(hostedElsewhereMessage(name, existing.url));
  }
  const parsed = parsePublish(input);
  const doc: PackageDoc = existing
    ? { ...existing, versions: { ...existing.versions }, time: { ...existing.time }, 'dist-tags': { ...existing['dist-tags'] } }
    : { _id: name, name, 'dist-tags': {}, versions: {}, time: { created: now }, maintainers: [personOf(user)] };
  if (existing && isTombstone(existing)) delete doc.time.unpublished;
  const attachments: Record<string, AttachmentStub> = keptAttachments(name, Object.keys(doc.versions), existing);
  const published = publishedVersions(doc);
  const fresh = parsed.filter(({ version, manifest, file }) => !(existing && isSameRelease(existing, version, manifest, file)));
  // A retry of a publish that was stored but whose answer was lost changes nothing, and succeeds.
  if (fresh.length === 0) return null;
  for (const { version, manifest, data, file, provenance } of fresh) {
    if (published.indexOf(version) !== -1) {
      throw refused(versionReusedMessage(name, version));
    }
    const stored: VersionManifest = {
      ...manifest,
      _id: name + '@' + version,
      maintainers: doc.maintainers.map((m) => ({ ...m })),
      _npmUser: input.trustedPublisher
        ? { ...personOf(user), trustedPublisher: { id: input.trustedPublisher.provider, oidcConfigId: input.trustedPublisher.trustId } }
        : personOf(user),
      dist: distOfPublish(manifest, tarballUrl(baseUrl, name, version), sign),
    };
    if (provenance) {
      stored.dist.attestations = { url: attestationsUrl(baseUrl, name, version), provenance: { predicateType: provenance.predicateType } };
      attachments[provenanceFileName(name, version)] = { content_type: provenance.mediaType, data: provenance.data };
    }
    doc.versions[version] = stored;
    doc.time[version] = now;
    attachments[file] = { content_type: TARBALL_CONTENT_TYPE, data };
  }
  const tags = (body['dist-tags'] || {}) as Record<string, unknown>;
  const newest = fresh.map((p) => p.version).sort(semver.compare).pop() as string;
  for (const tag of Object.keys(tags)) {
    const problem = distTagProblem(tag);
    if (problem) throw invalid('Invalid dist-tag "' + tag + '": ' + problem + '.');
    const target = tags[tag];
    if (typeof target !== 'string' || !doc.versions[target]) {
      throw invalid('The dist-tag "' + tag + '" points at ' + String(target) + ', which is not in this publish.');
    }
    doc['dist-tags'][tag] = target;
  }
  if (!doc['dist-tags'].latest) doc['dist-tags'].latest = newest;
  if (typeof body.readme === 'string' && doc['dist-tags'].latest === newest) doc.readme = body.readme;
  recomputeSummary(doc);
  doc.time.modified = now;
  doc._attachments = attachments;
  return doc;
}

/**
 * The `dist` stored for a version published here: the client's, with this registry's tarball URL and
 * signatures. Signatures or attestations a client sent in `dist` are dropped: only this registry signs
 * what it stores, and `dist.attestations` is set only for a provenance bundle it checked and keeps.
 */
function distOfPublish(manifest: VersionManifest, tarball: string, sign: PublishInput['sign']): VersionManifest['dist'] {
  const { signatures, attestations, ...dist } = manifest.dist;
  void signatures;
  void attestations;
  const stored: VersionManifest['dist'] = { ...dist, tarball };
  if (sign) stored.signatures = sign(manifest.name, manifest.version, dist.integrity);
  return stored;
}

export function personOf(user: { name: string; email?: string }): Person {
  return user.email ? { name: user.name, email: user.email } : { name: user.name };
}

/**
 * A metadata update from a client that read `?write=true` and sends back (part of) the document:
 * `maintainers` (npm owner), `users` (npm star), `versions` (npm deprecate, or a version removed by
 * npm unpublish) and `dist-tags`. Anything else in the body is ignored; new versions are refused.
 */
export function applyUpdate(
  existing: PackageDoc,
  body: Record<string, unknown>,
  user: { name: string },
  now: string,
): PackageDoc {
  if (!isObject(body)) throw invalid('The body must be a JSON object.');
  if (body.name !== undefined && body.name !== existing.name) throw invalid('The body is for another package.');
  const doc: PackageDoc = { ...existing, versions: { ...existing.versions }, time: { ...existing.time }, 'dist-tags': { ...existing['dist-tags'] } };
  let changed = false;
  if (body.maintainers !== undefined) {
    if (!Array.isArray(body.maintainers) || body.maintainers.length === 0) {
      throw invalid('"maintainers" must be a non-empty list; a package cannot be left without owners.');
    }
    doc.maintainers = body.maintainers.map((m) => {
      const person = isObject(m) ? maintainerOf(m) : null;
      if (!person) throw invalid(MAINTAINER_NEEDS_NAME);
      return person;
    });
    changed = true;
  }
  if (body.users !== undefined) {
    if (!isObject(body.users)) throw invalid('"users" must be an object of user names.');
    const users: Record<string, boolean> = {};
    for (const u of Object.keys(body.users)) if (body.users[u] === true) users[u] = true;
    doc.users = users;
    changed = true;
  }
  if (body.versions !== undefined) {
    if (!isObject(body.versions)) throw invalid('"versions" must be an object.');
    const given = body.versions as Record<string, unknown>;
    for (const v of Object.keys(given)) {
      if (!existing.versions[v]) {
        throw invalid(existing.name + '@' + v + ' is not published here; publish new versions with `npm publish`.');
      }
      const manifest = given[v];
      if (!isObject(manifest)) throw invalid('The manifest of ' + v + ' must be an object.');
      const next = { ...existing.versions[v] };
      if (typeof manifest.deprecated === 'string' && manifest.deprecated !== '') next.deprecated = manifest.deprecated;
      else delete next.deprecated;
      doc.versions[v] = next;
    }
    for (const v of Object.keys(existing.versions)) if (!given[v]) delete doc.versions[v];
    changed = true;
  }
  if (body['dist-tags'] !== undefined) {
    if (!isObject(body['dist-tags'])) throw invalid('"dist-tags" must be an object.');
    const tags: Record<string, string> = {};
    for (const [tag, target] of Object.entries(body['dist-tags'])) {
      if (typeof target === 'string' && doc.versions[target]) tags[tag] = target;
    }
    doc['dist-tags'] = tags;
    changed = true;
  }
  if (!changed) throw invalid('Nothing to change: the body has none of maintainers, users, versions, dist-tags.');
  const onlyStars = body.users !== undefined && body.maintainers === undefined && body.versions === undefined && body['dist-tags'] === undefined;
  // A star is not a change of the package: it leaves everything else (and `modified`) as it was.
  if (onlyStars) return { ...existing, users: doc.users };
  for (const tag of Object.keys(doc['dist-tags'])) if (!doc.versions[doc['dist-tags'][tag]]) delete doc['dist-tags'][tag];
  const remaining = Object.keys(doc.versions);
  if (remaining.length === 0) return tombstone(existing, user, now);
  if (!doc['dist-tags'].latest) doc['dist-tags'].latest = remaining.sort(semver.compare).pop() as string;
  recomputeSummary(doc);
  doc._attachments = keptAttachments(doc.name, Object.keys(doc.versions), existing);
  doc.time.modified = now;
  return doc;
}

/** Whole-package unpublish: no versions, no tarballs; the times stay so that no version number is reused. */
export function tombstone(existing: PackageDoc, user: { name: string }, now: string): PackageDoc {
  const unpublished: UnpublishedInfo = { time: now, name: user.name, versions: Object.keys(existing.versions) };
  const { url, ...rest } = existing;
  void url;
  return {
    ...rest,
    versions: {},
    'dist-tags': {},
    _attachments: {},
    time: { ...existing.time, modified: now, unpublished },
  };
}

/** The document after removing one tarball (after `npm unpublish name@version` removed its version). */
export function withoutTarball(existing: PackageDoc, file: string): PackageDoc | null {
  if (!existing._attachments || !existing._attachments[file]) return null;
  const version = versionOfTarball(existing, file);
  if (version) throw refused('The tarball ' + file + ' belongs to the published version ' + version + '; unpublish the version instead.');
  return { ...existing, _attachments: keptAttachments(existing.name, Object.keys(existing.versions), existing) };
}

/**
 * `next` with the times of what changed since `existing` in `changed_at`: each dist-tag set, moved or
 * removed, each version's deprecation, the maintainers, each user's star. The merge of conflicting
 * revisions (core/merge.ts) takes the latest change of each; clients never see these times.
 */
export function stampChanges(existing: PackageDoc | null, next: PackageDoc, now: string): PackageDoc {
  const before = existing && !existing._deleted ? existing : null;
  const old: ChangeTimes = (before && before.changed_at) || {};
  const changed: ChangeTimes = {
    ...old,
    'dist-tags': { ...(old['dist-tags'] || {}) },
    deprecated: { ...(old.deprecated || {}) },
    users: { ...(old.users || {}) },
  };
  const tagsBefore = (before && before['dist-tags']) || {};
  const tagsAfter = next['dist-tags'] || {};
  for (const tag of new Set([...Object.keys(tagsBefore), ...Object.keys(tagsAfter)])) {
    if (tagsBefore[tag] !== tagsAfter[tag]) (changed['dist-tags'] as Record<string, string>)[tag] = now;
  }
  const versionsBefore = (before && before.versions) || {};
  for (const version of Object.keys(next.versions || {})) {
    const was = versionsBefore[version] ? versionsBefore[version].deprecated || '' : '';
    if (was !== (next.versions[version].deprecated || '')) (changed.deprecated as Record<string, string>)[version] = now;
  }
  if (before && JSON.stringify(before.maintainers) !== JSON.stringify(next.maintainers)) changed.maintainers = now;
  changed.settings = { ...(old.settings || {}) };
  for (const field of PACKAGE_SETTINGS) {
    if (JSON.stringify(before ? before[field] : undefined) !== JSON.stringify(next[field])) changed.settings[field] = now;
  }
  const starsBefore = (before && before.users) || {};
  const starsAfter = next.users || {};
  for (const user of new Set([...Object.keys(starsBefore), ...Object.keys(starsAfter)])) {
    if (!!starsBefore[user] !== !!starsAfter[user]) (changed.users as Record<string, string>)[user] = now;
  }
  for (const key of ['dist-tags', 'deprecated', 'users', 'settings'] as const) if (Object.keys(changed[key] as object).length === 0) delete changed[key];
  if (Object.keys(changed).length === 0) return next;
  if (JSON.stringify(changed) === JSON.stringify(old)) return next.changed_at === old ? next : { ...next, changed_at: old };
  return { ...next, changed_at: changed };
}

export function assertValidName(name: string): void {
  const problem = packageNameProblem(name, false);
  if (problem) throw invalid('Invalid package name "' + name + '": ' + problem + '.');
}
