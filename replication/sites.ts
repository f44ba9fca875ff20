/**
 * Sites: several registries, each on its own CouchDB (or embedded server), that are one registry. Each
 * site pulls every other site's registry database (the packages published there) into its own,
 * continuously, through CouchDB's `_replicator`; a package published at any site is served, whole, at
 * every site. Concurrent publishes at two sites meet as conflicting revisions, which the resolver
 * (gateway/resolver.ts) of every site merges the same way (core/merge.ts), so the sites converge.
 *
 * - The site account (`registry-site`, role `registry-site`, password `SITE_PASSWORD`) is the one
 *   account of this site that the others pull with, and the one this site's replication writes its
 *   peers' packages as: `_design/mirror` lets that role write the registry database, and nothing else.
 * - A peer (`SITE_PEERS`) is the URL of another site's registry database with its site account's
 *   credentials. Before pulling from it, this site learns its id and the ids it knows (its
 *   `_design/mirror`'s `registry` and `sites`) and records them in its own `_design/mirror` `sites`:
 *   packages of those origins are this registry's own here too (writable by their maintainers, never
 *   taken for mirrored ones). The ids are read again every round, so a site that joins later, known
 *   to a peer, is learned too; ids are never forgotten.
 * - Tokens (`<db>-tokens`) replicate too: a token works at every site, and a revoked one stops working
 *   at every site. On the embedded server accounts (`_users`, the service accounts left out) do as
 *   well: a name is one account at every site (sign-up asks every peer first). The site account
 *   administers `_users` there, but writes people's accounts only (`_design/registry-sites`,
 *   server/setup.ts). On a real CouchDB it has no part in `_users` (it could make itself a server
 *   admin), so accounts stay each site's own and sites need closed sign-up (config/index.ts).
 * - Staged publishes (`<db>-stage`, gateway/staging.ts) replicate too: a version staged at one site
 *   (by CI near it) is listed, approved or rejected at any, and an approval or a rejection (the staged
 *   document's deletion) ends it at every site. Staging ids are digests of `<name>@<version>`, so a
 *   version staged at two sites at once is one document (conflicting revisions, one wins).
 * - Download counts (`<db>-downloads`, gateway/downloads.ts) replicate too: every gateway run writes
 *   documents of its own, so each site's counts add up to the registry's, and nothing conflicts.
 * - The mirror database, the access rules and the supply-chain policy stay per site (README "Sites"
 *   says why).
 */
import { createHash } from 'crypto';
import { Logger } from 'pino';
import { OutboundPolicy } from '../config';
import { localOrigins, MirrorSettings, SITE_ROLE } from '../core/provenance';
import { Couch, couchFailure } from '../couchdb/client';
import { BackgroundLoop, exponential } from '../lib/retry';
import { basicAuthOf, ensureAccount, NativeReplication, NativeReplicationStatus, remoteJson, withoutCredentials } from './couchdb';
import { REPLICATOR } from './mirror';

/** The name of every site's own account. */
export const SITE_ACCOUNT = 'registry-site';

/** How soon a peer whose ids could not be read is asked again. */
const UNKNOWN_PEER_MS = 2_000;
/**
 * What a site id looks like (server/setup.ts makes UUIDs): never a URL, which is the origin of a
 * mirrored package (an id such as "https://registry.npmjs.org" would make the upstream's packages
 * this registry's own), nor anything long.
 */
const SITE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** The most ids one peer may name (its own and those of the sites it knows). */
const MAX_PEER_IDS = 100;

export interface SitesSettings {
  /** The other sites' registry databases, with their site accounts' credentials (`SITE_PEERS`). */
  peers: string[];
  /** This site's site account password (`SITE_PASSWORD`). */
  password?: string;
  /** How often the peers' ids, jobs and access rules are checked, in seconds (`SITE_CHECK_SECONDS`). */
  checkSeconds?: number;
  /**
   * Whether accounts replicate: on the embedded server only. On a real CouchDB only server admins read
   * `_users` as a whole, and the site account must not be an admin of `_users` there (server/setup.ts).
   */
  accounts?: boolean;
}

export interface SitePeerStatus extends NativeReplicationStatus {
  /** The peer's registry database, without credentials. */
  peer: string;
  /** The peer's id (the `origin` of what is published there), once learned. */
  id: string | null;
  /** The replication of the peer's accounts, of its tokens and of its staged publishes. */
  accounts: { state: string; error: string | null };
  tokens: { state: string; error: string | null };
  staged: { state: string; error: string | null };
  downloads: { state: string; error: string | null };
  /** Its access rules differ from this site's (a package private here may be readable there). */
  rulesDiffer: boolean;
}

/** What is pulled from every peer: its packages, its accounts, its tokens, its staged publishes and its download counts. */
export type SiteData = 'packages' | 'accounts' | 'tokens' | 'staged' | 'downloads';

/** Service accounts are each site's own (their passwords differ): they never replicate. */
const SERVICE_ACCOUNTS = [SITE_ACCOUNT, REPLICATOR.name].map((name) => 'org.couchdb.user:' + name);
const ACCOUNTS_SELECTOR = { _id: { $regex: '^org\\.couchdb\\.user:', $nin: SERVICE_ACCOUNTS } };

/**
 * Whether an account document is a person's: no role of the registry (`registry-…`, its machinery's
 * accounts are each site's own) nor of CouchDB (`_…`). The rule of `_users`' `_design/registry-sites`
 * (server/setup.ts), for what this site copies as an admin.
 */
function isPersonAccount(doc: { roles?: unknown }): boolean {
  if (doc.roles === undefined || doc.roles === null) return true;
  return Array.isArray(doc.roles) && doc.roles.every((role) => typeof role === 'string' && !role.startsWith('_') && !role.startsWith('registry-'));
}

interface Peer {
  url: string;
  /** The peer's registry database (the setting), its `_users`, its tokens and its staging databases. */
  sources: Record<SiteData, string>;
  jobs: Partial<Record<SiteData, NativeReplication>>;
  id: string | null;
  /** Why the peer's ids could not be read, if they could not. */
  error: string | null;
  /** Whether its access rules (`_design/access`) differ from this site's, when they could be compared. */
  rulesDiffer: boolean;
  /** Whether it shares accounts (its `_design/mirror` says so: it runs on the embedded server); null until read. */
  sharesAccounts: boolean | null;
}

/** Another database of the CouchDB that `url` (a database URL, with credentials) is on. */
function siblingDatabase(url: string, db: string): string {
  const parsed = new URL(url);
  parsed.pathname = parsed.pathname.replace(/[^/]+\/?$/, encodeURIComponent(db));
  return parsed.toString();
}

/** The `_replicator` id of the job pulling `peer` into `db`: stable, without the credentials in it. */
function jobId(db: string, peer: string): string {
  return 'registry-' + db + '-from-site-' + createHash('sha256').update(withoutCredentials(peer)).digest('hex').slice(0, 16);
}

export class Sites {
  private readonly peers: Peer[];
  private readonly loop: BackgroundLoop;
  /** The pause between rounds once every peer answered (`SITE_CHECK_SECONDS`). */
  private readonly roundMs: number;
  /** The other sites' ids, as this site's `_design/mirror` records them. */
  private known: string[] = [];

  constructor(
    private readonly couch: Couch,
    private readonly db: string,
    private readonly settings: SitesSettings,
    private readonly outbound: OutboundPolicy,
    private readonly log: Logger,
    /** Told the other sites' ids whenever they change (the gateway's local origins). */
    private readonly learned: (sites: string[]) => void,
  ) {
    const account = { name: SITE_ACCOUNT, role: SITE_ROLE, password: settings.password || '' };
    const targets: Record<SiteData, string> = { packages: db, accounts: '_users', tokens: db + '-tokens', staged: db + '-stage', downloads: db + '-downloads' };
    this.peers = settings.peers.map((url) => {
      const sources: Record<SiteData, string> = { packages: url, accounts: siblingDatabase(url, '_users'), tokens: url + '-tokens', staged: url + '-stage', downloads: url + '-downloads' };
      const job = (data: SiteData) =>
        new NativeReplication(
          couch,
          {
            docId: jobId(db, url) + (data === 'packages' ? '' : '-' + data),
            source: sources[data],
            target: targets[data],
            account,
            selector: data === 'accounts' ? ACCOUNTS_SELECTOR : undefined,
            skipped: data === 'accounts' ? (id) => !id.startsWith('org.couchdb.user:') || SERVICE_ACCOUNTS.includes(id) : undefined,
            label: 'site replication (' + data + ')',
          },
          log,
          outbound,
        );
      const jobs: Partial<Record<SiteData, NativeReplication>> = { packages: job('packages'), tokens: job('tokens'), staged: job('staged'), downloads: job('downloads') };
      if (settings.accounts !== false) jobs.accounts = job('accounts');
      return { url, sources, id: null, error: null, rulesDiffer: false, sharesAccounts: null, jobs };
    });
    this.roundMs = (settings.checkSeconds || 30) * 1000;
    this.loop = new BackgroundLoop((healthy) => this.round(healthy), {
      delay: exponential(1000, this.roundMs),
      onRetry: (err) => this.log.warn({ err: (err as Error).message }, 'sites: a round failed; trying again'),
    });
  }

  /**
   * The site account and the ids recorded so far, before the gateway serves; then, in the background,
   * a round at once (ids learned, jobs set up as far as the peers answer) and every `SITE_CHECK_SECONDS`.
   */
  async start(): Promise<void> {
    if (this.settings.password) await ensureAccount(this.couch, { name: SITE_ACCOUNT, role: SITE_ROLE, password: this.settings.password });
    this.known = await this.recorded();
    if (this.known.length) this.learned(this.known);
    if (this.peers.length) this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  private async round(healthy: () => void): Promise<void> {
    await this.once();
    healthy();
    // A peer not reached yet is asked again soon: it is likely starting too.
    await this.loop.pause.for(this.peers.some((peer) => peer.id === null) ? UNKNOWN_PEER_MS : this.roundMs);
  }

  /** Learns every peer's ids; a peer whose ids are known is pulled from. */
  async once(): Promise<void> {
    const ids = new Set<string>();
    for (const peer of this.peers) {
      try {
        const design = (await this.ask(peer.url, '/_design/mirror')) as MirrorSettings;
        if (!design || typeof design !== 'object') throw new Error('its _design/mirror is not a JSON object');
        const origins = localOrigins(design);
        if (!origins.length) throw new Error('it has no registry id (is it a registry database of this registry software?)');
        const wrong = origins.find((id) => !SITE_ID.test(id));
        if (wrong !== undefined) throw new Error('it names ' + JSON.stringify(wrong.slice(0, 80)) + ' as a site id, which is not one (letters, digits, ".", "_" and "-", at most 128)');
        if (origins.length > MAX_PEER_IDS) throw new Error('it names ' + origins.length + ' site ids, more than ' + MAX_PEER_IDS);
        peer.id = origins[0];
        peer.sharesAccounts = design.accounts !== false;
        peer.error = null;
        for (const id of origins) ids.add(id);
      } catch (err) {
        const error = 'its ids cannot be read: ' + (err as Error).message;
        const repeated = peer.error === error;
        peer.error = error;
        if (!repeated) this.log.warn({ peer: withoutCredentials(peer.url), err: (err as Error).message }, 'sites: a peer cannot be asked for its ids; its packages are pulled once it answers');
      }
    }
    if (ids.size) await this.record(ids);
    await this.compareRules();
    for (const peer of this.peers) {
      if (peer.id === null) continue;
      for (const data of Object.keys(peer.jobs) as SiteData[]) {
        // A peer on a real CouchDB keeps its accounts (its _users is not for the site account to read).
        if (data === 'accounts' && !peer.sharesAccounts) continue;
        try {
          await peer.jobs[data]!.ensure();
        } catch (err) {
          peer.error = 'its replication (' + data + ') cannot be set up: ' + (err as Error).message;
        }
      }
    }
  }

  /**
   * Compares each peer's access rules with this site's. They are each site's own (design documents do
   * not replicate), but the packages are the same: a package private here and readable there is
   * readable to whoever reaches the other site, so a difference is reported (status, health). The orgs
   * (`npm org`, `npm team`, `npm access`: core/orgs.ts) are kept with the rules and compared with them.
   */
  private async compareRules(): Promise<void> {
    const own = await this.couch.db<{ _id: string; rules?: unknown; orgs?: unknown }>(this.db).get('_design/access').catch(() => null);
    for (const peer of this.peers) {
      if (peer.id === null || !own) continue;
      try {
        const theirs = (await this.ask(peer.url, '/_design/access')) as { rules?: unknown; orgs?: unknown };
        peer.rulesDiffer = JSON.stringify(theirs && theirs.rules) !== JSON.stringify(own.rules) ||
          JSON.stringify((theirs && theirs.orgs) || {}) !== JSON.stringify(own.orgs || {});
      } catch {
        // unknown this round: the last comparison stands
      }
    }
  }

  /** `path` of a peer's database (`source`, a URL with the site account's credentials), as JSON. */
  private ask(source: string, path: string): Promise<any> {
    return remoteJson(withoutCredentials(source) + path, basicAuthOf(source), this.outbound);
  }

  /** The other sites' ids recorded in this site's `_design/mirror`. */
  private async recorded(): Promise<string[]> {
    const design = await this.couch.db<MirrorSettings & { _id: string }>(this.db).get('_design/mirror');
    return design && Array.isArray(design.sites) ? design.sites.filter((id): id is string => typeof id === 'string' && SITE_ID.test(id)) : [];
  }

  /** Adds `ids` (this site's own left out) to `_design/mirror`'s `sites`; tells the gateway when they changed. */
  private async record(ids: Set<string>): Promise<void> {
    const db = this.couch.db<MirrorSettings & { _id: string; _rev?: string }>(this.db);
    for (let attempt = 0; attempt < 5; attempt++) {
      const design = await db.get('_design/mirror');
      if (!design) throw new Error('_design/mirror is missing from ' + this.db);
      const own = design.registry;
      const current = (Array.isArray(design.sites) ? design.sites.filter((id): id is string => typeof id === 'string') : []).sort();
      const next = [...new Set([...current, ...ids])].filter((id) => id !== own).sort();
      if (next.join() === current.join()) {
        if (next.join() !== this.known.join()) this.changed(next);
        return;
      }
      try {
        await db.put({ ...design, sites: next });
        this.log.info({ sites: next }, 'sites: the ids of the other sites are recorded; their packages are local here');
        this.changed(next);
        return;
      } catch (err) {
        if (couchFailure(err).statusCode !== 409) throw err; // another gateway recorded them at the same time: read again
      }
    }
  }

  private changed(next: string[]): void {
    this.known = next;
    this.learned(next);
  }

  /** Every peer's replication of packages, as CouchDB reports it, with the peer's id and the state of its accounts and tokens. */
  async status(): Promise<SitePeerStatus[]> {
    return Promise.all(
      this.peers.map(async (peer) => {
        const notReplicated = { state: 'not-replicated', error: 'accounts replicate between sites on the embedded server only; on a real CouchDB an admin creates each account at every site' };
        const [status, accounts, tokens, staged, downloads] = await Promise.all([
          peer.jobs.packages!.status(),
          peer.jobs.accounts && peer.sharesAccounts !== false ? peer.jobs.accounts.jobState() : Promise.resolve(notReplicated),
          peer.jobs.tokens!.jobState(),
          peer.jobs.staged!.jobState(),
          peer.jobs.downloads!.jobState(),
        ]);
        return { ...status, peer: withoutCredentials(peer.url), id: peer.id, accounts, tokens, staged, downloads, rulesDiffer: peer.rulesDiffer, error: peer.error || status.error };
      }),
    );
  }

  /** Each peer's worst job state (cheap, for the health check): a peer not pulled from yet counts as `waiting`. */
  async states(): Promise<{ peer: string; state: string; error: string | null; rulesDiffer: boolean }[]> {
    return Promise.all(
      this.peers.map(async (peer) => {
        const rulesDiffer = peer.rulesDiffer;
        if (peer.id === null) return { peer: withoutCredentials(peer.url), state: 'waiting', error: peer.error, rulesDiffer };
        const jobs = await Promise.all((Object.keys(peer.jobs) as SiteData[]).filter((data) => data !== 'accounts' || peer.sharesAccounts !== false).map(async (data) => ({ data, ...(await peer.jobs[data]!.jobState()) })));
        const failing = jobs.find((job) => job.state !== 'running' && job.state !== 'pending');
        if (!failing) return { peer: withoutCredentials(peer.url), state: 'running', error: peer.error, rulesDiffer };
        return { peer: withoutCredentials(peer.url), state: failing.state, error: peer.error || '(' + failing.data + ') ' + (failing.error || failing.state), rulesDiffer };
      }),
    );
  }

  /**
   * Why sign-up is closed here although the settings open it, or null: a peer runs on a real CouchDB,
   * whose accounts do not replicate, so a name signed up here could be another person's there (a
   * maintainer of packages that are the same at every site).
   */
  signupClosedBy(): string | null {
    const apart = this.peers.find((peer) => peer.sharesAccounts === false);
    return apart
      ? 'Sign-up is closed on this registry: one of its sites (' + withoutCredentials(apart.url) + ') runs on a CouchDB whose accounts do not replicate, so an administrator creates each account at every site.'
      : null;
  }

  /**
   * Copies the account `name` from the first site that has it, when this site does not have it yet
   * (created there a moment ago, not replicated yet): a log-in right after a sign-up elsewhere works.
   * True when it was copied.
   */
  async pullAccount(name: string): Promise<boolean> {
    if (this.settings.accounts === false) return false;
    const id = 'org.couchdb.user:' + name;
    if (SERVICE_ACCOUNTS.includes(id)) return false;
    for (const peer of this.peers) {
      if (peer.sharesAccounts === false) continue;
      const doc = await this.ask(peer.sources.accounts, '/' + encodeURIComponent(id) + '?revs=true').catch(() => null);
      if (!doc || doc._id !== id || doc.name !== name) continue;
      // As replication (whose writes _users' _design/registry-sites checks): people's accounts only.
      if (!isPersonAccount(doc)) return false;
      // As replication writes it: the same revision, so that the replication that follows finds it here.
      await this.couch.request('POST', '/_users/_bulk_docs', { docs: [doc], new_edits: false });
      return true;
    }
    return false;
  }

  /**
   * The live revisions of the account `name` at the other sites (conflicting ones too): none when no
   * other site has it. Sign-up asks before creating one, so that a name is one account at every
   * site, and again after, for a sign-up of the same name at another site at the same moment. A site
   * that cannot be asked makes it throw: sign-up waits for every site rather than risk two people
   * under one name.
   */
  async accountRevisionsElsewhere(name: string): Promise<string[]> {
    const revs: string[] = [];
    for (const peer of this.peers) {
      // A peer on a real CouchDB has accounts of its own (and sign-up here is closed: signupClosedBy).
      if (peer.sharesAccounts === false) continue;
      try {
        const doc = (await this.ask(peer.sources.accounts, '/' + encodeURIComponent('org.couchdb.user:' + name) + '?conflicts=true')) as { _rev?: unknown; _conflicts?: unknown };
        for (const rev of [doc._rev, ...(Array.isArray(doc._conflicts) ? doc._conflicts : [])]) if (typeof rev === 'string') revs.push(rev);
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode === 404) continue;
        throw new Error('the site ' + withoutCredentials(peer.url) + ' cannot be asked whether the name is free (' + (err as Error).message + ')', { cause: err });
      }
    }
    return revs;
  }
}
