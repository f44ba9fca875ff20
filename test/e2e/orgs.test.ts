/**
 * Orgs and teams with npm's own commands (`npm org`, `npm team`, `npm access`), end to end with the
 * real npm CLI: an owner makes an org by claiming a free scope, creates a team, adds a member and
 * grants the team read-write; the member publishes, a non-member is refused at the gateway and
 * straight on the CouchDB port (as that user through proxy authentication, which only
 * `_design/access`'s validate_doc_update, reading the orgs, can refuse); a revoke and a removal hold
 * at once; `npm access set status=private` hides the package from non-members (packument, tarball,
 * search, page). Then a hostile user with an account attacks it.
 */
import { readFileSync } from 'fs';
import { Couch } from '../../couchdb/client';
import { makePackage, npmClient, NpmClient } from '../helpers/npm';
import { anotherGateway, couchGet, startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';
import { manifest, tarballOf } from '../unit/fixtures';

let registry: TestRegistry;
const tokens: Record<string, string> = {};
const clients: Record<string, NpmClient> = {};

const npmAs = (user: string, args: string[], cwd?: string) => clients[user].npm(args, cwd);
const publishAs = (user: string, name: string, version: string) => npmAs(user, ['publish'], makePackage(clients[user].home, { name, version }));
const api = (user: string | null, method: string, path: string, body?: unknown) => registry.request(method, path, { ...(user ? { token: tokens[user] } : {}), ...(body === undefined ? {} : { body }) });

/** A new version of the stored package `name`, written straight to CouchDB as `user` through proxy authentication (the gateway's role, as the gateway writes). */
async function directPublish(user: string, name: string, version: string): Promise<number> {
  const stored = (await storedDoc(registry, name)).body;
  const now = new Date().toISOString();
  const doc = {
    ...stored,
    versions: { ...stored.versions, [version]: manifest(name, version) },
    time: { ...stored.time, modified: now, [version]: now },
    'dist-tags': { latest: version },
    _attachments: { ...stored._attachments, [name.split('/').pop() + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarballOf(name, version).toString('base64') } },
  };
  const couch = new Couch(registry.adminCouchUrl, registry.proxySecret);
  const answer = await couch.putAs({ name: user, roles: [] }, registry.registryDb, doc).then(() => 201, (err) => (err as { statusCode: number }).statusCode);
  return answer;
}

beforeAll(async () => {
  registry = await startTestRegistry({ REPLICATION_PRIVATE_SCOPES: '@corp' });
  for (const name of ['alice', 'bob', 'mallory', 'carol']) {
    tokens[name] = await registry.signup(name);
    clients[name] = npmClient(registry.url, tokens[name]);
  }
  clients.anonymous = npmClient(registry.url);
  // alice's own package in a scope no org has: nobody else may claim that scope.
  expect((await publishAs('alice', '@alicetools/cli', '1.0.0')).code).toBe(0);
}, 120_000);
afterAll(() => registry.stop());

describe('an org, its teams and their packages', () => {
  it('npm org set on a free scope makes the org, with its maker as owner', async () => {
    const made = await npmAs('alice', ['org', 'set', 'acme', 'alice']);
    expect(made.stderr).toBe('');
    expect(made.stdout.trim()).toBe('Added alice as owner to acme. You now have 1 member in this org.');
    expect((await npmAs('alice', ['org', 'set', 'acme', 'bob'])).stdout.trim()).toBe('Added bob as developer to acme. You now have 2 members in this org.');
    expect((await npmAs('alice', ['org', 'set', 'acme', 'carol', 'admin'])).stdout.trim()).toBe('Added carol as admin to acme. You now have 3 members in this org.');
    const listed = await npmAs('bob', ['org', 'ls', 'acme', '--parseable']);
    expect(listed.stdout.trim().split('\n')).toEqual(['user\trole', 'alice\towner', 'bob\tdeveloper', 'carol\tadmin']);
    // It is kept in _design/access, beside the rules, where validate_doc_update reads it.
    const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
    expect(design.body.orgs.acme.members).toEqual({ alice: 'owner', bob: 'developer', carol: 'admin' });
  });

  it('the owner publishes in the scope, creates a team and adds a member; members list them', async () => {
    expect((await publishAs('alice', '@acme/widget', '1.0.0')).code).toBe(0);
    expect((await npmAs('alice', ['team', 'create', 'acme:devs'])).stdout.trim()).toBe('+@acme:devs');
    expect((await npmAs('carol', ['team', 'add', 'acme:devs', 'bob'])).stdout.trim()).toBe('bob added to @acme:devs');
    expect((await npmAs('bob', ['team', 'ls', 'acme'])).stdout.trim().split('\n')).toEqual(['@acme has 2 teams:', '@acme:developers', '@acme:devs']);
    expect((await npmAs('bob', ['team', 'ls', 'acme:devs'])).stdout.trim().split('\n')).toEqual(['@acme:devs has 1 user:', 'bob']);
    expect((await npmAs('bob', ['team', 'ls', 'acme:developers', '--parseable'])).stdout.trim().split('\n')).toEqual(['alice', 'bob', 'carol']);
    // A team for a while: a member in and out, then destroyed.
    expect((await npmAs('carol', ['team', 'create', 'acme:tmp', '--json'])).code).toBe(0);
    expect((await npmAs('carol', ['team', 'add', 'acme:tmp', 'bob'])).code).toBe(0);
    expect((await npmAs('carol', ['team', 'rm', 'acme:tmp', 'bob'])).stdout.trim()).toBe('bob removed from @acme:tmp');
    expect((await npmAs('carol', ['team', 'ls', 'acme:tmp'])).stdout.trim()).toBe('@acme:tmp has 0 users');
    expect((await npmAs('carol', ['team', 'destroy', 'acme:tmp'])).stdout.trim()).toBe('-@acme:tmp');
    expect((await npmAs('bob', ['team', 'ls', 'acme', '--parseable'])).stdout.trim().split('\n')).toEqual(['acme:developers', 'acme:devs']);
    const developers = await npmAs('alice', ['team', 'destroy', 'acme:developers']);
    expect(developers.code).toBe(1);
    expect(developers.stderr).toContain('cannot be destroyed');
    // Without an argument, npm lists the packages of the user logged in (it asks /-/org/<user>/package, then /-/user/<user>/package).
    expect((await npmAs('alice', ['access', 'list', 'packages'])).stdout.trim().split('\n')).toEqual(['@acme/widget: read-write', '@alicetools/cli: read-write']);
  });

  it('a new package of the scope is granted read-write to the developers team, as on npm; revoked, a member without a grant cannot publish it; read-write lets them', async () => {
    expect((await npmAs('bob', ['access', 'list', 'packages', 'acme:developers'])).stdout.trim()).toBe('@acme/widget: read-write');
    const revokedDevelopers = await npmAs('alice', ['access', 'revoke', 'acme:developers', '@acme/widget']);
    expect([revokedDevelopers.code, revokedDevelopers.stderr]).toEqual([0, '']);
    expect((await npmAs('bob', ['access', 'list', 'packages', 'acme:developers', '--json'])).stdout.trim()).toBe('{}');
    const refused = await publishAs('bob', '@acme/widget', '1.1.0');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('no team of its org gives you read-write');
    expect(await directPublish('bob', '@acme/widget', '1.1.0')).toBe(403);

    const granted = await npmAs('alice', ['access', 'grant', 'read-write', 'acme:devs', '@acme/widget']);
    expect([granted.code, granted.stderr]).toEqual([0, '']);
    expect((await npmAs('bob', ['access', 'list', 'packages', 'acme:devs'])).stdout.trim()).toBe('@acme/widget: read-write');
    expect((await npmAs('bob', ['access', 'list', 'packages', 'acme'])).stdout.trim()).toBe('@acme/widget: read-write');
    const collaborators = await npmAs('bob', ['access', 'list', 'collaborators', '@acme/widget', '--json']);
    expect(JSON.parse(collaborators.stdout)).toEqual({ alice: 'read-write', bob: 'read-write', carol: 'read-write' });

    expect((await publishAs('bob', '@acme/widget', '1.1.0')).code).toBe(0);
    expect(Object.keys((await storedDoc(registry, '@acme/widget')).body.versions)).toEqual(['1.0.0', '1.1.0']);
    // Straight on the CouchDB port, as bob with the gateway's role: the grant holds there too.
    expect(await directPublish('bob', '@acme/widget', '1.2.0')).toBe(201);
  });

  it('a non-member is refused at the gateway and straight on the CouchDB port, for existing and new packages of the scope', async () => {
    const existing = await publishAs('mallory', '@acme/widget', '1.3.0');
    expect(existing.code).not.toBe(0);
    expect(existing.stderr).toContain('not a member of the org @acme');
    const fresh = await publishAs('mallory', '@acme/evil', '1.0.0');
    expect(fresh.code).not.toBe(0);
    expect(fresh.stderr).toContain('not a member of the org @acme');
    expect(await directPublish('mallory', '@acme/widget', '1.3.0')).toBe(403);
    const couch = new Couch(registry.adminCouchUrl, registry.proxySecret);
    const now = new Date().toISOString();
    const direct = await couch.putAs({ name: 'mallory', roles: [] }, registry.registryDb, {
      _id: '@acme/direct', name: '@acme/direct', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': manifest('@acme/direct', '1.0.0') },
      time: { created: now, modified: now, '1.0.0': now }, maintainers: [{ name: 'mallory' }], origin: registry.registryId,
      _attachments: { 'direct-1.0.0.tgz': { content_type: 'application/octet-stream', data: tarballOf('@acme/direct', '1.0.0').toString('base64') } },
    }).then(() => 201, (err) => (err as { statusCode: number }).statusCode);
    expect(direct).toBe(403);
    expect((await storedDoc(registry, '@acme/evil')).status).toBe(404);
    expect((await storedDoc(registry, '@acme/direct')).status).toBe(404);
    // A member may make a new package in the scope.
    expect((await publishAs('bob', '@acme/gadget', '1.0.0')).code).toBe(0);
  });

  it('a revoke holds at once', async () => {
    const revoked = await npmAs('alice', ['access', 'revoke', 'acme:devs', '@acme/widget']);
    expect([revoked.code, revoked.stderr]).toEqual([0, '']);
    const refused = await publishAs('bob', '@acme/widget', '1.4.0');
    expect(refused.code).not.toBe(0);
    expect(await directPublish('bob', '@acme/widget', '1.4.0')).toBe(403);
    expect((await npmAs('bob', ['access', 'list', 'packages', 'acme:devs', '--json'])).stdout.trim()).toBe('{}');
  });

  it('npm access set status=private hides the package from non-members: packument, tarball, search, page', async () => {
    expect((await npmAs('mallory', ['view', '@acme/widget', 'version'])).stdout.trim()).toBe('1.2.0');
    const set = await npmAs('alice', ['access', 'set', 'status=private', '@acme/widget']);
    expect([set.code, set.stdout.trim()]).toEqual([0, '@acme/widget: private']);
    expect((await npmAs('bob', ['access', 'get', 'status', '@acme/widget'])).stdout.trim()).toBe('@acme/widget: private');

    const viewed = await npmAs('mallory', ['view', '@acme/widget', 'version']);
    expect(viewed.code).not.toBe(0);
    // To a non-member it is what a name with no package is (test/e2e/hostile-existence.test.ts): 404, and 401 asking for a login.
    const packument = await api('mallory', 'GET', '/@acme%2fwidget');
    expect([packument.status, packument.body.error]).toEqual([404, '"@acme/widget" is not in this registry, or you do not have permission to read it: a private package of the org @acme is read by its members, whom an owner of the org adds with `npm org set acme <user>`.']);
    expect((await api('mallory', 'GET', '/@acme%2fnothing')).body.error).toBe(packument.body.error.replace('widget', 'nothing'));
    expect((await api(null, 'GET', '/@acme%2fwidget')).status).toBe(401);
    expect((await api('mallory', 'GET', '/@acme/widget/-/widget-1.0.0.tgz')).status).toBe(404);
    expect((await api(null, 'GET', '/@acme/widget/-/widget-1.0.0.tgz')).status).toBe(401);
    const searched = await api('mallory', 'GET', '/-/v1/search?text=widget');
    expect(searched.body.objects.map((o: any) => o.package.name)).toEqual([]);
    expect((await api(null, 'GET', '/-/v1/search?text=widget')).body.objects).toEqual([]);
    const page = await registry.request('GET', '/@acme/widget', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(401);
    expect(String(page.body)).not.toContain('1.2.0');
    const home = await registry.request('GET', '/', { headers: { accept: 'text/html' } });
    expect([home.status, String(home.body).includes('@acme/gadget'), String(home.body).includes('@acme/widget')]).toEqual([200, true, false]);
    const webSearch = await registry.request('GET', '/-/web/search?q=widget', { headers: { accept: 'text/html' } });
    expect(String(webSearch.body)).toContain('0 packages');
    expect((await npmAs('anonymous', ['install', '@acme/widget'], makePackage(clients.anonymous.home, { name: 'consumer', version: '1.0.0' }))).code).not.toBe(0);

    // Members read it, install it and find it.
    expect((await npmAs('bob', ['view', '@acme/widget', 'version'])).stdout.trim()).toBe('1.2.0');
    expect((await api('bob', 'GET', '/@acme/widget/-/widget-1.0.0.tgz')).status).toBe(200);
    expect((await api('bob', 'GET', '/-/v1/search?text=widget')).body.objects.map((o: any) => o.package.name)).toEqual(['@acme/widget']);
    // The other packages of the scope stay public.
    expect((await npmAs('mallory', ['view', '@acme/gadget', 'version'])).stdout.trim()).toBe('1.0.0');

    const back = await npmAs('alice', ['access', 'set', 'status=public', '@acme/widget']);
    expect(back.stdout.trim()).toBe('@acme/widget: public');
    expect((await npmAs('mallory', ['view', '@acme/widget', 'version'])).stdout.trim()).toBe('1.2.0');
    expect((await npmAs('alice', ['access', 'set', 'status=private', '@acme/widget'])).code).toBe(0);
  });

  it('a member removed from the org loses publishing and private reads at once, with the token they already had', async () => {
    expect((await npmAs('alice', ['access', 'grant', 'read-write', 'acme:devs', '@acme/widget'])).code).toBe(0);
    expect((await publishAs('bob', '@acme/widget', '1.5.0')).code).toBe(0);
    const removed = await npmAs('alice', ['org', 'rm', 'acme', 'bob']);
    expect(removed.stdout.trim()).toBe('Successfully removed bob from acme. You now have 2 members in this org.');
    const stale = await publishAs('bob', '@acme/widget', '1.6.0');
    expect(stale.code).not.toBe(0);
    expect(stale.stderr).toContain('not a member of the org @acme');
    expect(await directPublish('bob', '@acme/widget', '1.6.0')).toBe(403);
    expect((await api('bob', 'GET', '/@acme%2fwidget')).status).toBe(404);
    // Removed from its teams too.
    expect((await npmAs('alice', ['team', 'ls', 'acme:devs', '--parseable'])).stdout.trim()).toBe('');
  });
});

describe('a hostile user with an account', () => {
  it('cannot manage an org they are not in, nor make themself a member', async () => {
    for (const args of [
      ['team', 'create', 'acme:evil'],
      ['team', 'add', 'acme:devs', 'mallory'],
      ['team', 'destroy', 'acme:devs'],
      ['org', 'set', 'acme', 'mallory', 'owner'],
      ['org', 'rm', 'acme', 'alice'],
      ['access', 'grant', 'read-write', 'acme:devs', '@acme/widget'],
      ['access', 'revoke', 'acme:devs', '@acme/widget'],
      ['access', 'set', 'status=public', '@acme/widget'],
    ]) {
      const refused = await npmAs('mallory', args);
      expect([args.join(' '), refused.code]).toEqual([args.join(' '), 1]);
      expect(refused.stderr).toMatch(/E403|E404|403|404/);
    }
    const listed = await api('mallory', 'GET', '/-/org/acme/user');
    expect([listed.status, listed.body.error]).toEqual([403, 'Only members of @acme see its members, teams and packages.']);
    const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
    expect(design.body.orgs.acme.members).toEqual({ alice: 'owner', carol: 'admin' });
    expect(Object.keys(design.body.orgs.acme.teams)).toEqual(['developers', 'devs']);
  });

  it('as a developer member, cannot add themself to teams, make teams, grant, or remove or demote the owner', async () => {
    expect((await npmAs('alice', ['org', 'set', 'acme', 'mallory'])).code).toBe(0);
    for (const args of [
      ['team', 'add', 'acme:devs', 'mallory'],
      ['team', 'create', 'acme:mine'],
      ['access', 'grant', 'read-write', 'acme:developers', '@acme/widget'],
      ['org', 'rm', 'acme', 'alice'],
      ['org', 'set', 'acme', 'alice', 'developer'],
      ['org', 'set', 'acme', 'mallory', 'owner'],
    ]) {
      const refused = await npmAs('mallory', args);
      expect([args.join(' '), refused.code]).toEqual([args.join(' '), 1]);
      expect(refused.stderr).toContain('403');
    }
    // A member reads the private package, but cannot publish it without a grant.
    expect((await npmAs('mallory', ['view', '@acme/widget', 'version'])).stdout.trim()).toBe('1.5.0');
    expect((await publishAs('mallory', '@acme/widget', '1.7.0')).code).not.toBe(0);
    // The last owner cannot be removed, even by themself.
    const last = await npmAs('alice', ['org', 'rm', 'acme', 'alice']);
    expect(last.code).toBe(1);
    expect(last.stderr).toContain('last owner');
    const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
    expect(design.body.orgs.acme.members).toEqual({ alice: 'owner', carol: 'admin', mallory: 'developer' });
    expect(design.body.orgs.acme.teams.devs.members).toEqual([]);
  });

  it('cannot claim a scope that is taken, holds another\'s packages, is reserved or is another user\'s name', async () => {
    const cases: [string, string][] = [
      ['acme', 'Only the owners of @acme add members'],
      ['alicetools', 'has packages of other maintainers'],
      ['admin', 'reserved'],
      ['npm', 'reserved'],
      ['bob', 'is the user bob\'s'],
      ['corp', 'private scopes (REPLICATION_PRIVATE_SCOPES)'],
    ];
    for (const [scope, reason] of cases) {
      const refused = await api('carol', 'PUT', '/-/org/' + scope + '/user', { user: 'carol', role: 'owner' });
      expect([scope, refused.status]).toEqual([scope, 403]);
      expect(refused.body.error).toContain(reason);
      expect((await npmAs('carol', ['org', 'set', scope, 'carol'])).code).toBe(1);
    }
    const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
    expect(Object.keys(design.body.orgs)).toEqual(['acme']);
    // alice's scope stays hers: she may still publish there.
    expect((await publishAs('alice', '@alicetools/cli', '1.1.0')).code).toBe(0);
    // An admin makes an org for a scope users may not claim; the user named is its owner.
    const admin = await registry.adminToken();
    const made = await registry.request('PUT', '/-/org/corp/user', { token: admin, body: { user: 'carol', role: 'developer' } });
    expect([made.status, made.body]).toEqual([200, { org: { name: 'corp', size: 1 }, user: 'carol', role: 'owner' }]);
    expect((await npmAs('carol', ['org', 'ls', 'corp'])).stdout).toContain('carol - owner');
    expect((await api(null, 'DELETE', '/-/org/corp/user', { user: 'carol' })).status).toBe(401);
  });

  it('odd names and bodies get a 4xx with a JSON error, never a 5xx', async () => {
    const probes: [string, string, unknown][] = [
      ['PUT', '/-/org/__proto__/user', { user: 'mallory' }],
      ['PUT', '/-/org/constructor/team', { name: 'x' }],
      ['PUT', '/-/org/ACME/user', { user: 'mallory' }],
      ['PUT', '/-/org/%2e%2e/user', { user: 'mallory' }],
      ['PUT', '/-/org/a%00b/user', { user: 'mallory' }],
      ['PUT', '/-/org/%E0%A4%A/user', { user: 'mallory' }],
      ['PUT', '/-/org/acme/team', { name: '__proto__' }],
      ['PUT', '/-/org/acme/team', { name: 'a:b' }],
      ['PUT', '/-/org/acme/team', { name: ['devs'] }],
      ['PUT', '/-/org/acme/user', { user: '../alice' }],
      ['PUT', '/-/org/acme/user', { user: 'alice', role: 'god' }],
      ['PUT', '/-/org/acme/user', { user: { $ne: null } }],
      ['PUT', '/-/team/acme/constructor/user', { user: 'mallory' }],
      ['PUT', '/-/team/acme/devs/package', { package: '@other/x', permissions: 'read-write' }],
      ['PUT', '/-/team/acme/devs/package', { package: '@acme/widget', permissions: 'admin' }],
      ['DELETE', '/-/team/acme/__proto__', undefined],
      ['GET', '/-/org/nosuchorg/user', undefined],
      ['POST', '/-/org/acme/user', { user: 'mallory' }],
    ];
    for (const [method, path, body] of probes) {
      const answer = await api('carol', method, path, body);
      expect([method, path, answer.status >= 400 && answer.status < 500]).toEqual([method, path, true]);
      expect(typeof answer.body.error).toBe('string');
    }
    const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
    expect(Object.keys(design.body.orgs).sort()).toEqual(['acme', 'corp']);
    expect(Object.keys(design.body.orgs.acme.teams)).toEqual(['developers', 'devs']);
  });

  it('odd names of another kind: a scope named like an inherited key, a team called constructor', async () => {
    const created = await api('mallory', 'PUT', '/-/org/acme/team', { name: 'constructor' });
    expect(created.status).toBe(403);
    expect((await api('alice', 'PUT', '/-/org/acme/team', { name: 'constructor' })).status).toBe(201);
    expect((await api('alice', 'PUT', '/-/team/acme/constructor/user', { user: 'bob' })).status).toBe(400);
    expect((await api('alice', 'DELETE', '/-/team/acme/constructor')).status).toBe(204);
    const inherited = await api('mallory', 'PUT', '/-/org/constructor/user', { user: 'mallory' });
    expect(inherited.status).toBe(200);
    expect((await api('mallory', 'GET', '/-/org/constructor/user')).body).toEqual({ mallory: 'owner' });
  });

  it('cannot fill _design/access: a user owns at most 10 orgs, an org has at most 100 teams', async () => {
    // mallory owns @constructor already.
    for (let i = 0; i < 9; i++) expect((await api('mallory', 'PUT', '/-/org/mallory-' + i + '/user', { user: 'mallory' })).status).toBe(200);
    const eleventh = await api('mallory', 'PUT', '/-/org/mallory-9/user', { user: 'mallory' });
    expect([eleventh.status, eleventh.body.error]).toEqual([403, 'You own 10 orgs already, as many as a user may make; ask an admin to make more.']);
    for (let i = 1; i < 100; i++) expect((await api('mallory', 'PUT', '/-/org/mallory-0/team', { name: 't' + i })).status).toBe(201);
    const tooMany = await api('mallory', 'PUT', '/-/org/mallory-0/team', { name: 'one-more' });
    expect([tooMany.status, tooMany.body.error]).toContain(403);
    const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
    expect(Object.keys(design.body.orgs).length).toBe(12);
    expect(Object.keys(design.body.orgs['mallory-0'].teams).length).toBe(100);
  });

  it('read-only and package-limited tokens cannot change orgs', async () => {
    const readonly = await api('alice', 'POST', '/-/npm/v1/tokens', { password: 'password-alice', readonly: true });
    expect(readonly.status).toBe(201);
    const refused = await registry.request('PUT', '/-/org/acme/team', { token: readonly.body.token, body: { name: 'ro' } });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toContain('read-only');
    const limited = await api('alice', 'POST', '/-/npm/v1/tokens', { password: 'password-alice', packages: ['@acme/widget'] });
    expect(limited.status).toBe(201);
    const limitedRefused = await registry.request('PUT', '/-/org/acme/user', { token: limited.body.token, body: { user: 'bob' } });
    expect(limitedRefused.status).toBe(403);
    expect(limitedRefused.body.error).toContain('limited to some packages');
  });

  it('search, views and the replication feed follow membership: the removed member no longer finds the private package, a new member does', async () => {
    const bobToken = /:_authToken=(\S+)/.exec(readFileSync(clients.bob.userconfig, 'utf8'))![1];
    expect((await registry.request('GET', '/-/v1/search?text=widget', { token: bobToken })).body.objects).toEqual([]);
    expect((await api('mallory', 'GET', '/-/v1/search?text=widget')).body.objects.map((o: any) => o.package.name)).toEqual(['@acme/widget']);
    const view = (user: string) => api(user, 'GET', '/-/_view/byMaintainer?key=' + encodeURIComponent('"alice"'));
    expect((await view('bob')).body.rows.map((r: any) => r.id)).not.toContain('@acme/widget');
    expect((await view('mallory')).body.rows.map((r: any) => r.id)).toContain('@acme/widget');
    const feed = (user: string) => api(user, 'GET', '/-/replicate/_changes');
    const bobFeed = await feed('bob');
    expect(bobFeed.status).toBe(200);
    expect(bobFeed.body.results.map((r: any) => r.id)).toContain('@acme/gadget');
    expect(bobFeed.body.results.map((r: any) => r.id)).not.toContain('@acme/widget');
    expect((await feed('mallory')).body.results.map((r: any) => r.id)).toContain('@acme/widget');
  });
});

describe('several gateways in front of one CouchDB', () => {
  it('a removal made through one gateway holds on another within the access rules\' two-second cache, for tokens and Basic alike', async () => {
    const second = await anotherGateway(registry, 'second-gateway');
    try {
      const read = (authorization: string) => fetch(second.localUrl + '/@acme%2fwidget', { headers: { accept: 'application/json', authorization } });
      const basic = 'Basic ' + Buffer.from('mallory:password-mallory').toString('base64');
      expect((await read('Bearer ' + tokens.mallory)).status).toBe(200);
      expect((await read(basic)).status).toBe(200);
      expect((await api('alice', 'DELETE', '/-/org/acme/user', { user: 'mallory' })).status).toBe(204);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      expect((await read('Bearer ' + tokens.mallory)).status).toBe(404);
      expect((await read(basic)).status).toBe(404);
      const tarball = await fetch(second.localUrl + '/@acme/widget/-/widget-1.0.0.tgz', { headers: { authorization: 'Bearer ' + tokens.mallory } });
      expect(tarball.status).toBe(404);
    } finally {
      await second.close();
    }
  });

  it('changes of the orgs made at once through two gateways all hold (on a CouchDB cluster, a change that lost as a conflict is made again)', async () => {
    const second = await anotherGateway(registry, 'third-gateway');
    try {
      // An org of its own, so that the test also runs alone (-t).
      expect((await api('alice', 'PUT', '/-/org/racers/user', { user: 'alice' })).status).toBeLessThan(300);
      const make = (base: string, name: string) =>
        fetch(base + '/-/org/racers/team', { method: 'PUT', headers: { authorization: 'Bearer ' + tokens.alice, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
      const names = Array.from({ length: 8 }, (_, i) => 'racing-' + i);
      const answers = await Promise.all(names.map((name, i) => make(i % 2 ? second.localUrl : registry.url, name)));
      expect(answers.map((a) => a.status)).toEqual(names.map(() => 201));
      const teams = await api('alice', 'GET', '/-/org/racers/team');
      expect(teams.status).toBe(200);
      for (const name of names) expect(teams.body).toContain('racers:' + name);
      // No losing revision is left behind in _design/access.
      const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access?conflicts=true');
      expect(design.body._conflicts).toBeUndefined();
    } finally {
      await second.close();
    }
  });
});
