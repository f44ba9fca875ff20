/**
 * Webhooks against a receiver started here: hooks configured as documents in CouchDB (as an admin
 * would in Fauxton), events for publish, dist-tag, deprecate, owner and unpublish from the real npm
 * CLI, HMAC-SHA256 signatures, filters by event and package, retries with backoff, and deliveries
 * that survive a restart of the registry.
 */
import { createHmac } from 'crypto';
import { createServer, IncomingMessage, Server } from 'http';
import { AddressInfo } from 'net';
import { RunningRegistry } from '../../server/registry';
import { makePackage, npmClient, NpmClient } from '../helpers/npm';
import { basicAuthOf, restartTestRegistry, startTestRegistry, TestRegistry } from '../helpers/registry';
import { eventually, settled } from '../helpers/wait';

interface Received {
  headers: IncomingMessage['headers'];
  raw: string;
  body: { event: string; name: string; change: Record<string, any>; actor: string; delivery: string; hook: string };
}

/** An HTTP receiver: records every POST; `failNext` answers that many requests with 500 first. */
class Receiver {
  received: Received[] = [];
  failNext = 0;
  private server?: Server;
  port = 0;

  async start(port = 0): Promise<void> {
    this.server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk) => (raw += chunk));
      req.on('end', () => {
        if (this.failNext > 0) {
          this.failNext--;
          res.statusCode = 500;
          return res.end('busy');
        }
        this.received.push({ headers: req.headers, raw, body: JSON.parse(raw) });
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server!.address() as AddressInfo).port;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server?.close(() => resolve());
      this.server?.closeAllConnections();
    });
  }

  get url(): string {
    return 'http://127.0.0.1:' + this.port + '/hook';
  }

  find(event: string, name: string): Promise<Received> {
    return eventually(async () => this.received.find((r) => r.body.event === event && r.body.name === name) || null, 15_000, event + ' of ' + name);
  }
}

const SECRET = 'hook-secret-of-ci';
let registry: TestRegistry;
let receiver: Receiver;
let alice: NpmClient;

async function putHook(registryDb: string, adminUrl: string, id: string, hook: Record<string, unknown>): Promise<void> {
  const url = new URL('/' + registryDb + '-state/' + encodeURIComponent(id), new URL(adminUrl).origin);
  const res = await fetch(url, { method: 'PUT', headers: { authorization: basicAuthOf(adminUrl), 'content-type': 'application/json' }, body: JSON.stringify({ type: 'webhook', ...hook }) });
  if (res.status !== 201) throw new Error('cannot store the hook: ' + res.status + ' ' + (await res.text()));
}

async function deliveries(registryDb: string, adminUrl: string): Promise<any[]> {
  const url = new URL('/' + registryDb + '-state/_all_docs?include_docs=true&startkey=%22delivery%3A%22&endkey=%22delivery%3A%EF%BF%B0%22', new URL(adminUrl).origin);
  const res = await fetch(url, { headers: { authorization: basicAuthOf(adminUrl) } });
  return ((await res.json()) as { rows: { doc: any }[] }).rows.map((r) => r.doc);
}

beforeAll(async () => {
  receiver = new Receiver();
  await receiver.start();
  registry = await startTestRegistry({ WEBHOOK_BACKOFF_MS: '200', OUTBOUND_ALLOW_PRIVATE: '127.0.0.1' });
  alice = npmClient(registry.url, await registry.signup('alice', 'alice-password'));
  await registry.signup('bob');
  await putHook(registry.registryDb, registry.adminCouchUrl, 'webhook:ci', { url: receiver.url, secret: SECRET });
  await putHook(registry.registryDb, registry.adminCouchUrl, 'webhook:acme-publishes', { url: receiver.url + '?acme', secret: 'acme-secret', events: ['package:publish'], packages: '@acme/*' });
  await putHook(registry.registryDb, registry.adminCouchUrl, 'webhook:off', { url: receiver.url + '?off', secret: 'x', active: false });
});

afterAll(async () => {
  await registry?.stop();
  await receiver?.stop();
});

describe('webhooks', () => {
  it('a publish is delivered as signed JSON naming the event, the package, the versions and who published', async () => {
    expect((await alice.npm(['publish'], makePackage(alice.home, { name: 'hooked', version: '1.0.0' }))).code).toBe(0);
    const got = await receiver.find('package:publish', 'hooked');
    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['x-registry-event']).toBe('package:publish');
    expect(got.headers['x-npm-signature']).toBe('sha256=' + createHmac('sha256', SECRET).update(got.raw).digest('hex'));
    expect(got.body).toMatchObject({ name: 'hooked', actor: 'alice', hook: 'ci', change: { versions: ['1.0.0'], 'dist-tags': { latest: '1.0.0' } } });
    expect(got.body.delivery).toBe(got.headers['x-registry-delivery']);
  });

  it('dist-tag, deprecate, owner and unpublish are delivered too', async () => {
    expect((await alice.npm(['publish'], makePackage(alice.home, { name: 'hooked', version: '1.1.0' }))).code).toBe(0);
    expect((await alice.npm(['dist-tag', 'add', 'hooked@1.0.0', 'stable'])).code).toBe(0);
    expect((await receiver.find('package:dist-tag', 'hooked')).body.change).toEqual({ tag: 'stable', from: null, to: '1.0.0' });
    expect((await alice.npm(['deprecate', 'hooked@1.0.0', 'use 1.1.0'])).code).toBe(0);
    expect((await receiver.find('package:deprecate', 'hooked')).body.change).toEqual({ version: '1.0.0', deprecated: 'use 1.1.0' });
    expect((await alice.npm(['owner', 'add', 'bob', 'hooked'])).code).toBe(0);
    expect((await receiver.find('package:owner', 'hooked')).body.change).toEqual({ added: ['bob'], removed: [] });
    expect((await alice.npm(['unpublish', 'hooked', '--force'])).code).toBe(0);
    expect((await receiver.find('package:unpublish', 'hooked')).body.change).toEqual({ versions: ['1.0.0', '1.1.0'], whole: true });
  });

  it('hooks choose their events and packages; a switched-off hook gets nothing', async () => {
    expect((await alice.npm(['publish'], makePackage(alice.home, { name: '@acme/tool', version: '1.0.0' }))).code).toBe(0);
    await eventually(async () => (receiver.received.filter((r) => r.body.name === '@acme/tool').length === 2 ? true : null), 15_000, 'both hooks');
    const acme = receiver.received.filter((r) => r.body.hook === 'acme-publishes');
    expect(acme.map((r) => r.body.name)).toEqual(['@acme/tool']);
    expect(acme[0].headers['x-npm-signature']).toBe('sha256=' + createHmac('sha256', 'acme-secret').update(acme[0].raw).digest('hex'));
    expect(receiver.received.filter((r) => r.body.hook === 'off')).toEqual([]);
  });

  it('a failed delivery is sent again with backoff, and recorded as delivered once it got through', async () => {
    receiver.failNext = 2;
    expect((await alice.npm(['publish'], makePackage(alice.home, { name: 'flaky-receiver', version: '1.0.0' }))).code).toBe(0);
    const got = await receiver.find('package:publish', 'flaky-receiver');
    const delivery = await eventually(async () => (await deliveries(registry.registryDb, registry.adminCouchUrl)).find((d) => d._id === got.body.delivery && d.state === 'delivered') || null);
    expect(delivery.attempts).toBe(3);
    expect(delivery.lastStatus).toBe(200);
  });

  it('a delivery stored on conflicting branches, as a cluster leaves a lease taken on a stale copy, is sent once and settled', async () => {
    // What a three-node CouchDB leaves when a gateway's query read a copy that lagged: the delivery was
    // made on one branch (2-000…) while a lease on its previous revision made another (2-fff…), which
    // wins by its revision id and still reads "pending". And a delivery never made, on two pending branches.
    const state = new URL('/' + registry.registryDb + '-state/', new URL(registry.adminCouchUrl).origin);
    const headers = { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' };
    const delivery = (id: string, name: string) => ({
      _id: id, type: 'delivery', hook: 'webhook:ci', event: 'package:publish', name, state: 'pending', attempts: 0, next: 0, created: new Date().toISOString(),
      body: JSON.stringify({ event: 'package:publish', type: 'package', name, change: { versions: ['1.0.0'] }, actor: 'alice', delivery: id, hook: 'ci' }),
    });
    const branch = (doc: object, rev: string, fields: object) => ({ ...doc, ...fields, _rev: '2-' + rev, _revisions: { start: 2, ids: [rev, 'a'.repeat(32)] } });
    const made = delivery('delivery:2026-01-01T00:00:00.000Z:madeonebranch', 'made-on-a-branch');
    const never = delivery('delivery:2026-01-01T00:00:00.000Z:nevermade', 'never-made');
    const docs = [
      branch(made, '0'.repeat(32), { state: 'delivered', attempts: 1, delivered: new Date().toISOString(), lastStatus: 200 }),
      branch(made, 'f'.repeat(32), { leaseUntil: 1 }),
      branch(never, '0'.repeat(32), { leaseUntil: 1 }),
      branch(never, 'f'.repeat(32), { leaseUntil: 2 }),
    ];
    const written = await fetch(new URL('_bulk_docs', state), { method: 'POST', headers, body: JSON.stringify({ docs, new_edits: false }) });
    expect(written.status).toBe(201);
    const read = async (id: string) => (await fetch(new URL(encodeURIComponent(id) + '?conflicts=true', state), { headers })).json() as Promise<any>;
    expect(await read(made._id)).toMatchObject({ _rev: '2-' + 'f'.repeat(32), state: 'pending', _conflicts: ['2-' + '0'.repeat(32)] });

    await receiver.find('package:publish', 'never-made');
    const settledMade = await settled(() => read(made._id), (doc) => doc.state === 'delivered' && !doc._conflicts, 15_000);
    expect(settledMade).toMatchObject({ state: 'delivered', attempts: 1, lastStatus: 200 });
    expect(settledMade._conflicts).toBeUndefined();
    const settledNever = await settled(() => read(never._id), (doc) => doc.state === 'delivered' && !doc._conflicts, 15_000);
    expect(settledNever).toMatchObject({ state: 'delivered', attempts: 1 });
    expect(settledNever._conflicts).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(receiver.received.filter((r) => r.body.name === 'made-on-a-branch')).toEqual([]);
    expect(receiver.received.filter((r) => r.body.name === 'never-made').length).toBe(1);
  });

  it('with every delivery made and nothing changing, no gateway queries CouchDB for due deliveries', async () => {
    const finds = async () => {
      const text = await (await fetch(registry.url + '/-/metrics', { headers: { authorization: basicAuthOf(registry.adminCouchUrl) } })).text();
      return Number((/registry_couchdb_request_duration_seconds_count\{operation="find",outcome="ok"\} (\d+)/.exec(text) || [])[1] || 0);
    };
    await eventually(async () => ((await deliveries(registry.registryDb, registry.adminCouchUrl)).every((d) => d.state !== 'pending') ? true : null));
    const before = await finds();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect((await finds()) - before).toBe(0);
  });
});

describe('webhooks across a restart', () => {
  let again: RunningRegistry | undefined;
  afterAll(async () => {
    await again?.close();
  });

  it('a delivery that could not be made before the registry stopped is made after it starts again', async () => {
    const port = receiver.port;
    await receiver.stop();
    expect((await alice.npm(['publish'], makePackage(alice.home, { name: 'while-down', version: '1.0.0' }))).code).toBe(0);
    await eventually(async () => ((await deliveries(registry.registryDb, registry.adminCouchUrl)).some((d) => d.name === 'while-down' && d.attempts >= 1 && d.state === 'pending') ? true : null));
    await registry.close();
    receiver.received = [];
    await receiver.start(port);
    again = await restartTestRegistry(registry, { WEBHOOK_BACKOFF_MS: '200', OUTBOUND_ALLOW_PRIVATE: '127.0.0.1' });
    const got = await receiver.find('package:publish', 'while-down');
    expect(got.body.actor).toBe('alice');
    expect(receiver.received.filter((r) => r.body.name === 'while-down' && r.body.hook === 'ci').length).toBe(1);
  });
});
