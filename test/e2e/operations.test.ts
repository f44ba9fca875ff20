/**
 * What operators use: the health check, Prometheus metrics, the access log, a registry served under a
 * path prefix, and `npm start` from a built tree.
 */
import { createServer as createHttpServer } from 'http';
import { AddressInfo } from 'net';
import { join } from 'path';
import pino from 'pino';
import { Writable } from 'stream';
import { loadConfig } from '../../config';
import { RunningRegistry, startRegistry } from '../../server/registry';
import { makePackage, makeProject, npmClient } from '../helpers/npm';
import { killProcess, startRegistryProcess } from '../helpers/process';
import { publishBody } from '../helpers/principals';
import { anotherGateway, basicAuthOf, removeDatabases, startTestRegistry, TestRegistry } from '../helpers/registry';
import { freePort } from '../helpers/servers';
import { eventually } from '../helpers/wait';

let registry: TestRegistry;
let token: string;
/** Every line the registry logged. */
const logged: string[] = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logged.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  registry = await startTestRegistry({ LOG_LEVEL: 'info' }, pino({ level: 'info' }, sink));
  token = await registry.signup('operator');
});
afterAll(() => registry.stop());

const adminAuth = () => ({ authorization: basicAuthOf(registry.adminCouchUrl) });

describe('health', () => {
  it('answers 200 with every check when CouchDB, the design documents and the caches are fine', async () => {
    const res = await registry.request('GET', '/-/health');
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('ok');
    expect(res.body.checks.couchdb.ok).toBe(true);
    expect(res.body.checks.design).toMatchObject({ ok: true, detail: 'current' });
  });

  it('answers 503 naming the reason when the design document is not the one this gateway pushed', async () => {
    const path = '/' + registry.registryDb + '/_design/app';
    const origin = new URL(registry.adminCouchUrl).origin;
    const design = (await (await fetch(origin + path, { headers: adminAuth() })).json()) as Record<string, unknown>;
    const put = (doc: Record<string, unknown>) => fetch(origin + path, { method: 'PUT', headers: { ...adminAuth(), 'content-type': 'application/json' }, body: JSON.stringify(doc) });
    const changed = (await (await put({ ...design, build_hash: 'someone-else' })).json()) as { rev: string };
    try {
      const res = await registry.request('GET', '/-/health');
      expect(res.status).toBe(503);
      expect(res.body.status).toBe('unhealthy');
      expect(res.body.reasons.join(' ')).toContain('_design/app is not the one this gateway was built with');
    } finally {
      expect((await put({ ...design, _rev: changed.rev })).status).toBe(201);
    }
    expect((await registry.request('GET', '/-/health')).status).toBe(200);
  });

  it('answers 503 naming the reason when its CouchDB goes away, while /-/ping still answers', async () => {
    // A second gateway on a throw-away registry's CouchDB (or databases), which then go away.
    const first = await startTestRegistry();
    const lonely = await anotherGateway(first, 'lonely');
    try {
      expect((await fetch(lonely.localUrl + '/-/health')).status).toBe(200);
      // A real CouchDB cannot be stopped from here: its databases go away instead.
      if (process.env.COUCHDB_URL) await removeDatabases(first.adminCouchUrl, first.registryDb);
      else await first.close();
      const res = await fetch(lonely.localUrl + '/-/health');
      expect(res.status).toBe(503);
      const body = (await res.json()) as { reasons: string[] };
      expect(body.reasons.join(' ')).toContain(process.env.COUCHDB_URL ? 'design: ' : 'couchdb: not reachable');
      expect((await fetch(lonely.localUrl + '/-/ping')).status).toBe(200);
    } finally {
      await lonely.close();
      await first.stop().catch(() => undefined);
    }
  });
});

describe('health during an upstream outage', () => {
  it('answers 200 with status degraded and the reason while the registry serves, not 503', async () => {
    const upstream = await startTestRegistry();
    const downstream = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url, REPLICATION_FEED: upstream.url + '/-/replicate', REPLICATION_POLL_MS: '200' });
    let upstreamStopped = false;
    try {
      const publisher = await downstream.signup('local-publisher');
      const published = await downstream.request('PUT', '/served-in-outage', { token: publisher, body: publishBody('served-in-outage', '1.0.0') });
      expect(published.status).toBe(201);
      const fine = await eventually(async () => {
        const res = await downstream.request('GET', '/-/health');
        return res.status === 200 && res.body.status === 'ok' ? res.body : null;
      });
      expect(fine.checks.replication).toMatchObject({ ok: true });
      await upstream.stop();
      upstreamStopped = true;
      const degraded = await eventually(async () => {
        const res = await downstream.request('GET', '/-/health');
        return res.body.status !== 'ok' ? res : null;
      });
      expect(degraded.status).toBe(200);
      expect(degraded.body.status).toBe('degraded');
      expect(degraded.body.checks.replication.ok).toBe(false);
      expect(degraded.body.reasons.join(' ')).toContain('replication: the change feed cannot be followed');
      expect(degraded.headers.get('cache-control')).toBe('no-store');
      // It serves meanwhile.
      const served = await downstream.request('GET', '/served-in-outage');
      expect(served.status).toBe(200);
      expect(Object.keys(served.body.versions)).toEqual(['1.0.0']);
    } finally {
      await downstream.stop();
      if (!upstreamStopped) await upstream.stop();
    }
  });
});

describe('files browsers and crawlers ask for', () => {
  it('/favicon.ico and /robots.txt are answered here: the upstream is never asked, nothing counts as an upstream error', async () => {
    const asked: string[] = [];
    const upstream = createHttpServer((req, res) => {
      asked.push(String(req.url));
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"down"}');
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const proxied = await startTestRegistry({ UPSTREAM_REGISTRY: 'http://127.0.0.1:' + (upstream.address() as AddressInfo).port });
    try {
      for (let i = 0; i < 3; i++) {
        const icon = await fetch(proxied.url + '/favicon.ico');
        expect(icon.status).toBe(200);
        expect(icon.headers.get('content-type')).toContain('image/svg+xml');
        expect(await icon.text()).toContain('<svg');
        const robots = await fetch(proxied.url + '/robots.txt');
        expect(robots.status).toBe(200);
        expect(await robots.text()).toContain('Disallow: /');
      }
      // (It asks the upstream for its signing keys at start, and for nothing else here.)
      expect(asked.filter((path) => path !== '/-/npm/v1/keys')).toEqual([]);
      const text = await (await fetch(proxied.url + '/-/metrics', { headers: { authorization: basicAuthOf(proxied.adminCouchUrl) } })).text();
      expect(text).toMatch(/registry_upstream_errors_total 0\b/);
    } finally {
      await proxied.stop();
      await new Promise<void>((resolve) => upstream.close(() => resolve()));
    }
  });
});

describe('metrics', () => {
  it('are for admins by default: anonymous 401, a user 403, an admin gets Prometheus text', async () => {
    expect((await fetch(registry.url + '/-/metrics')).status).toBe(401);
    expect((await registry.request('GET', '/-/metrics', { token })).status).toBe(403);
    // Some traffic to count: a publish, packument reads (a miss, then a hit), a failed login.
    const client = npmClient(registry.url, token);
    expect((await client.npm(['publish'], makePackage(client.home, { name: 'metered', version: '1.0.0' }))).code).toBe(0);
    await registry.request('GET', '/metered');
    await registry.request('GET', '/metered');
    await registry.request('GET', '/-/whoami', { headers: { authorization: 'Basic ' + Buffer.from('operator:wrong').toString('base64') } });
    const res = await fetch(registry.url + '/-/metrics', { headers: adminAuth() });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    const value = (pattern: RegExp) => Number((pattern.exec(text) || [])[1] || NaN);
    expect(value(/registry_http_requests_total\{route="packument",method="GET",status="200"\} (\d+)/)).toBeGreaterThanOrEqual(2);
    expect(value(/registry_http_request_duration_seconds_count\{route="packument",method="GET"\} (\d+)/)).toBeGreaterThanOrEqual(2);
    expect(value(/registry_cache_requests_total\{cache="packument",result="hit"\} (\d+)/)).toBeGreaterThanOrEqual(1);
    expect(value(/registry_publishes_total (\d+)/)).toBe(1);
    expect(value(/registry_logins_total\{result="failure"\} (\d+)/)).toBeGreaterThanOrEqual(1);
    expect(value(/registry_couchdb_request_duration_seconds_count\{operation="get",outcome="ok"\} (\d+)/)).toBeGreaterThan(0);
    expect(text).toContain('registry_upstream_errors_total');
    expect(text).toContain('registry_replication_lag_changes');
    // The process: memory, CPU, event-loop lag, heap, open handles (garbage collection once one ran).
    expect(value(/process_resident_memory_bytes (\d+)/)).toBeGreaterThan(10_000_000);
    expect(value(/process_cpu_seconds_total ([\d.]+)/)).toBeGreaterThan(0);
    expect(value(/nodejs_eventloop_lag_p99_seconds ([\d.e-]+)/)).toBeGreaterThanOrEqual(0);
    expect(value(/nodejs_heap_size_used_bytes (\d+)/)).toBeGreaterThan(0);
    expect(value(/nodejs_active_handles_total (\d+)/)).toBeGreaterThan(0);
    expect(text).toContain('nodejs_gc_duration_seconds');
  });

  it('with METRICS=token, Prometheus reads them with the metrics token only; METRICS=off has none', async () => {
    const metricsToken = 'prometheus-secret-0123456789';
    const scraped = await startTestRegistry({ METRICS: 'token', METRICS_TOKEN: metricsToken });
    const off = await startTestRegistry({ METRICS: 'off' });
    try {
      expect((await fetch(scraped.url + '/-/metrics', { headers: { authorization: 'Bearer ' + metricsToken } })).status).toBe(200);
      expect((await fetch(scraped.url + '/-/metrics', { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status).toBe(401);
      expect((await fetch(scraped.url + '/-/metrics', { headers: { authorization: basicAuthOf(scraped.adminCouchUrl) } })).status).toBe(401);
      expect((await fetch(off.url + '/-/metrics', { headers: { authorization: basicAuthOf(off.adminCouchUrl) } })).status).toBe(404);
    } finally {
      await scraped.stop();
      await off.stop();
    }
    expect(() => loadConfig({ METRICS: 'token', METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN/);
  });
});

describe('access log', () => {
  it('one line per request at info with method, path, status, time and user; never a credential', async () => {
    const before = logged.length;
    await registry.request('GET', '/-/whoami?secret-query=1', { token });
    await registry.request('GET', '/-/whoami', { headers: { authorization: 'Basic ' + Buffer.from('operator:password-operator').toString('base64') } });
    const lines = logged.slice(before).map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.msg === 'request');
    expect(lines.length).toBe(2);
    for (const line of lines) {
      expect(line).toMatchObject({ level: 30, method: 'GET', path: '/-/whoami', status: 200, user: 'operator' });
      expect(typeof line.ms).toBe('number');
    }
    const all = logged.join('\n');
    expect(all).not.toContain(token);
    expect(all).not.toContain('password-operator');
    expect(all).not.toContain('secret-query');
  });
});

describe('a registry URL with a path prefix', () => {
  let prefixed: RunningRegistry;
  let db: string;
  let adminUrl: string;
  afterAll(async () => {
    await prefixed?.close();
    if (process.env.COUCHDB_URL && db) await removeDatabases(adminUrl, db);
  });

  it('serves npm under the path of REGISTRY_PUBLIC_URL, and says so to a client that leaves the prefix out', async () => {
    const port = await freePort();
    const base = 'http://127.0.0.1:' + port + '/npm';
    db = process.env.COUCHDB_URL ? 'registry-test-' + Math.random().toString(36).slice(2, 10) : 'registry';
    prefixed = await startRegistry(
      loadConfig({ PORT: String(port), COUCHDB_PORT: '0', REGISTRY_PUBLIC_URL: base, REGISTRY_DB: db, DATA_DIR: registry.dataDir + '/prefixed', REGISTRY_ADMIN_PASSWORD: 'test-admin-password', ...(process.env.COUCHDB_URL ? { COUCHDB_URL: process.env.COUCHDB_URL } : {}) }),
      pino({ level: 'silent' }),
    );
    adminUrl = process.env.COUCHDB_URL || prefixed.couchUrl.replace('http://', 'http://admin:test-admin-password@');
    const signup = await fetch(base + '/-/user/org.couchdb.user:prefixer', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'prefixer', password: 'prefixer-password', email: 'p@example.com' }),
    });
    expect(signup.status).toBe(201);
    const client = npmClient(base, ((await signup.json()) as { token: string }).token);
    expect((await client.npm(['publish'], makePackage(client.home, { name: 'under-prefix', version: '1.0.0' }))).code).toBe(0);
    const dir = makeProject(client.home, 'prefix-app', { 'under-prefix': '1.0.0' });
    const install = await client.npm(['install'], dir);
    expect(install.stderr).toBe('');
    expect(install.code).toBe(0);
    const lock = JSON.parse(require('fs').readFileSync(join(dir, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/under-prefix'].resolved).toBe(base + '/under-prefix/-/under-prefix-1.0.0.tgz');

    const wrong = await fetch('http://127.0.0.1:' + port + '/under-prefix');
    expect(wrong.status).toBe(404);
    expect(((await wrong.json()) as { error: string }).error).toContain('--registry ' + base + '/');
    if (process.env.COUCHDB_URL) {
      const origin = new URL(adminUrl).origin;
      const users = await fetch(origin + '/_users/org.couchdb.user:prefixer', { headers: { authorization: basicAuthOf(adminUrl) } });
      const doc = (await users.json()) as { _rev?: string };
      if (doc._rev) await fetch(origin + '/_users/org.couchdb.user:prefixer?rev=' + doc._rev, { method: 'DELETE', headers: { authorization: basicAuthOf(adminUrl) } });
    }
  });
});

describe('npm start', () => {
  it('starts from a built tree without compiling anything, in well under the time of a build', async () => {
    const db = 'registry-test-start-' + Math.random().toString(36).slice(2, 8);
    const started = Date.now();
    const running = await startRegistryProcess(
      { DATA_DIR: registry.dataDir + '/started', REGISTRY_ADMIN_PASSWORD: 'test-admin-password', ...(process.env.COUCHDB_URL ? { COUCHDB_URL: process.env.COUCHDB_URL, REGISTRY_DB: db } : {}) },
      join(__dirname, '..', '..', 'bin', 'registry.js'),
    );
    try {
      const elapsed = Date.now() - started;
      expect(running.output()).not.toMatch(/building/i);
      expect(elapsed).toBeLessThan(6000);
      expect((await fetch(running.url + '/-/ping')).status).toBe(200);
    } finally {
      await killProcess(running.child, 'SIGTERM');
      if (process.env.COUCHDB_URL) await removeDatabases(process.env.COUCHDB_URL, db);
    }
  });
});
