/**
 * Follows an npm registry's change feed (`<feed>/_changes?since=<seq>&limit=<n>`, no documents) and
 * mirrors what changed: each packument is fetched from the upstream registry and stored as a
 * mirrored package. The feed's contract is loose and the follower is built for it:
 *
 * - sequence numbers are opaque: they are only handed back, never compared or computed with;
 * - the checkpoint (the last `since`, the packages waiting for a retry, counters) is a document in
 *   CouchDB, saved after every batch, so a restart resumes where the last batch ended and an entry
 *   replayed after a crash is recognised by its revision and skipped;
 * - a packument older than the feed entry (compared by revision number) is retried later, with
 *   backoff, as is anything the upstream failed to answer;
 * - entries that arrive late, behind the checkpoint, are caught by reading the feed again from a
 *   checkpoint of `recheckSeconds` ago; packages whose entries never arrive are caught by a daily
 *   sweep of the mirrored packages (modes `existing` and `list`);
 * - deletions delete the mirrored copy; an unpublish arrives as a packument without versions.
 */
import { readFileSync } from 'fs';
import { Logger } from 'pino';
import Nano from 'nano';
import { PackageDoc } from '../couchapp/lib/types';
import { couchFailure } from '../gateway/couch';
import { Context } from '../gateway/context';
import { Pause, sleep } from '../gateway/pause';
import { fetchFailure } from '../gateway/upstream';
import { Mirror, mirroredDoc, revGeneration, UpstreamUnavailable } from './mirror';

const BATCH = 500;
/** Documents written to CouchDB in one `_bulk_docs`, at most. */
const WRITE_BATCH = 100;
const WRITE_BATCH_BYTES = 16 * 1024 * 1024;
const MAX_ATTEMPTS = 8;

interface FeedEntry {
  seq: unknown;
  id: string;
  changes?: { rev: string }[];
  deleted?: boolean;
}

/** A package to bring up to date: the feed's revision, whether it was deleted, whether it is here (when known). */
interface Work {
  name: string;
  rev?: string;
  deleted: boolean;
  present?: boolean;
}

type Outcome = { done: true } | { retry: string } | { write: PackageDoc };

interface Pending {
  rev?: string;
  deleted?: boolean;
  attempts: number;
  /** Epoch ms of the next attempt. */
  next: number;
  reason: string;
}

interface Checkpoint {
  _id: string;
  _rev?: string;
  feed: string;
  since: unknown;
  /** Where the current initial sync started and where the feed was then (for progress). */
  initial?: { from: unknown; to: unknown; done: boolean };
  /** Recent `since` values with the time they were reached, for reading late entries again. */
  history: { seq: unknown; at: number }[];
  pending: Record<string, Pending>;
  lastSweep: number;
  packagesWritten: number;
  deleted: number;
}

export interface FollowerStatus {
  feed: string;
  mode: string;
  state: 'starting' | 'initial-sync' | 'following' | 'upstream-unreachable' | 'stopped';
  since: unknown;
  head: unknown;
  lag: { changes: number | null; seconds: number };
  initialSync: { from: unknown; to: unknown; done: boolean; progress: number | null } | null;
  packagesWritten: number;
  deleted: number;
  pending: { name: string; attempts: number; reason: string }[];
  lastError: string | null;
}

/** The leading number of a sequence (`123`, `"123-g1AAAA"`), or null when it has none. */
export function seqNumber(seq: unknown): number | null {
  const match = /^(\d+)/.exec(String(seq));
  return match ? Number(match[1]) : null;
}

/** Package names from a package-lock.json (lockfile v1, v2 or v3): the whole dependency tree. */
export function namesFromLockfile(lock: Record<string, any>): string[] {
  const names = new Set<string>();
  for (const [path, entry] of Object.entries<any>(lock.packages || {})) {
    if (!path || (entry && entry.link)) continue;
    const at = path.lastIndexOf('node_modules/');
    if (at !== -1) names.add((entry && entry.name) || path.slice(at + 'node_modules/'.length));
  }
  const walk = (deps: Record<string, any> | undefined) => {
    for (const [name, entry] of Object.entries<any>(deps || {})) {
      names.add(name);
      walk(entry && entry.dependencies);
    }
  };
  walk(lock.dependencies);
  return [...names];
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
        throw new Error('REPLICATION_PACKAGES: cannot read the lockfile ' + item + ': ' + (err as Error).message);
      }
      for (const name of namesFromLockfile(lock)) names.add(name);
    } else {
      names.add(item);
    }
  }
  return [...names];
}


export class NpmFollower {
  private checkpoint!: Checkpoint;
  private state: FollowerStatus['state'] = 'starting';
  private stopped = false;
  private done?: Promise<void>;
  private readonly sleeper = new Pause();
  /** Ends a feed request in flight when the follower stops. */
  private readonly abort = new AbortController();
  private behindSince = Date.now();
  private caughtUp = false;
  private lastError: string | null = null;
  private head: { seq: unknown; at: number } | null = null;
  private lastRecheck = Date.now();
  private readonly store: Nano.DocumentScope<Checkpoint>;

  constructor(
    private readonly ctx: Context,
    private readonly mirror: Mirror,
    private readonly log: Logger,
  ) {
    this.store = ctx.couch.use<Checkpoint>(ctx.config.registryDb + '-tokens');
  }

  private get feed(): string {
    return this.ctx.config.replication.feed as string;
  }

  private get settings() {
    return this.ctx.config.replication;
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

  private async feedGet(path: string, timeoutMs = Math.max(this.ctx.config.upstreamTimeoutMs, 30_000)): Promise<any> {
    let response: Response;
    try {
      // The opt-in header selected the public registry's new feed during its 2025 migration; other
      // feeds ignore it.
      response = await fetch(this.feed + path, { headers: { accept: 'application/json', 'npm-replication-opt-in': 'true' }, signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]) });
    } catch (err) {
      throw new UpstreamUnavailable('the change feed ' + this.feed + ' ' + fetchFailure(err).words);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new UpstreamUnavailable('the change feed ' + this.feed + ' answered ' + response.status + ' for ' + path.split('?')[0], response.status);
    }
    return response.json();
  }

  /** The feed's current position, from its root (`{update_seq}`), or null when it does not say. */
  private async feedHead(timeoutMs?: number): Promise<unknown> {
    try {
      const info = await this.feedGet('/', timeoutMs);
      return info && info.update_seq !== undefined ? info.update_seq : null;
    } catch {
      return null;
    }
  }

  /**
   * Where the feed is now: its root's `update_seq`, else the `last_seq` of `since=now`, else null
   * (the partial modes then read the feed from its start). Throws while the feed cannot be reached.
   */
  private async feedPosition(): Promise<unknown> {
    const root = await this.feedGet('/').catch((err) => {
      if (err instanceof UpstreamUnavailable && err.status) return null; // no root: try the next way
      throw err;
    });
    if (root && root.update_seq !== undefined && root.update_seq !== null) return root.update_seq;
    const now = await this.feedGet('/_changes?since=now&limit=1').catch(() => null);
    return now && now.last_seq !== undefined && now.last_seq !== null ? now.last_seq : null;
  }

  private async loadCheckpoint(): Promise<void> {
    const id = 'replication-feed:' + this.feed;
    try {
      this.checkpoint = await this.store.get(id);
      return;
    } catch (err) {
      if (couchFailure(err).statusCode !== 404) throw err;
    }
    // A new mirror: `all` reads the whole feed; the partial modes start at the feed's present and
    // bring the packages they hold up to date with a sweep.
    let since: unknown = 0;
    let head: unknown = null;
    for (let delay = 1000; !this.stopped; delay = Math.min(delay * 2, 30_000)) {
      try {
        head = await this.feedPosition();
        break;
      } catch (err) {
        this.state = 'upstream-unreachable';
        this.lastError = (err as Error).message + '; retrying';
        await this.sleeper.for(delay);
      }
    }
    if (this.settings.mode !== 'all' && head !== null) since = head;
    this.checkpoint = {
      _id: id,
      feed: this.feed,
      since,
      initial: { from: since, to: head, done: false },
      history: [{ seq: since, at: Date.now() }],
      pending: {},
      lastSweep: 0,
      packagesWritten: 0,
      deleted: 0,
    };
  }

  private async saveCheckpoint(): Promise<void> {
    const result = await this.store.insert(this.checkpoint);
    this.checkpoint._rev = result.rev;
  }

  private async run(): Promise<void> {
    for (let delay = 1000; !this.stopped; delay = Math.min(delay * 2, 30_000)) {
      try {
        await this.loadCheckpoint();
        break;
      } catch (err) {
        this.lastError = 'cannot read the replication checkpoint: ' + (err as Error).message;
        await this.sleeper.for(delay);
      }
    }
    if (this.settings.mode === 'list') await this.seedList();
    let delay = 1000;
    while (!this.stopped) {
      try {
        await this.cycle();
        delay = 1000;
      } catch (err) {
        if (this.stopped) return;
        const message = (err as Error).message;
        this.lastError = message;
        if (err instanceof UpstreamUnavailable) this.state = 'upstream-unreachable';
        this.log.warn({ err: message }, 'replication: following the feed failed; retrying');
        await this.sleeper.for(delay);
        delay = Math.min(delay * 2, 60_000);
      }
    }
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
    const present = await this.ctx.couch.liveRevs(this.ctx.config.mirrorDb, names);
    const local = await this.ctx.couch.liveRevs(this.ctx.config.registryDb, names);
    const missing = names.filter((n) => !present.has(n) && !local.has(n));
    for (const name of missing) this.checkpoint.pending[name] = { attempts: 0, next: 0, reason: 'listed in REPLICATION_PACKAGES' };
  }

  /** One pass: a batch of the feed, or, when caught up, the retries and the periodic re-checks. */
  private async cycle(): Promise<void> {
    const batch = await this.feedGet('/_changes?since=' + encodeURIComponent(String(this.checkpoint.since)) + '&limit=' + BATCH);
    const results: FeedEntry[] = Array.isArray(batch.results) ? batch.results : [];
    if (!this.checkpoint.initial || this.checkpoint.initial.done) this.state = 'following';
    else this.state = 'initial-sync';
    await this.apply(results);
    // Stopped in the middle of the batch: the checkpoint stays before it, so it is read again.
    if (this.stopped) return;
    if (batch.last_seq !== undefined && batch.last_seq !== null) this.checkpoint.since = batch.last_seq;
    this.remember(this.checkpoint.since);
    const caughtUp = results.length < BATCH;
    if (caughtUp) {
      if (this.checkpoint.initial && !this.checkpoint.initial.done) this.checkpoint.initial.done = true;
      await this.retryPending();
      await this.recheckLate();
      await this.sweepIfDue();
    }
    await this.saveCheckpoint();
    this.caughtUp = caughtUp;
    if (caughtUp) {
      this.behindSince = Date.now();
      this.state = 'following';
      this.lastError = null;
      await this.sleeper.for(this.settings.pollMs);
    }
  }

  /** Applies feed entries (the last entry of each package wins), `concurrency` packages at a time. */
  private async apply(entries: FeedEntry[]): Promise<void> {
    const latest = new Map<string, FeedEntry>();
    for (const entry of entries) {
      if (!entry || typeof entry.id !== 'string' || entry.id.startsWith('_')) continue;
      latest.set(entry.id, entry);
    }
    const names = [...latest.keys()];
    const present = await this.ctx.couch.liveRevs(this.ctx.config.mirrorDb, names);
    const local = await this.ctx.couch.liveRevs(this.ctx.config.registryDb, names);
    const work: Work[] = [];
    for (const [name, entry] of latest) {
      if (local.has(name)) {
        // Published here: the upstream's package of that name is never mirrored.
        this.mirror.shadowed(name);
        continue;
      }
      if (this.settings.mode !== 'all' && !present.has(name)) continue;
      work.push({ name, rev: entry.changes && entry.changes[0] ? entry.changes[0].rev : undefined, deleted: !!entry.deleted, present: present.has(name) });
    }
    await this.runAll(work);
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
    let writes: { item: Work; doc: PackageDoc; json: string }[] = [];
    let bytes = 0;
    const flush = async () => {
      const chunk = writes;
      writes = [];
      bytes = 0;
      if (chunk.length === 0) return;
      const results = await this.mirror.storeMany(chunk.map((w) => w.json));
      for (const { item } of chunk) {
        const failure = results.get(item.name);
        if (failure === undefined || failure === 'refused') {
          delete this.checkpoint.pending[item.name];
          if (failure === undefined) this.checkpoint.packagesWritten++;
        } else {
          this.postpone(item, failure);
        }
      }
      if (this.ctx.config.upstreamTarballs === 'eager') {
        for (const { item, doc } of chunk) if (results.get(item.name) === undefined) await this.mirror.fetchAllTarballs(doc);
      }
    };
    await this.pool(items, async (item) => {
      let outcome: Outcome;
      try {
        outcome = await this.plan(item);
      } catch (err) {
        this.mirror.recordFailure(item.name, (err as Error).message);
        this.postpone(item, (err as Error).message);
        return;
      }
      if ('retry' in outcome) this.postpone(item, outcome.retry);
      else if ('write' in outcome) {
        const json = JSON.stringify(outcome.write);
        writes.push({ item, doc: outcome.write, json });
        bytes += json.length;
        if (writes.length >= WRITE_BATCH || bytes >= WRITE_BATCH_BYTES) await flush();
      } else delete this.checkpoint.pending[item.name];
    });
    await flush();
  }

  private postpone(item: Work, reason: string): void {
    const previous = this.checkpoint.pending[item.name];
    const attempts = (previous ? previous.attempts : 0) + 1;
    if (attempts > MAX_ATTEMPTS) {
      delete this.checkpoint.pending[item.name];
      this.mirror.recordFailure(item.name, 'gave up after ' + MAX_ATTEMPTS + ' attempts: ' + reason);
      return;
    }
    const backoff = Math.min(1000 * 2 ** attempts, 10 * 60_000);
    this.checkpoint.pending[item.name] = { rev: item.rev, deleted: item.deleted, attempts, next: Date.now() + backoff, reason };
  }

  /** What to do about one package: nothing, try again later (and why), or write this document. */
  private async plan(item: Work): Promise<Outcome> {
    const { name, rev, deleted } = item;
    if (await this.mirror.readLocal(name)) {
      this.mirror.shadowed(name);
      return { done: true };
    }
    const existing = item.present === false ? null : await this.mirror.readMirrored(name);
    if (deleted) {
      if (existing && (await this.mirror.remove(name))) this.checkpoint.deleted++;
      return { done: true };
    }
    if (existing && rev && existing.origin_rev === rev) return { done: true };
    const packument = await this.fetchWithRetries(name);
    if (!packument) {
      // Gone upstream (deleted or unpublished without a tombstone), or not readable yet.
      if (existing) {
        if (await this.mirror.remove(name)) this.checkpoint.deleted++;
        return { done: true };
      }
      return { retry: 'the upstream has no packument for "' + name + '" yet' };
    }
    if (rev && revGeneration(packument._rev) < revGeneration(rev)) {
      return { retry: 'the upstream packument of "' + name + '" (' + String(packument._rev) + ') is behind its feed entry (' + rev + ')' };
    }
    if (existing && existing.origin_rev && existing.origin_rev === packument._rev) return { done: true };
    return { write: mirroredDoc(name, packument, this.mirror.upstream, existing) };
  }

  private async fetchWithRetries(name: string) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.mirror.fetchPackument(name);
      } catch (err) {
        if (!(err instanceof UpstreamUnavailable) || attempt >= 3 || this.stopped) throw err;
        await sleep(500 * 2 ** (attempt - 1));
      }
    }
  }

  private async retryPending(): Promise<void> {
    const now = Date.now();
    const due = Object.keys(this.checkpoint.pending).filter((name) => this.checkpoint.pending[name].next <= now);
    await this.runAll(due.map((name) => ({ name, rev: this.checkpoint.pending[name].rev, deleted: !!this.checkpoint.pending[name].deleted })));
  }

  /** Records when the follower first reached `seq`; kept for 3 re-check windows. */
  private remember(seq: unknown): void {
    const history = this.checkpoint.history;
    const last = history[history.length - 1];
    if (!last || JSON.stringify(last.seq) !== JSON.stringify(seq)) history.push({ seq, at: Date.now() });
    const keepFrom = Date.now() - 3 * this.settings.recheckSeconds * 1000;
    // Entries older than that go, except the newest of them (the position at the window's start).
    while (history.length > 1 && history[1].at <= keepFrom) history.shift();
    if (history.length > 1000) history.splice(0, history.length - 1000);
  }

  /**
   * Every `recheckSeconds` (W), reads the feed again from where the follower was 2·W ago. An entry
   * that shows up in the feed at most W after the follower passed its place is then seen: the next
   * re-check comes within W of its arrival and starts from before it.
   */
  private async recheckLate(): Promise<void> {
    const windowMs = this.settings.recheckSeconds * 1000;
    if (windowMs === 0 || Date.now() - this.lastRecheck < windowMs) return;
    this.lastRecheck = Date.now();
    const history = this.checkpoint.history;
    if (history.length === 0) return;
    const cutoff = Date.now() - 2 * windowMs;
    const before = history.filter((h) => h.at <= cutoff);
    let since = (before.length ? before[before.length - 1] : history[0]).seq;
    for (let pages = 0; pages < 100 && !this.stopped; pages++) {
      const batch = await this.feedGet('/_changes?since=' + encodeURIComponent(String(since)) + '&limit=' + BATCH);
      const results: FeedEntry[] = Array.isArray(batch.results) ? batch.results : [];
      await this.apply(results);
      since = batch.last_seq;
      if (results.length < BATCH) break;
    }
  }

  /** Modes `existing` and `list`: every mirrored package compared with the upstream (`sweepSeconds`, daily by default). */
  private async sweepIfDue(): Promise<void> {
    if (this.settings.mode === 'all' || Date.now() - this.checkpoint.lastSweep < this.settings.sweepSeconds * 1000) return;
    this.checkpoint.lastSweep = Date.now();
    const names = await this.mirror.mirroredNames();
    await this.runAll(names.map((name) => ({ name, deleted: false, present: true })));
  }

  async status(): Promise<FollowerStatus> {
    if (!this.head || Date.now() - this.head.at > 2000) {
      // The status answers quickly even when the upstream hangs.
      const seq = await this.feedHead(Math.min(this.ctx.config.upstreamTimeoutMs, 3000));
      this.head = { seq, at: Date.now() };
    }
    const cp = this.checkpoint;
    const since = cp ? cp.since : null;
    const headN = seqNumber(this.head.seq);
    const sinceN = seqNumber(since);
    const initial = cp && cp.initial ? cp.initial : null;
    let progress: number | null = null;
    if (initial) {
      const from = seqNumber(initial.from);
      const to = seqNumber(initial.to ?? this.head.seq);
      if (initial.done) progress = 1;
      else if (from !== null && to !== null && sinceN !== null) progress = to > from ? Math.max(0, Math.min(1, (sinceN - from) / (to - from))) : 1;
    }
    return {
      feed: this.feed,
      mode: this.settings.mode,
      state: this.state,
      since,
      head: this.head.seq,
      lag: {
        changes: headN !== null && sinceN !== null ? Math.max(0, headN - sinceN) : null,
        seconds: this.caughtUp ? 0 : Math.round((Date.now() - this.behindSince) / 1000),
      },
      initialSync: initial ? { ...initial, progress } : null,
      packagesWritten: cp ? cp.packagesWritten : 0,
      deleted: cp ? cp.deleted : 0,
      pending: cp ? Object.entries(cp.pending).map(([name, p]) => ({ name, attempts: p.attempts, reason: p.reason })) : [],
      lastError: this.lastError,
    };
  }
}
