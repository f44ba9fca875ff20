/**
 * Hostile tests of issue 25 (several upstreams routed by package pattern, the license policy): names
 * that try to reach the wrong upstream or a private scope through case and percent-encoding, and a
 * hostile upstream whose license fields try to take the gateway's time from other users.
 */
import { createHash } from 'crypto';
import { readFileSync } from 'fs';
import http from 'http';
import { join } from 'path';
import { setSupplyChainPolicy, startTestRegistry, TestRegistry } from '../helpers/registry';
import { makePackage, npmClient, run } from '../helpers/npm';
import { listenOnLoopback } from '../helpers/servers';
import { eventually } from '../helpers/wait';

interface Seen {
  method: string;
  url: string;
  authorization?: string;
}

interface FakeUpstream {
  url: string;
  seen: Seen[];
  /** The JSON answered for a path as asked (raw, not decoded); 404 when it gives none. */
  answers: Map<string, unknown>;
  stop(): Promise<void>;
}

/** A small upstream registry started by the test: it records what it is asked and answers what `answers` holds. */
async function fakeUpstream(): Promise<FakeUpstream> {
  const upstream: FakeUpstream = { url: '', seen: [], answers: new Map(), stop: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    upstream.seen.push({ method: req.method || 'GET', url: req.url || '', authorization: req.headers.authorization });
    req.resume();
    const answer = upstream.answers.get(req.url || '');
    if (answer === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return void res.end('{"error":"not found"}');
    }
    const body = typeof answer === 'string' ? answer : JSON.stringify(answer);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  Object.assign(upstream, await listenOnLoopback(server));
  return upstream;
}

let scoped: FakeUpstream;
let everything: FakeUpstream;
let registry: TestRegistry;

beforeAll(async () => {
  scoped = await fakeUpstream();
  everything = await fakeUpstream();
  registry = await startTestRegistry({
    UPSTREAMS: JSON.stringify([
      { name: 'scoped', url: scoped.url, packages: ['@vscope/*'], mode: 'proxy', tokenEnv: 'SCOPED_TOKEN' },
      { name: 'everything', url: everything.url, packages: ['**'], mode: 'proxy' },
    ]),
    SCOPED_TOKEN: 'scoped-secret-token',
    REPLICATION_PRIVATE_SCOPES: '@corp',
  });
}, 60_000);

afterAll(async () => {
  await registry?.stop();
  await scoped?.stop();
  await everything?.stop();
});

const asked = (upstream: FakeUpstream, from: number) => upstream.seen.slice(from).map((s) => s.url);

describe('names routed to an upstream', () => {
  it('a scope routed to one upstream goes there in any case: @VScope/x is never asked of the catch-all, and the token goes with it to its own upstream only', async () => {
    for (const path of ['/@VScope/x', '/@VSCOPE%2Fx', '/%40VScope%2fx']) {
      const [a, b] = [scoped.seen.length, everything.seen.length];
      expect((await fetch(registry.url + path, { redirect: 'manual' })).status).toBe(404);
      expect(asked(everything, b)).toEqual([]);
      expect(asked(scoped, a).length).toBe(1);
      expect(scoped.seen[a].authorization).toBe('Bearer scoped-secret-token');
    }
    // Audit: split the same way.
    const b = everything.seen.length;
    const a = scoped.seen.length;
    await fetch(registry.url + '/-/npm/v1/security/advisories/bulk', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ '@VScope/x': ['1.0.0'] }) });
    expect(asked(everything, b)).toEqual([]);
    expect(asked(scoped, a)).toEqual(['/-/npm/v1/security/advisories/bulk']);
  });

  it('an audit split by route takes of each upstream only what it was asked: one cannot hide nor invent advisories of names routed to another', async () => {
    const bulk = '/-/npm/v1/security/advisories/bulk';
    const advisory = (id: number, title: string) => ({ id, title, severity: 'critical', vulnerable_versions: '<5.0.0', url: 'https://example.com/' + id });
    everything.answers.set(bulk, { lodash: [advisory(1, 'real lodash advisory')] });
    scoped.answers.set(bulk, { '@vscope/x': [], lodash: [], 'left-pad': [advisory(2, 'invented')] });
    try {
      const audit = await fetch(registry.url + bulk, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ lodash: ['4.0.0'], 'left-pad': ['1.0.0'], '@vscope/x': ['1.0.0'] }) });
      expect(audit.status).toBe(200);
      expect(await audit.json()).toEqual({ lodash: [advisory(1, 'real lodash advisory')], '@vscope/x': [] });
    } finally {
      everything.answers.delete(bulk);
      scoped.answers.delete(bulk);
    }
  });

  it('what is not a package name (a ".." part, a percent sign, spaces) is asked of no upstream, and said so', async () => {
    for (const path of ['/@vscope%2F..%2Fx', '/@vscope/..%2Fcorp%2Fx', '/@vscope%2Fx%2F..%2F..%2Fy', '/%2540corp%252fx', '/@vscope%20/x', '/%20%40corp%2Fx']) {
      const [a, b] = [scoped.seen.length, everything.seen.length];
      const res = await fetch(registry.url + path, { redirect: 'manual' });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: string }).error).toContain('never asked of an upstream');
      expect([path, asked(scoped, a), asked(everything, b)]).toEqual([path, [], []]);
    }
    const b = everything.seen.length;
    const audit = await fetch(registry.url + '/-/npm/v1/security/advisories/bulk', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ '@vscope/../corp/x': ['1.0.0'], '%40corp%2Fx': ['1.0.0'] }) });
    expect(audit.status).toBe(200);
    expect(asked(everything, b)).toEqual([]);
  });
});

async function setLicenses(licenses: unknown): Promise<void> {
  expect((await setSupplyChainPolicy(registry, { licenses })).status).toBe(201);
}

/** A version manifest of `name` as an upstream sends it, with `fields` (its license). */
const manifestOf = (upstream: FakeUpstream, name: string, version: string, fields: Record<string, unknown>) => ({
  name, version, ...fields, dist: { tarball: upstream.url + '/' + name + '/-/' + name + '-' + version + '.tgz', shasum: '0'.repeat(40) },
});

describe('a hostile upstream under a license policy', () => {
  const ids = ['GPL-2.0+', 'LGPL-2.1+', 'MPL-1.0+', 'EPL-1.0+', 'LGPL-2.0+', 'Apache-1.0+', 'GPL-1.0+', 'AGPL-1.0+', 'OSL-1.0+', 'MIT', 'ISC', '0BSD', 'BSD-2-Clause', 'Zlib', 'CC0-1.0', 'Unlicense'];
  /** An expression of 256 ways of taking it and 30 licenses, distinct for each `i`. */
  const hostile = (i: number) => {
    const pairs: string[] = [];
    for (let k = 0; k < 8; k++) pairs.push('(' + ids[(k * 2 + i) % 16] + ' OR ' + ids[(k * 2 + 1 + i) % 16] + ')');
    let text = pairs.join(' AND ');
    for (let k = 0; k < 14 && text.length < 480; k++) text += ' AND LicenseRef-' + i + 'x' + k;
    return text;
  };

  beforeAll(async () => {
    await setLicenses({ allowed: ['MIT', 'ISC'], denied: ['AGPL-3.0-only'] });
    const watcher = await registry.signup('lic-watcher');
    await eventually(async () => ((await registry.request('GET', '/-/replication', { token: watcher })).body.supplyChain?.licenses?.policy ? true : null), 15_000, 'the license policy');
  });

  it('licenses of odd types and shapes hold back their versions; nothing answers 5xx', async () => {
    const name = 'odd-licenses';
    const odd: Record<string, Record<string, unknown>> = {
      '1.0.0': { license: 12345 },
      '1.1.0': { license: ['MIT', {}] },
      '1.2.0': { license: { type: { type: 'MIT' } } },
      '1.3.0': { licenses: Array.from({ length: 5000 }, (_, i) => ({ type: i % 2 ? 'MIT' : 'LicenseRef-' + i })) },
      '1.4.0': { license: { type: '__proto__' } },
      '1.5.0': { license: 'constructor' },
      '1.6.0': { license: '('.repeat(3000) + 'MIT' + ')'.repeat(3000) },
      '1.7.0': { license: Array.from({ length: 3000 }, () => 'MIT').join(' OR ') },
      '1.8.0': { license: null, licenses: 'MIT' },
      '1.9.0': { license: 'MIT WITH __proto__' },
      '2.0.0': { license: 'MIT' },
    };
    const versions = Object.fromEntries(Object.entries(odd).map(([v, fields]) => [v, manifestOf(everything, name, v, fields)]));
    everything.answers.set('/' + name, { name, 'dist-tags': { latest: '1.9.0' }, versions, time: Object.fromEntries(Object.keys(odd).map((v) => [v, '2020-01-01T00:00:00.000Z'])) });
    const packument = await registry.request('GET', '/' + name);
    expect(packument.status).toBe(200);
    expect(Object.keys(packument.body.versions)).toEqual(['2.0.0']);
    const corgi = await fetch(registry.url + '/' + name, { headers: { accept: 'application/vnd.npm.install-v1+json' } });
    expect(corgi.status).toBe(200);
    for (const version of Object.keys(odd).filter((v) => v !== '2.0.0')) {
      const manifest = await registry.request('GET', '/' + name + '/' + version);
      expect([version, manifest.status]).toEqual([version, 403]);
      expect(manifest.body.error).toContain('license policy');
      expect((await registry.request('GET', '/' + name + '/-/' + name + '-' + version + '.tgz')).status).toBe(403);
    }
    const page = await fetch(registry.url + '/' + name, { headers: { accept: 'text/html' } });
    expect(page.status).toBeLessThan(500);
  });

  it('a packument of many versions with distinct expressions built to be slow is judged in a fraction of the time it took, while other users wait', async () => {
    const name = 'slow-licenses';
    const count = 300;
    const versions: Record<string, unknown> = {};
    const time: Record<string, string> = {};
    for (let i = 0; i < count; i++) {
      versions['1.0.' + i] = manifestOf(everything, name, '1.0.' + i, { license: hostile(i) });
      time['1.0.' + i] = '2020-01-01T00:00:00.000Z';
    }
    versions['2.0.0'] = manifestOf(everything, name, '2.0.0', { license: 'MIT' });
    time['2.0.0'] = '2020-01-01T00:00:00.000Z';
    everything.answers.set('/' + name, { name, 'dist-tags': { latest: '2.0.0' }, versions, time });
    // The gateway runs in this process: its time is the time of the answer.
    const started = Date.now();
    const answer = await registry.request('GET', '/' + name);
    const ms = Date.now() - started;
    expect(answer.status).toBe(200);
    expect(Object.keys(answer.body.versions)).toEqual(['2.0.0']);
    // Before: about 40 ms of the gateway's time per version (12 s and more for these), every other request waiting.
    expect(ms).toBeLessThan(5000);
  }, 60_000);
});

describe('a denied license written in another case', () => {
  beforeAll(async () => {
    await setLicenses({ denied: ['AGPL-3.0-only'], checkPublishes: true });
    const watcher = await registry.signup('case-watcher');
    await eventually(async () => ((await registry.request('GET', '/-/replication', { token: watcher })).body.supplyChain?.licenses?.policy?.checkPublishes ? true : null), 15_000, 'the license policy');
  });

  it('is held back from what an upstream serves through, as SPDX identifiers are matched without regard to case', async () => {
    const name = 'case-licenses';
    const licenses: Record<string, string> = { '1.0.0': 'MIT', '1.1.0': 'agpl-3.0-only', '1.2.0': 'AGPL-3.0-ONLY', '1.3.0': 'mit and Agpl-3.0-Only' };
    const versions = Object.fromEntries(Object.entries(licenses).map(([v, license]) => [v, manifestOf(everything, name, v, { license })]));
    everything.answers.set('/' + name, { name, 'dist-tags': { latest: '1.3.0' }, versions, time: Object.fromEntries(Object.keys(licenses).map((v) => [v, '2020-01-01T00:00:00.000Z'])) });
    const packument = await registry.request('GET', '/' + name);
    expect(packument.status).toBe(200);
    expect(Object.keys(packument.body.versions)).toEqual(['1.0.0']);
    expect(packument.body['dist-tags'].latest).toBe('1.0.0');
    const tarball = await registry.request('GET', '/' + name + '/-/' + name + '-1.1.0.tgz');
    expect(tarball.status).toBe(403);
    expect(tarball.body.error).toContain('includes AGPL-3.0-only, which is denied here');
  });

  it('is refused when the package.json in the tarball declares it and the publish says otherwise, staged or not', async () => {
    const token = await registry.signup('tarball-liar');
    const local = npmClient(registry.url, token);
    expect((await local.npm(['publish'], makePackage(local.home, { name: 'liar-local', version: '1.0.0', license: 'MIT' }))).code).toBe(0);
    const dir = makePackage(join(local.home, 'liar'), { name: 'liar-local', version: '1.1.0', license: 'AGPL-3.0-only' });
    const packed = await run('npm', ['pack', '--json'], { cwd: dir, env: local.env });
    expect(packed.code).toBe(0);
    const file = JSON.parse(packed.stdout)[0].filename as string;
    const tgz = readFileSync(join(dir, file));
    const bodyOf = (version: string) => ({
      _id: 'liar-local', name: 'liar-local', 'dist-tags': { latest: version },
      versions: { [version]: { name: 'liar-local', version, license: 'MIT', dist: { shasum: createHash('sha1').update(tgz).digest('hex'), integrity: 'sha512-' + createHash('sha512').update(tgz).digest('base64'), tarball: registry.url + '/liar-local/-/liar-local-' + version + '.tgz' } } },
      _attachments: { ['liar-local-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tgz.toString('base64'), length: tgz.length } },
    });
    const published = await registry.request('PUT', '/liar-local', { token, body: bodyOf('1.1.0') });
    expect(published.status).toBe(403);
    expect(published.body.error).toContain('The package.json in the tarball declares another license than the publish says: liar-local@1.1.0 cannot be published here: its license "AGPL-3.0-only" includes AGPL-3.0-only, which is denied here');
    const staged = await registry.request('POST', '/-/stage/package/liar-local', { token, body: bodyOf('1.1.0') });
    expect(staged.status).toBe(403);
    expect(staged.body.error).toContain('The package.json in the tarball declares another license');
    expect(Object.keys((await registry.request('GET', '/liar-local')).body.versions)).toEqual(['1.0.0']);
  });

  it('is refused when published here', async () => {
    const local = npmClient(registry.url, await registry.signup('case-publisher'));
    const refused = await local.npm(['publish'], makePackage(local.home, { name: 'case-local', version: '1.0.0', license: 'Agpl-3.0-Only' }));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('case-local@1.0.0 cannot be published here');
    expect((await registry.request('GET', '/case-local')).status).toBe(404);
  });
});

describe('the status of a mirror of an upstream with a license of its own for every version', () => {
  let mirror: TestRegistry;

  afterAll(async () => {
    await mirror?.stop();
  });

  it('is answered in seconds, listing the versions of the first hundred licenses not allowed', async () => {
    mirror = await startTestRegistry({ UPSTREAM_REGISTRY: everything.url, UPSTREAM_MODE: 'mirror' });
    const name = 'own-licenses';
    const versions: Record<string, unknown> = {};
    const time: Record<string, string> = {};
    for (let i = 0; i < 2000; i++) {
      versions['1.0.' + i] = manifestOf(everything, name, '1.0.' + i, { license: 'LicenseRef-own-' + i });
      time['1.0.' + i] = '2020-01-01T00:00:00.000Z';
    }
    everything.answers.set('/' + name, { name, 'dist-tags': { latest: '1.0.0' }, versions, time });
    expect((await setSupplyChainPolicy(mirror, { licenses: { allowed: ['MIT'] } })).status).toBe(201);
    expect((await mirror.request('GET', '/' + name)).status).toBe(200);
    const token = await mirror.signup('status-reader');
    // Once the policy is in force and the view is built.
    await eventually(async () => ((await mirror.request('GET', '/-/replication', { token })).body.supplyChain?.licenses?.heldBack?.length ? true : null), 60_000, 'the license holds in the status');
    const started = Date.now();
    const status = await mirror.request('GET', '/-/replication', { token });
    const ms = Date.now() - started;
    expect(status.status).toBe(200);
    expect(status.body.supplyChain.licenses.heldBack.length).toBe(100);
    expect(status.body.supplyChain.licenses.heldBack[0]).toEqual({ name, version: expect.any(String), license: expect.stringMatching(/^LicenseRef-own-/), reason: expect.stringContaining('is not among those allowed here (MIT)') });
    // Before: a query of the view for each license, one after the other (10 to 13 s here).
    expect(ms).toBeLessThan(4000);
  }, 120_000);
});
