/**
 * Native replication from a CouchDB upstream (another instance of this registry, or any CouchDB
 * holding registry documents) into the mirror database, managed through CouchDB's own `_replicator`
 * database: one continuous replication, design documents excluded by a selector, writing as the
 * replication user (role `registry-replicator`, not an admin) so that `_design/mirror` decides what
 * may land. It is plain CouchDB-to-CouchDB replication: CouchDB keeps its checkpoints and resumes
 * where it stopped after any restart, and no replicated revision can touch a package published here,
 * which lives in the other database.
 */
import { createHmac } from 'crypto';
import { Logger } from 'pino';
import { inPrivateScope, REPLICATOR_ROLE } from '../core/provenance';
import { Couch, couchFailure, docPath } from '../couchdb/client';
import { namesByOrigin, REPLICATOR } from './mirror';
import { OutboundPolicy } from '../config';
import { outboundRequest, readAll } from './upstream';
import { linear, retry } from '../lib/retry';

/** Design documents (and other `_` ids) stay where they are. */
export const NO_DESIGN_DOCS = { _id: { $regex: '^[^_]' } };

/** The design documents of a database, listed without their bodies (CouchDB and the embedded server alike). */
const DESIGN_DOCS = '/_all_docs?startkey=' + encodeURIComponent('"_design/"') + '&endkey=' + encodeURIComponent('"_design0"');

/** The packages of a database: its documents without its design documents (null when either count is unknown). */
function packagesOf(docCount: number | null | undefined, designs: { rows?: unknown[] } | null): number | null {
  return typeof docCount === 'number' && designs && Array.isArray(designs.rows) ? Math.max(0, docCount - designs.rows.length) : null;
}

export interface NativeReplicationStatus {
  source: string;
  target: string;
  state: string;
  docsWritten: number | null;
  docWriteFailures: number | null;
  /** Changes of the upstream not replicated yet (CouchDB's scheduler, or counted from the feeds). */
  changesPending: number | null;
  /** The upstream sequence of the last checkpoint. */
  checkpointedSourceSeq: unknown;
  /** When that checkpoint was written (its own time, from the checkpoint document), when CouchDB keeps it. */
  checkpointedAt: string | null;
  /** When the job's state last changed (CouchDB's scheduler), not when it last checkpointed. */
  lastUpdated: string | null;
  /** Mirrored documents with conflicting revisions (they cannot come from this side: only replication writes there). */
  conflicts: number | null;
  /** Documents, and packages (the documents without the design documents), on each side. */
  upstream: { docCount: number | null; packageCount: number | null; updateSeq: unknown };
  local: { docCount: number | null; packageCount: number | null };
  error: string | null;
}

/** A URL without its credentials, for status and logs. */
export function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = '';
  parsed.password = '';
  return parsed.toString().replace(/\/+$/, '');
}

/** The replication user's password: derived from the proxy secret, so every gateway agrees on it. */
function replicatorPassword(proxySecret: string): string {
  return createHmac('sha256', proxySecret).update('registry-replicator password').digest('base64url');
}

/** One continuous replication into a database of this CouchDB, kept as a `_replicator` document. */
export interface ReplicationJob {
  /** The `_replicator` document's id. */
  docId: string;
  /** The database replicated from: a URL, with the credentials of an account there. */
  source: string;
  /** The database of this CouchDB written to. */
  target: string;
  /** The account of this CouchDB the replication writes as (its role decides what validate_doc_update lets it write). */
  account: { name: string; role: string; password: string };
  /** Which documents replicate (a Mango selector); design documents never do. Default: every other document. */
  selector?: object;
  /** Documents of the source never replicated, besides design documents (for counting pending changes). */
  skipped?: (id: string) => boolean;
  /** What the log calls it. */
  label: string;
}

/** The replication from a CouchDB upstream into the mirror database, as the replication user. */
export function upstreamJob(dbs: { local: string; mirror: string }, source: string, proxySecret: string, privateScopes: string[]): ReplicationJob {
  return {
    docId: 'registry-' + dbs.local + '-from-upstream',
    source,
    target: dbs.mirror,
    account: { name: REPLICATOR.name, role: REPLICATOR_ROLE, password: replicatorPassword(proxySecret) },
    skipped: (id) => inPrivateScope(id, privateScopes),
    label: 'continuous CouchDB replication from the upstream',
  };
}

/** Packages published here that the mirror also holds: the upstream's copies are not served. */
export async function shadowedNames(couch: Couch, dbs: { local: string; mirror: string }, origins: readonly string[]): Promise<string[]> {
  const names = (await Promise.all(origins.map((origin) => namesByOrigin(couch, dbs.local, origin)))).flat();
  if (names.length === 0) return [];
  return [...(await couch.liveRevs(dbs.mirror, names)).keys()];
}

/**
 * The `_users` document of a service account (replication's, a site's), with its one role and its
 * password. Several gateways (or sites sharing one CouchDB) start at once and write it at once: a 409
 * means another one wrote it first, so it is checked again.
 */
export async function ensureAccount(couch: Couch, account: { name: string; role: string; password: string }): Promise<void> {
  const { name, role, password } = account;
  const users = couch.db<Record<string, unknown>>('_users');
  const id = 'org.couchdb.user:' + name;
  await retry(
    async () => {
      const identity = await couch.checkPassword(name, password);
      if (identity && identity.roles.length === 1 && identity.roles[0] === role) return;
      const existing = await users.get(id);
      await users.put({ _id: id, _rev: existing ? existing._rev : undefined, name, type: 'user', roles: [role], password });
    },
    { attempts: 5, delay: linear(100), retryable: (err) => couchFailure(err).statusCode === 409 },
  );
  // Gateways making it at the same moment on a cluster can leave conflicting revisions (each accepted
  // on some nodes), and CouchDB 3.4.3 then refuses the account's log-in (measured: for as long as the
  // conflict stays). Every revision of it holds the same name, role and password: the others go.
  const current = await couch.request<{ _conflicts?: string[] }>('GET', docPath('_users', id) + '?conflicts=true').catch(() => null);
  const conflicts = current && Array.isArray(current._conflicts) ? current._conflicts : [];
  if (conflicts.length) {
    await couch.request('POST', docPath('_users') + '/_bulk_docs', { docs: conflicts.map((rev) => ({ _id: id, _rev: rev, _deleted: true })) }).catch(() => undefined);
  }
}

export class NativeReplication {
  readonly docId: string;
  private readonly source: string;

  constructor(
    private readonly couch: Couch,
    private readonly job: ReplicationJob,
    private readonly log: Logger,
    /** The outbound request policy (the source's own host is configured, so allowed). */
    private readonly outbound: OutboundPolicy,
  ) {
    this.docId = job.docId;
    this.source = job.source;
  }

  private async ensureUser(): Promise<string> {
    await ensureAccount(this.couch, this.job.account);
    return this.job.account.password;
  }

  /** Where CouchDB writes to: the target database, reached as the job's account. */
  private targetUrl(password: string): string {
    const url = new URL(docPath(this.job.target), this.couch.url.origin);
    url.username = this.job.account.name;
    url.password = password;
    return url.toString();
  }

  /** Creates the `_replicator` document, or replaces it when the source or target changed. */
  async ensure(): Promise<void> {
    const password = await this.ensureUser();
    const wanted = {
      _id: this.docId,
      source: this.source,
      target: this.targetUrl(password),
      continuous: true,
      selector: this.job.selector || NO_DESIGN_DOCS,
    };
    const db = this.couch.db<Record<string, unknown>>('_replicator');
    const live = await db.get(this.docId);
    if (live) {
      // CouchDB shows credentials in the URLs redacted; compare what can be compared.
      const same = sameEndpoint(live.source, wanted.source) && sameEndpoint(live.target, wanted.target) && JSON.stringify(live.selector) === JSON.stringify(wanted.selector);
      if (same && live._replication_state !== 'error' && live._replication_state !== 'failed') return;
      await db.remove(this.docId, live._rev);
    }
    await db.put(wanted);
    this.log.info({ source: withoutCredentials(this.source) }, 'replication: ' + this.job.label + ' set up');
  }

  /** Stops the job: its `_replicator` document is removed (CouchDB's checkpoints stay, so it resumes if set up again). */
  async remove(): Promise<void> {
    const db = this.couch.db<Record<string, unknown>>('_replicator');
    const live = await db.get(this.docId);
    if (live) await db.remove(this.docId, live._rev as string).catch((err) => {
      if (couchFailure(err).statusCode !== 404 && couchFailure(err).statusCode !== 409) throw err;
    });
  }

  private sourceAuth(): Record<string, string> {
    return basicAuthOf(this.source);
  }

  private json(url: string, headers: Record<string, string> = {}): Promise<any> {
    return remoteJson(url, headers, this.outbound);
  }

  /**
   * The state of the job as CouchDB reports it: `_scheduler/docs` and `_active_tasks` on a real
   * CouchDB; on the embedded server, the `_replicator` document and the two feeds (pending changes are
   * the upstream's changes after the checkpoint).
   */
  async status(): Promise<NativeReplicationStatus> {
    const result: NativeReplicationStatus = {
      source: withoutCredentials(this.source),
      target: this.job.target,
      state: 'unknown',
      docsWritten: null,
      docWriteFailures: null,
      changesPending: null,
      checkpointedSourceSeq: null,
      checkpointedAt: null,
      lastUpdated: null,
      conflicts: null,
      upstream: { docCount: null, packageCount: null, updateSeq: null },
      local: { docCount: null, packageCount: null },
      error: null,
    };
    try {
      const doc = await this.couch.db<Record<string, any>>('_replicator').get(this.docId);
      if (!doc) throw Object.assign(new Error('missing'), { statusCode: 404, reason: 'missing' });
      result.state = doc._replication_state || 'running';
      if (doc._replication_state_reason) result.error = String(doc._replication_state_reason);
      if (doc._replication_state_time) result.lastUpdated = String(doc._replication_state_time);
      const stats = doc._replication_stats || {};
      if (typeof stats.docs_written === 'number') result.docsWritten = stats.docs_written;
      if (typeof stats.doc_write_failures === 'number') result.docWriteFailures = stats.doc_write_failures;
    } catch (err) {
      result.state = 'missing';
      result.error = couchFailure(err).reason;
    }
    try {
      const job = await this.couch
        .request<{ id?: string; state?: string; info?: Record<string, any> | null; last_updated?: string }>('GET', '/_scheduler/docs/_replicator/' + encodeURIComponent(this.docId))
        .catch(() => null);
      if (job) {
        if (typeof job.id === 'string') result.checkpointedAt = await this.checkpointTime(job.id);
        if (job.state) result.state = job.state;
        if (job.last_updated) result.lastUpdated = job.last_updated;
        const info = job.info || {};
        if (typeof info.docs_written === 'number') result.docsWritten = info.docs_written;
        if (typeof info.doc_write_failures === 'number') result.docWriteFailures = info.doc_write_failures;
        if (typeof info.changes_pending === 'number') result.changesPending = info.changes_pending;
        if (info.checkpointed_source_seq !== undefined) result.checkpointedSourceSeq = info.checkpointed_source_seq;
        if (typeof info.error === 'string') result.error = info.error;
        else if (job.state === 'running' || job.state === 'pending') result.error = null;
      }
      const list = await this.couch
        .request<{ type?: string; doc_id?: string; changes_pending?: number; checkpointed_source_seq?: unknown }[]>('GET', '/_active_tasks')
        .catch(() => null);
      if (list) {
        const task = Array.isArray(list) ? list.find((t) => t.type === 'replication' && t.doc_id === this.docId) : undefined;
        if (task && typeof task.changes_pending === 'number') result.changesPending = task.changes_pending;
        if (task && task.checkpointed_source_seq !== undefined) result.checkpointedSourceSeq = task.checkpointed_source_seq;
      }
    } catch {
      /* reported as unknown */
    }
    try {
      const info = await this.json(withoutCredentials(this.source), this.sourceAuth());
      const designs = await this.json(withoutCredentials(this.source) + DESIGN_DOCS, this.sourceAuth()).catch(() => null);
      result.upstream = { docCount: info.doc_count ?? null, packageCount: packagesOf(info.doc_count, designs), updateSeq: info.update_seq ?? null };
    } catch (err) {
      result.error = result.error || 'the upstream CouchDB cannot be reached: ' + (err as Error).message;
    }
    // CouchDB 3.4 reports no pending count for a replication with a selector: it is counted here then.
    if (result.changesPending === null && result.upstream.updateSeq !== null) await this.countPending(result);
    try {
      const target = this.couch.db(this.job.target);
      result.local.docCount = (await this.couch.request<{ doc_count?: number }>('GET', docPath(this.job.target))).doc_count ?? null;
      result.local.packageCount = packagesOf(result.local.docCount, await this.couch.request<{ rows?: unknown[] }>('GET', docPath(this.job.target) + DESIGN_DOCS).catch(() => null));
      const conflicts = await target.view('conflicts', { limit: 0 });
      result.conflicts = typeof conflicts.total_rows === 'number' ? conflicts.total_rows : null;
    } catch {
      /* reported as unknown */
    }
    return result;
  }

  /**
   * When the job's last checkpoint was written: the `end_time` of the newest session in CouchDB's
   * checkpoint document (`_local/<replication id>` in the target), or null where there is none (the
   * embedded server's replicator keeps no time in it).
   */
  private async checkpointTime(replicationId: string): Promise<string | null> {
    const base = replicationId.split('+')[0];
    if (!/^[0-9a-f]+$/i.test(base)) return null;
    const checkpoint = await this.couch
      .request<{ history?: { end_time?: string }[] }>('GET', docPath(this.job.target) + '/_local/' + base)
      .catch(() => null);
    const time = checkpoint && Array.isArray(checkpoint.history) && checkpoint.history[0] ? Date.parse(String(checkpoint.history[0].end_time)) : NaN;
    return Number.isFinite(time) ? new Date(time).toISOString() : null;
  }

  /** The replication job's state as CouchDB's scheduler reports it (cheap, for health checks). */
  async jobState(): Promise<{ state: string; error: string | null }> {
    const job = await this.couch
      .request<{ state?: string; info?: { error?: string } | null }>('GET', '/_scheduler/docs/_replicator/' + encodeURIComponent(this.docId))
      .catch((err) => (couchFailure(err).statusCode === 404 ? null : { state: 'unknown', info: { error: couchFailure(err).reason } }));
    if (job) return { state: job.state || 'unknown', error: job.info && typeof job.info.error === 'string' ? job.info.error : null };
    // No scheduler entry (the embedded server has no scheduler; CouchDB has none for a removed job): the document says.
    const doc = await this.couch.db<Record<string, unknown>>('_replicator').get(this.docId).catch(() => null);
    if (!doc) return { state: 'missing', error: 'its _replicator document ' + this.docId + ' is missing' };
    const state = typeof doc._replication_state === 'string' ? doc._replication_state : 'running';
    return { state: state === 'triggered' ? 'running' : state, error: typeof doc._replication_state_reason === 'string' ? doc._replication_state_reason : null };
  }

  /**
   * Pending changes, where CouchDB does not count them (the embedded server; a real CouchDB with a
   * selector): the upstream's current revisions (its whole feed, once per document) that the mirror
   * does not have yet, design documents and private scopes (never replicated) left out.
   */
  private async countPending(result: NativeReplicationStatus): Promise<void> {
    try {
      let since: unknown = 0;
      let pending = 0;
      for (let page = 0; page < 20; page++) {
        const url = withoutCredentials(this.source) + '/_changes?style=main_only&limit=10000&since=' + encodeURIComponent(String(since));
        const feed = (await this.json(url, this.sourceAuth())) as { results: { id: string; changes: { rev: string }[] }[]; last_seq: unknown };
        const wanted: Record<string, string[]> = {};
        for (const change of feed.results) {
          if (change.id.startsWith('_design/') || (this.job.skipped && this.job.skipped(change.id))) continue;
          wanted[change.id] = change.changes.map((c) => c.rev);
        }
        if (Object.keys(wanted).length) {
          const missing = await this.couch.db(this.job.target).request<Record<string, unknown>>('POST', '_revs_diff', wanted);
          pending += Object.keys(missing).length;
        }
        since = feed.last_seq;
        if (feed.results.length < 10000) {
          result.changesPending = pending;
          return;
        }
      }
    } catch {
      /* unknown */
    }
  }
}

/** The Basic authorization of the credentials in `url`, as headers (none when it has none). */
export function basicAuthOf(url: string): Record<string, string> {
  const parsed = new URL(url);
  if (!parsed.username) return {};
  return { authorization: 'Basic ' + Buffer.from(decodeURIComponent(parsed.username) + ':' + decodeURIComponent(parsed.password)).toString('base64') };
}

/**
 * A JSON answer of another CouchDB (`url` without credentials; they go in `headers`), through the
 * outbound request policy, bounded, redirects not followed (as the replication itself does not
 * follow them, with the credentials or without).
 */
export async function remoteJson(url: string, headers: Record<string, string>, outbound: OutboundPolicy): Promise<any> {
  const answer = await outboundRequest(new URL(url), {
    policy: outbound,
    headers: { accept: 'application/json', 'accept-encoding': 'gzip, deflate, br', ...headers },
    signal: AbortSignal.timeout(5000),
    maxBytes: 64 * 1024 * 1024,
    manualRedirects: true,
  });
  if (answer.status < 200 || answer.status >= 300) {
    answer.body.resume();
    throw Object.assign(new Error(withoutCredentials(url) + ' answered ' + answer.status + (answer.location ? ' (a redirect, which is not followed)' : '')), { statusCode: answer.status });
  }
  return JSON.parse((await readAll(answer.body)).toString('utf8'));
}

/** Two replication endpoints are the same when their URLs match without credentials. */
function sameEndpoint(live: unknown, wanted: string): boolean {
  const url = typeof live === 'string' ? live : live && typeof live === 'object' ? (live as { url?: string }).url : undefined;
  if (!url) return false;
  try {
    return withoutCredentials(url) === withoutCredentials(wanted);
  } catch {
    return false;
  }
}
