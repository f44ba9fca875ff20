/**
 * Provenance of local publishes with the real npm CLI: `npm publish --provenance-file <bundle>` (npm's
 * way to publish a bundle made elsewhere) keeps the Sigstore bundle with the version; it is served at
 * `/-/npm/v1/attestations/<name>@<version>` in npm's format and `dist.attestations` points at it, as
 * for mirrored versions. The bundles are the test's own (test/helpers/sigstore.ts): a self-signed
 * certificate, a signed in-toto statement. npm's own check of the file asks Sigstore online, so it is
 * stood in for (sigstoreStandIn); npm's other checks run. Bundles npm itself refuses before sending
 * (another tarball's digest, another package) are sent as the publish body npm sends. With
 * PROVENANCE_TRUSTED_ROOT (a Sigstore trusted root; here one listing a certificate authority of the
 * test's, standing in for Fulcio), only certificates its authorities issued are taken.
 */
import { createHash } from 'crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { mirroredDoc, startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';
import { readerSource } from '../helpers/principals';
import { eventually } from '../helpers/wait';
import { makePackage, npmClient, NpmClient, run, sha1 } from '../helpers/npm';
import { newAuthority, newKeys, provenanceBundle, purl, SLSA_V1, sigstoreStandIn, trustedRoot } from '../helpers/sigstore';

let registry: TestRegistry;
let npm: NpmClient;
let token: string;
const work = mkdtempSync(join(tmpdir(), 'provenance-'));

/** `npm pack` of a new package folder: the tarball's path and bytes. */
async function pack(name: string, version: string): Promise<{ file: string; data: Buffer }> {
  const dir = makePackage(work, { name, version });
  const packed = await npm.npm(['pack', '--json', '--pack-destination', dir], dir);
  expect(packed.code).toBe(0);
  const file = join(dir, JSON.parse(packed.stdout)[0].filename);
  return { file, data: readFileSync(file) };
}

const hexSha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');

/** `npm publish <tarball> --provenance-file <bundle>` with Sigstore's online check stood in for. */
async function publishWithBundle(tarball: string, bundle: unknown): Promise<{ code: number; output: string }> {
  const bundleFile = join(work, 'bundle-' + Math.random().toString(36).slice(2) + '.sigstore.json');
  writeFileSync(bundleFile, JSON.stringify(bundle));
  const env = { ...npm.env, NODE_OPTIONS: '--require ' + sigstoreStandIn(work) };
  const result = await run('npm', ['publish', tarball, '--provenance-file', bundleFile], { cwd: npm.home, env });
  return { code: result.code, output: result.stdout + result.stderr };
}

/** The publish body npm sends with a provenance bundle (libnpmpublish): the bundle as JSON text, named after the full package name. */
function bodyWithBundle(name: string, version: string, tarball: Buffer, bundle: unknown): Record<string, unknown> {
  const text = typeof bundle === 'string' ? bundle : JSON.stringify(bundle);
  return {
    _id: name,
    name,
    access: 'public',
    'dist-tags': { latest: version },
    versions: { [version]: { name, version, _id: name + '@' + version, dist: { integrity: 'sha512-' + createHash('sha512').update(tarball).digest('base64'), shasum: sha1(tarball), tarball: 'x' } } },
    _attachments: {
      [name + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length },
      [name + '-' + version + '.sigstore']: { content_type: 'application/vnd.dev.sigstore.bundle.v0.3+json', data: text, length: text.length },
    },
  };
}

beforeAll(async () => {
  registry = await startTestRegistry();
  token = await registry.signup('prov-alice', 'provenance-password');
  npm = npmClient(registry.url, token);
});

afterAll(async () => {
  await registry?.stop();
  rmSync(work, { recursive: true, force: true });
});

it('npm publish --provenance-file: the bundle is served at /-/npm/v1/attestations/<name>@<version>, and dist.attestations points at it', async () => {
  const name = '@acme/prov-widget';
  const { file, data } = await pack(name, '1.0.0');
  const bundle = provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: hexSha512(data) }] });
  const published = await publishWithBundle(file, bundle);
  expect({ code: published.code, output: published.code ? published.output.slice(-800) : '' }).toEqual({ code: 0, output: '' });

  const packument = await registry.request('GET', '/' + name.replace('/', '%2f'));
  expect(packument.status).toBe(200);
  const attestations = packument.body.versions['1.0.0'].dist.attestations;
  expect(attestations).toEqual({ url: registry.url + '/-/npm/v1/attestations/' + name + '@1.0.0', provenance: { predicateType: SLSA_V1 } });
  // The abbreviated packument npm install reads carries it too; neither carries the bundle itself.
  const corgi = await registry.request('GET', '/' + name.replace('/', '%2f'), { headers: { accept: 'application/vnd.npm.install-v1+json' } });
  expect(corgi.body.versions['1.0.0'].dist.attestations).toEqual(attestations);
  expect(JSON.stringify(packument.body)).not.toContain(bundle.dsseEnvelope.payload);

  // npm (pacote) asks the registry it installs from, at the path of dist.attestations.url.
  const served = await registry.request('GET', new URL(attestations.url).pathname);
  expect(served.status).toBe(200);
  expect(served.body).toEqual({ attestations: [{ predicateType: SLSA_V1, bundle }] });
  // As npm's registry spells a scoped name too.
  expect((await registry.request('GET', '/-/npm/v1/attestations/@acme%2fprov-widget@1.0.0')).body).toEqual(served.body);

  // npm view shows it, and the package installs as usual.
  const viewed = await npm.npm(['view', name + '@1.0.0', 'dist.attestations', '--json']);
  expect(JSON.parse(viewed.stdout)).toEqual(attestations);

  // The bundle is an attachment of the package document (it replicates with it), not a tarball.
  const stored = await storedDoc(registry, name);
  expect(Object.keys(stored.body._attachments).sort()).toEqual(['prov-widget-1.0.0.sigstore', 'prov-widget-1.0.0.tgz']);
  expect((await registry.request('GET', '/' + name + '/-/prov-widget-1.0.0.sigstore')).status).toBe(404);

  // A later version without provenance has none; the first keeps its bundle.
  const plain = await npm.npm(['publish'], makePackage(work, { name, version: '1.1.0' }));
  expect(plain.code).toBe(0);
  const after = await registry.request('GET', '/' + name.replace('/', '%2f'));
  expect(after.body.versions['1.1.0'].dist.attestations).toBeUndefined();
  expect(after.body.versions['1.0.0'].dist.attestations).toEqual(attestations);
  expect((await registry.request('GET', '/-/npm/v1/attestations/' + name + '@1.1.0')).status).toBe(404);
  expect((await registry.request('GET', '/-/npm/v1/attestations/' + name + '@1.0.0')).body).toEqual(served.body);
});

it('a plain publish has no dist.attestations, and no attestations are served for it', async () => {
  const plain = await npm.npm(['publish'], makePackage(work, { name: 'prov-plain', version: '1.0.0' }));
  expect(plain.code).toBe(0);
  const packument = await registry.request('GET', '/prov-plain');
  expect(packument.body.versions['1.0.0'].dist.attestations).toBeUndefined();
  const asked = await registry.request('GET', '/-/npm/v1/attestations/prov-plain@1.0.0');
  expect(asked.status).toBe(404);
  expect(asked.body.error).toMatch(/without provenance/);
});

it('a bundle whose signature does not verify is refused with 400 through npm, and the version is not published', async () => {
  const name = 'prov-forged';
  const { file, data } = await pack(name, '1.0.0');
  // Signed by another key than the certificate's.
  const bundle = provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: hexSha512(data) }], signWith: newKeys().privateKey });
  const published = await publishWithBundle(file, bundle);
  expect(published.code).not.toBe(0);
  expect(published.output).toMatch(/400/);
  expect(published.output).toMatch(/signature does not verify/);
  expect((await registry.request('GET', '/' + name)).status).toBe(404);
  expect((await registry.request('GET', '/-/npm/v1/attestations/' + name + '@1.0.0')).status).toBe(404);
});

it('bundles of another tarball, another package or version, or not SLSA provenance are refused with 400; nothing is published', async () => {
  const name = 'prov-mismatch';
  const tarball = (await pack(name, '1.0.0')).data;
  const digest = hexSha512(tarball);
  const cases: [string, unknown, RegExp][] = [
    ['another tarball', provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: hexSha512(Buffer.from('other')) }] }), /sha512 digest is not the published tarball's/],
    ['another package', provenanceBundle({ subject: [{ name: purl('prov-other', '1.0.0'), sha512: digest }] }), /not this package/],
    ['another version', provenanceBundle({ subject: [{ name: purl(name, '0.9.0'), sha512: digest }] }), /not this package/],
    ['two subjects', provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: digest }, { name: purl('x', '1.0.0'), sha512: digest }] }), /exactly one subject/],
    ['not provenance', provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: digest }], predicateType: 'https://example.com/anything' }), /not SLSA provenance/],
    ['a forged signature', provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: digest }], signWith: newKeys().privateKey }), /signature does not verify/],
  ];
  for (const [what, bundle, reason] of cases) {
    const answer = await registry.request('PUT', '/' + name, { token, body: bodyWithBundle(name, '1.0.0', tarball, bundle) });
    expect({ what, status: answer.status, error: answer.body.error }).toEqual({ what, status: 400, error: expect.stringMatching(reason) });
  }
  expect((await registry.request('GET', '/' + name)).status).toBe(404);
  // The same body with its own bundle is published.
  const good = provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: digest }] });
  expect((await registry.request('PUT', '/' + name, { token, body: bodyWithBundle(name, '1.0.0', tarball, good) })).status).toBe(201);
  expect((await registry.request('GET', '/-/npm/v1/attestations/' + name + '@1.0.0')).body.attestations[0].bundle).toEqual(good);
});

it('unpublishing a version takes its bundle with it', async () => {
  const name = 'prov-gone';
  const { file, data } = await pack(name, '1.0.0');
  expect((await publishWithBundle(file, provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: hexSha512(data) }] }))).code).toBe(0);
  expect((await npm.npm(['publish'], makePackage(work, { name, version: '1.1.0' }))).code).toBe(0);
  expect((await npm.npm(['unpublish', name + '@1.0.0'])).code).toBe(0);
  expect((await registry.request('GET', '/-/npm/v1/attestations/' + name + '@1.0.0')).status).toBe(404);
  expect(Object.keys((await storedDoc(registry, name)).body._attachments)).toEqual(['prov-gone-1.1.0.tgz']);
});

it('a downstream registry that replicates this one natively serves the bundle from its copy, at its own URL', async () => {
  const name = 'prov-replicated';
  const tarball = (await pack(name, '1.0.0')).data;
  const bundle = provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: hexSha512(tarball) }] });
  expect((await registry.request('PUT', '/' + name, { token, body: bodyWithBundle(name, '1.0.0', tarball, bundle) })).status).toBe(201);
  const downstream = await startTestRegistry({ REPLICATION_COUCHDB: await readerSource(registry.adminCouchUrl, registry.registryDb) });
  try {
    const copy = await eventually(async () => {
      const res = await mirroredDoc(downstream, name);
      return res.status === 200 ? res.body : null;
    });
    expect(Object.keys(copy._attachments).sort()).toEqual(['prov-replicated-1.0.0.sigstore', 'prov-replicated-1.0.0.tgz']);
    const packument = await downstream.request('GET', '/' + name);
    const url = packument.body.versions['1.0.0'].dist.attestations.url;
    expect(url).toBe(downstream.url + '/-/npm/v1/attestations/prov-replicated@1.0.0');
    // The downstream has no UPSTREAM_REGISTRY to ask: what it serves is its copy.
    const served = await downstream.request('GET', new URL(url).pathname);
    expect(served.body).toEqual({ attestations: [{ predicateType: SLSA_V1, bundle }] });
  } finally {
    await downstream.stop();
  }
});

describe('PROVENANCE_TRUSTED_ROOT: the signing certificate must come from a certificate authority of the trusted root', () => {
  const fulcio = newAuthority('test-fulcio');
  let trusting: TestRegistry;
  let npmTrusting: NpmClient;

  beforeAll(async () => {
    const rootFile = join(work, 'trusted_root.json');
    writeFileSync(rootFile, JSON.stringify(trustedRoot([fulcio])));
    trusting = await startTestRegistry({ PROVENANCE_TRUSTED_ROOT: rootFile });
    npmTrusting = npmClient(trusting.url, await trusting.signup('prov-bob', 'provenance-password'));
  });
  afterAll(async () => {
    await trusting?.stop();
  });

  it('a certificate the authority issued is taken; a self-signed one, or one of another authority of the same name, is refused with 400', async () => {
    const name = 'prov-trusted';
    const dir = makePackage(work, { name, version: '1.0.0' });
    const packed = await npmTrusting.npm(['pack', '--json', '--pack-destination', dir], dir);
    const file = join(dir, JSON.parse(packed.stdout)[0].filename);
    const subject = [{ name: purl(name, '1.0.0'), sha512: hexSha512(readFileSync(file)) }];
    const publish = (bundle: unknown) => {
      const bundleFile = join(work, 'trusted-' + Math.random().toString(36).slice(2) + '.json');
      writeFileSync(bundleFile, JSON.stringify(bundle));
      return run('npm', ['publish', file, '--provenance-file', bundleFile], { cwd: npmTrusting.home, env: { ...npmTrusting.env, NODE_OPTIONS: '--require ' + sigstoreStandIn(work) } });
    };
    for (const bundle of [provenanceBundle({ subject }), provenanceBundle({ subject, issuer: newAuthority('test-fulcio') })]) {
      const refused = await publish(bundle);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/400 Bad Request[\s\S]*not issued by a certificate authority of this registry's Sigstore trusted root/);
    }
    expect((await trusting.request('GET', '/' + name)).status).toBe(404);
    const issued = provenanceBundle({ subject, issuer: fulcio });
    const published = await publish(issued);
    expect({ code: published.code, stderr: published.code ? published.stderr.slice(-600) : '' }).toEqual({ code: 0, stderr: '' });
    expect((await trusting.request('GET', '/-/npm/v1/attestations/' + name + '@1.0.0')).body).toEqual({ attestations: [{ predicateType: SLSA_V1, bundle: issued }] });
  });

  it('a trusted root that cannot be read stops the registry at start, naming the setting', async () => {
    const broken = join(work, 'broken_root.json');
    writeFileSync(broken, '{"certificateAuthorities": []}');
    await expect(startTestRegistry({ PROVENANCE_TRUSTED_ROOT: broken })).rejects.toThrow(/PROVENANCE_TRUSTED_ROOT .*lists no "certificateAuthorities"/);
  });
});
