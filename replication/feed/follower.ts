/**
 * Follows an npm registry's change feed and mirrors what changed: each packument is fetched from the
 * upstream registry and stored as a mirrored package. The feed's contract is loose and the follower
 * is built for it:
 *
 * - sequence numbers are opaque: they are only handed back, never compared or computed with;
 * - the checkpoint (the last `since`, the packages waiting for a retry, counters) is saved after
 *   every batch, so a restart resumes where the last batch ended and an entry replayed after a crash
 *   is recognised by its revision and skipped;
 * - a packument older than the feed entry (compared by revision number) is retried later, with
 *   backoff, as is anything the upstream failed to answer;
 * - entries that arrive late, behind the checkpoint, are caught by reading the feed again from a
 *   checkpoint of `recheckSeconds` ago; packages whose entries never arrive are caught by a daily
 *   sweep of the mirrored packages (modes `existing` and `list`);
 * - deletions delete the mirrored copy; an unpublish arrives as a packument without versions;
 * - with several upstreams, each with a feed has a follower of its own (its own checkpoint), which
 *   takes only the names routed to its upstream: a name routed elsewhere (or private) is skipped,
 *   and a copy of another origin is never refreshed from this feed, only replaced when the name is
 *   routed here.
 *
 * The parts: `feed-client.ts` asks the feed, `checkpoint.ts` keeps the place, `planner.ts` decides;
 * this file schedules (batches, a pool of `concurrency` workers, bulk writes, retries).
 */
import { readFileSync } from 'fs';
import { Logger } from 'pino';
import { Config } from '../../config';
import { PackageDoc } from '../../core/types';
import { Couch } from '../../couchdb/client';
import { Pause } from '../../lib/pause';
import { exponential, repeat, retry } from '../../lib/retry';
import { Mirror } from '../mirror';
import { NOT_MODIFIED, UpstreamUnavailable } from '../upstream';
import { Checkpoint, CheckpointStore, newCheckpoint } from './checkpoint';
import { ChangeFeed, FeedBatch } from './feed-client';
import {
  afterFetch, dueRetries, entryNames, firstStep, MAX_ATTEMPTS, namesFromLockfile, postponed, recheckFrom, remembered,
  selectWork, syncProgress, seqNumber, Work,
} from './planner';

/**
 * Feed entries read at once. While a batch is applied, the next one is read (`ahead`): at most two
 * batches of entries (ids and revisions, about 200 bytes each) are held.
 */
const BATCH = 2000;
/**
 * Documents written to CouchDB in one `_bulk_docs`, at most (and at most `WRITE_BATCH_BYTES` of
 * JSON). Memory held: the packuments of the `concurrency` fetches under way, and the documents of the
 * bulk writes being gathered or under way (each worker waits for the write it filled).
 */
const WRITE_BATCH = 250;
const WRITE_BATCH_BYTES = 16 * 1024 * 1024;
/** The most feed entries one re-check for late entries reads again. */
const RECHECK_ENTRIES = 50_000;

export interface FollowerStatus {
  feed: string;
  mode: string;
  state: 'starting' | 'initial-sync' | 'following' | 'upstream-unreachable' | 'stopped';
  since: unknown;
  /** When the checkpoint (`since`) was last saved, or null before the first save. */
  checkpointedAt: string | null;
  head: unknown;
  lag: { changes: number | null; seconds: number };
  initialSync: { from: unknown; to: unknown; done: boolean; progress: number | null } | null;
  packagesWritten: number;
  deleted: number;
  pending: { name: string; attempts: number; reason: string }[];
  lastError: string | null;
}

/** The names of the `list` mode: names as given, package-lock.json files read for their whole tree. */
export function listedNames(items: string[]): string[] {
  const names = new Set<string>();
  for (const item of items) {
    if (item.endsWith('.json')) {
      let lock: Record<string, any>;
      try {
        lock = JSON.parse(readFileSync(item, 'utf8'));
      } catch (err) {
        throw new Error('REPLICATION_PACKAGES: cannot read the lockfile ' + item + ': ' + (err as Error).message, { cause: err });
      }
      for (const name of namesFromLockfile(lock)) names.add(name);
    } else {
      names.add(item);
    }
  }
  return [...names];
}

/** A write planned for one bulk request. */
interface PlannedWrite {
  item: Work;
  doc: PackageDoc;
  json: string;
}

export class NpmFollower {
  private checkpoint!: Checkpoint;
  private state: FollowerStatus['state'] = 'starting';
  private stopped = false;
  private done?: Promise<void>;
  private readonly sleeper = new Pause();
  private readonly abort = new AbortController();
  private readonly feed: ChangeFeed;
  private readonly checkpoints: CheckpointStore;
  private behindSince = Date.now();
  private caughtUp = false;
  /**
   * When a read of the feed last found nothing after the checkpoint. A head read before that is
   * reached, whatever its sequence says: CouchDB counts updates its feed never shows (a database's
   * `_security` written again moves every shard's sequence), so the head can stay ahead of the feed's
   * own last position for good.
   */
  private foundNothingAt = 0;
  private lastError: string | null = null;
  private head: { seq: unknown; at: number } | null = null;
  private lastRecheck = Date.now();
  /** The next batch of the feed, read while the one before it is applied: where it starts, and the answer. */
  private ahead: { since: unknown; batch: Promise<FeedBatch> } | null = null;

  constructor(
    private readonly couch: Couch,
    private readonly config: Config,
    private readonly mirror: Mirror,
    private readonly log: Logger,
  ) {
    const feed = (mirror.feed || config.replication.feed) as string;
    this.feed = new ChangeFeed(feed, Math.max(mirror.registry.timeoutMs, 30_000), this.abort.signal, config.outbound);
    this.checkpoints = new CheckpointStore(couch, { state: config.stateDb, tokens: config.tokensDb }, feed);
  }

  private get settings() {
    return this.config.replication;
  }

  /** The name of the upstream this follower mirrors. */
  get upstreamName(): string {
    return this.mirror.registry.name;
  }

  start(): void {
    this.done = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.sleeper.wake();
    await this.done;
    this.state = 'stopped';
  }

  /** Until `step` succeeds or the follower stops: waits of 1 s doubling up to 30 s between attempts. */
  private untilDone<T>(step: () => Promise<T>, onFailure: (err: unknown) => void): Promise<T> {
    return retry(step, { delay: exponential(1000, 30_000), stopped: () => this.stopped, pause: this.sleeper, onRetry: onFailure });
  }

  private async loadCheckpoint(): Promise<Checkpoint> {
    const saved = await this.checkpoints.load();
    if (saved) return saved;
    // A new mirror: `all` reads the whole feed; the partial modes start at the feed's present and
    // bring the packages they hold up to date with a sweep.
    const head = await this.untilDone(
      () => this.feed.position(),
      (err) => {
        this.state = 'upstream-unreachable';
        this.lastError = (err as Error).message + '; retrying';
      },
    ).catch(() => null);
    const since = this.settings.mode !== 'all' && head !== null ? head : 0;
    return newCheckpoint(this.checkpoints.id, this.feed.url, since, head, Date.now());
  }

  private async run(): Promise<void> {
    try {
      this.checkpoint = await this.untilDone(
        () => this.loadCheckpoint(),
        (err) => (this.lastError = 'cannot read the replication checkpoint: ' + (err as Error).message),
      );
    } catch {
      return; // stopped before the checkpoint could be read
    }
    if (this.settings.mode === 'list') await this.seedList();
    await repeat(() => this.cycle(), {
      delay: exponential(1000, 60_000),
      stopped: () => this.stopped,
      pause: this.sleeper,
      onRetry: (err) => {
        const message = (err as Error).message;
        this.lastError = message;
        if (err instanceof UpstreamUnavailable) this.state = 'upstream-unreachable';
        this.log.warn({ err: message }, 'replication: following the feed failed; retrying');
      },
    });
  }

  /** The `list` mode's names that are not here yet are fetched at once. */
  private async seedList(): Promise<void> {
    let names: string[];
    try {
      names = listedNames(this.settings.packages);
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.error({ err: this.lastError }, 'replication: the package list cannot be read');
      return;
    }
    names = names.filter((name) => this.mirror.mayPull(name));
    const present = await this.couch.liveRevs(this.config.mirrorDb, names);
    const local = await this.couch.liveRevs(this.config.registryDb, names);
    const missing = names.filter((n) => !present.has(n) && !local.has(n));
    for (const name of missing) this.checkpoint.pending[name] = { attempts: 0, next: 0, reason: 'listed in REPLICATION_PACKAGES' };
  }

  /** One pass: a batch of the feed, or, when caught up, the retries and the periodic re-checks. */
  private async cycle(): Promise<void> {
    const batch = await this.nextBatch(this.checkpoint.since);
    this.state = !this.checkpoint.initial || this.checkpoint.initial.done ? 'following' : 'initial-sync';
    // A full batch: the feed goes on, and its next batch is read while this one is applied.
    if (batch.results.length >= BATCH && batch.last_seq !== undefined && batch.last_seq !== null) this.readAhead(batch.last_seq);
    await this.apply(batch.results);
    // Stopped in the middle of the batch: the checkpoint stays before it, so it is read again.
    if (this.stopped) return;
    if (batch.last_seq !== undefined && batch.last_seq !== null) this.checkpoint.since = batch.last_seq;
    this.checkpoint.history = remembered(this.checkpoint.history, this.checkpoint.since, Date.now(), this.settings.recheckSeconds);
    const caughtUp = batch.results.length < BATCH;
    if (batch.results.length === 0) this.foundNothingAt = Date.now();
    if (caughtUp) {
      if (this.checkpoint.initial && !this.checkpoint.initial.done) this.checkpoint.initial.done = true;
      await this.runAll(this.dueNow());
      await this.recheckLate();
      await this.sweepIfDue();
    }
    await this.checkpoints.save(this.checkpoint);
    this.caughtUp = caughtUp;
    if (caughtUp) {
      this.behindSince = Date.now();
      this.state = 'following';
      this.lastError = null;
      await this.sleeper.for(this.settings.pollMs);
    }
  }

  /** The feed's batch after `since`: the one read ahead when it starts there, else read now. */
  private nextBatch(since: unknown): Promise<FeedBatch> {
    const ahead = this.ahead;
    this.ahead = null;
    if (ahead && JSON.stringify(ahead.since) === JSON.stringify(since)) return ahead.batch;
    return this.feed.changes(since, BATCH);
  }

  /** Starts reading the batch after `since` (used by the next cycle if it starts there; a failure is that cycle's). */
  private readAhead(since: unknown): void {
    const batch = this.feed.changes(since, BATCH);
    batch.catch(() => undefined);
    this.ahead = { since, batch };
  }

  /**
   * Applies feed entries: the packages they name, `concurrency` at a time. A name being pulled
   * through counts as present (it is about to be stored); its change is applied once it is stored,
   * since the packument being stored may be older than the change.
   */
  private async apply(all: unknown[]): Promise<void> {
    // Only the names routed to this follower's upstream (never a private scope).
    const entries = all.filter((entry) => {
      const id = entry && typeof entry === 'object' ? (entry as { id?: unknown }).id : undefined;
      if (typeof id !== 'string' || this.mirror.mayPull(id)) return true;
      // A private scope is refused, as _design/mirror would; a name routed elsewhere is another follower's.
      if (this.mirror.isPrivate(id)) this.mirror.refusePrivate(id);
      return false;
    });
    const names = entryNames(entries);
    // Asked before the databases: a pull-through that ends meanwhile is then found stored.
    const pulling = names.filter((name) => this.mirror.pullingThrough(name));
    // Both databases at once: no packument is fetched meanwhile.
    const [mirrored, local] = await Promise.all([this.couch.liveRevs(this.config.mirrorDb, names), this.couch.liveRevs(this.config.registryDb, names)]);
    const present = new Set(mirrored.keys());
    for (const name of pulling) present.add(name);
    const { work, shadowed } = selectWork(entries, { local, present }, this.settings.mode);
    for (const name of shadowed) this.mirror.shadowed(name);
    await this.runAll(work.filter((item) => !this.afterPullThrough(item)));
  }

  /**
   * Whether `item` names a package being pulled through: it then waits in `pending` (saved with the
   * checkpoint) and the follower is woken once the package is stored, to apply the change on top.
   */
  private afterPullThrough(item: Work): boolean {
    if (!this.mirror.pullingThrough(item.name)) return false;
    const previous = this.checkpoint.pending[item.name];
    this.checkpoint.pending[item.name] = { rev: item.rev, deleted: item.deleted, attempts: previous ? previous.attempts : 0, next: Date.now(), reason: 'being pulled through; the change is applied once it is stored' };
    void this.mirror.pulledThrough(item.name).then(() => this.sleeper.wake());
    return true;
  }

  /** The waiting packages due now; one still being pulled through waits on (see `afterPullThrough`). */
  private dueNow(): Work[] {
    return dueRetries(this.checkpoint.pending, Date.now()).filter((item) => !this.afterPullThrough(item));
  }

  private async pool<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < items.length && !this.stopped) await work(items[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(this.settings.concurrency, items.length) }, worker));
  }

  /**
   * Brings packages up to the upstream: each is looked at (and its packument fetched) by one of
   * `concurrency` workers; the documents to write go to CouchDB in bulk. What fails waits in `pending`.
   */
  private async runAll(items: Work[]): Promise<void> {
    let writes: PlannedWrite[] = [];
    let bytes = 0;
    const flush = async () => {
      const chunk = writes;
      writes = [];
      bytes = 0;
      if (chunk.length === 0) return;
      // With the vulnerability policy on, new versions are asked about before they are stored (one request for the chunk).
      const changes = await this.mirror.checkAdvisories(chunk.map((w) => w.doc), true);
      for (const w of chunk) if (changes.some((c) => c.doc === w.doc)) w.json = JSON.stringify(w.doc);
      const failed = await this.write(chunk);
      this.mirror.advisoriesWritten(changes.filter((c) => !failed.has(c.doc.name)));
    };
    await this.pool(items, async (item) => {
      let doc: PackageDoc | null;
      try {
        doc = await this.bringUpToDate(item);
      } catch (err) {
        this.mirror.recordFailure(item.name, (err as Error).message);
        this.postpone(item, (err as Error).message);
        return;
      }
      if (!doc) return;
      const json = JSON.stringify(doc);
      writes.push({ item, doc, json });
      bytes += json.length;
      if (writes.length >= WRITE_BATCH || bytes >= WRITE_BATCH_BYTES) await flush();
    });
    await flush();
  }

  /** Writes planned documents in one bulk request; what failed for now waits for another attempt. */
  private async write(chunk: PlannedWrite[]): Promise<Map<string, unknown>> {
    const failures = await this.mirror.storeMany(chunk.map((w) => w.json), chunk.map((w) => w.doc));
    for (const { item } of chunk) {
      const failure = failures.get(item.name);
      if (failure && !failure.refused) {
        this.postpone(item, failure.reason);
        continue;
      }
      delete this.checkpoint.pending[item.name];
      if (!failure) this.checkpoint.packagesWritten++;
    }
    if (this.config.upstreamTarballs === 'eager') {
      for (const { item, doc } of chunk) if (!failures.has(item.name)) await this.mirror.fetchAllTarballs(doc);
    }
    return failures;
  }

  private postpone(item: Work, reason: string): void {
    const next = postponed(this.checkpoint.pending[item.name], item, reason, Date.now());
    if (next) {
      this.checkpoint.pending[item.name] = next;
      return;
    }
    delete this.checkpoint.pending[item.name];
    this.mirror.recordFailure(item.name, 'gave up after ' + MAX_ATTEMPTS + ' attempts: ' + reason);
  }

  /**
   * Carries out the planner's steps for one package: deletes, or marks as done, or returns the
   * document to write (null when there is nothing to write). A retry is recorded in `pending`.
   */
  private async bringUpToDate(item: Work): Promise<PackageDoc | null> {
    // Known absent from the package database when its feed batch was read a moment ago (a package
    // published here since is still served first: the gateway reads the package database first).
    const local = item.local === false ? null : await this.mirror.readLocal(item.name);
    const existing = local || item.present === false ? null : await this.mirror.readMirrored(item.name);
    // A copy of another origin is not this upstream's: it is replaced, never taken as up to date.
    const first = firstStep(item, local, existing && existing.origin === this.mirror.upstream ? existing : null);
    if ('shadowed' in first) this.mirror.shadowed(item.name);
    if ('remove' in first) await this.remove(item.name);
    if (!('fetch' in first)) {
      delete this.checkpoint.pending[item.name];
      return null;
    }
    // A sweep (no feed entry, no revision to reach) asks with the copy's validators: a 304 is "up to
    // date". A feed entry asks in full: the packument may lag the entry, which only its `_rev` shows.
    const since = !item.rev && existing && existing.origin === this.mirror.upstream ? existing.origin_validators : undefined;
    const fetched = await retry(() => this.mirror.fetchPackument(item.name, since), {
      attempts: 3,
      delay: exponential(500, 2000),
      retryable: (err) => err instanceof UpstreamUnavailable,
      stopped: () => this.stopped,
    });
    if (fetched === NOT_MODIFIED) {
      delete this.checkpoint.pending[item.name];
      return null;
    }
    const next = afterFetch(item, existing, fetched ? fetched.body : null, this.mirror.upstream, fetched ? fetched.validators : undefined);
    if ('retry' in next) {
      this.postpone(item, next.retry);
      return null;
    }
    if ('write' in next) return next.write;
    if ('remove' in next) await this.remove(item.name);
    delete this.checkpoint.pending[item.name];
    return null;
  }

  private async remove(name: string): Promise<void> {
    if (await this.mirror.remove(name)) this.checkpoint.deleted++;
  }

  /** Every `recheckSeconds`, reads the feed again from where the follower was twice that long ago (see `recheckFrom`). */
  private async recheckLate(): Promise<void> {
    const windowMs = this.settings.recheckSeconds * 1000;
    if (windowMs === 0 || Date.now() - this.lastRecheck < windowMs) return;
    this.lastRecheck = Date.now();
    let since = recheckFrom(this.checkpoint.history, Date.now(), this.settings.recheckSeconds);
    if (since === null) return;
    for (let read = 0; read < RECHECK_ENTRIES && !this.stopped; read += BATCH) {
      const batch = await this.feed.changes(since, BATCH);
      await this.apply(batch.results);
      since = batch.last_seq;
      if (batch.results.length < BATCH) break;
    }
  }

  /** Modes `existing` and `list`: every mirrored package compared with the upstream (`sweepSeconds`, daily by default). */
  private async sweepIfDue(): Promise<void> {
    if (this.settings.mode === 'all' || Date.now() - this.checkpoint.lastSweep < this.settings.sweepSeconds * 1000) return;
    this.checkpoint.lastSweep = Date.now();
    const names = (await this.mirror.mirroredNames()).filter((name) => this.mirror.mayPull(name));
    await this.runAll(names.map((name) => ({ name, deleted: false, present: true })));
  }

  async status(): Promise<FollowerStatus> {
    if (!this.head || Date.now() - this.head.at > 2000) {
      // The status answers quickly even when the upstream hangs.
      const seq = await this.feed.head(Math.min(this.mirror.registry.timeoutMs, 3000));
      this.head = { seq, at: Date.now() };
    }
    const cp = this.checkpoint;
    const since = cp ? cp.since : null;
    const headN = seqNumber(this.head.seq);
    const sinceN = seqNumber(since);
    const initial = cp && cp.initial ? cp.initial : null;
    return {
      feed: this.feed.url,
      mode: this.settings.mode,
      state: this.state,
      since,
      checkpointedAt: cp && cp.savedAt ? new Date(cp.savedAt).toISOString() : null,
      head: this.head.seq,
      lag: {
        changes: headN !== null && sinceN !== null ? (this.caughtUp && this.foundNothingAt >= this.head.at ? 0 : Math.max(0, headN - sinceN)) : null,
        seconds: this.caughtUp ? 0 : Math.round((Date.now() - this.behindSince) / 1000),
      },
      initialSync: initial ? { ...initial, progress: syncProgress(initial, since, this.head.seq) } : null,
      packagesWritten: cp ? cp.packagesWritten : 0,
      deleted: cp ? cp.deleted : 0,
      pending: cp ? Object.entries(cp.pending).map(([name, p]) => ({ name, attempts: p.attempts, reason: p.reason })) : [],
      lastError: this.lastError,
    };
  }
}
