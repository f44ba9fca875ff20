/**
 * Trusted publishing with the real npm CLI: a maintainer sets up `npm trust gitlab` and `npm trust
 * github`, and `npm publish` in a simulated CI (GitLab: `GITLAB_CI=true` and `NPM_ID_TOKEN`; GitHub
 * Actions: `GITHUB_ACTIONS=true` and `ACTIONS_ID_TOKEN_REQUEST_URL`/`_TOKEN`), with no npm
 * credentials at all, exchanges the CI's ID token and publishes; the version installs and records its
 * trusted publisher. The ID tokens come from an OIDC issuer this test serves on loopback (discovery
 * document and JWKS, tokens signed with jose). Refused: forged, expired, wrong-audience,
 * wrong-repository tokens, an unlisted issuer, a revoked trust, a token exchanged for one package used
 * on another or for anything but publishing, trusts changed by non-maintainers, and an issuer whose
 * keys sit at a private address.
 */
import { createServer, Server } from 'http';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { exportJWK, generateKeyPair, JWTPayload, KeyLike, SignJWT } from 'jose';
import { basicAuthOf, startTestRegistry, TestRegistry } from '../helpers/registry';
import { Secret, TOTP } from 'otpauth';
import { makePackage, makeProject, npmClient, NpmClient, onTerminal } from '../helpers/npm';

let registry: TestRegistry;
let maintainer: NpmClient;
const work = mkdtempSync(join(tmpdir(), 'trusted-publishing-'));
const password = 'trusted-password';

// ---------------------------------------------------------------------------------------------
// The OIDC issuers, on loopback: /gitlab and /github (listed in OIDC_ISSUERS), /rogue (not listed),
// /private-keys (listed, but its jwks_uri is a loopback address of another port).

interface Issuer {
  privateKey: KeyLike;
  kid: string;
  alg: 'RS256' | 'ES256';
  jwks: Record<string, unknown>;
}

let issuerServer: Server;
let issuerBase = '';
const issuers = new Map<string, Issuer>();
/** A key no issuer publishes (a forger's). */
let forgerKey: KeyLike;
const jwksFetches = new Map<string, number>();
/** What GitHub's ID token endpoint was asked, and the claims its next token carries. */
const githubAsked: { audience: string | null; authorization: string | undefined }[] = [];
let githubClaims: Record<string, unknown> = {};
const GITHUB_REQUEST_TOKEN = 'actions-request-token-xyz';

async function makeIssuer(name: string, alg: 'RS256' | 'ES256'): Promise<void> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const kid = name + '-key-1';
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  issuers.set(name, { privateKey, kid, alg, jwks: { keys: [jwk] } });
}

const issuerUrl = (name: string) => issuerBase + '/' + name;
const audience = () => 'npm:' + new URL(registry.url).hostname;

/** An ID token of `issuer` with `claims` (iss, aud, iat, nbf and exp filled in unless given). */
async function idToken(issuer: string, claims: Record<string, unknown>, options: { key?: KeyLike; kid?: string; expiresIn?: number } = {}): Promise<string> {
  const own = issuers.get(issuer)!;
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = { iss: issuerUrl(issuer), aud: audience(), iat: now, nbf: now, exp: now + (options.expiresIn ?? 300), ...claims };
  return new SignJWT(payload).setProtectedHeader({ alg: own.alg, kid: options.kid || own.kid, typ: 'JWT' }).sign(options.key || own.privateKey);
}

const gitlabClaims = (extra: Record<string, unknown> = {}) => ({
  sub: 'project_path:acme/web:ref_type:branch:ref:main',
  project_path: 'acme/web',
  namespace_path: 'acme',
  ci_config_ref_uri: 'gitlab.example.com/acme/web//.gitlab-ci.yml@refs/heads/main',
  ref: 'main',
  ...extra,
});

const githubOf = (extra: Record<string, unknown> = {}) => ({
  sub: 'repo:acme/tool:environment:npm',
  repository: 'acme/tool',
  repository_owner: 'acme',
  workflow_ref: 'acme/tool/.github/workflows/release.yml@refs/heads/main',
  environment: 'npm',
  ...extra,
});

function serveIssuers(): Promise<void> {
  issuerServer = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url || '/', issuerBase);
      const [, name, ...rest] = url.pathname.split('/');
      const path = rest.join('/');
      const issuer = issuers.get(name);
      const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (!issuer) return json(404, { error: 'no issuer ' + name });
      if (path === '.well-known/openid-configuration') {
        const jwksUri = name === 'private-keys' ? 'http://127.0.0.1:1/' + name + '/jwks' : issuerUrl(name) + '/jwks';
        return json(200, { issuer: issuerUrl(name), jwks_uri: jwksUri, id_token_signing_alg_values_supported: [issuer.alg] });
      }
      if (path === 'jwks') {
        jwksFetches.set(name, (jwksFetches.get(name) || 0) + 1);
        return json(200, issuer.jwks);
      }
      if (path === 'id-token' && name === 'github') {
        githubAsked.push({ audience: url.searchParams.get('audience'), authorization: req.headers.authorization });
        if (req.headers.authorization !== 'Bearer ' + GITHUB_REQUEST_TOKEN) return json(401, { message: 'bad request token' });
        return json(200, { value: await idToken('github', { aud: url.searchParams.get('audience'), ...githubClaims }) });
      }
      json(404, { error: 'nothing at ' + url.pathname });
    })();
  });
  return new Promise((resolve) => issuerServer.listen(0, '127.0.0.1', () => {
    issuerBase = 'http://127.0.0.1:' + (issuerServer.address() as AddressInfo).port;
    resolve();
  }));
}

// ---------------------------------------------------------------------------------------------
// CI jobs: npm with no credentials, in the environment a CI gives it.

/** An npm client with no credentials, in a GitLab CI job whose ID token is `token`. */
function gitlabJob(token: string): NpmClient {
  const client = npmClient(registry.url);
  Object.assign(client.env, { CI: 'true', GITLAB_CI: 'true', NPM_ID_TOKEN: token });
  return client;
}

/** An npm client with no credentials, in a GitHub Actions job allowed `id-token: write`. */
function githubJob(): NpmClient {
  const client = npmClient(registry.url);
  Object.assign(client.env, {
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    ACTIONS_ID_TOKEN_REQUEST_URL: issuerUrl('github') + '/id-token?api-version=2.0',
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: GITHUB_REQUEST_TOKEN,
  });
  return client;
}

async function publishIn(client: NpmClient, name: string, version: string): Promise<{ code: number; output: string }> {
  const result = await client.npm(['publish', '--loglevel', 'verbose'], makePackage(work, { name, version }));
  return { code: result.code, output: result.stdout + result.stderr };
}

/** The exchange as npm makes it, with `token` as the Bearer credential. */
const exchange = (name: string, token: string) =>
  registry.request('POST', '/-/npm/v1/oidc/token/exchange/package/' + name.replace('/', '%2f'), { headers: { authorization: 'Bearer ' + token } });

async function trust(client: NpmClient, args: string[]): Promise<{ code: number; output: string }> {
  const result = await client.npm(['trust', ...args, '--yes']);
  return { code: result.code, output: result.stdout + result.stderr };
}

/** The trusts of `name` as `npm trust list --json` shows them. */
async function trustList(client: NpmClient, name: string): Promise<{ code: number; output: string; ids: string[] }> {
  const result = await client.npm(['trust', 'list', name]);
  const output = result.stdout + result.stderr;
  return { code: result.code, output, ids: [...output.matchAll(/^id: (\S+)$/gm)].map((m) => m[1]) };
}

beforeAll(async () => {
  await Promise.all([makeIssuer('gitlab', 'RS256'), makeIssuer('github', 'ES256'), makeIssuer('rogue', 'RS256'), makeIssuer('private-keys', 'RS256')]);
  forgerKey = (await generateKeyPair('RS256')).privateKey;
  await serveIssuers();
  registry = await startTestRegistry({
    OIDC_ISSUERS: ['gitlab=' + issuerUrl('gitlab'), 'github=' + issuerUrl('github'), 'gitlab=' + issuerUrl('private-keys')].join(','),
  });
  maintainer = npmClient(registry.url, await registry.signup('trust-owner', password));
  for (const name of ['trust-gl', 'trust-gh', 'trust-other', '@acme/scoped']) {
    expect((await maintainer.npm(['publish', '--access', 'public'], makePackage(work, { name, version: '1.0.0' }))).code).toBe(0);
  }
});

afterAll(async () => {
  await registry?.stop();
  await new Promise((resolve) => issuerServer?.close(resolve));
  rmSync(work, { recursive: true, force: true });
});

let gitlabTrustId = '';

it('npm trust gitlab, then npm publish in a GitLab CI job with NPM_ID_TOKEN and no npm credentials: the version installs and names its trusted publisher', async () => {
  const made = await trust(maintainer, ['gitlab', 'trust-gl', '--file', '.gitlab-ci.yml', '--project', 'acme/web', '--allow-publish']);
  expect(made).toMatchObject({ code: 0 });
  expect(made.output).toContain('Trust configuration created successfully');
  const listed = await trustList(maintainer, 'trust-gl');
  expect(listed.code).toBe(0);
  expect(listed.output).toContain('type: gitlab');
  expect(listed.output).toContain('project: acme/web');
  expect(listed.output).toContain('file: .gitlab-ci.yml');
  expect(listed.output).toContain('permissions: publish');
  expect(listed.ids).toHaveLength(1);
  gitlabTrustId = listed.ids[0];

  const published = await publishIn(gitlabJob(await idToken('gitlab', gitlabClaims())), 'trust-gl', '1.1.0');
  expect(published.output).toContain('Successfully retrieved and set token');
  expect(published.code).toBe(0);

  const packument = (await registry.request('GET', '/trust-gl')).body;
  expect(packument.versions['1.1.0']._npmUser).toMatchObject({ name: 'trust-owner', trustedPublisher: { id: 'gitlab', oidcConfigId: gitlabTrustId } });
  // The trusts themselves are never served.
  expect(JSON.stringify(packument)).not.toContain('registry_trust');
  expect(JSON.stringify(packument)).not.toContain('acme/web');
  const consumer = npmClient(registry.url);
  const installed = await consumer.npm(['install', '--no-package-lock'], makeProject(work, 'gl-consumer', { 'trust-gl': '1.1.0' }));
  expect(installed.code).toBe(0);
  expect(readFileSync(join(work, 'gl-consumer', 'node_modules', 'trust-gl', 'index.js'), 'utf8')).toContain('trust-gl@1.1.0');
});

it('npm trust github with an environment, then npm publish in GitHub Actions: npm asks the job\'s ID token endpoint for audience npm:<registry host>', async () => {
  const made = await trust(maintainer, ['github', 'trust-gh', '--file', 'release.yml', '--repository', 'acme/tool', '--environment', 'npm', '--allow-publish']);
  expect(made.code).toBe(0);
  githubClaims = githubOf();
  const published = await publishIn(githubJob(), 'trust-gh', '1.1.0');
  expect(published.code).toBe(0);
  expect(githubAsked.at(-1)).toEqual({ audience: 'npm:127.0.0.1', authorization: 'Bearer ' + GITHUB_REQUEST_TOKEN });
  const version = (await registry.request('GET', '/trust-gh/1.1.0')).body;
  expect(version._npmUser.trustedPublisher).toMatchObject({ id: 'github' });

  // Another workflow file, another environment, another repository: refused, saying which claim differs.
  for (const [claims, words] of [
    [githubOf({ workflow_ref: 'acme/tool/.github/workflows/other.yml@refs/heads/main' }), 'workflow (workflow_ref)'],
    [githubOf({ environment: 'staging' }), 'environment is "staging"'],
    [githubOf({ repository: 'evil/tool', workflow_ref: 'evil/tool/.github/workflows/release.yml@refs/heads/main' }), 'repository is "evil/tool"'],
  ] as const) {
    githubClaims = claims;
    const refused = await publishIn(githubJob(), 'trust-gh', '1.2.0');
    expect(refused.code).not.toBe(0);
    expect(refused.output).toContain('This command requires you to be logged in');
    expect(refused.output).toContain(words);
  }
  expect((await registry.request('GET', '/trust-gh')).body.versions['1.2.0']).toBeUndefined();
});

it('refused ID tokens: forged, expired, wrong audience, wrong project, unlisted issuer, another package; npm then has no credentials and says so', async () => {
  const cases: [string, string, string][] = [
    ['forged (signed with a key the issuer does not publish, under its kid)', await idToken('gitlab', gitlabClaims(), { key: forgerKey }), 'signature does not verify'],
    ['forged (unknown kid)', await idToken('gitlab', gitlabClaims(), { key: forgerKey, kid: 'forger' }), 'does not publish'],
    ['expired', await idToken('gitlab', gitlabClaims({ iat: Math.floor(Date.now() / 1000) - 900 }), { expiresIn: -600 }), 'expired'],
    ['wrong audience', await idToken('gitlab', gitlabClaims({ aud: 'npm:registry.npmjs.org' })), 'audience (aud) is not "npm:127.0.0.1"'],
    ['wrong project', await idToken('gitlab', gitlabClaims({ project_path: 'evil/web', ci_config_ref_uri: 'gitlab.example.com/evil/web//.gitlab-ci.yml@refs/heads/main' })), 'project (project_path) is "evil/web"'],
    ['wrong pipeline file', await idToken('gitlab', gitlabClaims({ ci_config_ref_uri: 'gitlab.example.com/acme/web//other.yml@refs/heads/main' })), 'pipeline file (ci_config_ref_uri)'],
    ['unlisted issuer', await idToken('rogue', gitlabClaims()), 'are not accepted by this registry'],
    ['a package without trust', await idToken('gitlab', gitlabClaims()), 'trusts no gitlab publisher'],
  ];
  for (const [what, token, words] of cases) {
    const name = what === 'a package without trust' ? 'trust-other' : 'trust-gl';
    const answer = await exchange(name, token);
    expect({ what, status: answer.status >= 400 && answer.status < 500, error: answer.body.error }).toEqual({ what, status: true, error: expect.stringContaining(words) });
    expect(answer.body.message).toBe(answer.body.error);
  }
  // With npm itself: the refusal is in its verbose log, and the publish fails for want of credentials.
  const forged = await publishIn(gitlabJob(cases[0][1]), 'trust-gl', '1.2.0');
  expect(forged.code).not.toBe(0);
  expect(forged.output).toContain('ENEEDAUTH');
  expect(forged.output).toContain('signature does not verify');
  const unknown = await exchange('no-such-package', await idToken('gitlab', gitlabClaims()));
  expect(unknown.status).toBe(404);
  expect(unknown.body.error).toContain('not published on this registry');
  // Garbage and nothing at all.
  expect((await exchange('trust-gl', 'not-a-jwt')).status).toBe(401);
  expect((await registry.request('POST', '/-/npm/v1/oidc/token/exchange/package/trust-gl')).status).toBe(401);
  expect((await registry.request('GET', '/-/npm/v1/oidc/token/exchange/package/trust-gl')).status).toBe(405);
  expect((await registry.request('GET', '/trust-gl')).body.versions['1.2.0']).toBeUndefined();
});

it('an exchanged token publishes its package for 15 minutes and does nothing else: not another package, not tags, not tokens, not trusts', async () => {
  const answer = await exchange('trust-gl', await idToken('gitlab', gitlabClaims()));
  expect(answer.status).toBe(201);
  const expires = Date.parse(answer.body.expires);
  expect(expires - Date.now()).toBeGreaterThan(14 * 60_000);
  expect(expires - Date.now()).toBeLessThanOrEqual(15 * 60_000);
  const ci = npmClient(registry.url, answer.body.token);
  const other = await publishIn(ci, 'trust-other', '1.1.0');
  expect(other.code).not.toBe(0);
  expect(other.output).toContain('limited to "trust-gl"');
  const scoped = await publishIn(ci, '@acme/scoped', '1.1.0');
  expect(scoped.code).not.toBe(0);
  const tag = await ci.npm(['dist-tag', 'add', 'trust-gl@1.0.0', 'old']);
  expect(tag.code).not.toBe(0);
  expect(tag.stdout + tag.stderr).toContain('comes from trusted publishing');
  const token = await ci.npm(['token', 'create']);
  expect(token.code).not.toBe(0);
  const trustAdd = await trust(ci, ['github', 'trust-gl', '--file', 'x.yml', '--repository', 'evil/x', '--allow-publish']);
  expect(trustAdd.code).not.toBe(0);
  const deprecate = await ci.npm(['deprecate', 'trust-gl@1.0.0', 'gone']);
  expect(deprecate.code).not.toBe(0);
  // Its own package: yes.
  expect((await publishIn(ci, 'trust-gl', '1.3.0')).code).toBe(0);
  expect((await registry.request('GET', '/trust-other')).body.versions['1.1.0']).toBeUndefined();
});

it('only maintainers see and change trusts; what the registry does not support is refused, never accepted and ignored', async () => {
  const stranger = npmClient(registry.url, await registry.signup('trust-stranger', password));
  const added = await trust(stranger, ['gitlab', 'trust-gl', '--file', '.gitlab-ci.yml', '--project', 'evil/web', '--allow-publish']);
  expect(added.code).not.toBe(0);
  expect(added.output).toContain('Only the maintainers of "trust-gl"');
  const listed = await trustList(stranger, 'trust-gl');
  expect(listed.code).not.toBe(0);
  const revoked = await stranger.npm(['trust', 'revoke', 'trust-gl', '--id', gitlabTrustId]);
  expect(revoked.code).not.toBe(0);
  // Nothing is accepted and ignored.
  const circle = await trust(maintainer, ['circleci', 'trust-gl', '--org-id', '11111111-1111-4111-8111-111111111111', '--project-id', '22222222-2222-4222-8222-222222222222',
    '--pipeline-definition-id', '33333333-3333-4333-8333-333333333333', '--vcs-origin', 'github.com/acme/web', '--allow-publish']);
  expect(circle.code).not.toBe(0);
  expect(circle.output).toContain('accepts no circleci ID tokens');
  const odd = await registry.request('POST', '/-/package/trust-gl/trust', { token: await registry.signup('trust-odd'), body: [{ type: 'github', claims: { repository: 'a/b', workflow_ref: { file: 'r.yml' }, ref: 'main' } }] });
  expect(odd.status).toBe(403);
  const unknownClaim = await registry.request('POST', '/-/package/trust-gl/trust', {
    headers: { authorization: 'Basic ' + Buffer.from('trust-owner:' + password).toString('base64') },
    body: [{ type: 'github', claims: { repository: 'a/b', workflow_ref: { file: 'r.yml' }, ref: 'main' }, permissions: ['createPackage'] }],
  });
  expect(unknownClaim.status).toBe(400);
  expect(unknownClaim.body.error).toContain('"ref", which this registry does not check');
  expect((await trustList(maintainer, 'trust-gl')).ids).toEqual([gitlabTrustId]);
});

it('a trust with --allow-stage-publish only: the CI stages (npm stage publish) and cannot publish; a maintainer approves, and the approved version names who staged it', async () => {
  expect((await maintainer.npm(['publish'], makePackage(work, { name: 'trust-stage', version: '1.0.0' }))).code).toBe(0);
  const added = await trust(maintainer, ['gitlab', 'trust-stage', '--file', '.gitlab-ci.yml', '--project', 'acme/stager', '--allow-stage-publish']);
  expect(added).toEqual({ code: 0, output: expect.any(String) });
  const stager = { project_path: 'acme/stager', ci_config_ref_uri: 'gitlab.example.com/acme/stager//.gitlab-ci.yml@refs/heads/main' };
  const published = await publishIn(gitlabJob(await idToken('gitlab', gitlabClaims(stager))), 'trust-stage', '1.1.0');
  expect(published.code).not.toBe(0);
  expect(published.output).toContain('whose trust allows staging only');
  const job = gitlabJob(await idToken('gitlab', gitlabClaims(stager)));
  const staged = await job.npm(['stage', 'publish', '--loglevel', 'verbose'], makePackage(work, { name: 'trust-stage', version: '1.1.0' }));
  expect({ code: staged.code, output: staged.code ? staged.stdout + staged.stderr : '' }).toEqual({ code: 0, output: '' });
  const listed = JSON.parse((await maintainer.npm(['stage', 'list', 'trust-stage', '--json'])).stdout);
  const items = (Array.isArray(listed) ? listed : listed.items) as { id: string; version: string; actorType: string }[];
  expect(items.map((item) => [item.version, item.actorType])).toEqual([['1.1.0', 'trusted publisher (gitlab)']]);
  expect((await registry.request('GET', '/trust-stage')).body.versions['1.1.0']).toBeUndefined();
  expect((await maintainer.npm(['stage', 'approve', items[0].id])).code).toBe(0);
  expect((await registry.request('GET', '/trust-stage')).body['dist-tags'].latest).toBe('1.1.0');
  // Its trust revoked, a token exchanged before stages no more.
  const early = await exchange('trust-stage', await idToken('gitlab', gitlabClaims(stager)));
  expect(early.status).toBe(201);
  const [id] = (await trustList(maintainer, 'trust-stage')).ids;
  expect((await maintainer.npm(['trust', 'revoke', 'trust-stage', '--id', id])).code).toBe(0);
  const late = npmClient(registry.url, early.body.token);
  const refused = await late.npm(['stage', 'publish'], makePackage(work, { name: 'trust-stage', version: '1.2.0' }));
  expect(refused.code).not.toBe(0);
  expect(refused.stdout + refused.stderr).toContain('has been revoked');
});

it('with two-factor authentication on, changing trusts needs a one-time password, even with a --bypass-2fa token; the CI\'s publish needs none', async () => {
  const owner = npmClient(registry.url, await registry.signup('trust-tfa', password));
  expect((await owner.npm(['publish'], makePackage(work, { name: 'trust-tfa-pkg', version: '1.0.0' }))).code).toBe(0);
  let secret = '';
  const enabled = await onTerminal(owner, 'profile enable-2fa auth-and-writes', [
    [/password:/i, () => password],
    [/OTP code from your authenticator:/, (seen) => {
      secret = /enter code:\s*([A-Z2-7]+)/i.exec(seen)![1];
      return new TOTP({ secret: Secret.fromBase32(secret) }).generate();
    }],
  ]);
  expect(enabled.code).toBe(0);
  const code = (periodsAhead: number) => new TOTP({ secret: Secret.fromBase32(secret) }).generate({ timestamp: Date.now() + periodsAhead * 30_000 });
  const args = ['gitlab', 'trust-tfa-pkg', '--file', '.gitlab-ci.yml', '--project', 'acme/web', '--allow-publish'];
  const without = await trust(owner, args);
  expect(without.code).not.toBe(0);
  expect(without.output).toContain('EOTP');
  // An automation token (made with a code) does not stand in for it either.
  const automation = /Created token (\S+)/.exec((await owner.npm(['token', 'create', '--bypass-2fa', '--password', password, '--otp', code(1)])).stdout);
  expect(automation).not.toBeNull();
  const withAutomation = await trust(npmClient(registry.url, automation![1]), args);
  expect(withAutomation.code).not.toBe(0);
  expect(withAutomation.output).toContain('EOTP');
  // npm trust takes no --otp: on a terminal npm shows the web approval page, or asks for the code with --auth-type=legacy.
  const withCode = await onTerminal(owner, ['trust', ...args, '--yes', '--auth-type=legacy'].join(' '), [[/Enter OTP:/, () => code(1)]]);
  expect(withCode.output).toContain('Trust configuration created successfully');
  expect(withCode.code).toBe(0);
  // The maintainers require a code for every write, automation tokens included: the CI publishes all the same.
  expect((await owner.npm(['access', 'set', 'mfa=publish', 'trust-tfa-pkg', '--otp', code(1)])).code).toBe(0);
  const published = await publishIn(gitlabJob(await idToken('gitlab', gitlabClaims())), 'trust-tfa-pkg', '1.1.0');
  expect(published.code).toBe(0);
});

it('a CI makes one token per publish: the maker\'s expired trusted publishing tokens are removed at the next exchange', async () => {
  const tokensDb = new URL(registry.adminCouchUrl).origin + '/' + registry.registryDb + '-tokens/';
  const admin = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
  const id = 'e'.repeat(64);
  const old = { type: 'token', user: 'trust-tfa', created: '2026-01-01T00:00:00.000Z', expires: '2026-01-01T00:15:00.000Z', readonly: false, cidr_whitelist: [], preview: 'cnr_expire', limits: { packages: ['trust-tfa-pkg'] }, trustedPublisher: { provider: 'gitlab', trustId: 'x', issuer: issuerUrl('gitlab') } };
  expect((await fetch(tokensDb + id, { method: 'PUT', headers: admin, body: JSON.stringify(old) })).status).toBe(201);
  expect((await exchange('trust-tfa-pkg', await idToken('gitlab', gitlabClaims()))).status).toBe(201);
  let status = 200;
  for (let i = 0; i < 50 && status === 200; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    status = (await fetch(tokensDb + id, { headers: admin })).status;
  }
  expect(status).toBe(404);
});

it('npm trust revoke: the CI is refused at once; a trust whose maker is no longer a maintainer is refused', async () => {
  const revoked = await maintainer.npm(['trust', 'revoke', 'trust-gl', '--id', gitlabTrustId]);
  expect(revoked.code).toBe(0);
  expect((await trustList(maintainer, 'trust-gl')).output).toContain('No trust configurations found');
  const refused = await exchange('trust-gl', await idToken('gitlab', gitlabClaims()));
  expect(refused.status).toBe(404);
  expect(refused.body.error).toContain('trusts no gitlab publisher');
  const again = await maintainer.npm(['trust', 'revoke', 'trust-gl', '--id', gitlabTrustId]);
  expect(again.code).not.toBe(0);

  // A co-maintainer sets up a trust, then is removed from the package.
  const co = npmClient(registry.url, await registry.signup('trust-co', password));
  expect((await maintainer.npm(['owner', 'add', 'trust-co', 'trust-other'])).code).toBe(0);
  expect((await trust(co, ['gitlab', 'trust-other', '--file', '.gitlab-ci.yml', '--project', 'acme/web', '--allow-publish'])).code).toBe(0);
  expect((await exchange('trust-other', await idToken('gitlab', gitlabClaims()))).status).toBe(201);
  expect((await maintainer.npm(['owner', 'rm', 'trust-co', 'trust-other'])).code).toBe(0);
  const orphan = await exchange('trust-other', await idToken('gitlab', gitlabClaims()));
  expect(orphan.status).toBe(403);
  expect(orphan.body.error).toContain('no longer a maintainer');
});

it('an issuer\'s keys are fetched through the outbound policy (a jwks_uri at another loopback port is refused) and kept between exchanges', async () => {
  const privateKeys = await exchange('trust-gl', await idToken('private-keys', gitlabClaims()));
  expect(privateKeys.status).toBe(424);
  expect(privateKeys.body.error).toContain('outbound request policy');
  expect(jwksFetches.get('private-keys')).toBeUndefined();
  const before = jwksFetches.get('gitlab') || 0;
  for (let i = 0; i < 3; i++) await exchange('trust-gh', await idToken('gitlab', gitlabClaims()));
  expect(jwksFetches.get('gitlab') || 0).toBe(before);
  // A huge body to the exchange is refused before it is read.
  const huge = await registry.request('POST', '/-/npm/v1/oidc/token/exchange/package/trust-gl', { raw: 'x'.repeat(3 * 1024 * 1024), headers: { authorization: 'Bearer x', 'content-type': 'text/plain' } });
  expect(huge.status).toBe(413);
  expect((await registry.request('GET', '/-/ping')).status).toBe(200);
});
