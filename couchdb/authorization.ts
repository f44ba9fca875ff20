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
 *   server keeps it), design-document writes, `COPY`, compaction,
 *   purge and index management are for admins; the rest is left to the database's own `_security`
 *   members and `validate_doc_update`, which express-pouchdb enforces.
 */

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

/** Database endpoints open to the database's members (reads and replication); the rest are admin-only. */
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

/** Whether `caller` may send `method` to `rawPath`: null when allowed, else the refusal to answer with. */
export function authorize(method: string, rawPath: string, caller: Caller): Refusal | null {
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
  if (first === '_users') return authorizeUsers(method, rest, caller);
  return authorizeDatabase(method, first, rest, caller);
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

function authorizeDatabase(method: string, db: string, rest: string[], caller: Caller): Refusal | null {
  if (rest.length === 0 || (rest.length === 1 && rest[0] === '')) {
    if (method === 'PUT' || method === 'DELETE') return adminOnly(caller, 'database creation and deletion');
    return null;
  }
  if (method === 'COPY') return adminOnly(caller, 'COPY');
  const head = rest[0];
  if (head === '_design' || head.startsWith('_design/')) {
    if (method === 'GET' || method === 'HEAD') return null;
    // A view query may be POSTed (keys); everything else under a design document changes it.
    if (method === 'POST' && rest.indexOf('_view') !== -1) return null;
    return adminOnly(caller, 'design documents of ' + db);
  }
  // The embedded server keeps a database's security object in this local document (pouchdb-security):
  // reading or writing it is reading or writing `_security`. (On CouchDB it is an ordinary local document.)
  if (head === SECURITY_DOCUMENT || (head === '_local' && rest[1] === '_security')) return adminOnly(caller, db + '/_security');
  if (head === '_local' || head.startsWith('_local/')) return null;
  if (head.startsWith('_')) {
    const allowed = MEMBER_ENDPOINTS.get(head);
    if (rest.length === 1 && allowed && allowed.indexOf(method) !== -1) return null;
    return adminOnly(caller, db + '/' + head);
  }
  return null;
}
