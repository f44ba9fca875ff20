/**
 * The packuments clients ask for, kept in memory as the bytes served (full and abbreviated, made
 * once per revision), least recently used first out, within a byte budget. It is coherent with
 * CouchDB through the registry database's `_changes` (see changes.ts): it is switched on only while
 * that feed is followed, every change of a package drops its entry, and a read that started before
 * a change cannot store what it read.
 */
import { Withheld } from '../core/policy';
import { OriginValidators } from '../core/types';
import { SingleFlight } from '../lib/single-flight';

/**
 * Change counters per package, shared by the caches: a read takes the package's generation before it
 * starts and may store what it read only if the generation is still the same. `reset` outdates all.
 */
export class Generations {
  private readonly counts = new Map<string, number>();
  private epoch = 0;

  of(name: string): string {
    return this.epoch + ':' + (this.counts.get(name) || 0);
  }

  bump(name: string): void {
    if (this.counts.size >= 1_000_000) this.reset();
    this.counts.set(name, (this.counts.get(name) || 0) + 1);
  }

  reset(): void {
    this.epoch++;
    this.counts.clear();
  }
}

/** How many names the local package database was seen without are remembered. */
const LOCAL_ABSENT_NAMES = 100_000;

/**
 * Names the package database of this registry (the local one, read before the mirror) was seen
 * without, each until that name changes there: its change feed reports it (any gateway, Fauxton, a
 * site's replication) or this gateway writes it. Pull-through asks whether a local package shadows
 * the upstream's for every package it stores and every tarball it serves; this answers that without
 * a read, with the coherence of the caches (see changes.ts): in use only while the feed is followed,
 * and a read that started before a change cannot record what it read.
 */
export class LocalAbsence {
  private readonly generations = new Generations();
  private readonly absent = new Map<string, string>();
  private live = false;

  /** A token to pass to `seen`, taken before the read. */
  generation(name: string): string {
    return this.generations.of(name);
  }

  /** The local database did not have `name` when read (the read started at `generation`). */
  seen(name: string, generation: string): void {
    if (!this.live || generation !== this.generations.of(name)) return;
    if (this.absent.size >= LOCAL_ABSENT_NAMES) this.absent.clear();
    this.absent.set(name, generation);
  }

  /** Whether the local database is known not to have `name` now. */
  knows(name: string): boolean {
    return this.live && this.absent.get(name) === this.generations.of(name);
  }

  /** `name` changed in the local database (or this gateway is writing it). */
  changed(name: string): void {
    this.generations.bump(name);
    this.absent.delete(name);
  }

  /** Whether the local database's feed is followed; while it is not, nothing is known. */
  setLive(live: boolean): void {
    if (!live) {
      this.generations.reset();
      this.absent.clear();
    }
    this.live = live;
  }
}

export interface CachedPackument {
  rev: string;
  /** Part of the ETag: what the supply-chain policy leaves out ('' for nothing). */
  variant?: string;
  full: Buffer;
  abbreviated: Buffer;
  /** The package is mirrored from the upstream (its `origin` is not this registry). */
  mirrored?: boolean;
  /** Versions the supply-chain policy leaves out (cooldown, blocks), by version. */
  withheld?: Map<string, Withheld>;
  /** Epoch ms when these bytes go stale: a held-back version becomes available then. */
  validUntil?: number;
  /**
   * What the bytes were made from, for their copy on disk (served-copies.ts): the fingerprint of the
   * policy applied ('' for none), the document's origin and upstream validators, and its
   * attachments' stubs where known.
   */
  policy?: string;
  origin?: string;
  validators?: OriginValidators;
  attachments?: Record<string, { content_type: string; digest: string }>;
}

const ABBREVIATED = 'application/vnd.npm.install-v1+json';

/** What a packument is served as for a client's `Accept`: abbreviated (npm's install shape) or full, with its ETag and type. */
export function packumentShape(entry: CachedPackument, accept: string | undefined): { etag: string; body: Buffer; type: string } {
  const abbreviated = String(accept || '').includes(ABBREVIATED);
  return {
    etag: '"' + entry.rev + (entry.variant ? '-' + entry.variant : '') + (abbreviated ? '-a"' : '-f"'),
    body: abbreviated ? entry.abbreviated : entry.full,
    type: abbreviated ? ABBREVIATED : 'application/json',
  };
}

/** How many names known to be in neither package database are remembered (and as many the upstream had not either). */
const ABSENT_NAMES = 100_000;

/**
 * How long a name that neither package database nor its upstream (pull-through) had is answered 404
 * without asking the upstream again: 30 s. A package published upstream meanwhile is found after at
 * most that long (npm's own registry takes seconds to show a new package everywhere, and npm retries a
 * failed fetch after 10 s and more); meanwhile a tree with a missing dependency, retried, or a script
 * asking for names that do not exist costs the upstream one request per name and half-minute. A
 * publish here, or the package arriving in the mirror (through this gateway or any other on the same
 * database), ends it at once, as it ends a name's absence.
 */
export const UNKNOWN_UPSTREAM_MS = 30_000;

export class PackumentCache {
  private readonly entries = new Map<string, CachedPackument>();
  /** Names in neither package database, as read (a negative cache, kept coherent like the entries). */
  private readonly absent = new Set<string>();
  /** Names the upstream did not have either when pull-through asked, until when (epoch ms). */
  private readonly unknownUpstream = new Map<string, number>();
  private readonly generations = new Generations();
  private bytes = 0;
  private live = false;

  constructor(private readonly maxBytes: number) {}

  /** Whether the cache is in use (the change feed is followed). */
  get enabled(): boolean {
    return this.live && this.maxBytes > 0;
  }

  /** A token to pass to `set`: the entry is stored only if nothing changed the package in between. */
  generation(name: string): string {
    return this.generations.of(name);
  }

  get(name: string): CachedPackument | undefined {
    if (!this.enabled) return undefined;
    const entry = this.entries.get(name);
    if (!entry) return undefined;
    if (entry.validUntil !== undefined && Date.now() >= entry.validUntil) {
      this.remove(name);
      return undefined;
    }
    this.entries.delete(name);
    this.entries.set(name, entry);
    return entry;
  }

  set(name: string, generation: string, entry: CachedPackument): void {
    if (!this.enabled || generation !== this.generation(name)) return;
    const size = entry.full.length + entry.abbreviated.length;
    if (size > this.maxBytes / 4) return;
    this.remove(name);
    this.entries.set(name, entry);
    this.bytes += size;
    for (const [oldest, old] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= old.full.length + old.abbreviated.length;
    }
  }

  /** Remembers that neither database has `name`, unless the package changed since `generation`. */
  setAbsent(name: string, generation: string): void {
    if (!this.enabled || generation !== this.generation(name)) return;
    this.absent.delete(name);
    this.absent.add(name);
    if (this.absent.size > ABSENT_NAMES) this.absent.delete(this.absent.values().next().value as string);
  }

  /** Whether neither package database had `name` when last read, and nothing changed it since. */
  isAbsent(name: string): boolean {
    return this.enabled && this.absent.has(name);
  }

  /**
   * Remembers for `UNKNOWN_UPSTREAM_MS` that the upstream had no `name` either, unless the package
   * changed since `generation` (read before the databases and the upstream were asked).
   */
  setUnknownUpstream(name: string, generation: string): void {
    if (!this.enabled || generation !== this.generation(name)) return;
    this.unknownUpstream.delete(name);
    this.unknownUpstream.set(name, Date.now() + UNKNOWN_UPSTREAM_MS);
    if (this.unknownUpstream.size > ABSENT_NAMES) this.unknownUpstream.delete(this.unknownUpstream.keys().next().value as string);
  }

  /** Whether the upstream had no `name` either less than `UNKNOWN_UPSTREAM_MS` ago, and nothing changed it here since. */
  isUnknownUpstream(name: string): boolean {
    if (!this.enabled) return false;
    const until = this.unknownUpstream.get(name);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.unknownUpstream.delete(name);
    return false;
  }

  /**
   * A package changed: drop its entry, and whatever reads of it are under way will not be stored.
   * When the change is `rev` and the entry already holds `rev` (this gateway stored it on writing),
   * the entry stays.
   */
  invalidate(name: string, rev?: string): void {
    this.generations.bump(name);
    this.absent.delete(name);
    this.unknownUpstream.delete(name);
    if (rev === undefined || this.entries.get(name)?.rev !== rev) this.remove(name);
  }

  /** One computation for concurrent misses of the same package. */
  private readonly pending = new SingleFlight<CachedPackument | null>();

  once(name: string, make: () => Promise<CachedPackument | null>): Promise<CachedPackument | null> {
    return this.pending.run(name, make);
  }

  /** Forgets everything (the served shape of every package changed, as with a new policy). */
  clear(): void {
    this.generations.reset();
    this.entries.clear();
    this.absent.clear();
    this.unknownUpstream.clear();
    this.bytes = 0;
  }

  /** Starts (true) or stops (false) caching; stopping forgets everything. */
  setLive(live: boolean): void {
    if (!live) this.clear();
    this.live = live;
  }

  /** The entries held now, least recently used first (none while the cache is off). */
  *held(): IterableIterator<[string, CachedPackument]> {
    if (!this.enabled) return;
    const now = Date.now();
    for (const [name, entry] of this.entries) if (entry.validUntil === undefined || now < entry.validUntil) yield [name, entry];
  }

  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes };
  }

  private remove(name: string): void {
    const old = this.entries.get(name);
    if (old) {
      this.entries.delete(name);
      this.bytes -= old.full.length + old.abbreviated.length;
    }
  }
}
