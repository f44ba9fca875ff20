/**
 * Hostile tests of issue 25 (several upstreams routed by package pattern, the license policy): names
 * that try to reach the wrong upstream or a private scope through case and percent-encoding, and a
 * hostile upstream whose license fields try to take the gateway's time from other users.
 */
import http from 'http';
import { AddressInfo } from 'net';
import { startTestRegistry, TestRegistry } from '../helpers/registry';

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
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = 'http://127.0.0.1:' + (server.address() as AddressInfo).port;
  upstream.stop = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
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
