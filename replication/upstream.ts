/**
 * The HTTP client of an npm registry upstream: packuments, tarball downloads, POSTs (audit,
 * advisories) and the words for what went wrong, one client per upstream with its time limit, its
 * token (sent to that upstream's origin only) and its counts. Used by the mirror (pull-through, the
 * feed follower) and by the gateway's forwarding. `outboundRequest` is the one client of every
 * request of the registry to another host.
 */
import { createHash } from 'crypto';
import http, { IncomingMessage } from 'http';
import https from 'https';
import { PassThrough, Readable, Transform } from 'stream';
import { brotliDecompressSync, createBrotliDecompress, createGunzip, createInflate, gunzipSync, inflateSync } from 'zlib';
import { UpstreamPackument } from '../core/mirrored';
import { OriginValidators } from '../core/types';
import { jsonDepth } from '../lib/json-depth';
import { Config, OutboundPolicy, UpstreamConfig } from '../config';

/** The path of a package (and of something under it) on an npm registry: `/@scope%2fname/-/file.tgz`. */
export function upstreamPath(name: string, rest: string[]): string {
  const escaped = name.startsWith('@') ? '@' + encodeURIComponent(name.slice(1)) : encodeURIComponent(name);
  return '/' + escaped + rest.map((part) => '/' + encodeURIComponent(part)).join('');
}

/** What went wrong with a request that got no answer: `timedOut`, and the words for it ("is unreachable (ECONNREFUSED)"). */
export function fetchFailure(err: unknown): { timedOut: boolean; words: string } {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string } };
  const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
  if (!timedOut && typeof e.code === 'string' && e.code.startsWith('Z_')) return { timedOut, words: 'sent an answer that cannot be decoded (' + e.message + ')' };
  if (e.code === 'EOUTBOUND') return { timedOut, words: 'was not asked: ' + e.message };
  if (e.code === 'ETOOLARGE' || e.code === 'EENCODED') return { timedOut, words: e.message + '; it was refused' };
  return { timedOut, words: timedOut ? 'did not answer in time' : 'is unreachable (' + (e.cause?.code || e.code || e.message) + ')' };
}

/** An answer of the upstream: its status, and its body (decoded), to be read or dropped. */
export interface UpstreamAnswer {
  status: number;
  /** The length the upstream declared for the body as sent (null when it did not, or when it was encoded). */
  length: number | null;
  /** Where a redirect not followed points (`redirects: 0`). */
  location?: string;
  /** The answer's headers (absent on answers made here). */
  headers?: IncomingMessage['headers'];
  body: Readable;
}

/** The upstream answered 304: the packument did not change since the validators sent. */
export const NOT_MODIFIED = Symbol('not modified');

/** A packument fetched from the upstream: the object, the length of its JSON, and its validators. */
export interface FetchedPackument {
  body: UpstreamPackument;
  bytes: number;
  validators: OriginValidators;
}

/** A validator header (`ETag`, `Last-Modified`) worth keeping: a short line of printable characters. */
function validator(value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' && value.length <= 200 && /^[\x20-\x7e]+$/.test(value) ? value : undefined;
}

const ignore = (): void => undefined;

/** Redirects followed at most. */
const MAX_REDIRECTS = 5;

/** A body that grew beyond what was allowed for it (a decompression bomb, a tarball larger than declared). */
export class AnswerTooLarge extends Error {
  readonly code = 'ETOOLARGE';
}

/** `body`, ended with `AnswerTooLarge` as soon as more than `max` bytes came through. */
export function capped(body: Readable, max: number, what: string, setting?: string): Readable {
  let seen = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length;
      if (seen > max) return done(new AnswerTooLarge('sent ' + what + ' larger than ' + max + ' bytes' + (setting ? ' (' + setting + ')' : '')));
      done(null, chunk);
    },
  });
  limited.on('error', ignore);
  body.on('error', (err) => limited.destroy(err));
  limited.on('close', () => body.destroy());
  return body.pipe(limited);
}

/**
 * An encoded answer of a declared length up to this is read whole and decoded at once (a packument
 * of the feed: a stream decoder per answer cost 8 times the CPU of decoding it in one call, and was
 * the follower's largest cost); a longer one, or one of unknown length, is decoded as it streams.
 */
const DECODE_AT_ONCE_BYTES = 64 * 1024;

/**
 * `response` (of `length` bytes, at most `DECODE_AT_ONCE_BYTES`, in `encoding`) decoded in one call
 * once it has all arrived; more than `maxBytes` decoded ends it with `AnswerTooLarge`, as `capped` does.
 */
function decodedAtOnce(response: IncomingMessage, encoding: 'gzip' | 'deflate' | 'br', maxBytes: number | undefined, setting: string | undefined): Readable {
  const decoded = new PassThrough();
  decoded.on('error', ignore);
  let settle!: { resolve: (data: Buffer) => void; reject: (err: Error) => void };
  const whole = new Promise<Buffer>((resolve, reject) => (settle = { resolve, reject }));
  whole.catch(ignore);
  wholeBodies.set(decoded, whole);
  const destroy = decoded.destroy.bind(decoded);
  decoded.destroy = (err?: Error) => {
    settle.reject(err || new Error('the answer was dropped'));
    return destroy(err);
  };
  const chunks: Buffer[] = [];
  response.on('data', (chunk: Buffer) => chunks.push(chunk));
  response.on('error', (err) => decoded.destroy(err));
  response.on('close', () => {
    if (!response.complete) decoded.destroy(new Error('the connection closed before the whole answer arrived'));
  });
  response.on('end', () => {
    // One byte more than allowed is enough to know it is too large.
    const limit = maxBytes !== undefined ? { maxOutputLength: maxBytes + 1 } : {};
    let data: Buffer;
    try {
      const raw = Buffer.concat(chunks);
      data = encoding === 'gzip' ? gunzipSync(raw, limit) : encoding === 'deflate' ? inflateSync(raw, limit) : brotliDecompressSync(raw, limit);
      if (maxBytes !== undefined && data.length > maxBytes) throw Object.assign(new Error('too large'), { code: 'ERR_BUFFER_TOO_LARGE' });
    } catch (err) {
      const tooLarge = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
      decoded.destroy(tooLarge ? new AnswerTooLarge('sent an answer larger than ' + maxBytes + ' bytes' + (setting ? ' (' + setting + ')' : '')) : (err as Error));
      return;
    }
    settle.resolve(data);
    decoded.end(data);
  });
  // Dropping the decoded body drops the connection's answer too.
  decoded.on('close', () => response.destroy());
  return decoded;
}

/**
 * An answer sent in a Content-Encoding although the request asked for none (`Accept-Encoding:
 * identity`): a tarball's integrity is that of the bytes as published, and inflating what nobody
 * asked to be compressed only turns a few kilobytes into as much as the limits allow.
 */
export class EncodedAnswer extends Error {
  readonly code = 'EENCODED';
}

export interface OutboundRequest {
  /** The outbound policy every connection (each redirect hop too) must pass. */
  policy: OutboundPolicy;
  headers: Record<string, string>;
  signal: AbortSignal;
  method?: string;
  body?: string | Buffer;
  /** A redirect is the answer, not followed (webhook deliveries). */
  manualRedirects?: boolean;
  /** The most bytes of decoded body accepted (beyond, the body ends with `AnswerTooLarge`). */
  maxBytes?: number;
  /** The setting that sets `maxBytes`, named in the error. */
  maxBytesSetting?: string;
  /**
   * What is asked (`a tarball`) when it is asked unencoded (`Accept-Encoding: identity`): an answer
   * in any Content-Encoding is then refused (`EncodedAnswer`), never decoded.
   */
  unencoded?: string;
}

/**
 * A request of the registry to another host, over Node's HTTP client, whose agents keep connections
 * open (`fetch` and its web streams took about a sixth of the registry's CPU during an install through
 * pull-through): every hop asks the outbound policy first and connects only to addresses it allows.
 * Redirects are followed (a GET after them, each hop asking the policy again, credentials kept for
 * the same origin only); the answer once its headers arrived, its body decoded
 * (gzip, deflate, br) and bounded by `maxBytes`. `signal` abandons it.
 */
export function outboundRequest(url: URL, options: OutboundRequest, redirects = MAX_REDIRECTS): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
    if (!client) return reject(new Error('a link of protocol ' + url.protocol + ', which is not followed'));
    let connect: ReturnType<OutboundPolicy['connectOptions']>;
    try {
      connect = options.policy.connectOptions(url);
    } catch (err) {
      return reject(err);
    }
    const method = options.method || 'GET';
    const request = client.request(url, { method, headers: options.headers, signal: options.signal, lookup: connect.lookup as never }, (response: IncomingMessage) => {
      // An error reaches whoever reads the body; a body dropped unread (a redirect, an error answer)
      // must not take the process down with it.
      response.on('error', ignore);
      const status = response.statusCode || 502;
      const location = response.headers.location;
      if (status >= 300 && status < 400 && status !== 304 && location) {
        if (options.manualRedirects) return resolve({ status, length: null, location, body: response });
        response.resume();
        if (redirects === 0) return reject(new Error('more than ' + MAX_REDIRECTS + ' redirects'));
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return reject(new Error('a redirect to "' + location + '", which is not a URL'));
        }
        // Credentials go to the host they were meant for only (as browsers and fetch do).
        const headers = next.origin === url.origin ? options.headers : Object.fromEntries(Object.entries(options.headers).filter(([name]) => !/^(authorization|cookie)$/i.test(name)));
        return resolve(outboundRequest(next, { ...options, headers, method: 'GET', body: undefined }, redirects - 1));
      }
      const encoding = String(response.headers['content-encoding'] || 'identity').trim().toLowerCase();
      if (options.unencoded && encoding !== 'identity') {
        response.destroy();
        return reject(new EncodedAnswer('sent ' + options.unencoded + ' in the encoding "' + encoding + '" although it was asked for it unencoded (Accept-Encoding: identity)'));
      }
      const kind = encoding === 'gzip' || encoding === 'x-gzip' ? 'gzip' : encoding === 'deflate' ? 'deflate' : encoding === 'br' ? 'br' : null;
      if (!kind && encoding !== 'identity') {
        response.destroy();
        return reject(new Error('an answer in the encoding "' + encoding + '", which cannot be read'));
      }
      const declared = response.headers['content-length'];
      const declaredLength = declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : null;
      const length = !kind ? declaredLength : null;
      const atOnce = !!kind && declaredLength !== null && declaredLength <= DECODE_AT_ONCE_BYTES;
      const decoder = !kind || atOnce ? null : kind === 'gzip' ? createGunzip() : kind === 'deflate' ? createInflate() : createBrotliDecompress();
      let body: Readable = response;
      if (kind && atOnce) {
        body = decodedAtOnce(response, kind, options.maxBytes, options.maxBytesSetting);
      } else if (decoder) {
        body = response.pipe(decoder);
        decoder.on('error', ignore);
        response.on('error', (err) => decoder.destroy(err));
        // Dropping the decoded body drops the connection's answer too.
        decoder.on('close', () => response.destroy());
      }
      // Decoded at once, the body is bounded by the decoding itself.
      if (options.maxBytes !== undefined && !(kind && atOnce)) body = capped(body, options.maxBytes, 'an answer', options.maxBytesSetting);
      resolve({ status, length, headers: response.headers, body });
    });
    request.on('error', reject);
    request.end(options.body);
  });
}

/**
 * The decoded bytes of a body decoded at once (`decodedAtOnce`), for `readAll`: they are all there
 * when they are, so a read of the whole needs no stream (its pipes and async iteration cost about
 * as much as the decoding, for every packument the follower fetched).
 */
const wholeBodies = new WeakMap<Readable, Promise<Buffer>>();

/** The whole of `body`. */
export async function readAll(body: Readable): Promise<Buffer> {
  const whole = wholeBodies.get(body);
  if (whole) return whole;
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Deeper than this, an upstream's JSON is not a packument (npm's are a few levels deep). */
export const MAX_PACKUMENT_DEPTH = 64;

/**
 * `text` as the JSON object an upstream sends (a packument, a version), or null when it is none: not
 * JSON, not an object, or nested deeper than `MAX_PACKUMENT_DEPTH`.
 */
export function upstreamObject(text: string): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value) || jsonDepth(value, MAX_PACKUMENT_DEPTH) > MAX_PACKUMENT_DEPTH) return null;
  return value as Record<string, unknown>;
}

/** The upstream could not be asked (down, timed out, 5xx): worth trying again later. `status` when it answered. */
export class UpstreamUnavailable extends Error {
  constructor(
    message: string,
    readonly status?: number,
    /** The code of the refusal behind it (`EENCODED`: a tarball sent encoded although asked unencoded), if any. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/** What one upstream's client has seen: its requests, those that failed, and the last error. */
export interface UpstreamStats {
  requests: number;
  failures: number;
  /** Whether the last request got a good answer (null before the first). */
  reachable: boolean | null;
  lastError: string | null;
  lastErrorAt: string | null;
  lastOkAt: string | null;
}

/** Statuses that say the upstream could not help (beyond 404, which is an answer). */
const failedStatus = (status: number) => status >= 500 || status === 401 || status === 403 || status === 429;

/**
 * The client of one npm registry upstream, with its time limit and its token. The token goes as
 * `Authorization: Bearer` to that upstream's origin only (scheme, host and port): never to a tarball
 * host elsewhere, never across a redirect to another origin (`outboundRequest` drops it there).
 */
export class UpstreamRegistry {
  /** When the last good answer came (ms), written out only when the stats are read (a date formatted for every packument fetched cost as much as its digest). */
  private okAt = 0;
  readonly stats: UpstreamStats = ((client: { okAt: number }) => ({
    requests: 0,
    failures: 0,
    reachable: null,
    lastError: null,
    lastErrorAt: null,
    get lastOkAt(): string | null {
      return client.okAt ? new Date(client.okAt).toISOString() : null;
    },
  }))(this as unknown as { okAt: number });
  /** Its name in the status and metrics (`UPSTREAMS`' `name`; `default` for `UPSTREAM_REGISTRY`). */
  readonly name: string;
  private readonly origin: string;
  private readonly token?: { value: string };
  /** Where its token comes from, for the words of a refusal (`env:NAME`), when it has one. */
  readonly tokenFrom?: string;

  constructor(
    /** The registry's URL, without a trailing slash. */
    readonly url: string,
    /** The time limit, the outbound policy, and the most bytes accepted for a packument (decoded) and for a tarball. */
    private readonly settings: Pick<Config, 'upstreamTimeoutMs' | 'outbound' | 'upstreamMaxPackumentBytes' | 'upstreamMaxTarballBytes'>,
    route: { name?: string; token?: { value: string }; tokenFrom?: string } = {},
  ) {
    this.name = route.name || 'default';
    this.origin = new URL(url).origin;
    this.token = route.token;
    this.tokenFrom = route.tokenFrom;
  }

  /** The client of the configured upstream `upstream` (its time limit, its token). */
  static of(upstream: UpstreamConfig, config: Pick<Config, 'outbound' | 'upstreamMaxPackumentBytes' | 'upstreamMaxTarballBytes'>): UpstreamRegistry {
    return new UpstreamRegistry(upstream.url, { ...config, upstreamTimeoutMs: upstream.timeoutMs }, upstream);
  }

  get timeoutMs(): number {
    return this.settings.upstreamTimeoutMs;
  }

  /** Whether a token is sent to it. */
  get hasToken(): boolean {
    return !!this.token;
  }

  /** The credentials for a request to `target`: its token, when `target` is on this upstream's origin; else none. */
  credentialsFor(target: URL): Record<string, string> {
    return this.token && target.origin === this.origin ? { authorization: 'Bearer ' + this.token.value } : {};
  }

  /**
   * A request to `target` (on this upstream, or a tarball host it names) through the outbound
   * policy, with this upstream's token when `target` is on its origin; counted in its stats.
   */
  async request(target: URL, options: Omit<OutboundRequest, 'policy'>): Promise<UpstreamAnswer> {
    this.stats.requests++;
    try {
      const answer = await outboundRequest(target, { ...options, policy: this.settings.outbound, headers: { ...options.headers, ...this.credentialsFor(target) } });
      if (failedStatus(answer.status)) this.failed('answered ' + answer.status + ' for ' + target.pathname);
      else this.succeeded();
      return answer;
    } catch (err) {
      this.failed(fetchFailure(err).words);
      throw err;
    }
  }

  private succeeded(): void {
    this.stats.reachable = true;
    this.okAt = Date.now();
  }

  private failed(words: string): void {
    this.stats.failures++;
    this.stats.reachable = false;
    this.stats.lastError = words;
    this.stats.lastErrorAt = new Date().toISOString();
  }

  /** Why a request to the upstream got no answer, as an error worth retrying. */
  unavailable(err: unknown): UpstreamUnavailable {
    const code = (err as { code?: unknown }).code;
    return new UpstreamUnavailable('the upstream registry ' + this.url + ' ' + fetchFailure(err).words, undefined, code === 'EENCODED' ? code : undefined);
  }

  /**
   * The words for an answer `status` (401, 403) that refused this registry: the token set for this
   * upstream is not taken there, or it wants one and none is set.
   */
  refusedWords(status: number, what: string): string {
    return (
      'the upstream registry ' + this.url + ' refused this registry (' + status + ') for ' + what + ': ' +
      (this.token
        ? 'the token set for the upstream "' + this.name + '" (' + (this.tokenFrom || 'its token') + ') is not accepted there; an admin must renew it'
        : 'it wants a token and none is set for the upstream "' + this.name + '"; an admin sets one with "tokenEnv" in its UPSTREAMS entry')
    );
  }

  /**
   * The upstream's answer at `path` (a packument, its signing keys, a provenance bundle), or null
   * when it has none (404). `what` names it in the error when the upstream cannot be asked. The time
   * limit is for the whole answer.
   */
  async get(path: string, what: string): Promise<string | null> {
    const answer = await this.getText(path, what);
    return answer === null || answer === NOT_MODIFIED ? null : answer.text;
  }

  /**
   * `get`, with the answer's validators, and asked conditionally when `since` is given: `NOT_MODIFIED`
   * when the upstream answered 304.
   */
  private async getText(path: string, what: string, since?: Pick<OriginValidators, 'etag' | 'lastModified'>): Promise<{ text: string; etag?: string; lastModified?: string } | null | typeof NOT_MODIFIED> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    const headers: Record<string, string> = { accept: 'application/json', 'accept-encoding': 'gzip, deflate, br' };
    if (since && since.etag) headers['if-none-match'] = since.etag;
    if (since && since.lastModified) headers['if-modified-since'] = since.lastModified;
    try {
      const answer = await this.request(new URL(this.url + path), {
        headers,
        signal,
        maxBytes: this.settings.upstreamMaxPackumentBytes,
        maxBytesSetting: 'UPSTREAM_MAX_PACKUMENT_MB',
      });
      if (answer.status === 404) {
        answer.body.resume();
        return null;
      }
      if (answer.status === 304 && since && (since.etag || since.lastModified)) {
        answer.body.resume();
        return NOT_MODIFIED;
      }
      if (answer.status === 401 || answer.status === 403) {
        answer.body.resume();
        throw new UpstreamUnavailable(this.refusedWords(answer.status, what), answer.status);
      }
      if (answer.status < 200 || answer.status >= 300) {
        answer.body.resume();
        throw new UpstreamUnavailable('the upstream registry ' + this.url + ' answered ' + answer.status + ' for ' + what, answer.status);
      }
      const text = (await readAll(answer.body)).toString('utf8');
      return { text, etag: validator(answer.headers && answer.headers.etag), lastModified: validator(answer.headers && answer.headers['last-modified']) };
    } catch (err) {
      if (err instanceof UpstreamUnavailable) throw err;
      throw this.unavailable(signal.aborted ? signal.reason : err);
    }
  }

  /**
   * POSTs `body` as JSON to `path` on the upstream (npm's audit and advisory endpoints), its token
   * with it: the status and the answer's text, at most `maxBytes` decoded. Throws what
   * `outboundRequest` throws (the caller words it).
   */
  async post(path: string, body: unknown, maxBytes: number, timeoutMs = this.timeoutMs): Promise<{ status: number; text: string }> {
    const answer = await this.request(new URL(this.url + path), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'accept-encoding': 'gzip, deflate, br' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      maxBytes,
    });
    return { status: answer.status, text: (await readAll(answer.body)).toString('utf8') };
  }

  /** The upstream's full packument of `name`, or null when it has none (404). */
  async packument(name: string): Promise<UpstreamPackument | null> {
    return (await this.sizedPackument(name))?.body || null;
  }

  /** The upstream's full packument of `name` and the size of its JSON, or null when it has none (404). */
  async sizedPackument(name: string): Promise<FetchedPackument | null> {
    const fetched = await this.packumentSince(name);
    return fetched === NOT_MODIFIED ? null : fetched;
  }

  /**
   * The upstream's full packument of `name`, its size and validators; asked conditionally when
   * `since` (the validators of the copy held here) is given, and then `NOT_MODIFIED` when the
   * upstream answered 304. Null when it has none (404).
   */
  async packumentSince(name: string, since?: OriginValidators): Promise<FetchedPackument | null | typeof NOT_MODIFIED> {
    const answer = await this.getText(upstreamPath(name, []), '"' + name + '"', since);
    if (answer === null || answer === NOT_MODIFIED) return answer;
    const body = upstreamObject(answer.text) as UpstreamPackument | null;
    if (!body || (body.name !== undefined && body.name !== name)) {
      throw new UpstreamUnavailable('the upstream registry ' + this.url + ' sent something that is not the packument of "' + name + '" (not a JSON object, or nested deeper than ' + MAX_PACKUMENT_DEPTH + ' levels)');
    }
    const validators: OriginValidators = { digest: createHash('sha1').update(answer.text).digest('hex') };
    if (answer.etag) validators.etag = answer.etag;
    if (answer.lastModified) validators.lastModified = answer.lastModified;
    return { body, bytes: answer.text.length, validators };
  }

  /**
   * Starts the download of `source` (a tarball URL): the answer once its headers arrived. The time
   * limit is for the upstream to answer; the body may take as long as it streams. Asked unencoded,
   * and refused when sent encoded (never inflated: the integrity is that of the bytes published);
   * its body ends with `AnswerTooLarge` beyond `UPSTREAM_MAX_TARBALL_MB` or beyond the length the
   * upstream declared, whichever is smaller.
   */
  async download(source: string): Promise<UpstreamAnswer> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new DOMException('timed out', 'TimeoutError')), this.timeoutMs);
    try {
      // The token only when the tarball is on this upstream's origin (`request` decides).
      const answer = await this.request(new URL(source), {
        headers: { 'accept-encoding': 'identity' },
        signal: abort.signal,
        unencoded: 'a tarball',
      });
      const max = answer.length === null ? this.settings.upstreamMaxTarballBytes : Math.min(answer.length, this.settings.upstreamMaxTarballBytes);
      if (answer.length !== null && answer.length > this.settings.upstreamMaxTarballBytes) {
        answer.body.destroy();
        throw new AnswerTooLarge('declared a tarball of ' + answer.length + ' bytes, more than UPSTREAM_MAX_TARBALL_MB allows');
      }
      return { ...answer, body: capped(answer.body, max, 'a tarball', answer.length !== null && answer.length < this.settings.upstreamMaxTarballBytes ? 'the length it declared' : 'UPSTREAM_MAX_TARBALL_MB') };
    } catch (err) {
      throw this.unavailable(abort.signal.aborted ? abort.signal.reason : err);
    } finally {
      clearTimeout(timer);
    }
  }
}
