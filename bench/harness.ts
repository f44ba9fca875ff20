/**
 * Runs this registry and Verdaccio side by side on loopback with the same data, measures both in
 * one run, and returns the figures. `scale` sets the sizes: `full` for `npm run bench`, `smoke` for
 * the test that keeps the harness from rotting.
 */
import autocannon from 'autocannon';
import { ChildProcess, spawn } from 'child_process';
import express from 'express';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { basename, dirname, join } from 'path';
import { run } from '../test/helpers/npm';
import { startFeedStandIn } from '../test/helpers/feed-standin';
import { startVerdaccio, Verdaccio } from '../test/helpers/verdaccio';
import { dependencyTree, largePackument, Manifest, packTarball, publishBody, staticPackument } from './data';
import { databasesOf } from '../test/helpers/registry';
import { publishAt, startSites } from '../test/helpers/sites';

export interface Scale {
  typicalVersions: number;
  largeVersions: number;
  largeVersionBytes: number;
  tarballBytes: number;
  durationSeconds: number;
  connections: number;
  publishes: number;
  treePackages: number;
  treeRoots: number;
  /** Rounds of installs, each server in turn in each round: the median is reported. */
  installRounds: number;
  /** Packages in the generated upstream that replication ingests. */
  ingestPackages: number;
  /** New versions published upstream, each timed until the downstream serves it. */
  lagSamples: number;
}

export const SCALES: Record<'full' | 'smoke', Scale> = {
  full: { typicalVersions: 50, largeVersions: 4000, largeVersionBytes: 10_000, tarballBytes: 100 * 1024, durationSeconds: 10, connections: 50, publishes: 20, treePackages: 150, treeRoots: 30, installRounds: 5, ingestPackages: 10_000, lagSamples: 40 },
  smoke: { typicalVersions: 3, largeVersions: 40, largeVersionBytes: 2_000, tarballBytes: 4 * 1024, durationSeconds: 1, connections: 5, publishes: 2, treePackages: 6, treeRoots: 2, installRounds: 1, ingestPackages: 50, lagSamples: 3 },
};

export interface Row {
  metric: string;
  unit: string;
  ours: number;
  peer: number | null;
  /** Better when higher (throughput) or lower (latency, time, memory). */
  higherIsBetter: boolean;
  target?: string;
  /** Whether the target is met, when there is one. */
  met?: boolean;
  note?: string;
}

interface Target {
  name: string;
  url: string;
  pid: number;
  token: string;
  /** Loads the large packument straight into storage. */
  loadLarge(doc: Record<string, any>): Promise<void>;
  stop(): Promise<void>;
}

const log = (message: string) => process.stderr.write('[bench] ' + message + '\n');

function freePortServer(app: express.Express): Promise<Server> {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/**
 * The CouchDB an instance of this registry runs on: the embedded server (admin `bench-admin`,
 * database `registry`), or the one in COUCHDB_URL with a database of its own, removed at stop.
 */
function couchFor(existing?: string): { db: string; adminAuth: string; adminUrl(origin: string): string; remove(origin: string): Promise<void> } {
  const real = process.env.COUCHDB_URL ? new URL(process.env.COUCHDB_URL) : null;
  const name = real ? decodeURIComponent(real.username) : 'admin';
  const password = real ? decodeURIComponent(real.password) : 'bench-admin';
  const db = existing || (real ? 'registry-bench-' + Math.random().toString(36).slice(2, 8) : 'registry');
  const adminAuth = 'Basic ' + Buffer.from(name + ':' + password).toString('base64');
  return {
    db,
    adminAuth,
    adminUrl: (origin) => origin.replace('://', '://' + encodeURIComponent(name) + ':' + encodeURIComponent(password) + '@'),
    async remove(origin) {
      if (!real) return;
      const job = (await (await fetch(origin + '/_replicator/registry-' + db + '-from-upstream', { headers: { authorization: adminAuth } })).json()) as { _rev?: string };
      if (job._rev) await fetch(origin + '/_replicator/registry-' + db + '-from-upstream?rev=' + job._rev, { method: 'DELETE', headers: { authorization: adminAuth } });
      for (const name of databasesOf(db)) await fetch(origin + '/' + name, { method: 'DELETE', headers: { authorization: adminAuth } });
      // The account the bench signed up with (in CouchDB's one _users database).
      const user = (await (await fetch(origin + '/_users/org.couchdb.user:bench', { headers: { authorization: adminAuth } })).json()) as { _rev?: string };
      if (user._rev) await fetch(origin + '/_users/org.couchdb.user:bench?rev=' + user._rev, { method: 'DELETE', headers: { authorization: adminAuth } });
    },
  };
}

export type Ours = Target & {
  child: ChildProcess;
  couch: string;
  db: string;
  adminAuth: string;
  adminCouch: string;
  dataDir: string;
  /** Milliseconds from the process's start until it said it was ready. */
  startedInMs: number;
  /** Stops the process and keeps its data, for `startOurs` to start again on. */
  halt(): Promise<void>;
};

/**
 * Starts this registry as users run it. `again` starts it on the data of an instance stopped with
 * `halt` (its data folder and databases); `stop` removes them. `nodeArgs` go to Node before the
 * script (`--cpu-prof`, which NODE_OPTIONS does not take).
 */
export async function startOurs(extraEnv: Record<string, string> = {}, again?: Pick<Ours, 'dataDir' | 'db'> & { url?: string }, nodeArgs: string[] = []): Promise<Ours> {
  const dataDir = again ? again.dataDir : mkdtempSync(join(tmpdir(), 'bench-registry-'));
  const store = couchFor(again?.db);
  const spawnedAt = Date.now();
  // The compiled gateway, whether the harness runs compiled (dist/bench) or from source (ts-jest).
  // `BENCH_REGISTRY_MAIN`: another build's `server/main.js` (a before/after comparison in one harness).
  const main = process.env.BENCH_REGISTRY_MAIN || (basename(dirname(__dirname)) === 'dist' ? join(__dirname, '..', 'server', 'main.js') : join(__dirname, '..', 'dist', 'server', 'main.js'));
  // `BENCH_REGISTRY_NODE_ARGS`: Node's options for the registry process only (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`, not allowed in NODE_OPTIONS).
  const allNodeArgs = [...(process.env.BENCH_REGISTRY_NODE_ARGS || '').split(/\s+/).filter(Boolean), ...nodeArgs];
  const child = spawn(process.execPath, [...allNodeArgs, main], {
    // Its defaults, as users run it: an access-log line per request at info, like Verdaccio's `http` level.
    // Started again on its data, on its port (as a deployed registry restarts on its address: the tarball URLs it serves stay the same).
    env: { ...process.env, PORT: again?.url ? new URL(again.url).port : '0', COUCHDB_PORT: '0', DATA_DIR: dataDir, REGISTRY_DB: store.db, REGISTRY_ADMIN_PASSWORD: 'bench-admin', LOG_LEVEL: 'info', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let ready = false;
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      // Until it is ready, everything it printed; then the access log is read and dropped.
      if (ready) return;
      output += d;
      const match = /ready at (http:\/\/\S+)/.exec(output);
      if (match) {
        ready = true;
        resolve(match[1]);
      }
    });
    child.stderr!.on('data', (d) => (output = (output + d).slice(-8192)));
    child.on('exit', (code) => reject(new Error('the registry exited (' + code + '): ' + output)));
  });
  const startedInMs = Date.now() - spawnedAt;
  const couch = /Fauxton:\s+(http:\/\/[^/]+)/.exec(output)![1];
  const signup = await fetch(url + '/-/user/org.couchdb.user:bench', {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', password: 'bench-password', email: 'bench@example.com' }),
  });
  const token = ((await signup.json()) as { token?: string }).token || '';
  const halt = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  return {
    name: 'this registry', url, pid: child.pid as number, token, child, couch, db: store.db, adminAuth: store.adminAuth, adminCouch: store.adminUrl(couch), dataDir, startedInMs, halt,
    async loadLarge(doc) {
      const res = await fetch(couch + '/' + store.db + '/' + encodeURIComponent(doc.name), {
        method: 'PUT',
        headers: { 'content-type': 'application/json', authorization: store.adminAuth },
        body: JSON.stringify(doc),
      });
      if (res.status !== 201) throw new Error('loading the large packument failed: ' + res.status + ' ' + (await res.text()));
    },
    stop: async () => {
      await halt();
      rmSync(dataDir, { recursive: true, force: true });
      await store.remove(couch);
    },
  };
}

const NGINX = '/usr/sbin/nginx';
/** What the static upstream answers to npm's bulk advisory API: no advisory against the bench's packages. */
const ADVISORIES_ANSWER = '{}';

/**
 * The ceiling for tarballs: nginx from Debian's packages serving the same bytes from a folder, with
 * Debian's defaults where they matter (a worker per core, sendfile, tcp_nopush, an access log);
 * Express's static middleware where nginx is not installed (said in the table).
 */
export async function startStaticServer(dir: string, fill?: (url: string) => void): Promise<{ url: string; name: string; stop(): Promise<void> }> {
  mkdirSync(dir, { recursive: true });
  // nginx's workers run as another user (nobody, when started as root): the folders must be readable.
  for (let folder = dir; folder !== dirname(folder) && folder.startsWith(tmpdir() + '/'); folder = dirname(folder)) chmodSync(folder, 0o755);
  const started = await startStaticServing(dir);
  fill?.(started.url);
  return started;
}

async function startStaticServing(dir: string): Promise<{ url: string; name: string; stop(): Promise<void> }> {
  if (existsSync(NGINX)) {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const p = (probe.address() as AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    const conf = join(dir, '..', basename(dir) + '-nginx.conf');
    writeFileSync(conf, [
      'worker_processes auto;', 'daemon off;', 'pid ' + join(dir, '..', basename(dir) + '-nginx.pid') + ';', 'error_log ' + join(dir, '..', basename(dir) + '-nginx-error.log') + ';',
      'events { worker_connections 768; }',
      'http {', '  sendfile on;', '  tcp_nopush on;', '  types_hash_max_size 2048;', '  default_type application/octet-stream;',
      '  access_log ' + join(dir, '..', basename(dir) + '-nginx-access.log') + ';',
      // A package's packument is <name>/index.json, next to its tarballs in <name>/-/.
      '  server { listen 127.0.0.1:' + port + '; root ' + dir + '; location / { try_files $uri/index.json $uri =404; }',
      // As an upstream, it answers npm's bulk advisory API too (nothing known against the tree), for the policies' cost.
      "    location = /-/npm/v1/security/advisories/bulk { default_type application/json; return 200 '" + ADVISORIES_ANSWER + "'; } }", '}', '',
    ].join('\n'));
    const child = spawn(NGINX, ['-c', conf, '-p', join(dir, '..')], { stdio: 'ignore' });
    const url = 'http://127.0.0.1:' + port;
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(url + '/')).status) break;
      } catch {
        if (i > 50) throw new Error('nginx did not start');
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { url, name: 'nginx (sendfile)', stop: () => new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.kill('SIGQUIT'); }) };
  }
  const app = express();
  app.post('/-/npm/v1/security/advisories/bulk', (_req, res) => res.type('application/json').send(ADVISORIES_ANSWER));
  app.use((req, res, next) => (existsSync(join(dir, decodeURIComponent(req.path), 'index.json')) ? res.sendFile(join(dir, decodeURIComponent(req.path), 'index.json')) : next()));
  app.use(express.static(dir));
  const server = await freePortServer(app);
  return { url: 'http://127.0.0.1:' + (server.address() as AddressInfo).port, name: 'Express static (nginx not installed)', stop: async () => void server.close() };
}

/**
 * What Node itself can do, for reference: a process of its own running nothing but Node's `http`
 * server, answering with the bytes of a file held in memory (no routing, checks or access log).
 */
async function startBareNode(file: string): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const script = [
    "const data = require('fs').readFileSync(process.argv[1]);",
    "const server = require('http').createServer((req, res) => { res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length }); res.end(data); });",
    "server.listen(0, '127.0.0.1', () => console.log(server.address().port));",
  ].join('\n');
  const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(String(d).trim()));
    child.once('exit', (code) => reject(new Error('the bare Node server exited (' + code + ')')));
  });
  return { url: 'http://127.0.0.1:' + port, pid: child.pid as number, stop: () => new Promise<void>((resolve) => { child.once('exit', () => resolve()); child.kill(); }) };
}

export async function startPeer(uplink?: string): Promise<Target> {
  const verdaccio: Verdaccio = await startVerdaccio({ logLevel: 'http', uplink });
  const token = await verdaccio.adduser('bench', 'bench-password');
  return {
    name: 'Verdaccio 6.8.0', url: verdaccio.url, pid: verdaccio.pid, token,
    async loadLarge(doc) {
      const dir = join(verdaccio.storage, doc.name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ ...doc, _rev: '1-bench', _attachments: {}, _distfiles: {}, _uplinks: {} }));
    },
    stop: () => verdaccio.stop(),
  };
}

async function publish(target: Target, body: Record<string, unknown>): Promise<void> {
  const res = await fetch(target.url + '/' + encodeURIComponent(String(body.name)).replace(/^%40/, '@'), {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: 'Bearer ' + target.token },
    body: JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(target.name + ': publish of ' + String(body.name) + ' failed: ' + res.status + ' ' + (await res.text()));
}


/** Waits until `registry`'s own change feed has shown `count` package documents. */
async function waitForPackages(registry: string, count: number): Promise<void> {
  const seen = new Set<string>();
  let since: unknown = 0;
  while (seen.size < count) {
    const feed = (await (await fetch(registry + '/-/replicate/_changes?limit=10000&since=' + encodeURIComponent(String(since)))).json()) as { results: { id: string }[]; last_seq: unknown };
    for (const change of feed.results) seen.add(change.id);
    since = feed.last_seq;
    if (feed.results.length < 10000) await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** What one ingest cost: documents per second, and the registry's CPU seconds and peak RSS (bytes) over it. */
export interface IngestRun {
  docsPerSecond: number;
  /** Milliseconds from the process's start until it said it was ready (within the run's time). */
  startedInMs: number;
  /** Documents per second from its readiness on. */
  afterReady: number;
  cpuSeconds: number;
  peakRss: number;
}

/** Documents per second for a fresh instance started with `env` to hold `count` packages (its start included). */
async function ingestRun(count: number, env: Record<string, string>): Promise<IngestRun> {
  const started = process.hrtime.bigint();
  const downstream = await startOurs(env);
  try {
    await waitForPackages(downstream.url, count);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const docsPerSecond = count / seconds;
    return { docsPerSecond, startedInMs: downstream.startedInMs, afterReady: count / (seconds - downstream.startedInMs / 1000), cpuSeconds: cpuSeconds(downstream.pid), peakRss: peakRss(downstream.pid) };
  } finally {
    await downstream.stop();
  }
}

/** A stand-in upstream with a feed of `count` generated packages (3 versions each), serving from memory. */
async function ingestStandIn(count: number, packumentLatencyMs = 0): Promise<Awaited<ReturnType<typeof startFeedStandIn>>> {
  const standIn = await startFeedStandIn({ packumentLatencyMs });
  for (let i = 0; i < count; i++) standIn.publish('ingest-' + i, ['1.0.0', '1.1.0', '2.0.0']);
  return standIn;
}

/** The environment of a fresh instance that mirrors everything from the stand-in's feed. */
const feedEnv = (standIn: { url: string; feedUrl: string }): Record<string, string> => ({
  UPSTREAM_REGISTRY: standIn.url, REPLICATION_FEED: standIn.feedUrl, REPLICATION_MODE: 'all', REPLICATION_POLL_MS: '200',
});

/**
 * Only the ingest through the npm change feed (`--ingest`): `runs` fresh instances, one after the
 * other, each mirroring the same stand-in's `count` packages (each packument answered
 * `packumentLatencyMs` after it is asked: the public registry is that far away). With
 * `BENCH_REGISTRY_MAIN` set to another build's `server/main.js`, its runs alternate with this
 * build's (a before/after in one run). `env`: more settings of the registry (`REPLICATION_CONCURRENCY`).
 */
export async function runIngest(count: number, runs: number, packumentLatencyMs = 0, env: Record<string, string> = {}): Promise<{ build: string; runs: IngestRun[] }[]> {
  const builds = [{ build: 'this build', main: undefined as string | undefined }];
  const other = process.env.BENCH_REGISTRY_MAIN;
  if (other) builds.unshift({ build: other, main: other });
  const results = builds.map((b) => ({ build: b.build, runs: [] as IngestRun[] }));
  const standIn = await ingestStandIn(count, packumentLatencyMs);
  try {
    for (let round = 0; round < runs; round++) {
      for (let i = 0; i < builds.length; i++) {
        const b = builds[(i + round) % builds.length];
        if (b.main) process.env.BENCH_REGISTRY_MAIN = b.main;
        else delete process.env.BENCH_REGISTRY_MAIN;
        try {
          const run = await ingestRun(count, { ...feedEnv(standIn), ...env });
          results[(i + round) % builds.length].runs.push(run);
          log('  ' + b.build + ': ' + Math.round(run.docsPerSecond) + ' docs/s (' + Math.round(run.afterReady) + ' after its start in ' + run.startedInMs + ' ms), CPU ' + run.cpuSeconds.toFixed(1) + ' s, peak RSS ' + Math.round(run.peakRss / 2 ** 20) + ' MiB');
        } finally {
          if (other) process.env.BENCH_REGISTRY_MAIN = other;
        }
      }
    }
  } finally {
    await standIn.close();
  }
  return results;
}

/** The median run of each build as a table. */
export function ingestTable(count: number, results: { build: string; runs: IngestRun[] }[]): string {
  const lines = ['| Build | Packages | Runs | docs/s (median) | docs/s (each) | docs/s after its start (median) | registry CPU s (median) | peak RSS MiB (median) |', '|---|---:|---:|---:|---|---:|---:|---:|'];
  for (const { build, runs } of results) {
    lines.push('| ' + build + ' | ' + count + ' | ' + runs.length + ' | ' + Math.round(median(runs.map((r) => r.docsPerSecond))) + ' | ' + runs.map((r) => Math.round(r.docsPerSecond)).join(', ') + ' | ' + Math.round(median(runs.map((r) => r.afterReady))) + ' | ' +
      median(runs.map((r) => r.cpuSeconds)).toFixed(1) + ' | ' + Math.round(median(runs.map((r) => r.peakRss)) / 2 ** 20) + ' |');
  }
  return lines.join('\n');
}

/**
 * Replication ingest of a generated upstream of `count` packages (3 versions each), by a fresh
 * instance from its start to its last document: through the npm change feed (the upstream is the
 * test suite's stand-in for the public registry and its feed, serving from memory, so that the
 * figure is the follower's), and natively from a CouchDB (an instance of this registry).
 */
export async function measureIngest(count: number): Promise<{ feed: number; native: number }> {
  const standIn = await ingestStandIn(count);
  let feed: number;
  try {
    log('replication ingest: npm change feed');
    feed = (await ingestRun(count, feedEnv(standIn))).docsPerSecond;
  } finally {
    await standIn.close();
  }
  const native = (await measureNativeIngest(count)).docsPerSecond;
  return { feed, native };
}

/** Native replication from a CouchDB (an instance of this registry holding `count` generated packages) into a fresh instance. */
export async function measureNativeIngest(count: number): Promise<IngestRun> {
  const upstream = await startOurs();
  try {
    const now = new Date().toISOString();
    const origin = ((await (await fetch(upstream.couch + '/' + upstream.db + '/_design/mirror', { headers: { authorization: upstream.adminAuth } })).json()) as { registry: string }).registry;
    for (let i = 0; i < count; i += 1000) {
      const docs = [];
      for (let j = i; j < Math.min(count, i + 1000); j++) {
        const name = 'ingest-' + j;
        const versions: Record<string, unknown> = {};
        const time: Record<string, string> = { created: now, modified: now };
        for (const version of ['1.0.0', '1.1.0', '2.0.0']) {
          versions[version] = {
            name, version, description: 'Generated package ' + j, license: 'MIT', dependencies: { ['ingest-' + ((j + 1) % count)]: '^2.0.0' },
            dist: { tarball: upstream.url + '/' + name + '/-/' + name + '-' + version + '.tgz', integrity: 'sha512-' + Buffer.alloc(64, j % 256).toString('base64'), shasum: 'a'.repeat(40) },
          };
          time[version] = now;
        }
        docs.push({ _id: name, name, origin, 'dist-tags': { latest: '2.0.0' }, versions, time, maintainers: [{ name: 'bench' }], readme: 'x'.repeat(500) });
      }
      const res = await fetch(upstream.couch + '/' + upstream.db + '/_bulk_docs', { method: 'POST', headers: { 'content-type': 'application/json', authorization: upstream.adminAuth }, body: JSON.stringify({ docs }) });
      if (res.status !== 201) throw new Error('loading the ingest upstream failed: ' + res.status);
    }
    log('replication ingest: native CouchDB replication');
    return await ingestRun(count, { REPLICATION_COUCHDB: upstream.adminCouch + '/' + upstream.db });
  } finally {
    await upstream.stop();
  }
}

/**
 * Native replication lag: a downstream instance replicating an upstream instance's database; each
 * sample publishes a new version of a package the downstream already holds, upstream, and times it
 * until the downstream's packument (what `npm view` reads) names it as latest. Returns p50 and p95 in ms.
 */
export async function measureReplicationLag(samples: number): Promise<{ p50: number; p95: number }> {
  const upstream = await startOurs();
  let downstream: Awaited<ReturnType<typeof startOurs>> | undefined;
  try {
    const publishVersion = async (version: string) => {
      const manifest = { name: 'lag-probe', version, description: 'replication lag probe' };
      await publish(upstream, publishBody(manifest, await packTarball(manifest), upstream.url));
    };
    const served = async (version: string, deadline: number) => {
      for (;;) {
        const res = await fetch(downstream!.url + '/lag-probe');
        const latest = res.ok ? ((await res.json()) as { 'dist-tags'?: { latest?: string } })['dist-tags']?.latest : undefined;
        if (latest === version) return;
        if (Date.now() > deadline) throw new Error('the downstream did not serve lag-probe@' + version + ' within 60 s');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    await publishVersion('1.0.0');
    downstream = await startOurs({ REPLICATION_COUCHDB: upstream.adminCouch + '/' + upstream.db });
    await served('1.0.0', Date.now() + 60_000);
    const lags: number[] = [];
    for (let i = 1; i <= samples; i++) {
      const version = '1.0.' + i;
      const started = Date.now();
      await publishVersion(version);
      await served(version, Date.now() + 60_000);
      lags.push(Date.now() - started);
    }
    lags.sort((a, b) => a - b);
    return { p50: lags[Math.floor(lags.length / 2)], p95: lags[Math.min(lags.length - 1, Math.ceil(lags.length * 0.95) - 1)] };
  } finally {
    await downstream?.stop();
    await upstream.stop();
  }
}

/**
 * Convergence between two sites of one registry (SITE_PEERS both ways): `samples` publishes, in turn
 * at each site, each timed from the publish until the other site's packument names it as latest.
 */
export async function measureSiteConvergence(samples: number): Promise<{ p50: number; p95: number }> {
  const sites = await startSites(2);
  try {
    const [a, b] = sites.sites;
    // As the sites' helper signs up: on a real CouchDB, sites close sign-up and an admin makes accounts.
    const token = await sites.signup(a, 'bench', 'bench-password');
    const latestAt = async (url: string): Promise<string | undefined> => {
      const res = await fetch(url + '/site-probe');
      return res.ok ? ((await res.json()) as { 'dist-tags'?: { latest?: string } })['dist-tags']?.latest : undefined;
    };
    const servedAt = async (url: string, version: string) => {
      const deadline = Date.now() + 60_000;
      while ((await latestAt(url)) !== version) {
        if (Date.now() > deadline) throw new Error('the other site did not serve site-probe@' + version + ' within 60 s');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    // The account reaches the other site, and a first version both.
    const deadline = Date.now() + 60_000;
    while ((await fetch(b.url() + '/-/whoami', { headers: { authorization: 'Bearer ' + token } })).status !== 200) {
      if (Date.now() > deadline) throw new Error('the account did not reach the other site within 60 s');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const probe = async (site: typeof a, version: string) => {
      const manifest = { name: 'site-probe', version, description: 'site convergence probe' };
      const status = await publishAt(site.url(), token, 'site-probe', version, await packTarball(manifest));
      if (status !== 200 && status !== 201) throw new Error('publishing site-probe@' + version + ' answered ' + status);
    };
    await probe(a, '1.0.0');
    await servedAt(b.url(), '1.0.0');
    const times: number[] = [];
    for (let i = 1; i <= samples; i++) {
      const [from, to] = i % 2 ? [b, a] : [a, b];
      const version = '1.0.' + i;
      const started = Date.now();
      await probe(from, version);
      await servedAt(to.url(), version);
      times.push(Date.now() - started);
    }
    times.sort((x, y) => x - y);
    return { p50: times[Math.floor(times.length / 2)], p95: times[Math.min(times.length - 1, Math.ceil(times.length * 0.95) - 1)] };
  } finally {
    await sites.stop();
  }
}

/** A size in bytes from a process's /proc status (`VmRSS`, `VmHWM`: its peak); NaN where there is none. */
export function memoryOf(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const status = readFileSync('/proc/' + pid + '/status', 'utf8');
    return Number(new RegExp(field + ':\\s+(\\d+)').exec(status)![1]) * 1024;
  } catch {
    return NaN;
  }
}

export const peakRss = (pid: number): number => memoryOf(pid, 'VmHWM');

/** CPU seconds (user and system) a process has used, from /proc; NaN where there is none. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync('/proc/' + pid + '/stat', 'utf8');
    // After the command's closing parenthesis, the fields from the third on: utime and stime are the 14th and 15th, in ticks of 1/100 s.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/**
 * Waits (at most a minute) until none of the servers uses more than 5 % of a core over half a
 * second, and says how long that took. A server still working through what an earlier measure
 * queued (Verdaccio answers the 40 MB packument for a long while after its clients gave up) would
 * otherwise take the CPU from the next server measured.
 */
export async function quiet(pids: number[]): Promise<void> {
  const started = Date.now();
  for (;;) {
    const before = pids.map(cpuSeconds);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const busy = pids.map((pid, i) => cpuSeconds(pid) - before[i]).some((used) => used > 0.025);
    if (!busy) break;
    if (Date.now() - started > 60_000) {
      log('  the servers were still busy after a minute; measuring anyway');
      return;
    }
  }
  if (Date.now() - started > 1000) log('  waited ' + ((Date.now() - started) / 1000).toFixed(1) + ' s for the servers to be idle');
}

export interface Load {
  rps: number;
  p50: number;
  p99: number;
  bytesPerSecond: number;
  errors: number;
}

async function load(url: string, scale: Scale, headers: Record<string, string> = {}, connections = scale.connections, timeout = 10): Promise<Load> {
  const result = await autocannon({ url, connections, duration: scale.durationSeconds, headers, timeout });
  const errors = result.errors + result.non2xx;
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, bytesPerSecond: result.throughput.average, errors };
}

const WRK = '/usr/bin/wrk';

/**
 * Load for tarballs: wrk (Debian's package, C, one thread) where installed. autocannon, in Node,
 * reads at most about 65 MB/s on this kind of machine, so with 100 KB answers it measures itself:
 * nginx, this registry and Verdaccio all came out near 650 req/s. Without wrk it falls back to
 * autocannon, and the table says so.
 */
async function loadTarball(url: string, scale: Scale): Promise<Load & { tool: string }> {
  // One request first, for every server alike: what a server keeps after serving a tarball once is
  // what it serves from in use.
  await (await fetch(url)).arrayBuffer();
  if (!existsSync(WRK)) return { ...(await load(url, scale)), tool: 'autocannon' };
  // A warm-up of a few seconds, not counted, for every server alike.
  await run(WRK, ['-t1', '-c' + scale.connections, '-d' + Math.min(3, scale.durationSeconds) + 's', url], { cwd: tmpdir(), env: process.env });
  const result = await run(WRK, ['-t1', '-c' + scale.connections, '-d' + scale.durationSeconds + 's', '--latency', url], { cwd: tmpdir(), env: process.env });
  const text = result.stdout;
  const number = (pattern: RegExp) => Number((pattern.exec(text) || [])[1] || NaN);
  const ms = (pattern: RegExp) => {
    const match = pattern.exec(text);
    if (!match) return NaN;
    const value = Number(match[1]);
    return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
  };
  const bytes = (() => {
    const match = /Transfer\/sec:\s+([\d.]+)([KMG]?B)/.exec(text);
    if (!match) return NaN;
    return Number(match[1]) * ({ B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 } as Record<string, number>)[match[2]];
  })();
  const errors = number(/Non-2xx or 3xx responses: (\d+)/) || 0;
  return { rps: number(/Requests\/sec:\s+([\d.]+)/), p50: ms(/50%\s+([\d.]+)(us|ms|s)/), p99: ms(/99%\s+([\d.]+)(us|ms|s)/), bytesPerSecond: bytes, errors, tool: 'wrk' };
}

/** autocannon in a child process, for load that must not share the measuring process's event loop. */
function backgroundLoad(url: string, connections: number, seconds: number): Promise<void> {
  const cli = join(dirname(require.resolve('autocannon/package.json')), 'autocannon.js');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, '-c', String(connections), '-d', String(seconds), '-t', '120', '--json', url], { stdio: 'ignore' });
    child.on('exit', () => resolve());
  });
}

/**
 * `npm install` of a project depending on `direct` from `registry`, `--prefer-online`: with an empty
 * client cache and no lockfile, then (unless `warmToo` is false) again with the cache and the
 * lockfile kept and node_modules removed. Milliseconds. `options.args` are added to npm's (the
 * real-tree bench's `--ignore-scripts`); `options.timeoutMs` for installs longer than two minutes.
 */
export async function installTimes(work: string, registry: string, direct: Record<string, string>, name: string, warmToo = true, options: { args?: string[]; timeoutMs?: number } = {}): Promise<{ cold: number; warm: number }> {
  const home = mkdtempSync(join(work, 'install-'));
  const env = npmEnv(home, registry);
  const project = join(home, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'bench-project', version: '1.0.0', private: true, dependencies: direct }));
  const install = async () => {
    const result = await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-online', ...(options.args || [])], { cwd: project, env, timeoutMs: options.timeoutMs });
    if (result.code !== 0) throw new Error(name + ': npm install failed: ' + result.stderr);
  };
  const cold = await timed(install);
  if (!warmToo) return { cold, warm: NaN };
  rmSync(join(project, 'node_modules'), { recursive: true, force: true });
  return { cold, warm: await timed(install) };
}

/** The order of `count` contenders in `round`: each goes first in turn, so that none always runs right after the same one. */
export function inTurn(count: number, round: number): number[] {
  return Array.from({ length: count }, (_, i) => (i + round) % count);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function timed<T>(fn: () => Promise<T>): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

function npmEnv(home: string, registry: string, token?: string): NodeJS.ProcessEnv {
  const userconfig = join(home, '.npmrc');
  writeFileSync(userconfig, 'registry=' + registry + '/\n' + (token ? registry.replace(/^http:/, '') + '/:_authToken=' + token + '\n' : ''));
  return { PATH: process.env.PATH, HOME: home, npm_config_userconfig: userconfig, npm_config_cache: join(home, 'cache'), npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
}

/**
 * Pull-through: both registries empty, in front of the tree as their upstream; a cold install from
 * each (the client's cache empty), and the same install straight from the upstream (the client's own
 * limit). `rounds` rounds, each with fresh registries, the three in turn; the medians are reported,
 * so that the machine's drift between rounds weighs on all three alike.
 */
async function measurePullThrough(work: string, upstream: string, direct: Record<string, string>, packages: number, rounds: number): Promise<Row> {
  const times: Record<'ours' | 'peer' | 'ceiling', number[]> = { ours: [], peer: [], ceiling: [] };
  const cpu: Record<'ours' | 'peer', number[]> = { ours: [], peer: [] };
  for (let round = 1; round <= rounds; round++) {
    log('npm install through pull-through mirroring, cold, round ' + round + ' of ' + rounds);
    const mirroring = await startOurs({ UPSTREAM_REGISTRY: upstream, UPSTREAM_MODE: 'mirror' });
    const proxying = await startPeer(upstream);
    try {
      // Each waits for both to be idle: what one still stores after its install must not slow the other's.
      const cold = async (url: string, name: string, pid?: number, side?: 'ours' | 'peer') => {
        await quiet([mirroring.pid, proxying.pid]);
        const before = pid ? cpuSeconds(pid) : 0;
        const ms = (await installTimes(work, url, direct, name, false)).cold;
        if (pid && side) cpu[side].push(cpuSeconds(pid) - before);
        log('  ' + name + ': ' + Math.round(ms) + ' ms' + (pid ? ', ' + (cpuSeconds(pid) - before).toFixed(1) + ' s of CPU during the install' : ''));
        return ms;
      };
      const installs = [
        async () => times.ours.push(await cold(mirroring.url, mirroring.name, mirroring.pid, 'ours')),
        async () => times.peer.push(await cold(proxying.url, proxying.name, proxying.pid, 'peer')),
        async () => times.ceiling.push(await cold(upstream, 'the upstream itself (nginx)')),
      ];
      for (const i of inTurn(installs.length, round - 1)) await installs[i]();
    } finally {
      await mirroring.stop();
      await proxying.stop();
    }
  }
  const [ours, peer, ceiling] = [median(times.ours), median(times.peer), median(times.ceiling)];
  return {
    metric: 'npm install, ' + packages + ' packages, cold, through pull-through mirroring (empty registries, the static tree as upstream)',
    unit: 'ms', ours, peer, higherIsBetter: false, target: '≤ 0.7×', met: ours <= 0.7 * peer,
    note: 'median of ' + rounds + '; straight from the upstream (nginx): ' + Math.round(ceiling) + ' ms, ' + (ceiling / peer).toFixed(2) + '× Verdaccio; CPU during the install ' + median(cpu.ours).toFixed(1) + ' vs ' + median(cpu.peer).toFixed(1) + ' s',
  };
}

/** The supply-chain policy the policies' cost is measured with: a license allow-list and the vulnerability policy. */
export const BENCH_POLICY = {
  type: 'policy',
  licenses: { allowed: ['MIT', 'ISC', 'Apache-2.0', 'BSD-2-Clause', 'BSD-3-Clause'], unknown: 'hold' },
  advisories: { severity: 'high' },
};

/** Sets `policy` as the supply-chain document of `ours`, and waits until its gateways read it (they do every two seconds). */
async function setPolicy(ours: Ours, policy: Record<string, unknown>): Promise<void> {
  const url = ours.couch + '/' + ours.db + '-state/supply-chain';
  const current = (await (await fetch(url, { headers: { authorization: ours.adminAuth } })).json()) as { _rev?: string };
  const res = await fetch(url, { method: 'PUT', headers: { authorization: ours.adminAuth, 'content-type': 'application/json' }, body: JSON.stringify({ ...policy, ...(current._rev ? { _rev: current._rev } : {}) }) });
  if (res.status !== 201) throw new Error('setting the supply-chain policy failed: ' + res.status + ' ' + (await res.text()));
  await new Promise((r) => setTimeout(r, 2_500));
}

/**
 * `--policies`: what the license and vulnerability policies cost. In each of `rounds` rounds, fresh
 * registries in front of the static tree: ours without a policy, ours with `BENCH_POLICY` (every
 * version's license judged, every mirrored package's versions asked of the upstream's bulk advisory
 * API as they arrive), and Verdaccio; a cold install through each and straight from the upstream, in
 * turn, medians reported. Then, in the last round, both packument shapes of a mirrored package from
 * each (the policy's judgement is made once per revision; this shows it stays off the hot path).
 */
async function measurePolicyCost(work: string, upstream: string, direct: Record<string, string>, packages: number, rounds: number, scale: Scale): Promise<Row[]> {
  const times: Record<'plain' | 'gated' | 'peer' | 'ceiling', number[]> = { plain: [], gated: [], peer: [], ceiling: [] };
  const cpu: Record<'plain' | 'gated' | 'peer', number[]> = { plain: [], gated: [], peer: [] };
  const rows: Row[] = [];
  for (let round = 1; round <= rounds; round++) {
    log('the policies\' cost: npm install through pull-through, cold, round ' + round + ' of ' + rounds);
    const plain = await startOurs({ UPSTREAM_REGISTRY: upstream, UPSTREAM_MODE: 'mirror' });
    const gated = await startOurs({ UPSTREAM_REGISTRY: upstream, UPSTREAM_MODE: 'mirror' });
    const peer = await startPeer(upstream);
    try {
      // `BENCH_POLICY` (JSON) measures another policy, e.g. one of the two alone.
      await setPolicy(gated, process.env.BENCH_POLICY ? JSON.parse(process.env.BENCH_POLICY) : BENCH_POLICY);
      const pids = [plain.pid, gated.pid, peer.pid];
      const cold = async (url: string, name: string, side?: 'plain' | 'gated' | 'peer', pid?: number) => {
        await quiet(pids);
        const before = pid ? cpuSeconds(pid) : 0;
        const ms = (await installTimes(work, url, direct, name, false)).cold;
        if (pid && side) cpu[side].push(cpuSeconds(pid) - before);
        log('  ' + name + ': ' + Math.round(ms) + ' ms');
        return ms;
      };
      const installs = [
        async () => times.plain.push(await cold(plain.url, 'this registry, no policy', 'plain', plain.pid)),
        async () => times.gated.push(await cold(gated.url, 'this registry, license and vulnerability policies', 'gated', gated.pid)),
        async () => times.peer.push(await cold(peer.url, peer.name, 'peer', peer.pid)),
        async () => times.ceiling.push(await cold(upstream, 'the upstream itself (nginx)')),
      ];
      for (const i of inTurn(installs.length, round - 1)) await installs[i]();
      if (round === rounds) {
        const name = Object.keys(direct)[0];
        for (const [shape, headers] of [['Full', {}], ['Abbreviated', { accept: 'application/vnd.npm.install-v1+json' }]] as const) {
          // Each measured twice, in turn (gated, plain, Verdaccio, then the other way round), the better kept:
          // what runs first after the installs must not pay for what the machine still finishes.
          const best = async (url: string) => {
            await quiet(pids);
            return load(url + '/' + name, scale, headers);
          };
          const first = [await best(gated.url), await best(plain.url), await best(peer.url)];
          const second = [await best(peer.url), await best(plain.url), await best(gated.url)];
          const pick = (a: Load, b: Load) => (a.rps >= b.rps ? a : b);
          const withPolicy = pick(first[0], second[2]);
          const without = pick(first[1], second[1]);
          const verdaccio = pick(first[2], second[0]);
          rows.push({
            metric: shape + ' packument of a mirrored package, license and vulnerability policies on', unit: 'req/s', ours: withPolicy.rps, peer: verdaccio.rps, higherIsBetter: true, target: '≥ 3×', met: withPolicy.rps >= 3 * verdaccio.rps,
            note: 'without the policies ' + Math.round(without.rps) + ' req/s (with them ' + (withPolicy.rps / without.rps).toFixed(2) + '×); p99 ' + withPolicy.p99 + ' vs ' + verdaccio.p99 + ' ms; errors ' + withPolicy.errors,
          });
        }
      }
    } finally {
      await plain.stop();
      await gated.stop();
      await peer.stop();
    }
  }
  const [plainMs, gatedMs, peerMs, ceilingMs] = [median(times.plain), median(times.gated), median(times.peer), median(times.ceiling)];
  rows.unshift({
    metric: 'npm install, ' + packages + ' packages, cold, through pull-through, license and vulnerability policies on', unit: 'ms', ours: gatedMs, peer: peerMs, higherIsBetter: false, target: '≤ 0.7×', met: gatedMs <= 0.7 * peerMs,
    note: 'median of ' + rounds + '; without the policies ' + Math.round(plainMs) + ' ms (with them ' + (gatedMs / plainMs).toFixed(2) + '×); straight from the upstream (nginx) ' + Math.round(ceilingMs) + ' ms; CPU during the install ' + median(cpu.gated).toFixed(1) + ' s with, ' + median(cpu.plain).toFixed(1) + ' s without, Verdaccio ' + median(cpu.peer).toFixed(1) + ' s',
  });
  return rows;
}

/** `--policies`: the policies' cost, in `runs` rounds. */
export async function runPolicies(scaleName: 'full' | 'smoke', runs: number): Promise<Row[]> {
  const work = mkdtempSync(join(tmpdir(), 'bench-'));
  const scale = SCALES[scaleName];
  const { server, tree } = await staticTree(work, scale);
  try {
    return await measurePolicyCost(work, server.url, tree.direct, scale.treePackages, runs, scale);
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** The tree of `scale` as static files from nginx (a packument and tarballs per package), for the install ceiling and as an upstream. */
async function staticTree(work: string, scale: Scale): Promise<{ server: { url: string; name: string; stop(): Promise<void> }; tree: ReturnType<typeof dependencyTree>; tarballs: { manifest: Manifest; tarball: Buffer }[] }> {
  const tree = dependencyTree('bench-tree', scale.treePackages, scale.treeRoots);
  const tarballs: { manifest: Manifest; tarball: Buffer }[] = [];
  for (const manifest of tree.manifests) tarballs.push({ manifest, tarball: await packTarball(manifest) });
  const server = await startStaticServer(join(work, 'static-tree'), (url) => {
    for (const { manifest, tarball } of tarballs) {
      const dir = join(work, 'static-tree', manifest.name);
      mkdirSync(join(dir, '-'), { recursive: true });
      writeFileSync(join(dir, '-', manifest.name + '-' + manifest.version + '.tgz'), tarball);
      writeFileSync(join(dir, 'index.json'), JSON.stringify(staticPackument(manifest, tarball, url)));
    }
  });
  return { server, tree, tarballs };
}

/** `--pull-through`: only the cold install through pull-through mirroring, in `runs` rounds. */
export async function runPullThrough(scaleName: 'full' | 'smoke', runs: number): Promise<Row[]> {
  const work = mkdtempSync(join(tmpdir(), 'bench-'));
  const { server, tree } = await staticTree(work, SCALES[scaleName]);
  try {
    return [await measurePullThrough(work, server.url, tree.direct, SCALES[scaleName].treePackages, runs)];
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

export async function runBenchmarks(scaleName: 'full' | 'smoke'): Promise<Row[]> {
  const scale = SCALES[scaleName];
  const work = mkdtempSync(join(tmpdir(), 'bench-'));
  const targets: Target[] = [];
  let staticServer: { url: string; name: string; stop(): Promise<void> } | undefined;
  const extraServers: { stop(): Promise<void> }[] = [];
  try {
    log('starting both registries');
    targets.push(await startOurs(), await startPeer());
    const [ours, peer] = targets;

    log('generating and loading data');
    // A small package (3 versions) and a typical one (50), tarballs of the same size.
    const packages: Record<'small' | 'typical', Buffer[]> = { small: [], typical: [] };
    for (const [kind, count] of [['small', 3], ['typical', scale.typicalVersions]] as const) {
      for (let i = 0; i < count; i++) {
        const manifest: Manifest = { name: 'bench-' + kind, version: '1.' + i + '.0', description: 'A ' + kind + ' package', dependencies: { 'bench-tree-0': '^1.0.0' } };
        const tarball = await packTarball(manifest, scale.tarballBytes);
        packages[kind].push(tarball);
        for (const target of targets) await publish(target, publishBody(manifest, tarball, target.url));
      }
    }
    const large = (target: Target) => largePackument('bench-large', scale.largeVersions, scale.largeVersionBytes, target.url);
    for (const target of targets) await target.loadLarge(large(target));
    // The same tree as static files, for the install ceiling and as the upstream of pull-through.
    const { server: treeServer, tree, tarballs: treeTarballs } = await staticTree(work, scale);
    extraServers.push(treeServer);
    for (const { manifest, tarball } of treeTarballs) {
      for (const target of targets) await publish(target, publishBody(manifest, tarball, target.url));
    }
    const staticDir = join(work, 'static');
    mkdirSync(staticDir);
    writeFileSync(join(staticDir, 'small.tgz'), packages.small[0]);
    writeFileSync(join(staticDir, 'typical.tgz'), packages.typical[0]);
    staticServer = await startStaticServer(staticDir);

    const rows: Row[] = [];
    /** Until both registries are idle (and any other server named). */
    const idle = (...others: number[]) => quiet([...targets.map((t) => t.pid), ...others]);
    const both = async (label: string, measure: (t: Target) => Promise<Load>) => {
      const results: Load[] = [];
      for (const target of targets) {
        log(label + ': ' + target.name);
        await idle();
        results.push(await measure(target));
        if (results[results.length - 1].errors) log('  ' + results[results.length - 1].errors + ' errors or non-2xx answers');
      }
      return results;
    };
    const corgi = { accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*' };

    for (const kind of ['small', 'typical'] as const) {
      const versions = packages[kind].length;
      const [fullOurs, fullPeer] = await both('full packument, ' + kind, (t) => load(t.url + '/bench-' + kind, scale));
      rows.push({ metric: 'Full packument, ' + versions + ' versions', unit: 'req/s', ours: fullOurs.rps, peer: fullPeer.rps, higherIsBetter: true, target: '≥ 3×', note: 'p50 ' + fullOurs.p50 + ' vs ' + fullPeer.p50 + ' ms, p99 ' + fullOurs.p99 + ' vs ' + fullPeer.p99 + ' ms' });
      const [abbrOurs, abbrPeer] = await both('abbreviated packument, ' + kind, (t) => load(t.url + '/bench-' + kind, scale, corgi));
      rows.push({ metric: 'Abbreviated packument, ' + versions + ' versions', unit: 'req/s', ours: abbrOurs.rps, peer: abbrPeer.rps, higherIsBetter: true, target: '≥ 3×' });
    }
    // A 40 MB answer to each of 50 clients takes longer than autocannon's default 10 s time-out.
    const [largeOurs, largePeer] = await both('large packument', (t) => load(t.url + '/bench-large', scale, {}, scale.connections, 120));
    rows.push({ metric: 'Large packument, ' + scale.largeVersions + ' versions', unit: 'req/s', ours: largeOurs.rps, peer: largePeer.rps, higherIsBetter: true, target: '≥ 10×', note: 'p99 ' + largeOurs.p99 + ' vs ' + largePeer.p99 + ' ms; errors ' + largeOurs.errors + ' vs ' + largePeer.errors });
    // The large load comes from a process of its own, so that reading 40 MB answers does not stall
    // the event loop that times the small requests.
    const underLoad = await both('small p99 under large load', async (t) => {
      const heavy = backgroundLoad(t.url + '/bench-large', Math.max(1, Math.floor(scale.connections / 2)), scale.durationSeconds + 2);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const small = await load(t.url + '/bench-typical', scale, corgi, Math.max(1, Math.floor(scale.connections / 5)));
      await heavy;
      return small;
    });
    rows.push({ metric: 'Small packument p99 while the large one is loaded', unit: 'ms', ours: underLoad[0].p99, peer: underLoad[1].p99, higherIsBetter: false, target: '≤ 50 ms', met: underLoad[0].p99 <= 50 && underLoad[0].rps > 0, note: 'errors ' + underLoad[0].errors + ' vs ' + underLoad[1].errors });
    for (const kind of ['small', 'typical'] as const) {
      const tarballPath = '/bench-' + kind + '/-/bench-' + kind + '-1.0.0.tgz';
      const [tarOurs, tarPeer] = await both('tarball of the ' + kind + ' package', (t) => loadTarball(t.url + tarballPath, scale));
      log('tarball of the ' + kind + ' package: ' + staticServer.name);
      await idle();
      const ceiling = await loadTarball(staticServer.url + '/' + kind + '.tgz', scale);
      if (ceiling.errors) throw new Error(staticServer.name + ' answered ' + ceiling.errors + ' requests with an error: the ceiling would be wrong');
      log('tarball of the ' + kind + ' package: bare Node');
      const bare = await startBareNode(join(staticDir, kind + '.tgz'));
      await idle(bare.pid);
      const bareNode = await loadTarball(bare.url + '/' + kind + '.tgz', scale).finally(() => bare.stop());
      const tool = (ceiling as { tool?: string }).tool || 'autocannon';
      const kb = Math.round(packages[kind][0].length / 1024);
      rows.push({ metric: 'Tarball ' + kb + ' KB of the ' + kind + ' package (' + packages[kind].length + ' versions), ' + tool, unit: 'req/s', ours: tarOurs.rps, peer: tarPeer.rps, higherIsBetter: true, target: kind === 'small' ? '≥ 2×' : undefined, note: 'p99 ' + tarOurs.p99.toFixed(1) + ' vs ' + tarPeer.p99.toFixed(1) + ' ms; errors ' + tarOurs.errors + ' vs ' + tarPeer.errors });
      rows.push({
        metric: 'Tarball ' + kb + ' KB (' + kind + ') against ' + staticServer.name + ': ' + Math.round(ceiling.rps) + ' req/s',
        unit: '% of ceiling',
        ours: (100 * tarOurs.rps) / ceiling.rps,
        peer: (100 * tarPeer.rps) / ceiling.rps,
        higherIsBetter: true,
        target: kind === 'small' ? '≥ 70 %' : undefined,
        met: kind === 'small' ? tarOurs.rps >= 0.7 * ceiling.rps : undefined,
        note: 'Node alone, a bare `http` server sending the bytes from memory: ' + Math.round(bareNode.rps) + ' req/s, ' + ((100 * bareNode.rps) / ceiling.rps).toFixed(0) + ' %',
      });
    }

    log('npm publish latency');
    const publishTimes: number[][] = [];
    for (const target of targets) {
      await idle();
      const home = mkdtempSync(join(work, 'publish-'));
      const env = npmEnv(home, target.url, target.token);
      const times: number[] = [];
      for (let i = 0; i < scale.publishes; i++) {
        const dir = join(home, 'p' + i);
        mkdirSync(dir);
        writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'bench-published', version: '1.0.' + i, license: 'MIT' }));
        writeFileSync(join(dir, 'index.js'), 'module.exports = ' + i + ';\n');
        let failed = '';
        times.push(await timed(async () => {
          const result = await run('npm', ['publish'], { cwd: dir, env });
          if (result.code !== 0) failed = result.stderr;
        }));
        if (failed) throw new Error(target.name + ': npm publish failed: ' + failed);
      }
      publishTimes.push(times);
    }
    rows.push({ metric: 'npm publish, median of ' + scale.publishes, unit: 'ms', ours: median(publishTimes[0]), peer: median(publishTimes[1]), higherIsBetter: false, target: '≤ 1×' });

    // Both registries and the client's own limit (the same tree as static files from nginx), in
    // turn in each round, so that the machine's drift between rounds weighs on all three alike.
    const installers = [...targets.map((t) => ({ url: t.url, name: t.name })), { url: treeServer.url, name: treeServer.name }];
    const samples = installers.map(() => ({ cold: [] as number[], warm: [] as number[] }));
    for (let round = 0; round < scale.installRounds; round++) {
      for (const i of inTurn(installers.length, round)) {
        log('npm install, round ' + (round + 1) + ' of ' + scale.installRounds + ': ' + installers[i].name);
        await idle();
        const times = await installTimes(work, installers[i].url, tree.direct, installers[i].name);
        samples[i].cold.push(times.cold);
        samples[i].warm.push(times.warm);
      }
    }
    const [oursInstall, peerInstall, ceilingInstall] = samples.map((s) => ({ cold: median(s.cold), warm: median(s.warm) }));
    const installs = [oursInstall, peerInstall];
    const rounds = scale.installRounds > 1 ? ' (median of ' + scale.installRounds + ' rounds)' : '';
    rows.push({ metric: 'npm install, ' + scale.treePackages + ' packages, cold cache' + rounds, unit: 'ms', ours: installs[0].cold, peer: installs[1].cold, higherIsBetter: false, target: '≤ 0.8×' });
    rows.push({ metric: 'npm install, warm cache' + rounds, unit: 'ms', ours: installs[0].warm, peer: installs[1].warm, higherIsBetter: false, target: '≤ 0.8×' });
    rows.push({ metric: 'npm install, cold cache, against the same tree from ' + treeServer.name + ': ' + Math.round(ceilingInstall.cold) + ' ms', unit: '× nginx', ours: installs[0].cold / ceilingInstall.cold, peer: installs[1].cold / ceilingInstall.cold, higherIsBetter: false, target: '≤ 1.05 (ours)', met: installs[0].cold <= 1.05 * ceilingInstall.cold });
    rows.push({ metric: 'npm install, warm cache, against the same tree from ' + treeServer.name + ': ' + Math.round(ceilingInstall.warm) + ' ms', unit: '× nginx', ours: installs[0].warm / ceilingInstall.warm, peer: installs[1].warm / ceilingInstall.warm, higherIsBetter: false, target: '≤ 1.05 (ours)', met: installs[0].warm <= 1.05 * ceilingInstall.warm });

    rows.push(await measurePullThrough(work, treeServer.url, tree.direct, scale.treePackages, scale.installRounds));

    rows.push({ metric: 'Peak RSS of the registry process', unit: 'MB', ours: peakRss(ours.pid) / 1e6, peer: peakRss(peer.pid) / 1e6, higherIsBetter: false, note: 'ours includes the embedded CouchDB, same process' });

    // The same cold install from this registry just restarted: its packument and tarball caches are
    // empty, every first read is CouchDB's (as after a deployment). After the peak RSS, which the
    // restarted process would not show.
    const restartedInstallers = [
      {
        name: 'this registry just restarted',
        url: () => targets[0].url,
        // Stopped and started again on its data.
        before: async () => {
          const running = targets[0] as Ours;
          await running.halt();
          targets[0] = await startOurs({}, running);
        },
        times: [] as number[],
      },
      { name: treeServer.name, url: () => treeServer.url, before: async () => undefined, times: [] as number[] },
    ];
    for (let round = 0; round < scale.installRounds; round++) {
      for (const i of inTurn(restartedInstallers.length, round)) {
        const installer = restartedInstallers[i];
        log('npm install, round ' + (round + 1) + ' of ' + scale.installRounds + ': ' + installer.name);
        await installer.before();
        await idle();
        installer.times.push((await installTimes(work, installer.url(), tree.direct, installer.name, false)).cold);
        log('  ' + Math.round(installer.times[installer.times.length - 1]) + ' ms');
      }
    }
    const [restartedOurs, restartedCeiling] = restartedInstallers.map((installer) => median(installer.times));
    rows.push({
      metric: 'npm install, cold cache, from this registry just restarted (its caches empty), against the same tree from ' + treeServer.name + ': ' + Math.round(restartedCeiling) + ' ms' + rounds,
      unit: '× nginx', ours: restartedOurs / restartedCeiling, peer: null, higherIsBetter: false, note: Math.round(restartedOurs) + ' ms; ours only (a restart of the peer is not measured)',
    });
    const ingest = await measureIngest(scale.ingestPackages);
    const ingestLabel = 'Replication ingest, ' + scale.ingestPackages.toLocaleString('en-US') + ' packages';
    rows.push({ metric: ingestLabel + ', npm change feed (stand-in upstream)', unit: 'docs/s', ours: ingest.feed, peer: null, higherIsBetter: true, note: 'Verdaccio has no replication: its uplinks fetch on demand' });
    rows.push({ metric: ingestLabel + ', native CouchDB replication into the mirror database', unit: 'docs/s', ours: ingest.native, peer: null, higherIsBetter: true });
    log('replication lag');
    const lag = await measureReplicationLag(scale.lagSamples);
    rows.push({
      metric: 'Replication lag, publish upstream to the new version served downstream (native), p95 of ' + scale.lagSamples, unit: 'ms', ours: lag.p95, peer: null, higherIsBetter: false,
      target: '≤ 2,000 ms', met: lag.p95 <= 2000, note: 'p50 ' + lag.p50 + ' ms; the publish itself included',
    });
    log('site convergence');
    const sites = await measureSiteConvergence(scale.lagSamples);
    rows.push({
      metric: 'Site convergence, publish at one site to the new version served at the other (two sites, both ways), p95 of ' + scale.lagSamples, unit: 'ms', ours: sites.p95, peer: null, higherIsBetter: false,
      target: '≤ 2,000 ms', met: sites.p95 <= 2000, note: 'p50 ' + sites.p50 + ' ms; the publish itself included',
    });

    for (const row of rows) {
      if (row.met !== undefined || !row.target || row.peer === null) continue;
      const ratio = row.ours / row.peer;
      const factor = Number(/([\d.]+)×/.exec(row.target)![1]);
      row.met = row.target.startsWith('≥') ? ratio >= factor : ratio <= factor;
    }
    return rows;
  } finally {
    await staticServer?.stop();
    for (const server of extraServers) await server.stop();
    for (const target of targets) await target.stop().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

export function ratio(row: Row): string {
  if (row.peer === 0 && row.ours > 0 && row.higherIsBetter) return '∞ (Verdaccio completed none)';
  if (row.peer === null || !Number.isFinite(row.ours) || !row.peer) return '–';
  return (row.ours / row.peer).toFixed(2) + '×';
}

export function markdownTable(rows: Row[]): string {
  // Ratios (× nginx) to two decimals: their targets are 1.05.
  const format = (n: number | null, unit: string) => (n === null || !Number.isFinite(n) ? '–' : n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(unit.startsWith('×') ? 2 : 1));
  const lines = ['| Measure | Unit | This registry | Verdaccio | Ratio (ours / Verdaccio) | Target | Met |', '| --- | --- | ---: | ---: | ---: | --- | --- |'];
  for (const row of rows) {
    // A target of a ratio (≥ 3×, ≤ 1×) is judged here from the two figures.
    const wanted = /^([≥≤]) ([\d.]+)×$/.exec(row.target || '');
    const met = row.met !== undefined || !wanted || row.peer === null ? row.met : wanted[1] === '≥' ? row.ours >= Number(wanted[2]) * row.peer : row.ours <= Number(wanted[2]) * row.peer;
    lines.push('| ' + row.metric + (row.note ? ' (' + row.note + ')' : '') + ' | ' + row.unit + ' | ' + format(row.ours, row.unit) + ' | ' + format(row.peer, row.unit) + ' | ' + ratio(row) + ' | ' + (row.target || '') + ' | ' + (met === undefined ? '' : met ? 'yes' : 'no') + ' |');
  }
  return lines.join('\n');
}

/**
 * `--restart [--runs 5]`: only the cold install from this registry just restarted (its packument and
 * tarball caches empty, every read a first read), beside the same install straight from nginx, in
 * turn in each round, medians; as the full run's row.
 */
export async function runRestart(scaleName: 'full' | 'smoke', runs: number): Promise<Row[]> {
  const scale = SCALES[scaleName];
  const work = mkdtempSync(join(tmpdir(), 'bench-'));
  let ours: Ours | undefined;
  const { server: treeServer, tree, tarballs } = await staticTree(work, scale);
  try {
    ours = await startOurs();
    for (const { manifest, tarball } of tarballs) await publish(ours, publishBody(manifest, tarball, ours.url));
    const installers = [
      {
        name: 'this registry just restarted',
        url: () => (ours as Ours).url,
        before: async () => {
          const running = ours as Ours;
          await running.halt();
          ours = await startOurs({}, running);
        },
        times: [] as number[],
      },
      { name: treeServer.name, url: () => treeServer.url, before: async () => undefined, times: [] as number[] },
    ];
    for (let round = 0; round < runs; round++) {
      for (const i of inTurn(installers.length, round)) {
        const installer = installers[i];
        log('npm install, round ' + (round + 1) + ' of ' + runs + ': ' + installer.name);
        await installer.before();
        await quiet([(ours as Ours).pid]);
        installer.times.push((await installTimes(work, installer.url(), tree.direct, installer.name, false)).cold);
        log('  ' + Math.round(installer.times[installer.times.length - 1]) + ' ms');
      }
    }
    const [restarted, ceiling] = installers.map((installer) => median(installer.times));
    return [{
      metric: 'npm install, ' + scale.treePackages + ' packages, cold cache, from this registry just restarted (its caches empty), against the same tree from ' + treeServer.name + ': ' + Math.round(ceiling) + ' ms (median of ' + runs + ' rounds)',
      unit: '× nginx', ours: restarted / ceiling, peer: null, higherIsBetter: false, target: '≤ 1.05 (ours)', met: restarted <= 1.05 * ceiling,
      note: Math.round(restarted) + ' ms; rounds ' + installers.map((installer) => installer.name + ' ' + installer.times.map(Math.round).join('/')).join(', '),
    }];
  } finally {
    await ours?.stop().catch(() => undefined);
    await treeServer.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
