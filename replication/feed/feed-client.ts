/**
 * The HTTP client of an npm change feed (`<feed>/_changes?since=<seq>&limit=<n>`, no documents):
 * batches of entries, the feed's head, and where a new mirror starts. Sequences are opaque: handed
 * back, never computed with.
 */
import { OutboundPolicy } from '../../config';
import { fetchFailure, outboundRequest, readAll, UpstreamUnavailable } from '../upstream';

/** The most bytes of one feed answer (10,000 entries are about 2 MB). */
const MAX_FEED_ANSWER_BYTES = 64 * 1024 * 1024;

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
    /** The outbound request policy (the feed's own host is configured, so allowed). */
    private readonly outbound: OutboundPolicy,
  ) {}

  private async get(path: string, timeoutMs = this.timeoutMs): Promise<any> {
    let status: number;
    let text = '';
    try {
      // The opt-in header selected the public registry's new feed during its 2025 migration; other
      // feeds ignore it.
      const answer = await outboundRequest(new URL(this.url + path), {
        policy: this.outbound,
        headers: { accept: 'application/json', 'accept-encoding': 'gzip, deflate, br', 'npm-replication-opt-in': 'true' },
        signal: AbortSignal.any([this.stopSignal, AbortSignal.timeout(timeoutMs)]),
        maxBytes: MAX_FEED_ANSWER_BYTES,
      });
      status = answer.status;
      if (status >= 200 && status < 300) text = (await readAll(answer.body)).toString('utf8');
      else answer.body.resume();
    } catch (err) {
      throw new UpstreamUnavailable('the change feed ' + this.url + ' ' + fetchFailure(err).words);
    }
    if (status < 200 || status >= 300) {
      throw new UpstreamUnavailable('the change feed ' + this.url + ' answered ' + status + ' for ' + path.split('?')[0], status);
    }
    try {
      return JSON.parse(text);
    } catch {
      throw new UpstreamUnavailable('the change feed ' + this.url + ' answered ' + path.split('?')[0] + ' with something that is not JSON');
    }
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
