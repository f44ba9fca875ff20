/**
 * The benchmark harness at tiny sizes, so that it cannot rot: both registries start, take the same
 * data, and every measure yields a number for both. No targets are checked here (see bench/).
 */
import { markdownTable, runBenchmarks, runPolicies, runRestart } from '../bench/harness';
import { runScale, scaleTable } from '../bench/scale';

it('runs every benchmark against this registry and Verdaccio', async () => {
  const rows = await runBenchmarks('smoke');
  // Replication and sites have no peer, nor does the install from this registry just restarted: their rows carry our figure only.
  const oursOnly = (row: { metric: string }) => row.metric.startsWith('Replication') || row.metric.startsWith('Site convergence') || row.metric.includes('just restarted');
  const measured = rows.filter((row) => !oursOnly(row));
  expect(rows.filter(oursOnly).map((row) => row.unit)).toEqual(['× nginx', 'docs/s', 'docs/s', 'ms', 'ms']);
  for (const row of rows.filter(oursOnly)) expect([row.metric, Number.isFinite(row.ours) && row.ours > 0]).toEqual([row.metric, true]);
  expect(measured.length).toBeGreaterThanOrEqual(11);
  for (const row of measured) {
    expect(Number.isFinite(row.ours) && row.ours > 0).toBe(true);
    expect(row.peer !== null && Number.isFinite(row.peer) && row.peer > 0).toBe(true);
  }
  const table = markdownTable(rows);
  expect(table).toMatch(/\| Full packument, 3 versions \(p50 [\d.]+ vs [\d.]+ ms/);
  // The tarball rows name the load generator and the ceiling.
  expect(table).toMatch(/\| Tarball \d+ KB of the small package \(3 versions\), (wrk|autocannon)/);
  expect(table).toMatch(/\| Tarball \d+ KB \(small\) against (nginx \(sendfile\)|Express static)/);
  expect(table.split('\n')).toHaveLength(rows.length + 2);
}, 300_000);

it('measures the policies\' cost at a tiny size: the policy is accepted, every install succeeds, and every row has both figures', async () => {
  const rows = await runPolicies('smoke', 1);
  expect(rows.map((row) => row.unit)).toEqual(['ms', 'req/s', 'req/s']);
  for (const row of rows) expect([row.metric, row.ours > 0 && row.peer !== null && row.peer > 0]).toEqual([row.metric, true]);
  expect(markdownTable(rows)).toMatch(/without the policies \d+ ms \(with them [\d.]+×\)/);
}, 300_000);

it('runs the scale series at a tiny size: every measure yields a number, and searches for whole names find them first', async () => {
  const rows = await runScale({ sizes: [200], seconds: 1, connections: 5 });
  expect(rows.length).toBeGreaterThanOrEqual(15);
  for (const row of rows) expect([row.metric, row.values.length === 1 && Number.isFinite(row.values[0])]).toEqual([row.metric, true]);
  const found = rows.find((row) => row.metric.startsWith('Searches for a whole name'))!;
  expect(found.values[0]).toBe(100);
  expect(scaleTable([200], rows)).toMatch(/\| Search, one client at a time: p99 .*\| ms \| [\d.]+ \|/);
}, 300_000);

it('measures the install after a restart alone at a tiny size, beside nginx (--restart)', async () => {
  const rows = await runRestart('smoke', 1);
  expect(rows.map((row) => row.unit)).toEqual(['× nginx']);
  expect(Number.isFinite(rows[0].ours) && rows[0].ours > 0).toBe(true);
  expect(markdownTable(rows)).toMatch(/just restarted .*: \d+ ms \(median of 1 rounds\)/);
}, 300_000);

it('runs only the reads of the scale series at a tiny size (--first-reads)', async () => {
  const rows = await runScale({ sizes: [200], seconds: 1, connections: 5, readsOnly: true });
  const reads = rows.filter((row) => /read (of each|again)|^Unknown name/.test(row.metric));
  expect(reads.map((row) => row.metric)).toEqual([
    'Abbreviated packument, first read of each', 'Abbreviated packument, read again', 'Tarball, first read of each', 'Tarball, read again',
    'Unknown name (404), first ask', 'Unknown name (404), asked again',
  ]);
  for (const row of reads) expect([row.metric, row.values[0] > 0]).toEqual([row.metric, true]);
  expect(rows.some((row) => row.metric.startsWith('Search'))).toBe(false);
}, 300_000);
