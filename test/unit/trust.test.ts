/**
 * Trusted publishing as functions: what `npm trust` may send (core/trust.ts), whether a token's claims
 * match a trust, that validate_doc_update keeps non-maintainers from a package's trusts, and how the
 * ID token verifier (gateway/oidc.ts) keeps an issuer's keys: fetched once, fetched again for a key it
 * does not know at most every 30 s, and after ten minutes.
 */
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { exportJWK, generateKeyPair, KeyLike, SignJWT } from 'jose';
import validate from '../../couchapp/validate_doc_update';
import { OutboundPolicy } from '../../config';
import { GATEWAY_ROLE } from '../../core/provenance';
import { AllowedIssuer, TrustConfig, trustProblem, trustRequest } from '../../core/trust';
import { IdTokenVerifier } from '../../gateway/oidc';
import { clone, packageDoc } from './fixtures';

const allowed: AllowedIssuer[] = [
  { provider: 'github', issuer: 'https://token.actions.githubusercontent.com' },
  { provider: 'gitlab', issuer: 'https://gitlab.example.com' },
  { provider: 'gitlab', issuer: 'https://gitlab.com' },
  { provider: 'circleci', issuer: 'https://oidc.circleci.com/org/11111111-1111-4111-8111-111111111111' },
];
let ids = 0;
const made = { by: 'alice', now: '2026-12-01T00:00:00.000Z', newId: () => 'id-' + ++ids };
const request = (body: unknown) => trustRequest(body, allowed, made);

describe('trustRequest (what npm trust sends)', () => {
  it('takes npm\'s bodies for GitHub, GitLab and CircleCI and binds each trust to one issuer', () => {
    const [github] = request([{ type: 'github', claims: { repository: 'acme/tool', workflow_ref: { file: 'release.yml' }, environment: 'npm' }, permissions: ['createPackage'] }]);
    expect(github).toMatchObject({ type: 'github', issuer: 'https://token.actions.githubusercontent.com', createdBy: 'alice', permissions: ['createPackage'] });
    const [gitlab] = request([{ type: 'gitlab', claims: { project_path: 'acme/sub/web', ci_config_ref_uri: { file: '.gitlab-ci.yml' } }, permissions: ['createPackage'] }]);
    // The first GitLab listed, unless the body names another one listed.
    expect(gitlab.issuer).toBe('https://gitlab.example.com');
    expect(request([{ type: 'gitlab', claims: gitlab.claims, issuer: 'https://gitlab.com' }])[0].issuer).toBe('https://gitlab.com');
    expect(() => request([{ type: 'gitlab', claims: gitlab.claims, issuer: 'https://evil.example' }])).toThrow('must be one of');
    const [circle] = request([{
      type: 'circleci',
      claims: {
        'oidc.circleci.com/org-id': '11111111-1111-4111-8111-111111111111', 'oidc.circleci.com/project-id': '22222222-2222-4222-8222-222222222222',
        'oidc.circleci.com/pipeline-definition-id': '33333333-3333-4333-8333-333333333333', 'oidc.circleci.com/vcs-origin': 'github.com/acme/web',
      },
      permissions: ['createPackage'],
    }]);
    expect(circle.issuer).toBe('https://oidc.circleci.com/org/11111111-1111-4111-8111-111111111111');
  });

  it('refuses what it would not check, never accepting and ignoring it', () => {
    const github = (claims: Record<string, unknown>, extra: Record<string, unknown> = {}) => () => request([{ type: 'github', claims: { repository: 'acme/tool', workflow_ref: { file: 'release.yml' }, ...claims }, ...extra }]);
    expect(github({ ref: 'refs/heads/main' })).toThrow('"ref", which this registry does not check');
    expect(github({ workflow_ref: { file: '.github/workflows/release.yml' } })).toThrow('file name only');
    expect(github({ workflow_ref: { file: 'release.sh' } })).toThrow('.yml or .yaml');
    expect(github({ repository: 'just-a-name' })).toThrow('owner/repository');
    expect(github({}, { permissions: ['createStagedPackage', 'deletePackage'] })).toThrow('Unknown permission "deletePackage"');
    expect(github({}, { permissions: ['createStagedPackage'] })()[0].permissions).toEqual(['createStagedPackage']);
    expect(github({}, { permissions: ['createStagedPackage', 'createPackage', 'createPackage'] })()[0].permissions).toEqual(['createPackage', 'createStagedPackage']);
    expect(github({}, { permissions: [] })).toThrow('at least one permission');
    expect(github({}, { note: 'x' })).toThrow('"note"');
    expect(() => request([{ type: 'travis', claims: {} }])).toThrow('"type" must be one of');
    expect(() => request([])).toThrow('between 1 and 5');
    expect(() => request('text')).toThrow('list of trust configurations');
    expect(() => trustRequest([{ type: 'circleci', claims: {} }], allowed.filter((a) => a.provider !== 'circleci'), made)).toThrow();
  });
});

describe('trustProblem (the claims of a verified ID token)', () => {
  const [github] = request([{ type: 'github', claims: { repository: 'acme/tool', workflow_ref: { file: 'release.yml' }, environment: 'npm' } }]);
  const [gitlab] = request([{ type: 'gitlab', claims: { project_path: 'acme/web', ci_config_ref_uri: { file: '.gitlab-ci.yml' } } }]);
  const githubClaims = { repository: 'acme/tool', workflow_ref: 'acme/tool/.github/workflows/release.yml@refs/tags/v1.0.0', environment: 'npm' };
  const gitlabClaims = { project_path: 'acme/web', ci_config_ref_uri: 'gitlab.example.com/acme/web//.gitlab-ci.yml@refs/heads/main' };

  it('matches the repository, the workflow file and the environment the trust names', () => {
    expect(trustProblem(github, githubClaims)).toBeNull();
    expect(trustProblem(github, { ...githubClaims, environment: 'prod' })).toContain('environment');
    expect(trustProblem(github, { ...githubClaims, environment: undefined })).toContain('environment is missing');
    expect(trustProblem(github, { ...githubClaims, workflow_ref: 'acme/tool/.github/workflows/other.yml@refs/heads/main' })).toContain('workflow');
    // A reusable workflow of another repository named like the trusted one is not it.
    expect(trustProblem(github, { ...githubClaims, workflow_ref: 'evil/tool/.github/workflows/release.yml@refs/heads/main' })).toContain('workflow');
    expect(trustProblem(github, { ...githubClaims, repository: 'ACME/tool' })).toContain('repository');
    const anyEnvironment = { ...github, claims: { repository: 'acme/tool', workflow_ref: { file: 'release.yml' } } } as TrustConfig;
    expect(trustProblem(anyEnvironment, { ...githubClaims, environment: 'whatever' })).toBeNull();
  });

  it('matches the project and its own pipeline file', () => {
    expect(trustProblem(gitlab, gitlabClaims)).toBeNull();
    expect(trustProblem(gitlab, { ...gitlabClaims, project_path: 'acme/web2' })).toContain('project');
    expect(trustProblem(gitlab, { ...gitlabClaims, ci_config_ref_uri: 'gitlab.example.com/acme/web//ci/other.yml@refs/heads/main' })).toContain('pipeline file');
    // The pipeline definition of another project (ci_config_ref_uri names it) is not the project's own.
    expect(trustProblem(gitlab, { ...gitlabClaims, ci_config_ref_uri: 'gitlab.example.com/evil/web//.gitlab-ci.yml@refs/heads/main' })).toContain('pipeline file');
    expect(trustProblem(gitlab, { ...gitlabClaims, ci_config_ref_uri: null })).toContain('missing');
  });
});

describe('validate_doc_update and the trusts of a package', () => {
  const alice = { name: 'alice', roles: [GATEWAY_ROLE] };
  const mallory = { name: 'mallory', roles: [GATEWAY_ROLE] };
  const attempt = (doc: object, old: object, user: object) => {
    try {
      validate(doc as never, old as never, user as never);
      return 'ok';
    } catch (e) {
      return e;
    }
  };

  it('lets maintainers change them and nobody else, not even along with their own star', () => {
    const old = packageDoc('pkg', ['1.0.0']);
    const trusted = { ...clone(old), registry_trust: request([{ type: 'github', claims: { repository: 'mallory/x', workflow_ref: { file: 'x.yml' } } }]) };
    expect(attempt(trusted, old, mallory)).toEqual({ forbidden: expect.stringContaining('not a maintainer') });
    expect(attempt({ ...trusted, users: { mallory: true } }, old, mallory)).toEqual({ forbidden: expect.stringContaining('not a maintainer') });
    expect(attempt({ ...clone(old), registry_mfa: 'publish' }, old, mallory)).toEqual({ forbidden: expect.stringContaining('not a maintainer') });
    expect(attempt(trusted, old, alice)).toBe('ok');
  });
});

describe('IdTokenVerifier keeps an issuer\'s keys', () => {
  let server: Server;
  let issuer = '';
  let fetches = 0;
  let published: object[] = [];
  const keys: { key: KeyLike; kid: string; jwk: object }[] = [];
  let clock = 0;

  beforeAll(async () => {
    for (const kid of ['k1', 'k2']) {
      const pair = await generateKeyPair('RS256');
      keys.push({ key: pair.privateKey, kid, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256' } });
    }
    published = [keys[0].jwk];
    server = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/.well-known/openid-configuration') return res.end(JSON.stringify({ issuer, jwks_uri: issuer + '/jwks' }));
      fetches++;
      res.end(JSON.stringify({ keys: published }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    issuer = 'http://127.0.0.1:' + (server.address() as AddressInfo).port;
    jest.spyOn(Date, 'now').mockImplementation(() => new Date().getTime() + clock);
  });
  afterAll(async () => {
    jest.restoreAllMocks();
    await new Promise((resolve) => server.close(resolve));
  });

  it('fetches them once, again for an unknown key at most every 30 s, and after ten minutes', async () => {
    const verifier = new IdTokenVerifier({
      oidcIssuers: [{ provider: 'gitlab', issuer }],
      outbound: new OutboundPolicy({ allowPrivate: [], configured: [issuer], foreignHosts: [] }),
    });
    const token = (which: number, kid = keys[which].kid) => new SignJWT({ iss: issuer, aud: 'npm:registry.example.com', sub: 'x' })
      .setProtectedHeader({ alg: 'RS256', kid }).setIssuedAt().setExpirationTime('5m').sign(keys[which].key);
    await expect(verifier.verify(await token(0), 'npm:registry.example.com')).resolves.toMatchObject({ claims: { sub: 'x' } });
    await verifier.verify(await token(0), 'npm:registry.example.com');
    expect(fetches).toBe(1);
    // The issuer rotates its keys: the new one is not known yet, and not fetched again within 30 s.
    published = [keys[0].jwk, keys[1].jwk];
    for (let i = 0; i < 5; i++) await expect(verifier.verify(await token(1), 'npm:registry.example.com')).rejects.toThrow('does not publish');
    expect(fetches).toBe(1);
    clock += 31_000;
    await expect(verifier.verify(await token(1), 'npm:registry.example.com')).resolves.toBeTruthy();
    expect(fetches).toBe(2);
    // A forger's stream of unknown keys costs at most one fetch per 30 s.
    for (let i = 0; i < 5; i++) await expect(verifier.verify(await token(0, 'forged-' + i), 'npm:registry.example.com')).rejects.toThrow('does not publish');
    expect(fetches).toBe(2);
    // The old key withdrawn: refused once the keys are ten minutes old and fetched again.
    published = [keys[1].jwk];
    await expect(verifier.verify(await token(0), 'npm:registry.example.com')).resolves.toBeTruthy();
    clock += 10 * 60_000;
    await expect(verifier.verify(await token(0), 'npm:registry.example.com')).rejects.toThrow('does not publish');
    expect(fetches).toBe(3);
    await expect(verifier.verify(await token(1), 'npm:other.example.com')).rejects.toThrow('audience');
  });
});
