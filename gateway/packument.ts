/**
 * The registry's domain, apart from HTTP and storage: what a publish or an update does to a package
 * document, and the shapes served to clients (full and abbreviated packuments). Pure functions.
 */
import { createHash } from 'crypto';
import semver from 'semver';
import ssri from 'ssri';
import { distTagProblem, isVersion, packageNameProblem, tarballFileName } from '../couchapp/lib/names';
import { AttachmentStub, PackageDoc, Person, TIME_KEYS, UnpublishedInfo, VersionManifest } from '../couchapp/lib/types';
import { badRequest, forbidden, HttpError } from './errors';

export const TARBALL_CONTENT_TYPE = 'application/octet-stream';

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

/** A package hosted by another registry, registered here with that registry's `url`. */
export function isForeign(doc: PackageDoc): boolean {
  return typeof doc.url === 'string' && Object.keys(doc.versions || {}).length === 0 && !isTombstone(doc);
}

/**
 * Registers (or updates) a foreign package: `{name, maintainers, url, description?, keywords?}`.
 * Requests for it are redirected to `url`, the registry that hosts it.
 */
export function applyForeign(existing: PackageDoc | null, name: string, body: Record<string, unknown>, now: string): PackageDoc {
  if (body.name !== name) throw badRequest('The body is for "' + String(body.name) + '" but was sent to "' + name + '".');
  const nameProblem = packageNameProblem(name, !existing);
  if (nameProblem) throw badRequest('Invalid package name "' + name + '": ' + nameProblem + '.');
  if (typeof body.url !== 'string' || !/^https?:\/\/[^\s/]+/.test(body.url)) {
    throw badRequest('"url" must be the http(s) URL of the registry that hosts "' + name + '".');
  }
  if (!Array.isArray(body.maintainers) || body.maintainers.length === 0) {
    throw badRequest('"maintainers" must list at least one user who may change this entry.');
  }
  const maintainers = body.maintainers.map((m) => {
    const person = typeof m === 'string' ? { name: m } : m;
    if (!isObject(person) || typeof person.name !== 'string' || !person.name) throw badRequest('Each maintainer needs a "name".');
    return personOf(person as { name: string; email?: string });
  });
  if (existing && !isTombstone(existing) && Object.keys(existing.versions).length > 0) {
    throw forbidden('"' + name + '" is published in this registry; it cannot become a foreign package.');
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

export function isTombstone(doc: PackageDoc): boolean {
  return !!doc.time && typeof doc.time.unpublished === 'object' && Object.keys(doc.versions || {}).length === 0;
}

function withTarballUrls(doc: PackageDoc, baseUrl: string): Record<string, VersionManifest> {
  const versions: Record<string, VersionManifest> = {};
  for (const v of Object.keys(doc.versions)) {
    const manifest = doc.versions[v];
    versions[v] = { ...manifest, dist: { ...manifest.dist, tarball: tarballUrl(baseUrl, doc.name, v) } };
  }
  return versions;
}

/** The full packument served to clients: the document without its attachments, tarball URLs of this registry. */
export function fullPackument(doc: PackageDoc, baseUrl: string): Record<string, unknown> {
  const { _attachments, _revisions, origin, origin_rev, ...rest } = doc as PackageDoc & { _revisions?: unknown };
  void _attachments;
  void _revisions;
  void origin;
  void origin_rev;
  return { ...rest, versions: withTarballUrls(doc, baseUrl) };
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

export interface PublishInput {
  name: string;
  body: PublishBody;
  user: { name: string; email?: string };
  now: string;
  baseUrl: string;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Checks an npm publish body and returns, per new version, its manifest and decoded tarball, verified
 * against `dist.integrity` and `dist.shasum`. Throws a 400 naming the first problem.
 */
export function parsePublish(input: PublishInput): { version: string; manifest: VersionManifest; tarball: Buffer; file: string }[] {
  const { name, body } = input;
  if (!isObject(body)) throw badRequest('The publish body must be a JSON object.');
  if (body.name !== name || (body._id !== undefined && body._id !== name)) {
    throw badRequest('The body is for "' + String(body.name) + '" but was sent to "' + name + '".');
  }
  if (!isObject(body.versions) || Object.keys(body.versions).length === 0) {
    throw badRequest('The publish body has no "versions": publish with `npm publish`.');
  }
  if (!isObject(body._attachments) || Object.keys(body._attachments).length === 0) {
    throw badRequest('The publish body has no tarball in "_attachments": publish with `npm publish`.');
  }
  if (body['dist-tags'] !== undefined && !isObject(body['dist-tags'])) throw badRequest('"dist-tags" must be an object.');
  const attachments = body._attachments as Record<string, unknown>;
  const versions = body.versions as Record<string, unknown>;
  const result = [];
  const used = new Set<string>();
  for (const version of Object.keys(versions)) {
    const manifest = versions[version];
    if (!isVersion(version)) throw badRequest('"' + version + '" is not a valid semver version.');
    if (!isObject(manifest)) throw badRequest('The manifest of ' + version + ' must be an object.');
    if (manifest.name !== name || manifest.version !== version) {
      throw badRequest('The manifest of ' + version + ' must have name "' + name + '" and version "' + version + '".');
    }
    const dist = manifest.dist;
    if (!isObject(dist) || typeof dist.integrity !== 'string' || typeof dist.shasum !== 'string') {
      throw badRequest(name + '@' + version + ' needs "dist.integrity" and "dist.shasum".');
    }
    const file = tarballFileName(name, version);
    const key = Object.keys(attachments).find((k) => k === file || k === name + '-' + version + '.tgz');
    const attachment = key ? attachments[key] : undefined;
    if (!key || !isObject(attachment) || typeof attachment.data !== 'string') {
      throw badRequest('The tarball of ' + name + '@' + version + ' is missing: "_attachments" needs "' + file + '" with base64 "data".');
    }
    used.add(key);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(attachment.data)) throw badRequest('The tarball data of ' + version + ' is not base64.');
    const tarball = Buffer.from(attachment.data, 'base64');
    if (tarball.length === 0) throw badRequest('The tarball of ' + name + '@' + version + ' is empty.');
    if (typeof attachment.length === 'number' && attachment.length !== tarball.length) {
      throw badRequest('The tarball of ' + version + ' is ' + tarball.length + ' bytes but "length" says ' + attachment.length + '.');
    }
    let integrityOk = false;
    try {
      integrityOk = !!ssri.checkData(tarball, dist.integrity as string);
    } catch {
      integrityOk = false;
    }
    if (!integrityOk) {
      throw badRequest('The tarball of ' + name + '@' + version + ' does not match its "dist.integrity"; pack and publish it again.');
    }
    if (createHash('sha1').update(tarball).digest('hex') !== dist.shasum) {
      throw badRequest('The tarball of ' + name + '@' + version + ' does not match its "dist.shasum"; pack and publish it again.');
    }
    result.push({ version, manifest: manifest as unknown as VersionManifest, tarball, file });
  }
  const stray = Object.keys(attachments).filter((k) => !used.has(k));
  if (stray.length) throw badRequest('"_attachments" holds files of no version in "versions": ' + stray.join(', ') + '.');
  return result;
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
  const { name, body, user, now, baseUrl } = input;
  const nameProblem = packageNameProblem(name, !existing);
  if (nameProblem) throw badRequest('Invalid package name "' + name + '": ' + nameProblem + '.');
  if (existing && isForeign(existing)) {
    throw forbidden('"' + name + '" is registered as hosted at ' + String(existing.url) + '; publish it there, or have a maintainer remove this entry with `npm unpublish ' + name + ' --force`.');
  }
  const parsed = parsePublish(input);
  const doc: PackageDoc = existing
    ? { ...existing, versions: { ...existing.versions }, time: { ...existing.time }, 'dist-tags': { ...existing['dist-tags'] } }
    : { _id: name, name, 'dist-tags': {}, versions: {}, time: { created: now }, maintainers: [personOf(user)] };
  if (existing && isTombstone(existing)) delete doc.time.unpublished;
  const attachments: Record<string, AttachmentStub> = {};
  for (const [file, stub] of Object.entries(existing?._attachments || {})) attachments[file] = { ...stub, stub: true };
  const published = Object.keys(doc.time).filter((k) => TIME_KEYS.indexOf(k) === -1);
  const fresh = parsed.filter(({ version, manifest, file }) => !(existing && isSameRelease(existing, version, manifest, file)));
  // A retry of a publish that was stored but whose answer was lost changes nothing, and succeeds.
  if (fresh.length === 0) return null;
  for (const { version, manifest, tarball, file } of fresh) {
    if (published.indexOf(version) !== -1) {
      throw forbidden(
        'You cannot publish over the previously published version ' + version + ' of ' + name +
          ' (versions are never reused, even after unpublish). Bump the version and publish again.',
      );
    }
    const stored: VersionManifest = {
      ...manifest,
      _id: name + '@' + version,
      maintainers: doc.maintainers.map((m) => ({ ...m })),
      _npmUser: personOf(user),
      dist: { ...manifest.dist, tarball: tarballUrl(baseUrl, name, version) },
    };
    doc.versions[version] = stored;
    doc.time[version] = now;
    attachments[file] = { content_type: TARBALL_CONTENT_TYPE, data: tarball.toString('base64') };
  }
  const tags = (body['dist-tags'] || {}) as Record<string, unknown>;
  const newest = fresh.map((p) => p.version).sort(semver.compare).pop() as string;
  for (const tag of Object.keys(tags)) {
    const problem = distTagProblem(tag);
    if (problem) throw badRequest('Invalid dist-tag "' + tag + '": ' + problem + '.');
    const target = tags[tag];
    if (typeof target !== 'string' || !doc.versions[target]) {
      throw badRequest('The dist-tag "' + tag + '" points at ' + String(target) + ', which is not in this publish.');
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

export function personOf(user: { name: string; email?: string }): Person {
  return user.email ? { name: user.name, email: user.email } : { name: user.name };
}

/** Attachment stubs for every tarball of `doc` whose version is still in `versions`. */
function keptAttachments(doc: PackageDoc): Record<string, AttachmentStub> {
  const kept: Record<string, AttachmentStub> = {};
  for (const v of Object.keys(doc.versions)) {
    const file = tarballFileName(doc.name, v);
    if (doc._attachments && doc._attachments[file]) kept[file] = { ...doc._attachments[file], stub: true };
  }
  return kept;
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
  if (!isObject(body)) throw badRequest('The body must be a JSON object.');
  if (body.name !== undefined && body.name !== existing.name) throw badRequest('The body is for another package.');
  const doc: PackageDoc = { ...existing, versions: { ...existing.versions }, time: { ...existing.time }, 'dist-tags': { ...existing['dist-tags'] } };
  let changed = false;
  if (body.maintainers !== undefined) {
    if (!Array.isArray(body.maintainers) || body.maintainers.length === 0) {
      throw badRequest('"maintainers" must be a non-empty list; a package cannot be left without owners.');
    }
    doc.maintainers = body.maintainers.map((m) => {
      if (!isObject(m) || typeof m.name !== 'string' || !m.name) throw badRequest('Each maintainer needs a "name".');
      return typeof m.email === 'string' && m.email ? { name: m.name, email: m.email } : { name: m.name };
    });
    changed = true;
  }
  if (body.users !== undefined) {
    if (!isObject(body.users)) throw badRequest('"users" must be an object of user names.');
    const users: Record<string, boolean> = {};
    for (const u of Object.keys(body.users)) if (body.users[u] === true) users[u] = true;
    doc.users = users;
    changed = true;
  }
  if (body.versions !== undefined) {
    if (!isObject(body.versions)) throw badRequest('"versions" must be an object.');
    const given = body.versions as Record<string, unknown>;
    for (const v of Object.keys(given)) {
      if (!existing.versions[v]) {
        throw badRequest(existing.name + '@' + v + ' is not published here; publish new versions with `npm publish`.');
      }
      const manifest = given[v];
      if (!isObject(manifest)) throw badRequest('The manifest of ' + v + ' must be an object.');
      const next = { ...existing.versions[v] };
      if (typeof manifest.deprecated === 'string' && manifest.deprecated !== '') next.deprecated = manifest.deprecated;
      else delete next.deprecated;
      doc.versions[v] = next;
    }
    for (const v of Object.keys(existing.versions)) if (!given[v]) delete doc.versions[v];
    changed = true;
  }
  if (body['dist-tags'] !== undefined) {
    if (!isObject(body['dist-tags'])) throw badRequest('"dist-tags" must be an object.');
    const tags: Record<string, string> = {};
    for (const [tag, target] of Object.entries(body['dist-tags'])) {
      if (typeof target === 'string' && doc.versions[target]) tags[tag] = target;
    }
    doc['dist-tags'] = tags;
    changed = true;
  }
  if (!changed) throw badRequest('Nothing to change: the body has none of maintainers, users, versions, dist-tags.');
  const onlyStars = body.users !== undefined && body.maintainers === undefined && body.versions === undefined && body['dist-tags'] === undefined;
  // A star is not a change of the package: it leaves everything else (and `modified`) as it was.
  if (onlyStars) return { ...existing, users: doc.users };
  for (const tag of Object.keys(doc['dist-tags'])) if (!doc.versions[doc['dist-tags'][tag]]) delete doc['dist-tags'][tag];
  const remaining = Object.keys(doc.versions);
  if (remaining.length === 0) return tombstone(existing, user, now);
  if (!doc['dist-tags'].latest) doc['dist-tags'].latest = remaining.sort(semver.compare).pop() as string;
  recomputeSummary(doc);
  doc._attachments = keptAttachments(doc);
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
  const version = Object.keys(existing.versions).find((v) => tarballFileName(existing.name, v) === file);
  if (version) throw forbidden('The tarball ' + file + ' belongs to the published version ' + version + '; unpublish the version instead.');
  return { ...existing, _attachments: keptAttachments(existing) };
}

export function assertValidName(name: string): void {
  const problem = packageNameProblem(name, false);
  if (problem) throw new HttpError(400, 'Invalid package name "' + name + '": ' + problem + '.');
}
