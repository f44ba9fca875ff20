/**
 * Pages for people, served on the same paths as the npm API when a browser asks for HTML: the home
 * page (search box, recently published), search results, a package page, log in and out, and the
 * signed-in user's packages and tokens. npm, yarn and pnpm ask for JSON and never see these. The
 * access rules hold here as for the API: a private package needs a login (the pages' own session).
 */
import express, { NextFunction, Request, Response, Router } from 'express';
import { isForeign, isTombstone } from '../../core/packument';
import { packageNameProblem } from '../../core/names';
import { isMirrored } from '../../core/provenance';
import { PackageDoc, Person, VersionManifest } from '../../core/types';
import { abandonSignal, clientAddress } from '../auth';
import { Context, readPackage } from '../context';
import { asHttpError, HttpError } from '../errors';
import { requireSecondFactor } from '../second-factor';
import { parsePackagePath } from '../paths';
import { escape, layout, PageUser, sendHtml } from '../web/html';
import { renderReadme } from '../web/readme';
import { crossSitePost, WebSessions } from '../web/sessions';
import { searchPackages } from './search';
import { ssoLoginOptions } from './sso';
import { withoutWithheld } from '../../core/policy';
import { withheldOf } from '../writes';
import { maintainerNames } from '../../core/rules';
import { StagedStore } from '../staging';

/** Whether the client asked for a page rather than JSON (browsers put text/html first; npm asks for JSON). */
export function wantsPage(req: Request): boolean {
  if (!String(req.headers.accept || '').includes('text/html')) return false;
  return (req.method === 'GET' || req.method === 'HEAD') && req.accepts(['application/json', 'application/vnd.npm.install-v1+json', 'text/html']) === 'text/html';
}

const when = (iso: unknown) => (typeof iso === 'string' ? iso.slice(0, 10) : '');

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

/** A link to another site, only for http(s) addresses (a stored `javascript:` URL stays text). */
function externalLink(url: unknown): string {
  const text = escape(String(url));
  return typeof url === 'string' && /^https?:\/\/[^/\\]/i.test(url) ? `<a href="${text}" rel="nofollow noopener">${text}</a>` : text;
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

  router.get('/-/web/account', handle(async (req, res, user) => {
    if (!user) return void res.redirect(303, base + '/-/web/login?next=' + encodeURIComponent(base + '/-/web/account'));
    const names = new Set<string>();
    for (const db of [ctx.registry, ctx.mirrored]) for (const row of (await db.view<string>('byMaintainer', { key: user.name })).rows) names.add(row.value);
    const packages = [...names].sort().map((name) => `<li>${packageLink(base, name)}</li>`).join('');
    const tokens = (await ctx.tokens.listByUser(user.name))
      .map((t) => `<tr><td><code>${escape(t.preview)}…</code></td><td>${escape(t.name || 'unnamed')}</td><td>${when(t.created)}</td><td>${t.readonly ? 'read-only' : 'publish'}${t.limits && (t.limits.packages || t.limits.scopes) ? ': ' + escape([...(t.limits.packages || []), ...(t.limits.scopes || [])].join(', ')) : ''}</td><td>${t.expires ? when(t.expires) : 'never'}</td><td>${escape(t.cidr_whitelist.join(', '))}</td></tr>`)
      .join('');
    const body = `<h1>${escape(user.name)}</h1>
<h2>Packages you maintain</h2>${packages ? `<ul>${packages}</ul>` : '<p class="muted">None yet.</p>'}
<h2>Your tokens</h2>${tokens ? `<table><thead><tr><th>Token</th><th>Name</th><th>Created</th><th>Access</th><th>Expires</th><th>CIDR</th></tr></thead><tbody>${tokens}</tbody></table>` : '<p class="muted">None.</p>'}
<p class="muted">Revoke a token with <code>npm token revoke &lt;id&gt;</code>.</p>`;
    page(req, res, 200, user.name, body, user);
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
      if (!doc && ctx.mirror && ctx.config.upstreamMode === 'mirror' && ctx.mirror.mayPull(parsed.name)) doc = await ctx.mirror.pull(parsed.name);
      if (!doc) return page(req, res, 404, 'Not found', `<h1>“${escape(parsed.name)}” is not in this registry</h1><p><a href="${escape(base)}/-/web/search?q=${encodeURIComponent(parsed.name)}">Search</a> for it.</p>`, user);
      page(req, res, 200, doc.name, packagePage(doc, versionAsked, await stagingOf(doc, user)), user);
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

  function packagePage(stored: PackageDoc, versionAsked: string | undefined, staged: { waiting: number; required: boolean } | null = null): string {
    const name = stored.name;
    // What the supply-chain policy holds back is not offered here either; it is listed with the reason.
    const withheld = withheldOf(ctx, stored);
    const doc = withoutWithheld(stored, withheld);
    const heldBack = [...withheld.values()]
      .map((w) => `<tr><td>${escape(w.version)}</td><td>${w.kind === 'blocked' ? 'blocked' : 'until ' + escape(when(w.availableAt) + ' ' + String(w.availableAt || '').slice(11, 16) + ' UTC')}</td></tr><tr><td colspan="2" class="muted">${escape(w.reason)}</td></tr>`)
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
    const deprecation = typeof manifest.deprecated === 'string' && manifest.deprecated ? `<p class="deprecated" role="note"><strong>Deprecated:</strong> ${escape(manifest.deprecated)}</p>` : '';
    const readme = renderReadme(version === latestVersion ? doc.readme || manifest.readme : manifest.readme || doc.readme);
    const versions = Object.keys(doc.versions)
      .sort((a, b) => String(doc.time[b] || '').localeCompare(String(doc.time[a] || '')))
      .map((v) => `<tr><td><a href="${escape(base)}/${escape(name)}/v/${escape(v)}">${escape(v)}</a>${doc.versions[v].deprecated ? ' <span class="badge">deprecated</span>' : ''}</td><td class="muted">${when(doc.time[v])}</td></tr>`)
      .join('');
    const tags = Object.entries(doc['dist-tags']).map(([tag, v]) => `<tr><td>${escape(tag)}</td><td>${escape(v)}</td></tr>`).join('');
    const spec = version === latestVersion ? name : name + '@' + version;
    return `<h1>${escape(name)} <span class="muted">${escape(version)}</span>${provenance(ctx, doc)}</h1>
<p>${escape(doc.description || manifest.description || '')}</p>${deprecation}
<div class="layout"><article class="readme">${readme || '<p class="muted">This package has no readme.</p>'}</article>
<aside>
<section><h2>Install</h2><pre>npm install ${escape(spec)}\nyarn add ${escape(spec)}\npnpm add ${escape(spec)}</pre></section>
<section><h2>Dist-tags</h2><table>${tags}</table></section>
<section><h2>Versions</h2><table>${versions}</table></section>
${heldBack ? `<section class="held-back"><h2>Held back</h2><table>${heldBack}</table></section>` : ''}
${staged && (staged.waiting || staged.required) ? `<section class="staged"><h2>Staged</h2><p>${staged.waiting} staged version${staged.waiting === 1 ? '' : 's'} waiting for a maintainer's approval${staged.required ? '; every version of this package must be staged' : ''}. <code>npm stage list ${escape(name)}</code></p></section>` : ''}
<section><h2>Dependencies</h2>${dependencyList(base, manifest.dependencies)}</section>
${manifest.peerDependencies ? `<section><h2>Peer dependencies</h2>${dependencyList(base, manifest.peerDependencies)}</section>` : ''}
<section><h2>Maintainers</h2><p>${people(doc.maintainers)}</p></section>
${typeof manifest.license === 'string' ? `<section><h2>License</h2><p>${escape(manifest.license)}</p></section>` : ''}
</aside></div>`;
  }

  return router;
}
