/**
 * Three sites, each naming the other two: a package published at any of them is served at all three,
 * and versions of one package published at all three at once converge to one packument everywhere
 * (three resolvers merging the same leaves do not flap).
 */
import { convergedView, publishAt, served, Sites, startSites } from '../helpers/sites';
import { eventually } from '../helpers/wait';

let sites: Sites;
let token: string;
const run = Math.random().toString(36).slice(2, 8);

beforeAll(async () => {
  sites = await startSites(3);
  const [a, b, c] = sites.sites;
  token = await sites.signup(a, 'three-' + run, 'three-sites-password');
  for (const site of [b, c]) {
    await eventually(async () => ((await fetch(site.url() + '/-/whoami', { headers: { authorization: 'Bearer ' + token } })).status === 200 ? true : null), 30_000, 'the account at site ' + site.name);
  }
});

afterAll(() => sites?.stop());

it('every site learns the ids of the other two and serves what any of them published', async () => {
  const [a, b, c] = sites.sites;
  const name = 'three-one-' + run;
  expect(await publishAt(c.url(), token, name, '1.0.0', Buffer.from('from c'))).toBe(201);
  for (const site of [a, b]) await eventually(() => served(site.url(), name), 20_000, name + ' at site ' + site.name);
  const status = (await (await fetch(a.url() + '/-/replication', { headers: { authorization: 'Bearer ' + token } })).json()) as { sites: { origins: string[]; peers: { id: string }[] } };
  expect(status.sites.origins).toHaveLength(3);
  expect(status.sites.peers.map((peer) => peer.id).sort()).toEqual(status.sites.origins.slice(1).sort());
});

it('versions of one package published at the three sites at once converge to the union everywhere', async () => {
  const name = 'three-shared-' + run;
  const statuses = await Promise.all(
    sites.sites.flatMap((site, s) => Array.from({ length: 6 }, (_, i) => publishAt(site.url(), token, name, s + 1 + '.' + i + '.0', Buffer.from(name + ' ' + s + ' ' + i)))),
  );
  expect(statuses.filter((status) => status !== 200 && status !== 201)).toEqual([]);
  const view = await eventually(() => convergedView(sites.sites, [name]), 60_000, 'three sites to converge');
  const expected = sites.sites.flatMap((_, s) => Array.from({ length: 6 }, (__, i) => s + 1 + '.' + i + '.0')).sort();
  expect(Object.keys(view.get(name)!).sort()).toEqual(expected);
  // The merges ended: the document stops changing.
  const rev = async () => ((await (await fetch(sites.sites[0].couchOrigin() + '/' + sites.sites[0].db + '/' + name, { headers: { authorization: sites.sites[0].adminAuth() } })).json()) as { _rev: string })._rev;
  const first = await rev();
  await new Promise((resolve) => setTimeout(resolve, 3000));
  expect(await rev()).toBe(first);
});
