/**
 * Supply-chain defences of the mirror, with the real npm and npm's own verification code (pacote,
 * as `npm audit signatures` calls it): registry signatures of local and mirrored versions and the
 * keys that verify them (also offline), provenance bundles mirrored from the upstream, the cooldown
 * for new upstream versions with its exceptions, and blocked versions and packages.
 *
 * `npm audit signatures` itself first asks Sigstore's TUF repository (tuf-repo-cdn.sigstore.dev) for
 * every registry's keys, which cannot be reached from this machine; it then uses the registry's
 * `/-/npm/v1/keys`, and pacote verifies, exactly as below.
 */
import { execSync } from 'child_process';
import { createVerify } from 'crypto';
import { mkdtempSync, readFileSync } from 'fs';
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { makePackage, makeProject, npmClient, NpmClient, sha1, sha512 } from '../helpers/npm';
import { RunningRegistry } from '../../server/registry';
import { couchGet, couchPut, restartTestRegistry, setSupplyChainPolicy, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

const pacote = require(join(execSync('npm root -g').toString().trim(), 'npm', 'node_modules', 'pacote'));

const DAY = 86_400_000;
let upstream: TestRegistry;
let mirror: TestRegistry;
let cooled: TestRegistry;
let upstreamPublisher: NpmClient;
let mirrorPublisher: NpmClient;

/** The registry's keys as npm prepares them (verify-signatures.js, the registry keys API). */
async function npmKeys(registryUrl: string) {
  const { keys } = (await (await fetch(registryUrl + '/-/npm/v1/keys')).json()) as { keys: { key: string; keyid: string }[] };
  return keys.map((key) => ({ ...key, pemkey: '-----BEGIN PUBLIC KEY-----\n' + key.key + '\n-----END PUBLIC KEY-----' }));
}

/** npm's verification of one installed version against the registry (pacote, as `npm audit signatures` calls it). */
async function verifyAsNpm(registryUrl: string, spec: string): Promise<{ _signatures: unknown[]; _integrity: string }> {
  const url = new URL(registryUrl + '/');
  return pacote.manifest(spec, {
    registry: url.href,
    verifySignatures: true,
    verifyAttestations: false,
    ['//' + url.host + url.pathname + ':_keys']: await npmKeys(registryUrl),
    cache: mkdtempSync(join(tmpdir(), 'pacote-')),
    preferOnline: true,
  });
}

const adminPut = async (registry: TestRegistry, path: string, body: unknown): Promise<number> => (await couchPut(registry, path, body)).status;

async function setPolicy(registry: TestRegistry, policy: Record<string, unknown>): Promise<void> {
  expect((await setSupplyChainPolicy(registry, policy)).status).toBe(201);
}

beforeAll(async () => {
  upstream = await startTestRegistry();
  upstreamPublisher = npmClient(upstream.url, await upstream.signup('upstreamer'));
  for (const [name, version] of [['from-upstream', '1.0.0'], ['cool-down', '1.0.0'], ['cool-down', '2.0.0'], ['to-block', '1.0.0'], ['to-block', '1.1.0']]) {
    const published = await upstreamPublisher.npm(['publish'], makePackage(upstreamPublisher.home, { name, version }));
    if (published.code !== 0) throw new Error(published.stderr);
  }
  // cool-down@1.0.0 as if published ten days ago (an admin's edit of the upstream's document).
  const doc = (await couchGet(upstream, '/' + upstream.registryDb + '/cool-down')).body;
  doc.time['1.0.0'] = new Date(Date.now() - 10 * DAY).toISOString();
  expect(await adminPut(upstream, '/' + upstream.registryDb + '/cool-down', doc)).toBe(201);

  mirror = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'mirror', UPSTREAM_MAX_AGE_SECONDS: '1' });
  mirrorPublisher = npmClient(mirror.url, await mirror.signup('local-dev'));
  cooled = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'mirror', UPSTREAM_MIN_AGE: '3d' });
});

afterAll(async () => {
  await cooled?.stop();
  await mirror?.stop();
  await upstream?.stop();
});

describe('registry signatures', () => {
  it('/-/npm/v1/keys lists this registry\'s key and the upstream\'s, in the format npm reads', async () => {
    const own = (await (await fetch(upstream.url + '/-/npm/v1/keys')).json()) as { keys: Record<string, unknown>[] };
    expect(own.keys).toHaveLength(1);
    expect(own.keys[0]).toMatchObject({ keytype: 'ecdsa-sha2-nistp256', scheme: 'ecdsa-sha2-nistp256', expires: null, keyid: expect.stringMatching(/^SHA256:/) });
    const listed = await eventually(async () => {
      const keys = ((await (await fetch(mirror.url + '/-/npm/v1/keys')).json()) as { keys: { keyid: string }[] }).keys;
      return keys.length === 2 ? keys : null;
    });
    expect(listed.map((k) => k.keyid)).toContain(own.keys[0].keyid);
  });

  it('a version published here is signed over <name>@<version>:<integrity>, and the signature verifies with the listed key', async () => {
    expect((await mirrorPublisher.npm(['publish'], makePackage(mirrorPublisher.home, { name: 'local-signed', version: '1.0.0' }))).code).toBe(0);
    const manifest = ((await mirror.request('GET', '/local-signed')).body as any).versions['1.0.0'];
    expect(manifest.dist.signatures).toHaveLength(1);
    const [signature] = manifest.dist.signatures;
    const key = (await npmKeys(mirror.url)).find((k) => k.keyid === signature.keyid)!;
    const verifier = createVerify('SHA256');
    verifier.update('local-signed@1.0.0:' + manifest.dist.integrity);
    expect(verifier.verify(key.pemkey, signature.sig, 'base64')).toBe(true);
  });

  it('signatures a publisher sends are not kept: only the registry signs', async () => {
    const tarball = Buffer.from('fake tarball');
    const forged = { keyid: 'SHA256:forged', sig: 'AAAA' };
    const res = await mirror.request('PUT', '/forged-signature', {
      token: await mirror.signup('forger'),
      body: {
        name: 'forged-signature', 'dist-tags': { latest: '1.0.0' },
        versions: { '1.0.0': { name: 'forged-signature', version: '1.0.0', dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'x', signatures: [forged], attestations: { url: 'https://evil.example' } } } },
        _attachments: { 'forged-signature-1.0.0.tgz': { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
      },
    });
    expect(res.status).toBe(201);
    const dist = ((await mirror.request('GET', '/forged-signature')).body as any).versions['1.0.0'].dist;
    expect(dist.signatures.map((s: { keyid: string }) => s.keyid)).not.toContain('SHA256:forged');
    expect(dist.attestations).toBeUndefined();
  });

  it('npm\'s verification passes for a project with a local and a mirrored package', async () => {
    const client = npmClient(mirror.url);
    const dir = makeProject(client.home, 'signed-app', { 'local-signed': '1.0.0', 'from-upstream': '1.0.0' });
    const install = await client.npm(['install'], dir);
    expect(install.stderr).toBe('');
    expect(install.code).toBe(0);
    const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
    for (const name of ['local-signed', 'from-upstream']) {
      const verified = await verifyAsNpm(mirror.url, name + '@' + lock.packages['node_modules/' + name].version);
      expect(verified._signatures).toHaveLength(1);
      expect(verified._integrity).toBe(lock.packages['node_modules/' + name].integrity);
    }
    // The mirrored version keeps the upstream's own signature.
    const upstreamKeyid = ((await upstream.request('GET', '/from-upstream')).body as any).versions['1.0.0'].dist.signatures[0].keyid;
    expect(((await mirror.request('GET', '/from-upstream')).body as any).versions['1.0.0'].dist.signatures[0].keyid).toBe(upstreamKeyid);
  });

  it('fails when a tarball and its integrity were changed behind the registry\'s back; a version the upstream republishes is not taken', async () => {
    // The local package in this registry's database; the mirrored one where it comes from, the
    // upstream's database (this registry refreshes it from there).
    for (const [registry, db, name] of [[mirror, mirror.registryDb, 'local-signed'], [upstream, upstream.registryDb, 'from-upstream']] as const) {
      const doc = (await couchGet(registry, '/' + db + '/' + name)).body;
      const evil = Buffer.from('evil tarball of ' + name);
      doc.versions['1.0.0'].dist.integrity = sha512(evil);
      doc.versions['1.0.0'].dist.shasum = sha1(evil);
      doc._attachments = { [name + '-1.0.0.tgz']: { content_type: 'application/octet-stream', data: evil.toString('base64') } };
      expect(await adminPut(registry, '/' + db + '/' + name, doc)).toBe(201);
      if (registry === mirror) {
        // Once the registry serves the change (its caches follow CouchDB's _changes), npm refuses it.
        const failure = await eventually(() => verifyAsNpm(mirror.url, name + '@1.0.0').then(() => null, (err: { code?: string; message: string }) => err), 15_000, 'the tampered ' + name);
        expect(failure.code).toBe('EINTEGRITYSIGNATURE');
        expect(failure!.message).toContain('invalid registry signature');
      } else {
        // The mirror compares its copy with the upstream's new revision and keeps the version's first
        // dist: the published version never changes here, and npm's verification still passes.
        const newRev = (await couchGet(upstream, '/' + db + '/' + name)).body._rev;
        await eventually(async () => {
          await mirror.request('GET', '/' + name);
          return (await couchGet(mirror, '/' + mirror.registryDb + '-mirror/' + name)).body.origin_rev === newRev ? true : null;
        }, 15_000, 'the mirror to compare ' + name + ' with the upstream');
        const verified = await verifyAsNpm(mirror.url, name + '@1.0.0');
        expect(verified._integrity).not.toBe(sha512(evil));
        expect(verified._signatures).toHaveLength(1);
      }
    }
  });
});

describe('rotating the signing key', () => {
  let rotating: TestRegistry;
  let again: RunningRegistry | undefined;
  afterAll(async () => {
    await again?.close();
    await rotating?.stop();
  });

  it('an admin expires the key: the next start signs with a new one, and the old stays listed with its expiry', async () => {
    rotating = await startTestRegistry();
    const client = npmClient(rotating.url, await rotating.signup('rotator'));
    expect((await client.npm(['publish'], makePackage(client.home, { name: 'before-rotation', version: '1.0.0' }))).code).toBe(0);
    const [oldKey] = ((await (await fetch(rotating.url + '/-/npm/v1/keys')).json()) as { keys: { keyid: string }[] }).keys;
    const keyDoc = '/' + rotating.registryDb + '-state/' + encodeURIComponent('signing-key:' + oldKey.keyid);
    const expires = new Date(Date.now() + 1000).toISOString();
    expect(await adminPut(rotating, keyDoc, { ...(await couchGet(rotating, keyDoc)).body, expires })).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    await rotating.close();
    again = await restartTestRegistry(rotating);
    const keys = ((await (await fetch(again.localUrl + '/-/npm/v1/keys')).json()) as { keys: { keyid: string; expires: string | null }[] }).keys;
    expect(keys).toHaveLength(2);
    expect(keys.find((k) => k.keyid === oldKey.keyid)!.expires).toBe(expires);
    const newKey = keys.find((k) => k.keyid !== oldKey.keyid)!;
    expect(newKey.expires).toBeNull();
    const after = npmClient(again.localUrl, await (async () => {
      const res = await fetch(again!.localUrl + '/-/user/org.couchdb.user:rotator', { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'rotator', password: 'password-rotator' }) });
      return ((await res.json()) as { token: string }).token;
    })());
    expect((await after.npm(['publish'], makePackage(after.home, { name: 'after-rotation', version: '1.0.0' }))).code).toBe(0);
    // What each key signed verifies, as npm checks it (the old key for what it signed before its expiry).
    expect((await verifyAsNpm(again.localUrl, 'before-rotation@1.0.0'))._signatures).toEqual([expect.objectContaining({ keyid: oldKey.keyid })]);
    expect((await verifyAsNpm(again.localUrl, 'after-rotation@1.0.0'))._signatures).toEqual([expect.objectContaining({ keyid: newKey.keyid })]);
  });
});

describe('provenance', () => {
  let standIn: Server;
  let standInUrl: string;
  let proxyOfStandIn: TestRegistry;
  const bundle = { attestations: [{ predicateType: 'https://slsa.dev/provenance/v1', bundle: { mediaType: 'application/vnd.dev.sigstore.bundle+json;version=0.2', dsseEnvelope: { payload: 'e30=', payloadType: 'application/vnd.in-toto+json', signatures: [{ sig: 'MEUC', keyid: '' }] } } }] };

  beforeAll(async () => {
    const tarball = Buffer.from('attested tarball');
    standIn = createServer((req, res) => {
      const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.url === '/attested') {
        return json(200, {
          name: 'attested', 'dist-tags': { latest: '1.0.0' }, time: { created: '2026-01-01T00:00:00.000Z', modified: '2026-01-01T00:00:00.000Z', '1.0.0': '2026-01-01T00:00:00.000Z' },
          versions: { '1.0.0': { name: 'attested', version: '1.0.0', dist: { tarball: standInUrl + '/attested/-/attested-1.0.0.tgz', shasum: sha1(tarball), integrity: sha512(tarball), attestations: { url: standInUrl + '/-/npm/v1/attestations/attested@1.0.0', provenance: { predicateType: 'https://slsa.dev/provenance/v1' } } } } },
        });
      }
      if (req.url === '/-/npm/v1/attestations/attested@1.0.0') return json(200, bundle);
      if (req.url === '/-/npm/v1/keys') return json(200, { keys: [{ expires: null, keyid: 'SHA256:standin', keytype: 'ecdsa-sha2-nistp256', scheme: 'ecdsa-sha2-nistp256', key: 'MFkw' }] });
      json(404, { error: 'not found' });
    });
    await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve));
    standInUrl = 'http://127.0.0.1:' + (standIn.address() as AddressInfo).port;
    proxyOfStandIn = await startTestRegistry({ UPSTREAM_REGISTRY: standInUrl, UPSTREAM_MODE: 'mirror' });
  });

  afterAll(async () => {
    await proxyOfStandIn?.stop();
    await new Promise<void>((resolve) => standIn.close(() => resolve()));
  });

  it('mirrored versions keep dist.attestations; the bundles are served here, kept, and served with the upstream down', async () => {
    const manifest = ((await proxyOfStandIn.request('GET', '/attested')).body as any).versions['1.0.0'];
    expect(manifest.dist.attestations.provenance.predicateType).toBe('https://slsa.dev/provenance/v1');
    // npm asks the registry it installs from, at the path of dist.attestations.url.
    const path = new URL(manifest.dist.attestations.url).pathname;
    const first = await fetch(proxyOfStandIn.url + path);
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual(bundle);
    const keys = await eventually(async () => {
      const listed = ((await (await fetch(proxyOfStandIn.url + '/-/npm/v1/keys')).json()) as { keys: { keyid: string }[] }).keys;
      return listed.some((k) => k.keyid === 'SHA256:standin') ? listed : null;
    });
    expect(keys.length).toBe(2);
    await new Promise<void>((resolve) => {
      standIn.close(() => resolve());
      standIn.closeAllConnections();
    });
    const offline = await fetch(proxyOfStandIn.url + path);
    expect(offline.status).toBe(200);
    expect(await offline.json()).toEqual(bundle);
    expect(((await (await fetch(proxyOfStandIn.url + '/-/npm/v1/keys')).json()) as { keys: { keyid: string }[] }).keys.map((k) => k.keyid)).toContain('SHA256:standin');
    expect((await fetch(proxyOfStandIn.url + '/-/npm/v1/attestations/attested@9.9.9')).status).toBe(404);
    standIn = createServer().listen(0); // for afterAll
  });
});

describe('cooldown of new upstream versions', () => {
  it('versions younger than UPSTREAM_MIN_AGE are left out, latest falls back, the tarball is refused, npm installs the old one', async () => {
    const client = npmClient(cooled.url);
    const versions = await client.npm(['view', 'cool-down', 'versions', '--json']);
    expect(JSON.parse(versions.stdout)).toEqual(['1.0.0']);
    expect((await client.npm(['view', 'cool-down', 'dist-tags.latest'])).stdout.trim()).toBe('1.0.0');
    const corgi = await fetch(cooled.url + '/cool-down', { headers: { accept: 'application/vnd.npm.install-v1+json' } });
    expect(Object.keys(((await corgi.json()) as any).versions)).toEqual(['1.0.0']);
    const tarball = await cooled.request('GET', '/cool-down/-/cool-down-2.0.0.tgz');
    expect(tarball.status).toBe(403);
    expect(tarball.body.error).toMatch(/held back .* until \d{4}-\d{2}-\d{2}T/);
    const version = await cooled.request('GET', '/cool-down/2.0.0');
    expect(version.status).toBe(403);
    const dir = makeProject(client.home, 'cool-app', { 'cool-down': '*' });
    expect((await client.npm(['install'], dir)).code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/cool-down/index.js'), 'utf8')).toContain('cool-down@1.0.0');
    // The status says what is held back and until when; the package page shows it too.
    // Read from a view: on a CouchDB cluster it answers from one copy of each shard, which may lag the
    // write of what pull-through stored a moment ago.
    const watcher = await cooled.signup('watcher');
    const held = await eventually(async () => {
      const status = await cooled.request('GET', '/-/replication', { token: watcher });
      return status.body.supplyChain.heldBack.find((h: { name: string; version: string }) => h.name === 'cool-down' && h.version === '2.0.0') || null;
    }, 5_000, 'the status to name the held-back version');
    expect(Date.parse(held.availableAt) - Date.parse(held.publishedAt)).toBe(3 * DAY);
    const page = await (await fetch(cooled.url + '/cool-down', { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('Held back');
    expect(page).toContain('held back by this registry');
  });

  it('pull-through fetches ahead what npm will pick from the versions not held back: the parent\'s dependencies and the tarball their ranges pick', async () => {
    for (const [name, version, dependencies] of [
      ['ahead-cooled-child', '1.0.0', {}], ['ahead-cooled-child', '1.1.0', {}], ['ahead-cooled-new', '1.0.0', {}],
      ['ahead-cooled-parent', '1.0.0', { 'ahead-cooled-child': '^1.0.0' }], ['ahead-cooled-parent', '2.0.0', { 'ahead-cooled-child': '^1.0.0', 'ahead-cooled-new': '^1.0.0' }],
    ] as const) {
      expect((await upstreamPublisher.npm(['publish'], makePackage(upstreamPublisher.home, { name, version, dependencies }))).code).toBe(0);
    }
    // The first versions as if published ten days ago; the others are new, so held back here.
    for (const name of ['ahead-cooled-child', 'ahead-cooled-parent']) {
      const doc = (await couchGet(upstream, '/' + upstream.registryDb + '/' + name)).body;
      const then = new Date(Date.now() - 10 * DAY).toISOString();
      doc.time['1.0.0'] = then;
      expect(await adminPut(upstream, '/' + upstream.registryDb + '/' + name, doc)).toBe(201);
      await eventually(async () => ((await upstream.request('GET', '/' + name)).body.time['1.0.0'] === then ? true : null), 5_000, 'the upstream to serve the edit');
    }
    expect((await fetch(cooled.url + '/ahead-cooled-parent')).status).toBe(200);
    const mirrored = (name: string) => couchGet(cooled, '/' + cooled.registryDb + '-mirror/' + name);
    const child = await eventually(async () => ((await mirrored('ahead-cooled-child')).status === 200 ? (await mirrored('ahead-cooled-child')).body : null), 20_000, 'the child stored');
    // 1.1.0 is the upstream's latest and in the range, but held back: npm gets 1.0.0.
    expect(Object.keys(child._attachments || {})).toEqual(['ahead-cooled-child-1.0.0.tgz']);
    // Only the held-back 2.0.0 of the parent depends on it.
    expect((await mirrored('ahead-cooled-new')).status).toBe(404);
  });

  it('a package excepted by an admin gets its new versions at once; local packages are never held back', async () => {
    await setPolicy(cooled, { cooldownExceptions: ['cool-*'] });
    const client = npmClient(cooled.url, await cooled.signup('cool-publisher'));
    await eventually(async () => ((await client.npm(['view', 'cool-down', 'version'])).stdout.trim() === '2.0.0' ? true : null), 15_000, 'the exception to take effect');
    expect((await cooled.request('GET', '/cool-down/-/cool-down-2.0.0.tgz')).status).toBe(200);
    expect((await client.npm(['publish'], makePackage(client.home, { name: 'fresh-local', version: '1.0.0' }))).code).toBe(0);
    expect((await client.npm(['view', 'fresh-local', 'version'])).stdout.trim()).toBe('1.0.0');
  });
});

describe('blocked versions', () => {
  it('a blocked version is left out and its tarball answers 403 with the reason, also after the package is refreshed from the upstream', async () => {
    const client = npmClient(mirror.url);
    expect(JSON.parse((await client.npm(['view', 'to-block', 'versions', '--json'])).stdout)).toEqual(['1.0.0', '1.1.0']);
    await setPolicy(mirror, { blocked: [{ package: 'to-block', version: '1.1.0', reason: 'CVE-2026-12345: credential stealer' }] });
    await eventually(async () => (JSON.parse((await client.npm(['view', 'to-block', 'versions', '--json'])).stdout).length === 1 ? true : null), 15_000, 'the block');
    expect((await client.npm(['view', 'to-block', 'dist-tags.latest'])).stdout.trim()).toBe('1.0.0');
    const tarball = await mirror.request('GET', '/to-block/-/to-block-1.1.0.tgz');
    expect(tarball.status).toBe(403);
    expect(tarball.body.error).toContain('CVE-2026-12345');
    // A new upstream release refreshes the mirrored document: the block stays.
    expect((await upstreamPublisher.npm(['publish'], makePackage(upstreamPublisher.home, { name: 'to-block', version: '1.2.0' }))).code).toBe(0);
    await eventually(async () => (JSON.parse((await client.npm(['view', 'to-block', 'versions', '--json', '--prefer-online'])).stdout).includes('1.2.0') ? true : null), 20_000, 'the refresh');
    expect(JSON.parse((await client.npm(['view', 'to-block', 'versions', '--json'])).stdout)).toEqual(['1.0.0', '1.2.0']);
    expect((await mirror.request('GET', '/to-block/-/to-block-1.1.0.tgz')).status).toBe(403);
  });

  it('a whole blocked package has no versions to install', async () => {
    await setPolicy(mirror, { blocked: [{ package: 'to-block', reason: 'typosquat of a popular package' }] });
    const client = npmClient(mirror.url);
    await eventually(async () => ((await mirror.request('GET', '/to-block/-/to-block-1.0.0.tgz')).status === 403 ? true : null), 15_000, 'the block');
    const dir = makeProject(client.home, 'blocked-app', { 'to-block': '*' });
    const install = await client.npm(['install'], dir);
    expect(install.code).not.toBe(0);
    expect(install.stderr).toMatch(/ENOVERSIONS|No versions available for to-block/);
  });
});
