/**
 * The upstream client against a real HTTP server that misbehaves as a broken or hostile upstream can:
 * bodies that claim an encoding they do not have, answers cut off, redirects in a loop, links of
 * other protocols, tarballs encoded unasked, audit answers of megabytes. Each is a clear error for the
 * one request, and nothing escapes to the process; the gateway's audit relay (`postToUpstream`)
 * bounds how many audits it relays at once.
 */
import http from 'http';
import { AddressInfo } from 'net';
import { gzipSync } from 'zlib';
import { Config, loadConfig } from '../../config';
import { AUDITS_AT_ONCE, AUDITS_WAITING, postToUpstream } from '../../gateway/upstream';
import { outboundRequest, readAll, UpstreamRegistry } from '../../replication/upstream';
import { OutboundPolicy } from '../../config/outbound';
import { UpstreamRoutes } from '../../replication/routes';

let server: http.Server;
let upstream: UpstreamRegistry;
let url: string;
let config: Config;
let auditsNow = 0;
let auditsMost = 0;
/** Errors that reached the process instead of the caller. */
const escaped: unknown[] = [];
const record = (err: unknown) => escaped.push(err);

beforeAll(async () => {
  process.on('uncaughtException', record);
  server = http.createServer((req, res) => {
    switch (req.url) {
      case '/corrupt-500':
        res.writeHead(500, { 'content-encoding': 'gzip', 'content-length': 10 });
        return void res.end('not gzip!!');
      case '/corrupt-404':
        res.writeHead(404, { 'content-encoding': 'gzip', 'content-length': 10 });
        return void res.end('not gzip!!');
      case '/corrupt-200':
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': 10 });
        return void res.end('not gzip!!');
      case '/gzipped':
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'application/json' });
        return void res.end(gzipSync(JSON.stringify({ name: 'gzipped', versions: {} })));
      case '/encoded.tgz':
        // A tarball sent gzip-encoded although asked unencoded: 32 MiB of zeros in about 32 KB.
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'application/octet-stream' });
        return void res.end(gzipSync(Buffer.alloc(32 * 1024 * 1024)));
      case '/-/npm/v1/security/advisories/bulk':
        // A slow audit: how many are asked at once is counted.
        auditsNow++;
        auditsMost = Math.max(auditsMost, auditsNow);
        req.resume();
        return void setTimeout(() => {
          auditsNow--;
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{}');
        }, 100);
      case '/-/npm/v1/security/audits/quick':
        // An audit answer of 20 MB (under UPSTREAM_MAX_PACKUMENT_MB) in about 20 KB.
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        return void res.end(gzipSync('{"advisories":{"1":"' + 'a'.repeat(20 * 1024 * 1024) + '"}}'));
      case '/same-origin':
        res.writeHead(302, { location: '/echo-authorization' });
        return void res.end();
      case '/echo-authorization':
        res.writeHead(200, { 'content-type': 'text/plain' });
        return void res.end(String(req.headers.authorization));
      case '/other-origin':
        // The same server under another origin (localhost instead of 127.0.0.1).
        res.writeHead(302, { location: url.replace('127.0.0.1', 'localhost') + '/echo-authorization' });
        return void res.end();
      case '/gzipped-1000': {
        // An answer of exactly 1,000 bytes decoded, its length declared (decoded in one call).
        const body = gzipSync('{"name":"x","a":"' + 'a'.repeat(1000 - '{"name":"x","a":""}'.length) + '"}');
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'application/json', 'content-length': body.length });
        return void res.end(body);
      }
      case '/gzipped-bomb':
        // A packument of 2 MB in about 2 KB, its length declared (decoded in one call).
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'application/json', 'content-length': gzipSync('{"name":"x","a":"' + 'a'.repeat(2_000_000) + '"}').length });
        return void res.end(gzipSync('{"name":"x","a":"' + 'a'.repeat(2_000_000) + '"}'));
      case '/gzipped-cut': {
        // Declares more than it sends, then hangs up.
        const whole = gzipSync(JSON.stringify({ name: 'cut', versions: {} }));
        res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'application/json', 'content-length': whole.length + 100 });
        res.write(whole);
        return void setTimeout(() => res.socket?.destroy(), 50);
      }
      case '/compress':
        res.writeHead(200, { 'content-encoding': 'compress' });
        return void res.end('x');
      case '/loop':
        res.writeHead(302, { location: '/loop' });
        return void res.end();
      case '/elsewhere':
        res.writeHead(302, { location: 'ftp://127.0.0.1/x.tgz' });
        return void res.end();
      case '/cut.tgz':
        // Declares more than it sends, then hangs up.
        res.writeHead(200, { 'content-length': 100_000 });
        res.write(Buffer.alloc(1000));
        return void setTimeout(() => res.socket?.destroy(), 50);
      case '/big.tgz':
        res.writeHead(200, { 'content-length': 3_000_000 });
        res.write(Buffer.alloc(65_536));
        return void setTimeout(() => res.end(Buffer.alloc(3_000_000 - 65_536)), 100);
      default:
        res.writeHead(404);
        res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = 'http://127.0.0.1:' + (server.address() as AddressInfo).port;
  config = loadConfig({ UPSTREAM_REGISTRY: url, UPSTREAM_TIMEOUT_MS: '2000' });
  upstream = new UpstreamRegistry(url, config);
});

afterAll(async () => {
  process.off('uncaughtException', record);
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** Waits a moment for what a dropped body might still emit. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 150));

describe('the upstream client', () => {
  it('reads a gzipped packument', async () => {
    expect(await upstream.packument('gzipped')).toEqual({ name: 'gzipped', versions: {} });
  });

  it('a small gzipped answer of a declared length (decoded in one call) is bounded as a streamed one is, and one cut off fails', async () => {
    const small = new UpstreamRegistry(url, { ...config, upstreamMaxPackumentBytes: 1_000_000 });
    await expect(small.get('/gzipped-bomb', 'it')).rejects.toThrow('larger than 1000000 bytes (UPSTREAM_MAX_PACKUMENT_MB)');
    expect((await upstream.get('/gzipped-bomb', 'it'))?.length).toBe(2_000_000 + '{"name":"x","a":""}'.length);
    await expect(upstream.get('/gzipped-cut', 'it')).rejects.toThrow();
    await settle();
    expect(escaped).toEqual([]);
  });

  it('an answer decoded in one call is bounded to the byte: one byte over the limit is refused, the limit itself read', async () => {
    expect((await new UpstreamRegistry(url, { ...config, upstreamMaxPackumentBytes: 1000 }).get('/gzipped-1000', 'it'))?.length).toBe(1000);
    await expect(new UpstreamRegistry(url, { ...config, upstreamMaxPackumentBytes: 999 }).get('/gzipped-1000', 'it')).rejects.toThrow('larger than 999 bytes (UPSTREAM_MAX_PACKUMENT_MB)');
    await settle();
    expect(escaped).toEqual([]);
  });

  it('an error answer with a body that is not what it claims is that answer, and its body is dropped quietly', async () => {
    await expect(upstream.get('/corrupt-500', 'it')).rejects.toThrow('answered 500 for it');
    expect(await upstream.get('/corrupt-404', 'it')).toBeNull();
    await settle();
    expect(escaped).toEqual([]);
  });

  it('a body that cannot be decoded, or in an encoding it cannot read, is a clear failure of that request', async () => {
    await expect(upstream.get('/corrupt-200', 'it')).rejects.toThrow('sent an answer that cannot be decoded (incorrect header check)');
    await expect(upstream.get('/compress', 'it')).rejects.toThrow('encoding "compress"');
    expect(escaped).toEqual([]);
  });

  it('follows redirects a few times, not forever, and only to http and https', async () => {
    await expect(upstream.get('/loop', 'it')).rejects.toThrow('more than 5 redirects');
    await expect(upstream.download(url + '/elsewhere')).rejects.toThrow('protocol ftp:');
  });

  it('a download cut off, or dropped unread, fails that download only', async () => {
    const cut = await upstream.download(url + '/cut.tgz');
    expect(cut.length).toBe(100_000);
    await expect(readAll(cut.body)).rejects.toThrow();
    const dropped = await upstream.download(url + '/big.tgz');
    dropped.body.destroy();
    await settle();
    expect(escaped).toEqual([]);
  });

  it('a tarball sent encoded although asked unencoded is refused, never inflated', async () => {
    const failure = await upstream.download(url + '/encoded.tgz').then(
      () => null,
      (err: Error & { code?: string }) => err,
    );
    expect(failure?.message).toContain('sent a tarball in the encoding "gzip" although it was asked for it unencoded');
    expect(failure?.code).toBe('EENCODED');
    await settle();
    expect(escaped).toEqual([]);
  });

  it('relays at most a few audits at once, lets a few more wait, and answers the rest 503 with Retry-After', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: AUDITS_AT_ONCE + AUDITS_WAITING + 10 }, () =>
        postToUpstream({ config, upstreams: new UpstreamRoutes(config) }, '/-/npm/v1/security/advisories/bulk', { 'left-pad': ['1.0.0'] }).then(
          (answer) => answer.status,
          (err: { status?: number; headers?: Record<string, string> }) => err.status + ' ' + (err.headers || {})['Retry-After'],
        ),
      ),
    );
    expect(auditsMost).toBe(AUDITS_AT_ONCE);
    expect(outcomes.filter((o) => o === 200)).toHaveLength(AUDITS_AT_ONCE + AUDITS_WAITING);
    expect(outcomes.filter((o) => o === '503 5')).toHaveLength(10);
    // The turns are all given back.
    expect(await postToUpstream({ config, upstreams: new UpstreamRoutes(config) }, '/-/npm/v1/security/advisories/bulk', { 'left-pad': ['1.0.0'] })).toEqual({ status: 200, body: {} });
  });

  it('an audit answer of more than a few MB (decoded) is refused with 424 naming the upstream', async () => {
    const failure = await postToUpstream({ config, upstreams: new UpstreamRoutes(config) }, '/-/npm/v1/security/audits/quick', {}).catch((err: { status: number; message: string }) => err);
    expect(failure).toMatchObject({ status: 424, message: expect.stringContaining(url + ' answered the audit with more than') });
  });

  it('follows a redirect with the credentials to the same origin only', async () => {
    const policy = new OutboundPolicy({ allowPrivate: ['127.0.0.1', 'localhost'], configured: [], foreignHosts: [] });
    const ask = async (path: string) => {
      const answer = await outboundRequest(new URL(url + path), { policy, headers: { authorization: 'Basic cmVhZGVyOnNlY3JldA==' }, signal: AbortSignal.timeout(2000) });
      return (await readAll(answer.body)).toString('utf8');
    };
    expect(await ask('/same-origin')).toBe('Basic cmVhZGVyOnNlY3JldA==');
    expect(await ask('/other-origin')).toBe('undefined');
  });
});
