/**
 * The access rules as the gateway applies them to reads. They are read from `_design/access` (the
 * same document whose validate_doc_update applies them to writes) and kept for a short time, with
 * the orgs kept there (core/orgs.ts): a private package of an org is read by its members only, and a
 * change of an org (a member removed, a status set) holds on every gateway within TTL_MS.
 */
import { Response } from 'express';
import { AccessRule, allowed, rulesProblem } from '../core/access';
import { PackageDoc } from '../core/types';
import { orgAllows, Orgs, orgsProblem, scopeOf } from '../core/orgs';
import { DESIGN, designId } from '../couchapp/design';
import { Database } from '../couchdb/client';
import { currentUser } from './auth';
import { forbidden, HttpError, unauthorized } from './errors';
import { markReadable } from './http-cache';
import { describeLimits, isLimited, tokenCovers } from '../core/tokens';

const TTL_MS = 2000;

/** The answer to reads while the rules are invalid: nobody but admins can be judged by them. */
function brokenRules(problem: string | null): HttpError {
  return new HttpError(503, 'This registry cannot decide who may read or publish: its access rules in _design/access are invalid (' + problem + '). An admin must fix that document (in Fauxton: /-/couchdb/_utils/).');
}

/** The rules and orgs as loaded: both null (with the problem) when either is invalid. */
export interface LoadedRules {
  rules: AccessRule[] | null;
  orgs: Orgs | null;
  problem: string | null;
}

/** Whom the rules' `$all` names: anyone, logged in or not (what a package readable by anyone is). */
const ANYONE = { name: null, roles: [] as string[] };

export class AccessRules {
  private cached: (LoadedRules & { at: number }) | null = null;

  constructor(private readonly db: Database<PackageDoc>) {}

  private refreshing: Promise<LoadedRules> | null = null;

  /** The rules, read again when older than TTL_MS; concurrent callers share one read. */
  async load(): Promise<LoadedRules> {
    if (this.cached && Date.now() - this.cached.at < TTL_MS) return this.cached;
    return this.refresh();
  }

  /** Forgets the loaded rules and orgs (after this gateway changed them), so that the next request reads them. */
  forget(): void {
    this.cached = null;
  }

  refresh(): Promise<LoadedRules> {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        const design = (await this.db.get(designId(DESIGN.access))) as { rules?: unknown; orgs?: unknown } | null;
        const rules = design ? design.rules : undefined;
        const orgs = design ? design.orgs : undefined;
        const problem = rulesProblem(rules) || orgsProblem(orgs);
        this.cached = { rules: problem ? null : (rules as AccessRule[]), orgs: problem ? null : ((orgs as Orgs) || {}), problem, at: Date.now() };
        return this.cached;
      })().finally(() => (this.refreshing = null));
    }
    return this.refreshing;
  }

  /** Why the rules in `_design/access` are invalid now, or null (read again, for `/-/health`). */
  async problem(): Promise<string | null> {
    return (await this.refresh()).problem;
  }

  /**
   * Whether anyone, anonymous included, may read `name` by the rules read less than two seconds ago;
   * false when they are older or unknown (the caller then takes the ordinary path, which reads them).
   * Rules older than a second are read again in the background, so that steady traffic never finds
   * them stale.
   */
  anonymousMayReadNow(name: string): boolean {
    const cached = this.cached;
    const age = cached ? Date.now() - cached.at : Infinity;
    if (age >= TTL_MS / 2) void this.refresh().catch(() => undefined);
    if (!cached || !cached.rules || age >= TTL_MS) return false;
    return allowed(cached.rules, name, 'read', ANYONE, cached.orgs || undefined);
  }

  /** Throws 401 (anonymous, so that npm asks for credentials) or 403 unless the caller may read `name`. */
  async assertRead(res: Response, name: string): Promise<void> {
    const user = currentUser(res);
    const who = { name: user ? user.name : null, roles: user ? user.roles : [] };
    const { rules, orgs, problem } = await this.load();
    if (!rules) {
      if (who.roles.includes('_admin')) return;
      throw brokenRules(problem);
    }
    if (allowed(rules, name, 'read', who, orgs || undefined)) {
      const everyone = allowed(rules, name, 'read', ANYONE, orgs || undefined);
      // A token limited to some packages reads the others only where anyone may.
      if (!everyone && user && !tokenCovers(user.limits, name)) {
        throw forbidden('This token is limited to ' + describeLimits(user.limits!) + '; it cannot read the private package "' + name + '". Use a token made for it.');
      }
      markReadable(res, everyone);
      return;
    }
    if (!user) throw unauthorized('"' + name + '" is private on this registry: log in with `npm login` to read it.');
    if (orgAllows(orgs || undefined, name, 'read', who) === false) {
      throw forbidden('"' + name + '" is private to the members of the org @' + scopeOf(name) + ': an owner of the org adds members with `npm org set ' + scopeOf(name) + ' <user>`.');
    }
    throw forbidden('User "' + user.name + '" may not read "' + name + '" by this registry\'s access rules; ask an admin.');
  }

  /**
   * Whether the caller may read a name, by the rules as now loaded (for filtering long lists such as
   * search results); null when they may read every package.
   */
  async reader(res: Response): Promise<((name: string) => boolean) | null> {
    const user = currentUser(res);
    const who = { name: user ? user.name : null, roles: user ? user.roles : [] };
    const loaded = await this.load();
    const rules = loaded.rules;
    const orgs = loaded.orgs || undefined;
    if (who.roles.includes('_admin')) return null;
    if (!rules) return () => false;
    const anyPrivate = !!orgs && Object.keys(orgs).some((org) => Object.keys(orgs[org].packages || {}).some((pkg) => orgs[org].packages![pkg].status === 'private'));
    if (!anyPrivate && rules.length && rules[0].package === '**' && (rules[0].read || []).includes('$all')) return null;
    const limits = user && isLimited(user.limits) ? user.limits : undefined;
    if (limits) return (name) => allowed(rules, name, 'read', ANYONE, orgs) || (tokenCovers(limits, name) && allowed(rules, name, 'read', who, orgs));
    return (name) => allowed(rules, name, 'read', who, orgs);
  }

  /**
   * Throws 403 unless the rules let `user` publish `name` (what `_design/access` checks at every
   * write), for what is checked before a write: a staged publish, which is stored elsewhere first.
   */
  async assertPublish(user: { name: string; roles: string[] }, name: string): Promise<void> {
    const { rules, orgs, problem } = await this.load();
    if (user.roles.includes('_admin')) return;
    if (!rules) throw brokenRules(problem);
    if (!allowed(rules, name, 'publish', user, orgs || undefined)) throw forbidden('User "' + user.name + '" may not publish "' + name + '" by this registry\'s access rules; ask an admin.');
  }

  /** Whether anyone, anonymous included, may read `name` by the rules (`npm access get status`). */
  async anyoneMayRead(name: string): Promise<boolean> {
    const { rules, orgs } = await this.load();
    return !!rules && allowed(rules, name, 'read', ANYONE, orgs || undefined);
  }

  /** Whether the caller may read `name` (for filtering lists such as search results). */
  async mayRead(res: Response, name: string): Promise<boolean> {
    try {
      await this.assertRead(res, name);
      return true;
    } catch {
      return false;
    }
  }
}
