/**
 * Mirrored packuments compared with their upstream when read (pull-through without a feed, issue 28):
 * a copy older than `UPSTREAM_MAX_AGE_SECONDS` is asked again with the validators the upstream sent
 * for it (`If-None-Match`, `If-Modified-Since`), off the client's path; a 304, or a full answer with
 * the bytes the copy was made from, writes nothing; a change is stored. The upstream is another
 * instance of this registry, behind a recording proxy (a second proxy strips the validators, as an
 * upstream without them); a second gateway on the same database, whose memory is empty as after a
 * restart, asks conditionally with the validators stored on the copy.
 */
import { join } from 'path';
import { CountingProxy, startCountingProxy } from '../helpers/counting-proxy';
import { makePackage, npmClient, NpmClient, run } from '../helpers/npm';
import { anotherGateway, mirroredDoc, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually } from '../helpers/wait';

let upstream: TestRegistry;
let publisher: NpmClient;
/** In front of the upstream: records every request, its conditional headers and the status answered. */
let viaProxy: CountingProxy;
/** In front of the upstream too, with no validators either way. */
let bare: CountingProxy;
let mirror: TestRegistry;
let plain: TestRegistry;
/** Milliseconds the upstream holds a request for a path (a slow upstream). */
const slow = new Map<string, number>();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const MAX_AGE = { UPSTREAM_MODE: 'mirror', UPSTREAM_MAX_AGE_SECONDS: '1', UPSTREAM_TIMEOUT_MS: '10000' };

async function publish(name: string, version: string): Promise<void> {
  const published = await publisher.npm(['publish'], makePackage(publisher.home, { name, version }));
  if (published.code !== 0) throw new Error(published.stderr);
}

/** The mirrored copy once stored with its tarballs' package: its revision and validators. */
const storedCopy = (registry: TestRegistry, name: string) =>
  eventually(async () => {
    const res = await mirroredDoc(registry, name);
    return res.status === 200 && res.body.origin_validators ? res.body : null;
  }, 20_000, name + ' stored');

/** The status's revalidation counts of the only upstream. */
async function revalidations(registry: TestRegistry): Promise<{ notModified: number; unchanged: number; changed: number }> {
  const res = await registry.request('GET', '/-/replication', { token: await registry.adminToken() });
  return res.body.upstreams[0].revalidations;
}

beforeAll(async () => {
  upstream = await startTestRegistry();
  publisher = npmClient(upstream.url, await upstream.signup('reval-publisher'));
  for (const name of ['reval-a', 'reval-b', 'reval-c', 'reval-d']) await publish(name, '1.0.0');
  viaProxy = await startCountingProxy(upstream.localUrl, { delayMs: (path) => slow.get(path) || 0 });
  bare = await startCountingProxy(upstream.localUrl, { noValidators: true });
  mirror = await startTestRegistry({ UPSTREAM_REGISTRY: viaProxy.url, ...MAX_AGE });
  plain = await startTestRegistry({ UPSTREAM_REGISTRY: bare.url, ...MAX_AGE });
});

afterAll(async () => {
  await mirror?.stop();
  await plain?.stop();
  await upstream?.stop();
  await viaProxy?.stop();
  await bare?.stop();
});

describe('a mirrored packument past UPSTREAM_MAX_AGE_SECONDS', () => {
  it('is asked again with the validators the upstream sent; a 304 writes nothing and the copy is served', async () => {
    expect((await mirror.request('GET', '/reval-a')).status).toBe(200);
    const copy = await storedCopy(mirror, 'reval-a');
    expect(copy.origin_validators.etag).toBeTruthy();
    // The validators are the registry's own: never served.
    expect((await mirror.request('GET', '/reval-a')).body.origin_validators).toBeUndefined();
    await sleep(1100);
    const read = await mirror.request('GET', '/reval-a');
    expect(read.status).toBe(200);
    expect(read.body['dist-tags'].latest).toBe('1.0.0');
    const conditional = await eventually(async () => viaProxy.asked('/reval-a').find((r) => r.ifNoneMatch && r.status) || null, 10_000, 'a conditional request answered');
    expect(conditional.ifNoneMatch).toBe(copy.origin_validators.etag);
    expect(conditional.status).toBe(304);
    expect((await revalidations(mirror)).notModified).toBeGreaterThanOrEqual(1);
    expect((await mirroredDoc(mirror, 'reval-a')).body._rev).toBe(copy._rev);
    const metrics = await (await fetch(mirror.localUrl + '/-/metrics', { headers: { authorization: 'Bearer ' + (await mirror.adminToken()) } })).text();
    expect(metrics).toMatch(/registry_upstream_revalidations_total\{upstream="default",outcome="not_modified"\} [1-9]/);
    const cli = await run(process.execPath, [join(__dirname, '..', '..', 'dist', 'replication', 'cli.js'), '--registry', mirror.url], { env: { ...process.env, REGISTRY_TOKEN: await mirror.adminToken() } });
    expect(cli.stdout).toMatch(/health {6}reachable, \d+ requests, 0 failed; copies compared \d+ times \([1-9]\d* not modified, \d+ unchanged, \d+ changed\)/);
  });

  it('takes a change of the upstream on the next read', async () => {
    expect((await mirror.request('GET', '/reval-b')).status).toBe(200);
    const copy = await storedCopy(mirror, 'reval-b');
    await publish('reval-b', '1.1.0');
    await sleep(1100);
    const updated = await eventually(async () => {
      const res = await mirror.request('GET', '/reval-b');
      return res.body['dist-tags'] && res.body['dist-tags'].latest === '1.1.0' ? res.body : null;
    }, 10_000, 'reval-b@1.1.0 served');
    expect(Object.keys(updated.versions).sort()).toEqual(['1.0.0', '1.1.0']);
    const stored = await storedCopy(mirror, 'reval-b');
    expect(stored._rev).not.toBe(copy._rev);
    expect(stored.origin_validators.etag).not.toBe(copy.origin_validators.etag);
    // Asked with the old copy's validators, answered in full.
    expect(viaProxy.asked('/reval-b').some((r) => r.ifNoneMatch === copy.origin_validators.etag && r.status === 200)).toBe(true);
    expect((await revalidations(mirror)).changed).toBeGreaterThanOrEqual(1);
  });

  it('is served at once while a slow upstream is asked about it', async () => {
    expect((await mirror.request('GET', '/reval-c')).status).toBe(200);
    await storedCopy(mirror, 'reval-c');
    slow.set('/reval-c', 4000);
    try {
      await sleep(1100);
      const started = Date.now();
      const read = await mirror.request('GET', '/reval-c');
      expect(read.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(1000);
      // Read again meanwhile: the one comparison under way is not started twice.
      await sleep(1100);
      expect((await mirror.request('GET', '/reval-c')).status).toBe(200);
      await sleep(300);
      expect(viaProxy.asked('/reval-c').filter((r) => r.ifNoneMatch).length).toBe(1);
    } finally {
      slow.delete('/reval-c');
    }
  });

  it('after a restart, is asked conditionally with the validators stored on the copy', async () => {
    expect((await mirror.request('GET', '/reval-d')).status).toBe(200);
    const copy = await storedCopy(mirror, 'reval-d');
    // A gateway that never saw it (its memory empty, as after a restart), on the same database.
    const second = await anotherGateway(mirror, 'second-gateway', { UPSTREAM_REGISTRY: viaProxy.url, ...MAX_AGE });
    try {
      const before = viaProxy.asked('/reval-d').length;
      expect((await fetch(second.localUrl + '/reval-d')).status).toBe(200);
      const asked = await eventually(async () => viaProxy.asked('/reval-d').slice(before).find((r) => r.status) || null, 10_000, 'the second gateway asking');
      expect(asked.ifNoneMatch).toBe(copy.origin_validators.etag);
      expect(asked.status).toBe(304);
      expect((await mirroredDoc(mirror, 'reval-d')).body._rev).toBe(copy._rev);
    } finally {
      await second.close();
    }
  });

  it('from an upstream without validators, the same bytes again write nothing', async () => {
    expect((await plain.request('GET', '/reval-a')).status).toBe(200);
    const copy = await storedCopy(plain, 'reval-a');
    expect(copy.origin_validators.etag).toBeUndefined();
    await sleep(1100);
    expect((await plain.request('GET', '/reval-a')).status).toBe(200);
    await eventually(async () => ((await revalidations(plain)).unchanged >= 1 ? true : null), 10_000, 'the comparison');
    expect(bare.asked('/reval-a').filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(2);
    expect((await mirroredDoc(plain, 'reval-a')).body._rev).toBe(copy._rev);
  });
});
