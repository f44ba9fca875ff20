/**
 * Where the feed follower keeps its place: one checkpoint per feed (`replication-feed:<feed>`) in the
 * registry's admin-only bookkeeping database (`<db>-state`), saved after every batch. Checkpoints of
 * earlier versions, kept in `<db>-tokens`, are taken over.
 */
import { Couch, Database } from '../../couchdb/client';
import { History, Pending } from './planner';

export interface Checkpoint {
  _id: string;
  _rev?: string;
  feed: string;
  since: unknown;
  /** Where the current initial sync started and where the feed was then (for progress). */
  initial?: { from: unknown; to: unknown; done: boolean };
  /** Recent `since` values with the time they were reached, for reading late entries again. */
  history: History;
  pending: Record<string, Pending>;
  lastSweep: number;
  packagesWritten: number;
  deleted: number;
  /** When it was last saved (epoch ms): the checkpoint's own time. */
  savedAt?: number;
}

/** A new checkpoint for `feed`, starting at `since` with the feed's head at `head`. */
export function newCheckpoint(id: string, feed: string, since: unknown, head: unknown, now: number): Checkpoint {
  return {
    _id: id,
    feed,
    since,
    initial: { from: since, to: head, done: false },
    history: [{ seq: since, at: now }],
    pending: {},
    lastSweep: 0,
    packagesWritten: 0,
    deleted: 0,
  };
}

export class CheckpointStore {
  readonly id: string;
  private readonly db: Database<Checkpoint>;
  private readonly legacy: Database<Checkpoint>;

  constructor(couch: Couch, dbs: { state: string; tokens: string }, feed: string) {
    this.id = 'replication-feed:' + feed;
    this.db = couch.db<Checkpoint>(dbs.state);
    this.legacy = couch.db<Checkpoint>(dbs.tokens);
  }

  /** The saved checkpoint, or null for a new mirror. */
  async load(): Promise<Checkpoint | null> {
    const saved = await this.db.get(this.id);
    if (saved) return saved;
    const old = await this.legacy.get(this.id);
    if (!old) return null;
    const moved: Checkpoint = { ...old, _rev: undefined };
    await this.save(moved);
    await this.legacy.remove(old._id, old._rev).catch(() => undefined);
    return moved;
  }

  /** Saves `checkpoint` with the time of saving, and records its new revision in it. */
  async save(checkpoint: Checkpoint): Promise<void> {
    checkpoint.savedAt = Date.now();
    const result = await this.db.put(checkpoint as Checkpoint & { _id: string });
    checkpoint._rev = result.rev;
  }
}
