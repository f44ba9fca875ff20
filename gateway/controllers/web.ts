/**
 * Pages for people, served on the same paths as the npm API when a browser asks for HTML: the home
 * page (search box, recently published), search results, a package page, log in and out, and the
 * signed-in user's account (packages, tokens and their revocation, password change). npm, yarn and
 * pnpm ask for JSON and never see these. The access rules hold here as for the API: a private package
 * needs a login (the pages' own session). A package page shows what the package.json says (links,
 * keywords, author, dependencies of each kind) and what the registry alone knows: who published each
 * version and whether through trusted publishing, its signature and provenance, where a mirrored
 * package comes from and when it was copied, and what the supply-chain policy holds back.
 */
import { createPublicKey, KeyObject, verify } from 'crypto';
import express, { NextFunction, Request, Response, Router } from 'express';
import semver from 'semver';
import { isForeign, isTombstone } from '../../core/packument';
import { packageNameProblem } from '../../core/names';
import { isMirrored } from '../../core/provenance';
import { PackageDoc, Person, VersionManifest } from '../../core/types';
import { abandonSignal, clientAddress } from '../auth';
import { Context, readPackage } from '../context';
import { asHttpError, HttpError } from '../errors';
import { requireSecondFactor, twoFactorOn } from '../second-factor';
import { parsePackagePath } from '../paths';
import { escape, layout, PAGE_SCRIPT, PageUser, sendHtml } from '../web/html';
import { renderReadme } from '../web/readme';
import { crossSitePost, WebSessions } from '../web/sessions';
import { dependentsOf, searchPackages } from './search';
import { downloadCounts } from './downloads';
import { ssoLoginOptions } from './sso';
import { withoutWithheld } from '../../core/policy';
import { withheldOf } from '../writes';
import { maintainerNames } from '../../core/rules';
import { StagedStore } from '../staging';
import { checkPasswordChange } from '../password-change';
import { MIN_PASSWORD_LENGTH } from '../accounts';
import { RegistryKey } from '../signing';

/** Whether the client asked for a page rather than JSON (browsers put text/html first; npm asks for JSON). */
export function wantsPage(req: Request): boolean {
  if (!String(req.headers.accept || '').includes('text/html')) return false;
  return (req.method === 'GET' || req.method === 'HEAD') && req.accepts(['application/json', 'application/vnd.npm.install-v1+json', 'text/html']) === 'text/html';
}

/**
 * The day of an ISO time, or '' for anything else: times come from package documents, and a mirrored
 * one holds whatever its upstream served (`"<img src=x …"` is no date and must not become markup).
 */
const when = (iso: unknown) => (typeof iso === 'string' && /^\d{4}-\d{2}-\d{2}/.test(iso) ? iso.slice(0, 10) : '');

/** The local path to go back to after logging in: a path of this registry, never another site. */
export function safeNext(value: unknown, base: string): string {
  return typeof value === 'string' && value.startsWith(base + '/') && !value.startsWith('//') && !/[\\\r\n]/.test(value) ? value : base + '/';
}

/**
 * A link to a package's page; a name that is no package name (a dependency may be named anything, even
 * `//other.example/x`, which a browser would take for another host) is shown as text.
 */
function packageLink(base: string, name: string): string {
  if (typeof name !== 'string' || packageNameProblem(name, false)) return escape(String(name));
  const path = name.split('/').map((part) => encodeURIComponent(part).replace(/^%40/, '@')).join('/');
  return `<a href="${escape(base)}/${escape(path)}">${escape(name)}</a>`;
}

/** A link to another site, only for http(s) addresses (a stored `javascript:` URL stays text), showing `label` or the address. */
function externalLink(url: unknown, label?: string): string {
  const text = escape(String(url));
  const shown = label === undefined ? text : escape(label);
  return typeof url === 'string' && /^https?:\/\/[^/\\]/i.test(url) ? `<a href="${text}" rel="nofollow noopener noreferrer">${shown}</a>` : shown;
}

const HOSTED_SHORTCUTS: Record<string, string> = { github: 'https://github.com/', gitlab: 'https://gitlab.com/', bitbucket: 'https://bitbucket.org/' };

/**
 * The web address of a package's repository as package.json gives it (`"user/repo"`,
 * `"github:user/repo"`, `{"url": "git+https://…/repo.git"}`, `git@host:user/repo.git`), or undefined
 * when it is none (only http(s) addresses become links).
 */
export function repositoryUrl(repository: unknown): string | undefined {
  const raw = typeof repository === 'string' ? repository : repository && typeof repository === 'object' ? (repository as { url?: unknown }).url : undefined;
  if (typeof raw !== 'string' || raw.length > 1000) return undefined;
  let url = raw.trim();
  const shortcut = /^(?:(github|gitlab|bitbucket):)?([\w.-]+\/[\w.-]+?)(?:\.git)?$/.exec(url);
  if (shortcut) return HOSTED_SHORTCUTS[shortcut[1] || 'github'] + shortcut[2];
  url = url.replace(/^git\+/, '');
  const scp = /^[\w.-]+@([\w.-]+):(?!\/)(.+)$/.exec(url);
  if (scp) url = 'https://' + scp[1] + '/' + scp[2];
  url = url.replace(/^(?:git|ssh):\/\/(?:[\w.-]+@)?/, 'https://').replace(/\.git(#.*)?$/, '');
  return /^https?:\/\/[^/\\@\s]+(\/[^\s]*)?$/i.test(url) ? url : undefined;
}

/** The address of a `bugs` field (`"https://…"` or `{url, email}`), or undefined. */
function bugsUrl(bugs: unknown): string | undefined {
  const url = typeof bugs === 'string' ? bugs : bugs && typeof bugs === 'object' ? (bugs as { url?: unknown }).url : undefined;
  return typeof url === 'string' && /^https?:\/\/[^/\\]/i.test(url) ? url : undefined;
}

/** The author as package.json gives it (`"Name <email> (url)"` or `{name, email, url}`), as HTML. */
function authorOf(author: unknown): string {
  let name: unknown, email: unknown, url: unknown;
  if (typeof author === 'string') {
    const parts = /^([^<(]*)(?:<([^>]*)>)?\s*(?:\(([^)]*)\))?/.exec(author.slice(0, 500)) as RegExpExecArray;
    [name, email, url] = [parts[1].trim() || author.slice(0, 200), parts[2], parts[3]];
  } else if (author && typeof author === 'object') {
    ({ name, email, url } = author as Record<string, unknown>);
  }
  if (typeof name !== 'string' || !name.trim()) return '';
  return externalLink(typeof url === 'string' ? url.trim() : undefined, name.trim().slice(0, 200)) +
    (typeof email === 'string' && /^[^@\s<>]+@[^@\s<>]+$/.test(email.trim()) ? ` <span class="muted">&lt;${escape(email.trim())}&gt;</span>` : '');
}

/** The package's keywords (package.json's list, or a comma-separated text some packages give). */
function keywordsOf(keywords: unknown): string[] {
  const list = Array.isArray(keywords) ? keywords : typeof keywords === 'string' ? keywords.split(/[,\s]+/) : [];
  return [...new Set(list.filter((k): k is string => typeof k === 'string' && k.trim().length > 0 && k.length <= 100).map((k) => k.trim()))].slice(0, 50);
}

/** Versions newest first by semver (1.10.0 before 1.9.0); a version that is none (an old upstream's) goes last, by date. */
export function bySemverDescending(versions: string[], time: Record<string, unknown>): string[] {
  const valid = versions.filter((v) => semver.valid(v)).sort(semver.rcompare);
  const other = versions.filter((v) => !semver.valid(v)).sort((a, b) => String(time[b] || '').localeCompare(String(time[a] || '')));
  return [...valid, ...other];
}

const TRUST_PROVIDERS: Record<string, string> = { github: 'GitHub Actions', gitlab: 'GitLab CI/CD', circleci: 'CircleCI' };

/** Who published a version (`_npmUser`), and through which CI when it came from trusted publishing. */
function publisherOf(manifest: VersionManifest): string {
  const user = manifest._npmUser;
  if (!user || typeof user !== 'object' || typeof user.name !== 'string') return '<span class="muted">unknown</span>';
  const trusted = user.trustedPublisher;
  const via = trusted && typeof trusted === 'object' ? ` <span class="badge trusted" title="Published by a CI job through trusted publishing, without a token">trusted publishing: ${escape(TRUST_PROVIDERS[String(trusted.id)] || String(trusted.id))}</span>` : '';
  return escape(user.name) + via;
}

/** Where a version's registry signature comes from: this registry's key, the upstream's, another, or none. */
function signatureOf(manifest: VersionManifest, keys: RegistryKey[], ownKeyIds: Set<string>): { kind: 'here' | 'upstream' | 'unknown' | 'none'; keyid?: string } {
  const signatures = manifest.dist && Array.isArray(manifest.dist.signatures) ? (manifest.dist.signatures as { keyid?: unknown; sig?: unknown }[]) : [];
  const signature = signatures.find((s) => s && typeof s.keyid === 'string' && typeof s.sig === 'string');
  if (!signature) return { kind: 'none' };
  const keyid = String(signature.keyid);
  if (ownKeyIds.has(keyid)) return { kind: 'here', keyid };
  return { kind: keys.some((k) => k.keyid === keyid) ? 'upstream' : 'unknown', keyid };
}

/** Public keys made from the listed keys' DER, by key id (made once: making one costs more than a check). */
const publicKeys = new Map<string, KeyObject | null>();

function publicKeyOf(key: RegistryKey): KeyObject | null {
  const id = key.keyid + ':' + key.key;
  if (!publicKeys.has(id)) {
    if (publicKeys.size > 100) publicKeys.clear();
    try {
      publicKeys.set(id, createPublicKey({ key: Buffer.from(key.key, 'base64'), format: 'der', type: 'spki' }));
    } catch {
      publicKeys.set(id, null);
    }
  }
  return publicKeys.get(id) || null;
}

/** Whether the registry signature of a version verifies with the listed key it names. */
function signatureVerifies(manifest: VersionManifest, keys: RegistryKey[]): boolean {
  const signatures = manifest.dist && Array.isArray(manifest.dist.signatures) ? (manifest.dist.signatures as { keyid?: unknown; sig?: unknown }[]) : [];
  return signatures.some((s) => {
    const key = keys.find((k) => k.keyid === s.keyid);
    const publicKey = key && publicKeyOf(key);
    if (!publicKey || typeof s.sig !== 'string') return false;
    try {
      return verify('sha256', Buffer.from(manifest.name + '@' + manifest.version + ':' + manifest.dist.integrity), publicKey, Buffer.from(s.sig, 'base64'));
    } catch {
      return false;
    }
  });
}

/** How many versions' signatures a package page checks in its list (newest first); a check costs about 0.1 ms. */
const CHECKED_IN_LIST = 100;

/** The provenance statement's type a version carries (`dist.attestations`), or undefined. */
function provenanceTypeOf(manifest: VersionManifest): string | undefined {
  const attestations = manifest.dist && manifest.dist.attestations;
  if (!attestations || typeof attestations !== 'object') return undefined;
  const type = (attestations as { provenance?: { predicateType?: unknown } }).provenance?.predicateType;
  return typeof type === 'string' ? type : 'unknown';
}

/** How many dependents the package page lists (the rest are in `/-/v1/dependents/<name>`). */
const DEPENDENTS_SHOWN = 20;

/** What the package page shows of a package's use: its downloads here and who depends on it (what the reader may read). */
interface Usage {
  lastWeek?: number;
  lastMonth?: number;
  /** Downloads of each version over the last month. */
  versions?: Record<string, number>;
  dependents?: { names: string[]; total: number };
}

/** The download figures of a package for its side column, or undefined when there are none to show. */
function downloadFigures(usage: Usage): string | undefined {
  if (usage.lastWeek === undefined && usage.lastMonth === undefined) return undefined;
  const figure = (n: number | undefined, what: string) => (n === undefined ? '' : `<li><strong>${n.toLocaleString('en-US')}</strong> ${what}</li>`);
  return `<ul class="figures">${figure(usage.lastWeek, 'in the last 7 days')}${figure(usage.lastMonth, 'in the last 30 days')}</ul><p class="muted">Downloads of its tarballs from this registry.</p>`;
}

/** A foreign package registered here; a mirrored document never is one, whatever `url` the upstream gave it. */
const foreignHere = (ctx: Context, doc: PackageDoc): boolean => isForeign(doc) && !isMirrored(doc, ctx.origins);

function provenance(ctx: Context, doc: PackageDoc): string {
  if (foreignHere(ctx, doc)) return `<span class="badge foreign" title="Hosted at ${escape(doc.url)}">hosted at ${escape(doc.url)}</span>`;
  return originBadge(ctx, doc.origin);
}

/** Where a package with versions comes from: published here, or mirrored from its upstream. */
function originBadge(ctx: Context, origin: string | undefined): string {
  if (origin === ctx.registryId) return '<span class="badge local">published here</span>';
  if (origin !== undefined && ctx.origins.includes(origin)) return '<span class="badge local" title="Published at another site of this registry">published at another site</span>';
  return `<span class="badge mirrored" title="Mirrored from ${escape(origin || 'the upstream')}">mirrored from ${escape(origin || 'the upstream')}</span>`;
}

function people(list: Person[] | undefined): string {
  return (list || []).map((p) => escape(p.name) + (p.email ? ` <span class="muted">&lt;${escape(p.email)}&gt;</span>` : '')).join('<br>') || '<span class="muted">none</span>';
}

function dependencyList(base: string, deps: unknown): string {
  if (!deps || typeof deps !== 'object') return '<p class="muted">None.</p>';
  const entries = Object.entries(deps as Record<string, unknown>);
  if (entries.length === 0) return '<p class="muted">None.</p>';
  return '<ul>' + entries.map(([name, range]) => `<li>${packageLink(base, name)} <span class="muted">${escape(range)}</span></li>`).join('') + '</ul>';
}

export function webRoutes(ctx: Context, sessions: WebSessions): Router {
  const router = Router();
  const base = ctx.config.basePath;
  const staging = new StagedStore(ctx.couch, ctx.config.stageDb);

  /** The signed-in user of the page's session; the pages' access checks see them as the API would. */
  async function pageUser(req: Request, res: Response): Promise<PageUser | null> {
    const session = await sessions.user(req);
    if (!session) return null;
    const name = session.user;
    // The session is the account's it was started for: not after a password change, nor for another
    // account made later under the same name.
    const account = await ctx.accounts.account(name);
    if (!account || session.account !== account.stamp) return null;
    res.locals.user = { name, roles: account.roles.filter((r) => !r.startsWith('_')), email: account.email, readonly: true, via: 'web' };
    return { name };
  }

  /** A page that refuses a form posted from another site (login CSRF, forced logout), or null. */
  function refuseCrossSite(req: Request, res: Response): boolean {
    if (!crossSitePost(req, new URL(ctx.baseUrl).origin)) return false;
    page(req, res, 403, 'Refused', '<h1 class="error">This form was sent from another site</h1><p>Log in and out from this registry\'s own pages.</p>', null);
    return true;
  }

  const page = (req: Request, res: Response, status: number, title: string, body: string, user: PageUser | null, query?: string) =>
    sendHtml(res, status, layout({ title, base, user, query, body }));

  /** A handler for a page: errors become pages too. */
  const handle = (work: (req: Request, res: Response, user: PageUser | null) => Promise<void>) => (req: Request, res: Response, next: NextFunction) => {
    (async () => {
      const user = await pageUser(req, res);
      try {
        await work(req, res, user);
      } catch (err) {
        const known = asHttpError(err);
        if (!known) throw err;
        const login = known.status === 401 ? ` <a href="${escape(base)}/-/web/login?next=${encodeURIComponent(req.originalUrl)}">Log in</a> to see it.` : '';
        page(req, res, known.status, 'Error ' + known.status, `<h1 class="error">${escape(known.message)}</h1><p>${login}</p>`, user);
      }
    })().catch(next);
  };

  router.get('/', (req, res, next) => {
    if (!wantsPage(req)) return next();
    handle(async (_req, res, user) => {
      const rows: { name: string; time: string }[] = [];
      for (const db of [ctx.registry, ctx.mirrored]) {
        for (const row of (await db.view<string>('modified', { descending: true, limit: 40 })).rows) rows.push({ name: row.value, time: String(row.key) });
      }
      rows.sort((a, b) => b.time.localeCompare(a.time));
      const seen = new Set<string>();
      const items: string[] = [];
      for (const row of rows) {
        if (items.length >= 20 || seen.has(row.name)) continue;
        seen.add(row.name);
        if (!(await ctx.access.mayRead(res, row.name))) continue;
        const doc = await readPackage(ctx, row.name);
        if (!doc || isTombstone(doc)) continue;
        items.push(`<li>${packageLink(base, doc.name)} <span class="muted">${escape(doc['dist-tags'].latest || '')}</span>${provenance(ctx, doc)}<br>${escape(doc.description || '')} <span class="muted">${when(row.time)}</span></li>`);
      }
      const list = items.length ? `<ul class="packages">${items.join('')}</ul>` : '<p class="muted">Nothing published yet. Publish with <code>npm publish</code>.</p>';
      page(req, res, 200, 'npm registry', `<h1>Recently published</h1>${list}`, user);
    })(req, res, next);
  });

  router.get('/-/web/search', handle(async (req, res, user) => {
    const query = typeof req.query.q === 'string' ? req.query.q.trim().slice(0, 200) : '';
    if (!query) return page(req, res, 200, 'Search', '<h1>Search</h1><p>Type words of a package name, keyword or description.</p>', user);
    const { found, total } = await searchPackages(ctx, res, query, 50, 0);
    const items = found.map(({ entry }) => `<li>${packageLink(base, entry.name)} <span class="muted">${escape(entry.version)}</span>${originBadge(ctx, entry.origin)}<br>${escape(entry.description || '')}</li>`);
    const body = `<h1>${total} package${total === 1 ? '' : 's'} for “${escape(query)}”</h1>` + (items.length ? `<ul class="packages">${items.join('')}</ul>` : '<p class="muted">No package matches.</p>');
    page(req, res, 200, query + ' – search', body, user, query);
  }));

  router.get('/-/web/login', handle(async (req, res, user) => {
    const next = safeNext(req.query.next, base);
    if (user) return void res.redirect(303, next);
    page(req, res, 200, 'Log in', loginForm(next, undefined, req.query), null);
  }));

  function loginForm(next: string, error?: string, query: Record<string, unknown> = {}): string {
    // Single sign-on's link, and the password form unless password logins are off (controllers/sso.ts).
    const sso = ssoLoginOptions(ctx, next, query);
    return `<h1>Log in</h1>${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}${sso.link}${sso.passwordForm ? `
<form class="login" method="post" action="${escape(base)}/-/web/login"><input type="hidden" name="next" value="${escape(next)}">
<label for="name">User name</label><input id="name" name="name" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<label for="otp">One-time password (if you turned on two-factor authentication)</label><input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code">
<p><button type="submit">Log in</button></p></form>` : ''}`;
  }

  router.post('/-/web/login', express.urlencoded({ extended: false, limit: '16kb' }), handle(async (req, res) => {
    if (refuseCrossSite(req, res)) return;
    const form = (req.body || {}) as Record<string, unknown>;
    const next = safeNext(form.next, base);
    const name = String(form.name || '').trim();
    const identity = await ctx.accounts.verify(name, String(form.password || ''), clientAddress(req), abandonSignal(res));
    if (!identity) return page(req, res, 401, 'Log in', loginForm(next, 'Wrong user name or password.'), null);
    const account = await ctx.accounts.account(identity.name);
    if (!account) return page(req, res, 401, 'Log in', loginForm(next, 'Wrong user name or password.'), null);
    try {
      await requireSecondFactor(ctx.accounts, ctx.config, res, { name: identity.name, credential: 'page:' + identity.name }, account.twoFactor, 'login', String(form.otp || '').trim() || undefined);
    } catch (err) {
      if (err instanceof HttpError) return page(req, res, err.status, 'Log in', loginForm(next, 'Enter the one-time password from your authenticator app (or a recovery code); the one given was missing or wrong.'), null);
      throw err;
    }
    await sessions.start(req, res, identity.name, account.stamp);
    ctx.log.info({ user: identity.name }, 'web page login');
    res.redirect(303, next);
  }));

  router.post('/-/web/logout', handle(async (req, res) => {
    if (refuseCrossSite(req, res)) return;
    await sessions.end(req, res);
    res.redirect(303, base + '/');
  }));

  /** The pages' script: copy buttons (the only script; the pages work without it). */
  router.get('/-/static/pages.js', (_req, res) => {
    res.set({ 'Cache-Control': 'public, max-age=300', 'X-Content-Type-Options': 'nosniff' }).type('text/javascript').send(PAGE_SCRIPT);
  });

  /** The account page, with `notice` (what was just done) or `problem` (what went wrong) above it. */
  async function accountPage(req: Request, res: Response, user: PageUser, status = 200, message?: { notice?: string; problem?: string }): Promise<void> {
    const account = await ctx.accounts.account(user.name);
    const twoFactor = !!account && twoFactorOn(account.twoFactor);
    const names = new Set<string>();
    for (const db of [ctx.registry, ctx.mirrored]) for (const row of (await db.view<string>('byMaintainer', { key: user.name })).rows) names.add(row.value);
    const packages = [...names].sort().map((name) => `<li>${packageLink(base, name)}</li>`).join('');
    const otpField = (id: string) => twoFactor ? `<label for="${id}">One-time password</label><input id="${id}" name="otp" inputmode="numeric" autocomplete="one-time-code" required>` : '';
    // Tokens of the account's former password (or of a former account of the name) are no longer its own.
    const tokens = (await ctx.tokens.listByUser(user.name))
      .filter((t) => account && ctx.accounts.stillFor(t, account))
      .map((t) => `<tr><td><code>${escape(t.preview)}…</code></td><td data-label="Name">${escape(t.name || 'unnamed')}</td><td class="date" data-label="Created">${when(t.created)}</td><td data-label="Access">${t.readonly ? 'read-only' : 'publish'}${t.limits && (t.limits.packages || t.limits.scopes) ? ': ' + escape([...(t.limits.packages || []), ...(t.limits.scopes || [])].join(', ')) : ''}</td><td class="date" data-label="Expires">${t.expires ? when(t.expires) : 'never'}</td><td data-label="CIDR">${t.cidr_whitelist.length ? escape(t.cidr_whitelist.join(', ')) : 'any'}</td>
<td><form class="inline revoke" method="post" action="${escape(base)}/-/web/account/tokens/revoke"><input type="hidden" name="key" value="${escape(t._id)}">${twoFactor ? '<input name="otp" inputmode="numeric" autocomplete="one-time-code" placeholder="one-time password" aria-label="One-time password" required size="10"> ' : ''}<button type="submit" aria-label="Revoke ${escape(t.preview)}…">Revoke</button></form></td></tr>`)
      .join('');
    const body = `<h1>${escape(user.name)}</h1>
${message && message.notice ? `<p class="ok" role="status">${escape(message.notice)}</p>` : ''}${message && message.problem ? `<p class="error" role="alert">${escape(message.problem)}</p>` : ''}
<h2>Packages you maintain</h2>${packages ? `<ul>${packages}</ul>` : '<p class="muted">None yet.</p>'}
<h2>Your tokens</h2>${tokens ? `<div class="scroll"><table class="list stack tokens"><thead><tr><th>Token</th><th>Name</th><th>Created</th><th>Access</th><th>Expires</th><th>CIDR</th><th></th></tr></thead><tbody>${tokens}</tbody></table></div>` : '<p class="muted">None.</p>'}
<p class="muted">Make one with <code>npm token create</code> or <code>npm login</code>; a revoked token stops working at once.</p>
<h2 id="password">Change your password</h2>
<form class="login password" method="post" action="${escape(base)}/-/web/account/password">
<label for="old">Current password</label><input id="old" name="old" type="password" autocomplete="current-password" required>
<label for="new">New password</label><input id="new" name="new" type="password" autocomplete="new-password" minlength="${MIN_PASSWORD_LENGTH}" required>
<label for="again">New password again</label><input id="again" name="again" type="password" autocomplete="new-password" minlength="${MIN_PASSWORD_LENGTH}" required>
${otpField('password-otp')}
<p class="muted">Your tokens end with your old password: log in again with <code>npm login</code>.</p>
<p><button type="submit">Change password</button></p></form>`;
    page(req, res, status, user.name, body, user);
  }

  router.get('/-/web/account', handle(async (req, res, user) => {
    if (!user) return void res.redirect(303, base + '/-/web/login?next=' + encodeURIComponent(base + '/-/web/account'));
    const done = req.query.done;
    const notice = done === 'revoked' ? 'The token was revoked.' : done === 'password' ? 'Your password was changed; your tokens of the old one were ended.' : undefined;
    await accountPage(req, res, user, 200, { notice });
  }));

  /**
   * The second factor for a change on the account page: the code typed in the form, when the account
   * has two-factor authentication on. Throws a 401 page error when it is missing or wrong.
   */
  async function pageSecondFactor(res: Response, name: string, otp: unknown): Promise<void> {
    const account = await ctx.accounts.account(name);
    if (!account || !twoFactorOn(account.twoFactor)) return;
    const code = typeof otp === 'string' ? otp.trim() : '';
    const wrong = new HttpError(401, 'Enter the one-time password from your authenticator app (or a recovery code); the one given was missing or wrong.');
    if (!code) throw wrong;
    try {
      await requireSecondFactor(ctx.accounts, ctx.config, res, { name, credential: 'page:' + name }, account.twoFactor, 'credentials', code);
    } catch (err) {
      if (err instanceof HttpError) throw err.status === 401 ? wrong : err;
      throw err;
    }
  }

  const smallForm = express.urlencoded({ extended: false, limit: '16kb' });

  /** A form of the account page: refused from another site and without a session; errors shown on the account page. */
  const accountForm = (work: (req: Request, res: Response, user: PageUser, form: Record<string, unknown>) => Promise<void>) =>
    handle(async (req, res, user) => {
      if (refuseCrossSite(req, res)) return;
      if (!user) return void page(req, res, 401, 'Log in', `<h1 class="error">Log in first</h1><p><a href="${escape(base)}/-/web/login?next=${encodeURIComponent(base + '/-/web/account')}">Log in</a> to change your account.</p>`, null);
      try {
        await work(req, res, user, (req.body || {}) as Record<string, unknown>);
      } catch (err) {
        const known = asHttpError(err);
        if (!known) throw err;
        await accountPage(req, res, user, known.status, { problem: known.message });
      }
    });

  router.post('/-/web/account/tokens/revoke', smallForm, accountForm(async (req, res, user, form) => {
    const key = typeof form.key === 'string' ? form.key : '';
    if (!/^[0-9a-f]{64}$/.test(key)) throw new HttpError(400, 'Choose a token to revoke from the list.');
    await pageSecondFactor(res, user.name, form.otp);
    // Only the user's own token: another's key (or a deploy token's) is not found.
    if (!(await ctx.tokens.revokeKey(key, user.name))) throw new HttpError(404, 'No token of yours has that key; it may have been revoked already.');
    ctx.log.info({ user: user.name, via: 'web' }, 'token revoked');
    res.redirect(303, base + '/-/web/account?done=revoked');
  }));

  router.post('/-/web/account/password', smallForm, accountForm(async (req, res, user, form) => {
    const [old, next, again] = [form.old, form.new, form.again].map((v) => (typeof v === 'string' ? v : ''));
    if (!old || !next) throw new HttpError(400, 'Give your current password and the new one.');
    if (next !== again) throw new HttpError(400, 'The new password and its repetition differ; type them again.');
    await checkPasswordChange(ctx.accounts, req, res, user.name, old, next);
    await pageSecondFactor(res, user.name, form.otp);
    await ctx.accounts.update(user.name, { password: next });
    ctx.log.info({ user: user.name, fields: ['password'], via: 'web' }, 'profile changed');
    // The password change ended this session with the others (the account's stamp changed): the user
    // just proved the new password, so the page goes on in a new session for the account as it is now.
    const account = await ctx.accounts.account(user.name);
    await sessions.end(req, res);
    if (account) await sessions.start(req, res, user.name, account.stamp);
    res.redirect(303, base + '/-/web/account?done=password');
  }));

  /** A package page: `/<name>` and `/<name>/v/<version>`. */
  router.get('*', (req, res, next) => {
    if (!wantsPage(req)) return next();
    const parsed = parsePackagePath(req.path);
    if (!parsed || parsed.name.startsWith('-') || parsed.name.startsWith('_')) return next();
    const versionAsked = parsed.rest.length === 2 && parsed.rest[0] === 'v' ? parsed.rest[1] : undefined;
    if (parsed.rest.length > 0 && versionAsked === undefined) return next();
    handle(async (req, res, user) => {
      await ctx.access.assertRead(res, parsed.name);
      let doc = await readPackage(ctx, parsed.name);
      // No package, to a caller the org of its scope hides which exist from: the page of a private one.
      const hidden = doc ? null : await ctx.access.hidden(res, parsed.name);
      if (hidden) throw hidden;
      // Pulled through from the upstream the name is routed to, when that one mirrors.
      const route = doc ? null : ctx.upstreams.upstreamFor(parsed.name);
      if (!doc && route && route.mode === 'mirror' && route.mirror) doc = await route.mirror.pull(parsed.name);
      if (!doc) return page(req, res, 404, 'Not found', `<h1>“${escape(parsed.name)}” is not in this registry</h1><p><a href="${escape(base)}/-/web/search?q=${encodeURIComponent(parsed.name)}">Search</a> for it.</p>`, user);
      page(req, res, 200, doc.name, packagePage(doc, versionAsked, await stagingOf(doc, user), await signingKeys(), await usageOf(res, doc.name)), user);
    })(req, res, next);
  });

  /**
   * For a maintainer of the local package `doc` only: how many versions of it wait in staging, and
   * whether it requires staging; null for everyone else (staged versions are never shown to others).
   */
  async function stagingOf(doc: PackageDoc, user: PageUser | null): Promise<{ waiting: number; required: boolean } | null> {
    if (!user || isTombstone(doc) || isMirrored(doc, ctx.origins) || !maintainerNames(doc).includes(user.name)) return null;
    const waiting = (await staging.ofPackage(doc.name).catch(() => [])).length;
    return { waiting, required: doc.registry_staging === 'required' };
  }

  /**
   * The package's downloads (last 7 and 30 days, per version) and its dependents, as far as the reader
   * may read them; what cannot be had now (the search index still loading, the downloads database
   * failing) is left out rather than waited for.
   */
  async function usageOf(res: Response, name: string): Promise<Usage> {
    const usage: Usage = {};
    const [week, month, dependents] = await Promise.all([
      downloadCounts(ctx, res, name, 'last-week').catch(() => null),
      downloadCounts(ctx, res, name, 'last-month').catch(() => null),
      dependentsOf(ctx, res, name, DEPENDENTS_SHOWN, 0, { wait: false }).catch(() => null),
    ]);
    if (week) usage.lastWeek = week.total;
    if (month) {
      usage.lastMonth = month.total;
      usage.versions = month.versions;
    }
    if (dependents) usage.dependents = { names: dependents.dependents.map((entry) => entry.name), total: dependents.total };
    return usage;
  }

  /** The keys signatures are checked with: this registry's and the upstream's (none when signing is off). */
  async function signingKeys(): Promise<{ keys: RegistryKey[]; own: Set<string> }> {
    if (!ctx.keys) return { keys: [], own: new Set() };
    const keys = ctx.keys;
    return { keys: await keys.keys(), own: await keys.ownKeyIds() };
  }

  /** How each kind of held-back version is labelled on the package page (the cooldown shows until when). */
  const HELD_KIND: Record<string, string> = { blocked: 'blocked', license: 'license not allowed' };

  function packagePage(stored: PackageDoc, versionAsked: string | undefined, staged: { waiting: number; required: boolean } | null, signing: { keys: RegistryKey[]; own: Set<string> }, usage: Usage): string {
    const name = stored.name;
    // What the supply-chain policy holds back is not offered here either; it is listed with the reason.
    const withheld = withheldOf(ctx, stored);
    const doc = withoutWithheld(stored, withheld);
    const heldBack = [...withheld.values()]
      .map((w) => `<tr><td>${escape(w.version)}</td><td>${w.kind === 'cooldown' ? 'until ' + escape(when(w.availableAt) + ' ' + String(w.availableAt || '').slice(11, 16) + ' UTC') : w.kind === 'advisory' ? (w.advisory ? 'advisory ' + externalLink(w.advisory.url, String(w.advisory.id)) + ' (' + escape(w.advisory.severity) + ')' : 'not checked for advisories yet') : escape(HELD_KIND[w.kind] || w.kind)}</td></tr><tr><td colspan="2" class="muted">${escape(w.reason)}</td></tr>`)
      .join('');
    if (foreignHere(ctx, doc)) {
      return `<h1>${escape(name)}${provenance(ctx, doc)}</h1><p>${escape(doc.description || '')}</p>
<p>This package lives in another registry, ${externalLink(doc.url)}; this registry serves it from there.</p>
<h2>Maintainers</h2><p>${people(doc.maintainers)}</p>`;
    }
    if (isTombstone(doc)) {
      const info = doc.time.unpublished as { time?: string };
      return `<h1>${escape(name)}</h1><p class="deprecated">This package was unpublished${info && info.time ? ' on ' + when(info.time) : ''}. Its version numbers are never reused.</p>`;
    }
    const latestVersion = doc['dist-tags'].latest;
    const version = versionAsked && doc.versions[versionAsked] ? versionAsked : latestVersion;
    const manifest = (doc.versions[version] || {}) as VersionManifest;
    const mirrored = isMirrored(doc, ctx.origins);
    const deprecation = typeof manifest.deprecated === 'string' && manifest.deprecated ? `<p class="deprecated" role="note"><strong>Deprecated:</strong> ${escape(manifest.deprecated)}</p>` : '';
    const readme = renderReadme(version === latestVersion ? doc.readme || manifest.readme : manifest.readme || doc.readme);
    const pathOf = name.split('/').map((part) => encodeURIComponent(part).replace(/^%40/, '@')).join('/');

    const versionList = bySemverDescending(Object.keys(doc.versions), doc.time);
    const versionRows = versionList
      .map((v, index) => {
        const m = doc.versions[v];
        const signature = signatureOf(m, signing.keys, signing.own);
        const signer = signature.kind === 'here' ? 'here' : 'upstream';
        const checked = signature.kind === 'here' || signature.kind === 'upstream' ? (index < CHECKED_IN_LIST ? signatureVerifies(m, signing.keys) : undefined) : false;
        const signed = signature.kind === 'none' ? ''
          : signature.kind === 'unknown' ? `<span class="badge bad" title="Signed with key ${escape(signature.keyid)}, which this registry does not list">signature unchecked: unknown key</span>`
          : checked === false ? `<span class="badge bad" title="The signature by key ${escape(signature.keyid)} does not match this version">signature fails</span>`
          : `<span class="badge signed" title="Registry signature, key ${escape(signature.keyid)}${checked ? ', verified' : '; open the version to check it'}">signed ${signer}${checked ? ' ✓' : ''}</span>`;
        const checks = [
          signed,
          provenanceTypeOf(m) ? '<span class="badge provenance" title="Published with a provenance statement">provenance</span>' : '',
          m.deprecated ? '<span class="badge">deprecated</span>' : '',
        ].join('');
        return `<tr${v === version ? ' class="shown"' : ''}><td><a href="${escape(base)}/${escape(pathOf)}/v/${escape(encodeURIComponent(v))}">${escape(v)}</a></td><td class="muted date" data-label="Published">${when(doc.time[v])}</td><td data-label="By">${publisherOf(m)}</td><td class="num" data-label="Downloads (30 days)">${usage.versions ? (usage.versions[v] || 0).toLocaleString('en-US') : ''}</td><td>${checks}</td></tr>`;
      })
      .join('');
    const tags = Object.entries(doc['dist-tags']).map(([tag, v]) => `<tr><td>${escape(tag)}</td><td>${escape(v)}</td></tr>`).join('');
    const spec = version === latestVersion ? name : name + '@' + version;

    const kinds: [string, string, unknown][] = [
      ['dependencies', 'Dependencies', manifest.dependencies],
      ['devDependencies', 'Dev dependencies', manifest.devDependencies],
      ['peerDependencies', 'Peer dependencies', manifest.peerDependencies],
      ['optionalDependencies', 'Optional dependencies', manifest.optionalDependencies],
    ];
    const countOf = (deps: unknown) => (deps && typeof deps === 'object' ? Object.keys(deps).length : 0);
    const dependencies = kinds.map(([id, title, deps]) => `<h2 id="${id}">${title} <span class="muted">(${countOf(deps)})</span></h2>${dependencyList(base, deps)}`).join('');

    const repository = repositoryUrl(manifest.repository ?? doc.repository);
    const homepage = typeof (manifest.homepage ?? doc.homepage) === 'string' ? String(manifest.homepage ?? doc.homepage) : undefined;
    const bugs = bugsUrl(manifest.bugs ?? doc.bugs);
    const links = [
      repository ? `<li>Repository: ${externalLink(repository, repository.replace(/^https?:\/\//, ''))}</li>` : '',
      homepage ? `<li>Homepage: ${externalLink(homepage, homepage.replace(/^https?:\/\//, ''))}</li>` : '',
      bugs ? `<li>Issues: ${externalLink(bugs, bugs.replace(/^https?:\/\//, ''))}</li>` : '',
    ].join('');
    const keywords = keywordsOf(manifest.keywords ?? doc.keywords)
      .map((k) => `<a href="${escape(base)}/-/web/search?q=${encodeURIComponent('keywords:' + k)}">${escape(k)}</a>`)
      .join('');
    const author = authorOf(manifest.author ?? doc.author);

    // What the registry alone knows about the shown version.
    const signature = signatureOf(manifest, signing.keys, signing.own);
    const verified = signature.kind !== 'none' && signatureVerifies(manifest, signing.keys);
    const signatureText = signature.kind === 'none'
      ? '<span class="muted">No registry signature.</span>'
      : signature.kind === 'unknown'
        ? `<span class="error">Signature cannot be checked</span>: it names a key this registry does not list (<code>${escape(String(signature.keyid).slice(0, 19))}…</code>).`
        : `${verified ? '<span class="ok">Signature verifies</span>' : '<span class="error">Signature does not verify</span>'} (${signature.kind === 'here' ? "this registry's key" : "the upstream's key"} <code>${escape(String(signature.keyid).slice(0, 19))}…</code>).`;
    const provenanceType = provenanceTypeOf(manifest);
    const attestationsUrl = manifest.dist && manifest.dist.attestations && typeof (manifest.dist.attestations as { url?: unknown }).url === 'string'
      ? String((manifest.dist.attestations as { url: string }).url) : undefined;
    const provenanceText = provenanceType
      ? `Provenance: ${escape(provenanceType.replace(/^https:\/\/slsa\.dev\/provenance\//, 'SLSA provenance '))}${mirrored ? ' (from the upstream)' : ', checked when published'}${!mirrored ? ` (<a href="${escape(base)}/-/npm/v1/attestations/${escape(pathOf)}@${escape(encodeURIComponent(version))}">attestations</a>)` : attestationsUrl ? ` (${externalLink(attestationsUrl, 'attestations')})` : ''}.`
      : '<span class="muted">No provenance statement.</span>';
    const origin = mirrored
      ? `<p>Mirrored from ${externalLink(doc.origin, doc.origin)}${typeof doc.origin_synced === 'string' ? `; last copied ${escape(doc.origin_synced.slice(0, 16).replace('T', ' '))} UTC` : ''}${doc.origin_rev ? ` <span class="muted">(upstream revision ${escape(String(doc.origin_rev).split('-')[0])})</span>` : ''}.</p>`
      : '';
    const downloads = downloadFigures(usage);
    const dependents = usage.dependents
      ? usage.dependents.total === 0
        ? '<p class="muted">No package here depends on it (of those you may read, by their latest versions).</p>'
        : `<ul class="dependents">${usage.dependents.names.map((n) => `<li><a href="${escape(base)}/${escape(n)}">${escape(n)}</a></li>`).join('')}</ul>` +
          (usage.dependents.total > usage.dependents.names.length ? `<p class="muted">${usage.dependents.names.length} of ${usage.dependents.total}; all of them: <a href="${escape(base)}/-/v1/dependents/${escape(pathOf)}">JSON</a>.</p>` : '')
      : '<p class="muted">Not known yet: the search index is loading.</p>';

    return `<h1>${escape(name)} <span class="muted">${escape(version)}</span>${provenance(ctx, doc)}</h1>
<p>${escape(doc.description || manifest.description || '')}</p>${deprecation}
${keywords ? `<p class="keywords" aria-label="Keywords">${keywords}</p>` : ''}
<div class="layout"><div class="main">
<nav class="tabs" aria-label="Sections"><a href="#readme">Readme</a><a href="#deps">Dependencies (${countOf(manifest.dependencies)})</a><a href="#versions">Versions (${versionList.length})</a><a href="#dependents">Dependents${usage.dependents ? ` (${usage.dependents.total})` : ''}</a></nav>
<div class="panels">
<section id="readme" class="default"><article class="readme">${readme || '<p class="muted">This package has no readme.</p>'}</article></section>
<section id="deps">${dependencies}<p class="muted">Of version ${escape(version)}.</p></section>
<section id="versions"><h2>Versions</h2><div class="scroll"><table class="list stack versions"><thead><tr><th>Version</th><th>Published</th><th>By</th><th>Downloads (30 days)</th><th>Checks</th></tr></thead><tbody>${versionRows}</tbody></table></div></section>
<section id="dependents"><h2>Dependents</h2>${dependents}</section>
</div></div>
<aside>
<section><h2>Install</h2><ul class="install"><li><code class="copy">npm install ${escape(spec)}</code></li><li><code class="copy">yarn add ${escape(spec)}</code></li><li><code class="copy">pnpm add ${escape(spec)}</code></li></ul></section>
${links ? `<section class="links"><h2>Links</h2><ul>${links}</ul></section>` : ''}
${downloads ? `<section class="downloads"><h2>Downloads</h2>${downloads}</section>` : ''}
<section class="published"><h2>Version ${escape(version)}</h2><p>Published ${escape(when(doc.time[version]))} by ${publisherOf(manifest)}.</p><p>${signatureText}</p><p>${provenanceText}</p>${origin}</section>
${author ? `<section class="author"><h2>Author</h2><p>${author}</p></section>` : ''}
<section><h2>Dist-tags</h2><table>${tags}</table></section>
${heldBack ? `<section class="held-back"><h2>Held back</h2><table>${heldBack}</table></section>` : ''}
${staged && (staged.waiting || staged.required) ? `<section class="staged"><h2>Staged</h2><p>${staged.waiting} staged version${staged.waiting === 1 ? '' : 's'} waiting for a maintainer's approval${staged.required ? '; every version of this package must be staged' : ''}. <code>npm stage list ${escape(name)}</code></p></section>` : ''}
<section><h2>Maintainers</h2><p>${people(doc.maintainers)}</p></section>
${typeof manifest.license === 'string' ? `<section><h2>License</h2><p>${escape(manifest.license)}</p></section>` : ''}
</aside></div>`;
  }

  return router;
}
