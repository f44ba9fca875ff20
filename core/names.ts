/**
 * Package name rules, shared by the gateway and `validate_doc_update`.
 * Follows npm's rules (validate-npm-package-name) without Node APIs, so it can be bundled into
 * the design document and run inside CouchDB's JavaScript engine.
 */

const SCOPED = /^@([^/]+)\/([^/]+)$/;
const BLOCKED = ['node_modules', 'favicon.ico'];
const SPECIAL = /[~'!()*]/;

/** Why `name` is not a valid package name, or null when it is. `isNew` adds the rules for new names. */
export function packageNameProblem(name: unknown, isNew: boolean): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'the package name must be a non-empty string';
  if (name.length > 214) return 'the package name must be at most 214 characters long';
  if (name.trim() !== name) return 'the package name must not start or end with spaces';
  if (name.charAt(0) === '.' || name.charAt(0) === '_') return 'the package name must not start with "." or "_"';
  if (BLOCKED.indexOf(name.toLowerCase()) !== -1) return '"' + name + '" is a blocked package name';
  if (isNew && name.toLowerCase() !== name) return 'new package names must be lower case';
  const scoped = SCOPED.exec(name);
  const parts = scoped ? [scoped[1], scoped[2]] : [name];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    if (part === '.' || part === '..' || part.charAt(0) === '.' || part.charAt(0) === '_') {
      return 'each part of the package name must not start with "." or "_"';
    }
    if (encodeURIComponent(part) !== part) {
      return 'the package name may only contain URL-safe characters (letters, digits, "-", ".", "_"), and "@scope/" for a scope';
    }
    if (isNew && SPECIAL.test(part)) return 'new package names must not contain the characters ~\'!()*';
  }
  return null;
}

/** `@scope/name` → `name`; `name` → `name`. */
export function unscopedName(name: string): string {
  const slash = name.lastIndexOf('/');
  return slash === -1 ? name : name.slice(slash + 1);
}

/** The tarball file (and attachment) name of a version, as npm names it: `name-1.2.3.tgz`. */
export function tarballFileName(name: string, version: string): string {
  return unscopedName(name) + '-' + version + '.tgz';
}

/**
 * The attachment that keeps a version's provenance bundle (a Sigstore bundle, from
 * `npm publish --provenance`): `name-1.2.3.sigstore`, next to its tarball.
 */
export function provenanceFileName(name: string, version: string): string {
  return unscopedName(name) + '-' + version + '.sigstore';
}

/** The attachments a version may have: its tarball and its provenance bundle. */
export function versionFileNames(name: string, version: string): string[] {
  return [tarballFileName(name, version), provenanceFileName(name, version)];
}

/** The version of a package document whose tarball is `file`, if one is. */
export function versionOfTarball(doc: { name: string; versions: Record<string, unknown> }, file: string): string | undefined {
  return Object.keys(doc.versions).find((v) => tarballFileName(doc.name, v) === file);
}

const SEMVER = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/** A strict semver version string as npm publishes it (no leading "v", no spaces). */
export function isVersion(version: unknown): version is string {
  return typeof version === 'string' && version.length <= 256 && version.charAt(0) !== 'v' && SEMVER.test(version);
}

/** A dist-tag name: not empty, not a version or range, URL-safe. */
export function distTagProblem(tag: unknown): string | null {
  if (typeof tag !== 'string' || tag.length === 0) return 'a dist-tag must be a non-empty string';
  if (tag.length > 128) return 'a dist-tag must be at most 128 characters long';
  if (encodeURIComponent(tag) !== tag) return 'a dist-tag may only contain URL-safe characters';
  if (/^v?\d/.test(tag)) return 'a dist-tag must not look like a version or range (it starts with a digit)';
  return null;
}
