/**
 * validate_doc_update of the registry database. It runs inside CouchDB on every write, whoever makes
 * it (the gateway writing as the user through proxy authentication, Fauxton, a replication), so the
 * rules of the registry hold for all of them. Admins (server or database) may repair anything;
 * replication writes what `_design/mirror` lets it; any other writer must come through the gateway
 * (its role, `registry-gateway`, which only proxy authentication asserts): a user's direct write on
 * the CouchDB port, or a downstream reader's, is refused.
 *
 * Throwing `{forbidden: msg}` answers 403 and `{unauthorized: msg}` 401; the message reaches the npm
 * user, so it says what went wrong and what to do.
 */
import { distTagProblem, isVersion, packageNameProblem, provenanceFileName, tarballFileName } from '../core/names';
import { DIRECT_WRITE_REASON, isGateway, isReplicator, isSite } from '../core/provenance';
import {
  isRegistryUrl, jsonEqual, MAINTAINER_NEEDS_NAME, maintainerNames, onlyOwnStarChanged, publishedVersions, versionReusedMessage,
} from '../core/rules';
import { PackageDoc, SecurityObject, UserCtx, VersionManifest } from '../core/types';

const isScoped = (name: string): boolean => name.charAt(0) === '@' && name.indexOf('/') > 1;

function forbidden(message: string): never {
  throw { forbidden: message };
}

function isAdmin(userCtx: UserCtx, secObj: SecurityObject | undefined): boolean {
  const roles = userCtx.roles || [];
  if (roles.indexOf('_admin') !== -1) return true;
  const admins = (secObj && secObj.admins) || {};
  if (userCtx.name && (admins.names || []).indexOf(userCtx.name) !== -1) return true;
  return (admins.roles || []).some((role) => roles.indexOf(role) !== -1);
}

/** A manifest without the fields a maintainer may change after publishing (`deprecated`). */
function immutablePart(manifest: VersionManifest): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const k of Object.keys(manifest)) if (k !== 'deprecated') copy[k] = manifest[k];
  return copy;
}

export default function validate_doc_update(
  newDoc: PackageDoc,
  oldDoc: PackageDoc | null,
  userCtx: UserCtx,
  secObj?: SecurityObject,
): void {
  if (isAdmin(userCtx, secObj)) return;
  // Replication copies the upstream's documents as they are, and site replication another site's
  // packages (checked there as here); _design/mirror decides which database each may write.
  if (isReplicator(userCtx) || isSite(userCtx)) return;
  const user = userCtx.name;
  if (!user) throw { unauthorized: 'You must be logged in to publish or change packages: run `npm login`.' };
  // Users write through the gateway, which checks tarballs, integrity and provenance first.
  if (!isGateway(userCtx)) forbidden(DIRECT_WRITE_REASON);

  if (newDoc._deleted) {
    forbidden('Packages are never deleted; `npm unpublish` leaves a tombstone. Only an admin may delete a document.');
  }

  if (oldDoc && !oldDoc._deleted) {
    const maintainers = maintainerNames(oldDoc);
    // A scoped package may also be changed through the org of its scope (its owners and admins, a
    // team with read-write): `_design/access`, which holds the orgs, decides that, and refuses others.
    if (maintainers.indexOf(user) === -1 && !isScoped(String(oldDoc.name))) {
      if (onlyOwnStarChanged(newDoc, oldDoc, user)) return;
      forbidden(
        'You are not a maintainer of "' + oldDoc.name + '" (maintainers: ' + maintainers.join(', ') +
          '). Ask one of them to run `npm owner add ' + user + ' ' + oldDoc.name + '`, or publish under another name.',
      );
    }
  }
  const isNew = !oldDoc || !!oldDoc._deleted;

  const nameProblem = packageNameProblem(newDoc.name, isNew);
  if (nameProblem) forbidden('Invalid package name "' + String(newDoc.name) + '": ' + nameProblem + '.');
  if (newDoc._id !== newDoc.name) forbidden('The document _id must equal the package name "' + newDoc.name + '".');
  if (oldDoc) {
    // maintainers may not star or unstar for others either
    const before = oldDoc.users || {};
    const after = newDoc.users || {};
    const keys = Object.keys(before).concat(Object.keys(after));
    for (const k of keys) {
      if (k !== user && !!before[k] !== !!after[k]) forbidden('You can only star or unstar a package for yourself.');
    }
  }

  if (!Array.isArray(newDoc.maintainers) || newDoc.maintainers.length === 0) {
    forbidden('A package needs at least one maintainer in "maintainers".');
  }
  for (const m of newDoc.maintainers) {
    if (!m || typeof m.name !== 'string' || !m.name) forbidden(MAINTAINER_NEEDS_NAME);
  }
  if (isNew && maintainerNames(newDoc).indexOf(user) === -1) {
    forbidden('The first publisher of a new package must be one of its maintainers.');
  }

  if (typeof newDoc.versions !== 'object' || newDoc.versions === null || Array.isArray(newDoc.versions)) {
    forbidden('"versions" must be an object of version manifests.');
  }
  if (typeof newDoc.time !== 'object' || newDoc.time === null) forbidden('"time" must be an object.');
  const tags = newDoc['dist-tags'];
  if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) forbidden('"dist-tags" must be an object.');

  if (newDoc.url !== undefined) {
    if (!isRegistryUrl(newDoc.url)) {
      forbidden('"url" of a foreign package must be the http(s) URL of the registry that hosts it.');
    }
    if (Object.keys(newDoc.versions).length > 0) {
      forbidden('"' + newDoc.name + '" is registered as hosted at ' + newDoc.url + '; it cannot have versions here. Remove the entry first.');
    }
  }

  const oldVersions = (oldDoc && !oldDoc._deleted && oldDoc.versions) || {};
  const everPublished = publishedVersions(oldDoc && !oldDoc._deleted ? oldDoc : null);
  const newAttachments = newDoc._attachments || {};
  const oldAttachments = (oldDoc && oldDoc._attachments) || {};
  const expectedFiles: Record<string, boolean> = {};

  for (const version of Object.keys(newDoc.versions)) {
    const manifest = newDoc.versions[version];
    if (!isVersion(version)) forbidden('"' + version + '" is not a valid semver version.');
    if (!manifest || typeof manifest !== 'object') forbidden('The manifest of ' + version + ' must be an object.');
    if (manifest.name !== newDoc.name || manifest.version !== version) {
      forbidden('The manifest of ' + version + ' must have name "' + newDoc.name + '" and version "' + version + '".');
    }
    const file = tarballFileName(newDoc.name, version);
    expectedFiles[file] = true;
    const old = oldVersions[version];
    if (old) {
      if (!jsonEqual(immutablePart(manifest), immutablePart(old))) {
        forbidden(
          newDoc.name + '@' + version + ' is already published and cannot change (only its deprecation message can). ' +
            'Bump the version and publish again.',
        );
      }
    } else if (everPublished.indexOf(version) !== -1) {
      forbidden(versionReusedMessage(newDoc.name, version));
    }
    const dist = manifest.dist;
    if (!dist || typeof dist !== 'object') forbidden(newDoc.name + '@' + version + ' has no "dist".');
    if (typeof dist.integrity !== 'string' || !/^sha(256|384|512)-[A-Za-z0-9+/]+={0,2}$/.test(dist.integrity)) {
      forbidden(newDoc.name + '@' + version + ' needs a "dist.integrity" (an SRI sha512 digest of its tarball).');
    }
    if (typeof dist.shasum !== 'string' || !/^[0-9a-f]{40}$/.test(dist.shasum)) {
      forbidden(newDoc.name + '@' + version + ' needs a "dist.shasum" (the hex sha1 of its tarball).');
    }
    if (typeof newDoc.time[version] !== 'string') forbidden('"time" must record when ' + version + ' was published.');

    const attachment = newAttachments[file];
    const oldAttachment = oldAttachments[file];
    if (!old && !attachment) {
      forbidden(newDoc.name + '@' + version + ' must be published together with its tarball "' + file + '".');
    }
    if (!old && oldAttachment) {
      forbidden('The tarball "' + file + '" already exists and cannot be reused for a new version.');
    }
    if (old && attachment && oldAttachment) {
      const replaced = attachment.data !== undefined || attachment.follows ||
        (attachment.digest && oldAttachment.digest && attachment.digest !== oldAttachment.digest);
      if (replaced) forbidden('The tarball of ' + newDoc.name + '@' + version + ' is published and cannot change.');
    }

    // The provenance bundle (npm publish --provenance) comes with its version's first publish, never later, and never changes.
    const bundleFile = provenanceFileName(newDoc.name, version);
    expectedFiles[bundleFile] = true;
    const bundle = newAttachments[bundleFile];
    const oldBundle = oldAttachments[bundleFile];
    if (!old && oldBundle) forbidden('The provenance bundle "' + bundleFile + '" already exists and cannot be reused for a new version.');
    if (old && bundle && !oldBundle) {
      forbidden('The provenance of ' + newDoc.name + '@' + version + ' can only be published with the version (npm publish --provenance).');
    }
    if (old && oldBundle && !bundle) {
      forbidden('The provenance bundle of ' + newDoc.name + '@' + version + ' is kept as long as the version; unpublish the version to remove it.');
    }
    if (old && bundle && oldBundle) {
      const replaced = bundle.data !== undefined || bundle.follows || (bundle.digest && oldBundle.digest && bundle.digest !== oldBundle.digest);
      if (replaced) forbidden('The provenance bundle of ' + newDoc.name + '@' + version + ' is published and cannot change.');
    }
    if (!old && dist.attestations !== undefined && !bundle) {
      forbidden(newDoc.name + '@' + version + ' has "dist.attestations" but no provenance bundle "' + bundleFile + '"; publish with `npm publish --provenance`.');
    }
  }

  for (const file of Object.keys(newAttachments)) {
    if (!expectedFiles[file]) {
      forbidden('The attachment "' + file + '" does not belong to any version; attachments are the versions\' tarballs and provenance bundles.');
    }
  }

  for (const version of everPublished) {
    if (typeof newDoc.time[version] !== 'string') {
      forbidden('The publish time of ' + version + ' is kept forever so that the version number is never reused.');
    }
  }

  for (const tag of Object.keys(tags)) {
    const tagProblem = distTagProblem(tag);
    if (tagProblem) forbidden('Invalid dist-tag "' + tag + '": ' + tagProblem + '.');
    if (!newDoc.versions[tags[tag]]) {
      forbidden('The dist-tag "' + tag + '" points at ' + String(tags[tag]) + ', which is not a published version.');
    }
  }
}
