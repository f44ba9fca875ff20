/**
 * The upstream client against a real HTTP server that misbehaves as a broken or hostile upstream can:
 * bodies that claim an encoding they do not have, answers cut off, redirects in a loop, links of
 * other protocols. Each is a clear error for the one request, and nothing escapes to the process.
 */
import http from 'http';
import { AddressInfo } from 'net';
import { gzipSync } from 'zlib';
import { loadConfig } from '../../config';
import { readAll, UpstreamRegistry } from '../../replication/upstream';

let server: http.Server;
let upstream: UpstreamRegistry;
let url: string;
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
  upstream = new UpstreamRegistry(url, loadConfig({ UPSTREAM_REGISTRY: url, UPSTREAM_TIMEOUT_MS: '2000' }));
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
});
