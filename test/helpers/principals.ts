/**
 * A registry process with a cast of principals for security tests: an anonymous caller, the
 * maintainer of a published package, another user, a read-only token, a revoked token and the admin.
 * Runs on the embedded server (admin password generated into DATA_DIR, as `npm start` does) or on
 * the CouchDB in COUCHDB_URL (user names and databases of its own, removed afterwards).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { sha1, sha512 } from './npm';
import { killProcess, RegistryProcess, startRegistryProcess } from './process';
import { databasesOf } from './registry';

export interface Principals {
  registry: RegistryProcess;
  dataDir: string;
  /** The process's TMPDIR. */
  tempDir: string;
  registryDb: string;
  /** Names made unique for this run (a real CouchDB's `_users` is shared by every test file). */
  alice: string;
  mallory: string;
  passwords: Record<string, string>;
  tokens: { alice: string; mallory: string; readonly: string; revoked: string };
  admin: { name: string; password: string };
  /** The Authorization header of each principal on the gateway ('' for anonymous). */
  gatewayAuth: Record<Principal, string>;
  stop(): Promise<void>;
}

export type Principal = 'anonymous' | 'user' | 'maintainer' | 'readonly' | 'revoked' | 'admin';
export const PRINCIPALS: Principal[] = ['anonymous', 'user', 'maintainer', 'readonly', 'revoked', 'admin'];

export const basic = (name: string, password: string): string => 'Basic ' + Buffer.from(name + ':' + password).toString('base64');

export interface Answer {
  status: number;
  body: any;
  headers: Headers;
  ms: number;
}

/** One HTTP request with a 10 s limit; a time-out is answered as status 0. */
export async function send(url: string, method: string, path: string, options: { body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { accept: 'application/json', ...(options.headers || {}) };
  let body: string | undefined = options.raw;
  if (body === undefined && options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  const started = Date.now();
  try {
    const response = await fetch(url + path, { method, headers, body, signal: AbortSignal.timeout(10_000), redirect: 'manual' });
    const text = await response.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: response.status, body: parsed, headers: response.headers, ms: Date.now() - started };
  } catch (err) {
    return { status: 0, body: String(err), headers: new Headers(), ms: Date.now() - started };
  }
}

/**
 * Refusals a real CouchDB 3.4.3 answers in its own way (measured): a non-admin's PUT of `_security`
 * fails with 500 `no_majority`, `_replicate` runs with the caller's own rights, so a local
 * database name is a 400 and a database the caller cannot reach a 401 or a 500 `db_not_found`, and
 * `POST /_session` with a JSON body that is not an object fails with 500 `badmatch`.
 * The embedded server answers 401/403 to both.
 */
export function couchQuirk(method: string, path: string, res: { status: number; body: any }): boolean {
  if (!process.env.COUCHDB_URL) return false;
  if (method === 'PUT' && path.endsWith('/_security')) return res.status === 500 && res.body.reason === 'no_majority';
  if (path === '/_replicate') return [400, 401, 403, 500].includes(res.status);
  // CouchDB 3.4.3's own answer to a `POST /_session` whose JSON body is not an object (`true`, `[]`):
  // 500 `badmatch` from its session handler, before any authentication (measured).
  if (method === 'POST' && path === '/_session') return res.status === 500 && res.body && res.body.error === 'badmatch';
  return false;
}

/**
 * A downstream registry's reader account on the CouchDB at `adminCouchUrl` (README, "Replicate"): a
 * `_users` account with the role registry-reader, made by the admin. Returns the URL of `db` with its
 * credentials, for REPLICATION_COUCHDB.
 */
export async function readerSource(adminCouchUrl: string, db: string): Promise<string> {
  const admin = new URL(adminCouchUrl);
  const auth = basic(decodeURIComponent(admin.username), decodeURIComponent(admin.password));
  const name = 'reader-' + Math.random().toString(36).slice(2, 8);
  const password = 'reader-pw-' + Math.random().toString(36).slice(2);
  const res = await send(admin.origin, 'PUT', '/_users/org.couchdb.user:' + name, {
    headers: { authorization: auth },
    body: { _id: 'org.couchdb.user:' + name, name, type: 'user', roles: ['registry-reader'], password },
  });
  if (res.status !== 201) throw new Error('reader account: ' + res.status + ' ' + JSON.stringify(res.body));
  const source = new URL('/' + db, admin.origin);
  source.username = name;
  source.password = password;
  return source.toString();
}

export function publishBody(name: string, version: string, tarball: Buffer = Buffer.from('tarball of ' + name + '@' + version)) {
  return {
    _id: name,
    name,
    'dist-tags': { latest: version },
    versions: { [version]: { name, version, dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'x' } } },
    _attachments: { [name.split('/').pop() + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
  };
}

export async function startPrincipals(prefix: string): Promise<Principals> {
  const run = Math.random().toString(36).slice(2, 8);
  const dataDir = mkdtempSync(join(tmpdir(), 'registry-' + prefix + '-'));
  const registryDb = process.env.COUCHDB_URL ? 'registry-' + prefix + '-' + run : 'registry';
  // Temporary files of the process (multipart uploads) in a folder of its own, for the tests to watch.
  const tempDir = join(dataDir, 'tmp');
  mkdirSync(tempDir);
  const registry = await startRegistryProcess({ DATA_DIR: dataDir, REGISTRY_DB: registryDb, REGISTRY_ADMIN_PASSWORD: '', TMPDIR: tempDir });
  const couch = process.env.COUCHDB_URL ? new URL(process.env.COUCHDB_URL) : null;
  const admin = couch
    ? { name: decodeURIComponent(couch.username), password: decodeURIComponent(couch.password) }
    : { name: 'admin', password: readFileSync(join(dataDir, 'admin-password'), 'utf8').trim() };
  const alice = 'alice-' + run;
  const mallory = 'mallory-' + run;
  const passwords: Record<string, string> = { [alice]: 'alice-pw-' + run, [mallory]: 'mallory-pw-' + run };
  const signup = async (name: string): Promise<string> => {
    const res = await send(registry.url, 'PUT', '/-/user/org.couchdb.user:' + name, { body: { name, password: passwords[name], email: name + '@example.com' } });
    if (res.status !== 201) throw new Error('signup of ' + name + ': ' + res.status + ' ' + JSON.stringify(res.body));
    return res.body.token;
  };
  const aliceToken = await signup(alice);
  const malloryToken = await signup(mallory);
  const tokenOf = async (readonly: boolean): Promise<string> => {
    const res = await send(registry.url, 'POST', '/-/npm/v1/tokens', {
      headers: { authorization: 'Bearer ' + aliceToken },
      body: { password: passwords[alice], ...(readonly ? { packages_and_scopes_permission: 'read-only' } : {}) },
    });
    if (res.status !== 201) throw new Error('token: ' + res.status + ' ' + JSON.stringify(res.body));
    return res.body.token;
  };
  const readonly = await tokenOf(true);
  const revoked = await tokenOf(false);
  const revoke = await send(registry.url, 'DELETE', '/-/user/token/' + encodeURIComponent(revoked), { headers: { authorization: 'Bearer ' + revoked } });
  if (revoke.status !== 200) throw new Error('revoke: ' + revoke.status);
  return {
    registry,
    dataDir,
    tempDir,
    registryDb,
    alice,
    mallory,
    passwords,
    tokens: { alice: aliceToken, mallory: malloryToken, readonly, revoked },
    admin,
    gatewayAuth: {
      anonymous: '',
      user: 'Bearer ' + malloryToken,
      maintainer: 'Bearer ' + aliceToken,
      readonly: 'Bearer ' + readonly,
      revoked: 'Bearer ' + revoked,
      admin: basic(admin.name, admin.password),
    },
    async stop() {
      await killProcess(registry.child, 'SIGTERM');
      if (couch) {
        const auth = { authorization: basic(admin.name, admin.password) };
        for (const db of databasesOf(registryDb)) await fetch(couch.origin + '/' + db, { method: 'DELETE', headers: auth });
        for (const name of [alice, mallory, alice + '-locked']) {
          const doc = await send(couch.origin, 'GET', '/_users/org.couchdb.user:' + name, { headers: auth });
          if (doc.status === 200) await send(couch.origin, 'DELETE', '/_users/org.couchdb.user:' + name + '?rev=' + doc.body._rev, { headers: auth });
        }
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A registry process started for one test with a user who signed up (open sign-up: anyone), and the CouchDB admin's credentials. */
export interface RegistryWithUser {
  proc: RegistryProcess;
  gateway: string;
  couch: string;
  registryDb: string;
  /** The Authorization header of the CouchDB admin (Basic). */
  admin: string;
  token: string;
  user: string;
  stop(): Promise<void>;
}

/**
 * Starts a registry process with `env` (databases of its own on a real CouchDB) and signs up a user
 * named `<userPrefix>-<run>`. `stop()` checks that nothing reached the last-resort handler, then
 * removes what the registry left on a real CouchDB.
 */
export async function startRegistryWithUser(prefix: string, env: Record<string, string>, userPrefix = 'publisher'): Promise<RegistryWithUser> {
  const run = Math.random().toString(36).slice(2, 8);
  const dataDir = mkdtempSync(join(tmpdir(), 'registry-' + prefix + '-'));
  const couchUrl = process.env.COUCHDB_URL;
  const registryDb = couchUrl ? 'registry-' + prefix + '-' + run : 'registry';
  const proc = await startRegistryProcess({ DATA_DIR: dataDir, REGISTRY_DB: registryDb, REGISTRY_ADMIN_PASSWORD: '', ...env });
  const couchAdmin = couchUrl ? new URL(couchUrl) : null;
  const admin = couchAdmin
    ? basic(decodeURIComponent(couchAdmin.username), decodeURIComponent(couchAdmin.password))
    : basic('admin', readFileSync(join(dataDir, 'admin-password'), 'utf8').trim());
  const user = userPrefix + '-' + run;
  const signup = await send(proc.url, 'PUT', '/-/user/org.couchdb.user:' + user, { body: { name: user, password: 'pw-' + run, email: user + '@example.com' } });
  if (signup.status !== 201) throw new Error('signup: ' + signup.status + ' ' + JSON.stringify(signup.body));
  return {
    proc,
    gateway: proc.url,
    couch: proc.couchUrl,
    registryDb,
    admin,
    token: signup.body.token,
    user,
    async stop() {
      // Nothing reached the last-resort handler: no request crashed anything.
      expect(proc.output()).not.toMatch(/unhandled rejection|uncaught exception/i);
      await killProcess(proc.child, 'SIGTERM');
      if (couchAdmin) {
        for (const db of databasesOf(registryDb)) await fetch(couchAdmin.origin + '/' + db, { method: 'DELETE', headers: { authorization: admin } });
        const doc = await send(couchAdmin.origin, 'GET', '/_users/org.couchdb.user:' + user, { headers: { authorization: admin } });
        if (doc.status === 200) await send(couchAdmin.origin, 'DELETE', '/_users/org.couchdb.user:' + user + '?rev=' + doc.body._rev, { headers: { authorization: admin } });
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
