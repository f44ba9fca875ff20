/**
 * The search index of this gateway, in memory: loaded from both package databases' `_changes` (with
 * the documents) at start, then kept by following them, and told at once of what this gateway writes,
 * so a publish is found by the next search. Searches wait for the first load.
 *
 * A snapshot of the index and of where each feed was is written to the data folder when the gateway
 * stops (and after a long first load, and now and then as changes add up), so the next start reads it
 * and then only the changes since. A snapshot of another database (another registry id, or a feed
 * position the database never reached) is ignored. The snapshot is lines of JSON, written and read
 * a megabyte at a time (a million packages are some hundreds of MB: never one string), and it holds
 * the index as computed, so reading it back indexes nothing again.
 */
import { closeSync, mkdirSync, openSync, readSync, renameSync, writeSync } from 'fs';
import { dirname } from 'path';
import { Logger } from 'pino';
import { SearchIndex, SearchSource } from '../core/search';
import { PackageDoc } from '../core/types';
import { Couch } from '../couchdb/client';
import { ChangesFollower, databasePosition } from './changes';
import { HttpError } from './errors';

/** How long a search waits for the index to load before it is told to come back. */
const LOAD_WAIT_MS = 15_000;
/** A first load longer than this is saved at once. */
const SAVE_AFTER_LOAD_MS = 5_000;
/** Saved again when this many changes came in and the last save is this old. */
const SAVE_AFTER_CHANGES = 5_000;
const SAVE_EVERY_MS = 10 * 60_000;
/** 2: each package's dependencies too. 3: lines of JSON, the index as computed (`SearchIndex.snapshotLines`). */
const FORMAT = 3;
/**
 * The most revisions of this gateway's writes remembered until the feed reports them (about 100
 * bytes each); beyond, they are forgotten and their documents read from the feed's database again.
 */
const TOLD_MAX = 50_000;
/** Bytes read or written at a time; a longer first line is not a snapshot of this format. */
const CHUNK = 1 << 20;

/** The first line of the snapshot file; the index's lines follow. */
interface SnapshotHeader {
  format: number;
  /** The registry id of the databases the index was read from. */
  identity: string;
  since: Record<SearchSource, unknown>;
}

const SOURCES: SearchSource[] = ['local', 'mirrored'];

/** The number a feed position starts with (CouchDB's `12-g1AAAA…`, PouchDB's 12). */
const seqNumber = (seq: unknown): number => parseInt(String(seq), 10) || 0;

/** Writes all of `text` (a write may take part of it). */
function writeAll(fd: number, text: string): void {
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
}

export class SearchService {
  /** Replaced once, by an empty one, when a snapshot turns out unreadable half-way. */
  index = new SearchIndex();
  private followers = new Map<SearchSource, ChangesFollower>();
  private readonly loading = new Set<SearchSource>(SOURCES);
  /** The databases whose change feed cannot be read right now. */
  private readonly failing = new Set<SearchSource>();
  private readonly waiting: (() => void)[] = [];
  private readonly startedAt = Date.now();
  private changesSinceSave = 0;
  private savedAt = Date.now();
  private stopped = false;
  private starting?: Promise<void>;
  /** Whether the snapshot is being read into the index (which takes nothing else meanwhile). */
  private restoring = false;
  /** The revisions `wrote` applied whose feed entries have not come yet, by source and name. */
  private readonly told = new Map<string, string>();

  constructor(
    private readonly couch: Couch,
    private readonly databases: Record<SearchSource, string>,
    private readonly log: Logger,
    private readonly snapshotFile: string | null,
    private readonly identity: string,
  ) {}

  start(): void {
    this.starting = this.begin().catch((err) => this.log.error({ err }, 'the search index could not start'));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.starting;
    await Promise.all([...this.followers.values()].map((f) => f.stop()));
    this.save();
  }

  /** Whether the first load is done. */
  get loaded(): boolean {
    return this.loading.size === 0;
  }

  /**
   * Whether neither database has a document named `name` (not even a tombstone), as the followed
   * feeds tell: known once both feeds are read, and only while both followers have reported every
   * change up to their database's position (read at most a poll ago). Writes made elsewhere within
   * that poll are not known yet, as with the caches.
   */
  knowsAbsent(name: string): boolean {
    if (!this.loaded || this.failing.size > 0 || this.followers.size !== SOURCES.length) return false;
    for (const follower of this.followers.values()) if (!follower.current) return false;
    return !this.index.holds(name);
  }

  /**
   * A document this gateway has just written (while the snapshot is read, its feed brings it after).
   * Its revision is remembered: the feed's report of it then needs no document (`told`).
   */
  wrote(source: SearchSource, doc: PackageDoc): void {
    if (this.restoring) return;
    const name = doc._id || doc.name;
    this.index.apply(source, name, doc._rev, doc);
    if (typeof name !== 'string' || typeof doc._rev !== 'string') return;
    if (this.told.size >= TOLD_MAX) this.told.clear();
    this.told.set(source + '\n' + name, doc._rev);
  }

  /** Whether the feed's revision `rev` of `name` is one `wrote` applied (each is taken once). */
  private toldOf(source: SearchSource, name: string, rev: string): boolean {
    const key = source + '\n' + name;
    if (this.told.get(key) !== rev) return false;
    this.told.delete(key);
    this.changed();
    return true;
  }

  /** Resolves once the index is loaded; a 503 to come back later when that takes too long. */
  async ready(): Promise<SearchIndex> {
    if (this.loaded) return this.index;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      new Promise<boolean>((resolve) => this.waiting.push(() => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), LOAD_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (!done) {
      const why = this.failing.size ? '; CouchDB does not answer its change feed, so admins should check CouchDB' : '';
      throw new HttpError(503, 'The search index is still loading (' + this.index.size + ' packages so far' + why + '); search again in a minute.', { 'Retry-After': '60' });
    }
    return this.index;
  }

  private async begin(): Promise<void> {
    const snapshot = await this.readSnapshot();
    if (snapshot) this.log.info({ packages: this.index.size, ms: Date.now() - this.startedAt }, 'search index read from its snapshot; following the changes since');
    if (this.stopped) return;
    for (const source of SOURCES) {
      const follower = new ChangesFollower(
        this.couch,
        this.databases[source],
        (id, rev, doc) => {
          this.index.apply(source, id, rev, (doc as PackageDoc | null | undefined) || null);
          this.changed();
        },
        (live) => (live ? this.failing.delete(source) : this.failing.add(source)),
        this.log,
        { fromStart: true, since: snapshot ? snapshot.since[source] : 0, onCaughtUp: () => this.caughtUp(source), told: (id, rev) => this.toldOf(source, id, rev) },
      );
      this.followers.set(source, follower);
      follower.start();
    }
  }

  /**
   * Reads the snapshot in the data folder into the index, when there is one of these databases;
   * its header (where each feed was), or null when there is none to use (the index is then empty).
   */
  private async readSnapshot(): Promise<SnapshotHeader | null> {
    if (!this.snapshotFile) return null;
    let fd: number;
    try {
      fd = openSync(this.snapshotFile, 'r');
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') this.log.warn({ err: (err as Error).message }, 'the search index snapshot is unreadable; the index is read from CouchDB');
      return null;
    }
    try {
      const buffer = Buffer.alloc(CHUNK);
      let rest = Buffer.alloc(0);
      /** The next complete lines of the file (null at its end), a megabyte at a time. */
      const nextLines = (): string[] | null => {
        const got = readSync(fd, buffer, 0, CHUNK, null);
        if (got === 0) {
          if (rest.length) throw new Error('the search index snapshot ends in the middle of a line');
          return null;
        }
        const bytes = rest.length ? Buffer.concat([rest, buffer.subarray(0, got)]) : buffer.subarray(0, got);
        const end = bytes.lastIndexOf(10);
        // Lines are split at the byte 10 (a newline), which UTF-8 never uses within a character.
        rest = Buffer.from(bytes.subarray(end + 1));
        return end === -1 ? [] : bytes.toString('utf8', 0, end).split('\n');
      };
      let lines = nextLines();
      // A first line longer than a chunk is no header of this format (format 2 was one JSON document).
      if (!lines || !lines.length) return null;
      let header: SnapshotHeader;
      try {
        header = JSON.parse(lines[0]) as SnapshotHeader;
      } catch {
        return null;
      }
      if (!header || header.format !== FORMAT || header.identity !== this.identity || !header.since) return null;
      try {
        for (const source of SOURCES) {
          // A position past the database's own: the snapshot is of another copy of it.
          if (seqNumber(header.since[source]) > seqNumber(await databasePosition(this.couch, this.databases[source]))) return null;
        }
      } catch {
        return null;
      }
      const reader = this.index.restoreLines();
      this.restoring = true;
      lines = lines.slice(1);
      for (; lines && !this.stopped; lines = nextLines()) {
        for (const line of lines) reader.line(line);
        // Other requests are answered between chunks.
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (this.stopped) return null;
      reader.end();
      return header;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'the search index snapshot is unreadable; the index is read from CouchDB');
      this.index = new SearchIndex();
      return null;
    } finally {
      this.restoring = false;
      closeSync(fd);
    }
  }

  private changed(): void {
    this.changesSinceSave++;
    if (this.loaded && this.changesSinceSave >= SAVE_AFTER_CHANGES && Date.now() - this.savedAt >= SAVE_EVERY_MS) setImmediate(() => this.save());
  }

  /** Writes the snapshot (to a new file, then renamed over the old one). */
  private save(): void {
    if (!this.snapshotFile || !this.loaded || this.followers.size !== SOURCES.length) return;
    const since = {} as Record<SearchSource, unknown>;
    for (const source of SOURCES) since[source] = (this.followers.get(source) as ChangesFollower).position;
    const header: SnapshotHeader = { format: FORMAT, identity: this.identity, since };
    try {
      mkdirSync(dirname(this.snapshotFile), { recursive: true, mode: 0o700 });
      const temp = this.snapshotFile + '.' + process.pid + '.tmp';
      const fd = openSync(temp, 'w', 0o600);
      try {
        let chunk = JSON.stringify(header) + '\n';
        for (const line of this.index.snapshotLines()) {
          chunk += line + '\n';
          if (chunk.length >= CHUNK) {
            writeAll(fd, chunk);
            chunk = '';
          }
        }
        writeAll(fd, chunk);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, this.snapshotFile);
      this.changesSinceSave = 0;
      this.savedAt = Date.now();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'the search index snapshot could not be written; the next start reads the index from CouchDB');
    }
  }

  private caughtUp(source: SearchSource): void {
    this.loading.delete(source);
    if (!this.loaded) return;
    // The terms of the whole load are sorted now rather than by the first search, and its lists trimmed.
    this.index.compact();
    const ms = Date.now() - this.startedAt;
    this.log.info({ packages: this.index.size, ms }, 'search index loaded');
    for (const wake of this.waiting.splice(0)) wake();
    if (ms > SAVE_AFTER_LOAD_MS) setImmediate(() => this.save());
  }
}
