/**
 * The one way the registry reaches CouchDB (gateway, replication, start-up): a small typed surface
 * over its HTTP API. Reads and set-up run as the admin, authenticated through CouchDB's proxy
 * authentication (an HMAC check instead of a password hash per request); writes of packages run as
 * the real user, so that `validate_doc_update` sees who asked. Tarballs stream through without being
 * held in memory. A refusal is thrown with CouchDB's status, `error` and `reason` (`couchFailure`).
 */
import http from 'http';
import https from 'https';
import { createReadStream, statSync } from 'fs';
import { PassThrough, Readable } from 'stream';
import Nano from 'nano';
import { DESIGN } from '../couchapp/design';
import { GATEWAY_ROLE } from '../core/provenance';
import { Authenticator, StoredUser } from './authentication';
import { proxyHeaders } from './proxy-auth';

export interface Identity {
  name: string;
  roles: string[];
}

export interface CouchFailure {
  statusCode: number;
  error: string;
  reason: string;
}

/** The `error` of a write CouchDB answered 202 that could not be confirmed on a quorum (answered 503, retried by clients). */
export const NOT_DURABLE = 'not_durable';

/** Whether `err` is a write that could not be confirmed durable (see `Couch.confirmDurable`). */
export function isNotDurable(err: unknown): boolean {
  const e = err as { statusCode?: number; error?: string } | null;
  return !!e && e.statusCode === 503 && e.error === NOT_DURABLE;
}

/** The status, `error` and `reason` of a failed nano request, or of a failure to reach CouchDB (502). */
export function couchFailure(err: unknown): CouchFailure {
  const e = err as { statusCode?: number; error?: string; reason?: string; message?: string };
  if (typeof e.statusCode === 'number') {
    return { statusCode: e.statusCode, error: e.error || 'error', reason: e.reason || e.message || 'CouchDB refused the request' };
  }
  return { statusCode: 502, error: 'unreachable', reason: 'CouchDB could not be reached: ' + (e.message || String(err)) };
}

/**
 * Reads a real CouchDB's proxy-authentication secret with the admin's password (the one request that
 * uses it), and checks that proxy authentication is switched on with a secret.
 */
export async function readProxySecret(adminUrl: string): Promise<string> {
  const url = new URL(adminUrl);
  const authorization = 'Basic ' + Buffer.from(decodeURIComponent(url.username) + ':' + decodeURIComponent(url.password)).toString('base64');
  const config = async (path: string): Promise<string | null> => {
    let response: Response;
    try {
      response = await fetch(new URL('/_node/_local/_config/' + path, url.origin), { headers: { authorization, accept: 'application/json' } });
    } catch (err) {
      throw new Error('Cannot read the CouchDB configuration at ' + url.origin + ': ' + (err as Error).message, { cause: err });
    }
    const answer = (await response.json().catch(() => ({}))) as unknown;
    if (response.status === 404) return null;
    if (!response.ok) {
      const reason = (answer as { reason?: string }).reason || 'CouchDB answered ' + response.status;
      throw new Error('Cannot read the CouchDB configuration at ' + url.origin + ': ' + reason);
    }
    return answer as string;
  };
  const handlers = (await config('chttpd/authentication_handlers')) || '';
  const useSecret = await config('chttpd_auth/proxy_use_secret');
  const secret = await config('chttpd_auth/secret');
  if (!handlers.includes('proxy_authentication_handler') || useSecret !== 'true' || !secret) {
    throw new Error(
      'CouchDB at ' + url.origin + ' must have proxy authentication with a secret: use couchdb/local.ini ' +
        '([chttpd] authentication_handlers with proxy_authentication_handler, [chttpd_auth] proxy_use_secret = true and secret), then restart CouchDB.',
    );
  }
  return secret;
}

/** An answer's JSON, or `{}` when it is not JSON. */
function parseAnswer(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

/** CouchDB's refusal as an error with its status, `error` and `reason`, as nano throws them. */
function refusal(status: number, answer: { error?: string; reason?: string }): Error {
  const reason = answer.reason || 'CouchDB answered ' + status;
  return Object.assign(new Error(reason), { statusCode: status, error: answer.error || 'error', reason });
}

/** The path of a database, of a document in it, or of a document's attachment, each part escaped. */
export function docPath(db: string, id?: string, attachment?: string): string {
  return '/' + encodeURIComponent(db) + (id === undefined ? '' : '/' + encodeURIComponent(id)) + (attachment === undefined ? '' : '/' + encodeURIComponent(attachment));
}

/** Whether `name` is a dot segment, which URLs resolve away (`.` and `..`, also escaped as `%2E`): no request can name such a document or attachment. */
const unaddressable = (name: string): boolean => name === '.' || name === '..';

/** The path of document `id`: `_design/x` and `_local/x` keep their slash, as CouchDB names them; any other id is escaped whole. */
function documentPath(db: string, id: string): string {
  const special = /^(_design|_local)\/([^/]+)$/.exec(id);
  return docPath(db) + '/' + (special ? special[1] + '/' + encodeURIComponent(special[2]) : encodeURIComponent(id));
}

/**
 * Reads the embedded server answers in this process (`EmbeddedCouch.local`): the server admin's plain
 * read of a document and of an attachment, as it answers them over HTTP. Each returns undefined when
 * it cannot answer that one here (then it is asked over HTTP), null when there is no such document or
 * attachment (or a deleted document).
 */
export interface LocalReads {
  document(db: string, id: string): Promise<Record<string, unknown> | null> | undefined;
  attachment(db: string, id: string, file: string): Promise<{ data: Buffer; etag: string; contentType: string } | null> | undefined;
  /** The database's `update_seq`, as `GET /{db}` answers it. */
  position(db: string): Promise<number> | undefined;
  /**
   * The writes to the database that can leave conflicting revisions (`new_edits: false`): under way,
   * and done since this process started. Read after the position, they say whether any such write
   * may be in what the position counts.
   */
  conflictingWrites(db: string): { running: number; done: number } | undefined;
  /**
   * The winning revision of document `id` from its revision tree alone (no document read), null when
   * there is none or it is deleted; undefined where it is not read in this process.
   */
  revision?(db: string, id: string): Promise<string | null> | undefined;
  /**
   * What the caller knows of the attachments of document `id` at revision `rev` (their stubs: type
   * and digest), kept for the first read of each, unless they are known already. Only ever used for
   * that revision; an attachment the store does not have under that digest is read the usual way.
   */
  knowAttachments?(db: string, id: string, rev: string, stubs: Record<string, { content_type: string; digest: string }>): void;
}

/** CouchDB's answer for an attachment (or document) that is not there, made in this process. */
const missingAttachment = (): AttachmentAnswer => answerInMemory(404, { 'content-type': 'application/json' }, Buffer.from('{"error":"not_found","reason":"missing"}\n'));

/** An attachment's answer as it streams: CouchDB's over HTTP, or one read in this process. */
export type AttachmentAnswer = Readable & { statusCode?: number; headers: http.IncomingHttpHeaders; complete: boolean };

/** An answer made in this process, shaped like the HTTP answer it stands for. */
function answerInMemory(statusCode: number, headers: http.IncomingHttpHeaders, data?: Buffer): AttachmentAnswer {
  const stream = new PassThrough() as PassThrough & { statusCode?: number; headers: http.IncomingHttpHeaders; complete: boolean };
  stream.statusCode = statusCode;
  stream.headers = headers;
  stream.complete = true;
  stream.end(data);
  return stream;
}

/** A row of a view: its document id, key and value. */
export interface ViewRow<V> {
  id: string;
  key: unknown;
  value: V;
}

export interface ViewParams {
  key?: unknown;
  startkey?: unknown;
  endkey?: unknown;
  limit?: number;
  skip?: number;
  descending?: boolean;
  reduce?: boolean;
  /** With a reduce: group the rows by the first this many parts of their keys. */
  group_level?: number;
  include_docs?: boolean;
}

/** A stored document: what was written plus its `_id` and `_rev`. */
export type Stored<T> = T & { _id: string; _rev: string };

/** One database, as the admin: documents by id (null when missing), views, queries. */
export class Database<T extends object> {
  private readonly scope: Nano.DocumentScope<T>;

  constructor(
    private readonly couch: Couch,
    readonly name: string,
    server: Nano.ServerScope,
  ) {
    this.scope = server.use<T>(name);
  }

  /** The document `id`, or null when there is none (or a deleted one). */
  get(id: string, params?: { attachments?: boolean; revs?: boolean; conflicts?: boolean; r?: number }): Promise<Stored<T> | null> {
    // No URL names these ids (`/db/.`, even `/db/%2E`, is the database itself): no document has them.
    if (unaddressable(id)) return Promise.resolve(null);
    // A plain read of the embedded server runs in this process, where it can.
    const local = params || !this.couch.local ? undefined : this.couch.local.document(this.name, id);
    if (local) return this.couch.timed('get', () => local.then((doc) => doc as Stored<T> | null, () => this.get(id, {})));
    const query = params ? Object.entries(params).map(([key, value]) => key + '=' + String(value)).join('&') : '';
    return this.couch.timed('get', async () => {
      const path = this.path(id);
      const { status, text } = await this.couch.exchange('GET', path + (query ? '?' + query : ''), { accept: 'application/json' });
      if (status === 404) return null;
      const answer = parseAnswer(text);
      if (status < 200 || status >= 300) throw refusal(status, answer as { error?: string; reason?: string });
      return answer as Stored<T>;
    });
  }

  /**
   * The winning revision of `id` (null when there is none, or a deleted one) where it can be read
   * without reading the document (the embedded server, in this process); undefined elsewhere.
   */
  revision(id: string): Promise<string | null> | undefined {
    if (unaddressable(id) || id.startsWith('_')) return undefined;
    return this.couch.local?.revision?.(this.name, id);
  }

  /** Hands the stubs of `id`'s attachments at `rev` to the in-process reads (see `LocalReads.knowAttachments`). */
  knowAttachments(id: string, rev: string, stubs: Record<string, { content_type: string; digest: string }>): void {
    this.couch.local?.knowAttachments?.(this.name, id, rev, stubs);
  }

  /**
   * The winning revision of `id` with its `_conflicts`, read with `r` = the write quorum, so that
   * every revision a write confirmed (`confirmDurable`) is among them; null when there is none.
   */
  async winner(id: string): Promise<(Stored<T> & { _conflicts?: string[] }) | null> {
    return this.get(id, { conflicts: true, r: await this.couch.writeQuorum(this.name) });
  }

  /** The live documents of `ids` that exist, by id (one `_all_docs` request). */
  async getMany(ids: string[]): Promise<Map<string, Stored<T>>> {
    const found = new Map<string, Stored<T>>();
    if (ids.length === 0) return found;
    const answer = await this.request<{ rows: { key: string; doc?: Stored<T> | null }[] }>('POST', '_all_docs?include_docs=true', { keys: ids });
    for (const row of answer.rows) if (row.doc) found.set(row.key, row.doc);
    return found;
  }

  /** Writes a document as the admin (a new one, or over `_rev`); durable once answered (`confirmDurable`). */
  put(doc: T & { _id: string; _rev?: string }): Promise<{ id: string; rev: string }> {
    return this.couch.timed('put', async () => {
      const result = await this.couch.request<{ id: string; rev: string }>('PUT', this.path(doc._id), doc);
      return { id: result.id, rev: result.rev };
    });
  }

  /** Deletes revision `rev` of `id`. */
  remove(id: string, rev: string): Promise<void> {
    return this.couch.timed('remove', async () => void (await this.couch.request('DELETE', this.path(id) + '?rev=' + encodeURIComponent(rev))));
  }

  private path(id: string): string {
    return documentPath(this.name, id);
  }

  /** A view of `_design/app` (or of `design`). */
  view<V>(view: string, params: ViewParams = {}, design: string = DESIGN.app): Promise<{ rows: ViewRow<V>[]; total_rows?: number }> {
    return this.couch.timed('view', async () => (await this.scope.view<V>(design, view, params as Nano.DocumentViewParams)) as unknown as { rows: ViewRow<V>[]; total_rows?: number });
  }

  /** A Mango query: the matching documents. */
  find(query: { selector: Record<string, unknown>; sort?: Record<string, 'asc' | 'desc'>[]; limit?: number }): Promise<Stored<T>[]> {
    return this.couch.timed('find', async () => (await this.scope.find(query as Nano.MangoQuery)).docs as unknown as Stored<T>[]);
  }

  /** Any other request on this database, as the admin, answered as JSON (`_security`, `_bulk_docs`, `_index`, `_revs_diff`). */
  request<R>(method: string, path: string, body?: unknown): Promise<R> {
    return this.couch.request<R>(method, docPath(this.name) + '/' + path, body);
  }
}

export class Couch {
  private readonly server: Nano.ServerScope;
  /** The CouchDB origin, without credentials. */
  readonly url: URL;
  private readonly adminHeaders: Record<string, string>;

  /**
   * `adminUrl` carries the admin's name (and password, used only to read the proxy secret at start).
   * Requests authenticate as that admin through proxy authentication: an HMAC check in CouchDB instead
   * of a password hash on every request.
   */
  private readonly passwords: Authenticator;
  /** Where this CouchDB's configuration is read, once known. */
  private configBase?: string;

  constructor(
    adminUrl: string,
    private readonly proxySecret: string,
  ) {
    const parsed = new URL(adminUrl);
    this.url = new URL(parsed.origin);
    // Answers uncompressed: CouchDB is a neighbour, and the embedded server would gzip every document
    // only for this gateway to unzip it (fetch asks for gzip unless told otherwise).
    this.adminHeaders = { ...proxyHeaders(proxySecret, decodeURIComponent(parsed.username) || 'admin', ['_admin']), 'accept-encoding': 'identity' };
    this.server = Nano({ url: parsed.origin, headers: this.adminHeaders } as Nano.Configuration);
    this.passwords = new Authenticator({ secret: proxySecret, adminHash: (name) => this.adminHash(name), readUser: (name) => this.readUserDoc(name) });
  }

  /**
   * The embedded server's reads in this process, when the gateway runs in the same process as the
   * server (never with COUCHDB_URL): plain document and attachment reads as the admin skip HTTP.
   */
  local?: LocalReads;

  /** Told of every request to CouchDB: what it was, how long it took, whether it succeeded (for metrics). */
  observe?: (operation: string, seconds: number, ok: boolean) => void;

  /** Runs one request to CouchDB, timed for `observe`. */
  async timed<R>(operation: string, work: () => Promise<R>): Promise<R> {
    const started = process.hrtime.bigint();
    let ok = false;
    try {
      const result = await work();
      ok = true;
      return result;
    } finally {
      this.observe?.(operation, Number(process.hrtime.bigint() - started) / 1e9, ok);
    }
  }

  /** The proxy-authentication headers that make CouchDB take a request for `name` with `roles` (the admin proxy's). */
  proxyAuthHeaders(name: string, roles: string[]): Record<string, string> {
    return proxyHeaders(this.proxySecret, name, roles);
  }

  /** A database, reached as the admin. */
  db<T extends object>(name: string): Database<T> {
    return new Database<T>(this, name, this.server);
  }

  /** Creates a database; false when it exists already. */
  async createDatabase(name: string): Promise<boolean> {
    try {
      await this.server.db.create(name);
      return true;
    } catch (err) {
      if (couchFailure(err).statusCode === 412) return false;
      throw err;
    }
  }

  /**
   * A request as the admin to any CouchDB path (`/_users/_security`, `/{db}` for its position),
   * answered as JSON. `signal` abandons it.
   */
  request<R>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<R> {
    const headers: Record<string, string> = body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' };
    return this.timed('request', () => this.answered(method, path, headers, body === undefined ? undefined : JSON.stringify(body), true, signal));
  }

  /**
   * Writes a document as `who` (proxy authentication), so that CouchDB validates it as that user.
   * The request carries the proxy headers only, never the admin credentials (nano would add them).
   */
  putAs(who: Identity, db: string, doc: { _id: string; [field: string]: unknown }): Promise<{ id: string; rev: string }> {
    return this.requestAs(who, 'PUT', docPath(db, doc._id), JSON.stringify(doc), 'application/json');
  }

  /** A write request to CouchDB as `who`; a refusal is thrown with CouchDB's status, `error` and `reason`. */
  requestAs(who: Identity, method: string, path: string, body: string | Buffer, contentType: string): Promise<any> {
    return this.timed('write-as-user', () => this.answerAs(who, method, path, body, contentType));
  }

  /** Streams a file to CouchDB as `who` (an attachment PUT); a refusal is thrown like `requestAs`'s. */
  async putFileAs(who: Identity, path: string, file: string, contentType: string): Promise<{ rev: string }> {
    const answer = await this.timed('attachment-put', () => this.answerAs(who, 'PUT', path, { file }, contentType));
    return { rev: answer.rev as string };
  }

  /**
   * A request as `who`, answered as JSON; a refusal is thrown with CouchDB's status, `error` and `reason`.
   * The gateway's role is added: the package databases let only the gateway, replication and admins
   * write (and read), and only proxy authentication, whose token needs the secret, can assert it.
   */
  private answerAs(who: Identity, method: string, path: string, body: string | Buffer | { file: string }, contentType: string): Promise<any> {
    const roles = who.roles.indexOf(GATEWAY_ROLE) === -1 ? [...who.roles, GATEWAY_ROLE] : who.roles;
    const headers = { 'content-type': contentType, accept: 'application/json', ...proxyHeaders(this.proxySecret, who.name, roles) };
    return this.answered(method, path, headers, body, false);
  }

  /** `exchange`'s answer as JSON; a refusal is thrown with CouchDB's status, `error` and `reason`. */
  private async answered(method: string, path: string, headers: Record<string, string>, body: string | Buffer | { file: string } | undefined, admin: boolean, signal?: AbortSignal): Promise<any> {
    const { status, text } = await this.exchange(method, path, headers, body, admin, signal);
    const answer = parseAnswer(text) as { error?: string; reason?: string };
    if (status < 200 || status >= 300) throw refusal(status, answer);
    if (status === 202 && method !== 'GET' && method !== 'HEAD') await this.confirmDurable(path, answer);
    return answer;
  }

  /** The write quorum of each database (`cluster.w` of `GET /{db}`), once read. */
  private readonly quorums = new Map<string, number>();

  /** How long to wait before each read that confirms a write answered 202 (about 4 s in all). */
  static confirmDelays = [50, 150, 300, 600, 1000, 2000];

  /**
   * A write CouchDB answered `202 Accepted` is on fewer copies than the write quorum: the node that
   * took it may fail before the others have it, and the revision then lives on, if at all, as a losing
   * conflict. It counts as done only once a read with `r` = the quorum returns that very revision
   * (CouchDB's read repair copies it to the copies that lack it); else the caller gets a 503
   * `not_durable` error, which clients retry (a retried publish of the same bytes is then a no-op).
   * The embedded server never answers 202: the path is tested against a stand-in (test/unit/durable.test.ts).
   */
  private async confirmDurable(path: string, answer: unknown): Promise<void> {
    const db = decodeURIComponent(new URL(path, this.url.origin).pathname.split('/')[1] || '');
    const written = (Array.isArray(answer) ? answer : [answer]) as { id?: string; rev?: string; error?: string }[];
    for (const row of written) {
      if (!row || typeof row.id !== 'string' || typeof row.rev !== 'string' || row.error) continue;
      if (!(await this.confirmRevision(db, row.id, row.rev))) {
        throw refusal(503, {
          error: NOT_DURABLE,
          reason: 'CouchDB stored the change on fewer copies than its write quorum and could not confirm it; run the command again',
        });
      }
    }
  }

  /** Whether revision `rev` of `id` in `db` reads back with `r` = the write quorum, within `confirmDelays`. */
  private async confirmRevision(db: string, id: string, rev: string): Promise<boolean> {
    const quorum = await this.writeQuorum(db);
    const path = documentPath(db, id);
    for (const delay of Couch.confirmDelays) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      try {
        const { status, text } = await this.exchange('GET', path + '?rev=' + encodeURIComponent(rev) + '&r=' + quorum, { accept: 'application/json' });
        if (status === 200 && (parseAnswer(text) as { _rev?: string })._rev === rev) return true;
      } catch {
        // CouchDB not reachable this time: try again.
      }
    }
    return false;
  }

  /**
   * `cluster.w` of a database (2 when CouchDB does not say: n=3's quorum; 1 on a single node and the
   * embedded server): a read with this `r` sees every revision a write confirmed durable.
   */
  async writeQuorum(db: string): Promise<number> {
    const known = this.quorums.get(db);
    if (known) return known;
    let quorum = 2;
    try {
      const { status, text } = await this.exchange('GET', docPath(db), { accept: 'application/json' });
      const cluster = status === 200 ? (parseAnswer(text) as { cluster?: { n?: number; w?: number } }).cluster : undefined;
      if (cluster && typeof cluster.w === 'number' && cluster.w > 0) quorum = cluster.w;
      else if (cluster && typeof cluster.n === 'number' && cluster.n > 0) quorum = Math.floor(cluster.n / 2) + 1;
      this.quorums.set(db, quorum);
    } catch {
      // Unknown for now: the default, read again next time.
    }
    return quorum;
  }

  /** Node's HTTP client for this CouchDB's protocol. */
  private get client(): typeof http | typeof https {
    return this.url.protocol === 'https:' ? https : http;
  }

  /**
   * One request and its whole answer as text, over Node's HTTP client (its agent keeps connections
   * open): the gateway's most frequent requests (a document read, a write) cost a third of what
   * `fetch` and nano cost around them. The body is text, bytes, or a file streamed from disk. As the
   * admin unless `admin` is false (the caller's headers then say who asks). Answers are asked
   * uncompressed. `signal` abandons it (rejected with the signal's reason).
   */
  exchange(method: string, path: string, headers: Record<string, string>, body?: string | Buffer | { file: string }, admin = true, signal?: AbortSignal): Promise<{ status: number; text: string }> {
    const sent = { ...headers, ...(admin ? this.adminHeaders : { 'accept-encoding': 'identity' }) } as Record<string, string | number>;
    const file = body !== undefined && typeof body === 'object' && !Buffer.isBuffer(body) ? body.file : undefined;
    if (file !== undefined) sent['content-length'] = statSync(file).size;
    else if (body !== undefined) sent['content-length'] = Buffer.byteLength(body as string | Buffer);
    return new Promise((resolve, reject) => {
      const request = this.client.request(new URL(path, this.url.origin), { method, headers: sent, signal }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => resolve({ status: response.statusCode || 502, text: Buffer.concat(chunks).toString('utf8') }));
      });
      request.on('error', reject);
      if (file === undefined) return void request.end(body as string | Buffer | undefined);
      const stream = createReadStream(file);
      stream.on('error', (err) => request.destroy(err));
      stream.pipe(request);
    });
  }

  /**
   * Checks a name and password against CouchDB's accounts (`_users`, and the server admins of its
   * configuration) as CouchDB itself would, without asking CouchDB to log in: CouchDB's lock-out
   * (`[chttpd_auth_lockout]`) would count every failure at the gateway's address, so anyone could lock
   * any account for everyone with a few guesses. The gateway's own throttle stands in for it.
   */
  checkPassword(name: string, password: string): Promise<Identity | null> {
    return this.passwords.logIn(name, password) as Promise<Identity | null>;
  }

  private async readUserDoc(name: string): Promise<StoredUser | null> {
    const response = await this.adminFetch(docPath('_users', 'org.couchdb.user:' + name));
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    if (!response.ok) throw new Error('CouchDB answered ' + response.status + ' for a _users document');
    return (await response.json()) as StoredUser;
  }

  /** A server admin's password hash from CouchDB's configuration (`/_node/_local/_config`, or `/_config` on the embedded server). */
  private async adminHash(name: string): Promise<unknown> {
    for (const base of this.configBase ? [this.configBase] : ['/_node/_local/_config', '/_config']) {
      const response = await this.adminFetch(base + '/admins/' + encodeURIComponent(name));
      if (response.ok) {
        this.configBase = base;
        return response.json();
      }
      const body = (await response.json().catch(() => ({}))) as { reason?: string };
      if (response.status === 404 && body.reason === 'unknown_config_value') {
        this.configBase = base;
        return undefined;
      }
    }
    return undefined;
  }

  /** The current revision of each of `ids` that has a live document in `db` (missing and deleted ones left out). */
  async liveRevs(db: string, ids: string[]): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    if (ids.length === 0) return found;
    const answer = await this.request<{ rows: { key: string; value?: { rev: string; deleted?: boolean } }[] }>('POST', docPath(db) + '/_all_docs', { keys: ids });
    for (const row of answer.rows) if (row.value && !row.value.deleted) found.set(row.key, row.value.rev);
    return found;
  }

  /** A request to CouchDB as admin, answered as a fetch Response (for streams and long polls). */
  adminFetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(new URL(path, this.url.origin), { ...init, headers: { accept: 'application/json', ...(init.headers as Record<string, string>), ...this.adminHeaders } });
  }

  /**
   * Attachment `file` of document `id` of `db`, as the admin: read in this process from the embedded
   * server (answering 304 to a matching `If-None-Match`, as it does over HTTP), else streamed from CouchDB.
   */
  async attachment(db: string, id: string, file: string, headers: Record<string, string> = {}): Promise<AttachmentAnswer> {
    if (unaddressable(id) || unaddressable(file)) return missingAttachment();
    const local = this.local?.attachment(db, id, file);
    const found = local ? await this.timed('attachment-get', () => local).catch(() => undefined) : undefined;
    if (found === undefined) return this.streamGet(docPath(db, id, file), headers) as Promise<AttachmentAnswer>;
    if (found === null) return missingAttachment();
    if (headers['if-none-match'] === found.etag) return answerInMemory(304, { etag: found.etag });
    return answerInMemory(200, { etag: found.etag, 'content-type': found.contentType, 'content-length': String(found.data.length) }, found.data);
  }

  /** Opens a GET of a CouchDB path as admin and hands back the raw response for streaming. */
  streamGet(path: string, headers: Record<string, string> = {}): Promise<http.IncomingMessage> {
    // Timed until the answer's headers arrive; the body streams to the client afterwards.
    return this.timed('attachment-get', () => new Promise((resolve, reject) => {
      const request = this.client.get(
        new URL(path, this.url.origin),
        { headers: { ...headers, ...this.adminHeaders } },
        resolve,
      );
      request.on('error', reject);
    }));
  }
}
