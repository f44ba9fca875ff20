/**
 * Follows a package database's `_changes` and reports each changed document id, so that caches
 * of several gateways in front of one CouchDB stay coherent. While the feed cannot be followed,
 * `onLive(false)` switches the caches off; they come back once it is followed again.
 *
 * With `fromStart`, it reads the whole feed with the documents first (for the search index), reports
 * `onCaughtUp` once it has, and after a failure goes on from where it was.
 *
 * It polls the normal feed every `POLL_MS` rather than holding a longpoll: express-pouchdb (the
 * embedded server) leaks a heartbeat timer for every longpoll its client abandons, and a poll that
 * finds nothing costs CouchDB next to nothing.
 */
import { Logger } from 'pino';
import { Couch, docPath } from '../couchdb/client';
import { BackgroundLoop, exponential } from '../lib/retry';
import { seqNumber } from '../replication/feed/planner';

export const POLL_MS = 250;

interface Waiter {
  since: string;
  resolve: (position: string) => void;
  reject: (err: unknown) => void;
}

/**
 * The position of one database, read every `POLL_MS` for all of its followers at once while any of
 * them waits (the caches' follower and the search index's follow the same databases): one read
 * instead of one per follower, on an idle registry the only work it does.
 */
class PositionWatch {
  private readonly waiting = new Set<Waiter>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly couch: Couch,
    private readonly db: string,
  ) {}

  /** Resolves with the database's position once it is no longer `since`; rejects when `signal` aborts or the position cannot be read. */
  moved(since: unknown, signal: AbortSignal): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const waiter: Waiter = {
        since: String(since),
        resolve: (position) => {
          signal.removeEventListener('abort', aborted);
          resolve(position);
        },
        reject: (err) => {
          signal.removeEventListener('abort', aborted);
          reject(err);
        },
      };
      const aborted = () => {
        this.waiting.delete(waiter);
        reject(signal.reason);
      };
      signal.addEventListener('abort', aborted);
      this.waiting.add(waiter);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.timer || this.waiting.size === 0) return;
    this.timer = setTimeout(() => void this.check(), POLL_MS);
  }

  private async check(): Promise<void> {
    const waiters = [...this.waiting];
    try {
      const position = String(await databasePosition(this.couch, this.db));
      for (const waiter of waiters) {
        if (waiter.since === position || !this.waiting.has(waiter)) continue;
        this.waiting.delete(waiter);
        waiter.resolve(position);
      }
    } catch (err) {
      for (const waiter of waiters) {
        if (this.waiting.delete(waiter)) waiter.reject(err);
      }
    } finally {
      this.timer = undefined;
      this.schedule();
    }
  }
}

/** A database's position in its change feed: `update_seq` of `GET /db`. */
export async function databasePosition(couch: Couch, db: string, signal?: AbortSignal): Promise<unknown> {
  const local = couch.local?.position(db);
  if (local) return couch.timed('position', () => local);
  return (await couch.request<{ update_seq?: unknown }>('GET', docPath(db), undefined, signal)).update_seq;
}

const watches = new WeakMap<Couch, Map<string, PositionWatch>>();
/** The reads of feeds under way, by CouchDB and by database and path (see `ChangesFollower.request`). */
const reads = new WeakMap<Couch, Map<string, Promise<any>>>();

function watchOf(couch: Couch, db: string): PositionWatch {
  let byDb = watches.get(couch);
  if (!byDb) watches.set(couch, (byDb = new Map()));
  let watch = byDb.get(db);
  if (!watch) byDb.set(db, (watch = new PositionWatch(couch, db)));
  return watch;
}

export interface FollowOptions {
  /** Read the feed from the start (or from `since`), with the documents (else from now on, ids and revisions only). */
  fromStart?: boolean;
  /** Where in the feed a `fromStart` follower begins (a sequence it reported before). */
  since?: unknown;
  /** Called once, when the feed has been read up to the database's position at the start. */
  onCaughtUp?: () => void;
  /**
   * For a `fromStart` follower: whether revision `rev` of `id` was handed over already (this gateway
   * wrote it and gave its document): such a change is not reported again. Once caught up, while most
   * changes are such, the feed is read without the documents and those of the others are read in one
   * `_all_docs` (`include_docs` made CouchDB send, and the gateway parse, every document the gateway
   * itself had just written: the replication follower's whole ingest, again).
   */
  told?: (id: string, rev: string) => boolean;
}

/** The documents of a follower that knows some of them are read at most this many at a time. */
const DOCS_PER_READ = 100;

export class ChangesFollower {
  private abort?: AbortController;
  private readonly loop: BackgroundLoop;

  constructor(
    private readonly couch: Couch,
    private readonly db: string,
    private readonly onChange: (id: string, rev: string | undefined, doc?: unknown) => void,
    private readonly onLive: (live: boolean) => void,
    private readonly log: Logger,
    private readonly options: FollowOptions = {},
  ) {
    this.since = options.since ?? 0;
    this.loop = new BackgroundLoop((healthy) => this.follow(healthy), {
      delay: exponential(500, 10_000),
      onStop: () => this.abort?.abort(),
      onRetry: (err) => {
        this.onLive(false);
        this.log.warn({ err: (err as Error).message }, 'following _changes failed; caches are off until it works again');
      },
    });
  }

  start(): void {
    this.loop.start();
  }

  /** The sequence of the last change a `fromStart` follower reported. */
  get position(): unknown {
    return this.since;
  }

  /**
   * Whether the follower has reported every change up to the database's position as last read (at
   * most a poll ago), and waits for it to move: what it reported is then current but for that poll.
   * Also while it reads the feed only to check a position that did not count a write (`checking`).
   */
  get current(): boolean {
    return (this.waiting || this.checking) && !this.loop.stopped;
  }

  private waiting = false;
  /**
   * Reading the feed after a position whose leading number is that of the position read before the
   * last read: no write was counted since. On a CouchDB cluster the position reads differently from
   * one poll to the next with nothing written (its opaque part names the shard copies that
   * answered), and its number stays above the feed's after a `_security` write (which has no
   * change), so the feed is read again at every poll; a change it brings is reported, but none is
   * known to be missing meanwhile. Counted as not current, the search index's followers were not
   * current during most polls' reads, and pull-through fetched a dependency ahead or not at random.
   */
  private checking = false;

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /**
   * A read of the database's feed at `path`, shared with the other followers of the database asking
   * the very same while it is under way (the caches' follower and the search index's, woken by the
   * same move of the position, ask for the same batch); each stops waiting for it when it stops.
   */
  private request(path: string): Promise<any> {
    const abort = (this.abort = new AbortController());
    let byPath = reads.get(this.couch);
    if (!byPath) reads.set(this.couch, (byPath = new Map()));
    const key = this.db + '\n' + path;
    let read = byPath.get(key);
    if (!read) {
      const shared = byPath;
      const started: Promise<any> = this.couch.request('GET', docPath(this.db) + path);
      read = started;
      const forget = () => {
        if (shared.get(key) === started) shared.delete(key);
      };
      started.then(forget, forget);
      byPath.set(key, started);
    }
    return new Promise((resolve, reject) => {
      const aborted = () => reject(abort.signal.reason);
      if (abort.signal.aborted) return aborted();
      abort.signal.addEventListener('abort', aborted, { once: true });
      (read as Promise<any>).then(
        (answer) => {
          abort.signal.removeEventListener('abort', aborted);
          resolve(answer);
        },
        (err) => {
          abort.signal.removeEventListener('abort', aborted);
          reject(err);
        },
      );
    });
  }

  /** Whether most of the last batch's changes were handed over already (see `told`). */
  private mostlyTold = true;
  /** Where a `fromStart` follower is in the feed (kept across rounds). */
  private since: unknown;
  private caughtUp = false;

  /** One round: the database's position, then its changes from there until it fails or the follower stops. */
  private async follow(healthy: () => void): Promise<void> {
    try {
      await this.followFeed(healthy);
    } finally {
      this.checking = false;
    }
  }

  private async followFeed(healthy: () => void): Promise<void> {
    this.abort = new AbortController();
    const position = await databasePosition(this.couch, this.db, this.abort.signal);
    let since = this.options.fromStart ? this.since : position;
    // The position read before the last read of the feed: that read reported every change up to it.
    let readTo = String(position);
    this.onLive(true);
    healthy();
    while (!this.loop.stopped) {
      // Documents can be large (mirrored packuments): fewer of them per batch. Once caught up, a
      // follower told of this gateway's writes reads ids and revisions, and then the documents it
      // lacks, while the last batch was mostly this gateway's writes (else with the documents).
      const told = this.caughtUp ? this.options.told : undefined;
      const apart = !!told && this.mostlyTold;
      const withDocs = !!this.options.fromStart && !apart;
      const limit = withDocs ? 100 : 1000;
      const batch = await this.request('/_changes?limit=' + limit + (withDocs ? '&include_docs=true' : '') + '&since=' + encodeURIComponent(String(since)));
      if (!Array.isArray(batch.results) || batch.last_seq === undefined) throw new Error('CouchDB sent an unreadable _changes answer for ' + this.db);
      const results = batch.results;
      // Changes to report: not current until they are.
      if (results.length) this.checking = false;
      if (apart) await this.reportApart(results);
      else {
        let known = 0;
        for (const change of results) {
          const rev = change.changes && change.changes[0] ? change.changes[0].rev : undefined;
          if (told && !change.deleted && rev !== undefined && told(change.id, rev)) known++;
          else this.onChange(change.id, rev, change.deleted ? null : change.doc);
        }
        if (told && results.length) this.mostlyTold = known * 2 >= results.length;
      }
      since = batch.last_seq;
      this.since = since;
      if (results.length < limit) {
        if (!this.caughtUp) {
          this.caughtUp = true;
          this.options.onCaughtUp?.();
        }
        // Until the database's position moves, its feed is not read: the embedded server reads the
        // last change's document on every `_changes` request, however large (a 40 MB packument
        // written last cost 150 ms a poll), while reading the position costs next to nothing.
        this.abort = new AbortController();
        this.waiting = true;
        try {
          const moved = await watchOf(this.couch, this.db).moved(since, this.abort.signal);
          const number = seqNumber(moved);
          this.checking = number !== null && number === seqNumber(readTo);
          readTo = moved;
        } finally {
          this.waiting = false;
        }
      }
    }
  }

  /**
   * Reports changes read without their documents: those handed over already (`told`) are not
   * reported; the documents of the others are read, `DOCS_PER_READ` at a time, each reported with
   * the document as read (its revision may be later than the change's: a later change reports it
   * again) or as deleted.
   */
  private async reportApart(results: { id: string; changes?: { rev: string }[]; deleted?: boolean }[]): Promise<void> {
    const told = this.options.told as (id: string, rev: string) => boolean;
    const wanted: string[] = [];
    for (const change of results) {
      const rev = change.changes && change.changes[0] ? change.changes[0].rev : undefined;
      if (change.deleted) this.onChange(change.id, rev, null);
      else if (rev === undefined || !told(change.id, rev)) wanted.push(change.id);
    }
    // Mostly others' writes: the next batch is read with its documents.
    if (results.length) this.mostlyTold = wanted.length * 2 <= results.length;
    for (let at = 0; at < wanted.length && !this.loop.stopped; at += DOCS_PER_READ) {
      const keys = wanted.slice(at, at + DOCS_PER_READ);
      this.abort = new AbortController();
      const answer = await this.couch.request<{ rows?: { key: string; value?: { rev: string; deleted?: boolean }; doc?: unknown }[] }>(
        'POST', docPath(this.db) + '/_all_docs?include_docs=true', { keys }, this.abort.signal,
      );
      if (!answer || !Array.isArray(answer.rows)) throw new Error('CouchDB sent an unreadable _all_docs answer for ' + this.db);
      for (const row of answer.rows) {
        if (typeof row.key !== 'string') continue;
        if (row.value && !row.value.deleted && row.doc) this.onChange(row.key, row.value.rev, row.doc);
        else this.onChange(row.key, row.value ? row.value.rev : undefined, null);
      }
    }
  }
}
