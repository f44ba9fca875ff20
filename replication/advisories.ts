/**
 * The upstream's security advisories for the vulnerability policy (`core/advisories.ts`): asked of
 * the upstream's bulk advisory endpoint (`POST <upstream>/-/npm/v1/security/advisories/bulk` with
 * `{"<name>": ["<version>", …]}`, answered `{"<name>": [{id, url, title, severity, vulnerable_versions, …}]}`,
 * the API `npm audit` uses) and kept on each mirrored document as `origin_advisories`, written as the
 * replication user, so that every gateway and every read sees them through the coherent caches.
 *
 * - `AdvisoryClient`: the requests, many packages in one (`ask`); the arrival check, which joins the
 *   checks asked in the same turn of the event loop into one request (`check`); an in-memory cache of a minute
 *   for `UPSTREAM_MODE=proxy` and `redirect`, which store nothing (`recordFor`); and the endpoint's
 *   state for `/-/health` and `/-/replication`: `ok`, `absent` (it answered 404, 405 or 501, as a
 *   registry without audit does) or `unreachable`.
 * - `AdvisoryChecker`: every `ADVISORIES_CHECK_SECONDS` one gateway (a lease in `<db>-state`,
 *   document `advisory-check`) asks again about every mirrored package, 100 packages a request, paged
 *   through the `advisoryChecks` view (each package's versions and the digest of the answer kept), and
 *   reads and writes only the documents whose answer changed; a pass starts at once when the policy
 *   is switched on.
 *
 * An endpoint that cannot answer leaves the versions it has not answered for unchecked: the policy's
 * `unchecked` decides whether they are held back (`hold`, the default) or served (`serve`).
 */
import { Logger } from 'pino';
import { Config } from '../config';
import { Advisory, advisoriesOf, advisoryRecord, AdvisoryPolicy, fromNpmRegistry, OriginAdvisories, recordCovers, sameRecord } from '../core/advisories';
import { PackageDoc } from '../core/types';
import { Couch, Database } from '../couchdb/client';
import { BackgroundLoop, exponential } from '../lib/retry';
import { UpstreamRegistry, upstreamObject } from './upstream';

/** Waits for the next turn of the event loop (other requests are answered meanwhile). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The path of npm's bulk advisory API on a registry. */
export const BULK_ADVISORIES_PATH = '/-/npm/v1/security/advisories/bulk';
/** Packages asked about in one request, and versions at most (npm audit asks for whole trees in one). */
export const PACKAGES_PER_REQUEST = 100;
const VERSIONS_PER_REQUEST = 20_000;
/** The most bytes of an answer accepted, decoded. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;
/** How long the proxy modes keep an answer. */
const PROXY_CACHE_MS = 60_000;
const PROXY_CACHE_ENTRIES = 1000;
/** The arrival check skips an endpoint found absent or unreachable this recently (the periodic check asks again). */
const ABSENT_SKIP_MS = 5 * 60_000;
const UNREACHABLE_SKIP_MS = 30_000;
/** How long the arrival check waits at most (a pull-through's client is waiting). */
const ARRIVAL_TIMEOUT_MS = 5000;

export type EndpointState = 'unknown' | 'ok' | 'absent' | 'unreachable';

export interface EndpointStatus {
  /** The URL asked. */
  endpoint: string;
  state: EndpointState;
  /** When it last answered (ISO), or null. */
  lastAnswer: string | null;
  /** When it last failed, and why. */
  lastFailure: string | null;
  lastError: string | null;
  requests: number;
}

/** The endpoint could not answer: `absent` (it has no such API) or unreachable (down, timed out, a 5xx, an answer that is not one). */
export class AdvisoryEndpointError extends Error {
  constructor(
    message: string,
    readonly absent: boolean,
    /** Not asked: the endpoint failed a moment ago (already logged). */
    readonly skipped = false,
  ) {
    super(message);
  }
}

interface Queued {
  name: string;
  versions: string[];
  resolve(advisories: Advisory[]): void;
  reject(err: unknown): void;
}

export class AdvisoryClient {
  readonly status: EndpointStatus;
  private failedAt = 0;
  private queue: Queued[] = [];
  private flushing = false;
  private readonly cache = new Map<string, { record: OriginAdvisories; at: number }>();

  constructor(
    private readonly registry: UpstreamRegistry,
    private readonly timeoutMs: number,
  ) {
    this.status = { endpoint: registry.url + BULK_ADVISORIES_PATH, state: 'unknown', lastAnswer: null, lastFailure: null, lastError: null, requests: 0 };
  }

  /** What the endpoint says of `query` (`{name: versions}`): each name's advisories (none when it names none). */
  async ask(query: Record<string, string[]>): Promise<Record<string, Advisory[]>> {
    this.status.requests++;
    let answer: { status: number; text: string };
    try {
      answer = await this.registry.post(BULK_ADVISORIES_PATH, query, MAX_ANSWER_BYTES);
    } catch (err) {
      throw this.failed(new AdvisoryEndpointError(this.registry.unavailable(err).message, false));
    }
    if (answer.status === 404 || answer.status === 405 || answer.status === 501) {
      throw this.failed(new AdvisoryEndpointError('the upstream registry ' + this.registry.url + ' has no bulk advisory endpoint (it answered ' + answer.status + ' to ' + BULK_ADVISORIES_PATH + ')', true));
    }
    if (answer.status !== 200) throw this.failed(new AdvisoryEndpointError('the upstream\'s advisory endpoint ' + this.status.endpoint + ' answered ' + answer.status, false));
    const body = upstreamObject(answer.text);
    if (!body) throw this.failed(new AdvisoryEndpointError('the upstream\'s advisory endpoint ' + this.status.endpoint + ' sent something that is not an answer of the bulk advisory API (a JSON object by package name)', false));
    this.status.state = 'ok';
    this.status.lastAnswer = new Date().toISOString();
    const result: Record<string, Advisory[]> = {};
    for (const name of Object.keys(query)) result[name] = Object.prototype.hasOwnProperty.call(body, name) ? advisoriesOf(body[name]) : [];
    return result;
  }

  private failed(err: AdvisoryEndpointError): AdvisoryEndpointError {
    this.status.state = err.absent ? 'absent' : 'unreachable';
    this.failedAt = Date.now();
    this.status.lastFailure = new Date(this.failedAt).toISOString();
    this.status.lastError = err.message;
    return err;
  }

  /** Whether an arrival check should not wait for an endpoint that just failed (the periodic check asks again). */
  recentlyFailed(): boolean {
    const age = Date.now() - this.failedAt;
    return (this.status.state === 'absent' && age < ABSENT_SKIP_MS) || (this.status.state === 'unreachable' && age < UNREACHABLE_SKIP_MS);
  }

  /** The records of many packages (each with the versions to ask about), `PACKAGES_PER_REQUEST` a request. */
  async records(packages: { name: string; versions: string[] }[]): Promise<Map<string, OriginAdvisories>> {
    const records = new Map<string, OriginAdvisories>();
    let batch: { name: string; versions: string[] }[] = [];
    let versions = 0;
    const send = async () => {
      if (batch.length === 0) return;
      const query: Record<string, string[]> = {};
      for (const p of batch) query[p.name] = p.versions;
      const answer = await this.ask(query);
      const now = new Date().toISOString();
      for (const p of batch) {
        // One record a turn of the event loop: each can take a few hundred ms of a hostile endpoint's answer.
        await nextTurn();
        records.set(p.name, advisoryRecord(p.versions, answer[p.name] || [], now));
      }
      batch = [];
      versions = 0;
    };
    for (const p of packages) {
      if (batch.length >= PACKAGES_PER_REQUEST || (batch.length > 0 && versions + p.versions.length > VERSIONS_PER_REQUEST)) await send();
      batch.push(p);
      versions += p.versions.length;
    }
    await send();
    return records;
  }

  /**
   * The arrival check of one package: joined with the others asked in the same turn of the event
   * loop (packuments that arrived together) into one request. Rejects at once while
   * the endpoint was found absent or unreachable a moment ago, and after `ARRIVAL_TIMEOUT_MS`.
   */
  check(name: string, versions: string[]): Promise<OriginAdvisories> {
    if (this.recentlyFailed()) return Promise.reject(new AdvisoryEndpointError(this.status.lastError || 'the advisory endpoint failed a moment ago', this.status.state === 'absent', true));
    const asked = new Promise<Advisory[]>((resolve, reject) => {
      this.queue.push({ name, versions, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        // The checks of the same turn of the event loop (packuments that arrived together) go in one request.
        setImmediate(() => void this.flush());
      }
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new AdvisoryEndpointError('the upstream\'s advisory endpoint did not answer within ' + Math.min(ARRIVAL_TIMEOUT_MS, this.timeoutMs) + ' ms', false)), Math.min(ARRIVAL_TIMEOUT_MS, this.timeoutMs));
    });
    return Promise.race([asked, timeout])
      .then((advisories) => advisoryRecord(versions, advisories, new Date().toISOString()))
      .finally(() => clearTimeout(timer));
  }

  private async flush(): Promise<void> {
    const queued = this.queue;
    this.queue = [];
    this.flushing = false;
    for (let i = 0; i < queued.length; i += PACKAGES_PER_REQUEST) {
      const chunk = queued.slice(i, i + PACKAGES_PER_REQUEST);
      const query: Record<string, string[]> = {};
      for (const q of chunk) query[q.name] = Array.from(new Set([...(query[q.name] || []), ...q.versions]));
      try {
        const answer = await this.ask(query);
        for (const q of chunk) {
          q.resolve(answer[q.name] || []);
          // Its record is made before the next turn: one a turn (each can take a few hundred ms).
          await nextTurn();
        }
      } catch (err) {
        for (const q of chunk) q.reject(err);
      }
    }
  }

  /**
   * For the proxy modes, which keep no document: the record of `name`'s `versions`, from a cache of a
   * minute; undefined when the endpoint cannot answer (the versions are then unchecked).
   */
  async recordFor(name: string, versions: string[]): Promise<OriginAdvisories | undefined> {
    const cached = this.cache.get(name);
    if (cached && Date.now() - cached.at < PROXY_CACHE_MS && recordCovers({ versions: Object.fromEntries(versions.map((v) => [v, {}])), origin_advisories: cached.record } as unknown as PackageDoc)) {
      return cached.record;
    }
    try {
      const record = await this.check(name, versions);
      this.cache.delete(name);
      this.cache.set(name, { record, at: Date.now() });
      if (this.cache.size > PROXY_CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value as string);
      return record;
    } catch {
      return undefined;
    }
  }
}

/** A mirrored document whose advisory record changed: the record before (none for a new one) and the document with the new one. */
export interface RecordChange {
  before: OriginAdvisories | undefined;
  doc: PackageDoc;
}

/**
 * The arrival check: each document of `docs` whose versions were not all asked about gets a new record
 * (in place), when the policy is on. What changed is returned; an endpoint that cannot answer leaves
 * the documents as they were (logged).
 */
export async function checkOnArrival(client: AdvisoryClient, docs: PackageDoc[], log: Logger): Promise<RecordChange[]> {
  const due = docs.filter((doc) => fromNpmRegistry(doc) && !recordCovers(doc));
  if (due.length === 0) return [];
  const changes: RecordChange[] = [];
  try {
    if (client.recentlyFailed()) throw new AdvisoryEndpointError(client.status.lastError || 'the advisory endpoint failed a moment ago', client.status.state === 'absent', true);
    const records = due.length === 1
      ? new Map([[due[0].name, await client.check(due[0].name, Object.keys(due[0].versions || {}))]])
      : await client.records(due.map((doc) => ({ name: doc.name, versions: Object.keys(doc.versions || {}) })));
    for (const doc of due) {
      const record = records.get(doc.name);
      const before = doc.origin_advisories as OriginAdvisories | undefined;
      if (!record || sameRecord(before, record)) continue;
      doc.origin_advisories = record;
      changes.push({ before, doc });
    }
  } catch (err) {
    const skipped = err instanceof AdvisoryEndpointError && err.skipped;
    log[skipped ? 'debug' : 'warn']({ packages: due.length, err: (err as Error).message }, 'advisories: the upstream\'s advisory endpoint could not be asked about new versions; they stay unchecked until it answers');
  }
  return changes;
}

/** The shared bookkeeping of the periodic check, in `<db>-state`. */
export const CHECK_ID = 'advisory-check';

interface CheckDoc {
  _id: string;
  _rev?: string;
  type: 'advisory-check';
  /** When the last pass started (ISO). */
  lastPass?: string;
  /** What it found: `ok`, or why it failed. */
  outcome?: string;
  packages?: number;
  written?: number;
  /** Epoch ms until which a gateway is running a pass. */
  leaseUntil?: number;
}

/** What the periodic check needs of the registry. */
export interface AdvisoryCheckHost {
  couch: Couch;
  config: Config;
  log: Logger;
  client: AdvisoryClient;
  /** The vulnerability policy in force (the check runs only while it is on). */
  policy(): AdvisoryPolicy | undefined;
  /** The upstream whose mirrored packages are checked (their `origin`). */
  origin: string;
  /** With several upstreams, which one's check this is (its record in `<db>-state` is `advisory-check:<checkId>`). */
  checkId?: string;
  /** Writes documents (JSON) as the replication user; the names not written. */
  storeMany(docs: string[]): Promise<Map<string, unknown>>;
  /** Told of each record written. */
  changed(changes: RecordChange[]): void;
}

const LEASE_MS = 10 * 60_000;
/** Documents read and written at once by the periodic check. */
const WRITE_CHUNK = 10;
const TICK_MS = 2000;
/** After a failed pass, the next one comes this soon. */
const RETRY_MS = 60_000;

export class AdvisoryChecker {
  private readonly state: Database<CheckDoc>;
  private readonly loop: BackgroundLoop;
  /** Whether this gateway saw the policy off (a pass is due as soon as it sees it on). */
  private seenOff = false;
  /** When this gateway saw the policy switched on (0: it was on when it started, or is off). */
  private switchedOnAt = 0;
  /** The last pass known (any gateway's), as read from the shared document. */
  private lastPassSeen = 0;
  private lastOutcome = '';
  /** The shared document as this gateway leased it, while it runs a pass. */
  private lease?: CheckDoc & { _rev: string };

  constructor(private readonly host: AdvisoryCheckHost) {
    this.state = host.couch.db<CheckDoc>(host.config.stateDb);
    this.loop = new BackgroundLoop(
      async (healthy) => {
        while (!this.loop.stopped) {
          await this.tick();
          healthy();
          await this.loop.pause.for(TICK_MS);
        }
      },
      { delay: exponential(TICK_MS, 60_000), onRetry: (err) => host.log.warn({ err: (err as Error).message }, 'advisories: the periodic check failed; retrying') },
    );
  }

  /** The id of this check's record in `<db>-state`. */
  private get checkId(): string {
    return this.host.checkId ? CHECK_ID + ':' + this.host.checkId : CHECK_ID;
  }

  private get intervalMs(): number {
    return this.host.config.advisoriesCheckSeconds * 1000;
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Starts a pass now if one is due (the policy was just switched on, or the interval passed). */
  wake(): void {
    this.loop.wake();
  }

  /** The last pass, for `/-/replication`. */
  async lastPass(): Promise<{ at: string | null; outcome: string | null; packages: number | null; written: number | null; intervalSeconds: number }> {
    const doc = await this.state.get(this.checkId).catch(() => null);
    return { at: doc?.lastPass || null, outcome: doc?.outcome || null, packages: doc?.packages ?? null, written: doc?.written ?? null, intervalSeconds: this.host.config.advisoriesCheckSeconds };
  }

  private async tick(): Promise<void> {
    const policy = this.host.policy();
    if (!policy) {
      this.seenOff = true;
      this.switchedOnAt = 0;
      return;
    }
    if (this.seenOff) {
      this.seenOff = false;
      this.switchedOnAt = Date.now();
    }
    const wait = this.lastOutcome && this.lastOutcome !== 'ok' ? Math.min(RETRY_MS, this.intervalMs) : this.intervalMs;
    // Due: no pass since the policy was switched on, or the last one is older than the interval (sooner after a failure).
    if (this.lastPassSeen >= this.switchedOnAt - TICK_MS && Date.now() - this.lastPassSeen < wait) return;
    const doc: CheckDoc = (await this.state.get(this.checkId)) || { _id: this.checkId, type: 'advisory-check' };
    const last = doc.lastPass ? Date.parse(doc.lastPass) : 0;
    this.lastPassSeen = last;
    this.lastOutcome = doc.outcome || '';
    const waitShared = doc.outcome && doc.outcome !== 'ok' ? Math.min(RETRY_MS, this.intervalMs) : this.intervalMs;
    if (last >= this.switchedOnAt - TICK_MS && Date.now() - last < waitShared) return;
    if (doc.leaseUntil && doc.leaseUntil > Date.now()) return; // another gateway is at it
    const started = new Date();
    try {
      const lease = { ...doc, leaseUntil: Date.now() + LEASE_MS };
      this.lease = { ...lease, _rev: (await this.state.put(lease)).rev };
    } catch {
      return; // another gateway took it
    }
    let outcome = 'ok';
    let packages = 0;
    let written = 0;
    try {
      ({ packages, written } = await this.pass());
    } catch (err) {
      outcome = (err as Error).message;
      this.host.log.warn({ err: outcome }, 'advisories: a periodic check of the mirrored packages failed; the next one comes within a minute');
    }
    this.lastPassSeen = started.getTime();
    this.lastOutcome = outcome;
    const leased = this.lease;
    this.lease = undefined;
    await this.state.put({ ...leased, lastPass: started.toISOString(), outcome, packages, written, leaseUntil: 0 }).catch((err) => {
      this.host.log.warn({ err: (err as Error).message }, 'advisories: the outcome of a periodic check could not be recorded');
    });
  }

  /**
   * One pass over every package mirrored from the upstream, `PACKAGES_PER_REQUEST` at a time from the
   * `advisoryChecks` view (their versions and the digest of the answer kept, without reading the
   * documents): the endpoint is asked about each page, and only the documents whose answer changed
   * are read and written.
   */
  async pass(): Promise<{ packages: number; written: number }> {
    const mirror = this.host.couch.db<PackageDoc>(this.host.config.mirrorDb);
    const origin = this.host.origin;
    let written = 0;
    let packages = 0;
    let startkey: unknown = [origin, ''];
    let skip = 0;
    while (!this.loop.stopped) {
      const rows = (await mirror.view<[string[], string | null]>('advisoryChecks', { startkey, endkey: [origin, {}], limit: PACKAGES_PER_REQUEST, skip })).rows;
      if (rows.length === 0) break;
      packages += rows.length;
      const asked = rows.map((row) => ({ name: (row.key as unknown as [string, string])[1], versions: row.value[0], digest: row.value[1] }));
      const records = await this.host.client.records(asked.map(({ name, versions }) => ({ name, versions })));
      const changed = asked.filter((p) => records.has(p.name) && (records.get(p.name) as OriginAdvisories).digest !== p.digest);
      // A few documents at a time: packuments can be megabytes each.
      for (let i = 0; i < changed.length; i += WRITE_CHUNK) {
        written += await this.write(mirror, changed.slice(i, i + WRITE_CHUNK).map((p) => ({ name: p.name, versions: p.versions, record: records.get(p.name) as OriginAdvisories })));
      }
      if (rows.length < PACKAGES_PER_REQUEST) break;
      startkey = rows[rows.length - 1].key;
      skip = 1;
      await this.renewLease();
    }
    return { packages, written };
  }

  /** A long pass keeps its lease (half of it gone: renewed), so that no other gateway starts one alongside. */
  private async renewLease(): Promise<void> {
    const lease = this.lease;
    if (!lease || (lease.leaseUntil || 0) - Date.now() > LEASE_MS / 2) return;
    const renewed = { ...lease, leaseUntil: Date.now() + LEASE_MS };
    this.lease = { ...renewed, _rev: (await this.state.put(renewed)).rev };
  }

  /**
   * Writes new records onto their documents, read now; a document whose versions changed since the
   * view was read is left for the next pass (or its arrival check), as is one changed meanwhile (409).
   */
  private async write(mirror: Database<PackageDoc>, found: { name: string; versions: string[]; record: OriginAdvisories }[]): Promise<number> {
    const docs = await mirror.getMany(found.map((f) => f.name));
    const changes: RecordChange[] = [];
    for (const { name, versions, record } of found) {
      const doc = docs.get(name);
      if (!doc || doc._deleted || !doc.versions) continue;
      const now = Object.keys(doc.versions);
      if (now.length !== versions.length || now.some((v) => versions.indexOf(v) === -1)) continue;
      const before = doc.origin_advisories as OriginAdvisories | undefined;
      if (sameRecord(before, record)) continue;
      changes.push({ before, doc: { ...doc, origin_advisories: record } });
    }
    if (changes.length === 0) return 0;
    const failed = await this.host.storeMany(changes.map((c) => JSON.stringify(c.doc)));
    const stored = changes.filter((c) => !failed.has(c.doc.name));
    this.host.changed(stored);
    return stored.length;
  }
}
