/**
 * A downstream registry killed (SIGKILL, or stopped with SIGTERM) in the middle of its initial sync and started again ends
 * with exactly the upstream's documents: none missing, none duplicated or in conflict. Both paths:
 * the npm change feed (checkpoint in CouchDB) and native CouchDB replication (CouchDB's checkpoints).
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { basicAuthOf, startTestRegistry, TestRegistry } from '../helpers/registry';
import { killProcess, RegistryProcess, startRegistryProcess } from '../helpers/process';
import { readerSource } from '../helpers/principals';
import { eventually } from '../helpers/wait';
import { databasesOf } from '../helpers/registry';

const PACKAGES = 1500;
const PASSWORD = 'restart-admin';

let upstream: TestRegistry;

/** Admin access to a CouchDB (the embedded one of a process, or COUCHDB_URL). */
function couchOf(proc: RegistryProcess): { origin: string; auth: string } {
  if (process.env.COUCHDB_URL) return { origin: new URL(process.env.COUCHDB_URL).origin, auth: basicAuthOf(process.env.COUCHDB_URL) };
  return { origin: proc.couchUrl, auth: 'Basic ' + Buffer.from('admin:' + PASSWORD).toString('base64') };
}

async function couchJson(couch: { origin: string; auth: string }, path: string): Promise<any> {
  const response = await fetch(couch.origin + path, { headers: { authorization: couch.auth, accept: 'application/json' } });
  return response.json();
}

/** The package documents of a database: id → doc (design documents left out). */
async function packageDocs(couch: { origin: string; auth: string }, db: string): Promise<Map<string, any>> {
  const all = await couchJson(couch, '/' + db + '/_all_docs?include_docs=true&conflicts=true');
  const docs = new Map<string, any>();
  for (const row of all.rows || []) if (!row.id.startsWith('_design/')) docs.set(row.id, row.doc);
  return docs;
}

beforeAll(async () => {
  upstream = await startTestRegistry();
  // Many small packages, written as admin straight into the upstream's database.
  const now = new Date().toISOString();
  const docs = Array.from({ length: PACKAGES }, (_, i) => {
    const name = 'bulk-' + String(i).padStart(5, '0');
    return {
      _id: name,
      name,
      origin: upstream.registryId,
      'dist-tags': { latest: '1.0.0' },
      versions: { '1.0.0': { name, version: '1.0.0', dist: { integrity: 'sha512-AAAA', shasum: '0'.repeat(40), tarball: 'x' } } },
      time: { created: now, modified: now, '1.0.0': now },
      maintainers: [{ name: 'bulk' }],
    };
  });
  for (let i = 0; i < docs.length; i += 500) {
    const response = await fetch(new URL(upstream.adminCouchUrl).origin + '/' + upstream.registryDb + '/_bulk_docs', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: basicAuthOf(upstream.adminCouchUrl) },
      body: JSON.stringify({ docs: docs.slice(i, i + 500) }),
    });
    if (response.status !== 201) throw new Error('bulk load failed: ' + response.status);
  }
});

afterAll(() => upstream?.stop());

async function killMidSyncAndRestart(env: Record<string, string>, dbName: string, signal: NodeJS.Signals = 'SIGKILL') {
  const dataDir = mkdtempSync(join(tmpdir(), 'registry-restart-'));
  const settings = { ...env, DATA_DIR: dataDir, REGISTRY_DB: dbName, REGISTRY_ADMIN_PASSWORD: PASSWORD };
  let downstream = await startRegistryProcess(settings);
  try {
    const couch = couchOf(downstream);
    // Kill it once some, but not all, packages have arrived.
    const arrived = await eventually(async () => {
      const info = await couchJson(couch, '/' + dbName + '-mirror');
      return info.doc_count > 50 ? info.doc_count : null;
    }, 60_000, 'the first packages to arrive');
    await killProcess(downstream.child, signal);
    expect(arrived).toBeLessThan(PACKAGES);

    downstream = await startRegistryProcess(settings);
    const upstreamDocs = await packageDocs({ origin: new URL(upstream.adminCouchUrl).origin, auth: basicAuthOf(upstream.adminCouchUrl) }, upstream.registryDb);
    const mirrored = await eventually(async () => {
      const docs = await packageDocs(couchOf(downstream), dbName + '-mirror');
      return docs.size >= upstreamDocs.size ? docs : null;
    }, 120_000, 'all ' + PACKAGES + ' packages downstream');
    return { upstreamDocs, mirrored };
  } finally {
    await killProcess(downstream.child);
    if (process.env.COUCHDB_URL) {
      const couch = couchOf(downstream);
      // The continuous replication first (a real CouchDB keeps running it), then the databases.
      const job = await couchJson(couch, '/_replicator/registry-' + dbName + '-from-upstream');
      if (job && job._rev) await fetch(couch.origin + '/_replicator/registry-' + dbName + '-from-upstream?rev=' + job._rev, { method: 'DELETE', headers: { authorization: couch.auth } });
      for (const db of databasesOf(dbName)) await fetch(couch.origin + '/' + db, { method: 'DELETE', headers: { authorization: couch.auth } });
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const dbName = (kind: string) => (process.env.COUCHDB_URL ? 'registry-restart-' + kind + '-' + Math.random().toString(36).slice(2, 8) : 'registry');

it('npm change feed: killed mid-sync and restarted, it ends with the upstream\'s documents, none missing, none twice', async () => {
  const { upstreamDocs, mirrored } = await killMidSyncAndRestart(
    { UPSTREAM_REGISTRY: upstream.url, REPLICATION_FEED: upstream.url + '/-/replicate', REPLICATION_MODE: 'all', REPLICATION_CONCURRENCY: '4', REPLICATION_POLL_MS: '200' },
    dbName('feed'),
  );
  expect([...mirrored.keys()].sort()).toEqual([...upstreamDocs.keys()].sort());
  for (const [id, doc] of mirrored) {
    expect(doc._conflicts).toBeUndefined();
    // Written once per upstream revision: a replay after the restart is recognised and skipped.
    expect(doc.origin_rev).toBe(upstreamDocs.get(id)._rev);
    expect(doc._rev.startsWith('1-')).toBe(true);
  }
});

it('npm change feed: stopped cleanly (SIGTERM) mid-sync, it resumes without skipping what the interrupted batch had not done', async () => {
  const { upstreamDocs, mirrored } = await killMidSyncAndRestart(
    { UPSTREAM_REGISTRY: upstream.url, REPLICATION_FEED: upstream.url + '/-/replicate', REPLICATION_MODE: 'all', REPLICATION_CONCURRENCY: '4', REPLICATION_POLL_MS: '200' },
    dbName('feed-term'),
    'SIGTERM',
  );
  expect([...mirrored.keys()].sort()).toEqual([...upstreamDocs.keys()].sort());
});

it('native CouchDB replication: killed mid-sync and restarted, it ends with the same documents and revisions', async () => {
  const source = await readerSource(upstream.adminCouchUrl, upstream.registryDb);
  const { upstreamDocs, mirrored } = await killMidSyncAndRestart({ REPLICATION_COUCHDB: source }, dbName('native'));
  expect([...mirrored.keys()].sort()).toEqual([...upstreamDocs.keys()].sort());
  for (const [id, doc] of mirrored) {
    expect(doc._conflicts).toBeUndefined();
    expect(doc._rev).toBe(upstreamDocs.get(id)._rev);
  }
});
