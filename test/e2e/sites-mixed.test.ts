/**
 * A registry of two sites, one on a real CouchDB (`COUCHDB_URL`) and one on the embedded server,
 * replicating each other both ways: each pulls the other with its own replicator (CouchDB's, which
 * asks the embedded server for documents as `multipart/mixed`, and PouchDB's). Packages published at
 * either site are served, whole, at both. Runs only with COUCHDB_URL (the embedded site needs no
 * configuration, the CouchDB one does).
 */
import { createHash } from 'crypto';
import { convergedView, publishAt, served, Site, Sites, startSites } from '../helpers/sites';
import { eventually } from '../helpers/wait';

const withCouchDB = process.env.COUCHDB_URL ? it : it.skip;

let sites: Sites | undefined;
let onCouch: Site;
let embedded: Site;
const run = Math.random().toString(36).slice(2, 8);
const tokens = new Map<Site, string>();
/** The tokens, at each site, of the one person who publishes at both. */
const both = Object.assign(new Map<Site, string>(), { name: 'mixed-both-' + run });

const integrity = (data: Buffer) => 'sha512-' + createHash('sha512').update(data).digest('base64');
const tarball = (name: string, version: string, site: Site) => Buffer.from('tarball of ' + name + '@' + version + ' published at site ' + site.name + ' ' + 'x'.repeat(2000));

async function tarballAt(site: Site, name: string, version: string): Promise<Buffer> {
  const response = await fetch(site.url() + '/' + name + '/-/' + name + '-' + version + '.tgz');
  expect(response.status).toBe(200);
  return Buffer.from(await response.arrayBuffer());
}

beforeAll(async () => {
  if (!process.env.COUCHDB_URL) return;
  // Site A on the real CouchDB, site B on an embedded server of its own.
  sites = await startSites(2, {}, { embedded: [1] });
  [onCouch, embedded] = sites.sites;
  // Once B has read A's _design/mirror (A's accounts do not replicate), people cannot sign up at B either.
  await eventually(async () => ((await signupAt(embedded, 'mixed-early-' + run)).status === 403 ? true : null), 30_000, 'sign-up at the embedded site to close');
  // Each site's admin makes the account of the user who publishes there.
  tokens.set(onCouch, await sites.signup(onCouch, 'mixed-a-' + run, 'mixed-sites-password'));
  tokens.set(embedded, await accountAt(embedded, 'mixed-b-' + run, 'mixed-sites-password'));
  // One person with an account at each site (the same name), publishing one package at both.
  both.set(onCouch, await sites.signup(onCouch, both.name, 'mixed-both-password'));
  both.set(embedded, await accountAt(embedded, both.name, 'mixed-both-password'));
});

/** A sign-up at `site`'s gateway, as `npm adduser` sends it (as the site's admin when `admin`). */
function signupAt(site: Site, name: string, password = 'mixed-sites-password', admin = false): Promise<Response> {
  return fetch(site.url() + '/-/user/org.couchdb.user:' + name, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...(admin ? { authorization: site.adminAuth() } : {}) },
    body: JSON.stringify({ name, password, email: name + '@example.com' }),
  });
}

/** An account made by the site's admin through its gateway, and a token of its owner's log-in. */
async function accountAt(site: Site, name: string, password: string): Promise<string> {
  expect((await signupAt(site, name, password, true)).status).toBe(201);
  const login = await fetch(site.url() + '/-/user/org.couchdb.user:' + name, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, password }) });
  expect(login.status).toBe(201);
  return ((await login.json()) as { token: string }).token;
}

withCouchDB('the embedded site keeps its accounts apart from the CouchDB site: sign-up is closed to people there, its admin makes accounts, and health is not degraded for it', async () => {
  const refused = await signupAt(embedded, 'mixed-stranger-' + run);
  expect(refused.status).toBe(403);
  expect(((await refused.json()) as { error: string }).error).toContain('accounts do not replicate');
  const status = (await (await fetch(embedded.url() + '/-/replication', { headers: { authorization: 'Bearer ' + tokens.get(embedded) } })).json()) as { sites: { peers: { accounts: { state: string } }[] } };
  expect(status.sites.peers.map((peer) => peer.accounts.state)).toEqual(['not-replicated']);
  await eventually(async () => (((await (await fetch(embedded.url() + '/-/health')).json()) as { status: string }).status === 'ok' ? true : null), 30_000, 'the embedded site to be healthy');
});

afterAll(async () => {
  await sites?.stop();
  // The accounts made in the real CouchDB's _users (the embedded site's went with its data).
  const couch = process.env.COUCHDB_URL ? new URL(process.env.COUCHDB_URL) : null;
  if (!couch || !sites) return;
  const auth = onCouch.adminAuth();
  for (const name of ['mixed-a-' + run, both.name]) {
    const url = couch.origin + '/_users/org.couchdb.user:' + name;
    const doc = await fetch(url, { headers: { authorization: auth } });
    if (doc.status === 200) await fetch(url + '?rev=' + ((await doc.json()) as { _rev: string })._rev, { method: 'DELETE', headers: { authorization: auth } });
  }
});

withCouchDB('packages published at the CouchDB site and at the embedded site are served, whole, at both', async () => {
  const published = new Map<string, Map<string, Buffer>>();
  const publish = async (site: Site, name: string, version: string, token = tokens.get(site)!) => {
    const data = tarball(name, version, site);
    expect(await publishAt(site.url(), token, name, version, data)).toBe(201);
    if (!published.has(name)) published.set(name, new Map());
    published.get(name)!.set(version, data);
  };
  const fromCouch = 'mixed-from-couch-' + run;
  const fromEmbedded = 'mixed-from-embedded-' + run;
  await publish(onCouch, fromCouch, '1.0.0');
  await publish(embedded, fromEmbedded, '1.0.0');
  await publish(embedded, fromEmbedded, '1.1.0');
  // The embedded site's package reaches the CouchDB site (CouchDB's replicator pulling from the embedded server).
  const there = await eventually(async () => {
    const seen = await served(onCouch.url(), fromEmbedded);
    return seen && Object.keys(seen.versions).length === 2 ? seen : null;
  }, 120_000, fromEmbedded + ' at the CouchDB site');
  expect(there.versions).toEqual({ '1.0.0': integrity(published.get(fromEmbedded)!.get('1.0.0')!), '1.1.0': integrity(published.get(fromEmbedded)!.get('1.1.0')!) });
  // A later version of a package that is already there arrives too (only its new tarball is sent).
  await publish(embedded, fromEmbedded, '1.2.0');
  await eventually(async () => ((await served(onCouch.url(), fromEmbedded))?.versions['1.2.0'] ? true : null), 120_000, fromEmbedded + '@1.2.0 at the CouchDB site');
  // One package published at both sites at once: conflicting revisions, pulled both ways and merged the same way.
  const shared = 'mixed-shared-' + run;
  await publish(onCouch, shared, '1.0.0', both.get(onCouch));
  await eventually(() => served(embedded.url(), shared), 120_000, shared + ' at the embedded site');
  await Promise.all([publish(onCouch, shared, '1.1.0', both.get(onCouch)), publish(embedded, shared, '1.2.0', both.get(embedded))]);
  // Both serve the union, with no conflict left, and the bytes that were published.
  const names = [fromCouch, fromEmbedded, shared];
  const union = (view: Map<string, Record<string, string>>) => names.every((name) => Object.keys(view.get(name)!).sort().join() === [...published.get(name)!.keys()].sort().join());
  const view = await eventually(async () => {
    const seen = await convergedView([onCouch, embedded], names);
    return seen && union(seen) ? seen : null;
  }, 120_000, 'the two sites to serve the union');
  for (const name of names) {
    expect(Object.keys(view.get(name)!).sort()).toEqual([...published.get(name)!.keys()].sort());
    for (const [version, data] of published.get(name)!) {
      for (const site of [onCouch, embedded]) expect((await tarballAt(site, name, version)).equals(data)).toBe(true);
    }
  }
});
