/** Starts what the configuration asks for: pull-through, the feed follower, the native replication. */
import { Logger } from 'pino';
import { Context } from '../gateway/context';
import { NativeReplication, withoutCredentials } from './couchdb';
import { Mirror } from './mirror';
import { NpmFollower } from './npm-follower';

export async function startReplication(ctx: Context, proxySecret: string, log: Logger): Promise<{ stop(): Promise<void> }> {
  const { config } = ctx;
  const settings = config.replication;
  let follower: NpmFollower | undefined;
  let native: NativeReplication | undefined;
  if (config.upstreamRegistry) ctx.mirror = new Mirror(ctx, config.upstreamRegistry);
  if (settings.feed && ctx.mirror) {
    follower = new NpmFollower(ctx, ctx.mirror, log);
    follower.start();
    log.info({ feed: settings.feed, mode: settings.mode }, 'replication: following the npm change feed');
  }
  if (settings.couchdb) {
    native = new NativeReplication(ctx.couch, proxySecret, { local: config.registryDb, mirror: config.mirrorDb }, settings.couchdb, settings.privateScopes, log);
    try {
      await native.ensure();
    } catch (err) {
      // CouchDB keeps retrying an unreachable source itself; only a failure to set it up lands here.
      await follower?.stop();
      throw new Error('Cannot set up replication from ' + withoutCredentials(settings.couchdb) + ': ' + (err as Error).message);
    }
  }
  ctx.replication = { follower, native };
  return { stop: async () => void (await follower?.stop()) };
}
