/**
 * The pages for people, in Debian's Chromium driven by playwright-core: the home page, search, a
 * package page (readme, versions, dist-tags, dependencies, maintainers, deprecation, provenance,
 * install commands), following a dependency, logging in to see a private package, the account page,
 * and readmes that try to run code. npm clients keep getting JSON on the same paths.
 * Then what a package page shows beside Verdaccio's (links, keywords, author, highlighted code,
 * versions by semver with who published them and their signature and provenance, a dependencies
 * tab, copy buttons, where a mirrored package comes from), at 1280 and 390 px, light and dark, with
 * and without scripts; the account page's token revocation and password change, and attacks on
 * them: package.json fields that try to run code, forms posted from another site.
 */
import { createHash, generateKeyPairSync, sign } from 'crypto';
import { mkdirSync, readFileSync } from 'fs';
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { Secret, TOTP } from 'otpauth';
import { Browser, BrowserContextOptions, Page } from 'playwright-core';
import { describeWithBrowser, launchChromium } from '../helpers/browser';
import { makePackage, npmClient, NpmClient } from '../helpers/npm';
import { basicAuthOf, couchGet, startTestRegistry, TestRegistry } from '../helpers/registry';

let registry: TestRegistry;
let browser: Browser;
let webber: NpmClient;

const HOSTILE_README = [
  '# Hostile',
  '<script>window.__pwned = "script"</script>',
  '<img src="data:image/png;base64,AAAA" onerror="window.__pwned = \'onerror\'">',
  '<img src=x onerror=window.__pwned=1>',
  '[a link](javascript:window.__pwned="link")',
  '<a href="javascript:window.__pwned=\'href\'" id="evil-link">raw link</a>',
  '<iframe src="https://evil.example/"></iframe>',
  '<div style="position:fixed;top:0;left:0;width:100%;height:100%" onclick="window.__pwned=\'click\'">cover</div>',
  '<svg onload="window.__pwned=\'svg\'"><circle r="5"></circle></svg>',
  '<form action="https://evil.example/"><input name="password"></form>',
  '<object data="https://evil.example/x.swf"></object>',
  '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
  '<style>body { display: none }</style>',
  'Plain text stays.',
].join('\n\n');

async function publish(manifest: Record<string, unknown>, readme: string): Promise<void> {
  const result = await webber.npm(['publish'], makePackage(webber.home, manifest, { 'README.md': readme }));
  if (result.code !== 0) throw new Error('publish of ' + String(manifest.name) + ' failed: ' + result.stderr);
}

/** Whether a screenshot shows a rendered page: a PNG as wide as the viewport with far more in it than a blank or error page. */
function looksRendered(png: Buffer, viewportWidth = 1280): boolean {
  const isPng = png.subarray(1, 4).toString() === 'PNG';
  const width = png.readUInt32BE(16);
  return isPng && width >= Math.min(800, viewportWidth) && png.length > 15_000;
}

/** The upstream's signing key (as the registry keeps the upstream's public keys) for the mirrored versions. */
const upstreamKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const upstreamKeyDer = upstreamKey.publicKey.export({ type: 'spki', format: 'der' });
const upstreamKeyId = 'SHA256:' + createHash('sha256').update(upstreamKeyDer).digest('base64').replace(/=+$/, '');
const upstreamSignature = (spec: string, integrity: string) => ({ keyid: upstreamKeyId, sig: sign('sha256', Buffer.from(spec + ':' + integrity), upstreamKey.privateKey).toString('base64') });

beforeAll(async () => {
  registry = await startTestRegistry();
  // The upstream's keys, as the registry fetched and kept them (before any page lists the keys).
  const kept = await fetch(new URL('/' + registry.registryDb + '-state/upstream-keys', new URL(registry.adminCouchUrl).origin), {
    method: 'PUT',
    headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'upstream-keys', upstream: 'https://upstream.example', fetched: new Date().toISOString(), keys: [{ expires: null, keyid: upstreamKeyId, keytype: 'ecdsa-sha2-nistp256', scheme: 'ecdsa-sha2-nistp256', key: upstreamKeyDer.toString('base64') }] }),
  });
  if (kept.status !== 201) throw new Error('cannot keep the upstream keys: ' + kept.status);
  webber = npmClient(registry.url, await registry.signup('webber', 'webber-password'));
  // @private/* is for logged-in users only (as an admin would set it in Fauxton).
  const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
  const rules = [{ package: '@private/*', read: ['$authenticated'], publish: ['$authenticated'] }, { package: '**', read: ['$all'], publish: ['$authenticated'] }];
  const saved = await fetch(new URL('/' + registry.registryDb + '/_design/access', new URL(registry.adminCouchUrl).origin), {
    method: 'PUT',
    headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' },
    body: JSON.stringify({ ...design.body, rules }),
  });
  if (saved.status !== 201) throw new Error('cannot set the access rules: ' + saved.status);
  await publish({ name: 'web-dep', version: '1.0.0', description: 'A dependency of the web app' }, '# web-dep\n\nThe dependency.');
  await publish({ name: 'web-app', version: '1.0.0', description: 'An app for the web pages', dependencies: { 'web-dep': '^1.0.0' } }, '# web-app\n\nOld readme.');
  await publish(
    { name: 'web-app', version: '1.1.0', description: 'An app for the web pages', license: 'MIT', dependencies: { 'web-dep': '^1.0.0' } },
    '# web-app\n\nRenders **Markdown**.\n\n```js\nconst app = require("web-app");\n```\n\n[Docs](https://example.com/docs)\n',
  );
  const deprecate = await webber.npm(['deprecate', 'web-app@1.0.0', 'Use 1.1.0: 1.0.0 leaks memory']);
  if (deprecate.code !== 0) throw new Error(deprecate.stderr);
  await publish({ name: '@private/secret', version: '1.0.0', description: 'Only for colleagues' }, '# Secret\n\nFor logged-in users.');
  await publish({ name: 'hostile-readme', version: '1.0.0', description: 'Tries to run code' }, HOSTILE_README);
  // A mirrored package, as replication stores it (an admin may write the mirror database).
  const mirrored = { name: 'from-upstream', 'dist-tags': { latest: '2.0.0' }, maintainers: [{ name: 'someone', email: 's@example.com' }], origin: 'https://upstream.example', time: { created: '2026-01-01T00:00:00.000Z', modified: '2026-01-01T00:00:00.000Z', '2.0.0': '2026-01-01T00:00:00.000Z' }, versions: { '2.0.0': { name: 'from-upstream', version: '2.0.0', dist: { tarball: 'https://upstream.example/x.tgz', shasum: '0'.repeat(40), integrity: 'sha512-AAAA' } } }, readme: 'Mirrored readme.' };
  const put = await fetch(new URL('/' + registry.registryDb + '-mirror/from-upstream', new URL(registry.adminCouchUrl).origin), {
    method: 'PUT',
    headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' },
    body: JSON.stringify(mirrored),
  });
  if (put.status !== 201) throw new Error('cannot store the mirrored package: ' + put.status);
});

afterAll(async () => {
  await registry?.stop();
});

describe('npm clients on the same paths', () => {
  it('get JSON, not pages', async () => {
    const json = await fetch(registry.url + '/web-app', { headers: { accept: 'application/json' } });
    expect(json.headers.get('content-type')).toContain('application/json');
    expect(((await json.json()) as { name: string }).name).toBe('web-app');
    const corgi = await fetch(registry.url + '/web-app', { headers: { accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8, */*' } });
    expect(corgi.headers.get('content-type')).toContain('application/vnd.npm.install-v1+json');
    const view = await webber.npm(['view', 'web-app', 'version']);
    expect(view.stdout.trim()).toBe('1.1.0');
  });
});

const describeBrowser = describeWithBrowser('the web page tests');

describeBrowser('pages in a browser', () => {
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  async function withPage(work: (page: Page) => Promise<void>): Promise<void> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    try {
      await work(page);
    } finally {
      await context.close();
    }
  }

  it('home page: recently published packages and a search box; private packages only for logged-in users', async () => {
    await withPage(async (page) => {
      const response = await page.goto(registry.url + '/');
      expect(response?.status()).toBe(200);
      expect(response?.headers()['content-security-policy']).toContain("default-src 'none'");
      await page.waitForSelector('h1:has-text("Recently published")');
      const names = await page.locator('ul.packages li a').allTextContents();
      expect(names).toEqual(expect.arrayContaining(['web-app', 'web-dep', 'hostile-readme', 'from-upstream']));
      expect(names).not.toContain('@private/secret');
      expect(looksRendered(await page.screenshot({ path: join(registry.dataDir, 'home.png') }))).toBe(true);
    });
  });

  it('search, open a package, follow a dependency', async () => {
    await withPage(async (page) => {
      await page.goto(registry.url + '/');
      await page.fill('input[type=search]', 'web');
      await page.press('input[type=search]', 'Enter');
      await page.waitForSelector('h1:has-text("for “web”")');
      expect(await page.locator('ul.packages li a').allTextContents()).toEqual(expect.arrayContaining(['web-app', 'web-dep']));
      await page.click('ul.packages li a:text-is("web-app")');
      await page.waitForSelector('h1:has-text("web-app")');
      expect(await page.textContent('h1')).toContain('1.1.0');
      expect(await page.textContent('.readme h1')).toBe('web-app');
      expect(await page.textContent('.readme strong')).toBe('Markdown');
      expect(await page.textContent('.readme pre code')).toContain('require("web-app")');
      expect(await page.getAttribute('.readme a:text-is("Docs")', 'rel')).toContain('noopener');
      const aside = (await page.textContent('aside')) as string;
      for (const text of ['npm install web-app', 'yarn add web-app', 'pnpm add web-app', 'latest', 'webber', 'MIT']) expect(aside).toContain(text);
      expect(await page.locator('table.versions tbody tr td:first-child').allTextContents()).toEqual(['1.1.0', '1.0.0']);
      expect(await page.textContent('.badge.local')).toContain('published here');
      expect(await page.locator('table.versions tbody tr').first().textContent()).toMatch(/1\.1\.0\s*\d{4}-\d{2}-\d{2}\s*webber/);
      expect(looksRendered(await page.screenshot({ path: join(registry.dataDir, 'package.png') }))).toBe(true);
      await page.click('nav.tabs a[href="#deps"]');
      await page.click('#deps a:text-is("web-dep")');
      await page.waitForSelector('h1:has-text("web-dep")');
      expect(page.url()).toBe(registry.url + '/web-dep');
      expect(await page.textContent('.readme')).toContain('The dependency.');
    });
  });

  it('a deprecated version shows its deprecation; mirrored and foreign packages say where they come from', async () => {
    await withPage(async (page) => {
      await page.goto(registry.url + '/web-app/v/1.0.0');
      expect(await page.textContent('.deprecated')).toContain('Use 1.1.0: 1.0.0 leaks memory');
      expect(await page.textContent('table.versions')).toContain('deprecated');
      await page.goto(registry.url + '/from-upstream');
      expect(await page.textContent('.badge.mirrored')).toContain('mirrored from https://upstream.example');
      const registered = await registry.request('PUT', '/lives-elsewhere', { token: await registry.signup('foreigner'), body: { name: 'lives-elsewhere', maintainers: ['foreigner'], url: 'https://other.example', description: 'Elsewhere' } });
      expect(registered.status).toBe(201);
      await page.goto(registry.url + '/lives-elsewhere');
      expect(await page.textContent('.badge.foreign')).toContain('hosted at https://other.example');
    });
  });

  it('a private package needs a login: the page asks for one, and after it shows the package; log out ends it', async () => {
    await withPage(async (page) => {
      const denied = await page.goto(registry.url + '/@private/secret');
      expect(denied?.status()).toBe(401);
      expect(await page.textContent('main')).toContain('private');
      expect(await page.textContent('main')).not.toContain('For logged-in users');
      await page.click('main a:text-is("Log in")');
      await page.fill('#name', 'webber');
      await page.fill('#password', 'wrong-password');
      await page.click('form.login button');
      expect(await page.textContent('.error')).toContain('Wrong user name or password');
      await page.fill('#name', 'webber');
      await page.fill('#password', 'webber-password');
      await page.click('form.login button');
      await page.waitForSelector('h1:has-text("@private/secret")');
      expect(page.url()).toBe(registry.url + '/@private/secret');
      expect(await page.textContent('.readme')).toContain('For logged-in users.');
      const [cookie] = (await page.context().cookies()).filter((c) => c.name === 'registry_session');
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', secure: false, path: '/' });
      // The session cookie is for the pages: the npm API does not take it as a login.
      const api = await page.context().request.get(registry.url + '/@private/secret', { headers: { accept: 'application/json' } });
      expect(api.status()).toBe(401);

      await page.goto(registry.url + '/');
      expect(await page.locator('ul.packages li a').allTextContents()).toContain('@private/secret');
      await page.click('header a:text-is("webber")');
      await page.waitForSelector('h2:has-text("Packages you maintain")');
      const account = (await page.textContent('main')) as string;
      for (const text of ['web-app', 'web-dep', '@private/secret', 'npm login', 'cnr_']) expect(account).toContain(text);
      expect(looksRendered(await page.screenshot({ path: join(registry.dataDir, 'account.png') }))).toBe(true);

      await page.click('header button:text-is("Log out")');
      await page.waitForSelector('header a:text-is("Log in")');
      expect((await page.goto(registry.url + '/@private/secret'))?.status()).toBe(401);
    });
  });

  it('a login page sends back only to this registry', async () => {
    await withPage(async (page) => {
      await page.goto(registry.url + '/-/web/login?next=' + encodeURIComponent('https://evil.example/'));
      await page.fill('#name', 'webber');
      await page.fill('#password', 'webber-password');
      await page.click('form.login button');
      await page.waitForSelector('h1:has-text("Recently published")');
      expect(page.url()).toBe(registry.url + '/');
    });
  });

  it('a hostile readme runs nothing: no scripts, handlers, javascript: links, frames, forms or styles survive', async () => {
    await withPage(async (page) => {
      const dialogs: string[] = [];
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });
      const requests: string[] = [];
      page.on('request', (request) => requests.push(request.url()));
      const response = await page.goto(registry.url + '/hostile-readme');
      expect(response?.status()).toBe(200);
      await page.waitForSelector('h1:has-text("hostile-readme")');
      // What the browser built from the readme: elements and attributes, not the text that mentions them.
      const found = await page.evaluate(() => {
        const root = document.querySelector('.readme') as Element;
        const elements = Array.from(root.querySelectorAll('*'));
        return {
          tags: [...new Set(elements.map((e) => e.tagName.toLowerCase()))],
          handlers: elements.flatMap((e) => Array.from(e.attributes).filter((a) => a.name.startsWith('on')).map((a) => a.name)),
          styles: elements.filter((e) => e.hasAttribute('style')).length,
          links: Array.from(root.querySelectorAll('a[href]')).map((a) => a.getAttribute('href')),
          images: Array.from(root.querySelectorAll('img[src]')).map((i) => i.getAttribute('src')),
          text: root.textContent || '',
        };
      });
      for (const tag of ['script', 'iframe', 'form', 'input', 'object', 'meta', 'style', 'svg']) expect([tag, found.tags.includes(tag)]).toEqual([tag, false]);
      expect(found.handlers).toEqual([]);
      expect(found.styles).toBe(0);
      expect(found.links.filter((href) => !/^(https?:|mailto:|#|\/)/.test(String(href)))).toEqual([]);
      expect(found.images.filter((src) => !/^https?:/.test(String(src)))).toEqual([]);
      expect(found.text).toContain('Plain text stays.');
      // Click what is left of the links and the cover: nothing runs.
      for (const link of await page.locator('.readme a').all()) await link.click({ timeout: 2000 }).catch(() => undefined);
      await page.mouse.click(640, 450);
      expect(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
      expect(dialogs).toEqual([]);
      expect(requests.filter((url) => url.includes('evil.example'))).toEqual([]);
      expect(await page.isVisible('body')).toBe(true);
      expect(looksRendered(await page.screenshot({ path: join(registry.dataDir, 'hostile.png') }))).toBe(true);
    });
    expect(readFileSync(join(registry.dataDir, 'hostile.png')).length).toBeGreaterThan(0);
  });
});

/** Where the screenshots of the pages go, to be looked at by a person (outside the repository). */
const SHOTS = process.env.WEB_SHOTS_DIR || join(tmpdir(), 'registry-web-shots');

const WIDTHS = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } } as const;

/** The relative luminance of a CSS `rgb(…)` colour (0 black … 1 white). */
function luminance(color: string): number {
  const [r, g, b] = (color.match(/\d+(\.\d+)?/g) || ['0', '0', '0']).slice(0, 3).map((c) => Number(c) / 255);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

describeBrowser('package pages beside Verdaccio, the account page, at two widths, light and dark', () => {
  let changerToken: string;
  let spareToken: string;
  let attacker: Server;
  let attackerUrl: string;

  beforeAll(async () => {
    browser = await launchChromium();
    mkdirSync(SHOTS, { recursive: true });
    // Versions published out of semver order: 1.10.0, then 1.9.0 (a maintenance release).
    for (const [version, tag] of [['1.2.0', undefined], ['1.10.0', undefined], ['1.9.0', 'maintenance']] as const) {
      const dir = makePackage(webber.home, { name: 'web-semver', version, description: 'Versions in semver order' }, { 'README.md': '# web-semver' });
      const result = await webber.npm(['publish', ...(tag ? ['--tag', tag] : [])], dir);
      if (result.code !== 0) throw new Error(result.stderr);
    }
    await publish(
      {
        name: 'web-rich', version: '2.3.0', description: 'Everything a package.json can say', license: 'ISC',
        repository: { type: 'git', url: 'git+https://github.com/acme/web-rich.git' },
        homepage: 'https://acme.example/web-rich', bugs: { url: 'https://github.com/acme/web-rich/issues' },
        keywords: ['pages', 'colour', 'registry'], author: 'Ada Lovelace <ada@acme.example> (https://ada.example)',
        dependencies: { 'web-dep': '^1.0.0' }, devDependencies: { 'dev-only': '^3.0.0' },
        peerDependencies: { 'peer-thing': '>=2' }, optionalDependencies: { 'optional-thing': '~1.2.3' },
      },
      '# web-rich\n\nUse it:\n\n```js\nconst rich = require("web-rich"); // load it\nrich.go(42, "fast");\n```\n\n```sh\nnpm install web-rich\n```\n',
    );
    // Every field the page shows, trying to run code or to be a link to one.
    await publish(
      {
        name: 'web-hostile-meta', version: '1.0.0', description: '<script>window.__pwned="description"</script>',
        keywords: ['<script>window.__pwned="kw"</script>', '"><img src=x onerror="window.__pwned=\'kw2\'">'],
        author: { name: '<img src=x onerror="window.__pwned=\'author\'">', url: 'javascript:window.__pwned="author-url"', email: '"><script>window.__pwned=1</script>' },
        repository: { type: 'git', url: 'javascript:window.__pwned="repository"' },
        homepage: 'javascript:window.__pwned="homepage"', bugs: { url: 'javascript:window.__pwned="bugs"' },
        license: '<b onclick="window.__pwned=\'license\'">MIT</b>',
        dependencies: { '"><script>window.__pwned="dep"</script>': '<img src=x onerror=window.__pwned=1>' },
      },
      '# Hostile metadata\n\n```js" onmouseover="window.__pwned=\'lang\'\nalert(1)\n```\n\n```<script>\nx\n```\n',
    );
    // A mirrored package published upstream through trusted publishing, with provenance and the
    // upstream's signature, as replication stores it (with the time of the copy).
    const mirrored = {
      name: 'mirrored-trusted', 'dist-tags': { latest: '3.0.0' }, maintainers: [{ name: 'ci-owner', email: 'ci@example.com' }],
      origin: 'https://upstream.example', origin_rev: '7-abc', origin_synced: '2026-12-01T08:30:00.000Z',
      time: { created: '2026-01-01T00:00:00.000Z', modified: '2026-01-02T00:00:00.000Z', '2.8.0': '2026-01-01T00:00:00.000Z', '2.9.0': '2026-01-01T12:00:00.000Z', '3.0.0': '2026-01-02T00:00:00.000Z' },
      versions: {
        // Signed by a key the upstream does not list.
        '2.8.0': { name: 'mirrored-trusted', version: '2.8.0', _npmUser: { name: 'ci-owner' }, dist: { tarball: 'https://upstream.example/y.tgz', shasum: '1'.repeat(40), integrity: 'sha512-CCCC', signatures: [{ keyid: 'SHA256:not-listed', sig: 'MEUCIQ' }] } },
        // Its signature is of other bytes than its integrity says.
        '2.9.0': { name: 'mirrored-trusted', version: '2.9.0', _npmUser: { name: 'ci-owner' }, dist: { tarball: 'https://upstream.example/z.tgz', shasum: '2'.repeat(40), integrity: 'sha512-BBBB', signatures: [upstreamSignature('mirrored-trusted@2.9.0', 'sha512-OTHER')] } },
        '3.0.0': {
          name: 'mirrored-trusted', version: '3.0.0', repository: 'github:ci-owner/mirrored-trusted',
          _npmUser: { name: 'GitHub Actions', email: 'npm-oidc-no-reply@github.com', trustedPublisher: { id: 'github', oidcConfigId: 'oidc:abc' } },
          dist: {
            tarball: 'https://upstream.example/x.tgz', shasum: '0'.repeat(40), integrity: 'sha512-AAAA',
            signatures: [upstreamSignature('mirrored-trusted@3.0.0', 'sha512-AAAA')],
            attestations: { url: 'https://upstream.example/-/npm/v1/attestations/mirrored-trusted@3.0.0', provenance: { predicateType: 'https://slsa.dev/provenance/v1' } },
          },
        },
      },
      readme: 'Published by CI.',
    };
    const put = await fetch(new URL('/' + registry.registryDb + '-mirror/mirrored-trusted', new URL(registry.adminCouchUrl).origin), {
      method: 'PUT',
      headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' },
      body: JSON.stringify(mirrored),
    });
    if (put.status !== 201) throw new Error('cannot store the mirrored package: ' + put.status);
    // Fields npm would rewrite before publishing, as an upstream may serve them anyway.
    const hostile = {
      name: 'mirrored-hostile', 'dist-tags': { latest: '1.0.0' }, maintainers: [{ name: '<img src=x onerror="window.__pwned=\'maintainer\'">' }],
      origin: 'javascript:window.__pwned="origin"', origin_rev: '1-<script>', origin_synced: '<script>window.__pwned="synced"</script>',
      time: { created: '2026-01-01T00:00:00.000Z', modified: '2026-01-01T00:00:00.000Z', '1.0.0': '<img src=x onerror=window.__pwned=1>' },
      versions: {
        '1.0.0': {
          name: 'mirrored-hostile', version: '1.0.0', repository: { url: 'javascript:window.__pwned="repository"' },
          author: { name: '<img src=x onerror="window.__pwned=\'author\'">', url: 'javascript:window.__pwned="author-url"', email: 'a@b"><script>window.__pwned=1</script>' },
          keywords: 'one,<script>window.__pwned="kw"</script>', bugs: 'javascript:window.__pwned="bugs"',
          _npmUser: { name: '<script>window.__pwned="publisher"</script>', trustedPublisher: { id: '<img src=x onerror=window.__pwned=1>', oidcConfigId: 'x' } },
          dist: {
            tarball: 'https://upstream.example/x.tgz', shasum: '0'.repeat(40), integrity: 'sha512-AAAA',
            signatures: [{ keyid: '"><script>window.__pwned="keyid"</script>', sig: 'x' }],
            attestations: { url: 'javascript:window.__pwned="attestations"', provenance: { predicateType: '<script>window.__pwned="type"</script>' } },
          },
        },
      },
      readme: 'Hostile upstream.',
    };
    const hostilePut = await fetch(new URL('/' + registry.registryDb + '-mirror/mirrored-hostile', new URL(registry.adminCouchUrl).origin), {
      method: 'PUT',
      headers: { authorization: basicAuthOf(registry.adminCouchUrl), 'content-type': 'application/json' },
      body: JSON.stringify(hostile),
    });
    if (hostilePut.status !== 201) throw new Error('cannot store the mirrored package: ' + hostilePut.status);
    changerToken = await registry.signup('changer', 'changer-old-password');
    const spare = await registry.request('POST', '/-/npm/v1/tokens', { token: changerToken, body: { password: 'changer-old-password' } });
    if (spare.status !== 201) throw new Error('cannot create a token: ' + JSON.stringify(spare.body));
    spareToken = spare.body.token;
    // Another origin on this machine (same site, another port): it posts the account page's forms.
    attacker = createServer((req, res) => {
      const url = new URL(req.url || '/', 'http://x');
      const target = registry.url + url.pathname.replace(/^\/attack/, '/-/web/account');
      const fields = Object.fromEntries(url.searchParams);
      res.setHeader('content-type', 'text/html');
      res.end(`<form id="f" method="post" action="${target}">${Object.entries(fields).map(([k, v]) => `<input name="${k}" value="${v}">`).join('')}</form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    attackerUrl = 'http://127.0.0.1:' + (attacker.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await new Promise((resolve) => attacker?.close(resolve));
    await browser?.close();
  });

  async function withPage(options: BrowserContextOptions, work: (page: Page) => Promise<void>): Promise<void> {
    const context = await browser.newContext(options);
    const page = await context.newPage();
    try {
      await work(page);
    } finally {
      await context.close();
    }
  }

  async function logIn(page: Page, name: string, password: string): Promise<void> {
    await page.goto(registry.url + '/-/web/login?next=' + encodeURIComponent('/-/web/account'));
    await page.fill('#name', name);
    await page.fill('#password', password);
    await page.click('form.login button');
    await page.waitForSelector('h2:has-text("Your tokens")');
  }

  const whoami = async (auth: string) => (await fetch(registry.url + '/-/whoami', { headers: { authorization: auth, accept: 'application/json' } })).status;
  const basic = (name: string, password: string) => 'Basic ' + Buffer.from(name + ':' + password).toString('base64');

  it('a package page shows its links, keywords, author, highlighted code, dependencies of each kind and who published it', async () => {
    await withPage({ viewport: WIDTHS.desktop }, async (page) => {
      await page.goto(registry.url + '/web-rich');
      const links = await page.$$eval('section.links a', (as) => as.map((a) => [a.textContent, a.getAttribute('href'), a.getAttribute('rel')]));
      expect(links).toEqual([
        ['github.com/acme/web-rich', 'https://github.com/acme/web-rich', 'nofollow noopener noreferrer'],
        ['acme.example/web-rich', 'https://acme.example/web-rich', 'nofollow noopener noreferrer'],
        ['github.com/acme/web-rich/issues', 'https://github.com/acme/web-rich/issues', 'nofollow noopener noreferrer'],
      ]);
      expect(await page.locator('.keywords a').allTextContents()).toEqual(['pages', 'colour', 'registry']);
      expect(await page.getAttribute('.keywords a:text-is("colour")', 'href')).toBe('/-/web/search?q=keywords%3Acolour');
      expect(await page.textContent('section.author')).toContain('Ada Lovelace <ada@acme.example>');
      expect(await page.getAttribute('section.author a', 'href')).toBe('https://ada.example');
      // Code in the readme is highlighted on the server: keywords, strings and comments have colours of their own.
      expect(await page.locator('.readme pre code.hljs.language-js .hljs-keyword').first().textContent()).toBe('const');
      expect(await page.locator('.readme pre code.hljs .hljs-string').first().textContent()).toBe('"web-rich"');
      const colours = await page.$$eval('.readme code.language-js span', (spans) => new Set(spans.map((s) => getComputedStyle(s).color)).size);
      expect(colours).toBeGreaterThanOrEqual(3);
      // Who published the version, and the registry's signature of it, checked.
      expect(await page.textContent('section.published')).toMatch(/Published \d{4}-\d{2}-\d{2} by webber\./);
      expect(await page.textContent('section.published')).toContain("Signature verifies (this registry's key");
      expect(await page.textContent('section.published')).toContain('No provenance statement.');
      // The dependencies tab: every kind, with its range.
      await page.click('nav.tabs a[href="#deps"]');
      expect(await page.isVisible('#deps')).toBe(true);
      expect(await page.isVisible('#readme')).toBe(false);
      const deps = await page.$$eval('#deps h2', (hs) => hs.map((h) => h.textContent));
      expect(deps).toEqual(['Dependencies (1)', 'Dev dependencies (1)', 'Peer dependencies (1)', 'Optional dependencies (1)']);
      const listed = (await page.textContent('#deps')) as string;
      for (const text of ['web-dep', '^1.0.0', 'dev-only', '^3.0.0', 'peer-thing', '>=2', 'optional-thing', '~1.2.3']) expect(listed).toContain(text);
      expect(await page.getAttribute('#deps a:text-is("web-dep")', 'href')).toBe('/web-dep');
      await page.click('nav.tabs a[href="#versions"]');
      expect(await page.locator('table.versions tbody tr td:last-child').allTextContents()).toEqual(['signed here ✓']);
    });
  });

  it('versions are in semver order (1.10.0 before 1.9.0 and 1.2.0), whatever order they were published in', async () => {
    await withPage({ viewport: WIDTHS.desktop }, async (page) => {
      await page.goto(registry.url + '/web-semver#versions');
      expect(await page.isVisible('table.versions')).toBe(true);
      expect(await page.locator('table.versions tbody tr td:first-child').allTextContents()).toEqual(['1.10.0', '1.9.0', '1.2.0']);
      await page.click('table.versions a:text-is("1.9.0")');
      await page.waitForSelector('h1:has-text("1.9.0")');
      expect(page.url()).toBe(registry.url + '/web-semver/v/1.9.0');
    });
  });

  it('a mirrored package says where it came from and when it was copied; trusted publishing, provenance and the upstream signature', async () => {
    await withPage({ viewport: WIDTHS.desktop }, async (page) => {
      await page.goto(registry.url + '/mirrored-trusted');
      const published = (await page.textContent('section.published')) as string;
      expect(published).toContain('by GitHub Actions');
      expect(published).toContain('trusted publishing: GitHub Actions');
      expect(published).toContain('Provenance: SLSA provenance v1 (from the upstream)');
      expect(await page.getAttribute('section.published a:text-is("attestations")', 'href')).toBe('https://upstream.example/-/npm/v1/attestations/mirrored-trusted@3.0.0');
      expect(published).toContain("Signature verifies (the upstream's key " + upstreamKeyId.slice(0, 19));
      expect(published).toContain('Mirrored from https://upstream.example; last copied 2026-12-01 08:30 UTC');
      expect(await page.getAttribute('section.links a', 'href')).toBe('https://github.com/ci-owner/mirrored-trusted');
      await page.click('nav.tabs a[href="#versions"]');
      expect(await page.textContent('table.versions')).toMatch(/3\.0\.0.*GitHub Actions.*trusted publishing.*provenance/s);
      expect(await page.locator('table.versions tbody tr td:first-child').allTextContents()).toEqual(['3.0.0', '2.9.0', '2.8.0']);
      expect(await page.locator('table.versions tbody tr td:last-child').allTextContents()).toEqual(['signed upstream ✓provenance', 'signature fails', 'signature unchecked: unknown key']);
      // A signature of other bytes, or by a key nobody lists, is not taken for a good one.
      await page.goto(registry.url + '/mirrored-trusted/v/2.9.0');
      expect(await page.textContent('section.published')).toContain("Signature does not verify (the upstream's key");
      await page.goto(registry.url + '/mirrored-trusted/v/2.8.0');
      expect(await page.textContent('section.published')).toContain('Signature cannot be checked: it names a key this registry does not list');
      expect(await page.textContent('section.published')).not.toContain('trusted publishing');
    });
  });

  it('package.json fields that try to run code or link to javascript: are shown as text', async () => {
    await withPage({ viewport: WIDTHS.desktop }, async (page) => {
      const stored = await registry.request('GET', '/web-hostile-meta', { headers: { accept: 'application/json' } });
      // What npm sent is what the registry keeps: the page is what stands between it and a browser.
      expect(stored.body.versions['1.0.0'].repository.url).toBe('javascript:window.__pwned="repository"');
      expect(stored.body.versions['1.0.0'].keywords[0]).toContain('<script>');
      expect(stored.body.versions['1.0.0'].homepage).toBe('javascript:window.__pwned="homepage"');
      const dialogs: string[] = [];
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.message());
        void dialog.dismiss();
      });
      for (const name of ['web-hostile-meta', 'mirrored-hostile']) {
        await page.goto(registry.url + '/' + name);
        await page.waitForSelector('h1:has-text("' + name + '")');
        const found = await page.evaluate(() => {
          const all = Array.from(document.querySelectorAll('body *'));
          return {
            scripts: Array.from(document.scripts).map((s) => s.getAttribute('src')),
            handlers: all.flatMap((e) => Array.from(e.attributes).filter((a) => a.name.startsWith('on')).map((a) => e.tagName + ' ' + a.name)),
            images: Array.from(document.querySelectorAll('img')).map((i) => i.outerHTML + ' in ' + (i.parentElement as Element).outerHTML.slice(0, 300)),
            links: Array.from(document.querySelectorAll('a[href]')).map((a) => a.getAttribute('href') as string),
          };
        });
        expect([name, found.scripts]).toEqual([name, ['/-/static/pages.js']]);
        expect([name, found.handlers]).toEqual([name, []]);
        expect([name, found.images]).toEqual([name, []]);
        expect([name, found.links.filter((href) => !/^(https?:\/\/|\/|#)/.test(href))]).toEqual([name, []]);
        const text = (await page.textContent('main')) as string;
        const shown = name === 'web-hostile-meta'
          ? ['<script>window.__pwned="kw"</script>', 'Homepage: javascript:window.__pwned="homepage"', '<script>window.__pwned="description"</script>', '<b onclick=']
          : ['<img src=x onerror="window.__pwned=\'author\'">', 'by <script>window.__pwned="publisher"</script>', 'Mirrored from javascript:window.__pwned="origin"', 'trusted publishing: <img src=x onerror=window.__pwned=1>'];
        for (const part of shown) expect([name, text.includes(part)]).toEqual([name, true]);
        for (const link of await page.locator('main a').all()) await link.click({ timeout: 500, noWaitAfter: true }).catch(() => undefined);
        await page.goto(registry.url + '/' + name + '#deps');
        for (const link of await page.locator('#deps a, .readme a').all()) await link.click({ timeout: 500, noWaitAfter: true }).catch(() => undefined);
        await page.goto(registry.url + '/' + name + '#versions');
        await page.hover('table.versions');
        expect(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned)).toBeUndefined();
      }
      expect(dialogs).toEqual([]);
    });
  });

  it('the Content-Security-Policy allows only the registry\'s own scripts and no page has an inline one; without scripts the page still works', async () => {
    for (const path of ['/', '/web-rich', '/-/web/search?q=web', '/-/web/login']) {
      const response = await fetch(registry.url + path, { headers: { accept: 'text/html' } });
      const csp = String(response.headers.get('content-security-policy'));
      const scriptSrc = (csp.split(';').find((d) => d.trim().startsWith('script-src')) || '').trim();
      expect([path, scriptSrc]).toEqual([path, "script-src 'self'"]);
      expect(csp).toContain("default-src 'none'");
      const html = await response.text();
      const scripts = [...html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/gi)];
      expect(scripts.map((m) => [m[0].match(/src="([^"]*)"/)?.[1], m[1].trim()])).toEqual([['/-/static/pages.js', '']]);
    }
    const script = await fetch(registry.url + '/-/static/pages.js');
    expect(script.headers.get('content-type')).toContain('javascript');
    expect(script.headers.get('x-content-type-options')).toBe('nosniff');
    await withPage({ viewport: WIDTHS.desktop, javaScriptEnabled: false }, async (page) => {
      await page.goto(registry.url + '/web-rich');
      // No copy buttons without scripts: the commands are text, selected whole with a click.
      expect(await page.locator('.copy-button').count()).toBe(0);
      expect(await page.locator('code.copy').allTextContents()).toEqual(['npm install web-rich', 'yarn add web-rich', 'pnpm add web-rich']);
      expect(await page.$eval('code.copy', (c) => getComputedStyle(c).userSelect)).toBe('all');
      // The tabs are links to sections: they work without scripts.
      await page.click('nav.tabs a[href="#deps"]');
      expect(await page.isVisible('#deps a:text-is("web-dep")')).toBe(true);
      await page.click('nav.tabs a[href="#versions"]');
      expect(await page.isVisible('table.versions')).toBe(true);
    });
    await withPage({ viewport: WIDTHS.desktop }, async (page) => {
      await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: registry.url });
      const errors: string[] = [];
      page.on('console', (message) => message.type() === 'error' && errors.push(message.text()));
      await page.goto(registry.url + '/web-rich');
      await page.click('code.copy:text-is("pnpm add web-rich") + .copy-button');
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe('pnpm add web-rich');
      expect(await page.textContent('code.copy:text-is("pnpm add web-rich") + .copy-button')).toBe('Copied');
      expect(errors).toEqual([]);
    });
  });

  it('at 390 px the header keeps its Search button inside the screen and nothing scrolls sideways; dark mode is dark', async () => {
    for (const colorScheme of ['light', 'dark'] as const) {
      for (const [width, viewport] of Object.entries(WIDTHS)) {
        await withPage({ viewport, colorScheme }, async (page) => {
          for (const path of ['/', '/web-rich', '/-/web/search?q=web', '/mirrored-trusted']) {
            await page.goto(registry.url + path);
            const button = await page.locator('header form[role=search] button').boundingBox();
            const where = [colorScheme, width, path];
            expect([...where, button!.x >= 0 && button!.x + button!.width <= viewport.width && button!.y >= 0]).toEqual([...where, true]);
            expect([...where, await page.evaluate(() => document.documentElement.scrollWidth)]).toEqual([...where, viewport.width]);
            const background = luminance(await page.$eval('body', (b) => getComputedStyle(b).backgroundColor));
            const text = luminance(await page.$eval('main', (m) => getComputedStyle(m).color));
            if (colorScheme === 'dark') expect([...where, background < 0.15 && text > 0.7]).toEqual([...where, true]);
            else expect([...where, background > 0.95 && text < 0.3]).toEqual([...where, true]);
          }
        });
      }
    }
  });

  it('screenshots of the home, package, search and account pages at 1280 and 390 px, light and dark', async () => {
    for (const colorScheme of ['light', 'dark'] as const) {
      for (const [width, viewport] of Object.entries(WIDTHS)) {
        await withPage({ viewport, colorScheme }, async (page) => {
          await page.goto(registry.url + '/');
          expect(looksRendered(await page.screenshot({ path: join(SHOTS, `home-${width}-${colorScheme}.png`), fullPage: true }), viewport.width)).toBe(true);
          await page.goto(registry.url + '/web-rich');
          expect(looksRendered(await page.screenshot({ path: join(SHOTS, `package-${width}-${colorScheme}.png`), fullPage: true }), viewport.width)).toBe(true);
          await page.goto(registry.url + '/mirrored-trusted#versions');
          expect(looksRendered(await page.screenshot({ path: join(SHOTS, `package-versions-${width}-${colorScheme}.png`), fullPage: true }), viewport.width)).toBe(true);
          await page.goto(registry.url + '/-/web/search?q=web');
          expect(looksRendered(await page.screenshot({ path: join(SHOTS, `search-${width}-${colorScheme}.png`), fullPage: true }), viewport.width)).toBe(true);
          await logIn(page, 'webber', 'webber-password');
          expect(looksRendered(await page.screenshot({ path: join(SHOTS, `account-${width}-${colorScheme}.png`), fullPage: true }), viewport.width)).toBe(true);
        });
      }
    }
  });

  it('a token revoked on the account page disappears from it and stops working with npm', async () => {
    const npm = npmClient(registry.url, spareToken);
    expect((await npm.npm(['whoami'])).stdout.trim()).toBe('changer');
    await withPage({ viewport: WIDTHS.phone }, async (page) => {
      await logIn(page, 'changer', 'changer-old-password');
      const preview = spareToken.slice(0, 10);
      expect(await page.locator('table.tokens code').allTextContents()).toEqual(expect.arrayContaining([preview + '…', changerToken.slice(0, 10) + '…']));
      await page.click(`table.tokens button[aria-label="Revoke ${preview}…"]`);
      await page.waitForSelector('p.ok:has-text("The token was revoked")');
      expect(await page.locator('table.tokens code').allTextContents()).not.toContain(preview + '…');
      expect(await page.locator('table.tokens code').allTextContents()).toContain(changerToken.slice(0, 10) + '…');
    });
    const after = await npm.npm(['whoami']);
    expect(after.code).not.toBe(0);
    expect(after.stderr).toMatch(/401|E401|Unauthorized/i);
    expect(await whoami('Bearer ' + changerToken)).toBe(200);
  });

  it('forms posted from another origin neither revoke a token nor change a password', async () => {
    const victim = await registry.request('POST', '/-/npm/v1/tokens', { token: changerToken, body: { password: 'changer-old-password' } });
    const key = victim.body.key as string;
    await withPage({ viewport: WIDTHS.desktop }, async (page) => {
      await logIn(page, 'changer', 'changer-old-password');
      const revoke = page.waitForResponse((r) => r.url().endsWith('/-/web/account/tokens/revoke'));
      await page.goto(attackerUrl + '/attack/tokens/revoke?key=' + key);
      expect((await revoke).status()).toBe(403);
      const change = page.waitForResponse((r) => r.url().endsWith('/-/web/account/password'));
      await page.goto(attackerUrl + '/attack/password?old=guess&new=attacker-password&again=attacker-password');
      expect((await change).status()).toBe(403);
      expect(await page.textContent('h1')).toContain('This form was sent from another site');
    });
    expect(await whoami('Bearer ' + victim.body.token)).toBe(200);
    expect(await whoami(basic('changer', 'changer-old-password'))).toBe(200);
    expect(await whoami(basic('changer', 'attacker-password'))).toBe(401);
  });

  it('a password changed on the account page: the old one fails, the new one works, with npm and on the pages', async () => {
    await withPage({ viewport: WIDTHS.desktop }, async (page) => {
      await logIn(page, 'changer', 'changer-old-password');
      // A wrong current password, or a repetition that differs, changes nothing.
      await page.fill('#old', 'not-my-password');
      await page.fill('#new', 'changer-new-password');
      await page.fill('#again', 'changer-new-password');
      await page.click('form.password button');
      expect(await page.textContent('p.error')).toContain('Wrong current password');
      await page.fill('#old', 'changer-old-password');
      await page.fill('#new', 'changer-new-password');
      await page.fill('#again', 'changer-new-typo');
      await page.click('form.password button');
      expect(await page.textContent('p.error')).toContain('differ');
      expect(await whoami(basic('changer', 'changer-old-password'))).toBe(200);

      await page.fill('#old', 'changer-old-password');
      await page.fill('#new', 'changer-new-password');
      await page.fill('#again', 'changer-new-password');
      await page.click('form.password button');
      await page.waitForSelector('p.ok:has-text("Your password was changed")');
      // Still logged in here, in a session of the account as it is now.
      await page.reload();
      expect(await page.textContent('header nav')).toContain('changer');
    });
    expect(await whoami(basic('changer', 'changer-old-password'))).toBe(401);
    expect(await whoami(basic('changer', 'changer-new-password'))).toBe(200);
    // The tokens of the old password ended with it; npm login with the new one works.
    expect(await whoami('Bearer ' + changerToken)).toBe(401);
    const login = await registry.request('PUT', '/-/user/org.couchdb.user:changer', { body: { _id: 'org.couchdb.user:changer', name: 'changer', password: 'changer-new-password', type: 'user', roles: [] } });
    expect(login.status).toBe(201);
    const oldLogin = await registry.request('PUT', '/-/user/org.couchdb.user:changer', { body: { _id: 'org.couchdb.user:changer', name: 'changer', password: 'changer-old-password', type: 'user', roles: [] } });
    expect(oldLogin.status).toBe(409);
    expect(oldLogin.body.token).toBeUndefined();
    await withPage({ viewport: WIDTHS.desktop }, async (page) => {
      await page.goto(registry.url + '/-/web/login');
      await page.fill('#name', 'changer');
      await page.fill('#password', 'changer-old-password');
      await page.click('form.login button');
      expect(await page.textContent('.error')).toContain('Wrong user name or password');
      await logIn(page, 'changer', 'changer-new-password');
    });
  });
  it('with two-factor authentication on, revoking a token and changing the password on the account page need a one-time password', async () => {
    const token = await registry.signup('guarded', 'guarded-password');
    const spare = (await registry.request('POST', '/-/npm/v1/tokens', { token, body: { password: 'guarded-password' } })).body.token as string;
    const started = await registry.request('POST', '/-/npm/v1/user', { token, body: { tfa: { password: 'guarded-password', mode: 'auth-and-writes' } } });
    const secret = new URL(started.body.tfa).searchParams.get('secret') as string;
    const codeNow = () => new TOTP({ secret: Secret.fromBase32(secret) }).generate();
    const confirmed = await registry.request('POST', '/-/npm/v1/user', { token, body: { tfa: [codeNow()] } });
    const recovery = confirmed.body.tfa as string[];
    expect(recovery.length).toBeGreaterThanOrEqual(4);
    await withPage({ viewport: WIDTHS.phone }, async (page) => {
      await page.goto(registry.url + '/-/web/login?next=' + encodeURIComponent('/-/web/account'));
      await page.fill('#name', 'guarded');
      await page.fill('#password', 'guarded-password');
      // The code that confirmed two-factor authentication is used up: a recovery code logs in.
      await page.fill('#otp', recovery[2]);
      await page.click('form.login button');
      await page.waitForSelector('h2:has-text("Your tokens")');
      const row = page.locator('table.tokens tr', { hasText: spare.slice(0, 10) });
      // A wrong code revokes nothing.
      await row.locator('input[name=otp]').fill('000000');
      await row.locator('button').click();
      expect(await page.textContent('p.error')).toContain('one-time password');
      expect(await whoami('Bearer ' + spare)).toBe(200);
      await page.locator('table.tokens tr', { hasText: spare.slice(0, 10) }).locator('input[name=otp]').fill(recovery[0]);
      await page.locator('table.tokens tr', { hasText: spare.slice(0, 10) }).locator('button').click();
      await page.waitForSelector('p.ok:has-text("The token was revoked")');
      expect(await whoami('Bearer ' + spare)).toBe(401);

      await page.fill('#old', 'guarded-password');
      await page.fill('#new', 'guarded-new-password');
      await page.fill('#again', 'guarded-new-password');
      await page.fill('#password-otp', '000000');
      await page.click('form.password button');
      expect(await page.textContent('p.error')).toContain('one-time password');
      // The account's tokens end with its password: this one still works, so the password stands.
      expect(await whoami('Bearer ' + token)).toBe(200);
      await page.fill('#old', 'guarded-password');
      await page.fill('#new', 'guarded-new-password');
      await page.fill('#again', 'guarded-new-password');
      await page.fill('#password-otp', recovery[1]);
      await page.click('form.password button');
      await page.waitForSelector('p.ok:has-text("Your password was changed")');
    });
    expect(await whoami('Bearer ' + token)).toBe(401);
    const login = (password: string) => registry.request('PUT', '/-/user/org.couchdb.user:guarded', { headers: { 'npm-otp': recovery[3] }, body: { _id: 'org.couchdb.user:guarded', name: 'guarded', password, type: 'user', roles: [] } });
    expect((await login('guarded-password')).status).toBe(409);
    expect((await login('guarded-new-password')).status).toBe(201);
  });
});
