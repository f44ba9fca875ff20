/**
 * The registry through the real npm CLI, as a developer uses it: accounts, publish, dist-tags,
 * deprecate, owners, stars, view, install, ci, unpublish; and a non-maintainer refused at each write.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { makePackage, makeProject, npmClient, NpmClient } from '../helpers/npm';
import { basicAuthOf, startTestRegistry, TestRegistry } from '../helpers/registry';

let registry: TestRegistry;
let alice: NpmClient;
let bob: NpmClient;

function output(r: { stdout: string; stderr: string }) {
  return r.stdout + r.stderr;
}

const project = (client: NpmClient, name: string, dependencies: Record<string, string>) => makeProject(client.home, name, dependencies);

beforeAll(async () => {
  registry = await startTestRegistry();
  alice = npmClient(registry.url);
  bob = npmClient(registry.url);
});
afterAll(() => registry.stop());

describe('accounts', () => {
  it('npm adduser creates the account and saves a token; npm whoami answers', async () => {
    const added = await alice.loginLegacy('adduser', 'alice', 'alice-password-1');
    expect(added.code).toBe(0);
    expect(readFileSync(alice.userconfig, 'utf8')).toMatch(/:_authToken=cnr_/);
    const who = await alice.npm(['whoami']);
    expect(who.stdout.trim()).toBe('alice');
  });

  it('npm login --auth-type=legacy logs an existing user in (409 path), and refuses a wrong password', async () => {
    const signup = await registry.request('PUT', '/-/user/org.couchdb.user:bob', {
      body: { _id: 'org.couchdb.user:bob', name: 'bob', password: 'bob-password-1', email: 'bob@example.com', type: 'user', roles: [] },
    });
    expect(signup.status).toBe(201);
    const wrong = await bob.loginLegacy('login', 'bob', 'not-bobs-password');
    expect(wrong.code).not.toBe(0);
    expect(wrong.stdout).toMatch(/401|Wrong user name or password/);
    const login = await bob.loginLegacy('login', 'bob', 'bob-password-1');
    expect(login.code).toBe(0);
    expect((await bob.npm(['whoami'])).stdout.trim()).toBe('bob');
  });

  it('Basic auth works as well as the token, and a bad token is refused', async () => {
    const basic = await registry.request('GET', '/-/whoami', { headers: { authorization: 'Basic ' + Buffer.from('bob:bob-password-1').toString('base64') } });
    expect(basic.body).toEqual({ username: 'bob' });
    const bad = await registry.request('GET', '/-/whoami', { token: 'cnr_not-a-token' });
    expect(bad.status).toBe(401);
    expect(bad.body.error).toContain('npm login');
  });
});

describe('publishing and installing', () => {
  it('publishes scoped and unscoped packages and installs them', async () => {
    const lib = makePackage(alice.home, { name: 'e2e-lib', version: '1.0.0', description: 'a library' });
    expect((await alice.npm(['publish'], lib)).code).toBe(0);
    const scoped = makePackage(alice.home, { name: '@acme/tool', version: '1.0.0', dependencies: { 'e2e-lib': '^1.0.0' } });
    const published = await alice.npm(['publish'], scoped);
    expect(output(published)).toContain('+ @acme/tool@1.0.0');

    const app = project(bob, 'app-install', { '@acme/tool': '^1.0.0' });
    const install = await bob.npm(['install'], app);
    expect(install.code).toBe(0);
    expect(readFileSync(join(app, 'node_modules/@acme/tool/index.js'), 'utf8')).toContain('@acme/tool@1.0.0');
    expect(readFileSync(join(app, 'node_modules/e2e-lib/package.json'), 'utf8')).toContain('"version": "1.0.0"');
  });

  it('npm view shows the metadata, with the publisher and this registry\'s tarball URL', async () => {
    const view = await bob.npm(['view', '@acme/tool', '--json']);
    const info = JSON.parse(view.stdout);
    expect(info.name).toBe('@acme/tool');
    expect(info.version).toBe('1.0.0');
    expect(info._npmUser).toMatch(/^alice/);
    expect(info.maintainers[0]).toMatch(/^alice/);
    expect(info.dist.tarball).toBe(registry.url + '/@acme/tool/-/tool-1.0.0.tgz');
  });

  it('--tag publishes without moving latest; dist-tag add, ls and rm', async () => {
    const beta = makePackage(alice.home, { name: 'e2e-lib', version: '2.0.0-beta.1' });
    expect((await alice.npm(['publish', '--tag', 'beta'], beta)).code).toBe(0);
    let tags = await alice.npm(['dist-tag', 'ls', 'e2e-lib']);
    expect(tags.stdout).toContain('beta: 2.0.0-beta.1');
    expect(tags.stdout).toContain('latest: 1.0.0');
    expect((await alice.npm(['dist-tag', 'add', 'e2e-lib@1.0.0', 'stable'])).code).toBe(0);
    expect((await alice.npm(['dist-tag', 'rm', 'e2e-lib', 'beta'])).code).toBe(0);
    tags = await alice.npm(['dist-tag', 'ls', 'e2e-lib']);
    expect(tags.stdout).toContain('stable: 1.0.0');
    expect(tags.stdout).not.toContain('beta');
  });

  it('refuses publishing over an existing version', async () => {
    const again = makePackage(alice.home, { name: 'e2e-lib', version: '1.0.0', description: 'changed' }, { 'index.js': 'changed' });
    const result = await alice.npm(['publish'], again);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/cannot publish over the previously published versions?:? 1.0.0/);
  });

  it('npm ci installs exactly what the lockfile says', async () => {
    const app = project(bob, 'app-ci', { 'e2e-lib': '^1.0.0' });
    expect((await bob.npm(['install', '--package-lock-only'], app)).code).toBe(0);
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8'));
    expect(lock.packages['node_modules/e2e-lib'].integrity).toMatch(/^sha512-/);
    const ci = await bob.npm(['ci'], app);
    expect(ci.code).toBe(0);
    expect(JSON.parse(readFileSync(join(app, 'node_modules/e2e-lib/package.json'), 'utf8')).version).toBe('1.0.0');
  });
});

describe('maintainers, deprecation and stars', () => {
  it('a non-maintainer is refused with 403 and a reason for every write', async () => {
    const takeover = makePackage(bob.home, { name: 'e2e-lib', version: '9.0.0' });
    const attempts = [
      await bob.npm(['publish'], takeover),
      await bob.npm(['dist-tag', 'add', 'e2e-lib@1.0.0', 'hijack']),
      await bob.npm(['deprecate', 'e2e-lib@1.0.0', 'bad']),
      await bob.npm(['owner', 'add', 'bob', 'e2e-lib']),
      await bob.npm(['unpublish', 'e2e-lib@1.0.0', '--force']),
      await bob.npm(['unpublish', 'e2e-lib', '--force']),
    ];
    for (const attempt of attempts) {
      if (process.env.DEBUG_E2E) console.log(attempt);
      expect(attempt.code).not.toBe(0);
      expect(attempt.stderr).toMatch(/403/);
      expect(attempt.stderr).toMatch(/not a maintainer of \\?"e2e-lib/);
    }
    const view = JSON.parse((await bob.npm(['view', 'e2e-lib', '--json'])).stdout);
    expect(view.versions).toEqual(['1.0.0', '2.0.0-beta.1']);
    expect(view['dist-tags']).toEqual({ latest: '1.0.0', stable: '1.0.0' });
    expect(view.deprecated).toBeUndefined();
  });

  it('npm deprecate and un-deprecate', async () => {
    expect((await alice.npm(['deprecate', 'e2e-lib@1.0.0', 'use 2.x'])).code).toBe(0);
    expect((await bob.npm(['view', 'e2e-lib@1.0.0', 'deprecated'])).stdout.trim()).toBe('use 2.x');
    expect((await alice.npm(['deprecate', 'e2e-lib@1.0.0', ''])).code).toBe(0);
    expect((await bob.npm(['view', 'e2e-lib@1.0.0', 'deprecated'])).stdout.trim()).toBe('');
  });

  it('npm owner ls, add and rm', async () => {
    const ls = await bob.npm(['owner', 'ls', 'e2e-lib']);
    if (process.env.DEBUG_E2E) console.log(ls);
    expect(ls.stdout).toContain('alice');
    expect((await alice.npm(['owner', 'add', 'bob', 'e2e-lib'])).code).toBe(0);
    expect((await bob.npm(['owner', 'ls', 'e2e-lib'])).stdout).toMatch(/alice <alice@example.com>[\s\S]*bob <bob@example.com>/);
    expect((await bob.npm(['dist-tag', 'add', 'e2e-lib@1.0.0', 'bobs'])).code).toBe(0);
    expect((await alice.npm(['owner', 'rm', 'bob', 'e2e-lib'])).code).toBe(0);
    expect((await bob.npm(['owner', 'ls', 'e2e-lib'])).stdout).not.toContain('bob');
    expect((await bob.npm(['dist-tag', 'add', 'e2e-lib@1.0.0', 'again'])).code).not.toBe(0);
  });

  it('npm owner ls shows an owner whose account has no email without "undefined"', async () => {
    // An account an admin made in Fauxton: no email.
    const admin = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
    const userUrl = new URL('/_users/org.couchdb.user:noemail', new URL(registry.adminCouchUrl).origin);
    const made = await fetch(userUrl, { method: 'PUT', headers: admin, body: JSON.stringify({ name: 'noemail', password: 'noemail-password', type: 'user', roles: [] }) });
    expect(made.status).toBe(201);
    try {
      expect((await alice.npm(['owner', 'add', 'noemail', 'e2e-lib'])).code).toBe(0);
      const ls = await bob.npm(['owner', 'ls', 'e2e-lib']);
      expect(ls.stdout).toContain('noemail <>');
      expect(ls.stdout).not.toContain('undefined');
      expect((await alice.npm(['owner', 'rm', 'noemail', 'e2e-lib'])).code).toBe(0);
    } finally {
      const current = (await (await fetch(userUrl, { headers: admin })).json()) as { _rev?: string };
      if (current._rev) await fetch(userUrl + '?rev=' + current._rev, { method: 'DELETE', headers: admin });
    }
  });

  it('npm star, stars and unstar', async () => {
    expect((await bob.npm(['star', 'e2e-lib'])).code).toBe(0);
    expect((await bob.npm(['star', '@acme/tool'])).code).toBe(0);
    expect((await bob.npm(['stars'])).stdout.split('\n').filter(Boolean).sort()).toEqual(['@acme/tool', 'e2e-lib']);
    expect((await bob.npm(['unstar', 'e2e-lib'])).code).toBe(0);
    expect((await bob.npm(['stars'])).stdout.trim()).toBe('@acme/tool');
  });
});

describe('unpublish', () => {
  it('unpublishes one version: gone with its tarball, and its number cannot be reused', async () => {
    const v = makePackage(alice.home, { name: 'e2e-gone', version: '1.0.0' });
    const w = makePackage(alice.home, { name: 'e2e-gone', version: '1.1.0' });
    expect((await alice.npm(['publish'], v)).code).toBe(0);
    expect((await alice.npm(['publish'], w)).code).toBe(0);
    expect((await alice.npm(['unpublish', 'e2e-gone@1.1.0', '--force'])).code).toBe(0);
    const view = JSON.parse((await bob.npm(['view', 'e2e-gone', '--json'])).stdout);
    expect(view.versions).toEqual(['1.0.0']);
    expect(view['dist-tags'].latest).toBe('1.0.0');
    expect((await registry.request('GET', '/e2e-gone/-/e2e-gone-1.1.0.tgz')).status).toBe(404);
    const again = await alice.npm(['publish'], w);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('never reused');
  });

  it('unpublishes a whole package: 404 for clients, tombstone kept, old versions not reusable', async () => {
    expect((await alice.npm(['unpublish', 'e2e-gone', '--force'])).code).toBe(0);
    const gone = await registry.request('GET', '/e2e-gone');
    expect(gone.status).toBe(404);
    expect(gone.body.error).toContain('was unpublished');
    expect((await registry.request('GET', '/e2e-gone/-/e2e-gone-1.0.0.tgz')).status).toBe(404);
    const republish = await alice.npm(['publish'], makePackage(join(alice.home, 'again'), { name: 'e2e-gone', version: '1.0.0' }));
    expect(republish.stderr).toContain('never reused');
    const takeover = await bob.npm(['publish'], makePackage(bob.home, { name: 'e2e-gone', version: '5.0.0' }));
    expect(takeover.stderr).toContain('not a maintainer');
    const fresh = await alice.npm(['publish'], makePackage(alice.home, { name: 'e2e-gone', version: '2.0.0' }));
    expect(fresh.code).toBe(0);
  });
});

describe('logout', () => {
  it('npm logout revokes the token it used', async () => {
    const token = /:_authToken=(\S+)/.exec(readFileSync(bob.userconfig, 'utf8'))![1];
    expect((await bob.npm(['logout'])).code).toBe(0);
    expect((await registry.request('GET', '/-/whoami', { token })).status).toBe(401);
  });
});
