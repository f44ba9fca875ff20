/**
 * Resolves conflicting revisions of the registry's packages. A CouchDB cluster can keep two leaf
 * revisions of one document (a write acknowledged with 202 on one node while another node took a
 * concurrent write, or a node that was cut off); CouchDB then serves one of them and the other's
 * versions are lost to clients. This follows the registry database's `_changes` (`style=all_docs`,
 * every leaf), and for a document with more than one live leaf reads them all (`open_revs=all`),
 * merges them (core/merge.ts), writes the merge as the admin on the greatest leaf, then deletes the
 * other leaves: one revision again. Tarballs a leaf other than the one written
 * on carries are sent along with the merge.
 *
 * Where the feed was read up to with every conflict in it resolved is kept in the database
 * (`_local/registry-conflict-resolver`, which replication does not copy and which goes with the
 * database): a gateway starts there, not at the start of the feed (reading 100,000 changes at every
 * start took the CPU that the first reads after a restart need). A change whose merge failed keeps
 * the position from passing it, so that the next start tries it again.
 *
 * Any number of gateways run it at once: they read the same leaves, make the same merge on the same
 * leaf, and a 409 means another one wrote it first (the leaves are read again). A merge that changes
 * nothing of the greatest leaf is not written: the merges end. What is refused (the
 * same version with other bytes) is counted in the metrics and sent as a `package:publish-refused`
 * webhook event by the gateway whose merge was stored.
 *
 * The mirror database has one too, merging with `mergeMirrored` (core/mirrored.ts): two gateways that
 * pull the same new package through at once each store it, and on a cluster both writes can be taken.
 * The copy of the later upstream revision is kept, with the tarballs either leaf stored.
 */
import { Logger } from 'pino';
import { compareRevs, MergeResult, mergeRevisions, RefusedPublish, sameContent } from '../core/merge';
import { PackageDoc } from '../core/types';
import { Couch, docPath } from '../couchdb/client';
import { BackgroundLoop, exponential } from '../lib/retry';
import { databasePosition } from './changes';

/** How often the database's position is read while nothing changes. */
const POLL_MS = 500;
/** Changes read per request. */
const BATCH = 500;
/** Attempts at one document whose leaves keep changing under the merge. */
const ATTEMPTS = 5;
/** Where the feed was read up to with every conflict resolved (shared by the gateways of the database). */
export const RESOLVER_CHECKPOINT = '_local/registry-conflict-resolver';
/** How often, at most, that position is written while the feed moves. */
const CHECKPOINT_MS = 10_000;

export interface ResolverEvents {
  /** A merge this gateway stored, with the publishes it refused. */
  resolved?: (name: string, leaves: number, refused: RefusedPublish[]) => void;
}

/** How the leaves of one document are merged: the registry's packages (core/merge.ts) by default, mirrored copies with `mergeMirrored`. */
export type MergeLeaves = (leaves: PackageDoc[]) => MergeResult;

export class ConflictResolver {
  private readonly loop: BackgroundLoop;
  private abort?: AbortController;
  private since: unknown = 0;
  /** Documents merged by this gateway, and publishes refused, since it started. */
  resolved = 0;
  refused = 0;
  /** The last publishes refused (at most 20), for the status. */
  readonly lastRefused: RefusedPublish[] = [];

  constructor(
    private readonly couch: Couch,
    private readonly db: string,
    private readonly log: Logger,
    private readonly events: ResolverEvents = {},
    private readonly merge: MergeLeaves = mergeRevisions,
  ) {
    this.loop = new BackgroundLoop((healthy) => this.follow(healthy), {
      delay: exponential(500, 10_000),
      onStop: () => this.abort?.abort(),
      onRetry: (err) => this.log.warn({ err: (err as Error).message }, 'resolving conflicts: following _changes failed; trying again'),
    });
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  private request<R>(path: string): Promise<R> {
    this.abort = new AbortController();
    return this.couch.request<R>('GET', docPath(this.db) + path, undefined, this.abort.signal);
  }

  /** The position read from the database, once. */
  private checkpointRead = false;
  /** The position as last written, and its document's revision. */
  private checkpoint: { since: unknown; rev?: string; at: number } = { since: 0, at: 0 };
  /** Whether a merge failed in this run: the position written stays before it. */
  private failed = false;
  private caughtUpOnce = false;
  /**
   * On the embedded server, how many writes that can conflict (`new_edits: false`) were done when a
   * reading of the feed to its end began with none under way: all of them are read. While the count
   * stays, the feed is not read: nothing else can make a conflict there.
   */
  private conflictingRead?: number;

  private async readCheckpoint(): Promise<void> {
    if (this.checkpointRead) return;
    const doc = await this.request<{ _rev?: string; since?: unknown }>('/' + RESOLVER_CHECKPOINT).catch((err: { statusCode?: number }) => {
      if (err.statusCode === 404) return null;
      throw err;
    });
    this.checkpointRead = true;
    if (doc && doc.since !== undefined) {
      this.since = doc.since;
      this.checkpoint = { since: doc.since, rev: doc._rev, at: Date.now() };
    }
  }

  /** Writes the position (`since`, all conflicts before it resolved) now and then; a failure waits for the next time. */
  private async writeCheckpoint(since: unknown, force: boolean): Promise<void> {
    if (String(since) === String(this.checkpoint.since) || (!force && Date.now() - this.checkpoint.at < CHECKPOINT_MS)) return;
    try {
      this.abort = new AbortController();
      const body = { ...(this.checkpoint.rev ? { _rev: this.checkpoint.rev } : {}), since };
      const written = await this.couch.request<{ rev: string }>('PUT', docPath(this.db) + '/' + RESOLVER_CHECKPOINT, body, this.abort.signal);
      this.checkpoint = { since, rev: written.rev, at: Date.now() };
    } catch (err) {
      // Another gateway wrote it meanwhile (409): its revision is taken for the next time.
      if (this.loop.stopped) return;
      const current = await this.request<{ _rev?: string }>('/' + RESOLVER_CHECKPOINT).catch(() => null);
      this.checkpoint = { since: this.checkpoint.since, rev: current?._rev, at: Date.now() };
      this.log.debug({ err: (err as Error).message }, 'resolving conflicts: the feed position could not be kept; kept next time');
    }
  }

  /**
   * Reads the feed from where it was read up to with every conflict resolved (the start, the first
   * time: conflicts made while no gateway ran are resolved too), then follows it.
   */
  private async follow(healthy: () => void): Promise<void> {
    let position: unknown;
    await this.readCheckpoint();
    /** On the embedded server, its count of writes that can conflict, read before the feed is (see `conflictingRead`). */
    let counted = this.couch.local?.conflictingWrites(this.db);
    while (!this.loop.stopped) {
      const batch = await this.request<{ results?: { id: string; changes?: { rev: string }[]; deleted?: boolean }[]; last_seq?: unknown }>(
        '/_changes?style=all_docs&limit=' + BATCH + '&since=' + encodeURIComponent(String(this.since)),
      );
      if (!Array.isArray(batch.results) || batch.last_seq === undefined) throw new Error('CouchDB sent an unreadable _changes answer for ' + this.db);
      healthy();
      for (const change of batch.results) {
        if (this.loop.stopped) return;
        if (change.id.startsWith('_') || !change.changes || change.changes.length < 2) continue;
        await this.resolve(change.id).catch((err) => {
          this.failed = true;
          this.log.warn({ package: change.id, err: (err as Error).message }, 'resolving conflicts: a package could not be merged; it is tried again at its next change or restart');
        });
      }
      this.since = batch.last_seq;
      // Written at once when the feed is first read to its end (the reading a restart would do again), then now and then.
      const caughtUp = batch.results.length < BATCH;
      if (!this.failed) await this.writeCheckpoint(batch.last_seq, caughtUp && !this.caughtUpOnce);
      if (caughtUp) {
        this.caughtUpOnce = true;
        // Every write that could conflict and was done before this reading began is read.
        this.conflictingRead = counted && counted.running === 0 ? counted.done : undefined;
      }
      if (batch.results.length === BATCH) continue;
      // Until the database moves, its feed is not read again; on the embedded server, not until a
      // write that can conflict was made (`conflictingWrites`): else the position is taken as read.
      while (!this.loop.stopped) {
        this.abort = new AbortController();
        const now = await databasePosition(this.couch, this.db, this.abort.signal);
        if (position === undefined) position = now;
        if (String(now) !== String(position)) {
          position = now;
          counted = this.couch.local?.conflictingWrites(this.db);
          if (!counted || counted.running > 0 || counted.done !== this.conflictingRead) break;
          this.since = now;
          if (!this.failed) await this.writeCheckpoint(now, false);
          continue;
        }
        // Quiet: the position reached is kept (at most every CHECKPOINT_MS), for a restart to start there.
        if (!this.failed) await this.writeCheckpoint(this.since, false);
        await this.loop.pause.for(POLL_MS);
      }
    }
  }

  /**
   * Merges the live leaves of `id` into one revision; true when this gateway wrote the merge. Two
   * steps, each safe alone: the merge is written on the greatest leaf (a 409: another writer got
   * there first, read again); once the greatest leaf holds everything the others hold (their merge
   * changes nothing of it), the others are deleted. Deleting them in the same request as the merge
   * would lose a leaf's content whenever the merge met a conflict but the deletion did not.
   */
  async resolve(id: string): Promise<boolean> {
    let wrote = false;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const leaves = await this.leaves(id);
      if (leaves.length < 2) return wrote;
      const { doc, refused, attachmentSources } = this.merge(leaves);
      const base = leaves.reduce((a, b) => (compareRevs(b._rev as string, a._rev as string) > 0 ? b : a));
      const others = leaves.filter((leaf) => leaf !== base);
      if (sameContent(this.merge([base]).doc, doc)) {
        // The greatest leaf holds it all: the others go (a 409 on one: it changed, and is merged at its change).
        const docs = others.map((leaf) => ({ _id: id, _rev: leaf._rev, _deleted: true }));
        await this.couch.request('POST', docPath(this.db) + '/_bulk_docs', { docs });
        return wrote;
      }
      const attachments: Record<string, unknown> = {};
      for (const [file, stub] of Object.entries(doc._attachments || {})) {
        const source = attachmentSources[file];
        // The base's own stub, revpos included: PouchDB stores a stub as it is written, and one without
        // revpos makes a document CouchDB's replicator cannot take (missing_stub).
        if (source === base._rev) attachments[file] = { ...stub, ...((base._attachments || {})[file] || {}), stub: true };
        else attachments[file] = { content_type: stub.content_type || 'application/octet-stream', data: (await this.tarball(id, file, source)).toString('base64') };
      }
      const [merged] = await this.couch.request<{ id: string; rev?: string; error?: string }[]>('POST', docPath(this.db) + '/_bulk_docs', {
        docs: [{ ...doc, _id: id, _rev: base._rev, _attachments: attachments }],
      });
      if (merged && merged.error === 'conflict') continue; // another writer got there first: read again
      if (!merged || merged.error) throw new Error('CouchDB refused the merge of ' + id + ': ' + (merged ? merged.error : 'no answer'));
      wrote = true;
      this.resolved++;
      this.refused += refused.length;
      this.lastRefused.push(...refused);
      this.lastRefused.splice(0, Math.max(0, this.lastRefused.length - 20));
      this.log.info({ package: id, leaves: leaves.length, rev: merged.rev, refused: refused.map((r) => r.version + ' ' + r.integrity) }, 'resolving conflicts: merged the conflicting revisions of a package');
      this.events.resolved?.(id, leaves.length, refused);
    }
    return wrote;
  }

  /** The live leaf revisions of `id` (`open_revs=all`, deleted ones left out). */
  private async leaves(id: string): Promise<PackageDoc[]> {
    const answer = await this.couch.request<{ ok?: PackageDoc }[]>('GET', docPath(this.db, id) + '?open_revs=all&revs=false');
    return (Array.isArray(answer) ? answer : []).map((row) => row.ok).filter((doc): doc is PackageDoc => !!doc && !doc._deleted);
  }

  /** The bytes of tarball `file` in revision `rev` of `id`. */
  private async tarball(id: string, file: string, rev: string): Promise<Buffer> {
    const response = await this.couch.streamGet(docPath(this.db, id, file) + '?rev=' + encodeURIComponent(rev));
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    if (response.statusCode !== 200) throw new Error('CouchDB answered ' + response.statusCode + ' for ' + file + ' of revision ' + rev);
    return Buffer.concat(chunks);
  }
}

/** The id of a refused publish's record in the state database: one per package, version and bytes, whoever merged it. */
const REFUSED_PREFIX = 'refused-publish:';

/**
 * Records publishes a merge refused in `<db>-state` (one document each; a gateway that merged the
 * same leaves too finds it there already), so that the status lists them after any restart.
 */
export async function recordRefused(couch: Couch, stateDb: string, refused: RefusedPublish[]): Promise<void> {
  for (const publish of refused) {
    const id = REFUSED_PREFIX + publish.name + '@' + publish.version + ':' + publish.integrity;
    await couch
      .request('PUT', docPath(stateDb, id), { ...publish, type: 'refused-publish', at: new Date().toISOString() })
      .catch(() => undefined); // 409: recorded already
  }
}

/** The publishes merges refused, newest first (at most `limit`). */
export async function refusedPublishes(couch: Couch, stateDb: string, limit = 50): Promise<(RefusedPublish & { at: string })[]> {
  const page = await couch.request<{ rows?: { doc?: RefusedPublish & { at: string } }[] }>(
    'GET',
    docPath(stateDb) + '/_all_docs?include_docs=true&startkey=' + encodeURIComponent(JSON.stringify(REFUSED_PREFIX)) + '&endkey=' + encodeURIComponent(JSON.stringify(REFUSED_PREFIX + '\ufff0')),
  );
  return (page.rows || [])
    .map((row) => row.doc)
    .filter((doc): doc is RefusedPublish & { at: string } => !!doc)
    .map(({ name, version, integrity, kept, rev, publisher, time, at }) => ({ name, version, integrity, kept, rev, publisher, time, at }))
    .sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0))
    .slice(0, limit);
}
