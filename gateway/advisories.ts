/**
 * The vulnerability policy at the gateway (the policy itself: `core/advisories.ts`; the upstream's
 * answers: `replication/advisories.ts`): `package:held` webhook events for versions an advisory holds
 * back from now on, what `/-/replication` lists as held back, and the `/-/health` check of the
 * upstream's advisory endpoint.
 */
import { addAdvisoryWithheld, Advisory, AdvisoryPolicy, exceptionFor, reachesThreshold, severityRank } from '../core/advisories';
import { Withheld } from '../core/policy';
import { isMirrored } from '../core/provenance';
import { PackageDoc } from '../core/types';
import type { RecordChange } from '../replication/advisories';
import { Context } from './context';

/** The versions of `doc` an advisory holds back under `policy` (unchecked ones left out), with it. */
function heldByAdvisory(doc: PackageDoc, policy: AdvisoryPolicy): Map<string, Withheld> {
  const withheld = new Map<string, Withheld>();
  addAdvisoryWithheld(doc, { ...policy, unchecked: 'serve' }, withheld);
  return withheld;
}

/**
 * Records `package:held` for each package whose new advisory record holds back versions (or holds
 * them back for another advisory) that the record before did not: the versions, each with its
 * advisory (id, title, URL, severity) and the reason npm users are given.
 */
export function announceHeld(ctx: Pick<Context, 'policy' | 'webhooks' | 'origins'>, changes: RecordChange[]): void {
  const policy = ctx.policy?.current.advisories;
  const webhooks = ctx.webhooks;
  if (!policy || !webhooks) return;
  for (const { before, doc } of changes) {
    if (!isMirrored(doc, ctx.origins)) continue;
    const now = heldByAdvisory(doc, policy);
    const was = heldByAdvisory({ ...doc, origin_advisories: before }, policy);
    const versions = [...now.values()]
      .filter((w) => w.advisory && !(was.get(w.version)?.advisory && String(was.get(w.version)?.advisory?.id) === String(w.advisory.id)))
      .map((w) => ({ version: w.version, advisory: w.advisory, reason: w.reason }));
    if (versions.length) void webhooks.held(doc.name, { versions, policy: { severity: policy.severity } });
  }
}

/** One version an advisory holds back, as `/-/replication` lists it. */
export interface HeldByAdvisory {
  name: string;
  version: string;
  advisory: { id: number | string; title: string; url: string; severity: string };
}

/** Rows of `advisoriesByVersion` read per request, and at most in all, by one listing. */
const PAGE_ROWS = 500;
const MAX_ROWS = 20_000;
/** Versions of one package listed at most: past them, the listing goes on with the next package. */
const PER_PACKAGE = 50;

/**
 * The mirrored versions the advisories hold back under `policy` (at most `limit`), from the
 * `advisoriesByVersion` view of the mirror database (only versions some advisory covers are in it),
 * of the packages `mayRead` lets the caller read. Read a page at a time, at most `MAX_ROWS` rows, and
 * at most `PER_PACKAGE` versions of one package, so that one package with many advisories and
 * versions neither makes the listing large nor leaves the others out of it.
 */
export async function heldByAdvisories(ctx: Pick<Context, 'mirrored'>, policy: AdvisoryPolicy, mayRead: (name: string) => Promise<boolean> = async () => true, limit = 1000): Promise<HeldByAdvisory[]> {
  const held = new Map<string, HeldByAdvisory>();
  const readable = new Map<string, boolean>();
  let startkey: unknown;
  let skip = 0;
  let read = 0;
  let current = '';
  let ofCurrent = 0;
  while (read < MAX_ROWS && held.size < limit) {
    const rows = (await ctx.mirrored.view<Advisory>('advisoriesByVersion', { ...(startkey === undefined ? {} : { startkey }), skip, limit: PAGE_ROWS })).rows;
    read += rows.length;
    skip += rows.length;
    let jump: string | null = null;
    for (const row of rows) {
      const [name, version] = row.key as unknown as [string, string];
      if (name !== current) {
        current = name;
        ofCurrent = 0;
      }
      if (!readable.has(name)) readable.set(name, await mayRead(name));
      const advisory = row.value;
      if (!readable.get(name) || !advisory || !reachesThreshold(policy, advisory) || exceptionFor(policy, name, advisory)) continue;
      const key = name + '@' + version;
      const known = held.get(key);
      if (known && severityRank(known.advisory.severity) >= severityRank(advisory.severity)) continue;
      if (!known && ++ofCurrent > PER_PACKAGE) {
        jump = name;
        break;
      }
      held.set(key, { name, version, advisory: { id: advisory.id, title: advisory.title, url: advisory.url, severity: advisory.severity } });
      if (held.size >= limit) break;
    }
    if (jump !== null) {
      // The rest of this package is skipped: on with the next one.
      startkey = [jump, {}];
      skip = 0;
    } else if (rows.length < PAGE_ROWS) break;
  }
  return [...held.values()];
}
