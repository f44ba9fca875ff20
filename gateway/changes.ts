/**
 * Follows the registry database's `_changes` and reports each changed document id, so that caches
 * of several gateways in front of one CouchDB stay coherent. While the feed cannot be followed,
 * `onLive(false)` switches the caches off; they come back once it is followed again.
 *
 * It polls the normal feed every `POLL_MS` rather than holding a longpoll: express-pouchdb (the
 * embedded server) leaks a heartbeat timer for every longpoll its client abandons, and a poll that
 * finds nothing costs CouchDB next to nothing.
 */
import { Logger } from 'pino';
import { Couch, docPath } from '../couchdb/client';
import { BackgroundLoop, exponential } from '../lib/retry';

export const POLL_MS = 250;

export class ChangesFollower {
  private abort?: AbortController;
  private readonly loop: BackgroundLoop;

  constructor(
    private readonly couch: Couch,
    private readonly db: string,
    private readonly onChange: (id: string, rev: string | undefined) => void,
    private readonly onLive: (live: boolean) => void,
    private readonly log: Logger,
  ) {
    this.loop = new BackgroundLoop((healthy) => this.follow(healthy), {
      delay: exponential(500, 10_000),
      onStop: () => this.abort?.abort(),
      onRetry: (err) => {
        this.onLive(false);
        this.log.warn({ err: (err as Error).message }, 'following _changes failed; caches are off until it works again');
      },
    });
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  private async request(path: string): Promise<any> {
    this.abort = new AbortController();
    const response = await this.couch.adminFetch(docPath(this.db) + path, { signal: this.abort.signal });
    if (!response.ok) throw new Error('CouchDB answered ' + response.status + ' for ' + path.split('?')[0]);
    return JSON.parse(await response.text());
  }

  /** One round: the database's position, then its changes from there until it fails or the follower stops. */
  private async follow(healthy: () => void): Promise<void> {
    let since = (await this.request('')).update_seq;
    this.onLive(true);
    healthy();
    while (!this.loop.stopped) {
      const batch = await this.request('/_changes?limit=1000&since=' + encodeURIComponent(String(since)));
      for (const change of batch.results || []) this.onChange(change.id, change.changes && change.changes[0] ? change.changes[0].rev : undefined);
      since = batch.last_seq;
      if ((batch.results || []).length < 1000) await this.loop.pause.for(POLL_MS);
    }
  }
}
