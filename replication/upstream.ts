/**
 * The HTTP client of an npm registry upstream: packuments, tarball downloads and the words for what
 * went wrong. Used by the mirror (pull-through, the feed follower) and by the gateway's forwarding.
 */
import { UpstreamPackument } from '../core/mirrored';

/** The path of a package (and of something under it) on an npm registry: `/@scope%2fname/-/file.tgz`. */
export function upstreamPath(name: string, rest: string[]): string {
  const escaped = name.startsWith('@') ? '@' + encodeURIComponent(name.slice(1)) : encodeURIComponent(name);
  return '/' + escaped + rest.map((part) => '/' + encodeURIComponent(part)).join('');
}

/** What went wrong with a request that got no answer: `timedOut`, and the words for it ("is unreachable (ECONNREFUSED)"). */
export function fetchFailure(err: unknown): { timedOut: boolean; words: string } {
  const e = err as { name?: string; message?: string; cause?: { code?: string } };
  const timedOut = e.name === 'TimeoutError' || e.name === 'AbortError';
  return { timedOut, words: timedOut ? 'did not answer in time' : 'is unreachable (' + (e.cause?.code || e.message) + ')' };
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
   * when it has none (404). `what` names it in the error when the upstream cannot be asked.
   */
  async get(path: string, what: string): Promise<string | null> {
    let response: Response;
    try {
      response = await fetch(this.url + path, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw this.unavailable(err);
    }
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new UpstreamUnavailable('the upstream registry ' + this.url + ' answered ' + response.status + ' for ' + what, response.status);
    }
    try {
      return await response.text();
    } catch (err) {
      throw this.unavailable(err);
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
   * Starts the download of `source` (a tarball URL): the response once its headers arrived. The time
   * limit is for the upstream to answer; the body may take as long as it streams.
   */
  async download(source: string): Promise<Response> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new DOMException('timed out', 'TimeoutError')), this.timeoutMs);
    try {
      return await fetch(source, { signal: abort.signal });
    } catch (err) {
      throw this.unavailable(err);
    } finally {
      clearTimeout(timer);
    }
  }
}
