/**
 * Trusted publishing: which CI identities may publish a package, as `npm trust github|gitlab|circleci`
 * configures them, and whether the claims of a verified ID token (an OIDC JWT from the CI) match one.
 * Pure (no Node APIs): the gateway verifies the token's signature, issuer, audience and times first
 * (gateway/oidc.ts), then asks `trustProblem` about the claims.
 *
 * A trust names a provider (`type`), the claims npm sends for it, the permissions npm asks for, and
 * the issuer it was bound to when made (one of the registry's allowed issuers for that provider), so
 * that a project of the same path on another GitLab never matches.
 */
import { isObject } from './types';

export type TrustProvider = 'github' | 'gitlab' | 'circleci';

export const TRUST_PROVIDERS: readonly TrustProvider[] = ['github', 'gitlab', 'circleci'];

/** What a trust lets its CI do: npm's `--allow-publish` and `--allow-stage-publish`. */
export type TrustPermission = 'createPackage' | 'createStagedPackage';
export const TRUST_PERMISSIONS: TrustPermission[] = ['createPackage', 'createStagedPackage'];

/**
 * What a token exchanged under a trust may do: publish (`createPackage`), stage
 * (`createStagedPackage`), or both. A trust kept without permissions publishes, as before they were kept.
 */
export function trustAllows(permissions: readonly string[] | undefined, action: 'publish' | 'stage'): boolean {
  return (permissions && permissions.length ? permissions : ['createPackage']).indexOf(action === 'publish' ? 'createPackage' : 'createStagedPackage') !== -1;
}

/** The claims a trust names, in the shape npm sends and shows them. */
export interface GithubTrustClaims {
  repository: string;
  workflow_ref: { file: string };
  environment?: string;
}

export interface GitlabTrustClaims {
  project_path: string;
  ci_config_ref_uri: { file: string };
  environment?: string;
}

export interface CircleciTrustClaims {
  'oidc.circleci.com/org-id': string;
  'oidc.circleci.com/project-id': string;
  'oidc.circleci.com/pipeline-definition-id': string;
  'oidc.circleci.com/vcs-origin': string;
  'oidc.circleci.com/context-ids'?: string[];
}

export type TrustClaims = GithubTrustClaims | GitlabTrustClaims | CircleciTrustClaims;

/** A trust as the package document keeps it (`registry_trust`, never served in packuments). */
export interface TrustConfig {
  id: string;
  type: TrustProvider;
  claims: TrustClaims;
  permissions: TrustPermission[];
  /** The issuer (`iss`) its ID tokens must come from. */
  issuer: string;
  /** The account that made it: tokens exchanged under it act as that account. */
  createdBy: string;
  created: string;
}

/** A trust as `npm trust list` reads it. */
export function servedTrust(trust: TrustConfig): Record<string, unknown> {
  return { id: trust.id, type: trust.type, claims: trust.claims, permissions: trust.permissions, issuer: trust.issuer, createdBy: trust.createdBy, created: trust.created };
}

/** An issuer the registry accepts ID tokens from, and the provider whose tokens it signs. */
export interface AllowedIssuer {
  provider: TrustProvider;
  issuer: string;
}

/** The most trusts one package keeps. */
export const MAX_TRUSTS = 20;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const WORKFLOW_FILE = /^[^/\\\s]+\.ya?ml$/;
const SHORT = 300;


function fail(message: string): never {
  throw new Error(message);
}

function onlyKeys(value: Record<string, unknown>, allowed: string[], what: string): void {
  for (const key of Object.keys(value)) {
    if (allowed.indexOf(key) === -1) fail(what + ' has "' + key + '", which this registry does not check; it knows ' + allowed.join(', ') + '.');
  }
}

function text(value: unknown, what: string, pattern?: RegExp, hint?: string): string {
  if (typeof value !== 'string' || !value.trim() || value.length > SHORT) fail(what + ' is required (a non-empty text of at most ' + SHORT + ' characters).');
  const trimmed = value.trim();
  if (pattern && !pattern.test(trimmed)) fail(what + ' "' + trimmed + '" is not valid' + (hint ? ': ' + hint : '') + '.');
  return trimmed;
}

function optionalText(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return text(value, what);
}

function fileOf(value: unknown, what: string): { file: string } {
  if (!isObject(value)) fail(what + ' must be {"file": "<name>.yml"}.');
  onlyKeys(value, ['file'], what);
  return { file: text(value.file, what + '.file', WORKFLOW_FILE, 'give the file name only (no folder), ending in .yml or .yaml') };
}

function claimsOf(type: TrustProvider, raw: unknown): TrustClaims {
  if (!isObject(raw)) fail('"claims" must be an object.');
  if (type === 'github') {
    onlyKeys(raw, ['repository', 'workflow_ref', 'environment'], 'A GitHub trust');
    const claims: GithubTrustClaims = {
      repository: text(raw.repository, '--repository', /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, 'give it as owner/repository'),
      workflow_ref: fileOf(raw.workflow_ref, '--file (workflow_ref)'),
    };
    const environment = optionalText(raw.environment, '--environment');
    if (environment) claims.environment = environment;
    return claims;
  }
  if (type === 'gitlab') {
    onlyKeys(raw, ['project_path', 'ci_config_ref_uri', 'environment'], 'A GitLab trust');
    const claims: GitlabTrustClaims = {
      project_path: text(raw.project_path, '--project', /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)+$/, 'give it as group/project or group/subgroup/project'),
      ci_config_ref_uri: fileOf(raw.ci_config_ref_uri, '--file (ci_config_ref_uri)'),
    };
    const environment = optionalText(raw.environment, '--environment');
    if (environment) claims.environment = environment;
    return claims;
  }
  const prefix = 'oidc.circleci.com/';
  onlyKeys(raw, ['org-id', 'project-id', 'pipeline-definition-id', 'vcs-origin', 'context-ids'].map((k) => prefix + k), 'A CircleCI trust');
  const uuid = (key: string) => text(raw[prefix + key], '--' + key, UUID, 'it must be a UUID').toLowerCase();
  const claims: CircleciTrustClaims = {
    'oidc.circleci.com/org-id': uuid('org-id'),
    'oidc.circleci.com/project-id': uuid('project-id'),
    'oidc.circleci.com/pipeline-definition-id': uuid('pipeline-definition-id'),
    'oidc.circleci.com/vcs-origin': text(raw[prefix + 'vcs-origin'], '--vcs-origin', /^[^/\s:]+(\/[^/\s]+){2,}$/, 'give it as provider/owner/repo, without a scheme'),
  };
  const contexts = raw[prefix + 'context-ids'];
  if (contexts !== undefined && contexts !== null) {
    if (!Array.isArray(contexts) || contexts.length > 20) fail('--context-id must be a list of at most 20 UUIDs.');
    const ids = contexts.map((id) => text(id, '--context-id', UUID, 'it must be a UUID').toLowerCase());
    if (ids.length) claims[(prefix + 'context-ids') as 'oidc.circleci.com/context-ids'] = ids;
  }
  return claims;
}

/** The issuer a new trust of `type` is bound to: the one `requested`, else the one of its CircleCI org, else the first listed. */
function issuerFor(type: TrustProvider, claims: TrustClaims, allowed: AllowedIssuer[], requested: unknown): string {
  const candidates = allowed.filter((entry) => entry.provider === type).map((entry) => entry.issuer);
  if (candidates.length === 0) {
    const example = type === 'circleci' ? 'circleci=https://oidc.circleci.com/org/<org-id>' : type === 'github' ? 'github=https://token.actions.githubusercontent.com' : 'gitlab=https://gitlab.example.com';
    fail('This registry accepts no ' + type + ' ID tokens: an admin must list the issuer in OIDC_ISSUERS (such as "' + example + '") first.');
  }
  if (requested !== undefined) {
    if (typeof requested !== 'string' || candidates.indexOf(requested) === -1) fail('"issuer" must be one of this registry\'s ' + type + ' issuers: ' + candidates.join(', ') + '.');
    return requested;
  }
  if (type === 'circleci') {
    const org = (claims as CircleciTrustClaims)['oidc.circleci.com/org-id'];
    const own = candidates.find((issuer) => issuer.toLowerCase().endsWith('/org/' + org));
    if (own) return own;
  }
  return candidates[0];
}

/**
 * Checks what `npm trust <provider>` sent (a list of `{type, claims, permissions}`) and makes the
 * trusts, or throws an Error whose message says what to change. Nothing is accepted and ignored.
 */
export function trustRequest(
  body: unknown,
  allowed: AllowedIssuer[],
  made: { by: string; now: string; newId: () => string },
): TrustConfig[] {
  const list = Array.isArray(body) ? body : isObject(body) ? [body] : fail('Send a list of trust configurations, as `npm trust github|gitlab|circleci` does.');
  if (list.length === 0 || list.length > 5) fail('Send between 1 and 5 trust configurations at once.');
  return list.map((entry): TrustConfig => {
    if (!isObject(entry)) fail('Each trust configuration must be an object {type, claims, permissions}.');
    onlyKeys(entry, ['type', 'claims', 'permissions', 'issuer'], 'A trust configuration');
    const type = entry.type as TrustProvider;
    if (TRUST_PROVIDERS.indexOf(type) === -1) fail('"type" must be one of ' + TRUST_PROVIDERS.join(', ') + ' (npm trust github|gitlab|circleci).');
    const claims = claimsOf(type, entry.claims);
    const permissions = entry.permissions === undefined ? ['createPackage'] : entry.permissions;
    if (!Array.isArray(permissions) || permissions.length === 0) fail('Give at least one permission: --allow-publish.');
    for (const permission of permissions) {
      if (TRUST_PERMISSIONS.indexOf(permission) === -1) {
        fail('Unknown permission "' + String(permission) + '"; this registry knows createPackage (--allow-publish) and createStagedPackage (--allow-stage-publish).');
      }
    }
    return {
      id: made.newId(),
      type,
      claims,
      permissions: TRUST_PERMISSIONS.filter((known) => permissions.indexOf(known) !== -1),
      issuer: issuerFor(type, claims, allowed, entry.issuer),
      createdBy: made.by,
      created: made.now,
    };
  });
}

/** The trusts kept in a package document (anything malformed is left out). */
export function trustsOf(doc: { registry_trust?: unknown } | null | undefined): TrustConfig[] {
  const list = doc && doc.registry_trust;
  if (!Array.isArray(list)) return [];
  return list.filter((t): t is TrustConfig => isObject(t) && typeof t.id === 'string' && TRUST_PROVIDERS.indexOf(t.type as TrustProvider) !== -1 && isObject(t.claims) && typeof t.issuer === 'string' && typeof t.createdBy === 'string');
}

/** The path of the file in a `<where>//<path>@<ref>` (GitLab `ci_config_ref_uri`) or `<owner>/<repo>/<path>@<ref>` (GitHub `workflow_ref`) claim. */
function fileOfRef(value: unknown, separator: 'gitlab' | 'github'): { path: string; head: string } | null {
  if (typeof value !== 'string') return null;
  const at = value.lastIndexOf('@');
  const before = at === -1 ? value : value.slice(0, at);
  if (separator === 'gitlab') {
    const split = before.indexOf('//');
    return split === -1 ? null : { head: before.slice(0, split), path: before.slice(split + 2) };
  }
  const parts = before.split('/');
  return parts.length < 3 ? null : { head: parts.slice(0, 2).join('/'), path: parts.slice(2).join('/') };
}

/**
 * Why the verified `claims` of an ID token do not match `trust`, in words that say which claim differs
 * and what the CI sent; null when they match. What the trust names is not said: the refusal goes to
 * any CI of an allowed issuer, and a package's trusts are its maintainers' to read (`npm trust list`).
 */
export function trustProblem(trust: TrustConfig, claims: Record<string, unknown>): string | null {
  const differs = (what: string, sent: unknown) => 'its ' + what + ' is ' + (typeof sent === 'string' ? '"' + sent + '"' : 'missing') + ', which the trust does not name';
  if (trust.type === 'github') {
    const named = trust.claims as GithubTrustClaims;
    if (claims.repository !== named.repository) return differs('repository', claims.repository);
    const ref = fileOfRef(claims.workflow_ref, 'github');
    const expected = '.github/workflows/' + named.workflow_ref.file;
    if (!ref || ref.head !== named.repository || ref.path !== expected) return differs('workflow (workflow_ref)', claims.workflow_ref);
    if (named.environment && claims.environment !== named.environment) return differs('environment', claims.environment);
    return null;
  }
  if (trust.type === 'gitlab') {
    const named = trust.claims as GitlabTrustClaims;
    if (claims.project_path !== named.project_path) return differs('project (project_path)', claims.project_path);
    const ref = fileOfRef(claims.ci_config_ref_uri, 'gitlab');
    // The pipeline file is the project's own: `<gitlab host>/<project_path>//<file>@<ref>`.
    const headProject = ref ? ref.head.split('/').slice(1).join('/') : '';
    if (!ref || headProject !== named.project_path || ref.path !== named.ci_config_ref_uri.file) {
      return differs('pipeline file (ci_config_ref_uri)', claims.ci_config_ref_uri);
    }
    if (named.environment && claims.environment !== named.environment) return differs('environment', claims.environment);
    return null;
  }
  const named = trust.claims as CircleciTrustClaims;
  for (const key of ['org-id', 'project-id', 'pipeline-definition-id', 'vcs-origin'] as const) {
    const full = ('oidc.circleci.com/' + key) as keyof CircleciTrustClaims;
    const sent = claims[full];
    const expected = named[full] as string;
    if (typeof sent !== 'string' || sent.toLowerCase() !== expected.toLowerCase()) return differs(key, sent);
  }
  const contexts = named['oidc.circleci.com/context-ids'];
  if (contexts && contexts.length) {
    const sent = claims['oidc.circleci.com/context-ids'];
    const have = Array.isArray(sent) ? sent.map((c) => String(c).toLowerCase()) : [];
    const missing = contexts.find((c) => have.indexOf(c) === -1);
    if (missing) return 'its contexts (oidc.circleci.com/context-ids) do not include every context the trust names';
  }
  return null;
}
