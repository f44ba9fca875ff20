/**
 * The orgs of `_design/access` (core/orgs.ts) as the gateway changes them: read fresh, changed by a
 * function that checks what the caller may do on that fresh copy (no decision on stale data), validated
 * as `_design/access`'s validate_doc_update would, and written by the gateway's admin client (design
 * documents are admins' to write); again when another gateway wrote meanwhile (409), and again when a
 * CouchDB cluster took another gateway's change of the same revision too and kept ours as the losing
 * conflict (deleted then, so that the change is never acknowledged and lost). This gateway then
 * forgets its loaded rules, so its next request sees the change; other gateways see it within the
 * access rules' two-second cache.
 */
import { DEVELOPERS_TEAM, orgsProblem, Orgs, scopeOf } from '../core/orgs';
import { PackageDoc } from '../core/types';
import { DESIGN, designId } from '../couchapp/design';
import { couchFailure, Database } from '../couchdb/client';
import { AccessRules } from './access';
import { HttpError } from './errors';
import { Context, fromCouch } from './context';

const ATTEMPTS = 20;
/** A short random wait before another attempt, so that gateways racing for one revision spread out. */
const jitter = (attempt: number) => new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * Math.min(attempt + 1, 10)));

type AccessDesign = { _id: string; _rev?: string; rules?: unknown; orgs?: unknown };

export class OrgStore {
  constructor(
    private readonly db: Database<PackageDoc>,
    private readonly access: AccessRules,
  ) {}

  /** The orgs as this gateway has them loaded (at most two seconds old); 503 when `_design/access` is invalid. */
  async current(): Promise<Orgs> {
    const { orgs, problem } = await this.access.load();
    if (!orgs) throw new HttpError(503, 'The access rules in _design/access are invalid (' + problem + '); an admin must fix them.');
    return orgs;
  }

  /**
   * Applies `change` to a fresh copy of the orgs and writes it; `change` throws (an HttpError) to refuse.
   * Its result is answered once the write is stored.
   */
  async change<T>(change: (orgs: Orgs) => T): Promise<T> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const design = (await this.db.get(designId(DESIGN.access)).catch((err) => {
        throw fromCouch(err);
      })) as unknown as AccessDesign | null;
      if (!design) throw new HttpError(503, 'This registry has no _design/access; restart it so that it installs one.');
      const before = orgsProblem(design.orgs);
      if (before) throw new HttpError(503, 'The orgs in _design/access are invalid (' + before + '); an admin must fix them.');
      const orgs = JSON.parse(JSON.stringify(design.orgs || {})) as Orgs;
      const result = change(orgs);
      const problem = orgsProblem(orgs);
      // The checks of each change keep the orgs valid: a problem here is the registry's own mistake.
      if (problem) throw new HttpError(500, 'This change would make the orgs invalid (' + problem + '); nothing was changed.');
      let rev: string;
      try {
        rev = (await this.db.put({ ...design, orgs } as unknown as PackageDoc)).rev;
      } catch (err) {
        if (couchFailure(err).statusCode !== 409) throw fromCouch(err);
        await jitter(attempt);
        continue;
      }
      this.access.forget();
      const now = await this.db.winner(design._id).catch((err) => {
        throw fromCouch(err);
      });
      if (now && now._rev !== rev && (now._conflicts || []).includes(rev)) {
        await this.db.remove(design._id, rev).catch(() => undefined);
        await jitter(attempt);
        continue;
      }
      return result;
    }
    throw new HttpError(409, 'The orgs changed while this request was processed; run the command again.');
  }
}

/**
 * npm's default for an org: its `developers` team (every member) gets read-write on each new package
 * of the org's scope, so members publish each other's new packages until an owner revokes it.
 */
export async function grantDevelopers(ctx: Pick<Context, 'registry' | 'access'>, name: string): Promise<void> {
  const scope = scopeOf(name);
  const store = new OrgStore(ctx.registry, ctx.access);
  if (scope === null || !Object.prototype.hasOwnProperty.call(await store.current(), scope)) return;
  await store.change((orgs) => {
    const org = orgs[scope];
    if (!org || !Object.prototype.hasOwnProperty.call(org.teams, DEVELOPERS_TEAM)) return;
    org.packages = org.packages || {};
    const entry = (org.packages[name] = org.packages[name] || {});
    entry.teams = { ...(entry.teams || {}), [DEVELOPERS_TEAM]: 'read-write' };
  });
}
