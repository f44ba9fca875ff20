/**
 * What the feed follower decides, as pure functions of what it has seen: which feed entries to act
 * on, what to do about one package before and after its packument is fetched, when to try a failed
 * package again and from where to read the feed again for late entries. No I/O: table-tested in
 * `test/unit/feed-planner.test.ts`; `follower.ts` carries the decisions out.
 */
import { mirroredDoc, revGeneration, UpstreamPackument } from '../../core/mirrored';
import { OriginValidators, PackageDoc } from '../../core/types';

/** An entry of an npm change feed. */
export interface FeedEntry {
  seq: unknown;
  id: string;
  changes?: { rev: string }[];
  deleted?: boolean;
}

/** What the follower mirrors: every package of the feed, the mirrored ones only, or a list. */
export type FeedMode = 'all' | 'existing' | 'list';

/**
 * A package to bring up to date: the feed's revision, whether it was deleted, whether it is here
 * (when known), and `local: false` when the package database was just read (with the rest of its
 * feed batch) and has no package of that name.
 */
export interface Work {
  name: string;
  rev?: string;
  deleted: boolean;
  present?: boolean;
  local?: false;
}

/** A package waiting for another attempt. */
export interface Pending {
  rev?: string;
  deleted?: boolean;
  attempts: number;
  /** Epoch ms of the next attempt. */
  next: number;
  reason: string;
}

/** Attempts for one package before the follower gives up on it until its next feed entry. */
export const MAX_ATTEMPTS = 8;

/**
 * The work in a batch of feed entries: the last entry of each package wins; names published here are
 * `shadowed` (never mirrored); outside mode `all`, only packages mirrored already are followed.
 */
export function selectWork(
  entries: unknown[],
  known: { local: Set<string> | Map<string, unknown>; present: Set<string> | Map<string, unknown> },
  mode: FeedMode,
): { work: Work[]; shadowed: string[] } {
  const latest = new Map<string, FeedEntry>();
  for (const entry of entries as FeedEntry[]) {
    if (!entry || typeof entry.id !== 'string' || entry.id.startsWith('_')) continue;
    latest.set(entry.id, entry);
  }
  const work: Work[] = [];
  const shadowed: string[] = [];
  for (const [name, entry] of latest) {
    if (known.local.has(name)) {
      shadowed.push(name);
      continue;
    }
    if (mode !== 'all' && !known.present.has(name)) continue;
    work.push({ name, rev: entry.changes && entry.changes[0] ? entry.changes[0].rev : undefined, deleted: !!entry.deleted, present: known.present.has(name), local: false });
  }
  return { work, shadowed };
}

/** The names of the entries of a feed batch (for looking up which of them are here). */
export function entryNames(entries: unknown[]): string[] {
  const names = new Set<string>();
  for (const entry of entries as FeedEntry[]) if (entry && typeof entry.id === 'string' && !entry.id.startsWith('_')) names.add(entry.id);
  return [...names];
}

/** What to do about one package before asking the upstream. */
export type FirstStep =
  /** Published here: the upstream's package of that name is never mirrored. */
  | { shadowed: true }
  /** Nothing to do (deleted upstream and not here, or the mirrored copy is that very revision). */
  | { done: true }
  /** Deleted upstream: delete the mirrored copy. */
  | { remove: true }
  | { fetch: true };

export function firstStep(item: Work, local: PackageDoc | null, existing: PackageDoc | null): FirstStep {
  if (local) return { shadowed: true };
  if (item.deleted) return existing ? { remove: true } : { done: true };
  if (existing && item.rev && existing.origin_rev === item.rev) return { done: true };
  return { fetch: true };
}

/** What to do about one package with the upstream's packument (null: the upstream has none). */
export type NextStep = { done: true } | { remove: true } | { retry: string } | { write: PackageDoc };

export function afterFetch(item: Work, existing: PackageDoc | null, packument: UpstreamPackument | null, upstream: string, validators?: OriginValidators): NextStep {
  const { name, rev } = item;
  if (!packument) {
    // Gone upstream (deleted or unpublished without a tombstone), or not readable yet.
    return existing ? { remove: true } : { retry: 'the upstream has no packument for "' + name + '" yet' };
  }
  if (rev && revGeneration(packument._rev) < revGeneration(rev)) {
    return { retry: 'the upstream packument of "' + name + '" (' + String(packument._rev) + ') is behind its feed entry (' + rev + ')' };
  }
  if (existing && existing.origin === upstream && existing.origin_rev && existing.origin_rev === packument._rev) return { done: true };
  return { write: mirroredDoc(name, packument, upstream, existing, undefined, validators) };
}

/**
 * After a failed attempt: when to try again (the waits double from 2 s up to 10 minutes), or null
 * when the package has had `MAX_ATTEMPTS` and is given up until its next feed entry.
 */
export function postponed(previous: Pending | undefined, item: Work, reason: string, now: number): Pending | null {
  const attempts = (previous ? previous.attempts : 0) + 1;
  if (attempts > MAX_ATTEMPTS) return null;
  const wait = Math.min(1000 * 2 ** attempts, 10 * 60_000);
  return { rev: item.rev, deleted: item.deleted, attempts, next: now + wait, reason };
}

/** The waiting packages whose next attempt is due. */
export function dueRetries(pending: Record<string, Pending>, now: number): Work[] {
  return Object.keys(pending)
    .filter((name) => pending[name].next <= now)
    .map((name) => ({ name, rev: pending[name].rev, deleted: !!pending[name].deleted }));
}

/** Positions the follower reached, with when it reached them. */
export type History = { seq: unknown; at: number }[];

/**
 * The history with `seq` reached at `now`, keeping 3 re-check windows: older positions go, except
 * the newest of them (the position at the window's start); at most 1,000 positions.
 */
export function remembered(history: History, seq: unknown, now: number, recheckSeconds: number): History {
  const next = history.slice();
  const last = next[next.length - 1];
  if (!last || JSON.stringify(last.seq) !== JSON.stringify(seq)) next.push({ seq, at: now });
  const keepFrom = now - 3 * recheckSeconds * 1000;
  while (next.length > 1 && next[1].at <= keepFrom) next.shift();
  return next.length > 1000 ? next.slice(next.length - 1000) : next;
}

/**
 * Where a re-check reads the feed from: the position of 2·W ago (W = `recheckSeconds`). An entry
 * that shows up in the feed at most W after the follower passed its place is then seen: the next
 * re-check comes within W of its arrival and starts from before it. Null without history.
 */
export function recheckFrom(history: History, now: number, recheckSeconds: number): unknown {
  if (history.length === 0) return null;
  const cutoff = now - 2 * recheckSeconds * 1000;
  const before = history.filter((h) => h.at <= cutoff);
  return (before.length ? before[before.length - 1] : history[0]).seq;
}

/** The leading number of a sequence (`123`, `"123-g1AAAA"`), or null when it has none. */
export function seqNumber(seq: unknown): number | null {
  const match = /^(\d+)/.exec(String(seq));
  return match ? Number(match[1]) : null;
}

/** How far an initial sync is, from 0 to 1, when the sequences say (they are opaque; their leading numbers are a guide). */
export function syncProgress(initial: { from: unknown; to: unknown; done: boolean } | null | undefined, since: unknown, head: unknown): number | null {
  if (!initial) return null;
  if (initial.done) return 1;
  const from = seqNumber(initial.from);
  const to = seqNumber(initial.to ?? head);
  const at = seqNumber(since);
  if (from === null || to === null || at === null) return null;
  return to > from ? Math.max(0, Math.min(1, (at - from) / (to - from))) : 1;
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
