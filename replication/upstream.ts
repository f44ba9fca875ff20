/**
 * The HTTP client of an npm registry upstream: packuments, tarball downloads and the words for what
 * went wrong. Used by the mirror (pull-through, the feed follower) and by the gateway's forwarding.
 */
import http, { IncomingMessage } from 'http';
import https from 'https';
import { Readable } from 'stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'zlib';
import { UpstreamPackument } from '../core/mirrored';

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
  return { timedOut, words: timedOut ? 'did not answer in time' : 'is unreachable (' + (e.cause?.code || e.code || e.message) + ')' };
}

/** An answer of the upstream: its status, and its body (decoded), to be read or dropped. */
export interface UpstreamAnswer {
  status: number;
  /** The length the upstream declared for the body as sent (null when it did not, or when it was encoded). */
  length: number | null;
  body: Readable;
}

const ignore = (): void => undefined;

/** Redirects followed at most. */
const MAX_REDIRECTS = 5;

/**
 * `GET url` over Node's HTTP client, whose agents keep connections open (`fetch` and its web
 * streams took about a sixth of the registry's CPU during an install through pull-through),
 * following redirects: the answer once its headers arrived, its body decoded (gzip, deflate, br).
 * `signal` abandons it.
 */
function getAnswer(url: URL, headers: Record<string, string>, signal: AbortSignal, redirects = MAX_REDIRECTS): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
    if (!client) return reject(new Error('a link of protocol ' + url.protocol + ', which is not followed'));
    const request = client.get(url, { headers, signal }, (response: IncomingMessage) => {
      // An error reaches whoever reads the body; a body dropped unread (a redirect, an error answer)
      // must not take the process down with it.
      response.on('error', ignore);
      const status = response.statusCode || 502;
      const location = response.headers.location;
      if (status >= 300 && status < 400 && status !== 304 && location) {
        response.resume();
        if (redirects === 0) return reject(new Error('more than ' + MAX_REDIRECTS + ' redirects'));
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return reject(new Error('a redirect to "' + location + '", which is not a URL'));
        }
        return resolve(getAnswer(next, headers, signal, redirects - 1));
      }
      const encoding = String(response.headers['content-encoding'] || 'identity').trim().toLowerCase();
      const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip() : encoding === 'deflate' ? createInflate() : encoding === 'br' ? createBrotliDecompress() : null;
      if (!decoder && encoding !== 'identity') {
        response.destroy();
        return reject(new Error('an answer in the encoding "' + encoding + '", which cannot be read'));
      }
      const declared = response.headers['content-length'];
      const length = !decoder && declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : null;
      let body: Readable = response;
      if (decoder) {
        body = response.pipe(decoder);
        decoder.on('error', ignore);
        response.on('error', (err) => decoder.destroy(err));
        // Dropping the decoded body drops the connection's answer too.
        decoder.on('close', () => response.destroy());
      }
      resolve({ status, length, body });
    });
    request.on('error', reject);
  });
}

/** The whole of `body`. */
export async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The upstream could not be asked (down, timed out, 5xx): worth trying again later. `status` when it answered. */
export class UpstreamUnavailable extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export class UpstreamRegistry {
  constructor(
    /** The registry's URL, without a trailing slash. */
    readonly url: string,
    private readonly timeoutMs: number,
  ) {}

  /** Why a request to the upstream got no answer, as an error worth retrying. */
  unavailable(err: unknown): UpstreamUnavailable {
    return new UpstreamUnavailable('the upstream registry ' + this.url + ' ' + fetchFailure(err).words);
  }

  /**
   * The upstream's answer at `path` (a packument, its signing keys, a provenance bundle), or null
   * when it has none (404). `what` names it in the error when the upstream cannot be asked. The time
   * limit is for the whole answer.
   */
  async get(path: string, what: string): Promise<string | null> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const answer = await getAnswer(new URL(this.url + path), { accept: 'application/json', 'accept-encoding': 'gzip, deflate, br' }, signal);
      if (answer.status === 404) {
        answer.body.resume();
        return null;
      }
      if (answer.status < 200 || answer.status >= 300) {
        answer.body.resume();
        throw new UpstreamUnavailable('the upstream registry ' + this.url + ' answered ' + answer.status + ' for ' + what, answer.status);
      }
      return (await readAll(answer.body)).toString('utf8');
    } catch (err) {
      if (err instanceof UpstreamUnavailable) throw err;
      throw this.unavailable(signal.aborted ? signal.reason : err);
    }
  }

  /** The upstream's full packument of `name`, or null when it has none (404). */
  async packument(name: string): Promise<UpstreamPackument | null> {
    return (await this.sizedPackument(name))?.body || null;
  }

  /** The upstream's full packument of `name` and the size of its JSON, or null when it has none (404). */
  async sizedPackument(name: string): Promise<{ body: UpstreamPackument; bytes: number } | null> {
    const text = await this.get(upstreamPath(name, []), '"' + name + '"');
    if (text === null) return null;
    try {
      const body = JSON.parse(text) as UpstreamPackument;
      if (typeof body !== 'object' || body === null || (body.name !== undefined && body.name !== name)) throw new Error('not a packument');
      return { body, bytes: text.length };
    } catch {
      throw new UpstreamUnavailable('the upstream registry ' + this.url + ' sent something that is not the packument of "' + name + '"');
    }
  }

  /**
   * Starts the download of `source` (a tarball URL): the answer once its headers arrived. The time
   * limit is for the upstream to answer; the body may take as long as it streams. Asked unencoded.
   */
  async download(source: string): Promise<UpstreamAnswer> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new DOMException('timed out', 'TimeoutError')), this.timeoutMs);
    try {
      return await getAnswer(new URL(source), { 'accept-encoding': 'identity' }, abort.signal);
    } catch (err) {
      throw this.unavailable(abort.signal.aborted ? abort.signal.reason : err);
    } finally {
      clearTimeout(timer);
    }
  }
}
