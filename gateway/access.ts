/**
 * The access rules as the gateway applies them to reads. They are read from `_design/access` (the
 * same document whose validate_doc_update applies them to writes) and kept for a short time, with
 * the orgs kept there (core/orgs.ts): a private package of an org is read by its members only, and a
 * change of an org (a member removed, a status set) holds on every gateway within TTL_MS.
 *
 * Which packages of an org's scope exist is for its members to know: to anyone else (a caller with no
 * login, a user in no org or in another, a member's token limited to other packages) a private
 * package and a name with no package answer alike (`hidden`): 401 asking for a login when there is
 * none, else 404 "not here, or not yours to read", as npm's registry answers. The rules' own refusals
 * (a pattern such as `@corp/*`) name no package and stay 401/403.
 */
import { Response } from 'express';
import { AccessRule, allowed, rulesAllow, rulesProblem } from '../core/access';
import { PackageDoc } from '../core/types';
import { notInOrgMessage, Org, Orgs, orgOf, orgsProblem, roleIn, scopeOf } from '../core/orgs';
import { DESIGN, designId } from '../couchapp/design';
import { Database } from '../couchdb/client';
import { AuthenticatedUser, currentUser } from './auth';
import { forbidden, HttpError, notFound, unauthorized } from './errors';
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

/**
 * What a caller who is not told which packages of the org's scope exist hears of `name` there, whether
 * it is a private package or no package at all: the same status, headers and words, which say what to do.
 */
function hiddenAnswer(name: string, user: AuthenticatedUser | undefined, org: Org): HttpError {
  const scope = scopeOf(name);
  if (!user) {
    return unauthorized('"' + name + '" is not in this registry, or it is private to the members of the org @' + scope + ': if you are one, log in with `npm login` to read it.');
  }
  if (roleIn(org, user.name)) {
    return notFound('"' + name + '" is not in this registry, or this token may not read it: it is limited to ' + describeLimits(user.limits!) + '. For a private package of @' + scope + ', use a token made for it.');
  }
  return notFound('"' + name + '" is not in this registry, or you do not have permission to read it: a private package of the org @' + scope + ' is read by its members, whom an owner of the org adds with `npm org set ' + scope + ' <user>`.');
}

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

  /**
   * Throws unless the caller may read `name`: 401 without a login (so that npm asks for one), 403 when
   * the rules refuse it, and for a private package of an org the answer of a name that does not exist
   * (`hidden`).
   */
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
        // Private by its org alone: which of the org's packages exist is not this token's to learn.
        const org = orgOf(orgs || undefined, name);
        if (org && rulesAllow(rules, name, 'read', ANYONE, orgs || undefined)) throw hiddenAnswer(name, user, org);
        throw forbidden('This token is limited to ' + describeLimits(user.limits!) + '; it cannot read the private package "' + name + '". Use a token made for it.');
      }
      markReadable(res, everyone);
      return;
    }
    // The rules refuse it, whatever packages exist (they name patterns).
    if (!rulesAllow(rules, name, 'read', who, orgs || undefined)) {
      if (!user) throw unauthorized('"' + name + '" is private on this registry: log in with `npm login` to read it.');
      throw forbidden('User "' + user.name + '" may not read "' + name + '" by this registry\'s access rules; ask an admin.');
    }
    // Refused by its org only: a private package, answered as a name that does not exist is.
    throw hiddenAnswer(name, user, orgOf(orgs || undefined, name) as Org);
  }

  /**
   * The answer for `name` when the caller is not told which packages of its org's scope exist (see
   * the top of this file), or null when they are: no org owns the scope, they are an admin, or a
   * member whose credentials cover the name. Every "no such package" of a name a caller may read
   * goes through `missing`, so that it answers as a private package of the org does.
   */
  async hidden(res: Response, name: string): Promise<HttpError | null> {
    const user = currentUser(res);
    const { rules, orgs } = await this.load();
    const org = orgOf(orgs || undefined, name);
    if (!rules || !org || (user && user.roles.includes('_admin'))) return null;
    if (user && roleIn(org, user.name) && tokenCovers(user.limits, name)) return null;
    return hiddenAnswer(name, user, org);
  }

  /** `error` (a package not found), or the answer of a private package to a caller the org hides its scope from. */
  async missing(res: Response, name: string, error: HttpError): Promise<HttpError> {
    return (await this.hidden(res, name)) || error;
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

  /**
   * Throws 403 when an org owns the scope of `name` and `user` is not one of its members (nor an
   * admin): in the scope only members publish (what validate_doc_update refuses with the same words),
   * said before anything that depends on whether `name` exists (is it here, is it the upstream's).
   */
  async assertOrgMember(user: { name: string; roles: string[] }, name: string): Promise<void> {
    if (user.roles.includes('_admin')) return;
    const org = orgOf((await this.load()).orgs || undefined, name);
    if (org && !roleIn(org, user.name)) throw forbidden(notInOrgMessage(user.name, name));
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
