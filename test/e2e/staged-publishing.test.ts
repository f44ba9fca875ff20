/**
 * Staged publishing with the real npm CLI (`npm stage`, npm 11.19): `npm stage publish` stores a
 * version without publishing it (no one-time password asked); `npm stage list`, `view` and `download`
 * show it to its maintainers only; until approved it is not installable, not in `npm view`, not in
 * search, not in the registry database (so not in the change feed a downstream registry follows);
 * `npm stage approve` publishes exactly the staged tarball (same integrity), with the approver's second
 * factor and never with a `--bypass-2fa` token; `npm stage reject` removes it. A package can require
 * staging: `npm publish` is then refused. The endpoints take hostile ids and bodies without a 5xx.
 */
import { createHash } from 'crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Secret, TOTP } from 'otpauth';
import { couchGet, startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';
import { makePackage, makeProject, npmClient, NpmClient } from '../helpers/npm';
import { basicAuthOf } from '../helpers/registry';

let registry: TestRegistry;
const work = mkdtempSync(join(tmpdir(), 'staged-'));
const password = 'staged-password';
const MAX_PUBLISH_BYTES = 1024 * 1024;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

const codeOf = (secret: string) => new TOTP({ secret: Secret.fromBase32(secret) }).generate();
const sha512 = (data: Buffer) => 'sha512-' + createHash('sha512').update(data).digest('base64');

let alice: NpmClient;
let aliceToken: string;
let mallory: NpmClient;
let malloryToken: string;

/** `npm <args>` in `cwd`: exit code and everything printed. */
async function npm(client: NpmClient, args: string[], cwd?: string): Promise<{ code: number; out: string; stdout: string }> {
  const result = await client.npm(args, cwd);
  return { code: result.code, out: result.stdout + result.stderr, stdout: result.stdout };
}

/** `npm stage publish` of `name@version` by `client`; the stage id npm prints. */
async function stage(client: NpmClient, name: string, version: string, extra: string[] = []): Promise<string> {
  const result = await npm(client, ['stage', 'publish', ...extra], makePackage(work, { name, version }, { 'index.js': 'module.exports = "staged ' + version + '";\n' }));
  expect({ code: result.code, out: result.code === 0 ? '' : result.out }).toEqual({ code: 0, out: '' });
  const id = new RegExp('staged with id (' + UUID.source + ')').exec(result.out);
  expect(id).not.toBeNull();
  return id![1];
}

/** The staged versions `client` sees, as `npm stage list --json` prints them. */
async function listed(client: NpmClient, spec?: string): Promise<any[]> {
  const result = await npm(client, ['stage', 'list', '--json', ...(spec ? [spec] : [])]);
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout);
}

beforeAll(async () => {
  // Publishes here are small: a low publish limit lets the hostile tests send a body over it.
  registry = await startTestRegistry({ MAX_PUBLISH_BYTES: String(MAX_PUBLISH_BYTES) });
  // A webhook for the staging events: its deliveries are recorded before they are sent.
  const hook = await fetch(new URL('/' + registry.registryDb + '-state/webhook:staging', new URL(registry.adminCouchUrl).origin), {
    method: 'PUT',
    headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'webhook', url: 'https://hooks.example.invalid/npm', secret: 's', events: ['package:stage', 'package:stage-approve', 'package:stage-reject'], active: true }),
  });
  expect(hook.status).toBe(201);
  aliceToken = await registry.signup('stage-alice', password);
  malloryToken = await registry.signup('stage-mallory', password);
  alice = npmClient(registry.url, aliceToken);
  mallory = npmClient(registry.url, malloryToken);
  expect((await npm(alice, ['publish'], makePackage(work, { name: 'stage-pkg', version: '1.0.0' }))).code).toBe(0);
});

afterAll(async () => {
  await registry?.stop();
  rmSync(work, { recursive: true, force: true });
});

it('npm stage publish keeps the version out of sight: listed, viewed and downloaded by its maintainer only, not installable, not in npm view or search', async () => {
  const id = await stage(alice, 'stage-pkg', '1.1.0');
  const items = await listed(alice);
  expect(items).toEqual([expect.objectContaining({ id, packageName: 'stage-pkg', version: '1.1.0', tag: 'latest', actor: 'stage-alice', actorType: 'token' })]);
  expect(await listed(alice, 'stage-pkg')).toHaveLength(1);
  expect(await listed(alice, 'other-pkg')).toEqual([]);
  const text = await npm(alice, ['stage', 'list']);
  expect(text.stdout).toContain(id);
  const view = JSON.parse((await npm(alice, ['stage', 'view', id, '--json'])).stdout);
  expect(view).toMatchObject({ id, packageName: 'stage-pkg', version: '1.1.0' });

  // npm stage download writes the very bytes npm packed.
  const folder = mkdtempSync(join(work, 'download-'));
  const downloaded = await npm(alice, ['stage', 'download', id], folder);
  expect(downloaded.code).toBe(0);
  const file = readdirSync(folder).find((f) => f.endsWith('.tgz'))!;
  expect(file).toBe('stage-pkg-1.1.0-' + id + '.tgz');
  const bytes = readFileSync(join(folder, file));
  const packed = mkdtempSync(join(work, 'pack-'));
  expect((await npm(alice, ['pack', '--pack-destination', packed], join(work, 'pkg-stage-pkg-1.1.0'))).code).toBe(0);
  expect(bytes.equals(readFileSync(join(packed, 'stage-pkg-1.1.0.tgz')))).toBe(true);
  expect(sha512(bytes)).toBe(view.integrity);

  // Not served: npm view, npm install, the tarball URL, search, the registry database.
  expect(JSON.parse((await npm(mallory, ['view', 'stage-pkg', 'versions', '--json'])).stdout)).toEqual(['1.0.0']);
  const install = await npm(mallory, ['install', 'stage-pkg@1.1.0'], makeProject(work, 'consumer-staged', {}));
  expect(install.code).not.toBe(0);
  expect(install.out).toContain('ETARGET');
  expect((await fetch(registry.url + '/stage-pkg/-/stage-pkg-1.1.0.tgz')).status).toBe(404);
  expect((await fetch(registry.url + '/stage-pkg/1.1.0')).status).toBe(404);
  const search = await (await fetch(registry.url + '/-/v1/search?text=stage-pkg')).json();
  expect(search.objects.map((o: any) => o.package.version)).toEqual(['1.0.0']);
  const stored = await storedDoc(registry, 'stage-pkg');
  expect(Object.keys(stored.body.versions)).toEqual(['1.0.0']);
  expect(JSON.stringify(stored.body)).not.toContain('1.1.0');
  const changes = await couchGet(registry, '/' + registry.registryDb + '/_changes?include_docs=true');
  expect(JSON.stringify(changes.body)).not.toContain('1.1.0');

  // Another user sees nothing of it and can do nothing with it.
  expect(await listed(mallory)).toEqual([]);
  for (const args of [['stage', 'view', id], ['stage', 'download', id], ['stage', 'approve', id], ['stage', 'reject', id]]) {
    const refused = await npm(mallory, args, mkdtempSync(join(work, 'mallory-')));
    expect({ args, code: refused.code }).toEqual({ args, code: 1 });
    expect(refused.out).toContain('404');
  }
  // Nor stage versions of a package they do not maintain.
  const foreign = await npm(mallory, ['stage', 'publish'], makePackage(work, { name: 'stage-pkg', version: '9.0.0' }));
  expect(foreign.code).not.toBe(0);
  expect(foreign.out).toContain('not a maintainer');
  // Nor publish the staged version number directly: it is taken.
  const direct = await npm(alice, ['publish'], join(work, 'pkg-stage-pkg-1.1.0'));
  expect(direct.code).not.toBe(0);
  expect(direct.out).toContain('is staged');
  // Nor stage it twice.
  const twice = await npm(alice, ['stage', 'publish'], join(work, 'pkg-stage-pkg-1.1.0'));
  expect(twice.code).not.toBe(0);
  expect(twice.out).toContain('staged already');
});

it('npm stage approve publishes exactly what was staged: installable, with the staged integrity', async () => {
  const [item] = await listed(alice, 'stage-pkg');
  const approved = await npm(alice, ['stage', 'approve', item.id]);
  expect({ code: approved.code, out: approved.stdout }).toEqual({ code: 0, out: expect.stringContaining('approved and published') });
  expect(await listed(alice)).toEqual([]);
  expect(JSON.parse((await npm(mallory, ['view', 'stage-pkg@1.1.0', 'dist.integrity', '--json'])).stdout)).toBe(item.integrity);
  const project = makeProject(work, 'consumer-approved', { 'stage-pkg': '1.1.0' });
  const install = await npm(mallory, ['install'], project);
  expect({ code: install.code, out: install.code ? install.out : '' }).toEqual({ code: 0, out: '' });
  const lock = JSON.parse(readFileSync(join(project, 'package-lock.json'), 'utf8'));
  expect(lock.packages['node_modules/stage-pkg']).toMatchObject({ version: '1.1.0', integrity: item.integrity });
  expect(readFileSync(join(project, 'node_modules', 'stage-pkg', 'index.js'), 'utf8')).toContain('staged 1.1.0');
  // The staged tag went with it.
  expect(JSON.parse((await npm(mallory, ['view', 'stage-pkg', 'dist-tags', '--json'])).stdout)).toMatchObject({ latest: '1.1.0' });
  // Approved once: the id is gone.
  expect((await npm(alice, ['stage', 'approve', item.id])).code).not.toBe(0);
});

it('npm stage reject removes a staged version; it never becomes installable; --tag is kept with it', async () => {
  const id = await stage(alice, 'stage-pkg', '1.2.0-beta.1', ['--tag', 'beta']);
  expect((await listed(alice))[0]).toMatchObject({ id, tag: 'beta' });
  const rejected = await npm(alice, ['stage', 'reject', id]);
  expect({ code: rejected.code, out: rejected.stdout }).toEqual({ code: 0, out: expect.stringContaining('has been rejected') });
  expect(await listed(alice)).toEqual([]);
  expect((await npm(alice, ['stage', 'view', id])).code).not.toBe(0);
  expect((await npm(alice, ['stage', 'approve', id])).code).not.toBe(0);
  expect(JSON.parse((await npm(mallory, ['view', 'stage-pkg', 'versions', '--json'])).stdout)).toEqual(['1.0.0', '1.1.0']);
  // The version number is free again: staged anew, or published.
  expect((await npm(alice, ['publish', '--tag', 'beta'], join(work, 'pkg-stage-pkg-1.2.0-beta.1'))).code).toBe(0);
});

it('approving a version that was published meanwhile (at another site, say) fails with a clear 409', async () => {
  const id = await stage(alice, 'stage-pkg', '1.3.0');
  // Another site's publish of 1.3.0 arrives by replication: written straight into the registry database.
  const doc = (await storedDoc(registry, 'stage-pkg')).body;
  doc.versions['1.3.0'] = { ...doc.versions['1.0.0'], version: '1.3.0', _id: 'stage-pkg@1.3.0' };
  doc.time['1.3.0'] = new Date().toISOString();
  const put = await fetch(new URL('/' + registry.registryDb + '/stage-pkg', new URL(registry.adminCouchUrl).origin), {
    method: 'PUT',
    headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' },
    body: JSON.stringify(doc),
  });
  expect(put.status).toBe(201);
  const approved = await npm(alice, ['stage', 'approve', id]);
  expect(approved.code).not.toBe(0);
  expect(approved.out).toContain('409');
  expect(approved.out).toContain('was published meanwhile');
  expect((await npm(alice, ['stage', 'reject', id])).code).toBe(0);
});

it('a package that requires staging refuses npm publish; CI stages with a --bypass-2fa token, which cannot approve; the maintainer approves with a one-time password', async () => {
  const token = await registry.signup('stage-carol', password);
  const carol = npmClient(registry.url, token);
  expect((await npm(carol, ['publish'], makePackage(work, { name: 'stage-strict', version: '1.0.0' }))).code).toBe(0);
  // Two-factor authentication for writes, through the endpoint npm profile enable-2fa uses.
  const started = await registry.request('POST', '/-/npm/v1/user', { token, body: { tfa: { password, mode: 'auth-and-writes' } } });
  const secret = new URL(started.body.tfa).searchParams.get('secret')!;
  expect((await registry.request('POST', '/-/npm/v1/user', { token, body: { tfa: [codeOf(secret)] } })).status).toBe(200);
  const made = await npm(carol, ['token', 'create', '--password', password, '--bypass-2fa', '--packages', 'stage-strict', '--otp', codeOf(secret)]);
  expect(made.code).toBe(0);
  const ciToken = /Created token (\S+)/.exec(made.stdout)![1];
  const ci = npmClient(registry.url, ciToken);

  // Requiring staging is a write: it needs the code, and never an automation token.
  const setting = (t: string, required: boolean, otp?: string) =>
    registry.request('PUT', '/-/package/stage-strict/staging', { token: t, body: { required }, headers: otp ? { 'npm-otp': otp } : {} });
  expect((await setting(token, true)).status).toBe(401);
  expect((await setting(token, true, codeOf(secret))).status).toBe(200);
  expect((await registry.request('GET', '/-/package/stage-strict/staging')).body).toEqual({ required: true });
  const ciOff = await setting(ciToken, false);
  expect(ciOff.status).toBe(403);
  expect(ciOff.body.error).toContain('--bypass-2fa');
  expect(JSON.stringify(await (await fetch(registry.url + '/stage-strict')).json())).not.toContain('registry_staging');

  // npm publish is refused, even with the token that may otherwise publish without a code.
  const direct = await npm(ci, ['publish'], makePackage(work, { name: 'stage-strict', version: '1.1.0' }));
  expect(direct.code).not.toBe(0);
  expect(direct.out).toContain('npm stage publish');
  const directByPerson = await npm(carol, ['publish', '--otp', codeOf(secret)], join(work, 'pkg-stage-strict-1.1.0'));
  expect(directByPerson.code).not.toBe(0);
  expect(directByPerson.out).toContain('npm stage publish');

  // CI stages without a code; so does the person's own token (staging never asks for one).
  const id = await stage(ci, 'stage-strict', '1.1.0');
  expect((await listed(carol))[0]).toMatchObject({ id, actor: 'stage-carol', actorType: 'automation token' });
  const id2 = await stage(carol, 'stage-strict', '1.2.0');

  // The automation token cannot approve; the person needs the code.
  const byCi = await npm(ci, ['stage', 'approve', id]);
  expect(byCi.code).not.toBe(0);
  expect(byCi.out).toContain('--bypass-2fa');
  const noCode = await npm(carol, ['stage', 'approve', id]);
  expect(noCode.code).not.toBe(0);
  expect(noCode.out).toMatch(/EOTP|one-time pass/i);
  expect((await npm(carol, ['stage', 'approve', id, '--otp', '000000'])).code).not.toBe(0);
  const approved = await npm(carol, ['stage', 'approve', id, '--otp', codeOf(secret)]);
  expect({ code: approved.code, out: approved.code ? approved.out : '' }).toEqual({ code: 0, out: '' });
  expect(JSON.parse((await npm(mallory, ['view', 'stage-strict', 'versions', '--json'])).stdout)).toEqual(['1.0.0', '1.1.0']);
  // Rejecting wants the code too.
  expect((await npm(carol, ['stage', 'reject', id2])).code).not.toBe(0);
  expect((await npm(carol, ['stage', 'reject', id2, '--otp', codeOf(secret)])).code).toBe(0);
  expect(await listed(carol)).toEqual([]);
});

it('a token limited to other packages neither sees nor stages this one; webhooks tell of staged, approved and rejected versions', async () => {
  const limited = await registry.request('POST', '/-/npm/v1/tokens', { token: aliceToken, body: { password, packages: ['some-other-pkg'] } });
  expect(limited.status).toBe(201);
  const id = await stage(alice, 'stage-pkg', '1.4.0');
  const other = npmClient(registry.url, limited.body.token);
  expect(await listed(other)).toEqual([]);
  expect((await npm(other, ['stage', 'view', id])).code).not.toBe(0);
  expect((await npm(other, ['stage', 'publish'], makePackage(work, { name: 'stage-pkg', version: '1.5.0' }))).code).not.toBe(0);
  expect((await npm(alice, ['stage', 'reject', id])).code).toBe(0);
  // A rejected version can be staged again (under the same id: ids name the version).
  expect(await stage(alice, 'stage-pkg', '1.4.0')).toBe(id);
  expect((await npm(alice, ['stage', 'reject', id])).code).toBe(0);

  const state = await couchGet(registry, '/' + registry.registryDb + '-state/_all_docs?include_docs=true');
  const events = state.body.rows.filter((r: any) => r.doc.type === 'delivery').map((r: any) => JSON.parse(r.doc.body)).map((b: any) => b.event + ' ' + b.name + '@' + b.change.version);
  expect(events).toEqual(expect.arrayContaining([
    'package:stage stage-pkg@1.1.0', 'package:stage-approve stage-pkg@1.1.0', 'package:stage-reject stage-pkg@1.2.0-beta.1',
    'package:stage stage-strict@1.1.0', 'package:stage-approve stage-strict@1.1.0', 'package:stage stage-pkg@1.4.0', 'package:stage-reject stage-pkg@1.4.0',
  ]));
});

it("the package page tells its maintainers (only) how many versions wait in staging", async () => {
  const id = await stage(alice, 'stage-pkg', '1.6.0');
  const login = async (name: string) => {
    const res = await fetch(registry.url + '/-/web/login', {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(registry.url).origin, 'sec-fetch-site': 'same-origin' },
      body: new URLSearchParams({ name, password, next: '/' }).toString(),
    });
    expect(res.status).toBe(303);
    return (res.headers.get('set-cookie') || '').split(';')[0];
  };
  const pageFor = async (cookie?: string) => (await fetch(registry.url + '/stage-pkg', { headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) } })).text();
  expect(await pageFor(await login('stage-alice'))).toContain('1 staged version waiting');
  expect(await pageFor(await login('stage-mallory'))).not.toContain('staged version');
  expect(await pageFor()).not.toContain('staged version');
  expect((await npm(alice, ['stage', 'reject', id])).code).toBe(0);
});

describe('hostile input on the staging endpoints', () => {
  const known = '00000000-0000-8000-8000-000000000000';
  const ids = [
    'x', known, known.toUpperCase(), '..', '%2e%2e', '..%2F..%2F_users', '..%2F..%2Fregistry%2Fstage-pkg', '%00', '%zz', 'a'.repeat(300), '_all_docs', '_design%2Fapp',
    '_local%2Fx', 'package', '%3Cscript%3E', '__proto__',
  ];

  it('garbage and traversal ids, every method: 4xx with a JSON error, never a 5xx', async () => {
    const aliceAuth = { authorization: 'Bearer ' + aliceToken };
    const failures: string[] = [];
    for (const id of ids) {
      for (const [method, suffix] of [['GET', ''], ['DELETE', ''], ['PUT', ''], ['GET', '/tarball'], ['POST', '/approve'], ['GET', '/approve'], ['POST', '/tarball/x']] as const) {
        for (const headers of [{} as Record<string, string>, aliceAuth]) {
          const res = await fetch(registry.url + '/-/stage/' + id + suffix, { method, headers });
          const body = await res.json().catch(() => null);
          if (res.status < 400 || res.status >= 500 || !body || typeof body.error !== 'string') failures.push(method + ' ' + id + suffix + ' -> ' + res.status + ' ' + JSON.stringify(body));
        }
      }
    }
    expect(failures).toEqual([]);
    // Nothing of another database came back through a traversal.
    const traversal = await fetch(registry.url + '/-/stage/..%2F..%2F_users%2Forg.couchdb.user%3Astage-alice', { headers: aliceAuth });
    expect(traversal.status).toBe(400);
  });

  it('bodies that are no publish, huge bodies, names that are no package: 4xx', async () => {
    const headers = { authorization: 'Bearer ' + aliceToken, 'content-type': 'application/json' };
    const tarball = Buffer.from('not really a tarball');
    const good = (version: string, data = tarball) => ({
      _id: 'stage-pkg', name: 'stage-pkg', 'dist-tags': { latest: version },
      versions: { [version]: { name: 'stage-pkg', version, dist: { integrity: sha512(data), shasum: createHash('sha1').update(data).digest('hex') } } },
      _attachments: { ['stage-pkg-' + version + '.tgz']: { content_type: 'application/octet-stream', data: data.toString('base64'), length: data.length } },
    });
    const bodies: [string, unknown, number][] = [
      ['array', [], 400],
      ['string', '"x"', 400],
      ['no versions', { name: 'stage-pkg' }, 400],
      ['wrong integrity', { ...good('7.0.0'), versions: { '7.0.0': { name: 'stage-pkg', version: '7.0.0', dist: { integrity: sha512(Buffer.from('other')), shasum: 'a'.repeat(40) } } } }, 400],
      ['two versions', { ...good('7.0.0'), versions: { ...good('7.0.0').versions, ...good('7.0.1').versions }, _attachments: { ...good('7.0.0')._attachments, ...good('7.0.1')._attachments } }, 400],
      ['a published version', good('1.0.0'), 403],
      ['two tags', { ...good('7.0.2'), 'dist-tags': { latest: '7.0.2', next: '7.0.2' } }, 400],
    ];
    for (const [what, body, status] of bodies) {
      const res = await fetch(registry.url + '/-/stage/package/stage-pkg', { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
      expect({ what, status: res.status }).toEqual({ what, status });
      expect(typeof (await res.json()).error).toBe('string');
    }
    for (const name of ['..%2F_users', '_design%2Fapp', 'no-such-package', '%zz', '@x%2F..']) {
      const res = await fetch(registry.url + '/-/stage/package/' + name, { method: 'POST', headers, body: JSON.stringify(good('7.0.3')) });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    }
    // Anonymous: refused before a large body is read; logged in: the publish limit holds.
    const anonymous = await fetch(registry.url + '/-/stage/package/stage-pkg', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(good('7.0.4')) });
    expect(anonymous.status).toBe(401);
    const huge = await fetch(registry.url + '/-/stage/package/stage-pkg', { method: 'POST', headers, body: JSON.stringify(good('7.0.5', Buffer.alloc(MAX_PUBLISH_BYTES))) });
    expect(huge.status).toBe(413);
    const list = await fetch(registry.url + '/-/stage?page=-1&perPage=1e9', { headers });
    expect(list.status).toBe(400);
    const listed = await fetch(registry.url + '/-/stage?package[]=a&package[]=b', { headers });
    expect(listed.status).toBe(400);
    expect(await (await fetch(registry.url + '/-/stage', { headers })).json()).toEqual({ items: [], total: 0 });
    expect((await fetch(registry.url + '/-/stage')).status).toBe(401);
    // Nothing was staged by any of it.
    const stageDb = await couchGet(registry, '/' + registry.registryDb + '-stage/_all_docs');
    expect(stageDb.body.rows.filter((r: any) => !r.id.startsWith('_design'))).toEqual([]);
  });

  it('the staging database is closed on the CouchDB port to everyone but admins', async () => {
    const couch = new URL(registry.adminCouchUrl).origin;
    const basic = 'Basic ' + Buffer.from('stage-alice:' + password).toString('base64');
    for (const path of ['/_all_docs', '/_changes', '', '/_security']) {
      for (const headers of [{} as Record<string, string>, { authorization: basic }]) {
        const res = await fetch(couch + '/' + registry.registryDb + '-stage' + path, { headers });
        expect({ path, status: res.status }).toEqual({ path, status: expect.any(Number) });
        expect([401, 403]).toContain(res.status);
      }
    }
  });
});
