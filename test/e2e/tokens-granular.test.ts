/**
 * Granular tokens made with the real npm CLI (`npm token create` and its flags): a token limited to
 * packages or scopes publishes and reads only those (other private packages are refused, public ones
 * stay readable), every token expires (the default and the maximum are settings; an expired token is
 * refused saying so), `npm token list --json` shows the limits and the expiry, and what the registry
 * does not support is refused, never accepted and ignored.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { basicAuthOf, startTestRegistry, TestRegistry } from '../helpers/registry';
import { makePackage, npmClient, NpmClient } from '../helpers/npm';

let registry: TestRegistry;
let npm: NpmClient;
const work = mkdtempSync(join(tmpdir(), 'tokens-granular-'));
const user = 'granular-user';
const password = 'granular-password';

/** `npm token create` with `flags`; the token printed, or the CLI's failure. */
async function createToken(flags: string[]): Promise<{ code: number; token?: string; output: string }> {
  const result = await npm.npm(['token', 'create', '--password', password, ...flags]);
  const output = result.stdout + result.stderr;
  const match = /Created token (\S+)/.exec(output);
  return { code: result.code, token: match ? match[1] : undefined, output };
}

async function publishWith(token: string, name: string, version: string): Promise<{ code: number; output: string }> {
  const client = npmClient(registry.url, token);
  const result = await client.npm(['publish'], makePackage(work, { name, version }));
  return { code: result.code, output: result.stdout + result.stderr };
}

beforeAll(async () => {
  registry = await startTestRegistry({ TOKEN_MAX_DAYS: '30', TOKEN_DEFAULT_DAYS: '5' });
  const token = await registry.signup(user, password);
  npm = npmClient(registry.url, token);
  // @secret/* is private: only logged-in users read it.
  const couch = new URL(registry.adminCouchUrl).origin;
  const path = couch + '/' + registry.registryDb + '/_design/access';
  const current = await (await fetch(path, { headers: { authorization: basicAuthOf(registry.adminCouchUrl) } })).json();
  const rules = [{ package: '@secret/*', read: ['$authenticated'], publish: ['$authenticated'] }, { package: '**', read: ['$all'], publish: ['$authenticated'] }];
  const saved = await fetch(path, { method: 'PUT', headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' }, body: JSON.stringify({ ...current, rules }) });
  expect(saved.status).toBe(201);
  for (const name of ['granular-a', 'granular-b', '@secret/one', '@secret/two']) expect((await npm.npm(['publish'], makePackage(work, { name, version: '1.0.0' }))).code).toBe(0);
  // The access rules are read again within two seconds.
  await new Promise((resolve) => setTimeout(resolve, 2100));
});

afterAll(async () => {
  await registry?.stop();
  rmSync(work, { recursive: true, force: true });
});

it('a token limited to one package publishes it and nothing else', async () => {
  const made = await createToken(['--packages', 'granular-a', '--name', 'ci for a']);
  expect(made.code).toBe(0);
  expect(made.output).toMatch(/expires: \d{4}-/);
  expect((await publishWith(made.token!, 'granular-a', '1.1.0')).code).toBe(0);
  const other = await publishWith(made.token!, 'granular-b', '1.1.0');
  expect(other.code).not.toBe(0);
  expect(other.output).toContain('limited to "granular-a"');
  const fresh = await publishWith(made.token!, 'granular-new', '1.0.0');
  expect(fresh.code).not.toBe(0);
  // Nor does it change the other package's tags.
  const tag = await npmClient(registry.url, made.token!).npm(['dist-tag', 'add', 'granular-b@1.0.0', 'beta']);
  expect(tag.code).not.toBe(0);
});

it('a token limited to a scope publishes in it, reads its private packages, and reads no other private package; public ones stay readable', async () => {
  const made = await createToken(['--scopes', '@secret', '--packages', 'granular-b']);
  expect(made.code).toBe(0);
  const token = made.token!;
  expect((await publishWith(token, '@secret/one', '1.1.0')).code).toBe(0);
  expect((await publishWith(token, 'granular-b', '1.2.0')).code).toBe(0);
  expect((await publishWith(token, 'granular-a', '1.2.0')).code).not.toBe(0);
  const read = (name: string, with_: string) => fetch(registry.url + '/' + name.replace('/', '%2f'), { headers: { authorization: 'Bearer ' + with_ } });
  expect((await read('@secret/two', token)).status).toBe(200);
  expect((await read('granular-a', token)).status).toBe(200);
  // Limited to granular-a only: @secret/two is private and not its package.
  const narrow = (await createToken(['--packages', 'granular-a'])).token!;
  const refused = await read('@secret/two', narrow);
  expect(refused.status).toBe(403);
  expect(((await refused.json()) as { error: string }).error).toContain('limited to "granular-a"');
  const tarball = await fetch(registry.url + '/@secret/two/-/two-1.0.0.tgz', { headers: { authorization: 'Bearer ' + narrow } });
  expect(tarball.status).toBe(403);
  // Search leaves out what the token may not read.
  const search = (await (await fetch(registry.url + '/-/v1/search?text=two', { headers: { authorization: 'Bearer ' + narrow } })).json()) as { objects: { package: { name: string } }[] };
  expect(search.objects.map((o) => o.package.name)).not.toContain('@secret/two');
  // A limited token makes no tokens.
  const escalate = await fetch(registry.url + '/-/npm/v1/tokens', { method: 'POST', headers: { authorization: 'Bearer ' + narrow, 'content-type': 'application/json' }, body: JSON.stringify({ password }) });
  expect(escalate.status).toBe(403);
});

it('every token expires: write tokens by default after TOKEN_DEFAULT_DAYS, never after TOKEN_MAX_DAYS; npm token list --json shows limits and expiry', async () => {
  const day = 86_400_000;
  const write = await createToken(['--packages', 'granular-a']);
  const readOnly = await createToken(['--packages-and-scopes-permission', 'read-only']);
  const listed = await npm.npm(['token', 'list', '--json']);
  expect(listed.code).toBe(0);
  const tokens = JSON.parse(listed.stdout) as { token: string; expires: string | null; packages: string[] | null; readonly: boolean }[];
  const byPreview = (token: string) => tokens.find((t) => token.startsWith(t.token))!;
  const expiresIn = (token: string) => Date.parse(byPreview(token).expires!) - Date.now();
  expect(expiresIn(write.token!)).toBeGreaterThan(4.9 * day);
  expect(expiresIn(write.token!)).toBeLessThanOrEqual(5 * day);
  expect(byPreview(write.token!).packages).toEqual(['granular-a']);
  expect(expiresIn(readOnly.token!)).toBeGreaterThan(29.9 * day);
  expect(byPreview(readOnly.token!).readonly).toBe(true);
  const tooLong = await createToken(['--expires', '31']);
  expect(tooLong.code).not.toBe(0);
  expect(tooLong.output).toContain('at most 30 days');
  const week = await createToken(['--expires', '7']);
  expect(week.code).toBe(0);
});

it('an expired token is refused with a message that says so', async () => {
  const made = await createToken(['--expires', '1']);
  // An admin moves its expiry into the past (as time would).
  const couch = new URL(registry.adminCouchUrl).origin;
  const auth = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
  const { createHash } = await import('crypto');
  const id = createHash('sha256').update(made.token!).digest('hex');
  const doc = await (await fetch(couch + '/' + registry.registryDb + '-tokens/' + id, { headers: auth })).json();
  const saved = await fetch(couch + '/' + registry.registryDb + '-tokens/' + id, { method: 'PUT', headers: auth, body: JSON.stringify({ ...doc, expires: new Date(Date.now() - 1000).toISOString() }) });
  expect(saved.status).toBe(201);
  const whoami = await npmClient(registry.url, made.token!).npm(['whoami']);
  expect(whoami.code).not.toBe(0);
  const answer = await fetch(registry.url + '/-/whoami', { headers: { authorization: 'Bearer ' + made.token! } });
  expect(answer.status).toBe(401);
  expect(((await answer.json()) as { error: string }).error).toMatch(/expired on \d{4}-/);
});

it('what the registry does not support is refused with a clear error, never accepted and ignored', async () => {
  for (const [flags, message] of [
    [['--orgs', 'acme'], 'no npm orgs'],
    [['--orgs-permission', 'read-write'], 'no npm orgs'],
    [['--packages', 'Not A Name!'], 'not a package name'],
    [['--packages-all', '--packages', 'granular-a'], '--packages-all'],
  ] as [string[], string][]) {
    const made = await createToken(flags);
    expect({ flags, code: made.code === 0 }).toEqual({ flags, code: false });
    expect({ flags, output: made.output.includes(message) }).toEqual({ flags, output: true });
  }
  // What npm itself never sends (it leaves out --expires 0), straight to the endpoint.
  for (const body of [{ expires: 0 }, { expires: -3 }, { expires: '7' }, { packages: 'granular-a' + ' '.repeat(3) + '../x' }, { packages_and_scopes_permission: 'admin' }, { packages_and_scopes_permission: 'no-access' }]) {
    const answer = await fetch(registry.url + '/-/npm/v1/tokens', {
      method: 'POST',
      headers: { authorization: 'Bearer ' + (await registry.signup('granular-' + Math.random().toString(36).slice(2, 8), password)), 'content-type': 'application/json' },
      body: JSON.stringify({ password, ...body }),
    });
    expect({ body, status: answer.status }).toEqual({ body, status: 400 });
    expect(typeof ((await answer.json()) as { error?: string }).error).toBe('string');
  }
});

it('deploy tokens: an admin makes a read-only token for a scope that belongs to no person; it reads that scope\'s private packages and nothing else, and is revoked by an admin', async () => {
  const admin = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
  // Only admins make them.
  const refused = await fetch(registry.url + '/-/registry/deploy-tokens', { method: 'POST', headers: { authorization: 'Bearer ' + (await registry.signup('granular-nobody', password)), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x', scopes: ['@secret'] }) });
  expect(refused.status).toBe(403);
  expect((await fetch(registry.url + '/-/registry/deploy-tokens', { method: 'POST', headers: admin, body: JSON.stringify({ name: 'prod' }) })).status).toBe(400);
  const made = await fetch(registry.url + '/-/registry/deploy-tokens', { method: 'POST', headers: admin, body: JSON.stringify({ name: 'prod-deploy', scopes: ['@secret'], expires: 30 }) });
  expect(made.status).toBe(201);
  const deploy = (await made.json()) as { token: string; key: string; readonly: boolean; scopes: string[] };
  expect(deploy).toMatchObject({ readonly: true, scopes: ['@secret'] });
  // npm installs the scope's private package with it, and publishes nothing.
  const client = npmClient(registry.url, deploy.token);
  const project = join(work, 'deploy-project');
  const { makeProject } = await import('../helpers/npm');
  const dir = makeProject(project, 'deploy-consumer', { '@secret/one': '*' });
  expect((await client.npm(['install', '--no-audit', '--no-fund'], dir)).code).toBe(0);
  expect((await publishWith(deploy.token, '@secret/three', '1.0.0')).code).not.toBe(0);
  const whoami = await fetch(registry.url + '/-/whoami', { headers: { authorization: 'Bearer ' + deploy.token } });
  expect(((await whoami.json()) as { username: string }).username).toBe('deploy:prod-deploy');
  // Listed for admins, then revoked.
  const list = (await (await fetch(registry.url + '/-/registry/deploy-tokens', { headers: admin })).json()) as { objects: { key: string; name: string }[] };
  expect(list.objects.map((t) => t.name)).toContain('prod-deploy');
  expect((await fetch(registry.url + '/-/registry/deploy-tokens/' + deploy.key, { method: 'DELETE', headers: admin })).status).toBe(204);
  expect((await fetch(registry.url + '/@secret%2fone', { headers: { authorization: 'Bearer ' + deploy.token } })).status).toBe(401);
});
