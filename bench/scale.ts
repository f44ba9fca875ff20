/**
 * How cost grows with size: this registry with generated packages stored (`--sizes`, up to a
 * million), each size measured the same way. The packages have a long-tailed number of versions
 * (`versionCount`) and packuments of the sizes that go with it. Per size: how fast the packages were
 * bulk-written, the disk they take, the search index's snapshot,
 * the start-up time (to ready, and until search answers), RSS, and the rates of packuments, tarballs,
 * unknown names and searches over names spread across the whole set (so caches help only as much as
 * they would in use). Ours only: Verdaccio stores one folder per package and has no bulk load; loading
 * it with 100,000 publishes would be the measure.
 */
import autocannon from 'autocannon';
import { createHash } from 'crypto';
import { readdirSync, rmSync, statSync } from 'fs';
import { join } from 'path';
import { execFileSync } from 'child_process';
import { memoryOf, peakRss, startOurs, Ours } from './harness';
import { manifestTarball } from '../test/helpers/feed-standin';

export interface ScaleOptions {
  sizes: number[];
  /** Seconds each rate is measured for. */
  seconds: number;
  connections: number;
  /**
   * Only the reads (first read of each, then again: packuments, tarballs, unknown names), without the
   * searches and the start without the index's snapshot (`--first-reads`).
   */
  readsOnly?: boolean;
}

export interface ScaleRow {
  metric: string;
  unit: string;
  /** One figure per size, in the order of `sizes`. */
  values: number[];
  higherIsBetter: boolean;
  target?: string;
  /** Whether the largest size meets the target. */
  met?: boolean;
  note?: string;
}

/** How many different packages the rates are measured over, at every size. */
const DISTINCT = 1000;

const log = (message: string) => process.stderr.write('[scale] ' + message + '\n');

/** A deterministic pseudo-random source, so every run stores the same packages. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

/** 5,000 made-up words; picked with a skew toward the first ones, as words of real descriptions are. */
function vocabulary(next: () => number): { words: string[]; pick(): string } {
  const words = new Set<string>();
  while (words.size < 5000) {
    let word = '';
    const length = 3 + Math.floor(next() * 7);
    for (let i = 0; i < length; i++) word += LETTERS[Math.floor(next() * 26)];
    words.add(word);
  }
  const list = [...words];
  return { words: list, pick: () => list[Math.floor(list.length * next() ** 3)] };
}

interface Generated {
  names: string[];
  /** A tarball path of each package (its latest version); only the packages the rates read have one stored (see `isRead`). */
  tarballs: string[];
  queries: string[];
  /** Versions written in all, and the most one package has. */
  versions: number;
  mostVersions: number;
  /** Bytes of the documents as sent (JSON, the tarballs' base64 included). */
  bytes: number;
}

/**
 * How many versions package `i` has: a long tail, as on npm (most packages 1–10 versions, some
 * hundreds, a few thousands): Pareto with shape 1.43 (P(more than v) = v^-1.43: 97% have at most 10,
 * 0.14% more than 100), capped at 5,000; and every 100,000th package from the 18th has 2,000 to
 * 4,999, so every size has at least one package of thousands.
 */
export function versionCount(i: number, u: number): number {
  if (i % 100_000 === 17) return 2000 + ((i * 7919) % 3000);
  return Math.min(5000, Math.floor(1 / Math.pow(1 - u, 0.7)));
}

/** The `k`th version of a package: 0.0.1, 0.0.2 … 0.0.9, 0.1.0 …, so that a few thousand stay distinct. */
function versionName(k: number): string {
  const n = k + 1;
  return Math.floor(n / 100) + '.' + (Math.floor(n / 10) % 10) + '.' + (n % 10);
}

/** The packages the rates read (`spread` in `measureSize`): only these have their tarballs stored. */
function isRead(i: number, count: number): boolean {
  const step = Math.max(1, Math.floor(count / DISTINCT));
  return i % step === 0 && i / step < DISTINCT;
}

/** Batches of at most this many packages or bytes, this many written at once. */
const BATCH_DOCS = 1000;
const BATCH_BYTES = 8 * 2 ** 20;
const IN_FLIGHT = 3;

/**
 * Writes `count` packages into the registry database, as an admin restoring a backup would: each
 * with its number of versions (`versionCount`) and a readme of 100 bytes to a few KB, so packument
 * sizes spread as versions do. Tarballs are stored only for the latest version of the packages the
 * rates read (1,000 at every size); the other versions' `dist` names a tarball that is not stored,
 * which no measure reads (storing them would make the load of a million packages the measure).
 */
async function fill(ours: Ours, count: number): Promise<Generated & { seconds: number }> {
  const next = random(42);
  const words = vocabulary(next);
  const mirrorDesign = (await (await fetch(ours.couch + '/' + ours.db + '/_design/mirror', { headers: { authorization: ours.adminAuth } })).json()) as { registry: string };
  const origin = mirrorDesign.registry;
  const generated: Generated = { names: [], tarballs: [], queries: [], versions: 0, mostVersions: 0, bytes: 0 };
  const started = Date.now();
  const inFlight = new Set<Promise<void>>();
  let written = 0;
  let reported = 0;
  const send = async (body: string, docs: number) => {
    const res = await fetch(ours.couch + '/' + ours.db + '/_bulk_docs', {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: ours.adminAuth }, body,
    });
    const results = (await res.json()) as { error?: string; reason?: string }[];
    const failed = Array.isArray(results) ? results.filter((r) => r.error) : [results];
    if (!res.ok || failed.length) throw new Error('bulk write failed: ' + res.status + ' ' + JSON.stringify(failed[0]));
    written += docs;
    if (written - reported >= 50_000) {
      reported = written;
      log('  ' + written + ' written (' + Math.round(written / ((Date.now() - started) / 1000)) + '/s)');
    }
  };
  let batch: string[] = [];
  let batchBytes = 0;
  const flush = async () => {
    if (!batch.length) return;
    const body = '{"docs":[' + batch.join(',') + ']}';
    const docs = batch.length;
    generated.bytes += body.length;
    batch = [];
    batchBytes = 0;
    const sending = send(body, docs);
    const tracked = sending.finally(() => inFlight.delete(tracked));
    // Its failure is thrown by the race or the wait below, not reported as unhandled in between.
    tracked.catch(() => undefined);
    inFlight.add(tracked);
    if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
  };
  for (let i = 0; i < count; i++) {
    const name = words.pick() + '-' + words.pick() + '-' + i.toString(36);
    const description = Array.from({ length: 5 + Math.floor(next() * 8) }, () => words.pick()).join(' ');
    const keywords = Array.from({ length: 1 + Math.floor(next() * 3) }, () => words.pick());
    const when = new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString();
    const versions = versionCount(i, next());
    const latest = versionName(versions - 1);
    // A readme of 100 bytes to a few KB (longer for packages with more versions, as they are).
    const readme = '# ' + name + '\n\n' + (description + '\n').repeat(1 + Math.floor(next() * 4 * Math.log2(1 + versions)));
    const doc: Record<string, any> = {
      _id: name, name, description, keywords, origin,
      'dist-tags': { latest }, versions: {}, time: { created: when, modified: when },
      maintainers: [{ name: 'bench', email: 'bench@example.com' }], readme, _attachments: {},
    };
    // Up to 4 dependencies on packages written before, skewed toward the first ones (as on npm), for the dependents index.
    const dependencies: Record<string, string> = {};
    for (let d = Math.floor(next() * 5); d > 0 && generated.names.length; d--) dependencies[generated.names[Math.floor(generated.names.length * next() ** 2)]] = '^1.0.0';
    const stored = isRead(i, count);
    for (let k = 0; k < versions; k++) {
      const version = versionName(k);
      const manifest = { name, version, description, keywords, main: 'index.js', license: 'MIT', dependencies };
      const file = name + '-' + version + '.tgz';
      const data = stored && version === latest ? manifestTarball(manifest) : Buffer.from(name + '@' + version);
      doc.versions[version] = {
        ...manifest, _id: name + '@' + version,
        _npmUser: { name: 'bench', email: 'bench@example.com' },
        dist: {
          shasum: createHash('sha1').update(data).digest('hex'),
          integrity: 'sha512-' + createHash('sha512').update(data).digest('base64'),
          tarball: ours.url + '/' + name + '/-/' + file,
        },
      };
      doc.time[version] = when;
      if (stored && version === latest) doc._attachments[file] = { content_type: 'application/octet-stream', data: data.toString('base64') };
    }
    generated.names.push(name);
    generated.tarballs.push('/' + name + '/-/' + name + '-' + latest + '.tgz');
    generated.versions += versions;
    generated.mostVersions = Math.max(generated.mostVersions, versions);
    const json = JSON.stringify(doc);
    if (batch.length && (batch.length >= BATCH_DOCS || batchBytes + json.length > BATCH_BYTES)) await flush();
    batch.push(json);
    batchBytes += json.length;
  }
  await flush();
  await Promise.all(inFlight);
  const seconds = (Date.now() - started) / 1000;
  // Queries as people type them: a common word, two words, the start of a word, a whole package name,
  // a word with a typo (one letter replaced), a keyword qualifier. Enough that no query repeats within a
  // measure (a cache of answers would measure itself).
  for (let i = 0; i < 40_000; i++) {
    const kind = i % 6;
    if (kind === 0) generated.queries.push(words.pick());
    else if (kind === 1) generated.queries.push(words.pick() + ' ' + words.pick());
    else if (kind === 2) generated.queries.push(words.pick().slice(0, 3));
    else if (kind === 3) generated.queries.push(generated.names[Math.floor(next() * generated.names.length)]);
    else if (kind === 4) {
      const word = words.pick().padEnd(4, 'e');
      const at = Math.floor(next() * word.length);
      generated.queries.push(word.slice(0, at) + (word[at] === 'q' ? 'x' : 'q') + word.slice(at + 1));
    } else generated.queries.push('keywords:' + words.pick());
  }
  return { ...generated, seconds };
}

interface Rate {
  rps: number;
  p50: number;
  p99: number;
  non2xx: number;
}

/**
 * autocannon over `paths`, each request taking the next one: for `seconds`, or (`once`) each path
 * once, which measures reads that no cache has seen.
 */
async function rate(base: string, paths: string[], seconds: number | 'once', connections: number, headers: Record<string, string> = {}): Promise<Rate> {
  let at = 0;
  const result = await autocannon({
    url: base,
    connections,
    ...(seconds === 'once' ? { amount: paths.length } : { duration: seconds }),
    headers,
    requests: [{ setupRequest: (req: any) => ({ ...req, path: paths[at++ % paths.length] }) }],
  } as autocannon.Options);
  // autocannon counts (and ends a run of a fixed number of requests) in whole seconds: the rate of
  // such a run is taken from its latency instead, by Little's law (connections busy ÷ mean latency).
  const rps = seconds === 'once' ? Math.min(connections, paths.length) / (result.latency.mean / 1000) : result.requests.average;
  return { rps, p50: result.latency.p50, p99: result.latency.p99, non2xx: result.non2xx + result.errors };
}

/** Bytes of the package databases as CouchDB counts them (`sizes.file`), and of the data folder (embedded server). */
async function diskBytes(ours: Ours): Promise<{ databases: number; dataDir: number }> {
  let databases = 0;
  for (const db of [ours.db, ours.db + '-mirror']) {
    const info = (await (await fetch(ours.couch + '/' + encodeURIComponent(db), { headers: { authorization: ours.adminAuth } })).json()) as { sizes?: { file?: number } };
    databases += (info.sizes && info.sizes.file) || 0;
  }
  const dataDir = Number(execFileSync('du', ['-sb', ours.dataDir]).toString().split(/\s/)[0]);
  return { databases, dataDir };
}

/**
 * Milliseconds from the process's start until a search answers 200, and how many 502s it answered
 * first (the gateway could not reach the embedded CouchDB in time while the index loads: counted, not a failure).
 */
async function untilSearchAnswers(ours: Ours, query: string): Promise<{ ms: number; badGateway: number }> {
  const spawned = Date.now() - ours.startedInMs;
  let badGateway = 0;
  for (;;) {
    const res = await fetch(ours.url + '/-/v1/search?text=' + encodeURIComponent(query));
    await res.arrayBuffer();
    if (res.status === 200) return { ms: Date.now() - spawned, badGateway };
    if (res.status === 502 && badGateway++ < 100) await new Promise((resolve) => setTimeout(resolve, 500));
    else if (res.status !== 503) throw new Error('search answered ' + res.status);
  }
}

interface SizeResult {
  writeRate: number;
  versionsPerPackage: number;
  mostVersions: number;
  writtenMb: number;
  /** Bytes of the search index's snapshot in the data folder. */
  snapshotMb: number;
  databasesMb: number;
  dataDirMb: number;
  startupMs: number;
  searchReadyMs: number;
  searchColdMs: number;
  /** 502s answered while waiting for search, with the snapshot and without. */
  badGateway: number;
  rssMb: number;
  peakRssMb: number;
  packument: Rate;
  packumentCold: Rate;
  tarball: Rate;
  tarballCold: Rate;
  unknown: Rate;
  unknownCold: Rate;
  search: Rate;
  searchAlone: Rate;
  searchHits: number;
}

async function measureSize(count: number, options: ScaleOptions): Promise<SizeResult> {
  log(count + ' packages: starting and writing');
  let ours = await startOurs({ LOG_LEVEL: 'warn' });
  try {
    const data = await fill(ours, count);
    // The running gateway's index takes in the writes as its feed brings them; once it has, restart.
    const last = data.names[data.names.length - 1];
    for (;;) {
      const found = (await (await fetch(ours.url + '/-/v1/search?size=1&text=' + encodeURIComponent(last))).json()) as { objects?: { package: { name: string } }[] };
      if (found.objects && found.objects[0] && found.objects[0].package.name === last) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    log('  written in ' + data.seconds.toFixed(1) + ' s; restarting');
    await ours.halt();
    ours = await startOurs({ LOG_LEVEL: 'warn' }, ours);
    const warmStart = await untilSearchAnswers(ours, data.queries[0]);
    const startupMs = ours.startedInMs;
    log('  ready in ' + startupMs + ' ms, search in ' + warmStart.ms + ' ms');
    const disk = await diskBytes(ours);
    const snapshotMb = readdirSync(join(ours.dataDir, 'cache')).filter((file) => file.startsWith('search-')).reduce((sum, file) => sum + statSync(join(ours.dataDir, 'cache', file)).size, 0) / 2 ** 20;
    // Every query must find something that it asks for by name.
    const named = data.queries.slice(0, 400).filter((_q, i) => i % 6 === 3);
    let searchHits = 0;
    for (const query of named) {
      const body = (await (await fetch(ours.url + '/-/v1/search?text=' + encodeURIComponent(query))).json()) as { objects: { package: { name: string } }[] };
      if (body.objects[0] && body.objects[0].package.name === query) searchHits++;
    }
    // The same number of different packages at every size, spread over the whole set: each read
    // once (nothing cached), then over and over.
    const spread = (list: string[]) => {
      const step = Math.max(1, Math.floor(list.length / DISTINCT));
      return Array.from({ length: Math.min(DISTINCT, list.length) }, (_v, i) => list[i * step]);
    };
    const corgi = { accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*' };
    const measureBoth = async (label: string, paths: string[], headers: Record<string, string> = {}) => {
      log('  ' + label);
      const cold = await rate(ours.url, paths, 'once', options.connections, headers);
      return { cold, warm: await rate(ours.url, paths, options.seconds, options.connections, headers) };
    };
    const packuments = await measureBoth('packuments', spread(data.names).map((n) => '/' + n), corgi);
    const tarballs = await measureBoth('tarballs', spread(data.tarballs));
    const unknowns = await measureBoth('unknown names', spread(data.names).map((n) => '/' + n + '-not-here'), corgi);
    const reads = { packument: packuments.warm, packumentCold: packuments.cold, tarball: tarballs.warm, tarballCold: tarballs.cold, unknown: unknowns.warm, unknownCold: unknowns.cold };
    if (options.readsOnly) {
      const none = { rps: NaN, p50: NaN, p99: NaN, non2xx: 0 };
      return {
        writeRate: count / data.seconds, versionsPerPackage: data.versions / count, mostVersions: data.mostVersions, writtenMb: data.bytes / 2 ** 20, snapshotMb,
        databasesMb: disk.databases / 2 ** 20, dataDirMb: disk.dataDir / 2 ** 20, startupMs, searchReadyMs: warmStart.ms, badGateway: warmStart.badGateway,
        rssMb: memoryOf(ours.pid, 'VmRSS') / 2 ** 20, peakRssMb: peakRss(ours.pid) / 2 ** 20, ...reads,
        search: none, searchAlone: none, searchHits: searchHits / named.length, searchColdMs: NaN,
      };
    }
    log('  searches');
    const queries = data.queries.map((q) => '/-/v1/search?size=20&text=' + encodeURIComponent(q));
    const searchAlone = await rate(ours.url, queries.slice(0, 20_000), options.seconds, 1);
    const search = await rate(ours.url, queries.slice(20_000), options.seconds, 10);
    const rssMb = memoryOf(ours.pid, 'VmRSS') / 2 ** 20;
    const peakRssMb = peakRss(ours.pid) / 2 ** 20;
    // Once more without the index's snapshot: the whole index is read from CouchDB.
    await ours.halt();
    for (const file of readdirSync(join(ours.dataDir, 'cache'))) if (file.startsWith('search-')) rmSync(join(ours.dataDir, 'cache', file));
    ours = await startOurs({ LOG_LEVEL: 'warn' }, ours);
    const cold = await untilSearchAnswers(ours, data.queries[0]);
    log('  without the snapshot, search in ' + cold.ms + ' ms');
    return {
      writeRate: count / data.seconds,
      versionsPerPackage: data.versions / count,
      mostVersions: data.mostVersions,
      writtenMb: data.bytes / 2 ** 20,
      snapshotMb,
      databasesMb: disk.databases / 2 ** 20,
      dataDirMb: disk.dataDir / 2 ** 20,
      startupMs,
      searchReadyMs: warmStart.ms,
      searchColdMs: cold.ms,
      badGateway: warmStart.badGateway + cold.badGateway,
      rssMb,
      peakRssMb,
      ...reads, search, searchAlone,
      searchHits: searchHits / named.length,
    };
  } finally {
    await ours.stop();
  }
}

export async function runScale(options: ScaleOptions): Promise<ScaleRow[]> {
  const results: SizeResult[] = [];
  for (const size of options.sizes) results.push(await measureSize(size, options));
  const row = (metric: string, unit: string, value: (r: SizeResult) => number, higherIsBetter: boolean, extra: Partial<ScaleRow> = {}): ScaleRow => ({
    metric, unit, values: results.map(value), higherIsBetter, ...extra,
  });
  const last = results[results.length - 1];
  const errors = (pick: (r: SizeResult) => Rate) => 'non-2xx or errors: ' + results.map((r) => pick(r).non2xx).join(' / ');
  return [
    row('Versions per package, mean', 'versions', (r) => r.versionsPerPackage, false, { note: 'most in one package ' + results.map((r) => r.mostVersions).join(' / ') }),
    row('Documents written', 'MB', (r) => r.writtenMb, false),
    row('Bulk write (admin `_bulk_docs`, ' + IN_FLIGHT + ' batches at once; tarballs only of the packages read)', 'packages/s', (r) => r.writeRate, true),
    ...(results.some((r) => r.databasesMb > 0) ? [row('Disk, package databases (`sizes.file`)', 'MB', (r) => r.databasesMb, false)] : []),
    row('Disk, data folder', 'MB', (r) => r.dataDirMb, false, { note: 'the embedded CouchDB\'s files; with COUCHDB_URL only the caches' }),
    row('Start-up to ready', 'ms', (r) => r.startupMs, false),
    row('Start-up until search answers', 'ms', (r) => r.searchReadyMs, false, { note: 'the index from the snapshot the gateway saved when it stopped, then the changes since' }),
    ...(options.readsOnly ? [] : [row('Start-up until search answers, without the snapshot', 'ms', (r) => r.searchColdMs, false, { note: 'the whole index read from both databases\' `_changes`, as at a gateway\'s first start; 502s while waiting, both starts: ' + results.map((r) => r.badGateway).join(' / ') })]),
    row('Snapshot of the search index (file)', 'MB', (r) => r.snapshotMb, false),
    row('RSS after the measures', 'MB', (r) => r.rssMb, false),
    row('Peak RSS', 'MB', (r) => r.peakRssMb, false),
    row('Abbreviated packument, first read of each', 'req/s', (r) => r.packumentCold.rps, true, { note: 'p99 ' + results.map((r) => r.packumentCold.p99).join(' / ') + ' ms; ' + errors((r) => r.packumentCold) }),
    row('Abbreviated packument, read again', 'req/s', (r) => r.packument.rps, true, { note: 'p99 ' + results.map((r) => r.packument.p99).join(' / ') + ' ms; ' + errors((r) => r.packument) }),
    row('Tarball, first read of each', 'req/s', (r) => r.tarballCold.rps, true, { note: 'p99 ' + results.map((r) => r.tarballCold.p99).join(' / ') + ' ms; ' + errors((r) => r.tarballCold) }),
    row('Tarball, read again', 'req/s', (r) => r.tarball.rps, true, { note: 'p99 ' + results.map((r) => r.tarball.p99).join(' / ') + ' ms; ' + errors((r) => r.tarball) }),
    row('Unknown name (404), first ask', 'req/s', (r) => r.unknownCold.rps, true, { note: 'p99 ' + results.map((r) => r.unknownCold.p99).join(' / ') + ' ms' }),
    row('Unknown name (404), asked again', 'req/s', (r) => r.unknown.rps, true, { note: 'p99 ' + results.map((r) => r.unknown.p99).join(' / ') + ' ms' }),
    ...(options.readsOnly ? [] : [
    row('Search, one client at a time: p50', 'ms', (r) => r.searchAlone.p50, false),
    row('Search, one client at a time: p99', 'ms', (r) => r.searchAlone.p99, false, { target: '≤ 20 ms', met: last.searchAlone.p99 <= 20 && last.searchAlone.non2xx === 0, note: errors((r) => r.searchAlone) }),
    row('Search, 10 clients at once', 'req/s', (r) => r.search.rps, true, { note: errors((r) => r.search) }),
    row('Search, 10 clients at once: p50', 'ms', (r) => r.search.p50, false),
    row('Search, 10 clients at once: p99', 'ms', (r) => r.search.p99, false, { target: '≤ 20 ms', met: last.search.p99 <= 20 && last.search.non2xx === 0 }),
    row('Searches for a whole name that list it first', '%', (r) => r.searchHits * 100, true),
    ]),
  ];
}

const round = (value: number) => (!Number.isFinite(value) ? 'n/a' : value >= 100 ? String(Math.round(value)) : String(Math.round(value * 10) / 10));

export function scaleTable(sizes: number[], rows: ScaleRow[]): string {
  const head = '| Measure | Unit | ' + sizes.map((s) => s.toLocaleString('en-US') + ' packages').join(' | ') + ' | Largest ÷ smallest | Target | Met |';
  const rule = '|' + ' --- |'.repeat(sizes.length + 5);
  const lines = rows.map((r) => {
    const growth = r.values[0] > 0 ? round(r.values[r.values.length - 1] / r.values[0]) + '×' : 'n/a';
    const met = r.met === undefined ? '' : r.met ? 'yes' : 'no';
    return '| ' + r.metric + (r.note ? ' (' + r.note + ')' : '') + ' | ' + r.unit + ' | ' + r.values.map(round).join(' | ') + ' | ' + growth + ' | ' + (r.target || '') + ' | ' + met + ' |';
  });
  return [head, rule, ...lines].join('\n');
}
