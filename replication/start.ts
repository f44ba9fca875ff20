/** Starts what the configuration asks for: pull-through, the feed follower, the native replication. */
import { NativeReplication, upstreamJob, withoutCredentials } from './couchdb';
import { NpmFollower } from './feed/follower';
import { Mirror, MirrorHost } from './mirror';
import { AdvisoryChecker } from './advisories';

export interface Replication {
  /** Pull-through and storage of mirrored packages, when an npm upstream is configured. */
  mirror?: Mirror;
  /** The change-feed follower, when a feed is configured. */
  follower?: NpmFollower;
  /** The continuous replication from a CouchDB upstream, when one is configured. */
  native?: NativeReplication;
  /** The periodic check of the mirrored packages at the upstream's advisory endpoint (runs while the vulnerability policy is on). */
  advisories?: AdvisoryChecker;
  stop(): Promise<void>;
}

export async function startReplication(host: MirrorHost, proxySecret: string): Promise<Replication> {
  const { config, couch, log } = host;
  const settings = config.replication;
  const mirror = config.upstreamRegistry ? new Mirror(host, config.upstreamRegistry) : undefined;
  let follower: NpmFollower | undefined;
  let native: NativeReplication | undefined;
  if (settings.feed && mirror) {
    follower = new NpmFollower(couch, config, mirror, log);
    follower.start();
    log.info({ feed: settings.feed, mode: settings.mode }, 'replication: following the npm change feed');
  }
  if (settings.couchdb) {
    native = new NativeReplication(couch, upstreamJob({ local: config.registryDb, mirror: config.mirrorDb }, settings.couchdb, proxySecret, settings.privateScopes), log, config.outbound);
    try {
      await native.ensure();
    } catch (err) {
      // CouchDB keeps retrying an unreachable source itself; only a failure to set it up lands here.
      await follower?.stop();
      throw new Error('Cannot set up replication from ' + withoutCredentials(settings.couchdb) + ': ' + (err as Error).message, { cause: err });
    }
  }
  const advisories = mirror
    ? new AdvisoryChecker({
        couch,
        config,
        log,
        client: mirror.advisories,
        policy: () => (host.advisoryPolicy ? host.advisoryPolicy() : undefined),
        origin: mirror.upstream,
        storeMany: (docs) => mirror.storeMany(docs),
        changed: (changes) => mirror.advisoriesWritten(changes),
      })
    : undefined;
  advisories?.start();
  return {
    mirror,
    follower,
    native,
    advisories,
    stop: async () => {
      await advisories?.stop();
      await follower?.stop();
      await mirror?.stop();
    },
  };
}
