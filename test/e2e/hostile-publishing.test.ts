/**
 * The publishing-trust surfaces of issue 26 (trusted publishing and its OIDC exchange, staged
 * publishing, provenance bundles, npm's web one-time password) attacked as a hostile user would: from
 * every principal (anonymous, a plain user, a maintainer of another package, a read-only token, a
 * token limited to other packages, a `--bypass-2fa` token, a deploy token, a token from the OIDC
 * exchange, the CouchDB admin), on both ports (the gateway and the CouchDB port), from a browser (CSRF,
 * framing, markup in what the pages show) and with forged input (ID tokens, issuers, bundles, bodies).
 *
 * Holes found and closed (each test failed before its fix):
 * - a plain user's `npm publish` of a version staged in someone else's package answered 409 naming
 *   the stage id: anyone could list which versions of any package wait in staging, and their ids;
 * - a CI of any other project of an allowed issuer (on the default issuers: anyone with a GitHub
 *   repository) learnt from the exchange's refusal which repository, workflow file and environment a
 *   package trusts, and whether a package hidden by the access rules exists;
 * - a token exchanged by trusted publishing kept publishing after `npm trust revoke` of its trust
 *   (for the rest of its 15 minutes), so revoking a compromised CI did not stop it;
 * - an approval and a rejection of one staged version at once both succeeded (the rejection said ok,
 *   the version was published), and the approval answered 500;
 * - `npm stage publish`, the staging requirement and `npm access set mfa` told a user who may not
 *   read a package hidden by the access rules that it exists (403, not 404), the first with its
 *   maintainers' names;
 * - a stolen token could try one-time passwords at request speed (no bound on wrong codes).
 * The other tests are attacks that did not work, kept so that they keep not working.
 *
 * Written for the embedded server and a real CouchDB (COUCHDB_URL) alike; run on the embedded server.
 */
import { createHash, generateKeyPairSync } from 'crypto';
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { exportJWK, generateKeyPair, JWTPayload, KeyLike, SignJWT } from 'jose';
import { Secret, TOTP } from 'otpauth';
import { basic, publishBody, send } from '../helpers/principals';
import { basicAuthOf, couchGet, startTestRegistry, TestRegistry } from '../helpers/registry';
import { certificate, newKeys, provenanceBundle, purl } from '../helpers/sigstore';

let registry: TestRegistry;
const run = Math.random().toString(36).slice(2, 8);
const alice = 'hp-alice-' + run;
const mallory = 'hp-mallory-' + run;
const bob = 'hp-bob-' + run;
const wendy = 'hp-wendy-' + run;
const pw = (name: string) => 'pw-of-' + name;
const tokens: Record<string, string> = {};
let wendySecret = '';
let wendyRecovery: string[] = [];

const PKG = 'hp-pkg-' + run;
const MAL_PKG = 'hp-mal-' + run;
const PRIVATE = '@hpriv/secret-' + run;

const codeOf = (secret: string) => new TOTP({ secret: Secret.fromBase32(secret) }).generate();
const sha512hex = (data: Buffer) => createHash('sha512').update(data).digest('hex');
const asUser = (name: string) => ({ authorization: 'Bearer ' + tokens[name] });
const gw = (method: string, path: string, options: { body?: unknown; raw?: string; headers?: Record<string, string> } = {}) => send(registry.url, method, path, options);
const couchOrigin = () => new URL(registry.adminCouchUrl).origin;
const onCouch = (auth: string, method: string, path: string, body?: unknown) => send(couchOrigin(), method, path, { body, headers: auth ? { authorization: auth } : {} });

// ---------------------------------------------------------------------------------------------
// OIDC issuers on loopback, as trusted-publishing.test.ts serves them: /gitlab (RS256), and listed
// issuers that misbehave: /redirector (its discovery document redirects to another port),
// /symmetric (its JWKS is an HMAC secret), /huge (its JWKS is over the size bound).

interface Issuer { privateKey: KeyLike; publicPem: string; kid: string; jwks: unknown }
let issuerServer: Server;
let otherServer: Server;
let issuerBase = '';
let otherBase = '';
const issuers = new Map<string, Issuer>();
const otherHits: string[] = [];

const issuerUrl = (name: string) => issuerBase + '/' + name;
const audience = () => 'npm:' + new URL(registry.url).hostname;

async function makeIssuer(name: string): Promise<void> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = name + '-key';
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  const publicPem = (publicKey as unknown as import('crypto').KeyObject).export({ type: 'spki', format: 'pem' }).toString();
  issuers.set(name, { privateKey, publicPem, kid, jwks: { keys: [jwk] } });
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve('http://127.0.0.1:' + (server.address() as AddressInfo).port)));
}

async function serveIssuers(): Promise<void> {
  otherServer = createServer((req, res) => {
    otherHits.push(req.url || '');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: issuerUrl('redirector'), jwks_uri: issuerUrl('gitlab') + '/jwks', keys: [] }));
  });
  otherBase = await listen(otherServer);
  issuerServer = createServer((req, res) => {
    const url = new URL(req.url || '/', issuerBase);
    const [, name, ...rest] = url.pathname.split('/');
    const path = rest.join('/');
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (path === '.well-known/openid-configuration') {
      if (name === 'redirector') return res.writeHead(302, { location: otherBase + '/.well-known/openid-configuration' }).end();
      return json(200, { issuer: issuerUrl(name), jwks_uri: issuerUrl(name) + '/jwks' });
    }
    if (path === 'jwks') {
      if (name === 'symmetric') return json(200, { keys: [{ kty: 'oct', k: Buffer.from(issuers.get('gitlab')!.publicPem).toString('base64url'), kid: 'gitlab-key', alg: 'HS256' }] });
      if (name === 'huge') return json(200, { keys: Array.from({ length: 3000 }, (_, i) => ({ ...(issuers.get('gitlab')!.jwks as { keys: object[] }).keys[0], kid: 'k' + i })) });
      return json(200, issuers.get(name)?.jwks || { keys: [] });
    }
    json(404, { error: 'nothing here' });
  });
  issuerBase = await listen(issuerServer);
}

/** An ID token of `issuer` (RS256 with its key unless `key`), with iss, aud and times filled in unless given. */
async function idToken(issuer: string, claims: Record<string, unknown>, options: { key?: KeyLike | Uint8Array; alg?: string; kid?: string } = {}): Promise<string> {
  const own = issuers.get(issuer) || issuers.get('gitlab')!;
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = { iss: issuerUrl(issuer), aud: audience(), iat: now, nbf: now, exp: now + 300, ...claims };
  return new SignJWT(payload).setProtectedHeader({ alg: options.alg || 'RS256', kid: options.kid || own.kid, typ: 'JWT' }).sign(options.key || own.privateKey);
}

const gitlabClaims = (project: string, extra: Record<string, unknown> = {}) => ({
  sub: 'project_path:' + project + ':ref_type:branch:ref:main',
  project_path: project,
  ci_config_ref_uri: 'gitlab.example.com/' + project + '//.gitlab-ci.yml@refs/heads/main',
  ...extra,
});

const exchange = (name: string, idTokenValue: string) =>
  gw('POST', '/-/npm/v1/oidc/token/exchange/package/' + encodeURIComponent(name), { headers: { authorization: 'Bearer ' + idTokenValue } });

const addTrust = (user: string, name: string, project: string, headers: Record<string, string> = {}) =>
  gw('POST', '/-/package/' + encodeURIComponent(name) + '/trust', {
    headers: { ...asUser(user), ...headers },
    body: [{ type: 'gitlab', claims: { project_path: project, ci_config_ref_uri: { file: '.gitlab-ci.yml' } }, permissions: ['createPackage'] }],
  });

const publish = (auth: Record<string, string>, name: string, version: string, tarball?: Buffer) =>
  gw('PUT', '/' + encodeURIComponent(name), { headers: auth, body: publishBody(name, version, tarball) });

async function setRules(rules: unknown): Promise<void> {
  const path = '/' + registry.registryDb + '/_design/access';
  const current = await couchGet(registry, path);
  const saved = await send(couchOrigin(), 'PUT', path, { headers: { authorization: basicAuthOf(registry.adminCouchUrl) }, body: { ...current.body, rules } });
  expect(saved.status).toBe(201);
  // The gateway applies rules changed behind its back within its two-second cache of them (gateway/access.ts).
  await new Promise((resolve) => setTimeout(resolve, 2100));
}

beforeAll(async () => {
  await Promise.all(['gitlab', 'github'].map(makeIssuer));
  await serveIssuers();
  registry = await startTestRegistry({
    OIDC_ISSUERS: ['gitlab=' + issuerUrl('gitlab'), 'github=' + issuerUrl('github'), 'gitlab=' + issuerUrl('redirector'), 'gitlab=' + issuerUrl('symmetric'), 'gitlab=' + issuerUrl('huge')].join(','),
  });
  for (const name of [alice, mallory, bob, wendy]) tokens[name] = await registry.signup(name, pw(name));
  for (const [who, name] of [[alice, PKG], [mallory, MAL_PKG], [alice, PRIVATE]]) {
    expect((await publish(asUser(who), name, '1.0.0')).status).toBe(201);
  }
  // The private scope: only alice reads and publishes it.
  await setRules([
    { package: '@hpriv/*', read: [alice], publish: [alice] },
    { package: '**', read: ['$all'], publish: ['$authenticated'] },
  ]);
  // wendy: two-factor authentication for writes (the web one-time password tests).
  const started = await gw('POST', '/-/npm/v1/user', { headers: asUser(wendy), body: { tfa: { password: pw(wendy), mode: 'auth-and-writes' } } });
  wendySecret = new URL(started.body.tfa).searchParams.get('secret')!;
  const confirmed = await gw('POST', '/-/npm/v1/user', { headers: asUser(wendy), body: { tfa: [codeOf(wendySecret)] } });
  expect(confirmed.status).toBe(200);
  wendyRecovery = confirmed.body.tfa;
});

afterAll(async () => {
  await registry?.stop();
  await new Promise((resolve) => issuerServer?.close(resolve));
  await new Promise((resolve) => otherServer?.close(resolve));
});

// ---------------------------------------------------------------------------------------------
describe('trusted publishing', () => {
  let trustId = '';
  beforeAll(async () => {
    const made = await addTrust(alice, PKG, 'acme/web');
    expect(made.status).toBe(201);
    trustId = made.body[0].id;
    expect((await addTrust(alice, PRIVATE, 'acme/secret-project')).status).toBe(201);
  });

  it('forged ID tokens: alg none, HS256 with the issuer\'s public key as secret, a JWKS holding an HMAC secret, an unknown kid: 401, no token', async () => {
    const claims = gitlabClaims('acme/web');
    const now = Math.floor(Date.now() / 1000);
    const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const none = b64({ alg: 'none', typ: 'JWT' }) + '.' + b64({ iss: issuerUrl('gitlab'), aud: audience(), iat: now, exp: now + 300, ...claims }) + '.';
    const hsWithPublicKey = await idToken('gitlab', claims, { alg: 'HS256', key: Buffer.from(issuers.get('gitlab')!.publicPem) });
    const symmetricIssuer = await idToken('symmetric', claims, { alg: 'HS256', kid: 'gitlab-key', key: Buffer.from(issuers.get('gitlab')!.publicPem) });
    const unknownKid = await idToken('gitlab', claims, { kid: '../../other' });
    for (const token of [none, hsWithPublicKey, symmetricIssuer, unknownKid]) {
      const answer = await exchange(PKG, token);
      expect({ status: answer.status, token: answer.body.token }).toEqual({ status: expect.any(Number), token: undefined });
      expect(answer.status === 401 || answer.status === 424).toBe(true);
    }
  });

  it('issuer tricks: a listed issuer whose discovery redirects to another host, a JWKS over the size bound, an issuer named in another case: refused, nothing fetched elsewhere', async () => {
    const claims = gitlabClaims('acme/web');
    const redirected = await exchange(PKG, await idToken('redirector', claims, { key: issuers.get('gitlab')!.privateKey, kid: 'gitlab-key' }));
    expect(redirected.status).toBe(424);
    expect(otherHits).toEqual([]);
    const huge = await exchange(PKG, await idToken('huge', claims, { key: issuers.get('gitlab')!.privateKey, kid: 'k1' }));
    expect(huge.status).toBe(424);
    const upper = await exchange(PKG, await idToken('gitlab', { ...claims, iss: issuerUrl('gitlab').toUpperCase() }));
    expect(upper.status).toBe(401);
    // The trust is bound to the gitlab issuer: a token of another listed gitlab issuer (the same key) is not it.
    const otherIssuer = await exchange(PKG, await idToken('github', claims, { key: issuers.get('gitlab')!.privateKey }));
    expect(otherIssuer.status).toBeGreaterThanOrEqual(400);
    expect(otherIssuer.body.token).toBeUndefined();
  });

  it('claims tricks: another case of the project, a pipeline file of another project or a path out of it, an audience list, an array where a text is expected: no token', async () => {
    for (const claims of [
      gitlabClaims('ACME/web'),
      gitlabClaims('acme/web', { ci_config_ref_uri: 'gitlab.example.com/evil/web//.gitlab-ci.yml@refs/heads/main' }),
      gitlabClaims('acme/web', { ci_config_ref_uri: 'gitlab.example.com/acme/web//ci/../.gitlab-ci.yml@refs/heads/main' }),
      gitlabClaims('acme/web', { ci_config_ref_uri: 'gitlab.example.com/acme/web//evil.yml@x//.gitlab-ci.yml' }),
      gitlabClaims('acme/web', { project_path: ['acme/web'] }),
      gitlabClaims('acme/web', { aud: ['npm:registry.npmjs.org', 'something-else'] }),
    ]) {
      const answer = await exchange(PKG, await idToken('gitlab', claims));
      expect({ claims, status: answer.status >= 400 && answer.status < 500, token: answer.body.token }).toEqual({ claims, status: true, token: undefined });
    }
  });

  it('a CI of another project learns nothing from the refusal: not the trusted project, not whether a package hidden by the access rules exists', async () => {
    const evil = await idToken('gitlab', gitlabClaims('mallory/evil'));
    const refused = await exchange(PKG, evil);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toContain('mallory/evil');
    expect(JSON.stringify(refused.body)).not.toContain('acme/web');
    const hidden = await exchange(PRIVATE, evil);
    const missing = await exchange('@hpriv/nothing-' + run, evil);
    expect(JSON.stringify(hidden.body)).not.toContain('secret-project');
    expect({ status: hidden.status, error: hidden.body.error.split(PRIVATE).join('NAME') }).toEqual({ status: missing.status, error: missing.body.error.split('@hpriv/nothing-' + run).join('NAME') });
    // The trusted CI itself publishes the hidden package.
    const own = await exchange(PRIVATE, await idToken('gitlab', gitlabClaims('acme/secret-project')));
    expect(own.status).toBe(201);
    expect((await publish({ authorization: 'Bearer ' + own.body.token }, PRIVATE, '1.1.0')).status).toBe(201);
  });

  it('an exchanged token does nothing but publish its one package: no trusts, staging, tags, owners, tokens, other packages, nor the CouchDB port', async () => {
    const answer = await exchange(PKG, await idToken('gitlab', gitlabClaims('acme/web')));
    expect(answer.status).toBe(201);
    const ci = { authorization: 'Bearer ' + answer.body.token };
    const attempts = [
      await gw('POST', '/-/package/' + PKG + '/trust', { headers: ci, body: [{ type: 'gitlab', claims: { project_path: 'evil/x', ci_config_ref_uri: { file: 'x.yml' } } }] }),
      await gw('GET', '/-/package/' + PKG + '/trust', { headers: ci }),
      await gw('DELETE', '/-/package/' + PKG + '/trust/' + trustId, { headers: ci }),
      await gw('POST', '/-/stage/package/' + PKG, { headers: ci, body: publishBody(PKG, '9.0.0') }),
      await gw('GET', '/-/stage', { headers: ci }),
      await gw('PUT', '/-/package/' + PKG + '/dist-tags/evil', { headers: { ...ci, 'content-type': 'application/json' }, raw: '"1.0.0"' }),
      await gw('PUT', '/-/package/' + PKG + '/staging', { headers: ci, body: { required: false } }),
      await gw('POST', '/-/package/' + PKG + '/access', { headers: ci, body: { publish_requires_tfa: false } }),
      await gw('POST', '/-/npm/v1/tokens', { headers: ci, body: { password: 'x' } }),
      await publish(ci, MAL_PKG, '5.0.0'),
      await publish(ci, PRIVATE, '5.0.0'),
    ];
    for (const attempt of attempts) expect(attempt.status).toBeGreaterThanOrEqual(400);
    const doc = (await gw('GET', '/' + PKG + '?write=true', { headers: asUser(alice) })).body;
    const owners = await gw('PUT', '/' + PKG + '/-rev/' + doc._rev, { headers: ci, body: { _id: PKG, name: PKG, _rev: doc._rev, maintainers: [{ name: mallory }] } });
    expect(owners.status).toBe(403);
    expect((await onCouch('Bearer ' + answer.body.token, 'GET', '/' + registry.registryDb + '/' + PKG)).status).toBeGreaterThanOrEqual(400);
    // Its own package it publishes, but a body that names maintainers or other fields changes nothing else.
    const body = { ...publishBody(PKG, '1.2.0'), maintainers: [{ name: mallory }], registry_trust: [], registry_staging: 'required' };
    expect((await gw('PUT', '/' + PKG, { headers: ci, body })).status).toBe(201);
    const stored = (await couchGet(registry, '/' + registry.registryDb + '/' + PKG)).body;
    expect(stored.maintainers.map((m: { name: string }) => m.name)).toEqual([alice]);
    expect(stored.registry_trust.map((t: { id: string }) => t.id)).toEqual([trustId]);
    expect(stored.registry_staging).toBeUndefined();
  });

  it('npm trust revoke stops a token exchanged before it at once', async () => {
    const trusted = await addTrust(alice, PKG, 'acme/revoked');
    expect(trusted.status).toBe(201);
    const answer = await exchange(PKG, await idToken('gitlab', gitlabClaims('acme/revoked')));
    expect(answer.status).toBe(201);
    expect((await gw('DELETE', '/-/package/' + PKG + '/trust/' + trusted.body[0].id, { headers: asUser(alice) })).status).toBe(200);
    // Replays: the exchange again, and the token it gave.
    expect((await exchange(PKG, await idToken('gitlab', gitlabClaims('acme/revoked')))).status).toBe(403);
    const replay = await publish({ authorization: 'Bearer ' + answer.body.token }, PKG, '1.3.0');
    expect(replay.status).toBe(403);
    expect((await gw('GET', '/' + PKG)).body.versions['1.3.0']).toBeUndefined();
  });

  it('a trust made by a maintainer who is removed later makes no token, and its token exchanged before publishes nothing', async () => {
    const owner = async (names: string[]) => {
      const doc = (await gw('GET', '/' + PKG + '?write=true', { headers: asUser(alice) })).body;
      const changed = await gw('PUT', '/' + PKG + '/-rev/' + doc._rev, { headers: asUser(alice), body: { _id: PKG, name: PKG, _rev: doc._rev, maintainers: names.map((name) => ({ name })) } });
      expect(changed.status).toBe(200);
    };
    await owner([alice, bob]);
    expect((await addTrust(bob, PKG, 'bob/ci')).status).toBe(201);
    const before = await exchange(PKG, await idToken('gitlab', gitlabClaims('bob/ci')));
    expect(before.status).toBe(201);
    await owner([alice]);
    expect((await exchange(PKG, await idToken('gitlab', gitlabClaims('bob/ci')))).status).toBe(403);
    expect((await publish({ authorization: 'Bearer ' + before.body.token }, PKG, '1.4.0')).status).toBe(403);
  });

  it('trusts of a package are for its maintainers only, whatever the credential: a plain user, read-only, limited or deploy tokens, the CouchDB port', async () => {
    const readonly = (await gw('POST', '/-/npm/v1/tokens', { headers: asUser(alice), body: { password: pw(alice), packages_and_scopes_permission: 'read-only' } })).body.token;
    const limited = (await gw('POST', '/-/npm/v1/tokens', { headers: asUser(alice), body: { password: pw(alice), packages: [MAL_PKG] } })).body.token;
    for (const auth of ['Bearer ' + tokens[mallory], 'Bearer ' + readonly, 'Bearer ' + limited, basic(mallory, pw(mallory)), '']) {
      const headers = auth ? { authorization: auth } : ({} as Record<string, string>);
      const list = await gw('GET', '/-/package/' + PKG + '/trust', { headers });
      expect(list.status).toBeGreaterThanOrEqual(400);
      expect(JSON.stringify(list.body)).not.toContain('acme/web');
      const add = await gw('POST', '/-/package/' + PKG + '/trust', { headers, body: [{ type: 'gitlab', claims: { project_path: 'evil/x', ci_config_ref_uri: { file: 'x.yml' } } }] });
      expect(add.status).toBeGreaterThanOrEqual(400);
    }
    // Nor in any form of the package document the gateway serves.
    for (const [path, accept] of [['/' + PKG + '?write=true', 'application/json'], ['/' + PKG, 'application/json'], ['/' + PKG, 'application/vnd.npm.install-v1+json'], ['/' + PKG + '/1.0.0', 'application/json'], ['/' + PKG, 'text/html']]) {
      for (const auth of [{}, asUser(mallory), asUser(alice)]) {
        const answer = await gw('GET', path, { headers: { ...auth, accept } });
        expect({ path, accept, status: answer.status }).toEqual({ path, accept, status: path.endsWith('?write=true') && !('authorization' in auth) ? 401 : 200 });
        expect(JSON.stringify(answer.body)).not.toMatch(/acme\/web|registry_trust/);
      }
    }
    // On the CouchDB port the trusts are not there to read for a plain user, nor to write for a maintainer.
    const read = await onCouch(basic(mallory, pw(mallory)), 'GET', '/' + registry.registryDb + '/' + PKG);
    expect(JSON.stringify(read.body)).not.toContain('acme/web');
    const doc = (await couchGet(registry, '/' + registry.registryDb + '/' + PKG)).body;
    const write = await onCouch(basic(alice, pw(alice)), 'PUT', '/' + registry.registryDb + '/' + PKG, { ...doc, registry_trust: [...doc.registry_trust, { ...doc.registry_trust[0], id: 'x', claims: { project_path: 'evil/x', ci_config_ref_uri: { file: '.gitlab-ci.yml' } } }] });
    expect(write.status).toBeGreaterThanOrEqual(400);
  });
});

// ---------------------------------------------------------------------------------------------
describe('staged publishing', () => {
  let stageId = '';
  const staged = Buffer.from('the staged tarball of ' + run);
  beforeAll(async () => {
    const answer = await gw('POST', '/-/stage/package/' + PKG, { headers: asUser(alice), body: publishBody(PKG, '2.0.0', staged) });
    expect(answer.status).toBe(201);
    stageId = answer.body.stageId;
  });

  it('a user who does not maintain the package cannot see, download, approve or reject a staged version, even with its id computed', async () => {
    for (const auth of [asUser(mallory), {}]) {
      for (const [method, path] of [['GET', '/-/stage/' + stageId], ['GET', '/-/stage/' + stageId + '/tarball'], ['POST', '/-/stage/' + stageId + '/approve'], ['DELETE', '/-/stage/' + stageId], ['GET', '/-/stage?package=' + PKG]]) {
        const answer = await gw(method, path, { headers: auth });
        expect(JSON.stringify(answer.body || '')).not.toContain('2.0.0');
        if (path !== '/-/stage?package=' + PKG) expect(answer.status).toBeGreaterThanOrEqual(400);
      }
    }
    expect((await gw('GET', '/-/stage?package=' + PKG, { headers: asUser(mallory) })).body).toEqual({ items: [], total: 0 });
    // Nor stage one in it.
    const intruder = await gw('POST', '/-/stage/package/' + PKG, { headers: asUser(mallory), body: publishBody(PKG, '2.1.0') });
    expect(intruder.status).toBe(403);
  });

  it('a package the access rules hide answers a user who cannot read it as one that does not exist: staging it, its staging and two-factor requirements, its trusts', async () => {
    const nowhere = '@hpriv/nothing-' + run;
    const ask = (name: string) => {
      const path = encodeURIComponent(name);
      return Promise.all([
        gw('POST', '/-/stage/package/' + path, { headers: asUser(mallory), body: publishBody(name, '3.0.0') }),
        gw('PUT', '/-/package/' + path + '/staging', { headers: asUser(mallory), body: { required: true } }),
        gw('GET', '/-/package/' + path + '/staging', { headers: asUser(mallory) }),
        gw('POST', '/-/package/' + path + '/access', { headers: asUser(mallory), body: { publish_requires_tfa: true } }),
        gw('POST', '/-/package/' + path + '/trust', { headers: asUser(mallory), body: [{ type: 'gitlab', claims: { project_path: 'evil/x', ci_config_ref_uri: { file: 'x.yml' } } }] }),
        gw('GET', '/-/stage?package=' + path, { headers: asUser(mallory) }),
      ]);
    };
    const [hidden, absent] = [await ask(PRIVATE), await ask(nowhere)];
    const seen = (answers: { status: number; body: any }[], name: string) => answers.map((a) => a.status + ' ' + JSON.stringify(a.body).split(name).join('NAME'));
    expect(seen(hidden, PRIVATE)).toEqual(seen(absent, nowhere));
    expect(JSON.stringify(hidden.map((a) => a.body))).not.toContain(alice);
  });

  it("a plain user's publish of a staged version number is refused as a non-maintainer's, without telling that it is staged or its id", async () => {
    const answer = await publish(asUser(mallory), PKG, '2.0.0');
    expect(answer.status).toBe(403);
    expect(JSON.stringify(answer.body)).not.toContain(stageId);
    expect(JSON.stringify(answer.body)).not.toContain('staged');
  });

  it('read-only and limited tokens of the maintainer, and a deploy token, cannot approve or reject', async () => {
    const readonly = (await gw('POST', '/-/npm/v1/tokens', { headers: asUser(alice), body: { password: pw(alice), packages_and_scopes_permission: 'read-only' } })).body.token;
    const limited = (await gw('POST', '/-/npm/v1/tokens', { headers: asUser(alice), body: { password: pw(alice), packages: [MAL_PKG] } })).body.token;
    for (const token of [readonly, limited]) {
      expect((await gw('POST', '/-/stage/' + stageId + '/approve', { headers: { authorization: 'Bearer ' + token } })).status).toBeGreaterThanOrEqual(400);
      expect((await gw('DELETE', '/-/stage/' + stageId, { headers: { authorization: 'Bearer ' + token } })).status).toBeGreaterThanOrEqual(400);
    }
    expect((await gw('GET', '/-/stage/' + stageId, { headers: asUser(alice) })).status).toBe(200);
  });

  it('the staging database is closed on the CouchDB port to every principal but admins; nothing staged is in the registry database, search, the page or the feed', async () => {
    const stageDb = '/' + registry.registryDb + '-stage';
    for (const auth of ['', basic(mallory, pw(mallory)), basic(alice, pw(alice)), 'Bearer ' + tokens[alice]]) {
      for (const [method, path, body] of [
        ['GET', stageDb + '/_all_docs?include_docs=true'], ['GET', stageDb + '/_changes?include_docs=true'], ['GET', stageDb + '/' + stageId],
        ['POST', stageDb + '/_find', { selector: {} }], ['POST', stageDb + '/_bulk_get', { docs: [{ id: stageId }] }],
        ['PUT', stageDb + '/' + stageId, { _id: stageId, type: 'staged', package: PKG, version: '2.0.0' }],
        ['GET', stageDb + '/' + stageId + '/' + PKG + '-2.0.0.tgz'],
      ] as [string, string, unknown?][]) {
        const answer = await onCouch(auth, method, path, body);
        expect({ auth, path, status: answer.status >= 400 }).toEqual({ auth, path, status: true });
        expect(JSON.stringify(answer.body || '')).not.toContain(PKG);
      }
    }
    const integrity = 'sha512-' + createHash('sha512').update(staged).digest('base64');
    for (const [path, accept] of [['/' + PKG, 'application/json'], ['/' + PKG, 'application/vnd.npm.install-v1+json'], ['/' + PKG, 'text/html'],
      ['/-/v1/search?text=' + PKG, 'application/json'], ['/-/replicate/_changes?since=0&include_docs=true', 'application/json'], ['/-/web/search?q=' + PKG, 'text/html']]) {
      for (const auth of [{}, asUser(mallory)]) {
        const answer = await gw('GET', path, { headers: { ...auth, accept } });
        expect({ path, accept, status: answer.status }).toEqual({ path, accept, status: 200 });
        const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body || '');
        expect({ path, leaks: text.includes(integrity) || text.includes(stageId) || /2\.0\.0|[Ss]taged/.test(text) }).toEqual({ path, leaks: false });
      }
    }
  });

  it('approve twice at once and reject meanwhile: the staged tarball is published once, as staged', async () => {
    const answers = await Promise.all([
      gw('POST', '/-/stage/' + stageId + '/approve', { headers: asUser(alice) }),
      gw('POST', '/-/stage/' + stageId + '/approve', { headers: asUser(alice) }),
      gw('DELETE', '/-/stage/' + stageId, { headers: asUser(alice) }),
    ]);
    // One of the three happens; the others find nothing staged.
    expect(answers.map((a) => a.status).sort()).toEqual([200, 404, 404]);
    const packument = (await gw('GET', '/' + PKG)).body;
    const approved = answers.findIndex((a) => a.status === 200) < 2;
    expect(packument.versions['2.0.0']?.dist.integrity).toBe(approved ? 'sha512-' + createHash('sha512').update(staged).digest('base64') : undefined);
    expect((await gw('GET', '/-/stage/' + stageId, { headers: asUser(alice) })).status).toBe(404);
  });
});

// ---------------------------------------------------------------------------------------------
describe('provenance', () => {
  const attachmentOf = (text: string) => ({ content_type: 'application/vnd.dev.sigstore.bundle.v0.3+json', data: text, length: text.length });

  it('a bundle for another version of the same multi-version publish, a prototype key, an unusual key, bad DER: 400, nothing stored', async () => {
    const name = 'hp-prov-' + run;
    const a = publishBody(name, '1.0.0');
    const b = publishBody(name, '1.0.1');
    const dataA = Buffer.from(a._attachments[name + '-1.0.0.tgz'].data, 'base64');
    const bundleA = JSON.stringify(provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: sha512hex(dataA) }] }));
    const both = { ...a, versions: { ...a.versions, ...b.versions }, _attachments: { ...a._attachments, ...b._attachments } };
    // 1.0.0's bundle sent as 1.0.1's.
    const swapped = { ...both, _attachments: { ...both._attachments, [name + '-1.0.1.sigstore']: attachmentOf(bundleA) } };
    // A bundle whose certificate holds an X25519 key (it cannot verify), and one whose signature is no DER.
    const x = generateKeyPairSync('x25519');
    const odd = JSON.parse(bundleA);
    odd.verificationMaterial.certificate.rawBytes = certificate({ publicKey: x.publicKey, privateKey: newKeys().privateKey }, 'odd').toString('base64');
    const badSig = JSON.parse(bundleA);
    badSig.dsseEnvelope.signatures[0].sig = Buffer.from([0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01]).toString('base64');
    const hugeInts = JSON.parse(bundleA);
    hugeInts.dsseEnvelope.signatures[0].sig = Buffer.concat([Buffer.from([0x30, 0x82, 0x04, 0x06, 0x02, 0x82, 0x02, 0x01, 0x00]), Buffer.alloc(512, 0xff), Buffer.from([0x02, 0x82, 0x01, 0xff]), Buffer.alloc(511, 0xff)]).toString('base64');
    const badCert = JSON.parse(bundleA);
    badCert.verificationMaterial.certificate.rawBytes = Buffer.from([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff]).toString('base64');
    const bodies = [
      swapped,
      { ...a, _attachments: { ...a._attachments, ['constructor']: attachmentOf(bundleA) } },
      ...[odd, badSig, hugeInts, badCert].map((bundle) => ({ ...a, _attachments: { ...a._attachments, [name + '-1.0.0.sigstore']: attachmentOf(JSON.stringify(bundle)) } })),
    ];
    for (const body of bodies) {
      const answer = await gw('PUT', '/' + name, { headers: asUser(alice), body });
      expect({ status: answer.status, error: typeof answer.body.error }).toEqual({ status: 400, error: 'string' });
    }
    const protoRaw = JSON.stringify({ ...a, _attachments: { ...a._attachments, __proto_x__: attachmentOf(bundleA) } }).replace('"__proto_x__"', '"__proto__"');
    const proto = await gw('PUT', '/' + name, { headers: { ...asUser(alice), 'content-type': 'application/json' }, raw: protoRaw });
    expect(proto.status).toBe(400);
    expect((await gw('GET', '/' + name)).status).toBe(404);
    // The registry still answers (nothing crashed).
    expect((await gw('GET', '/-/ping')).status).toBe(200);
  });

  it('a bundle cannot come later: not with a metadata update, nor on a re-publish of the same version, nor on the staging path', async () => {
    const name = 'hp-prov-later-' + run;
    const body = publishBody(name, '1.0.0');
    expect((await gw('PUT', '/' + name, { headers: asUser(alice), body })).status).toBe(201);
    const data = Buffer.from(body._attachments[name + '-1.0.0.tgz'].data, 'base64');
    const bundle = JSON.stringify(provenanceBundle({ subject: [{ name: purl(name, '1.0.0'), sha512: sha512hex(data) }] }));
    // The same version again with a bundle: a retry of the stored publish, which changes nothing.
    const again = await gw('PUT', '/' + name, { headers: asUser(alice), body: { ...body, _attachments: { ...body._attachments, [name + '-1.0.0.sigstore']: attachmentOf(bundle) } } });
    expect(again.status).toBeLessThan(500);
    const doc = (await gw('GET', '/' + name + '?write=true', { headers: asUser(alice) })).body;
    const update = await gw('PUT', '/' + name + '/-rev/' + doc._rev, { headers: asUser(alice), body: { ...doc, _attachments: { [name + '-1.0.0.sigstore']: attachmentOf(bundle) } } });
    expect(update.status === 400 || update.status === 403 || update.status === 200).toBe(true);
    const stagedData = Buffer.from('staged with a bundle');
    const stagedBody = publishBody(name, '1.1.0', stagedData);
    const stagedBundle = JSON.stringify(provenanceBundle({ subject: [{ name: purl(name, '1.1.0'), sha512: sha512hex(stagedData) }] }));
    const staged = await gw('POST', '/-/stage/package/' + name, { headers: asUser(alice), body: { ...stagedBody, _attachments: { ...stagedBody._attachments, [name + '-1.1.0.sigstore']: attachmentOf(stagedBundle) } } });
    expect(staged.status).toBeLessThan(500);
    const stored = (await couchGet(registry, '/' + registry.registryDb + '/' + encodeURIComponent(name))).body;
    expect(Object.keys(stored._attachments)).toEqual([name + '-1.0.0.tgz']);
    expect((await gw('GET', '/-/npm/v1/attestations/' + name + '@1.0.0')).status).toBe(404);
  });

  it('the attestations of a package hidden by the access rules are answered to whoever cannot read it as those of a package that does not exist', async () => {
    const version = '2.0.0';
    const data = Buffer.from('private with provenance ' + run);
    const body = publishBody(PRIVATE, version, data);
    const bundle = JSON.stringify(provenanceBundle({ subject: [{ name: purl(PRIVATE, version), sha512: sha512hex(data) }] }));
    const published = await gw('PUT', '/' + encodeURIComponent(PRIVATE), { headers: asUser(alice), body: { ...body, _attachments: { ...body._attachments, [PRIVATE + '-' + version + '.sigstore']: attachmentOf(bundle) } } });
    expect(published.status).toBe(201);
    const path = '/-/npm/v1/attestations/' + PRIVATE.replace('/', '%2f') + '@' + version;
    expect((await gw('GET', path, { headers: asUser(alice) })).status).toBe(200);
    const deploy = await gw('POST', '/-/npm/v1/tokens', { headers: asUser(alice), body: { password: pw(alice), packages: [MAL_PKG] } });
    const nowhere = '@hpriv/nothing-' + run;
    for (const auth of [{}, asUser(mallory), { authorization: 'Bearer ' + deploy.body.token }]) {
      const absent = await gw('GET', '/-/npm/v1/attestations/' + nowhere.replace('/', '%2f') + '@' + version, { headers: auth });
      expect([401, 403, 404]).toContain(absent.status);
      for (const variant of [path, path.replace('%2f', '/'), path.replace('%2f', '%252f'), path.replace('/-/npm/v1/attestations/', '/-/npm/v1/attestations/%2e/'), path + '/']) {
        const answer = await gw('GET', variant, { headers: auth });
        expect({ variant, status: [401, 403, 404].includes(answer.status) }).toEqual({ variant, status: true });
        expect(JSON.stringify(answer.body)).not.toContain('dsseEnvelope');
        if (variant === path) expect({ status: answer.status, error: answer.body.error.split(PRIVATE).join('NAME') }).toEqual({ status: absent.status, error: absent.body.error.split(nowhere).join('NAME') });
      }
    }
    // Nor the bundle's attachment on the CouchDB port.
    const attachment = await onCouch(basic(mallory, pw(mallory)), 'GET', '/' + registry.registryDb + '/' + encodeURIComponent(PRIVATE) + '/' + encodeURIComponent(PRIVATE + '-' + version + '.sigstore'));
    expect(attachment.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(attachment.body || '')).not.toContain('dsseEnvelope');
  });
});

// ---------------------------------------------------------------------------------------------
describe("npm's web one-time password", () => {
  const WEB_PKG = 'hp-web-' + run;
  const sameOrigin = () => ({ 'content-type': 'application/x-www-form-urlencoded', origin: new URL(registry.url).origin, 'sec-fetch-site': 'same-origin' });
  const post = (url: string, fields: Record<string, string>, headers: Record<string, string> = sameOrigin()) =>
    fetch(url, { method: 'POST', headers, body: new URLSearchParams(fields).toString() });
  const tag = (headers: Record<string, string>, name = 'beta') =>
    gw('PUT', '/-/package/' + WEB_PKG + '/dist-tags/' + name, { headers: { ...headers, 'content-type': 'application/json' }, raw: '"1.0.0"' });
  let other = '';

  beforeAll(async () => {
    expect((await publish({ ...asUser(wendy), 'npm-otp': wendyRecovery.pop()! }, WEB_PKG, '1.0.0')).status).toBe(201);
    other = (await gw('POST', '/-/npm/v1/tokens', { headers: { ...asUser(wendy), 'npm-otp': wendyRecovery.pop()! }, body: { password: pw(wendy) } })).body.token;
    expect(other).toBeTruthy();
  });

  it('a --bypass-2fa token and a deploy token: no trust is changed without the code, no staged version approved, nothing hidden read', async () => {
    const made = await gw('POST', '/-/npm/v1/tokens', { headers: { ...asUser(wendy), 'npm-otp': wendyRecovery.pop()! }, body: { password: pw(wendy), bypass_2fa: true } });
    expect(made.status).toBe(201);
    const automation = { authorization: 'Bearer ' + made.body.token };
    // It publishes without a code (its purpose), but a trust makes publish tokens: that needs the code.
    expect((await publish(automation, WEB_PKG, '1.1.0')).status).toBe(201);
    const trust = await gw('POST', '/-/package/' + WEB_PKG + '/trust', { headers: automation, body: [{ type: 'gitlab', claims: { project_path: 'evil/x', ci_config_ref_uri: { file: 'x.yml' } } }] });
    expect(trust.status).toBe(401);
    const staged = await gw('POST', '/-/stage/package/' + WEB_PKG, { headers: automation, body: publishBody(WEB_PKG, '1.2.0') });
    expect(staged.status).toBe(201);
    expect((await gw('POST', '/-/stage/' + staged.body.stageId + '/approve', { headers: automation })).status).toBe(403);
    expect((await gw('GET', '/' + WEB_PKG)).body.versions['1.2.0']).toBeUndefined();

    const deploy = await gw('POST', '/-/registry/deploy-tokens', { headers: { authorization: basicAuthOf(registry.adminCouchUrl) }, body: { name: 'hp-deploy', scopes: ['@hpriv'] } });
    expect(deploy.status).toBe(201);
    const build = { authorization: 'Bearer ' + deploy.body.token };
    for (const [method, path, body] of [
      ['GET', '/-/package/' + encodeURIComponent(PRIVATE) + '/trust'],
      ['POST', '/-/package/' + encodeURIComponent(PRIVATE) + '/trust', [{ type: 'gitlab', claims: { project_path: 'evil/x', ci_config_ref_uri: { file: 'x.yml' } } }]],
      ['POST', '/-/stage/package/' + encodeURIComponent(PRIVATE), publishBody(PRIVATE, '7.0.0')],
      ['GET', '/-/stage/' + staged.body.stageId],
      ['POST', '/-/stage/' + staged.body.stageId + '/approve'],
      ['PUT', '/' + encodeURIComponent(PRIVATE), publishBody(PRIVATE, '7.0.0')],
    ] as [string, string, unknown?][]) {
      const answer = await gw(method, path, { headers: build, body });
      expect({ path, method, refused: answer.status >= 400 && answer.status < 500 }).toEqual({ path, method, refused: true });
      expect(JSON.stringify(answer.body)).not.toContain('secret-project');
    }
    expect((await gw('GET', '/-/stage', { headers: build })).body).toEqual({ items: [], total: 0 });
  });

  it('the approval page: not framed, no form posted from another site, no markup from the action, nobody but the owner approves', async () => {
    const evilPath = '/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%22%3E%3Cscript%3Ealert(2)%3C%2Fscript%3E';
    const asked = await gw('PUT', evilPath, { headers: { ...asUser(wendy), 'npm-auth-type': 'web' }, body: { name: 'x' } });
    expect(asked.status).toBe(401);
    const page = await fetch(asked.body.authUrl);
    const html = await page.text();
    expect(page.headers.get('x-frame-options')).toBe('DENY');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(html).not.toMatch(/<img|<script/i);
    // Cross-site posts are refused, whatever the fields.
    for (const headers of [
      { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' } as Record<string, string>,
      { 'content-type': 'application/x-www-form-urlencoded', origin: 'null' },
      { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' },
    ]) {
      expect((await post(asked.body.authUrl, { password: pw(wendy), otp: wendyRecovery[0] }, headers)).status).toBe(403);
    }
    // Another user's own password and code do not approve wendy's challenge.
    expect((await post(asked.body.authUrl, { password: pw(mallory), otp: '123456' })).status).toBe(401);
    expect((await post(asked.body.authUrl, { password: pw(wendy), otp: '' })).status).toBe(401);
    expect((await post(asked.body.authUrl, { password: pw(wendy), otp: 'webotp.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' })).status).toBe(401);
    expect((await fetch(asked.body.doneUrl)).status).toBe(202);
    // The page's key does not collect the approval, nor the done key show the page.
    expect((await fetch(asked.body.doneUrl.replace('/-/v1/otp/done/', '/-/otp/'))).status).toBe(404);
    expect((await fetch(asked.body.authUrl.replace('/-/otp/', '/-/v1/otp/done/'))).status).toBe(404);
  });

  it('an approval counts for the credential that asked only: not another token of the owner, not another user, not Basic, not after it expired', async () => {
    const asked = await tag({ ...asUser(wendy), 'npm-auth-type': 'web' });
    expect(asked.status).toBe(401);
    expect((await post(asked.body.authUrl, { password: pw(wendy), otp: wendyRecovery.pop()! })).status).toBe(200);
    const done = await fetch(asked.body.doneUrl);
    expect(done.status).toBe(200);
    const approval = ((await done.json()) as { token: string }).token;
    expect((await fetch(asked.body.doneUrl)).status).toBe(404);
    for (const headers of [{ authorization: 'Bearer ' + other }, asUser(mallory), { authorization: basic(wendy, pw(wendy)) }]) {
      expect((await tag({ ...headers, 'npm-otp': approval }, 'other')).status).toBeGreaterThanOrEqual(400);
    }
    // Not at the log-in either.
    const login = await gw('PUT', '/-/user/org.couchdb.user:' + wendy, { headers: { 'npm-otp': approval }, body: { name: wendy, password: pw(wendy) } });
    expect(login.body.token).toBeUndefined();
    // The token that asked: yes.
    expect((await tag({ ...asUser(wendy), 'npm-otp': approval }, 'beta')).status).toBeLessThan(300);
    // Once the challenge expired (its document aged by the admin), the approval is refused too.
    const handle = approval.split('.')[1];
    const path = '/' + registry.registryDb + '-state/webotp:' + handle;
    const challenge = (await couchGet(registry, path)).body;
    expect(challenge.type).toBe('webotp');
    const aged = await send(couchOrigin(), 'PUT', path, { headers: { authorization: basicAuthOf(registry.adminCouchUrl) }, body: { ...challenge, expires: new Date(Date.now() - 1000).toISOString() } });
    expect(aged.status).toBe(201);
    expect((await tag({ ...asUser(wendy), 'npm-otp': approval }, 'late')).status).toBe(401);
    expect(Object.keys((await gw('GET', '/-/package/' + WEB_PKG + '/dist-tags')).body).sort()).toEqual(['beta', 'latest']);
  });

  it('one-time passwords are not brute-forced with a stolen token: after ten wrong codes the account\'s codes are refused for a while, on the page too; a recovery code still works', async () => {
    const victim = 'hp-victim-' + run;
    const token = await registry.signup(victim, pw(victim));
    const auth = { authorization: 'Bearer ' + token };
    const started = await gw('POST', '/-/npm/v1/user', { headers: auth, body: { tfa: { password: pw(victim), mode: 'auth-and-writes' } } });
    const secret = new URL(started.body.tfa).searchParams.get('secret')!;
    const confirmed = await gw('POST', '/-/npm/v1/user', { headers: auth, body: { tfa: [codeOf(secret)] } });
    expect(confirmed.status).toBe(200);
    const name = 'hp-victim-pkg-' + run;
    const write = (otp: string) => gw('PUT', '/' + name, { headers: { ...auth, 'npm-otp': otp }, body: publishBody(name, '1.0.0') });
    const right = codeOf(secret);
    const statuses: number[] = [];
    for (let guess = 0; statuses.length < 12; guess++) {
      const code = String(100000 + guess);
      if (code !== right) statuses.push((await write(code)).status);
    }
    expect(statuses).toEqual([...Array(10).fill(401), 429, 429]);
    const locked = await write(codeOf(secret));
    expect(locked.status).toBe(429);
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
    // The approval page, with the right password, refuses the code too.
    const asked = await gw('PUT', '/' + name, { headers: { ...auth, 'npm-auth-type': 'web' }, body: publishBody(name, '1.0.0') });
    expect(asked.status).toBe(401);
    expect((await post(asked.body.authUrl, { password: pw(victim), otp: codeOf(secret) })).status).toBe(429);
    // The owner still has the recovery codes.
    expect((await write(confirmed.body.tfa[0])).status).toBe(201);
  });

  it('challenges: none for a log-in, none on the CouchDB port, and a flood of them ends in the plain code prompt; the challenges are admins\' only on the CouchDB port', async () => {
    const login = await gw('PUT', '/-/user/org.couchdb.user:' + wendy, { headers: { 'npm-auth-type': 'web' }, body: { name: wendy, password: pw(wendy) } });
    expect(login.status).toBe(401);
    expect(login.body.authUrl).toBeUndefined();
    // A write with Basic credentials is a log-in first: its code is asked for, with no page to approve at.
    const withPassword = await tag({ authorization: basic(wendy, pw(wendy)), 'npm-auth-type': 'web' });
    expect(withPassword.status).toBe(401);
    expect(withPassword.body.authUrl).toBeUndefined();
    let last: { status: number; body: any } = { status: 0, body: {} };
    for (let i = 0; i < 32; i++) last = await tag({ ...asUser(wendy), 'npm-auth-type': 'web' });
    expect(last.status).toBe(401);
    expect(last.body.authUrl).toBeUndefined();
    const state = '/' + registry.registryDb + '-state';
    for (const auth of ['', basic(mallory, pw(mallory)), basic(wendy, pw(wendy))]) {
      const found = await onCouch(auth, 'POST', state + '/_find', { selector: { type: 'webotp' } });
      expect(found.status).toBeGreaterThanOrEqual(400);
      expect((await onCouch(auth, 'GET', state + '/_all_docs')).status).toBeGreaterThanOrEqual(400);
    }
  });
});
