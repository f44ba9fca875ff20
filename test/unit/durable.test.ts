/**
 * Writes CouchDB answers `202 Accepted` (stored on fewer copies than the write quorum) count as done
 * only once read back with `r` = the quorum; else they fail with a 503 clients retry. A CouchDB
 * cluster cannot run in CI and the embedded server never answers 202: a stand-in HTTP server answers
 * as a cluster's node does (202 for writes, `GET /{db}` with `cluster.w`, reads of `?rev=&r=`).
 */
import http from 'http';
import { AddressInfo } from 'net';
import { Couch, isNotDurable } from '../../couchdb/client';
import { asHttpError } from '../../gateway/errors';

interface StandIn {
  url: string;
  /** Reads of `?rev=` seen, with their `r`. */
  reads: string[];
  /** How many reads of a revision answer 404 before it is found (Infinity: never). */
  missingReads: number;
  close(): Promise<void>;
}

async function standIn(): Promise<StandIn> {
  const state = { reads: [] as string[], missingReads: 0 };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url || '/', 'http://x');
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    req.resume();
    req.on('end', () => {
      if (req.method === 'GET' && url.pathname === '/db') return send(200, { db_name: 'db', cluster: { q: 2, n: 3, w: 2, r: 2 } });
      if (req.method === 'PUT' || req.method === 'DELETE') return send(202, { ok: true, id: decodeURIComponent(url.pathname.split('/')[2]), rev: '2-abc' });
      if (req.method === 'POST' && url.pathname === '/db/_bulk_docs') return send(202, [{ ok: true, id: 'a', rev: '1-aaa' }]);
      if (req.method === 'GET' && url.searchParams.get('rev')) {
        state.reads.push(url.searchParams.get('rev') + ' r=' + url.searchParams.get('r'));
        if (state.reads.length <= state.missingReads) return send(404, { error: 'not_found', reason: 'missing' });
        return send(200, { _id: decodeURIComponent(url.pathname.split('/')[2]), _rev: url.searchParams.get('rev') });
      }
      send(404, { error: 'not_found', reason: 'missing' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(state, {
    url: `http://admin:pw@127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

describe('writes answered 202 Accepted', () => {
  let couch: StandIn;
  const delays = Couch.confirmDelays;
  beforeAll(async () => {
    couch = await standIn();
    Couch.confirmDelays = [1, 1, 1, 1];
  });
  afterAll(async () => {
    Couch.confirmDelays = delays;
    await couch.close();
  });
  beforeEach(() => {
    couch.reads.length = 0;
  });

  it('are done once the revision reads back with r = the write quorum', async () => {
    couch.missingReads = 2;
    const client = new Couch(couch.url, 'secret');
    await expect(client.db('db').put({ _id: 'token:x', value: 1 } as never)).resolves.toEqual({ id: 'token:x', rev: '2-abc' });
    expect(couch.reads).toEqual(['2-abc r=2', '2-abc r=2', '2-abc r=2']);
    await expect(client.putAs({ name: 'alice', roles: [] }, 'db', { _id: 'pkg' })).resolves.toMatchObject({ rev: '2-abc' });
    await expect(client.db('db').remove('token:x', '1-a')).resolves.toBeUndefined();
    await expect(client.db('db').request('POST', '_bulk_docs', { docs: [{ _id: 'a' }] })).resolves.toEqual([{ ok: true, id: 'a', rev: '1-aaa' }]);
  });

  it('fail with a 503 and Retry-After when the revision cannot be confirmed, on every write path', async () => {
    couch.missingReads = Infinity;
    const client = new Couch(couch.url, 'secret');
    const failures = await Promise.all([
      client.db('db').put({ _id: 'org.couchdb.user:bob' } as never).catch((err) => err),
      client.putAs({ name: 'alice', roles: [] }, 'db', { _id: 'pkg' }).catch((err) => err),
      client.requestAs({ name: 'alice', roles: [] }, 'PUT', '/db/pkg/pkg-1.0.0.tgz', Buffer.from('x'), 'application/octet-stream').catch((err) => err),
      client.db('db').remove('websession:x', '1-a').catch((err) => err),
      client.db('db').request('POST', '_bulk_docs', { docs: [{ _id: 'a' }] }).catch((err) => err),
    ]);
    for (const failure of failures) {
      expect(isNotDurable(failure)).toBe(true);
      const answer = asHttpError(failure);
      expect(answer?.status).toBe(503);
      expect(answer?.headers['Retry-After']).toBe('2');
      expect(answer?.message).toMatch(/fewer copies than its write quorum.*run the command again/);
    }
    // Each write was read back as many times as there are delays, never once more.
    expect(couch.reads.length).toBe(5 * 4);
  });
});
