/**
 * The supply-chain policy as the gateway applies it (`core/policy.ts` decides): the cooldown from
 * `UPSTREAM_MIN_AGE`, and the exceptions and blocks an admin keeps in the `supply-chain` document of
 * `<db>-state` (edit it in Fauxton):
 *
 *   { "_id": "supply-chain", "cooldownExceptions": ["@types/*", "typescript"],
 *     "blocked": [{ "package": "event-stream", "version": "3.3.6", "reason": "malicious (flatmap-stream)" }] }
 *
 * Every gateway reads the document every two seconds; a change clears the packument cache, so the
 * next read serves the new policy. `_design/config` of `<db>-state` refuses an invalid document when it
 * is written; one that is there anyway (written before that check, or restored from a backup) holds
 * back every mirrored version, and reads of mirrored packages and `/-/health` say what to fix.
 */
import { Logger } from 'pino';
import { LicensePolicy } from '../core/licenses';
import { BlockRule, NO_POLICY, Policy, POLICY_ID, policyProblem } from '../core/policy';
import { advisoryPolicyOf } from '../core/advisories';
import { Couch, Database } from '../couchdb/client';
import { BackgroundLoop, exponential } from '../lib/retry';

export { POLICY_ID };
const POLL_MS = 2000;

export interface PolicyDoc {
  _id: string;
  _rev?: string;
  type: 'policy';
  cooldownExceptions?: unknown;
  blocked?: unknown;
  licenses?: unknown;
  /** The vulnerability policy (core/advisories.ts). */
  advisories?: unknown;
  help?: string;
}

/**
 * The policy document's content; null without a document. An invalid document blocks every mirrored
 * package, with the reason (`problem`): a block the gateway cannot read must not silently let through
 * what it was meant to hold back.
 */
export function policyOf(doc: PolicyDoc | null, minAgeMs: number, stateDb = '<db>-state'): Policy {
  if (!doc) return { ...NO_POLICY, minAgeMs };
  const problem = policyProblem(doc);
  if (problem) {
    const reason = 'the supply-chain policy (document "' + POLICY_ID + '" in ' + stateDb + ') is invalid: ' + problem + '; an admin must fix that document';
    return { minAgeMs, exceptions: [], blocked: [{ package: '**', reason }], problem: reason };
  }
  return {
    minAgeMs,
    exceptions: (doc.cooldownExceptions as string[] | undefined) || [],
    blocked: (doc.blocked as BlockRule[] | undefined) || [],
    licenses: (doc.licenses as LicensePolicy | undefined) || undefined,
    advisories: advisoryPolicyOf(doc.advisories),
  };
}

export class PolicyStore {
  /** The policy in force (read from CouchDB at most two seconds ago). */
  current: Policy;
  private rev: string | undefined;
  private readonly db: Database<PolicyDoc>;
  private readonly loop: BackgroundLoop;

  constructor(
    couch: Couch,
    private readonly stateDb: string,
    private readonly minAgeMs: number,
    private readonly changed: () => void,
    private readonly log: Logger,
  ) {
    this.db = couch.db<PolicyDoc>(this.stateDb);
    this.current = { ...NO_POLICY, minAgeMs };
    this.loop = new BackgroundLoop(
      async (healthy) => {
        while (!this.loop.stopped) {
          await this.refresh();
          healthy();
          await this.loop.pause.for(POLL_MS);
        }
      },
      { delay: exponential(POLL_MS, 30_000), onRetry: (err) => this.log.warn({ err: (err as Error).message }, 'supply-chain policy: reading it failed; the last one read stays in force') },
    );
  }

  /** Reads the document; a new revision takes effect (and clears what was served under the old one). */
  async refresh(): Promise<void> {
    const doc = await this.db.get(POLICY_ID);
    const rev = doc ? doc._rev : undefined;
    if (rev === this.rev) return;
    this.rev = rev;
    this.current = policyOf(doc, this.minAgeMs, this.stateDb);
    this.changed();
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }
}
