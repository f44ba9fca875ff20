/**
 * Starts what the configuration asks for: for each upstream (replication/routes.ts) its mirror
 * (pull-through and storage) and, when it has a feed, its change-feed follower; the native
 * replication from a CouchDB upstream.
 */
import { NativeReplication, upstreamJob, withoutCredentials } from './couchdb';
import { NpmFollower } from './feed/follower';
import { Mirror, MirrorHost } from './mirror';
import { UpstreamRoutes } from './routes';
import { AdvisoryChecker } from './advisories';

export interface Replication {
  /** The upstreams, each with its mirror and follower. */
  routes: UpstreamRoutes;
  /** The change-feed followers, one per upstream with a feed. */
  followers: NpmFollower[];
  /** The continuous replication from a CouchDB upstream, when one is configured. */
  native?: NativeReplication;
  /** The periodic checks of the mirrored packages at each upstream's advisory endpoint (they run while the vulnerability policy is on). */
  advisories: AdvisoryChecker[];
  stop(): Promise<void>;
}

export async function startReplication(host: MirrorHost, proxySecret: string, routes: UpstreamRoutes = new UpstreamRoutes(host.config)): Promise<Replication> {
  const { config, couch, log } = host;
  const settings = config.replication;
  const followers: NpmFollower[] = [];
  let native: NativeReplication | undefined;
  for (const route of routes.all) {
    route.mirror = new Mirror(host, route.url, {
      registry: route.registry,
      mode: route.mode,
      feed: route.config.feed,
      routesHere: (name) => routes.upstreamFor(name) === route,
    });
    if (route.config.feed) {
      route.follower = new NpmFollower(couch, config, route.mirror, log);
      route.follower.start();
      followers.push(route.follower);
      log.info({ upstream: route.name, feed: route.config.feed, mode: settings.mode }, 'replication: following the npm change feed');
    }
  }
  const stopAll = async () => {
    for (const follower of followers) await follower.stop();
    for (const route of routes.all) await route.mirror?.stop();
  };
  if (settings.couchdb) {
    native = new NativeReplication(couch, upstreamJob({ local: config.registryDb, mirror: config.mirrorDb }, settings.couchdb, proxySecret, settings.privateScopes), log, config.outbound);
    try {
      await native.ensure();
    } catch (err) {
      // CouchDB keeps retrying an unreachable source itself; only a failure to set it up lands here.
      await stopAll();
      throw new Error('Cannot set up replication from ' + withoutCredentials(settings.couchdb) + ': ' + (err as Error).message, { cause: err });
    }
  }
  // The periodic advisory check of each mirrored upstream's packages, at its own advisory endpoint.
  const advisories = routes.all.map((route, i) => {
    const mirror = route.mirror as Mirror;
    return new AdvisoryChecker({
      couch,
      config,
      log,
      client: mirror.advisories,
      policy: () => (host.advisoryPolicy ? host.advisoryPolicy() : undefined),
      origin: mirror.upstream,
      // The first upstream's check is the one older versions kept.
      checkId: i === 0 ? undefined : route.name,
      storeMany: (docs) => mirror.storeMany(docs),
      changed: (changes) => mirror.advisoriesWritten(changes),
    });
  });
  for (const checker of advisories) checker.start();
  return {
    routes,
    followers,
    native,
    advisories,
    stop: async () => {
      for (const checker of advisories) await checker.stop();
      await stopAll();
    },
  };
}
