/**
 * Starts a whole registry: the CouchDB it uses (the embedded server, or the one in `COUCHDB_URL`),
 * the databases and design document, and the gateway. Used by `npm start` and by the tests.
 */
import { randomBytes } from 'crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'fs';
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { join } from 'path';
import pino, { Logger } from 'pino';
import { mergeMirrored } from '../core/mirrored';
import { PackageDoc } from '../core/types';
import { EmbeddedCouch, startEmbeddedCouch } from '../couchdb/embedded';
import { createHandler } from '../gateway/app';
import { changedElsewhere, changedHere, Context, localPackage } from '../gateway/context';
import { warmMirrored, withheldOf } from '../gateway/writes';
import { withoutWithheld } from '../core/policy';
import { startReplication } from '../replication/start';
import { Config } from '../config';
import { Couch, readProxySecret } from '../couchdb/client';
import { setupDatabases } from './setup';
import { Accounts } from '../gateway/accounts';
import { AccessRules } from '../gateway/access';
import { LocalAbsence, PackumentCache } from '../gateway/cache';
import { copiesPath, ServedCopies } from '../gateway/served-copies';
import { ChangesFollower } from '../gateway/changes';
import { Sites } from '../replication/sites';
import { ConflictResolver, recordRefused } from '../gateway/resolver';
import { SearchService } from '../gateway/search';
import { DownloadCounter } from '../gateway/downloads';
import { TarballCache } from '../gateway/tarball-cache';
import { LOGIN_THROTTLE } from '../gateway/throttle';
import { Metrics } from '../gateway/metrics';
import { TokenStore } from '../gateway/tokens';
import { SingleSignOn } from '../gateway/sso';
import { Webhooks } from '../gateway/webhooks';
import { PolicyStore } from '../gateway/policy';
import { announceHeld } from '../gateway/advisories';
import { KeyRing } from '../gateway/signing';
import { readTrustedRoot } from '../gateway/provenance';
import { UpstreamRoutes } from '../replication/routes';

export const EMBEDDED_ADMIN = 'admin';

export interface RunningRegistry {
  /** The registry URL for npm (REGISTRY_PUBLIC_URL when set). */
  url: string;
  /** The address the gateway listens on. */
  localUrl: string;
  /** Fauxton, the CouchDB admin UI. */
  fauxtonUrl: string;
  /** The CouchDB URL without credentials. */
  couchUrl: string;
  adminName: string;
  /** True when this start generated the admin password (written to DATA_DIR/admin-password, never printed). */
  adminPasswordGenerated: boolean;
  designChanged: boolean;
  /** This registry's id (the `origin` of local packages). */
  registryId: string;
  close(): Promise<void>;
}

/** A secret kept in a 0600 file under the data directory, created on first use. */
function fileSecret(dataDir: string, file: string, bytes = 24): { value: string; created: boolean } {
  const path = join(dataDir, file);
  if (existsSync(path)) return { value: readFileSync(path, 'utf8').trim(), created: false };
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const value = randomBytes(bytes).toString('base64url');
  writeFileSync(path, value + '\n', { mode: 0o600, flag: 'wx' });
  return { value, created: true };
}

let lastResortLog: Logger | undefined;

/**
 * No request may take the registry down: an error that nothing handled (a library's stray promise,
 * a callback that throws) is logged, and the process keeps serving.
 */
function installLastResort(log: Logger): void {
  if (lastResortLog) return;
  lastResortLog = log;
  process.on('unhandledRejection', (reason) => lastResortLog?.error({ err: reason }, 'unhandled rejection; the registry keeps serving'));
  process.on('uncaughtException', (err) => lastResortLog?.error({ err }, 'uncaught exception; the registry keeps serving'));
}

export async function startRegistry(config: Config, log: Logger = pino({ level: config.logLevel })): Promise<RunningRegistry> {
  installLastResort(log);
  let embedded: EmbeddedCouch | undefined;
  let adminUrl: string;
  let proxySecret: string;
  let adminName = EMBEDDED_ADMIN;
  let adminPasswordGenerated = false;

  if (config.couchdbUrl) {
    const url = new URL(config.couchdbUrl);
    if (!url.username) throw new Error('COUCHDB_URL must carry admin credentials: http://admin:password@host:5984');
    adminName = decodeURIComponent(url.username);
    adminUrl = url.toString().replace(/\/+$/, '');
    proxySecret = config.couchdbProxySecret || (await readProxySecret(adminUrl));
  } else {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    let adminPassword = config.adminPassword;
    if (!adminPassword) {
      const secret = fileSecret(config.dataDir, 'admin-password');
      adminPassword = secret.value;
      adminPasswordGenerated = secret.created;
    }
    proxySecret = fileSecret(config.dataDir, 'proxy-secret', 32).value;
    embedded = await startEmbeddedCouch({
      dataDir: config.dataDir,
      port: config.couchdbPort,
      host: config.couchdbBind,
      allowedHosts: config.couchdbHosts,
      adminName,
      adminPassword,
      proxySecret,
      outbound: config.outbound,
    });
    adminUrl = 'http://' + encodeURIComponent(adminName) + ':' + encodeURIComponent(adminPassword) + '@127.0.0.1:' + embedded.port;
  }

  const couch = new Couch(adminUrl, proxySecret);
  // The gateway runs in the embedded server's process: its plain reads skip HTTP (never with COUCHDB_URL).
  if (embedded) couch.local = embedded.local;
  // The registry never requests its own CouchDB as an upstream, a foreign registry or a webhook receiver.
  await config.outbound.denyCouchDB(new URL(adminUrl).origin);
  let server: Server | undefined;
  let followers: ChangesFollower[] = [];
  let search: SearchService | undefined;
  let downloads: DownloadCounter | undefined;
  let replication: { stop(): Promise<void> } | undefined;
  let webhooks: Webhooks | undefined;
  let policy: PolicyStore | undefined;
  let resolver: ConflictResolver | undefined;
  let mirrorResolver: ConflictResolver | undefined;
  let sites: Sites | undefined;
  let keyRefresh: NodeJS.Timeout | undefined;
  try {
    const metrics = new Metrics();
    couch.observe = (operation, seconds, ok) => metrics.couch(operation, seconds, ok);
    const { designChanged, designHash, registryId } = await setupDatabases(couch, config, log);
    const tokens = new TokenStore(couch, config.tokensDb, config.sites.peers.length > 0);
    const registryDb = couch.db<PackageDoc>(config.registryDb);
    const cache = new PackumentCache(config.packumentCacheBytes);
    // Copies of served packuments across restarts: used where revisions are read in process (the embedded server).
    const copies = embedded ? new ServedCopies(copiesPath(config.dataDir, config.registryDb)) : undefined;
    const tarballs = new TarballCache(join(config.dataDir, 'cache', 'tarballs-' + config.registryDb.replace(/[^a-z0-9_-]/g, '_')), config.tarballMemoryBytes);
    const ownWrites = new Map<string, string>();
    const localAbsence = new LocalAbsence();
    // Both package databases are followed; the caches are on only while both feeds are.
    const live = new Map<string, boolean>();
    followers = [config.registryDb, config.mirrorDb].map(
      (db) =>
        new ChangesFollower(
          couch,
          db,
          (id, rev) => {
            if (db === config.registryDb) localAbsence.changed(id);
            changedElsewhere({ cache, tarballs, ownWrites }, id, rev);
          },
          (isLive) => {
            if (db === config.registryDb) localAbsence.setLive(isLive);
            live.set(db, isLive);
            const all = live.size === 2 && [...live.values()].every(Boolean);
            cache.setLive(all);
            tarballs.setLive(all);
          },
          log,
        ),
    );
    for (const follower of followers) follower.start();
    search = new SearchService(couch, { local: config.registryDb, mirrored: config.mirrorDb }, log, join(config.dataDir, 'cache', 'search-' + config.registryDb.replace(/[^a-z0-9_-]/g, '_') + '.json'), registryId);
    search.start();
    downloads = new DownloadCounter(couch, config.downloadsDb, config.downloadsFlushMs, log);
    downloads.start();
    const context: Context = {
      config,
      couch,
      tokens,
      accounts: new Accounts(couch, LOGIN_THROTTLE, (ok) => metrics.login(ok)),
      access: new AccessRules(registryDb),
      cache,
      copies,
      tarballs,
      ownWrites,
      localAbsence,
      registry: registryDb,
      mirrored: couch.db<PackageDoc>(config.mirrorDb),
      registryId,
      origins: [registryId],
      provenanceTrust: config.provenanceTrustedRoot ? readTrustedRoot(config.provenanceTrustedRoot) : undefined,
      search,
      downloads,
      baseUrl: '',
      designHash,
      metrics,
      // Routing of names to upstreams, in place before anything is served (each route's mirror comes with replication).
      upstreams: new UpstreamRoutes(config),
      log,
    };
    // The signing keys listed for mirrored versions: those of the upstream of every name.
    const keys = new KeyRing(couch, config.stateDb, config.dataDir, context.upstreams.all.map((route) => route.registry), log);
    await keys.open();
    context.keys = keys;
    // The upstream's keys are fetched in the background at every start and twice a day.
    void keys.refreshUpstream();
    keyRefresh = setInterval(() => void keys.refreshUpstream(), 12 * 3_600_000);
    keyRefresh.unref();
    policy = new PolicyStore(
      couch,
      config.stateDb,
      config.upstreamMinAgeMs,
      () => {
        cache.clear();
        // The vulnerability policy switched on: the periodic check of the mirrored packages starts at once.
        for (const checker of context.replication?.advisories || []) checker.wake();
      },
      log,
    );
    await policy.refresh();
    policy.start();
    context.policy = policy;
    webhooks = new Webhooks(couch, config.stateDb, () => context.baseUrl, log, config.outbound, config.webhookBackoffMs);
    context.webhooks = webhooks;
    webhooks.start();
    // Conflicting revisions of packages (a CouchDB cluster's) merged into one (gateway/resolver.ts).
    const hooks = webhooks;
    resolver = new ConflictResolver(couch, config.registryDb, log, {
      resolved: (_name, _leaves, refused) => {
        metrics.conflictResolved(refused.length);
        if (refused.length) {
          void hooks.refused(refused);
          void recordRefused(couch, config.stateDb, refused);
        }
      },
    });
    resolver.start();
    // And of mirrored packages: two gateways pulling one new package through at once each store it.
    mirrorResolver = new ConflictResolver(couch, config.mirrorDb, log, { resolved: () => metrics.conflictResolved(0) }, mergeMirrored);
    mirrorResolver.start();
    // The other sites of this registry (SITE_PEERS): their ids are local origins here, their packages pulled.
    sites = new Sites(couch, config.registryDb, { ...config.sites, accounts: !config.couchdbUrl }, config.outbound, log, (ids) => {
      context.origins = [registryId, ...ids];
      // Cached packuments say whether they are mirrored: they are made again.
      cache.clear();
    });
    await sites.start();
    if (config.sites.peers.length) {
      context.sites = sites;
      const peers = sites;
      // Accounts are one at every site where they replicate (the embedded server): sign-up asks the others.
      if (!config.couchdbUrl) context.accounts.elsewhere = (name) => peers.accountRevisionsElsewhere(name);
      metrics.watchSites(() => peers.states());
    }
    if (config.sso) {
      // Single sign-on (gateway/sso.ts); with password logins off, only server admins log in with a password.
      context.sso = new SingleSignOn(config.sso, config.outbound, context.accounts, couch, config.stateDb, () => context.baseUrl + '/-/sso/callback', log);
      if (!config.sso.passwordLogin) context.accounts.passwordLoginsOff = context.sso.passwordOffMessage;
      context.accounts.ssoGroupsMaxAgeMs = config.sso.groupsMaxAgeMs;
    }
    const handler = createHandler(context);
    server = await new Promise<Server>((resolve, reject) => {
      const s = createServer(handler).listen(config.port, config.host, () => resolve(s));
      s.once('error', reject);
    });
    server.keepAliveTimeout = 65_000;
    const port = (server.address() as AddressInfo).port;
    const hostForUrl = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    const url = 'http://' + (hostForUrl.includes(':') ? '[' + hostForUrl + ']' : hostForUrl) + ':' + port;
    context.baseUrl = config.publicUrl || url;
    // The packuments served when the gateway last stopped, for the first reads of this run.
    copies?.load(context.baseUrl);
    const started = await startReplication(
      {
        couch,
        config,
        log,
        written: (name, rev, doc, tarballOnly, tarballs) => {
          changedHere(context, name, rev, tarballOnly);
          if (doc) {
            warmMirrored(context, doc, tarballs);
            context.search?.wrote('mirrored', doc);
          }
        },
        indexed: (doc) => context.search?.wrote('mirrored', doc),
        readLocal: (name) => localPackage(context, name),
        unlisted: (name) => !!context.search && context.search.knowsAbsent(name),
        asServed: (doc) => withoutWithheld(doc, withheldOf(context, doc)),
        advisoryPolicy: () => context.policy?.current.advisories,
        advisoriesChanged: (changes) => announceHeld(context, changes),
      },
      proxySecret,
      context.upstreams,
    );
    replication = started;
    context.replication = started;
    metrics.watchReplication(async () => {
      if (started.followers.length) {
        const states = await Promise.all(started.followers.map((follower) => follower.status()));
        const known = (values: (number | null)[]) => (values.every((v) => typeof v === 'number') ? (values as number[]) : null);
        const changes = known(states.map((status) => status.lag.changes));
        return {
          lagChanges: changes ? changes.reduce((a, b) => a + b, 0) : null,
          lagSeconds: Math.max(...states.map((status) => status.lag.seconds)),
          queue: states.reduce((total, status) => total + status.pending.length, 0),
        };
      }
      if (started.native) {
        const status = await started.native.status();
        return { lagChanges: status.changesPending, lagSeconds: null, queue: status.changesPending };
      }
      return null;
    });
    metrics.watchUpstreams(async () =>
      Promise.all(
        context.upstreams.all.map(async (route) => ({
          name: route.name,
          stats: route.registry.stats,
          feedLag: route.follower ? (await route.follower.status()).lag.changes : null,
          revalidations: route.mirror ? route.mirror.stats.revalidations : null,
        })),
      ),
    );
    const couchOrigin = new URL(adminUrl).origin;
    const running = server;
    return {
      url: context.baseUrl,
      localUrl: url,
      fauxtonUrl: couchOrigin + '/_utils/',
      couchUrl: couchOrigin,
      adminName,
      adminPasswordGenerated,
      designChanged,
      registryId,
      close: async () => {
        await new Promise<void>((resolve) => {
          running.close(() => resolve());
          running.closeAllConnections();
        });
        // Served no more: what the packument cache holds is kept for the next start.
        if (copies) await copies
          .save({ entries: () => cache.held(), checkedAt: (name) => context.upstreams.mirrorFor(name)?.lastChecked(name) })
          .then((count) => log.info({ packuments: count }, 'the served packuments were kept for the next start'))
          .catch((err) => log.warn({ err: (err as Error).message }, 'the served packuments could not be kept for the next start'));
        // Served no more: what was counted is written while CouchDB is still there.
        await downloads?.stop();
        await replication?.stop();
        await sites?.stop();
        await resolver?.stop();
        await mirrorResolver?.stop();
        await webhooks?.stop();
        await policy?.stop();
        if (keyRefresh) clearInterval(keyRefresh);
        await Promise.all(followers.map((follower) => follower.stop()));
        await search?.stop();
        if (embedded) await embedded.close();
      },
    };
  } catch (err) {
    await replication?.stop();
    await sites?.stop();
    await resolver?.stop();
    await mirrorResolver?.stop();
    await webhooks?.stop();
    await policy?.stop();
    if (keyRefresh) clearInterval(keyRefresh);
    await Promise.all(followers.map((follower) => follower.stop()));
    await search?.stop();
    await downloads?.stop();
    if (server) server.close();
    if (embedded) await embedded.close();
    throw err;
  }
}
