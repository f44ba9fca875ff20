import pino from 'pino';
import { DownloadCounter } from '../../gateway/downloads';
import { Couch } from '../../couchdb/client';

/** A downloads database in memory, whose `_bulk_docs` can be made to fail or to report conflicts. */
function fakeDatabase() {
  const docs = new Map<string, any>();
  const state = { fail: false, conflictOnce: new Set<string>(), writes: [] as any[][] };
  const db = {
    async request(method: string, path: string, body?: any) {
      if (method === 'POST' && path === '_bulk_docs') {
        if (state.fail) throw new Error('CouchDB is down');
        state.writes.push(body.docs);
        return body.docs.map((doc: any) => {
          const current = docs.get(doc._id);
          if (state.conflictOnce.delete(doc._id) || (current ? current._rev !== doc._rev : doc._rev !== undefined)) return { id: doc._id, error: 'conflict', reason: 'Document update conflict.' };
          const rev = (current ? Number(current._rev.split('-')[0]) + 1 : 1) + '-x';
          docs.set(doc._id, { ...doc, _rev: rev });
          return { id: doc._id, rev };
        });
      }
      if (method === 'GET' && path.startsWith('_all_docs')) {
        const query = new URLSearchParams(path.split('?')[1]);
        const start = JSON.parse(query.get('startkey') as string);
        const end = JSON.parse(query.get('endkey') as string);
        return { rows: [...docs.values()].filter((d) => d._id >= start && d._id <= end).map((doc) => ({ id: doc._id, doc })) };
      }
      throw new Error('unexpected ' + method + ' ' + path);
    },
    async getMany(ids: string[]) {
      return new Map(ids.filter((id) => docs.has(id)).map((id) => [id, docs.get(id)]));
    },
  };
  return { docs, state, couch: { db: () => db } as unknown as Couch };
}

const today = () => new Date().toISOString().slice(0, 10);
const period = () => ({ start: today(), end: today() });

it('writes what was counted, adding to its own documents, per version', async () => {
  const { docs, state, couch } = fakeDatabase();
  const counter = new DownloadCounter(couch, 'registry-downloads', 60_000, pino({ level: 'silent' }));
  counter.count('left-pad', 'left-pad-1.0.0.tgz');
  counter.count('left-pad', 'left-pad-1.0.0.tgz');
  counter.count('@acme/tool', 'tool-2.0.0-beta.1.tgz');
  await counter.flush();
  expect(state.writes[0]).toHaveLength(2);
  counter.count('left-pad', 'left-pad-1.1.0.tgz');
  await counter.flush();
  // Nothing counted: nothing written.
  await counter.flush();
  expect(state.writes).toHaveLength(2);
  expect(state.writes[1]).toEqual([expect.objectContaining({ _rev: '1-x', versions: { '1.0.0': 2, '1.1.0': 1 } })]);
  const stored = [...docs.values()];
  expect(stored.map((d) => [d.package, d.day, d.gateway, d.versions])).toEqual([
    ['left-pad', today(), counter.gateway, { '1.0.0': 2, '1.1.0': 1 }],
    ['@acme/tool', today(), counter.gateway, { '2.0.0-beta.1': 1 }],
  ]);
  expect((await counter.read('@acme/tool', period())).total).toBe(1);
});

it('keeps counts CouchDB did not take for the next flush, and reads them meanwhile', async () => {
  const { state, couch } = fakeDatabase();
  const counter = new DownloadCounter(couch, 'registry-downloads', 60_000, pino({ level: 'silent' }));
  counter.count('left-pad', 'left-pad-1.0.0.tgz');
  await counter.flush();
  state.fail = true;
  counter.count('left-pad', 'left-pad-1.0.0.tgz');
  counter.count('left-pad', 'left-pad-1.0.0.tgz');
  await counter.flush();
  counter.count('left-pad', 'left-pad-1.0.0.tgz');
  // Not written yet, read all the same: what CouchDB has and what waits.
  state.fail = false;
  expect((await counter.read('left-pad', period())).versions).toEqual({ '1.0.0': 4 });
  await counter.flush();
  const last = state.writes[state.writes.length - 1];
  expect(last).toEqual([expect.objectContaining({ _rev: '1-x', versions: { '1.0.0': 4 } })]);
  expect((await counter.read('left-pad', period())).total).toBe(4);
});

it('after a conflict, reads its document again and adds to what it holds', async () => {
  const { docs, state, couch } = fakeDatabase();
  const counter = new DownloadCounter(couch, 'registry-downloads', 60_000, pino({ level: 'silent' }));
  counter.count('left-pad', 'left-pad-1.0.0.tgz');
  await counter.flush();
  const id = [...docs.keys()][0];
  // Someone else (an admin in Fauxton, say) changed the document.
  docs.set(id, { ...docs.get(id), _rev: '5-y', versions: { '1.0.0': 10 } });
  counter.count('left-pad', 'left-pad-1.0.0.tgz');
  await counter.flush();
  await counter.flush();
  expect(docs.get(id)).toMatchObject({ versions: { '1.0.0': 11 }, _rev: '6-x' });
  expect(state.writes.length).toBe(3);
});

it('writes everything at stop', async () => {
  const { docs, couch } = fakeDatabase();
  const counter = new DownloadCounter(couch, 'registry-downloads', 60_000, pino({ level: 'silent' }));
  counter.start();
  for (let i = 0; i < 1200; i++) counter.count('pkg-' + i, 'pkg-' + i + '-1.0.0.tgz');
  await counter.stop();
  expect(docs.size).toBe(1200);
});
