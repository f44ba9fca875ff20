/**
 * A registry started for one test file: on the embedded server in a temporary DATA_DIR by default, or
 * on the CouchDB in COUCHDB_URL with databases of its own (removed afterwards).
 */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import pino from 'pino';
import { loadConfig } from '../../config';
import { RunningRegistry, startRegistry } from '../../server/registry';

export interface TestRegistry extends RunningRegistry {
  dataDir: string;
  registryDb: string;
  /** Admin credentials of the CouchDB in use, as a URL. */
  adminCouchUrl: string;
  /** The proxy-authentication secret of the CouchDB in use. */
  proxySecret: string;
  request(method: string, path: string, options?: RequestOptions): Promise<{ status: number; body: any; headers: Headers }>;
  /** Creates a user through the npm login endpoint and returns its token. */
  signup(name: string, password?: string): Promise<string>;
  /** A token of the CouchDB admin, from the npm login endpoint (for what only admins may do, such as taking a name the upstream has). */
  adminToken(): Promise<string>;
  stop(): Promise<void>;
}

export interface RequestOptions {
  body?: unknown;
  raw?: string | Buffer;
  token?: string;
  headers?: Record<string, string>;
}

export async function startTestRegistry(env: Record<string, string> = {}, log?: pino.Logger): Promise<TestRegistry> {
  const dataDir = mkdtempSync(join(tmpdir(), 'registry-test-'));
  const registryDb = process.env.COUCHDB_URL ? 'registry-test-' + Math.random().toString(36).slice(2, 10) : 'registry';
  const config = loadConfig({
    PORT: '0',
    COUCHDB_PORT: '0',
    DATA_DIR: dataDir,
    REGISTRY_DB: registryDb,
    REGISTRY_ADMIN_PASSWORD: 'test-admin-password',
    ...(process.env.COUCHDB_URL ? { COUCHDB_URL: process.env.COUCHDB_URL } : {}),
    ...env,
  });
  const couchUrl = process.env.COUCHDB_URL;
  // On a shared CouchDB, closed sign-up changes _users/_security for everyone: put it back at stop.
  const usersSecurity = couchUrl && config.signup === 'closed' ? await couchJson(couchUrl, '/_users/_security') : undefined;
  let running: RunningRegistry;
  try {
    running = await startRegistry(config, log || pino({ level: process.env.TEST_LOG_LEVEL || 'silent' }));
  } catch (err) {
    if (couchUrl) await removeDatabases(couchUrl, registryDb);
    throw err;
  }
  const adminCouchUrl = adminCouchUrlOf(running);
  const proxySecret = process.env.COUCHDB_URL
    ? ((await (await fetch(new URL('/_node/_local/_config/chttpd_auth/secret', new URL(adminCouchUrl).origin), { headers: { authorization: basicAuthOf(adminCouchUrl) } })).json()) as string)
    : readFileSync(join(dataDir, 'proxy-secret'), 'utf8').trim();

  async function request(method: string, path: string, options: RequestOptions = {}) {
    const headers: Record<string, string> = { accept: 'application/json', ...(options.headers || {}) };
    if (options.token) headers.authorization = 'Bearer ' + options.token;
    let body: string | Buffer | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined && !headers['content-type']) headers['content-type'] = 'application/json';
    const response = await fetch(running.localUrl + path, { method, headers, body: body as BodyInit | undefined });
    const text = await response.text();
    let parsed: any = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON: keep the text */
    }
    return { status: response.status, body: parsed, headers: response.headers };
  }

  return {
    ...running,
    dataDir,
    registryDb,
    adminCouchUrl,
    proxySecret,
    request,
    async signup(name: string, password = 'password-' + name) {
      const res = await request('PUT', '/-/user/org.couchdb.user:' + name, {
        body: { _id: 'org.couchdb.user:' + name, name, password, email: name + '@example.com', type: 'user', roles: [] },
      });
      if (res.status !== 201) throw new Error('signup of ' + name + ' failed: ' + res.status + ' ' + JSON.stringify(res.body));
      return res.body.token as string;
    },
    async adminToken() {
      const admin = new URL(adminCouchUrl);
      const name = decodeURIComponent(admin.username);
      const res = await request('PUT', '/-/user/org.couchdb.user:' + name, { body: { _id: 'org.couchdb.user:' + name, name, password: decodeURIComponent(admin.password), type: 'user', roles: [] } });
      if (res.status !== 201) throw new Error('admin login failed: ' + res.status + ' ' + JSON.stringify(res.body));
      return res.body.token as string;
    },
    async stop() {
      await running.close();
      if (couchUrl) {
        // What this registry left in CouchDB's global databases: the accounts it made (every one got
        // a token), its continuous replication, and _users/_security; then its own databases.
        const tokens = await couchJson(couchUrl, '/' + registryDb + '-tokens/_all_docs?include_docs=true');
        const users = new Set<string>((tokens.rows || []).map((row: { doc?: { type?: string; user?: string } }) => (row.doc && row.doc.type === 'token' ? row.doc.user : '')).filter(Boolean));
        for (const user of users) await removeDoc(couchUrl, '/_users/' + encodeURIComponent('org.couchdb.user:' + user));
        await removeDoc(couchUrl, '/_replicator/registry-' + registryDb + '-from-upstream');
        if (usersSecurity) await fetch(new URL('/_users/_security', new URL(couchUrl).origin), { method: 'PUT', headers: { authorization: basicAuthOf(couchUrl), 'content-type': 'application/json' }, body: JSON.stringify(usersSecurity) });
        await removeDatabases(couchUrl, registryDb);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function couchJson(couchUrl: string, path: string): Promise<any> {
  const response = await fetch(new URL(path, new URL(couchUrl).origin), { headers: { authorization: basicAuthOf(couchUrl), accept: 'application/json' } });
  return response.json();
}

/** Deletes a document of a real CouchDB (as admin), if it is there. */
export async function removeDoc(couchUrl: string, path: string): Promise<void> {
  const doc = await couchJson(couchUrl, path);
  if (doc && doc._rev) await fetch(new URL(path + '?rev=' + doc._rev, new URL(couchUrl).origin), { method: 'DELETE', headers: { authorization: basicAuthOf(couchUrl) } });
}

/** Deletes the databases of a registry from a real CouchDB. */
/** Every database a registry named `registryDb` makes, as `config/` names them. */
/** The admin URL of the CouchDB a test registry runs on: `COUCHDB_URL`, or its embedded server. */
export function adminCouchUrlOf(running: RunningRegistry): string {
  return process.env.COUCHDB_URL || running.couchUrl.replace('http://', 'http://admin:test-admin-password@');
}

/**
 * `registry` started again on its data directory and databases (after `close()`), with `env` added:
 * a restart. `adminCouchUrl` is where its CouchDB is now (the embedded one gets a new port).
 */
export async function restartTestRegistry(registry: TestRegistry, env: Record<string, string> = {}): Promise<RunningRegistry & { adminCouchUrl: string }> {
  const running = await startRegistry(
    loadConfig({
      PORT: '0',
      COUCHDB_PORT: '0',
      DATA_DIR: registry.dataDir,
      REGISTRY_DB: registry.registryDb,
      REGISTRY_ADMIN_PASSWORD: 'test-admin-password',
      ...(process.env.COUCHDB_URL ? { COUCHDB_URL: process.env.COUCHDB_URL } : {}),
      ...env,
    }),
    pino({ level: 'silent' }),
  );
  return Object.assign(running, { adminCouchUrl: adminCouchUrlOf(running) });
}

/** Another gateway in front of `registry`'s CouchDB, with a data folder of its own, as several gateways run in front of one CouchDB. */
export function anotherGateway(registry: TestRegistry, folder: string, env: Record<string, string> = {}, log = pino({ level: 'silent' })): Promise<RunningRegistry> {
  return startRegistry(
    loadConfig({ PORT: '0', COUCHDB_URL: registry.adminCouchUrl, COUCHDB_PROXY_SECRET: registry.proxySecret, REGISTRY_DB: registry.registryDb, DATA_DIR: registry.dataDir + '/' + folder, ...env }),
    log,
  );
}

export function databasesOf(registryDb: string): string[] {
  const config = loadConfig({ REGISTRY_DB: registryDb });
  return [config.registryDb, config.mirrorDb, config.tokensDb, config.stateDb, config.stageDb, config.downloadsDb];
}

export async function removeDatabases(couchUrl: string, registryDb: string): Promise<void> {
  for (const db of databasesOf(registryDb)) {
    await fetch(new URL('/' + db, new URL(couchUrl).origin), { method: 'DELETE', headers: { authorization: basicAuthOf(couchUrl) } });
  }
}

/** The Basic authorization header of the credentials in a URL. */
export function basicAuthOf(url: string): string {
  const parsed = new URL(url);
  return 'Basic ' + Buffer.from(decodeURIComponent(parsed.username) + ':' + decodeURIComponent(parsed.password)).toString('base64');
}

/** Reads a package document straight from the registry database (the packages published here) as admin. */
export function storedDoc(registry: TestRegistry, name: string): Promise<{ status: number; body: any }> {
  return couchGet(registry, '/' + registry.registryDb + '/' + encodeURIComponent(name));
}

/** Reads a mirrored package document straight from the mirror database as admin. */
export function mirroredDoc(registry: TestRegistry, name: string): Promise<{ status: number; body: any }> {
  return couchGet(registry, '/' + registry.registryDb + '-mirror/' + encodeURIComponent(name));
}

/** Writes a document straight to CouchDB as admin (as in Fauxton): CouchDB's status and answer. */
export async function couchPut(registry: Pick<TestRegistry, 'adminCouchUrl'>, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const target = new URL(path, new URL(registry.adminCouchUrl).origin);
  const response = await fetch(target, { method: 'PUT', headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

/**
 * Sets `fields` of the supply-chain policy document of `registry` (`supply-chain` in `<db>-state`),
 * keeping the rest of it, as an admin does in Fauxton: CouchDB's status and answer (403 with the
 * reason for an invalid policy).
 */
export async function setSupplyChainPolicy(registry: TestRegistry, fields: Record<string, unknown>): Promise<{ status: number; body: any }> {
  const path = '/' + registry.registryDb + '-state/supply-chain';
  const current = (await couchGet(registry, path)).body;
  return couchPut(registry, path, { _id: 'supply-chain', type: 'policy', ...(current && current._id ? current : {}), ...fields });
}

/** Reads a document straight from CouchDB as admin. */
export async function couchGet(registry: TestRegistry, path: string): Promise<{ status: number; body: any }> {
  const target = new URL(path, new URL(registry.adminCouchUrl).origin);
  const response = await fetch(target, { headers: { authorization: basicAuthOf(registry.adminCouchUrl), accept: 'application/json' } });
  return { status: response.status, body: await response.json() };
}
