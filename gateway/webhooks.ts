/**
 * Webhooks: other systems told of publishes, unpublishes, dist-tag changes, deprecations, owner
 * changes, staged publishes (staged, approved, rejected) and mirrored versions the vulnerability
 * policy holds back (`package:held`). Hooks are documents of `<db>-state` (admins only; edit them in Fauxton):
 *
 *   { "_id": "webhook:ci", "type": "webhook", "url": "https://ci.example/npm-hook",
 *     "secret": "…", "events": ["package:publish"], "packages": "@acme/*", "active": true }
 *
 * `events` (default: all) and `packages` (a pattern of the access rules, default all) choose what is
 * sent. Each event becomes a delivery document in the same database before it is sent, so a restart
 * loses nothing: a worker in every gateway sends what is due, one gateway at a time per delivery (a
 * lease taken with the document's revision, held only while it is the winning revision without a
 * conflict: see `lease`), as JSON signed with HMAC-SHA256 of the hook's secret
 * (`x-npm-signature: sha256=<hex>`, as npm's hooks sign), and tries again with growing waits. Every
 * delivery passes the outbound request policy: a receiver on a loopback or private address is
 * refused (and the refusal recorded as the delivery's error) unless OUTBOUND_ALLOW_PRIVATE allows it;
 * redirects are not followed.
 */
import { createHmac, randomBytes } from 'crypto';
import { Logger } from 'pino';
import { patternMatches } from '../core/access';
import { EVENT_NAMES, eventsOf, RegistryEvent } from '../core/events';
import { RefusedPublish } from '../core/merge';
import { PackageDoc } from '../core/types';
import { Couch, Database } from '../couchdb/client';
import { BackgroundLoop, exponential } from '../lib/retry';
import { OutboundPolicy } from '../config';
import { seqNumber } from '../replication/feed/planner';
import { outboundRequest } from '../replication/upstream';
import { databasePosition } from './changes';

export interface WebhookDoc {
  _id: string;
  _rev?: string;
  type: 'webhook';
  url: string;
  secret: string;
  events?: string[];
  packages?: string;
  active?: boolean;
}

interface Delivery {
  _id: string;
  _rev?: string;
  type: 'delivery';
  hook: string;
  event: string;
  name: string;
  /** The JSON sent, exactly as signed. */
  body: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  /** Epoch ms of the next attempt. */
  next: number;
  /** Epoch ms until which one gateway is sending it. */
  leaseUntil?: number;
  created: string;
  lastError?: string;
  lastStatus?: number;
  delivered?: string;
}

/** Attempts before a delivery is given up (state `failed`, kept for an admin to see). */
export const MAX_DELIVERY_ATTEMPTS = 10;
const LEASE_MS = 30_000;

/**
 * Whether a lease ending at `leaseUntil` is running at `now`. No gateway takes one for longer than
 * `LEASE_MS` (twice that allows for a gateway whose clock is ahead): one ending later was not written
 * by a gateway (an admin's edit, a restored backup) and holds nothing, or the delivery would never go.
 */
function leaseRunning(leaseUntil: number | undefined, now: number): boolean {
  return !!leaseUntil && leaseUntil > now && leaseUntil <= now + 2 * LEASE_MS;
}
const SEND_TIMEOUT_MS = 10_000;
/** How long at most this gateway looks for a delivery it recorded at every poll (`unseen`). */
const RECORDED_LOOK_MS = 10_000;
const POLL_MS = 1000;

/** The signature of `body` with `secret`, as sent in `x-npm-signature`. */
export function signatureOf(secret: string, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}

function wants(hook: WebhookDoc, event: RegistryEvent): boolean {
  if (hook.active === false || typeof hook.url !== 'string' || !/^https?:\/\//.test(hook.url) || typeof hook.secret !== 'string') return false;
  const events = Array.isArray(hook.events) && hook.events.length ? hook.events : EVENT_NAMES;
  if (events.indexOf(event.event) === -1) return false;
  return typeof hook.packages !== 'string' || !hook.packages || patternMatches(hook.packages, event.name);
}

export class Webhooks {
  private readonly db: Database<WebhookDoc | Delivery>;
  private hooks: { list: WebhookDoc[]; at: number } | null = null;
  private readonly loop: BackgroundLoop;
  /**
   * What the last look for due deliveries saw when none was due: the state database's position then,
   * and when the earliest pending delivery falls due (null: none is pending). Until the position
   * moves or that time comes, nothing is looked for: a look is a Mango query, about 5 ms of CPU on
   * the embedded server, and it was made every second of an idle registry.
   */
  private quiet?: { position: string; dueAt: number | null };
  /**
   * The deliveries this gateway recorded that no look has found yet, with when: until a look finds
   * them (or `RECORDED_LOOK_MS` passed), due deliveries are looked for at every poll whatever the
   * position says. On a CouchDB cluster the query reads one copy of each shard, which may not have
   * the delivery yet when the position already counts it; the position then stays, and the delivery
   * would wait for the next change of the database.
   */
  private readonly unseen = new Map<string, number>();

  constructor(
    private readonly couch: Couch,
    stateDb: string,
    private readonly registryUrl: () => string,
    private readonly log: Logger,
    /** The outbound request policy every delivery passes (a receiver on a private address needs OUTBOUND_ALLOW_PRIVATE). */
    private readonly outbound: OutboundPolicy,
    /** The first wait after a failed delivery; the waits double up to an hour. */
    private readonly backoffMs = 5000,
  ) {
    this.db = couch.db(stateDb);
    this.loop = new BackgroundLoop(
      async () => {
        while (!this.loop.stopped) {
          const sent = await this.sendDue();
          if (sent === 0) await this.loop.pause.for(POLL_MS);
        }
      },
      { delay: exponential(1000, 30_000), onRetry: (err) => this.log.warn({ err: (err as Error).message }, 'webhooks: reading the deliveries failed; retrying') },
    );
  }

  private async activeHooks(): Promise<WebhookDoc[]> {
    if (this.hooks && Date.now() - this.hooks.at < 2000) return this.hooks.list;
    const list = (await this.db.find({ selector: { type: 'webhook' }, limit: 1000 })) as WebhookDoc[];
    this.hooks = { list, at: Date.now() };
    return list;
  }

  /**
   * Records the deliveries of one write (`before` → `after`, made by `actor`). A failure to record is
   * logged, never turned into a failure of the write, which is already stored.
   */
  async written(before: PackageDoc | null, after: PackageDoc, actor: string): Promise<void> {
    await this.record(eventsOf(before, after), actor, after.name);
  }

  /**
   * Records `package:publish-refused` for publishes the merge of conflicting revisions refused (the
   * same version as one published first, with other bytes); the actor is the refused publisher.
   */
  async refused(publishes: RefusedPublish[]): Promise<void> {
    for (const p of publishes) {
      const change = { version: p.version, integrity: p.integrity, kept: p.kept, published: p.time };
      await this.record([{ event: 'package:publish-refused', name: p.name, change }], p.publisher || '', p.name);
    }
  }

  /** Records a staging event (`package:stage`, `-approve`, `-reject`) of `name` by `actor`. */
  async staging(event: 'package:stage' | 'package:stage-approve' | 'package:stage-reject', name: string, change: Record<string, unknown>, actor: string): Promise<void> {
    await this.record([{ event, name, change }], actor, name);
  }

  /** Records `package:held`: versions of the mirrored `name` an advisory holds back from now on (`change.versions`). */
  async held(name: string, change: Record<string, unknown>): Promise<void> {
    await this.record([{ event: 'package:held', name, change }], '', name);
  }

  private async record(events: RegistryEvent[], actor: string, name: string): Promise<void> {
    if (events.length === 0) return;
    try {
      const hooks = await this.activeHooks();
      const time = new Date().toISOString();
      let recorded = 0;
      for (const event of events) {
        for (const hook of hooks.filter((h) => wants(h, event))) {
          const id = 'delivery:' + time + ':' + randomBytes(6).toString('hex');
          const body = JSON.stringify({ event: event.event, type: 'package', name: event.name, change: event.change, actor, time, registry: this.registryUrl(), hook: hook._id.replace(/^webhook:/, ''), delivery: id });
          await this.db.put({ _id: id, type: 'delivery', hook: hook._id, event: event.event, name: event.name, body, state: 'pending', attempts: 0, next: 0, created: time });
          this.unseen.set(id, Date.now());
          recorded++;
        }
      }
      if (recorded) {
        this.quiet = undefined;
        this.loop.wake();
      }
    } catch (err) {
      this.log.error({ err: (err as Error).message, package: name }, 'webhooks: the deliveries of a change could not be recorded');
    }
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Sends the deliveries that are due; returns how many it tried. */
  private async sendDue(): Promise<number> {
    const now = Date.now();
    // Its leading number: on a CouchDB cluster the rest names the shard copies that answered, and
    // changes from one read to the next with nothing written.
    const raw = await databasePosition(this.couch, this.db.name);
    const position = String(seqNumber(raw) ?? raw);
    for (const [id, at] of this.unseen) if (now - at > RECORDED_LOOK_MS) this.unseen.delete(id);
    if (this.quiet && this.quiet.position === position && (this.quiet.dueAt === null || now < this.quiet.dueAt) && this.unseen.size === 0) return 0;
    this.quiet = undefined;
    const due = (await this.db.find({ selector: { type: 'delivery', state: 'pending', next: { $lte: now } }, limit: 20 })) as Delivery[];
    for (const delivery of due) this.unseen.delete(delivery._id);
    if (due.length === 0) {
      const upcoming = (await this.db.find({
        selector: { type: 'delivery', state: 'pending', next: { $gt: now } },
        sort: [{ type: 'asc' }, { state: 'asc' }, { next: 'asc' }],
        limit: 1,
      })) as Delivery[];
      this.quiet = { position, dueAt: upcoming.length ? upcoming[0].next : null };
      return 0;
    }
    let tried = 0;
    for (const found of due) {
      if (this.loop.stopped) break;
      if (leaseRunning(found.leaseUntil, now)) continue;
      const leased = await this.lease(found._id, now);
      if (!leased) continue;
      tried++;
      await this.send(leased);
    }
    return tried;
  }

  /**
   * Takes the lease of delivery `id` when it is due: whoever writes it first (by revision) sends it.
   * The query that found it read one copy of its index (on a cluster, one copy of each shard), which
   * may be older than the document: what the document says now, read with `r` = the write quorum,
   * decides. On a cluster, a lease written on a revision that was already replaced is taken on that
   * copy (`202`), read-repaired into a conflicting branch and confirmed: so the lease holds only when,
   * read again after it, it is the winning revision with no conflict. Returns the leased delivery, or
   * null when another gateway has it, it is not due, or it was done on another branch.
   */
  private async lease(id: string, now: number): Promise<Delivery | null> {
    const current = (await this.db.winner(id)) as (Delivery & { _conflicts?: string[] }) | null;
    if (!current || current.state !== 'pending' || current.next > now) return null;
    if (leaseRunning(current.leaseUntil, now)) return null;
    const { _conflicts: conflicts, ...delivery } = current;
    if (conflicts && conflicts.length) {
      // Whatever the branches hold, settling one delivery never stops the round (and the ones after it).
      await this.settle(delivery, conflicts, now).catch((err) => {
        this.log.warn({ err: (err as Error).message, delivery: id }, 'webhooks: a delivery stored on conflicting branches could not be settled; tried again later');
      });
      return null;
    }
    let rev: string;
    try {
      rev = (await this.db.put({ ...delivery, leaseUntil: now + LEASE_MS })).rev;
    } catch {
      return null; // another gateway took it
    }
    const after = await this.db.winner(id);
    if (after && after._rev === rev && !(after._conflicts && after._conflicts.length)) return { ...delivery, leaseUntil: now + LEASE_MS, _rev: rev };
    // Another gateway leased the same revision on another copy: the loser's branch goes, and the winner's
    // lease runs out unsent (settled on a later look), so that neither sends it twice.
    if (after && after._rev !== rev) await this.db.remove(id, rev).catch(() => undefined);
    return null;
  }

  /**
   * Settles a delivery stored with conflicting revisions (`winner` and the losing `conflicts`): an
   * outcome recorded on any branch (delivered, or failed for good) is the delivery's outcome; a branch
   * whose lease is still running is left to its gateway; the other losing branches are removed.
   */
  private async settle(winner: Delivery, conflicts: string[], now: number): Promise<void> {
    const losers: Delivery[] = [];
    for (const rev of conflicts) {
      const loser = await this.db.request<Delivery>('GET', encodeURIComponent(winner._id) + '?rev=' + encodeURIComponent(rev)).catch(() => null);
      if (loser) losers.push(loser);
    }
    if (losers.some((loser) => leaseRunning(loser.leaseUntil, now))) return;
    const done = losers.find((loser) => loser.state !== 'pending');
    if (done) {
      // The outcome only (the rest of that branch, such as an attachment the winner has not, is not the delivery's).
      const { state, attempts, delivered, lastStatus, lastError } = done;
      await this.db.put({ ...winner, state, attempts, delivered, lastStatus, lastError, leaseUntil: undefined });
    }
    for (const loser of losers) await this.db.remove(winner._id, loser._rev as string);
    this.log.info({ delivery: winner._id, branches: losers.length + 1 }, 'webhooks: a delivery stored on conflicting branches was settled');
  }

  private async send(delivery: Delivery): Promise<void> {
    const hook = (await this.db.get(delivery.hook)) as WebhookDoc | null;
    const attempts = delivery.attempts + 1;
    let outcome: Partial<Delivery>;
    if (!hook || hook.active === false) {
      outcome = { state: 'failed', lastError: 'the hook ' + delivery.hook + ' was removed or switched off' };
    } else {
      let status = 0;
      let error = '';
      try {
        const response = await outboundRequest(new URL(hook.url), {
          policy: this.outbound,
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'couch-npm-registry-webhooks',
            'x-npm-signature': signatureOf(hook.secret, delivery.body),
            'x-registry-event': delivery.event,
            'x-registry-delivery': delivery._id,
          },
          body: delivery.body,
          signal: AbortSignal.timeout(SEND_TIMEOUT_MS),
          manualRedirects: true,
        });
        status = response.status;
        response.body.resume();
      } catch (err) {
        error = (err as { code?: string }).code === 'EOUTBOUND' ? (err as Error).message : (err as { cause?: { code?: string }; code?: string }).cause?.code || (err as { code?: string }).code || (err as Error).message;
      }
      if (status >= 200 && status < 300) {
        outcome = { state: 'delivered', delivered: new Date().toISOString(), lastStatus: status };
      } else {
        const lastError = error || 'the receiver answered ' + status;
        outcome = attempts >= MAX_DELIVERY_ATTEMPTS
          ? { state: 'failed', lastError, lastStatus: status || undefined }
          : { state: 'pending', lastError, lastStatus: status || undefined, next: Date.now() + exponential(this.backoffMs, 3_600_000)(attempts) };
        this.log.warn({ hook: delivery.hook, event: delivery.event, package: delivery.name, attempts, err: lastError }, 'webhooks: a delivery failed');
      }
    }
    await this.db.put({ ...delivery, ...outcome, attempts, leaseUntil: undefined }).catch((err) => {
      this.log.warn({ err: (err as Error).message, delivery: delivery._id }, 'webhooks: the outcome of a delivery could not be recorded; it will be sent again');
    });
  }
}
