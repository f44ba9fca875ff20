/**
 * The outbound request policy and what the registry takes from other hosts (issue 23, holes 1, 6, 8
 * and 11's upstream parts), against registries running as processes (a crash shows) in front of a
 * hostile upstream: foreign packages cannot point the registry at its CouchDB (no query, no private
 * host, FOREIGN_HOSTS in proxy mode, a 302 in redirect mode), an upstream's packument, tarball URL or
 * redirect cannot either, webhook receivers on private addresses need OUTBOUND_ALLOW_PRIVATE, private
 * scopes, the cooldown and blocks hold in every upstream mode (by npm's normalized name), dist-tags
 * never show a held-back version, decompression bombs and deep packuments are refused with 424, and a
 * version the upstream republished keeps its first bytes.
 */
import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import { readFileSync } from 'fs';
import { AddressInfo } from 'net';
import { createGzip, gzipSync } from 'zlib';
import { sha1, sha512 } from '../helpers/npm';
import { publishBody, RegistryWithUser, send, startRegistryWithUser } from '../helpers/principals';

const OLD = '2020-01-01T00:00:00.000Z';
const SECRET = Buffer.from('the private tarball of @acme/secret, never to leave this registry');

type Running = RegistryWithUser;

/** A registry process with `env`, a user who signed up, and admin credentials for its CouchDB. */
const startRegistry = (name: string, env: Record<string, string>): Promise<Running> => startRegistryWithUser('outbound-' + name, env, 'publisher');

const bearer = (r: Running) => ({ authorization: 'Bearer ' + r.token });

/** Puts the supply-chain policy document, then waits for every gateway to read it (they poll every 2 s). */
async function putPolicy(r: Running, policy: Record<string, unknown>): Promise<void> {
  const path = '/' + r.registryDb + '-state/supply-chain';
  const current = await send(r.couch, 'GET', path, { headers: { authorization: r.admin } });
  const res = await send(r.couch, 'PUT', path, { headers: { authorization: r.admin }, body: { ...(current.status === 200 ? current.body : {}), type: 'policy', ...policy } });
  expect(res.status).toBe(201);
  await new Promise((resolve) => setTimeout(resolve, 2500));
}

// ---------------------------------------------------------------------------------------------
// The hostile upstream: a registry that answers what an attacker who controls it would.

let upstream: Server;
let upstreamUrl = '';
/** Where the private tarball lies on the CouchDB port of registry `mirror` (filled once it runs). */
let secretUrl = '';
let republished = false;
const tarballRequests: string[] = [];
/** How many times each packument was asked for. */
const packumentRequests = new Map<string, number>();
/** A gzip of a JSON packument that decodes to about 400 MB (made once, streamed). */
let packumentBomb: Buffer;
/** A gzip of 400 MB of zeros, sent as a tarball. */
let tarballBomb: Buffer;

const tarballOf = (name: string, version: string, variant = '') => Buffer.from('tarball of ' + name + '@' + version + variant);
const fileOf = (name: string, version: string) => name.replace(/^@[^/]+\//, '') + '-' + version + '.tgz';

function manifest(name: string, version: string, data: Buffer, tarball = upstreamUrl + '/' + name + '/-/' + fileOf(name, version)) {
  return { name, version, dist: { tarball, shasum: sha1(data), integrity: sha512(data) } };
}

function packumentOf(name: string, versions: Record<string, { time: string; data?: Buffer; tarball?: string }>, extra: Record<string, unknown> = {}) {
  const doc: any = { _id: name, name, 'dist-tags': {}, versions: {}, time: { created: OLD, modified: OLD }, ...extra };
  for (const [version, v] of Object.entries(versions)) {
    doc.versions[version] = manifest(name, version, v.data || tarballOf(name, version), v.tarball);
    doc.time[version] = v.time;
    doc['dist-tags'].latest = version;
  }
  return doc;
}

/** Streams a gzip of `size` bytes made of `head`, then `fill` repeated, then `tail`: made once, kept compressed. */
async function gzipOf(head: string, fill: number, size: number, tail: string): Promise<Buffer> {
  const gzip = createGzip({ level: 1 });
  const chunks: Buffer[] = [];
  gzip.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve) => gzip.on('end', resolve));
  gzip.write(head);
  const block = Buffer.alloc(1024 * 1024, fill);
  for (let written = 0; written < size; written += block.length) {
    if (!gzip.write(block)) await new Promise((resolve) => gzip.once('drain', resolve));
  }
  gzip.end(tail);
  await done;
  return Buffer.concat(chunks);
}

function packuments(): Record<string, any> {
  const now = new Date().toISOString();
  return {
    // An upstream document with a url and no versions: it must not become a foreign package.
    trojan: { _id: 'trojan', name: 'trojan', url: secretUrl + '?x=', versions: {}, time: { created: OLD, modified: OLD }, 'dist-tags': {} },
    // A tarball URL that points at the CouchDB port, with the integrity of what lies there.
    evil: packumentOf('evil', { '1.0.0': { time: OLD, data: SECRET, tarball: secretUrl } }),
    // A tarball URL of the upstream that redirects there.
    redirector: packumentOf('redirector', { '1.0.0': { time: OLD, data: SECRET, tarball: upstreamUrl + '/go-couch' } }),
    // A redirect to a name that resolves to the loopback address (as a DNS rebinding would).
    rebinder: packumentOf('rebinder', { '1.0.0': { time: OLD, data: SECRET, tarball: upstreamUrl + '/go-couch-by-name' } }),
    hosted: packumentOf('hosted', { '1.0.0': { time: OLD } }),
    tarbomb: packumentOf('tarbomb', { '1.0.0': { time: OLD } }),
    repub: packumentOf('repub', { '1.0.0': { time: OLD, data: republished ? tarballOf('repub', '1.0.0', ' republished') : undefined } }),
    fresh: packumentOf('fresh', { '1.0.0': { time: OLD }, '2.0.0': { time: now } }),
    plain: packumentOf('plain', { '1.0.0': { time: OLD }, '1.1.0': { time: now } }),
    '@acme/leak': packumentOf('@acme/leak', { '1.0.0': { time: OLD } }),
    'Evil-Pkg': packumentOf('Evil-Pkg', { '1.0.0': { time: OLD } }),
  };
}

function serveUpstream(req: IncomingMessage, res: ServerResponse): void {
  const path = decodeURIComponent(new URL(req.url || '/', 'http://upstream').pathname).slice(1);
  const json = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (path === 'go-couch') {
    tarballRequests.push(path);
    res.writeHead(302, { location: secretUrl });
    return void res.end();
  }
  if (path === 'go-couch-by-name') {
    res.writeHead(302, { location: secretUrl.replace('127.0.0.1', 'localhost') });
    return void res.end();
  }
  if (path === 'bomb') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    return void res.end(packumentBomb);
  }
  if (path === 'deep') {
    const depth = 100_000;
    res.writeHead(200, { 'content-type': 'application/json' });
    return void res.end('{"name":"deep","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{"name":"deep","version":"1.0.0","x":' + '['.repeat(depth) + ']'.repeat(depth) + '}}}');
  }
  const tarball = /^(.+)\/-\/([^/]+)$/.exec(path);
  if (tarball) {
    tarballRequests.push(path);
    const [, name, file] = tarball;
    if (name === 'hosted') {
      // A foreign registry served through that sends the registry to its own CouchDB.
      res.writeHead(302, { location: secretUrl });
      return void res.end();
    }
    if (name === 'tarbomb') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
      return void res.end(tarballBomb);
    }
    const doc = packuments()[name];
    const version = doc && Object.keys(doc.versions).find((v) => fileOf(name, v) === file);
    if (!version) return json(404, { error: 'not found' });
    const data = name === 'repub' && republished ? tarballOf('repub', '1.0.0', ' republished') : tarballOf(name, version);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
    return void res.end(data);
  }
  const doc = packuments()[path];
  packumentRequests.set(path, (packumentRequests.get(path) || 0) + 1);
  if (!doc) return json(404, { error: 'not found' });
  const data = gzipSync(JSON.stringify(doc));
  res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': data.length });
  res.end(data);
}

// ---------------------------------------------------------------------------------------------

let mirror: Running;
let proxy: Running;
let redirect: Running;
let receiver: Server;
const received: string[] = [];

beforeAll(async () => {
  [packumentBomb, tarballBomb] = await Promise.all([gzipOf('{"name":"bomb","versions":{},"readme":"', 0x61, 400 * 1024 * 1024, '"}'), gzipOf('', 0, 400 * 1024 * 1024, '')]);
  upstream = createServer(serveUpstream);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = 'http://127.0.0.1:' + (upstream.address() as AddressInfo).port;
  receiver = createServer((req, res) => {
    received.push(req.url || '');
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const common = { UPSTREAM_REGISTRY: upstreamUrl, UPSTREAM_MIN_AGE: '3d', REPLICATION_PRIVATE_SCOPES: '@acme', UPSTREAM_PREFETCH: '0' };
  [mirror, proxy, redirect] = await Promise.all([
    // Served through from the upstream's host only (an admin's choice, named with its port).
    startRegistry('mirror', { ...common, UPSTREAM_TARBALLS: 'lazy', UPSTREAM_MAX_AGE_SECONDS: '1', UPSTREAM_MAX_TARBALL_MB: '16', FOREIGN_MODE: 'proxy', FOREIGN_HOSTS: new URL(upstreamUrl).host }),
    startRegistry('proxy', { ...common, UPSTREAM_MODE: 'proxy' }),
    startRegistry('redirect', { ...common, UPSTREAM_MODE: 'redirect' }),
  ]);
  const secret = await send(mirror.gateway, 'PUT', '/@acme%2fsecret', { headers: bearer(mirror), body: publishBody('@acme/secret', '1.0.0', SECRET) });
  expect(secret.status).toBe(201);
  secretUrl = mirror.couch + '/' + mirror.registryDb + '/@acme%2Fsecret/secret-1.0.0.tgz';
  const policy = { cooldownExceptions: ['plain'], blocked: [{ package: 'evil-pkg', reason: 'malicious' }] };
  await Promise.all([mirror, proxy, redirect].map((r) => putPolicy(r, policy)));
}, 120_000);

afterAll(async () => {
  await Promise.all([mirror, proxy, redirect].filter(Boolean).map((r) => r.stop()));
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
  receiver.closeAllConnections();
  await new Promise((resolve) => receiver.close(resolve));
});

describe('foreign packages cannot point the registry at its CouchDB (hole 1)', () => {
  it('a url with a query, a fragment, credentials or another scheme is refused with 400, and nothing is stored', async () => {
    for (const url of [secretUrl + '?x=', mirror.couch + '/' + mirror.registryDb + '/_all_docs?include_docs=true&x=', upstreamUrl + '/#x', 'http://user:pw@' + new URL(upstreamUrl).host, 'ftp://' + new URL(upstreamUrl).host, 'not a url']) {
      const res = await send(mirror.gateway, 'PUT', '/steal', { headers: bearer(mirror), body: { name: 'steal', maintainers: [mirror.user], url } });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatch(/base URL of the registry/);
    }
    expect((await send(mirror.couch, 'GET', '/' + mirror.registryDb + '/steal', { headers: { authorization: mirror.admin } })).status).toBe(404);
    const tarball = await send(mirror.gateway, 'GET', '/steal/-/steal-1.0.0.tgz');
    expect(tarball.status).not.toBe(200);
    expect(String(tarball.body)).not.toContain('private tarball');
  });

  it('in proxy mode only hosts on FOREIGN_HOSTS are taken: the CouchDB port is refused naming the setting', async () => {
    const res = await send(mirror.gateway, 'PUT', '/steal', { headers: bearer(mirror), body: { name: 'steal', maintainers: [mirror.user], url: mirror.couch + '/' + mirror.registryDb } });
    expect(res.status).toBe(400);
    expect(res.body.error).toContain('FOREIGN_HOSTS');
  });

  it('a foreign registry served through cannot redirect the registry to its CouchDB: 424 naming the policy, nothing leaks', async () => {
    // The upstream has every name, so only an admin registers one of them as foreign (for the user).
    const registered = await send(mirror.gateway, 'PUT', '/hosted', { headers: { authorization: mirror.admin }, body: { name: 'hosted', maintainers: [mirror.user], url: upstreamUrl } });
    expect(registered.status).toBe(201);
    expect((await send(mirror.gateway, 'GET', '/hosted')).body.versions['1.0.0']).toBeDefined();
    const tarball = await send(mirror.gateway, 'GET', '/hosted/-/hosted-1.0.0.tgz');
    expect(tarball.status).toBe(424);
    expect(tarball.body.error).toContain('outbound request policy');
    expect(String(tarball.body)).not.toContain('private tarball');
  });

  it('FOREIGN_MODE=redirect (the default) answers 302 and fetches nothing; private addresses and this registry are refused', async () => {
    const registered = await send(redirect.gateway, 'PUT', '/far-away', { headers: bearer(redirect), body: { name: 'far-away', maintainers: [redirect.user], url: 'https://registry.example.com/npm/' } });
    expect(registered.status).toBe(201);
    const read = await send(redirect.gateway, 'GET', '/far-away/-/far-away-1.0.0.tgz');
    expect(read.status).toBe(302);
    expect(read.headers.get('location')).toBe('https://registry.example.com/npm/far-away/-/far-away-1.0.0.tgz');
    for (const url of [redirect.couch, 'http://localhost:5984', 'http://[::ffff:127.0.0.1]:5984', 'http://10.0.0.8', redirect.gateway]) {
      const res = await send(redirect.gateway, 'PUT', '/near-by', { headers: bearer(redirect), body: { name: 'near-by', maintainers: [redirect.user], url } });
      expect(res.status).toBe(400);
    }
  });

  it('an upstream packument with a url and no versions is not a foreign package', async () => {
    const tarball = await send(mirror.gateway, 'GET', '/trojan/-/trojan-1.0.0.tgz');
    expect(tarball.status).toBe(404);
    expect(String(tarball.body)).not.toContain('private tarball');
    const proxied = await send(proxy.gateway, 'GET', '/trojan/-/trojan-1.0.0.tgz');
    expect(String(proxied.body)).not.toContain('private tarball');
  });

  it('an upstream tarball URL, or a redirect (to an address or a name resolving to it), to the CouchDB port is never requested', async () => {
    for (const name of ['evil', 'redirector', 'rebinder']) {
      const res = await send(mirror.gateway, 'GET', '/' + name + '/-/' + name + '-1.0.0.tgz');
      expect(res.status).toBe(424);
      expect(res.body.error).toContain('outbound request policy');
      expect(String(res.body)).not.toContain('private tarball');
    }
    const doc = (await send(mirror.couch, 'GET', '/' + mirror.registryDb + '-mirror/evil', { headers: { authorization: mirror.admin } })).body;
    expect(doc._attachments || {}).toEqual({});
  });

  it('a webhook receiver on a loopback address gets nothing without OUTBOUND_ALLOW_PRIVATE; the delivery says why', async () => {
    const hookUrl = 'http://127.0.0.1:' + (receiver.address() as AddressInfo).port + '/hook';
    const put = await send(mirror.couch, 'PUT', '/' + mirror.registryDb + '-state/webhook:internal', { headers: { authorization: mirror.admin }, body: { type: 'webhook', url: hookUrl, secret: 's' } });
    expect(put.status).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect((await send(mirror.gateway, 'PUT', '/@acme%2fsecret', { headers: bearer(mirror), body: publishBody('@acme/secret', '1.1.0') })).status).toBe(201);
    let delivery: any;
    for (let i = 0; i < 40 && !(delivery && delivery.lastError); i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const rows = (await send(mirror.couch, 'GET', '/' + mirror.registryDb + '-state/_all_docs?include_docs=true&startkey=%22delivery%3A%22&endkey=%22delivery%3A%EF%BF%B0%22', { headers: { authorization: mirror.admin } })).body.rows;
      delivery = rows.map((r: any) => r.doc).find((d: any) => d.hook === 'webhook:internal');
    }
    expect(delivery.lastError).toContain('OUTBOUND_ALLOW_PRIVATE');
    expect(received).toEqual([]);
  });
});

describe('private scopes, the cooldown and blocks hold in every upstream mode (hole 6)', () => {
  it('mirror mode: dist-tags show no held-back version, and a block matches whatever the case', async () => {
    expect((await send(mirror.gateway, 'GET', '/fresh')).body['dist-tags']).toEqual({ latest: '1.0.0' });
    expect((await send(mirror.gateway, 'GET', '/-/package/fresh/dist-tags')).body).toEqual({ latest: '1.0.0' });
    expect((await send(mirror.gateway, 'GET', '/-/package/fresh/dist-tags/latest')).body).toBe('1.0.0');
    const blocked = await send(mirror.gateway, 'GET', '/Evil-Pkg/-/Evil-Pkg-1.0.0.tgz');
    expect(blocked.status).toBe(403);
    expect(blocked.body.error).toContain('malicious');
  });

  it('proxy mode: a private scope is 404, a fresh version and a blocked package are 403, the packument is filtered', async () => {
    for (const path of ['/@acme%2fleak', '/@acme%2fleak/-/leak-1.0.0.tgz']) {
      const res = await send(proxy.gateway, 'GET', path);
      expect(res.status).toBe(404);
      expect(res.body.error).toContain('private');
    }
    const fresh = await send(proxy.gateway, 'GET', '/fresh');
    expect(fresh.status).toBe(200);
    expect(Object.keys(fresh.body.versions)).toEqual(['1.0.0']);
    expect(fresh.body['dist-tags']).toEqual({ latest: '1.0.0' });
    expect(fresh.body.versions['1.0.0'].dist.tarball).toBe(proxy.gateway + '/fresh/-/fresh-1.0.0.tgz');
    expect((await send(proxy.gateway, 'GET', '/fresh/2.0.0')).status).toBe(403);
    expect((await send(proxy.gateway, 'GET', '/fresh/-/fresh-2.0.0.tgz')).status).toBe(403);
    const allowed = await fetch(proxy.gateway + '/fresh/-/fresh-1.0.0.tgz');
    expect(allowed.status).toBe(200);
    expect(Buffer.from(await allowed.arrayBuffer()).toString()).toBe('tarball of fresh@1.0.0');
    for (const path of ['/Evil-Pkg/-/Evil-Pkg-1.0.0.tgz', '/Evil-Pkg/1.0.0']) {
      const res = await send(proxy.gateway, 'GET', path);
      expect(res.status).toBe(403);
      expect(res.body.error).toContain('malicious');
    }
    // An exception to the cooldown is served whole.
    expect(Object.keys((await send(proxy.gateway, 'GET', '/plain')).body.versions)).toEqual(['1.0.0', '1.1.0']);
  });

  it('redirect mode: a private scope is never redirected; what the policy covers is served filtered, and only allowed tarballs are redirected', async () => {
    for (const path of ['/@acme%2fleak', '/@acme%2fleak/-/leak-1.0.0.tgz']) {
      const res = await send(redirect.gateway, 'GET', path);
      expect(res.status).toBe(404);
    }
    const fresh = await send(redirect.gateway, 'GET', '/fresh');
    expect(fresh.status).toBe(200);
    expect(Object.keys(fresh.body.versions)).toEqual(['1.0.0']);
    const allowed = await send(redirect.gateway, 'GET', '/fresh/-/fresh-1.0.0.tgz');
    expect(allowed.status).toBe(302);
    expect(allowed.headers.get('location')).toBe(upstreamUrl + '/fresh/-/fresh-1.0.0.tgz');
    expect((await send(redirect.gateway, 'GET', '/fresh/-/fresh-2.0.0.tgz')).status).toBe(403);
    expect((await send(redirect.gateway, 'GET', '/Evil-Pkg/-/Evil-Pkg-1.0.0.tgz')).status).toBe(403);
    // Not covered by the policy (an exception, no block): the classic redirect.
    expect((await send(redirect.gateway, 'GET', '/plain')).status).toBe(302);
  });
});

describe('what the upstream sends is bounded and checked (holes 8 and 11)', () => {
  it('a gzip-bomb packument is refused with 424 naming the upstream and the setting, in every mode, without large memory', async () => {
    for (const r of [mirror, proxy]) {
      const res = await send(r.gateway, 'GET', '/bomb');
      expect(res.status).toBe(424);
      expect(res.body.error).toContain(upstreamUrl);
      expect(res.body.error).toContain('UPSTREAM_MAX_PACKUMENT_MB');
    }
    for (const r of [mirror, proxy]) {
      const peak = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/' + r.proc.child.pid + '/status', 'utf8'));
      expect(Number(peak![1]) * 1024).toBeLessThan(450 * 1024 * 1024);
    }
  });

  it('a gzip-bomb tarball (sent encoded although asked unencoded) is refused before a byte is inflated', async () => {
    const started = Date.now();
    const res = await send(mirror.gateway, 'GET', '/tarbomb/-/tarbomb-1.0.0.tgz');
    expect(res.status).toBe(424);
    expect(res.body.error).toContain('in the encoding "gzip" although it was asked for it unencoded');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a deeply nested upstream packument is 424 naming the upstream, not 500', async () => {
    for (const r of [mirror, proxy]) {
      const res = await send(r.gateway, 'GET', '/deep');
      expect(res.status).toBe(424);
      expect(res.body.error).toContain(upstreamUrl);
    }
  });

  it('a version the upstream republished with other bytes keeps its first integrity and tarball', async () => {
    const first = await send(mirror.gateway, 'GET', '/repub');
    expect(first.status).toBe(200);
    const integrity = first.body.versions['1.0.0'].dist.integrity;
    const tarball = await fetch(mirror.gateway + '/repub/-/repub-1.0.0.tgz');
    expect(Buffer.from(await tarball.arrayBuffer()).toString()).toBe('tarball of repub@1.0.0');
    // Stored once pull-through has been quiet a moment (reads of a package waiting to be stored count).
    const storedPath = '/' + mirror.registryDb + '-mirror/repub';
    for (let i = 0; i < 30 && (await send(mirror.couch, 'GET', storedPath, { headers: { authorization: mirror.admin } })).status !== 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    republished = true;
    const asked = packumentRequests.get('repub') || 0;
    // The mirrored copy is compared with the upstream once older than UPSTREAM_MAX_AGE_SECONDS (1 s), when read.
    for (let i = 0; i < 20 && (packumentRequests.get('repub') || 0) <= asked; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await send(mirror.gateway, 'GET', '/repub');
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
    // The upstream was asked again, and its republished packument stored.
    expect(packumentRequests.get('repub')).toBeGreaterThan(asked);
    const later = await send(mirror.gateway, 'GET', '/repub');
    expect(later.body.versions['1.0.0'].dist.integrity).toBe(integrity);
    const again = Buffer.from(await (await fetch(mirror.gateway + '/repub/-/repub-1.0.0.tgz')).arrayBuffer());
    expect(sha512(again)).toBe(integrity);
  });
});
