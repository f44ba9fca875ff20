/**
 * Metrics in Prometheus' text format (`GET /-/metrics`, prom-client): requests by route and status
 * with latency histograms, cache hits and misses with the bytes served from the caches, publishes,
 * logins and their failures, upstream failures, CouchDB request latency, and the replication's lag
 * and queue (read when scraped), each upstream's requests, failures, health and feed lag (label
 * `upstream`, its name), and the process itself (prom-client's default metrics: CPU, resident
 * memory, heap spaces, event-loop lag, garbage collection, open handles and file descriptors). Each
 * registry has a registry of its own (several run in one test process).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RevalidationCounts } from '../replication/mirror';
import { parsePackagePath } from './paths';

/** The route of a request, as a label with a bounded set of values. */
export function routeOf(method: string, path: string): string {
  if (path === '/') return 'home';
  if (path === '/favicon.ico' || path === '/robots.txt') return 'site-file';
  if (path.startsWith('/-/')) {
    const fixed: [RegExp, string][] = [
      [/^\/-\/(ping|health|metrics)$/, '$1'],
      [/^\/-\/v1\/search$/, 'search'],
      [/^\/-\/web\//, 'web'],
      [/^\/-\/user\//, 'login'],
      [/^\/-\/(v1\/login|v1\/done|login)\b/, 'web-login'],
      [/^\/-\/npm\/v1\/tokens/, 'tokens'],
      [/^\/-\/npm\/v1\/user$/, 'profile'],
      [/^\/-\/npm\/v1\/security\//, 'audit'],
      [/^\/-\/package\/.*\/dist-tags/, 'dist-tags'],
      [/^\/-\/(replication|replicate)/, 'replication'],
      [/^\/-\/whoami$/, 'whoami'],
      [/^\/-\/_view\//, 'views'],
    ];
    for (const [pattern, name] of fixed) {
      const match = pattern.exec(path);
      if (match) return name.replace('$1', match[1] || '');
    }
    return 'other';
  }
  let parsed;
  try {
    parsed = parsePackagePath(path);
  } catch {
    return 'other';
  }
  if (!parsed) return 'other';
  const rest = parsed.rest;
  if (method === 'GET' || method === 'HEAD') {
    if (rest.length === 0) return 'packument';
    if (rest.length === 2 && rest[0] === '-') return 'tarball';
    if (rest.length === 1) return 'version';
    if (rest.length === 2 && rest[0] === 'v') return 'web';
    return 'other';
  }
  if (method === 'PUT') return rest.length === 0 ? 'publish' : 'update';
  if (method === 'DELETE') return 'unpublish';
  return 'other';
}

/** Label values as Prometheus writes them. */
const labelText = (labels: Record<string, string>) =>
  '{' + Object.entries(labels).map(([k, v]) => k + '="' + v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : '\\' + c)) + '"').join(',') + '}';

/**
 * A counter of the hot path (every request): plain numbers in a map, written out in Prometheus' text
 * format at scrape. prom-client hashes the label values on every call, which cost a quarter of the
 * rate of the tarball fast path.
 */
class HotCounter {
  private readonly series = new Map<string, { labels: string; value: number }>();

  constructor(
    private readonly name: string,
    private readonly help: string,
  ) {}

  inc(key: string, labels: () => Record<string, string>, value = 1): void {
    const series = this.series.get(key);
    if (series) series.value += value;
    else this.series.set(key, { labels: labelText(labels()), value });
  }

  render(): string {
    const lines = ['# HELP ' + this.name + ' ' + this.help, '# TYPE ' + this.name + ' counter'];
    for (const s of this.series.values()) lines.push(this.name + s.labels + ' ' + s.value);
    return lines.join('\n') + '\n';
  }
}

/** A histogram of the hot path, kept as HotCounter is. */
class HotHistogram {
  private readonly series = new Map<string, { labels: Record<string, string>; buckets: number[]; sum: number; count: number }>();

  constructor(
    private readonly name: string,
    private readonly help: string,
    private readonly bounds: number[],
  ) {}

  observe(key: string, labels: () => Record<string, string>, value: number): void {
    let series = this.series.get(key);
    if (!series) {
      series = { labels: labels(), buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.series.set(key, series);
    }
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]) {
        series.buckets[i]++;
        break;
      }
    }
    series.sum += value;
    series.count++;
  }

  render(): string {
    const lines = ['# HELP ' + this.name + ' ' + this.help, '# TYPE ' + this.name + ' histogram'];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += s.buckets[i];
        lines.push(this.name + '_bucket' + labelText({ ...s.labels, le: String(bound) }) + ' ' + cumulative);
      });
      lines.push(this.name + '_bucket' + labelText({ ...s.labels, le: '+Inf' }) + ' ' + s.count);
      lines.push(this.name + '_sum' + labelText(s.labels) + ' ' + s.sum);
      lines.push(this.name + '_count' + labelText(s.labels) + ' ' + s.count);
    }
    return lines.join('\n') + '\n';
  }
}

const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS', 'COPY']);

export interface ReplicationGauges {
  /** Feed changes not followed yet, and seconds behind; null when unknown. */
  lagChanges: number | null;
  lagSeconds: number | null;
  /** Packages waiting for another attempt (feed), or changes pending (native replication). */
  queue: number | null;
}

/** One upstream at a scrape: its name, what its client has seen, and its feed's lag (null without a feed). */
export interface UpstreamGauges {
  name: string;
  stats: { requests: number; failures: number; reachable: boolean | null };
  feedLag: number | null;
  /** Mirrored packuments compared with it when read: answered 304, answered with the same bytes, changed (replication/mirror.ts). */
  revalidations: RevalidationCounts | null;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests = new HotCounter('registry_http_requests_total', 'HTTP requests answered, by route, method and status.');
  private readonly latency = new HotHistogram('registry_http_request_duration_seconds', 'Time to answer HTTP requests, by route and method.', [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
  ]);
  private readonly cacheRequests = new HotCounter('registry_cache_requests_total', 'Reads of the packument (memory) and tarball (memory and disk) caches: hits and misses.');
  private readonly cacheBytes = new HotCounter('registry_cache_served_bytes_total', 'Bytes served from the caches.');
  private readonly publishes: Counter;
  private readonly logins: Counter<'result'>;
  private readonly upstreamErrors: Counter;
  private readonly conflictsResolved: Counter;
  private readonly publishesRefused: Counter;
  private readonly copies: Counter<'outcome'>;
  private readonly couchLatency: Histogram<'operation' | 'outcome'>;
  private replication?: () => Promise<ReplicationGauges | null>;
  private sites?: () => Promise<{ peer: string; state: string }[]>;
  private upstreams?: () => Promise<UpstreamGauges[]>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
    this.publishes = new Counter({ name: 'registry_publishes_total', help: 'Publishes stored (identical retries not counted).', registers });
    this.logins = new Counter({ name: 'registry_logins_total', help: 'Password checks (npm login, Basic auth, token creation, web pages), by result.', labelNames: ['result'], registers });
    this.upstreamErrors = new Counter({ name: 'registry_upstream_errors_total', help: 'Requests that failed because an upstream registry did not answer well.', registers });
    this.conflictsResolved = new Counter({ name: 'registry_conflicts_resolved_total', help: 'Package documents whose conflicting revisions this gateway merged into one (gateway/resolver.ts).', registers });
    this.publishesRefused = new Counter({ name: 'registry_publishes_refused_total', help: 'Publishes of a version number published first elsewhere with other bytes, refused by the merge of conflicting revisions.', registers });
    this.copies = new Counter({
      name: 'registry_packument_copies_total',
      help: 'First reads of a packument the gateway had served before it last stopped (gateway/served-copies.ts), by outcome: used (its copy on disk served), outdated (the package, the policy or the time moved on: the document was read), damaged (the copy failed its check and was not used).',
      labelNames: ['outcome'],
      registers,
    });
    this.couchLatency = new Histogram({
      name: 'registry_couchdb_request_duration_seconds',
      help: 'Time of requests to CouchDB, by operation and outcome.',
      labelNames: ['operation', 'outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    const readReplication = () => (this.replication ? this.replication().catch(() => null) : Promise.resolve(null));
    // Registered first, so that its collect (once per scrape) sets the other two before they are read.
    new Gauge({
      name: 'registry_replication_lag_changes',
      help: 'Changes of the upstream feed not followed yet.',
      registers,
      async collect() {
        const state = await readReplication();
        const values: [Gauge, number | null | undefined][] = [[this, state?.lagChanges], [lagSeconds, state?.lagSeconds], [queue, state?.queue]];
        for (const [gauge, value] of values) {
          if (typeof value === 'number') gauge.set(value);
          else gauge.reset();
        }
      },
    });
    const readSites = () => (this.sites ? this.sites().catch(() => []) : Promise.resolve([]));
    new Gauge({
      name: 'registry_site_replication_running',
      help: 'Whether the replication from each other site of this registry (SITE_PEERS) runs: 1, or 0 while it waits for the site, crashes or fails.',
      labelNames: ['peer'],
      registers,
      async collect() {
        this.reset();
        for (const site of await readSites()) this.set({ peer: site.peer }, site.state === 'running' || site.state === 'pending' ? 1 : 0);
      },
    });
    // Each upstream by its name (UPSTREAMS; "default" for UPSTREAM_REGISTRY), read at each scrape.
    const readUpstreams = () => (this.upstreams ? this.upstreams().catch(() => []) : Promise.resolve([]));
    let upstreamsRead: Promise<UpstreamGauges[]> = Promise.resolve([]);
    new Counter({
      name: 'registry_upstream_requests_total',
      help: 'Requests of the registry to each upstream (label upstream: its name), by outcome: ok, or failed (no answer, 5xx, 401, 403, 429).',
      labelNames: ['upstream', 'outcome'],
      registers,
      async collect() {
        // Read once per scrape, here: the gauges below are collected after this counter.
        upstreamsRead = readUpstreams();
        this.reset();
        for (const upstream of await upstreamsRead) {
          this.inc({ upstream: upstream.name, outcome: 'ok' }, upstream.stats.requests - upstream.stats.failures);
          this.inc({ upstream: upstream.name, outcome: 'failed' }, upstream.stats.failures);
        }
      },
    });
    new Counter({
      name: 'registry_upstream_revalidations_total',
      help: 'Mirrored packuments compared with their upstream when read (pull-through without a feed), by outcome: not_modified (304), unchanged (the same bytes again; nothing written), changed (written).',
      labelNames: ['upstream', 'outcome'],
      registers,
      async collect() {
        this.reset();
        for (const upstream of await upstreamsRead) {
          if (!upstream.revalidations) continue;
          this.inc({ upstream: upstream.name, outcome: 'not_modified' }, upstream.revalidations.notModified);
          this.inc({ upstream: upstream.name, outcome: 'unchanged' }, upstream.revalidations.unchanged);
          this.inc({ upstream: upstream.name, outcome: 'changed' }, upstream.revalidations.changed);
        }
      },
    });
    new Gauge({
      name: 'registry_upstream_up',
      help: 'Whether the last request to each upstream got a good answer: 1, or 0 (absent before the first request).',
      labelNames: ['upstream'],
      registers,
      async collect() {
        this.reset();
        for (const upstream of await upstreamsRead) if (upstream.stats.reachable !== null) this.set({ upstream: upstream.name }, upstream.stats.reachable ? 1 : 0);
      },
    });
    new Gauge({
      name: 'registry_upstream_feed_lag_changes',
      help: 'Changes of each upstream\'s feed not followed yet (upstreams with a feed).',
      labelNames: ['upstream'],
      registers,
      async collect() {
        this.reset();
        for (const upstream of await upstreamsRead) if (typeof upstream.feedLag === 'number') this.set({ upstream: upstream.name }, upstream.feedLag);
      },
    });
    const lagSeconds = new Gauge({ name: 'registry_replication_lag_seconds', help: 'Seconds the replication has been behind the upstream.', registers });
    const queue = new Gauge({ name: 'registry_replication_queue', help: 'Packages waiting for another attempt (feed), or changes pending (native replication).', registers });
  }

  /** Where each upstream's counts and feed lag are read at each scrape. */
  watchUpstreams(read: () => Promise<UpstreamGauges[]>): void {
    this.upstreams = read;
  }

  /** Where the state of each other site's replication is read at each scrape. */
  watchSites(read: () => Promise<{ peer: string; state: string }[]>): void {
    this.sites = read;
  }

  /** Counts an answered request; `route` when the caller knows it (else it is worked out from the path). */
  request(method: string, path: string, status: number, seconds: number, route = routeOf(method, path)): void {
    const verb = METHODS.has(method) ? method : 'OTHER';
    const key = route + ' ' + verb;
    this.requests.inc(key + ' ' + status, () => ({ route, method: verb, status: String(status) }));
    this.latency.observe(key, () => ({ route, method: verb }), seconds);
    if (status === 424) this.upstreamErrors.inc();
  }

  cache(cache: 'packument' | 'tarball', hit: boolean, bytes = 0): void {
    const result = hit ? 'hit' : 'miss';
    this.cacheRequests.inc(cache + ' ' + result, () => ({ cache, result }));
    if (hit && bytes > 0) this.cacheBytes.inc(cache, () => ({ cache }), bytes);
  }

  published(): void {
    this.publishes.inc();
  }

  login(ok: boolean): void {
    this.logins.inc({ result: ok ? 'success' : 'failure' });
  }

  /** A package's conflicting revisions merged into one, refusing `refused` publishes. */
  conflictResolved(refused: number): void {
    this.conflictsResolved.inc();
    if (refused > 0) this.publishesRefused.inc(refused);
  }

  /** A first read looked for a packument's copy on disk (served-copies.ts). */
  copy(outcome: 'used' | 'outdated' | 'damaged'): void {
    this.copies.inc({ outcome });
  }

  upstreamError(): void {
    this.upstreamErrors.inc();
  }

  couch(operation: string, seconds: number, ok: boolean): void {
    this.couchLatency.observe({ operation, outcome: ok ? 'ok' : 'error' }, seconds);
  }

  /** Where the replication's lag and queue are read from at each scrape. */
  watchReplication(read: () => Promise<ReplicationGauges | null>): void {
    this.replication = read;
  }

  async render(): Promise<string> {
    return (await this.registry.metrics()) + this.requests.render() + this.latency.render() + this.cacheRequests.render() + this.cacheBytes.render();
  }
}
