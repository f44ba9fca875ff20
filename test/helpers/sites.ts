/**
 * Sites of one registry for tests and the bench: registry processes (so that one can be killed with
 * SIGKILL), each on its own embedded server (or, with COUCHDB_URL, its own databases of that CouchDB;
 * `embedded` names sites that stay on an embedded server of their own even then: a mixed registry),
 * each naming the others in SITE_PEERS through a TCP relay that the test can cut: a network partition
 * between sites, which neither site notices except by its connections failing.
 */
import { mkdtempSync, rmSync } from 'fs';
import { createServer, Server, Socket, connect } from 'net';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { killProcess, RegistryProcess, startRegistryProcess } from './process';
import { sha1, sha512 } from './npm';

export const SITE_PASSWORD = 'sites-test-site-password';
const ADMIN_PASSWORD = 'sites-test-admin';

/** A TCP relay to a port that may change (a restarted site) and that can be cut and healed. */
export class Relay {
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  private to: number | null = null;
  private cut = false;
  port = 0;
  /** The request lines sent through it (`GET /path HTTP/1.1`), the last 10,000. */
  readonly requests: string[] = [];

  async start(): Promise<this> {
    this.server = createServer((client) => {
      if (this.cut || this.to === null) return client.destroy();
      const upstream = connect(this.to, '127.0.0.1');
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      client.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString('latin1').match(/^(?:GET|HEAD|POST|PUT|DELETE|COPY) \S+ HTTP\/1\.[01]/gm) || []) this.requests.push(line);
        this.requests.splice(0, Math.max(0, this.requests.length - 10_000));
      });
      client.pipe(upstream);
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  target(port: number | null): void {
    this.to = port;
  }

  /** Every connection through it is dropped, and new ones are refused, until `heal`. */
  partition(): void {
    this.cut = true;
    for (const socket of this.sockets) socket.destroy();
  }

  heal(): void {
    this.cut = false;
  }

  async stop(): Promise<void> {
    this.partition();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export interface Site {
  name: string;
  db: string;
  dataDir: string;
  proc: RegistryProcess | null;
  /** The relay the other sites reach this site's CouchDB through. */
  relay: Relay;
  url(): string;
  couchOrigin(): string;
  adminAuth(): string;
}

function couchPort(proc: RegistryProcess): number {
  return Number(new URL(proc.couchUrl).port || 80);
}

export interface Sites {
  sites: Site[];
  /**
   * Makes an account at `site` and returns its token: by sign-up on the embedded server; on a real
   * CouchDB (where sites need closed sign-up) as the admin, the account then being in the one `_users`.
   */
  signup(site: Site, name: string, password: string): Promise<string>;
  /** Starts a site again on its data (after a kill). */
  restart(site: Site): Promise<void>;
  kill(site: Site): Promise<void>;
  partition(): void;
  heal(): void;
  stop(): Promise<void>;
}

export interface SitesOptions {
  /**
   * The sites (by their place, 0 for A) that run on an embedded server of their own even with
   * COUCHDB_URL set: a registry of sites on a real CouchDB and sites on the embedded server. They
   * have closed sign-up then too (accounts are made at each site by its admin).
   */
  embedded?: number[];
}

/** Starts `count` sites, each naming every other in SITE_PEERS. */
export async function startSites(count: number, env: Record<string, string> = {}, options: SitesOptions = {}): Promise<Sites> {
  const run = Math.random().toString(36).slice(2, 8);
  const couchdb = process.env.COUCHDB_URL ? new URL(process.env.COUCHDB_URL) : null;
  /** The CouchDB of the sites on COUCHDB_URL (null for sites on an embedded server), by their place. */
  const sharedOf = (i: number) => (couchdb && !(options.embedded || []).includes(i) ? couchdb : null);
  const sites: Site[] = [];
  const onShared = new Set<Site>();
  for (let i = 0; i < count; i++) {
    const relay = await new Relay().start();
    const shared = sharedOf(i);
    const site: Site = {
      name: String.fromCharCode(65 + i),
      db: shared ? 'registry-site' + String.fromCharCode(97 + i) + '-' + run : 'registry',
      dataDir: mkdtempSync(join(tmpdir(), 'registry-site-' + String.fromCharCode(97 + i) + '-')),
      proc: null,
      relay,
      url: () => site.proc!.url,
      couchOrigin: () => (shared ? shared.origin : site.proc!.couchUrl),
      adminAuth: () =>
        'Basic ' + Buffer.from(shared ? decodeURIComponent(shared.username) + ':' + decodeURIComponent(shared.password) : 'admin:' + ADMIN_PASSWORD).toString('base64'),
    };
    sites.push(site);
    if (shared) onShared.add(site);
  }
  const adminOfShared = () => 'Basic ' + Buffer.from(decodeURIComponent(couchdb!.username) + ':' + decodeURIComponent(couchdb!.password)).toString('base64');
  // On a real CouchDB sites need closed sign-up, which changes _users/_security for everyone: put back at stop.
  const usersSecurity = onShared.size ? await (await fetch(couchdb!.origin + '/_users/_security', { headers: { authorization: adminOfShared() } })).text() : null;
  const settings = (site: Site) => ({
    // (A site kept on an embedded server keeps the default, open: its CouchDB peers close it, see sites-mixed.)
    ...(onShared.has(site) ? { REGISTRY_SIGNUP: 'closed' } : {}),
    // A site kept on an embedded server while COUCHDB_URL is set.
    ...(couchdb && !onShared.has(site) ? { COUCHDB_URL: '' } : {}),
    DATA_DIR: site.dataDir,
    REGISTRY_DB: site.db,
    REGISTRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
    // The other sites reach this one's CouchDB through its relay, under the relay's address.
    COUCHDB_HOSTS: '127.0.0.1:' + site.relay.port,
    SITE_PASSWORD,
    SITE_CHECK_SECONDS: '2',
    SITE_PEERS: sites
      .filter((other) => other !== site)
      .map((other) => 'http://registry-site:' + SITE_PASSWORD + '@127.0.0.1:' + other.relay.port + '/' + other.db)
      .join(','),
    ...env,
  });
  const start = async (site: Site) => {
    site.proc = await startRegistryProcess(settings(site));
    site.relay.target(onShared.has(site) ? Number(couchdb!.port || 80) : couchPort(site.proc));
  };
  await Promise.all(sites.map(start));
  return {
    sites,
    signup: async (site, name, password) => {
      const closed = couchdb !== null;
      const response = await fetch(site.url() + '/-/user/org.couchdb.user:' + name, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', ...(closed ? { authorization: site.adminAuth() } : {}) },
        body: JSON.stringify({ name, password, email: name + '@example.com' }),
      });
      const body = (await response.json()) as { token?: string; error?: string };
      if (response.status !== 201 || !body.token) throw new Error('sign-up of ' + name + ' at site ' + site.name + ': ' + response.status + ' ' + body.error);
      if (!closed) return body.token;
      // The admin's request made the account; its owner logs in for a token of their own.
      const login = await fetch(site.url() + '/-/user/org.couchdb.user:' + name, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, password }) });
      return ((await login.json()) as { token: string }).token;
    },
    restart: start,
    kill: async (site) => {
      if (site.proc) await killProcess(site.proc.child);
      // A site on the embedded server is down with its process; on a shared CouchDB only its gateway is.
      if (!onShared.has(site)) site.relay.target(null);
    },
    partition: () => sites.forEach((site) => site.relay.partition()),
    heal: () => sites.forEach((site) => site.relay.heal()),
    stop: async () => {
      for (const site of sites) if (site.proc) await killProcess(site.proc.child, 'SIGTERM');
      if (onShared.size) {
        // The continuous jobs first (a real CouchDB keeps running them), then the databases.
        const auth = adminOfShared();
        const jobs = (await (await fetch(couchdb!.origin + '/_replicator/_all_docs', { headers: { authorization: auth } })).json()) as { rows?: { id: string; value: { rev: string } }[] };
        for (const row of jobs.rows || []) {
          if ([...onShared].some((site) => row.id.startsWith('registry-' + site.db + '-from-site-'))) {
            await fetch(couchdb!.origin + '/_replicator/' + encodeURIComponent(row.id) + '?rev=' + row.value.rev, { method: 'DELETE', headers: { authorization: auth } });
          }
        }
        for (const site of onShared) {
          for (const suffix of ['', '-mirror', '-tokens', '-state', '-stage', '-downloads']) await fetch(couchdb!.origin + '/' + site.db + suffix, { method: 'DELETE', headers: { authorization: auth } });
        }
        if (usersSecurity) await fetch(couchdb!.origin + '/_users/_security', { method: 'PUT', headers: { authorization: auth, 'content-type': 'application/json' }, body: usersSecurity });
      }
      for (const site of sites) {
        await site.relay.stop();
        rmSync(site.dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** The npm publish body of one version (as npm sends it), with its own tarball bytes. */
export function versionBody(name: string, version: string, tarball: Buffer): Record<string, unknown> {
  return {
    _id: name,
    name,
    description: 'sites test',
    'dist-tags': { latest: version },
    versions: { [version]: { name, version, description: 'sites test', dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'x' } } },
    _attachments: { [name.split('/').pop() + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
  };
}

/** Publishes `name@version` at `url` as npm does; the HTTP status (0 when the site cannot be reached). */
export async function publishAt(url: string, token: string, name: string, version: string, tarball: Buffer): Promise<number> {
  try {
    const response = await fetch(url + '/' + encodeURIComponent(name).replace('%40', '@'), {
      method: 'PUT',
      headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json', 'npm-command': 'publish' },
      body: JSON.stringify(versionBody(name, version, tarball)),
      signal: AbortSignal.timeout(30_000),
    });
    await response.arrayBuffer();
    return response.status;
  } catch {
    return 0;
  }
}

/** What a site serves of a package: version → integrity, and its dist-tags; null when it has none. */
export async function served(url: string, name: string): Promise<{ versions: Record<string, string>; tags: Record<string, string> } | null> {
  const response = await fetch(url + '/' + encodeURIComponent(name).replace('%40', '@'), { headers: { accept: 'application/json' } });
  if (response.status !== 200) {
    await response.arrayBuffer();
    return null;
  }
  const doc = (await response.json()) as { versions: Record<string, { dist: { integrity: string } }>; 'dist-tags': Record<string, string> };
  const versions: Record<string, string> = {};
  for (const version of Object.keys(doc.versions).sort()) versions[version] = doc.versions[version].dist.integrity;
  const tags: Record<string, string> = {};
  for (const tag of Object.keys(doc['dist-tags']).sort()) tags[tag] = doc['dist-tags'][tag];
  return { versions, tags };
}

/** Package documents of a site's registry database that still have conflicting revisions. */
export async function conflicted(site: Site): Promise<string[]> {
  const response = await fetch(site.couchOrigin() + '/' + site.db + '/_all_docs?include_docs=true&conflicts=true', { headers: { authorization: site.adminAuth() } });
  const body = (await response.json()) as { rows: { id: string; doc?: { _conflicts?: string[] } }[] };
  return body.rows.filter((row) => !row.id.startsWith('_design/') && row.doc && row.doc._conflicts && row.doc._conflicts.length).map((row) => row.id);
}

/** The winning revision of `name` in a site's registry database, and its versions (null when it has none). */
async function stored(site: Site, name: string): Promise<{ rev: string; versions: string[] } | null> {
  const response = await fetch(site.couchOrigin() + '/' + site.db + '/' + encodeURIComponent(name), { headers: { authorization: site.adminAuth() } });
  if (response.status !== 200) {
    await response.arrayBuffer();
    return null;
  }
  const doc = (await response.json()) as { _rev: string; versions?: Record<string, unknown> };
  return { rev: doc._rev, versions: Object.keys(doc.versions || {}).sort() };
}

/**
 * Whether the sites have converged on each of `names`: every site holds the same winning revision, with
 * no conflict left, both before and after what they serve is read (so that a merge finishing meanwhile
 * is not taken for the end: a merge revision that was the winner for a moment is the same at every
 * site), and serves exactly that revision's versions, with the same integrity and dist-tags everywhere.
 * The shared view of them when they have, else null.
 */
export async function convergedView(sites: Site[], names: string[]): Promise<Map<string, Record<string, string>> | null> {
  const snapshot = async (): Promise<string | null> => {
    for (const site of sites) if ((await conflicted(site)).length) return null;
    const revs = await Promise.all(names.map((name) => Promise.all(sites.map((site) => stored(site, name)))));
    if (revs.some((perSite) => perSite.some((s) => s === null) || perSite.some((s) => s!.rev !== perSite[0]!.rev))) return null;
    return JSON.stringify(revs);
  };
  const before = await snapshot();
  if (before === null) return null;
  const view = new Map<string, Record<string, string>>();
  for (const name of names) {
    const seen = await Promise.all(sites.map((site) => served(site.url(), name)));
    if (seen.some((s) => s === null)) return null;
    const first = JSON.stringify(seen[0]);
    if (seen.some((s) => JSON.stringify(s) !== first)) return null;
    view.set(name, seen[0]!.versions);
  }
  if ((await snapshot()) !== before) return null;
  // What the sites serve is the revision they hold (a cache that kept an older one would show here).
  const revs = JSON.parse(before) as { versions: string[] }[][];
  for (const [i, name] of names.entries()) {
    if (JSON.stringify(Object.keys(view.get(name)!).sort()) !== JSON.stringify(revs[i][0].versions)) return null;
  }
  return view;
}
