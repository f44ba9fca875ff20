/**
 * The client of the upstream's bulk advisory endpoint against the stand-in that speaks it: many
 * packages a request, arrival checks of one turn joined into one request, an absent endpoint (404)
 * and one that sends no answer of the API, and the arrival check that leaves documents unchecked then.
 */
import pino from 'pino';
import { loadConfig } from '../../config';
import { OriginAdvisories } from '../../core/advisories';
import { PackageDoc } from '../../core/types';
import { AdvisoryClient, AdvisoryEndpointError, checkOnArrival } from '../../replication/advisories';
import { UpstreamRegistry } from '../../replication/upstream';
import { FeedStandIn, startFeedStandIn } from '../helpers/feed-standin';

let standIn: FeedStandIn;
let client: AdvisoryClient;
const log = pino({ level: 'silent' });

beforeEach(async () => {
  standIn = await startFeedStandIn();
  const config = loadConfig({ UPSTREAM_REGISTRY: standIn.url, UPSTREAM_TIMEOUT_MS: '2000' });
  client = new AdvisoryClient(new UpstreamRegistry(standIn.url, config), config.upstreamTimeoutMs);
});

afterEach(() => standIn.close());

const ADVISORY = { id: 4242, title: 'Bad things', url: 'https://github.com/advisories/GHSA-bad0-0000-0000', severity: 'high' as const, vulnerable_versions: '<2.0.0' };

it('asks about 100 packages a request and keeps, per package, the advisories and the versions they cover', async () => {
  standIn.addAdvisory('pkg-7', ADVISORY);
  const packages = Array.from({ length: 250 }, (_, i) => ({ name: 'pkg-' + i, versions: ['1.0.0', '2.0.0'] }));
  const records = await client.records(packages);
  expect(standIn.advisoryRequests.map((body) => Object.keys(body).length)).toEqual([100, 100, 50]);
  expect(records.size).toBe(250);
  expect(records.get('pkg-7')?.affected).toEqual({ '1.0.0': ['4242'] });
  expect(records.get('pkg-8')?.checked).toEqual(['1.0.0', '2.0.0']);
  expect(client.status.state).toBe('ok');
});

it('joins the arrival checks of one turn of the event loop into one request', async () => {
  standIn.addAdvisory('b', ADVISORY);
  const records = await Promise.all(['a', 'b', 'c', 'd'].map((name) => client.check(name, ['1.0.0'])));
  expect(standIn.advisoryRequests).toEqual([{ a: ['1.0.0'], b: ['1.0.0'], c: ['1.0.0'], d: ['1.0.0'] }]);
  expect(records[1].affected).toEqual({ '1.0.0': ['4242'] });
  expect(records[0].affected).toEqual({});
});

it('an absent endpoint (404) is reported as such, and arrival checks do not wait for it again at once', async () => {
  standIn.advisoryEndpoint('absent');
  await expect(client.records([{ name: 'a', versions: ['1.0.0'] }])).rejects.toMatchObject({ absent: true });
  expect(client.status.state).toBe('absent');
  expect(client.status.lastError).toContain('has no bulk advisory endpoint (it answered 404');
  const asked = standIn.advisoryRequests.length;
  await expect(client.check('a', ['1.0.0'])).rejects.toBeInstanceOf(AdvisoryEndpointError);
  expect(standIn.advisoryRequests.length).toBe(asked);
  // The arrival check leaves the document unchecked (the policy's "unchecked" decides).
  const doc = { _id: 'a', name: 'a', versions: { '1.0.0': {} }, 'dist-tags': {}, time: {}, maintainers: [], origin: standIn.url } as unknown as PackageDoc;
  expect(await checkOnArrival(client, [doc], log)).toEqual([]);
  expect(doc.origin_advisories).toBeUndefined();
});

it('a failing endpoint (503) is unreachable; an answer it gives again is taken', async () => {
  standIn.advisoryEndpoint('down');
  await expect(client.records([{ name: 'a', versions: ['1.0.0'] }])).rejects.toMatchObject({ absent: false });
  expect(client.status.state).toBe('unreachable');
  standIn.advisoryEndpoint('up');
  standIn.addAdvisory('a', ADVISORY);
  const record = (await client.records([{ name: 'a', versions: ['1.0.0'] }])).get('a') as OriginAdvisories;
  expect(record.advisories['4242'].title).toBe('Bad things');
  expect(client.status.state).toBe('ok');
});
