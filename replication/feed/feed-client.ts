/**
 * The HTTP client of an npm change feed (`<feed>/_changes?since=<seq>&limit=<n>`, no documents):
 * batches of entries, the feed's head, and where a new mirror starts. Sequences are opaque: handed
 * back, never computed with.
 */
import { fetchFailure, UpstreamUnavailable } from '../upstream';

export interface FeedBatch {
  results: unknown[];
  last_seq?: unknown;
}

export class ChangeFeed {
  constructor(
    readonly url: string,
    private readonly timeoutMs: number,
    /** Ends a request in flight when the follower stops. */
    private readonly stopSignal: AbortSignal,
  ) {}

  private async get(path: string, timeoutMs = this.timeoutMs): Promise<any> {
    let response: Response;
    try {
      // The opt-in header selected the public registry's new feed during its 2025 migration; other
      // feeds ignore it.
      response = await fetch(this.url + path, {
        headers: { accept: 'application/json', 'npm-replication-opt-in': 'true' },
        signal: AbortSignal.any([this.stopSignal, AbortSignal.timeout(timeoutMs)]),
      });
    } catch (err) {
      throw new UpstreamUnavailable('the change feed ' + this.url + ' ' + fetchFailure(err).words);
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new UpstreamUnavailable('the change feed ' + this.url + ' answered ' + response.status + ' for ' + path.split('?')[0], response.status);
    }
    return response.json();
  }

  /** Up to `limit` entries after `since`. */
  async changes(since: unknown, limit: number): Promise<FeedBatch> {
    const batch = await this.get('/_changes?since=' + encodeURIComponent(String(since)) + '&limit=' + limit);
    return { results: Array.isArray(batch && batch.results) ? batch.results : [], last_seq: batch ? batch.last_seq : undefined };
  }

  /** The feed's current position, from its root (`{update_seq}`), or null when it does not say or cannot be asked. */
  async head(timeoutMs?: number): Promise<unknown> {
    try {
      const info = await this.get('/', timeoutMs);
      return info && info.update_seq !== undefined ? info.update_seq : null;
    } catch {
      return null;
    }
  }

  /**
   * Where the feed is now: its root's `update_seq`, else the `last_seq` of `since=now`, else null
   * (the partial modes then read the feed from its start). Throws while the feed cannot be reached.
   */
  async position(): Promise<unknown> {
    const root = await this.get('/').catch((err) => {
      if (err instanceof UpstreamUnavailable && err.status) return null; // no root: try the next way
      throw err;
    });
    if (root && root.update_seq !== undefined && root.update_seq !== null) return root.update_seq;
    const now = await this.get('/_changes?since=now&limit=1').catch(() => null);
    return now && now.last_seq !== undefined && now.last_seq !== null ? now.last_seq : null;
  }
}
