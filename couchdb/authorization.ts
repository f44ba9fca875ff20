/**
 * Who may do what on the embedded server: the promises of CouchDB 3.4, decided before a request
 * reaches express-pouchdb (which leaves `_replicate`, `_replicator`, `_users` and `_security` open in
 * ways CouchDB does not). Anything not named here is for server admins only.
 *
 * - Server admins may do everything.
 * - `/`, `/_up`, `/_uuids`, `/_session` and Fauxton's static files are for everyone.
 * - `/_replicate`, `/_replicator`, `/_config`, `/_node`, `/_all_dbs` and every other `/_…` endpoint:
 *   admins only.
 * - `_users`: a user reads their own document and nothing else; every write goes through the registry
 *   (`npm adduser`) or an admin. Roles in `_users` documents never make a server admin (see
 *   `authentication.ts`).
 * - Other databases: creating, deleting, `_security` (and `_local/_security`, where the embedded
 *   server keeps it), design-document writes, `COPY`, compaction, purge and index management are for
 *   admins. Everything else is for the database's members (its `_security`, read by the caller and
 *   handed in: a database without members is open to all, as on CouchDB), through the endpoints named
 *   here only, POST endpoints included: express-pouchdb calls PouchDB without the caller's identity
 *   for `_find`, `_bulk_get`, `_explain` and `_index`, and pouchdb-security takes that call for an
 *   admin's, so membership is decided here, before it. Writes are then left to `validate_doc_update`.
 */
import { SecurityObject } from '../core/types';
import { SITE_ROLE } from '../core/provenance';

export interface Caller {
  name: string | null;
  roles: string[];
}

export interface Refusal {
  status: number;
  error: string;
  reason: string;
}

/** Where the embedded server (pouchdb-security) keeps each database's `_security`. */
export const SECURITY_DOCUMENT = '_local/_security';

/** Databases that exist on every CouchDB; every other name follows CouchDB's rule, without `/`. */
const SYSTEM_DATABASES = ['_users', '_replicator', '_global_changes'];
/** A database name as CouchDB allows it (without `/`). */
export const DATABASE_NAME = /^[a-z][a-z0-9_$()+-]*$/;
/** Top-level endpoints open to everyone, with their methods. */
const PUBLIC_TOP_LEVEL = new Map<string, string[]>([
  ['', ['GET', 'HEAD']],
  ['_up', ['GET', 'HEAD']],
  ['_uuids', ['GET', 'HEAD']],
  ['_session', ['GET', 'HEAD', 'POST', 'DELETE']],
  ['_utils', ['GET', 'HEAD']],
  ['favicon.ico', ['GET', 'HEAD']],
]);
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'COPY', 'OPTIONS'];

/**
 * Database endpoints open to the database's members (reads and replication), with their methods;
 * every other `/{db}/_…` endpoint is admin-only.
 */
const MEMBER_ENDPOINTS = new Map<string, string[]>([
  ['_all_docs', ['GET', 'HEAD', 'POST']],
  ['_changes', ['GET', 'HEAD', 'POST']],
  ['_bulk_docs', ['POST']],
  ['_bulk_get', ['POST']],
  ['_revs_diff', ['POST']],
  ['_missing_revs', ['POST']],
  ['_find', ['POST']],
  ['_explain', ['POST']],
  ['_ensure_full_commit', ['POST']],
  ['_design_docs', ['GET', 'HEAD', 'POST']],
  ['_index', ['GET', 'HEAD']],
]);

export const isServerAdmin = (caller: Caller): boolean => caller.roles.indexOf('_admin') !== -1;

function refuse(caller: Caller, reason: string): Refusal {
  return caller.name
    ? { status: 403, error: 'forbidden', reason }
    : { status: 401, error: 'unauthorized', reason: reason + ' Log in as a server admin.' };
}

const adminOnly = (caller: Caller, what: string): Refusal => refuse(caller, 'Only server admins may use ' + what + '.');

/** Whether `caller` is one of the members (or admins) that `security` names. */
export function isMember(caller: Caller, security: SecurityObject): boolean {
  const named = (group: { names?: string[]; roles?: string[] } | undefined) =>
    !!group && ((caller.name !== null && (group.names || []).indexOf(caller.name) !== -1) || (group.roles || []).some((role) => caller.roles.indexOf(role) !== -1));
  return named(security.members) || named(security.admins);
}

/** A database with no member names nor roles is open to everyone (CouchDB's rule). */
export const isPublic = (security: SecurityObject): boolean =>
  !security.members || ((security.members.names || []).length === 0 && (security.members.roles || []).length === 0);

/** CouchDB's refusal of a non-member, with what to do. */
function notMember(caller: Caller, db: string): Refusal {
  const help = ' Packages are read through the registry\'s npm API; a downstream registry replicates with a reader account (role registry-reader, README "Replicate").';
  return caller.name
    ? { status: 403, error: 'forbidden', reason: 'You are not allowed to access this db (' + db + ').' + help }
    : { status: 401, error: 'unauthorized', reason: 'You are not authorized to access this db (' + db + ').' + help };
}

const methodNotAllowed = (methods: string[], what: string): Refusal => ({
  status: 405, error: 'method_not_allowed', reason: 'Only ' + methods.join(', ') + ' are allowed on ' + what + '.',
});

/**
 * Splits a request path into decoded segments, as express-pouchdb's routes will see them, or null
 * when the percent-encoding is broken.
 */
export function pathSegments(rawPath: string): string[] | null {
  const parts = rawPath.split('/').slice(1);
  try {
    return parts.map((part) => decodeURIComponent(part));
  } catch {
    return null;
  }
}

/** The database a request path names (its first segment, decoded), or null for a server endpoint or a broken path. */
export function databaseOf(rawPath: string): string | null {
  const segments = pathSegments(rawPath);
  if (!segments || !DATABASE_NAME.test(segments[0])) return null;
  return segments[0];
}

/**
 * Whether `caller` may send `method` to `rawPath`: null when allowed, else the refusal to answer with.
 * `security` is the `_security` of the database the path names (`databaseOf`), null when that
 * database does not exist; it is needed for a non-admin caller only (undefined counts as closed).
 */
export function authorize(method: string, rawPath: string, caller: Caller, security?: SecurityObject | null): Refusal | null {
  if (METHODS.indexOf(method) === -1) return { status: 405, error: 'method_not_allowed', reason: 'Only ' + METHODS.join(', ') + ' are allowed.' };
  const segments = pathSegments(rawPath);
  if (!segments) return { status: 400, error: 'bad_request', reason: 'The URL is not valid percent-encoding.' };
  const [first, ...rest] = segments;
  if (first.startsWith('_') || PUBLIC_TOP_LEVEL.has(first)) {
    const methods = PUBLIC_TOP_LEVEL.get(first);
    if (methods && (rest.length === 0 || first === '_utils')) {
      return methods.indexOf(method) !== -1 ? null : { status: 405, error: 'method_not_allowed', reason: 'Only ' + methods.join(', ') + ' are allowed on /' + first + '.' };
    }
    if (SYSTEM_DATABASES.indexOf(first) === -1) return isServerAdmin(caller) ? null : adminOnly(caller, '/' + first);
  } else if (!DATABASE_NAME.test(first)) {
    return {
      status: 400,
      error: 'illegal_database_name',
      reason: 'Name: "' + first + '". Database names start with a letter and contain only a-z, 0-9, _, $, (, ), + and -.',
    };
  }
  if (isServerAdmin(caller)) return null;
  if (first === '_replicator' || first === '_global_changes') return adminOnly(caller, first);
  if (first === '_users') return isSiteCaller(caller) ? authorizeSiteOnUsers(method, rest, caller) : authorizeUsers(method, rest, caller);
  return authorizeDatabase(method, first, rest, caller, security);
}

/** Whether `caller` is a site's account (role `registry-site`). */
export function isSiteCaller(caller: Caller): boolean {
  return (caller.roles || []).indexOf(SITE_ROLE) !== -1;
}

/**
 * `_users` of the embedded server for a site's account: sites on it replicate accounts, so it reads and
 * writes the accounts, as an admin of `_users` would (never made one on a real CouchDB, where that would
 * let it write `_users`' design documents and so become a server admin), through what replication
 * uses only: the database's information, documents, replication checkpoints and the member endpoints.
 * The database itself (its creation and deletion, which CouchDB keeps for server admins too), its
 * design documents, its security, `COPY` (whose `Destination` could name a design document) and
 * maintenance (`_compact`, `_purge`, ...) stay the server admins'. The embedded server then runs the
 * request as an admin of it (express-pouchdb knows no database admins).
 */
function authorizeSiteOnUsers(method: string, rest: string[], caller: Caller): Refusal | null {
  const head = rest[0] || '';
  if (head === '_design' || head.startsWith('_design/') || head === '_security' || head === SECURITY_DOCUMENT || (head === '_local' && rest[1] === '_security')) {
    return { status: 403, error: 'forbidden', reason: 'The design documents and the security of _users are for server admins.' };
  }
  const whole = rest.length === 0 || (rest.length === 1 && rest[0] === '');
  if (whole) return ['GET', 'HEAD', 'POST'].indexOf(method) !== -1 ? null : adminOnly(caller, 'the creation and deletion of _users');
  if (method === 'COPY') return adminOnly(caller, 'COPY in _users');
  if (head.startsWith('_')) return memberEndpoint(method, rest, caller, '_users');
  const methods = ['GET', 'HEAD', 'PUT', 'DELETE'];
  return methods.indexOf(method) !== -1 ? null : adminOnly(caller, method + ' on an account');
}

/**
 * A `_` path of a database for one of its members: local documents (replication checkpoints: read,
 * written and deleted) and the endpoints named in `MEMBER_ENDPOINTS`; the rest is for admins.
 */
function memberEndpoint(method: string, rest: string[], caller: Caller, db: string): Refusal | null {
  const head = rest[0];
  if (head === '_local' || head.startsWith('_local/')) {
    const methods = ['GET', 'HEAD', 'PUT', 'DELETE'];
    return methods.indexOf(method) !== -1 ? null : methodNotAllowed(methods, 'local documents');
  }
  const allowed = MEMBER_ENDPOINTS.get(head);
  if (rest.length === 1 && allowed && allowed.indexOf(method) !== -1) return null;
  return adminOnly(caller, db + '/' + head);
}

/** `_users`: a non-admin may read their own document, nothing more. */
function authorizeUsers(method: string, rest: string[], caller: Caller): Refusal | null {
  const own = caller.name !== null && rest.length === 1 && rest[0] === 'org.couchdb.user:' + caller.name;
  if (own && (method === 'GET' || method === 'HEAD')) return null;
  if (method === 'GET' || method === 'HEAD') {
    if (rest.length === 0 || rest[0].startsWith('_')) {
      return refuse(caller, 'Only server admins may read the _users database as a whole; a user reads their own document.');
    }
    // As CouchDB: another user's document does not exist for you.
    return { status: 404, error: 'not_found', reason: 'missing' };
  }
  return refuse(caller, 'Accounts are created and changed through the registry (npm adduser, npm login) or by a server admin.');
}

function authorizeDatabase(method: string, db: string, rest: string[], caller: Caller, security: SecurityObject | null | undefined): Refusal | null {
  const whole = rest.length === 0 || (rest.length === 1 && rest[0] === '');
  if (whole && (method === 'PUT' || method === 'DELETE')) return adminOnly(caller, 'database creation and deletion');
  // A database that does not exist: express-pouchdb answers 404 (never creates it for a non-admin).
  if (security === null) return null;
  if (!security || (!isPublic(security) && !isMember(caller, security))) return notMember(caller, db);
  if (whole) return ['GET', 'HEAD', 'POST'].indexOf(method) !== -1 ? null : methodNotAllowed(['GET', 'HEAD', 'POST'], '/' + db);
  if (method === 'COPY') return adminOnly(caller, 'COPY');
  const head = rest[0];
  if (head === '_design' || head.startsWith('_design/')) {
    // `_design/x` may come as one segment (`_design%2Fx`) or two.
    const inside = head === '_design' ? rest.slice(2) : rest.slice(1);
    if (method === 'GET' || method === 'HEAD') return null;
    // A view query may be POSTed (keys); everything else under a design document changes it.
    if (method === 'POST' && inside.length === 2 && inside[0] === '_view') return null;
    return adminOnly(caller, 'design documents of ' + db);
  }
  // The embedded server keeps a database's security object in this local document (pouchdb-security):
  // reading or writing it is reading or writing `_security`. (On CouchDB it is an ordinary local document.)
  if (head === SECURITY_DOCUMENT || (head === '_local' && rest[1] === '_security')) return adminOnly(caller, db + '/_security');
  if (head.startsWith('_')) return memberEndpoint(method, rest, caller, db);
  // A document, or one of its attachments. (POST to a document is Fauxton's multipart upload: admins.)
  const methods = ['GET', 'HEAD', 'PUT', 'DELETE'];
  return methods.indexOf(method) !== -1 ? null : adminOnly(caller, method + ' on a document');
}
