/**
 * This gateway's download counts: every successful tarball response is counted in memory (`count`,
 * two map look-ups on the hot path), and the counts are written to the downloads database
 * (`<db>-downloads`) every `DOWNLOADS_FLUSH_SECONDS`, at most 500 documents a request, and at stop.
 *
 * Each run of a gateway writes documents of its own (core/downloads.ts: one per package, day and run),
 * knowing each one's revision from its own last write, so a flush reads nothing, several gateways and
 * sites add up, and no write conflicts. Counts that could not be written stay in memory for the next
 * flush; a gateway killed without a stop loses at most what it counted since its last flush.
 */
import { randomBytes } from 'crypto';
import { Logger } from 'pino';
import { dayOf, DayPeriod, DownloadCounts, DownloadDoc, downloadDocId, downloadDocRange, sumDownloads, versionOfTarballFile } from '../core/downloads';
import { Couch, Database, Stored } from '../couchdb/client';

const DAY_MS = 86_400_000;
/** Documents per `_bulk_docs` request. */
const BATCH = 500;

/** Counts of one day not written yet: package → tarball file → downloads. */
type DayCounts = Map<string, Map<string, number>>;

/** What this run last wrote of one of its documents. */
interface Written {
  rev: string;
  versions: Record<string, number>;
}

export class DownloadCounter {
  /** This run's id in its documents' ids. */
  readonly gateway = randomBytes(6).toString('hex');
  private readonly db: Database<DownloadDoc>;
  /** Counts not written yet, by day. */
  private pending = new Map<string, DayCounts>();
  /** The counts of the day being counted, and when that day ends. */
  private todayCounts: DayCounts = new Map();
  private dayEnds = 0;
  /** The documents this run wrote, by id (those of the days before yesterday are forgotten). */
  private written = new Map<string, Written>();
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  /** The counts a flush is writing, until it is done. */
  private writing: Map<string, DayCounts> | null = null;

  constructor(
    couch: Couch,
    dbName: string,
    private readonly flushMs: number,
    private readonly log: Logger,
  ) {
    this.db = couch.db<DownloadDoc>(dbName);
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref();
  }

  /** Writes what was counted and stops counting into the database. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  /** One successful download of tarball `file` of `name` (the hot path: nothing but counting). */
  count(name: string, file: string): void {
    const now = Date.now();
    if (now >= this.dayEnds) this.newDay(now);
    let files = this.todayCounts.get(name);
    if (!files) this.todayCounts.set(name, (files = new Map()));
    files.set(file, (files.get(file) || 0) + 1);
  }

  private newDay(now: number): void {
    const today = dayOf(now);
    this.dayEnds = Date.parse(today + 'T00:00:00Z') + DAY_MS;
    this.todayCounts = this.pending.get(today) || new Map();
    this.pending.set(today, this.todayCounts);
  }

  /** Writes the counts waiting now; one flush at a time, the next waiting for the one running. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.writePending()).catch((err) => this.log.warn({ err: (err as Error).message }, 'download counts could not be written; kept for the next flush'));
    return this.flushing;
  }

  private async writePending(): Promise<void> {
    const taken = this.pending;
    this.pending = new Map();
    this.writing = taken;
    // Counting goes on into fresh maps while this flush writes.
    this.dayEnds = 0;
    const docs: { doc: DownloadDoc; files: Map<string, number> }[] = [];
    for (const [day, packages] of taken) {
      for (const [name, files] of packages) {
        const id = downloadDocId(name, day, this.gateway);
        const known = this.written.get(id);
        const versions: Record<string, number> = { ...(known ? known.versions : {}) };
        for (const [file, count] of files) {
          const version = versionOfTarballFile(name, file) ?? file;
          versions[version] = (versions[version] || 0) + count;
        }
        docs.push({ doc: { _id: id, ...(known ? { _rev: known.rev } : {}), type: 'downloads', package: name, day, gateway: this.gateway, versions }, files });
      }
    }
    let failed: unknown = null;
    try {
      for (let i = 0; i < docs.length; i += BATCH) {
        const batch = docs.slice(i, i + BATCH);
        let results: { id: string; rev?: string; error?: string; reason?: string }[] = [];
        try {
          results = await this.db.request<typeof results>('POST', '_bulk_docs', { docs: batch.map((entry) => entry.doc) });
        } catch (err) {
          failed = err;
        }
        const byId = new Map(results.map((r) => [r.id, r]));
        for (const { doc, files } of batch) {
          const result = byId.get(doc._id);
          if (result && result.rev && !result.error) {
            this.written.set(doc._id, { rev: result.rev, versions: doc.versions });
            continue;
          }
          // Not written: counted again at the next flush (a document changed by someone else is read first).
          if (result && result.error === 'conflict') this.written.delete(doc._id);
          if (result && !failed) failed = new Error(result.id + ': ' + (result.reason || result.error));
          this.putBack(doc.day, doc.package, files);
        }
      }
    } finally {
      this.writing = null;
    }
    await this.refreshUnknown();
    this.forgetOld();
    if (failed) throw failed;
  }

  /** Counts not written, back into what waits. */
  private putBack(day: string, name: string, files: Map<string, number>): void {
    let packages = this.pending.get(day);
    if (!packages) this.pending.set(day, (packages = new Map()));
    const waiting = packages.get(name);
    if (!waiting) return void packages.set(name, files);
    for (const [file, count] of files) waiting.set(file, (waiting.get(file) || 0) + count);
  }

  /** Documents of this run whose revision is not known (a conflict: written by someone else under its id) are read again. */
  private async refreshUnknown(): Promise<void> {
    const unknown: string[] = [];
    for (const [day, packages] of this.pending) for (const name of packages.keys()) {
      const id = downloadDocId(name, day, this.gateway);
      if (!this.written.has(id)) unknown.push(id);
    }
    if (unknown.length === 0) return;
    try {
      const found = await this.db.getMany(unknown);
      for (const [id, doc] of found) this.written.set(id, { rev: doc._rev, versions: doc.versions || {} });
    } catch {
      // Read at the next flush.
    }
  }

  private forgetOld(): void {
    const yesterday = dayOf(Date.now() - DAY_MS);
    for (const id of this.written.keys()) {
      const day = id.split('|')[1];
      if (day < yesterday) this.written.delete(id);
    }
  }

  /** `name`'s downloads over `period`: every gateway's written counts, and this gateway's not written yet. */
  async read(name: string, period: DayPeriod): Promise<DownloadCounts> {
    const range = downloadDocRange(name, period.start, period.end);
    const answer = await this.db.request<{ rows: { id: string; doc?: Stored<DownloadDoc> | null }[] }>(
      'GET',
      '_all_docs?include_docs=true&startkey=' + encodeURIComponent(JSON.stringify(range.startkey)) + '&endkey=' + encodeURIComponent(JSON.stringify(range.endkey)),
    );
    const docs: Pick<DownloadDoc, 'day' | 'versions'>[] = [];
    for (const row of answer.rows) if (row.doc && row.doc.package === name) docs.push(row.doc);
    for (const [day, packages] of [...this.pending, ...(this.writing || [])]) {
      const files = packages.get(name);
      if (!files) continue;
      const versions: Record<string, number> = {};
      for (const [file, count] of files) {
        const version = versionOfTarballFile(name, file) ?? file;
        versions[version] = (versions[version] || 0) + count;
      }
      docs.push({ day, versions });
    }
    return sumDownloads(name, period, docs);
  }
}
