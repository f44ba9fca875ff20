/**
 * A registry started for one test file: on the embedded server in a temporary DATA_DIR by default, or
 * on the CouchDB in COUCHDB_URL with databases of its own (removed afterwards).
 */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import pino from 'pino';
import { loadConfig } from '../../gateway/config';
import { RunningRegistry, startRegistry } from '../../gateway/registry';

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
  stop(): Promise<void>;
}

export interface RequestOptions {
  body?: unknown;
  raw?: string | Buffer;
  token?: string;
  headers?: Record<string, string>;
}

export async function startTestRegistry(env: Record<string, string> = {}): Promise<TestRegistry> {
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
  const running = await startRegistry(config, pino({ level: process.env.TEST_LOG_LEVEL || 'silent' }));
  const adminCouchUrl = process.env.COUCHDB_URL || running.couchUrl.replace('http://', 'http://admin:test-admin-password@');
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
    async stop() {
      await running.close();
      if (process.env.COUCHDB_URL) {
        for (const db of [registryDb, registryDb + '-tokens', registryDb + '-mirror']) {
          await fetch(new URL('/' + db, new URL(process.env.COUCHDB_URL).origin), { method: 'DELETE', headers: { authorization: basicAuthOf(process.env.COUCHDB_URL) } });
        }
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
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

/** Reads a document straight from CouchDB as admin. */
export async function couchGet(registry: TestRegistry, path: string): Promise<{ status: number; body: any }> {
  const target = new URL(path, new URL(registry.adminCouchUrl).origin);
  const response = await fetch(target, { headers: { authorization: basicAuthOf(registry.adminCouchUrl), accept: 'application/json' } });
  return { status: response.status, body: await response.json() };
}
