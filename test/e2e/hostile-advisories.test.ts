/**
 * A hostile upstream's advisory endpoint against the vulnerability policy, with a small upstream of
 * its own started here: answers that are costly to read must not stall the gateway for other users.
 */
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { couchPut, setSupplyChainPolicy, startTestRegistry, TestRegistry } from '../helpers/registry';

const VERSIONS = Array.from({ length: 1000 }, (_, i) => '1.' + i + '.0');
/** A distinct range of many sets, as long as semver's longest version: a thousand of them per package. */
const rangeOf = (k: number) => Array.from({ length: 30 }, (_, j) => '>=1.' + ((k % 900) + j) + '.0 <1.' + ((k % 900) + j) + '.1').join('||').slice(0, 250).replace(/\|+[^|]*$/, '');

let upstream: Server;
let upstreamUrl: string;
let proxy: TestRegistry;

function packument(name: string) {
  const versions: Record<string, unknown> = {};
  const time: Record<string, string> = { created: '2020-01-01T00:00:00.000Z', modified: '2020-01-01T00:00:00.000Z' };
  for (const v of VERSIONS) {
    versions[v] = { name, version: v, dist: { tarball: upstreamUrl + '/' + name + '/-/' + name + '-' + v + '.tgz', shasum: '0'.repeat(40) } };
    time[v] = '2020-01-01T00:00:00.000Z';
  }
  return { _id: name, name, 'dist-tags': { latest: VERSIONS[VERSIONS.length - 1] }, versions, time };
}

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = decodeURIComponent((req.url || '/').split('?')[0]);
      let body: unknown = { error: 'not_found' };
      let status = 404;
      if (req.method === 'POST' && path === '/-/npm/v1/security/advisories/bulk') {
        const asked = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, string[]>;
        const answer: Record<string, unknown[]> = {};
        for (const name of Object.keys(asked)) {
          if (name === 'escape-lib') {
            answer[name] = [{ id: 'GHSA-\u001b[31mred', title: 'Pwned\u001b[2J\u001b]8;;https://evil.example/\u0007click\u001b]8;;\u0007\r\u009b6n\u202e', url: 'https://example.test/a\n\u001b[1Ab', severity: 'crit\u001bical', vulnerable_versions: '*' }];
            continue;
          }
          answer[name] = VERSIONS.map((_v, i) => ({ id: 5000 + i, title: 'costly ' + i, url: 'https://example.test/GHSA-' + i, severity: 'low', vulnerable_versions: rangeOf(i) }));
        }
        body = answer;
        status = 200;
      } else if (req.method === 'GET' && path === '/escape-lib') {
        body = { ...packument('escape-lib'), versions: { '1.0.0': { name: 'escape-lib', version: '1.0.0', dist: { tarball: upstreamUrl + '/escape-lib/-/escape-lib-1.0.0.tgz', shasum: '0'.repeat(40) } } }, 'dist-tags': { latest: '1.0.0' } };
        status = 200;
      } else if (req.method === 'GET' && /^\/costly-ranges(-\d+)?$/.test(path)) {
        body = packument(path.slice(1));
        status = 200;
      }
      const data = Buffer.from(JSON.stringify(body));
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
      res.end(data);
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = 'http://127.0.0.1:' + (upstream.address() as AddressInfo).port;
  proxy = await startTestRegistry({ UPSTREAM_REGISTRY: upstreamUrl, UPSTREAM_MODE: 'proxy', OUTBOUND_ALLOW_PRIVATE: '127.0.0.1' });
  expect((await setSupplyChainPolicy(proxy, { advisories: { severity: 'high' } })).status).toBe(201);
  // The policy reaches the gateway within seconds.
  await new Promise((resolve) => setTimeout(resolve, 3000));
});

afterAll(async () => {
  await proxy?.stop();
  await new Promise<void>((resolve) => (upstream ? upstream.close(() => resolve()) : resolve()));
});

describe('a hostile advisory endpoint', () => {
  it('a thousand distinct ranges of many sets for each of a thousand versions neither stall the gateway nor the packument (minutes before)', async () => {
    const started = Date.now();
    const packuments = ['costly-ranges', 'costly-ranges-2'].map((name) =>
      fetch(proxy.url + '/' + name, { signal: AbortSignal.timeout(60_000) }).then(async (r) => ({ status: r.status, body: await r.json(), ms: Date.now() - started })),
    );
    let slowest = 0;
    for (let i = 0; i < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const at = Date.now();
      expect((await fetch(proxy.url + '/-/ping', { signal: AbortSignal.timeout(30_000) })).status).toBe(200);
      slowest = Math.max(slowest, Date.now() - at);
    }
    const answers = await Promise.all(packuments);
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      // Low advisories are below the policy's severity: every version is checked, and served.
      expect(Object.keys(answer.body.versions)).toHaveLength(VERSIONS.length);
      expect(answer.ms).toBeLessThan(15_000);
    }
    expect(slowest).toBeLessThan(2000);
  });

  it('an advisory\'s title, id, URL and severity reach npm users\' terminals without control characters (escape sequences could clear, rewrite or link their screen)', async () => {
    const res = await fetch(proxy.url + '/escape-lib/-/escape-lib-1.0.0.tgz');
    expect(res.status).toBe(403);
    const reason = ((await res.json()) as { error: string }).error;
    expect(reason).toContain('Pwned');
    expect(reason).toContain('GHSA-');
    // No C0 or C1 control character, nor a bidirectional override.
    // eslint-disable-next-line no-control-regex -- control characters are what is looked for
    expect(reason).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    const manifest = await fetch(proxy.url + '/escape-lib/1.0.0');
    expect(manifest.status).toBeLessThan(500);
    // eslint-disable-next-line no-control-regex -- control characters are what is looked for
    expect(await manifest.text()).not.toMatch(/\\u001b|\u001b/);
  });
});

describe('the status page\'s list of what advisories hold back', () => {
  it('one package with advisories on a thousand versions neither fills the list nor leaves the other packages out of it', async () => {
    const advisory = (id: number) => ({ id, title: 'flooded ' + id, url: 'https://example.test/GHSA-' + id, severity: 'critical', vulnerable_versions: '*' });
    const mirrored = async (name: string, versions: string[]) => {
      const affected: Record<string, string[]> = {};
      for (const v of versions) affected[v] = ['1'];
      const doc = {
        ...packument(name),
        versions: Object.fromEntries(versions.map((v) => [v, { name, version: v, dist: { tarball: upstreamUrl + '/' + name + '/-/' + name + '-' + v + '.tgz', shasum: '0'.repeat(40) } }])),
        'dist-tags': { latest: versions[versions.length - 1] },
        origin: upstreamUrl,
        origin_advisories: { changed: '2026-12-01T00:00:00.000Z', checked: versions, affected, advisories: { 1: advisory(1) } },
      };
      expect((await couchPut(proxy, '/' + proxy.registryDb + '-mirror/' + name, doc)).status).toBe(201);
    };
    await mirrored('aaa-flood', Array.from({ length: 1200 }, (_, i) => '1.' + i + '.0'));
    await mirrored('zzz-one', ['1.0.0']);
    const user = await proxy.signup('held-lister');
    const status = await proxy.request('GET', '/-/replication', { token: user });
    expect(status.status).toBe(200);
    const held = status.body.supplyChain.advisories.heldBack as { name: string; version: string }[];
    expect(held.filter((h) => h.name === 'zzz-one')).toEqual([expect.objectContaining({ version: '1.0.0' })]);
    expect(held.filter((h) => h.name === 'aaa-flood').length).toBeLessThanOrEqual(50);
  });
});
