/**
 * The license policy with the real npm: mirrored versions whose SPDX license the policy does not allow
 * are left out of every read (packuments of both shapes, version manifests, tarballs, pages, search,
 * the status), `npm install` falls back to an allowed version, `npm ci` of a lockfile made before the
 * policy is refused with the reason; exceptions; the policy in proxy mode too, and on a second gateway
 * within seconds; publishes here refused when the policy checks them.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { RunningRegistry } from '../../server/registry';
import { makePackage, makeProject, npmClient, NpmClient } from '../helpers/npm';
import { anotherGateway, setSupplyChainPolicy, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

let upstream: TestRegistry;
let mirror: TestRegistry;
let proxy: TestRegistry;
let redirect: TestRegistry;
let second: RunningRegistry;
let publisher: NpmClient;

async function setLicenses(registry: TestRegistry, licenses: unknown): Promise<void> {
  expect((await setSupplyChainPolicy(registry, { licenses })).status).toBe(201);
}

const versionsOf = async (client: NpmClient, name: string): Promise<string[]> => JSON.parse((await client.npm(['view', name, 'versions', '--json', '--prefer-online'])).stdout);

beforeAll(async () => {
  upstream = await startTestRegistry();
  publisher = npmClient(upstream.url, await upstream.signup('upstreamer'));
  for (const [name, version, license] of [
    ['lic-lib', '1.0.0', 'MIT'], ['lic-lib', '1.1.0', 'MIT'], ['lic-lib', '2.0.0', 'AGPL-3.0-only'],
    ['lic-dual', '1.0.0', '(MIT OR AGPL-3.0-only)'], ['lic-closed', '1.0.0', 'UNLICENSED'],
  ]) {
    const published = await publisher.npm(['publish'], makePackage(publisher.home, { name, version, license }));
    if (published.code !== 0) throw new Error(published.stderr);
  }
  mirror = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'mirror', UPSTREAM_MAX_AGE_SECONDS: '1' });
  proxy = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'proxy' });
  redirect = await startTestRegistry({ UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'redirect' });
  second = await anotherGateway(mirror, 'second', { UPSTREAM_REGISTRY: upstream.url, UPSTREAM_MODE: 'mirror' });
}, 120_000);

afterAll(async () => {
  await second?.close();
  await proxy?.stop();
  await redirect?.stop();
  await mirror?.stop();
  await upstream?.stop();
});

describe('a denied license on a mirrored package', () => {
  let lockedDir: string;
  let client: NpmClient;

  beforeAll(async () => {
    client = npmClient(mirror.url);
    // A project locked to lic-lib@2.0.0 before the policy existed.
    lockedDir = makeProject(client.home, 'locked-app', { 'lic-lib': '2.0.0' });
    const locked = await client.npm(['install'], lockedDir);
    expect(locked.code).toBe(0);
    await setLicenses(mirror, { denied: ['AGPL-3.0-only'] });
    await eventually(async () => ((await mirror.request('GET', '/lic-lib/-/lic-lib-2.0.0.tgz')).status === 403 ? true : null), 15_000, 'the license policy to take effect');
  });

  it('is left out of both packument shapes and the version manifest; latest falls back; the tarball answers 403 with the reason', async () => {
    expect(await versionsOf(client, 'lic-lib')).toEqual(['1.0.0', '1.1.0']);
    expect((await client.npm(['view', 'lic-lib', 'dist-tags.latest'])).stdout.trim()).toBe('1.1.0');
    const corgi = await fetch(mirror.url + '/lic-lib', { headers: { accept: 'application/vnd.npm.install-v1+json' } });
    expect(Object.keys(((await corgi.json()) as { versions: object }).versions)).toEqual(['1.0.0', '1.1.0']);
    const manifest = await mirror.request('GET', '/lic-lib/2.0.0');
    expect(manifest.status).toBe(403);
    const tarball = await mirror.request('GET', '/lic-lib/-/lic-lib-2.0.0.tgz');
    expect(tarball.status).toBe(403);
    expect(tarball.body.error).toContain('lic-lib@2.0.0 is held back by this registry\'s license policy: its license "AGPL-3.0-only" includes AGPL-3.0-only, which is denied here');
    // A dual license is taken under the side that is allowed.
    expect(await versionsOf(client, 'lic-dual')).toEqual(['1.0.0']);
  });

  it('npm install without a lockfile falls back to an allowed version; npm ci of the old lockfile is refused with the reason', async () => {
    const fresh = makeProject(client.home, 'fresh-app', { 'lic-lib': '*' });
    expect((await client.npm(['install'], fresh)).code).toBe(0);
    expect(readFileSync(join(fresh, 'node_modules/lic-lib/index.js'), 'utf8')).toContain('lic-lib@1.1.0');
    const ci = await npmClient(mirror.url).npm(['ci'], lockedDir); // an empty npm cache, as on a CI machine
    expect(ci.code).not.toBe(0);
    expect(ci.stderr).toContain('403');
    expect(ci.stderr).toContain('license policy');
  });

  it('the package page, search and the status say what is held back and why', async () => {
    const page = await (await fetch(mirror.url + '/lic-lib', { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('license not allowed');
    expect(page).toContain('AGPL-3.0-only, which is denied here');
    const status = await mirror.request('GET', '/-/replication', { token: await mirror.signup('watcher') });
    expect(status.status).toBe(200);
    expect(status.body.supplyChain.licenses.policy).toEqual({ denied: ['AGPL-3.0-only'] });
    expect(status.body.supplyChain.licenses.heldBack).toEqual([{ name: 'lic-lib', version: '2.0.0', license: 'AGPL-3.0-only', reason: expect.stringContaining('denied here') }]);
    // Search shows the version clients get.
    const hit = await eventually(async () => (await mirror.request('GET', '/-/v1/search?text=lic-lib')).body.objects.find((o: { package: { name: string } }) => o.package.name === 'lic-lib'), 10_000, 'lic-lib in the search index');
    expect(hit.package.version).toBe('1.1.0');
  });

  it('takes effect on another gateway of the same database within seconds', async () => {
    expect((await fetch(second.url + '/lic-lib/-/lic-lib-2.0.0.tgz')).status).toBe(403);
  });

  it('an exception for the version serves it again; an allowed list holds back what it does not name, and unlicensed versions', async () => {
    await setLicenses(mirror, { denied: ['AGPL-3.0-only'], exceptions: [{ package: 'lic-lib', version: '2.0.0', reason: 'cleared by legal' }] });
    await eventually(async () => ((await mirror.request('GET', '/lic-lib/-/lic-lib-2.0.0.tgz')).status === 200 ? true : null), 15_000, 'the exception to take effect');
    expect(await versionsOf(client, 'lic-lib')).toEqual(['1.0.0', '1.1.0', '2.0.0']);
    expect((await npmClient(mirror.url).npm(['ci'], lockedDir)).code).toBe(0);
    await setLicenses(mirror, { allowed: ['MIT'] });
    await eventually(async () => ((await mirror.request('GET', '/lic-closed/-/lic-closed-1.0.0.tgz')).status === 403 ? true : null), 15_000, 'the allowed list to take effect');
    expect((await mirror.request('GET', '/lic-closed/-/lic-closed-1.0.0.tgz')).body.error).toContain('it is UNLICENSED (not licensed for use by others)');
    expect((await mirror.request('GET', '/lic-lib/-/lic-lib-2.0.0.tgz')).body.error).toContain('its license "AGPL-3.0-only" is not among those allowed here (MIT)');
    expect(await versionsOf(client, 'lic-dual')).toEqual(['1.0.0']);
  });
});

describe('in proxy mode', () => {
  it('what the policy holds back is left out of what is served through, and its tarball is refused', async () => {
    await setLicenses(proxy, { denied: ['AGPL-3.0-only'] });
    const client = npmClient(proxy.url);
    await eventually(async () => ((await proxy.request('GET', '/lic-lib/-/lic-lib-2.0.0.tgz')).status === 403 ? true : null), 15_000, 'the license policy to take effect');
    expect(await versionsOf(client, 'lic-lib')).toEqual(['1.0.0', '1.1.0']);
    const dir = makeProject(client.home, 'proxied-app', { 'lic-lib': '*' });
    expect((await client.npm(['install'], dir)).code).toBe(0);
    expect(readFileSync(join(dir, 'node_modules/lic-lib/index.js'), 'utf8')).toContain('lic-lib@1.1.0');
  });
});

describe('in redirect mode', () => {
  it('a tarball is redirected only when its version is allowed; the packument is served through, filtered', async () => {
    expect((await fetch(redirect.url + '/lic-lib/-/lic-lib-2.0.0.tgz', { redirect: 'manual' })).status).toBe(302);
    await setLicenses(redirect, { denied: ['AGPL-3.0-only'] });
    await eventually(async () => ((await redirect.request('GET', '/lic-lib/-/lic-lib-2.0.0.tgz')).status === 403 ? true : null), 15_000, 'the license policy to take effect');
    expect((await fetch(redirect.url + '/lic-lib/-/lic-lib-1.1.0.tgz', { redirect: 'manual' })).status).toBe(302);
    expect(await versionsOf(npmClient(redirect.url), 'lic-lib')).toEqual(['1.0.0', '1.1.0']);
  });
});

describe('publishes here', () => {
  it('are not checked unless the policy says so; then a publish with a license not allowed is refused with the reason, and nothing is written', async () => {
    const local = npmClient(mirror.url, await mirror.signup('local-dev'));
    await setLicenses(mirror, { allowed: ['MIT', 'ISC'] });
    await eventually(async () => ((await mirror.request('GET', '/-/replication', { token: await mirror.signup('watcher2') })).body.supplyChain.licenses?.policy?.allowed?.length === 2 ? true : null), 15_000, 'the policy');
    expect((await local.npm(['publish'], makePackage(local.home, { name: 'local-agpl', version: '1.0.0', license: 'AGPL-3.0-only' }))).code).toBe(0);
    await setLicenses(mirror, { allowed: ['MIT', 'ISC'], checkPublishes: true });
    await eventually(async () => ((await mirror.request('GET', '/-/replication', { token: await mirror.signup('watcher3') })).body.supplyChain.licenses?.policy?.checkPublishes ? true : null), 15_000, 'the policy');
    const refused = await local.npm(['publish'], makePackage(local.home, { name: 'local-agpl', version: '1.1.0', license: 'AGPL-3.0-only' }));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('local-agpl@1.1.0 cannot be published here: its license "AGPL-3.0-only" is not among those allowed here (MIT, ISC)');
    expect(JSON.parse((await local.npm(['view', 'local-agpl', 'versions', '--json'])).stdout)).toEqual(['1.0.0']);
    // The version already published here is not held back: local packages are the company's own.
    expect((await mirror.request('GET', '/local-agpl/-/local-agpl-1.0.0.tgz')).status).toBe(200);
    expect((await local.npm(['publish'], makePackage(local.home, { name: 'local-agpl', version: '1.2.0', license: 'ISC' }))).code).toBe(0);
  });

  it('npm stage publish is checked too, and so is npm stage approve, against the policy in force when approving', async () => {
    const local = npmClient(mirror.url, await mirror.signup('stager'));
    expect((await local.npm(['publish'], makePackage(local.home, { name: 'staged-lic', version: '1.0.0', license: 'ISC' }))).code).toBe(0);
    const refused = await local.npm(['stage', 'publish'], makePackage(local.home, { name: 'staged-lic', version: '1.1.0', license: 'AGPL-3.0-only' }));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('staged-lic@1.1.0 cannot be published here');
    const staged = await local.npm(['stage', 'publish'], makePackage(local.home, { name: 'staged-lic', version: '1.2.0', license: 'MIT' }));
    expect(staged.code).toBe(0);
    const id = /staged with id ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/.exec(staged.stdout + staged.stderr)![1];
    await setLicenses(mirror, { allowed: ['ISC'], checkPublishes: true });
    await eventually(async () => ((await mirror.request('GET', '/-/replication', { token: await mirror.signup('watcher4') })).body.supplyChain.licenses?.policy?.allowed?.length === 1 ? true : null), 15_000, 'the policy');
    const approval = await local.npm(['stage', 'approve', id]);
    expect(approval.code).not.toBe(0);
    expect(approval.stderr).toContain('staged-lic@1.2.0 cannot be published here: its license "MIT" is not among those allowed here (ISC)');
    expect(JSON.parse((await local.npm(['view', 'staged-lic', 'versions', '--json'])).stdout)).toEqual(['1.0.0']);
  });

  it('an invalid license policy is refused when written, with what to fix', async () => {
    const res = await setSupplyChainPolicy(mirror, { licenses: { allowed: ['Apache 2.0'] } });
    expect(res.status).toBe(403);
    expect(res.body.reason).toContain('"Apache 2.0" is not an SPDX license identifier');
  });
});
