/**
 * Native replication from a CouchDB upstream (another instance of this registry, or any CouchDB
 * holding registry documents), managed through CouchDB's own `_replicator` database: one continuous
 * replication, design documents excluded by a selector, writing as the replication user (role
 * `registry-replicator`, not an admin) so that `_design/mirror` decides what may land. CouchDB keeps
 * its checkpoints, so it resumes where it stopped after any restart.
 */
import { createHmac } from 'crypto';
import { Logger } from 'pino';
import { REPLICATOR_ROLE } from '../couchapp/lib/mirror';
import { Couch, couchFailure, docPath } from '../gateway/couch';
import { namesByOrigin, REPLICATOR } from './mirror';

/** Design documents (and other `_` ids) stay where they are. */
export const NO_DESIGN_DOCS = { _id: { $regex: '^[^_]' } };

export interface NativeReplicationStatus {
  source: string;
  target: string;
  state: string;
  docsWritten: number | null;
  docWriteFailures: number | null;
  changesPending: number | null;
  upstream: { docCount: number | null; updateSeq: unknown };
  local: { docCount: number | null };
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

export class NativeReplication {
  readonly docId: string;

  constructor(
    private readonly couch: Couch,
    private readonly proxySecret: string,
    private readonly registryDb: string,
    private readonly source: string,
    private readonly log: Logger,
  ) {
    this.docId = 'registry-' + registryDb + '-from-upstream';
  }

  /** The `_users` document of the replication user, with its role and password. */
  private async ensureUser(): Promise<string> {
    const password = replicatorPassword(this.proxySecret);
    if (await this.couch.checkPassword(REPLICATOR.name, password)) return password;
    const users = this.couch.use<Record<string, unknown>>('_users');
    const id = 'org.couchdb.user:' + REPLICATOR.name;
    let rev: string | undefined;
    try {
      rev = ((await users.get(id)) as { _rev: string })._rev;
    } catch (err) {
      if (couchFailure(err).statusCode !== 404) throw err;
    }
    await users.insert({ _id: id, _rev: rev, name: REPLICATOR.name, type: 'user', roles: [REPLICATOR_ROLE], password } as Record<string, unknown>);
    return password;
  }

  /** Where CouchDB writes to: this registry's database, reached as the replication user. */
  private targetUrl(password: string): string {
    const url = new URL(docPath(this.registryDb), this.couch.url.origin);
    url.username = REPLICATOR.name;
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
      selector: NO_DESIGN_DOCS,
    };
    const db = this.couch.use<Record<string, unknown>>('_replicator');
    let live: Record<string, unknown> | null = null;
    try {
      live = (await db.get(this.docId)) as Record<string, unknown>;
    } catch (err) {
      if (couchFailure(err).statusCode !== 404) throw err;
    }
    if (live) {
      // CouchDB shows credentials in the URLs redacted; compare what can be compared.
      const same = sameEndpoint(live.source, wanted.source) && sameEndpoint(live.target, wanted.target) && JSON.stringify(live.selector) === JSON.stringify(wanted.selector);
      if (same && live._replication_state !== 'error' && live._replication_state !== 'failed') return;
      await db.destroy(this.docId, live._rev as string);
    }
    await db.insert(wanted);
    this.log.info({ source: withoutCredentials(this.source) }, 'replication: continuous CouchDB replication set up');
  }

  private sourceAuth(): Record<string, string> {
    const source = new URL(this.source);
    if (!source.username) return {};
    return { authorization: 'Basic ' + Buffer.from(decodeURIComponent(source.username) + ':' + decodeURIComponent(source.password)).toString('base64') };
  }

  /** Local packages whose name the upstream also has: its copies are refused by `_design/mirror`. */
  async shadowedNames(registryId: string): Promise<string[]> {
    const names = await namesByOrigin(this.couch, this.registryDb, registryId);
    if (names.length === 0) return [];
    try {
      const response = await fetch(withoutCredentials(this.source) + '/_all_docs', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...this.sourceAuth() },
        body: JSON.stringify({ keys: names }),
        signal: AbortSignal.timeout(5000),
      });
      if (!response.ok) return [];
      const rows = ((await response.json()) as { rows: { key: string; value?: { deleted?: boolean } }[] }).rows;
      return rows.filter((r) => r.value && !r.value.deleted).map((r) => r.key);
    } catch {
      return [];
    }
  }

  private async json(url: string, headers: Record<string, string> = {}): Promise<any> {
    const response = await fetch(url, { headers: { accept: 'application/json', ...headers }, signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(withoutCredentials(url) + ' answered ' + response.status);
    return response.json();
  }

  async status(): Promise<NativeReplicationStatus> {
    const result: NativeReplicationStatus = {
      source: withoutCredentials(this.source),
      target: this.registryDb,
      state: 'unknown',
      docsWritten: null,
      docWriteFailures: null,
      changesPending: null,
      upstream: { docCount: null, updateSeq: null },
      local: { docCount: null },
      error: null,
    };
    try {
      const doc = (await this.couch.use<Record<string, any>>('_replicator').get(this.docId)) as Record<string, any>;
      result.state = doc._replication_state || 'running';
      if (doc._replication_state_reason) result.error = String(doc._replication_state_reason);
      const stats = doc._replication_stats || {};
      if (typeof stats.docs_written === 'number') result.docsWritten = stats.docs_written;
      if (typeof stats.doc_write_failures === 'number') result.docWriteFailures = stats.doc_write_failures;
    } catch (err) {
      result.state = 'missing';
      result.error = couchFailure(err).reason;
    }
    // A real CouchDB reports the running job in its scheduler.
    try {
      const response = await this.couch.adminFetch('/_scheduler/docs/_replicator/' + encodeURIComponent(this.docId));
      if (response.ok) {
        const job = (await response.json()) as { state?: string; info?: Record<string, any> | null };
        if (job.state) result.state = job.state;
        const info = job.info || {};
        if (typeof info.docs_written === 'number') result.docsWritten = info.docs_written;
        if (typeof info.doc_write_failures === 'number') result.docWriteFailures = info.doc_write_failures;
        if (typeof info.changes_pending === 'number') result.changesPending = info.changes_pending;
        if (typeof info.error === 'string') result.error = info.error;
      } else {
        await response.body?.cancel();
      }
    } catch {
      /* the embedded server has no scheduler */
    }
    try {
      const info = await this.json(withoutCredentials(this.source), this.sourceAuth());
      result.upstream = { docCount: info.doc_count ?? null, updateSeq: info.update_seq ?? null };
    } catch (err) {
      result.error = result.error || 'the upstream CouchDB cannot be reached: ' + (err as Error).message;
    }
    try {
      const response = await this.couch.adminFetch(docPath(this.registryDb));
      result.local.docCount = ((await response.json()) as { doc_count?: number }).doc_count ?? null;
    } catch {
      /* reported as unknown */
    }
    return result;
  }
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
