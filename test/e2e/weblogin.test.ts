/**
 * Web login, the default of `npm login` and `npm adduser`: the CLI prints the login page of this
 * registry and polls; a real headless Chromium (Debian's, driven by playwright-core) fills the page.
 */
import { Couch } from '../../couchdb/client';
import { WEB_LOGIN_TTL_MS, WebLoginStore } from '../../gateway/weblogin';
import { join } from 'path';
import { Browser } from 'playwright-core';
import { describeWithBrowser, launchChromium } from '../helpers/browser';
import { npmClient, startNpmLogin } from '../helpers/npm';
import { startTestRegistry, TestRegistry } from '../helpers/registry';

const describeBrowser = describeWithBrowser('the web login tests');


describeBrowser('web login in a browser', () => {
  let registry: TestRegistry;
  let browser: Browser;

  beforeAll(async () => {
    registry = await startTestRegistry();
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await registry?.stop();
  });

  it('npm adduser: the page creates the account and the CLI receives a token', async () => {
    const client = npmClient(registry.url);
    const login = startNpmLogin(client, 'adduser');
    const page = await browser.newPage();
    try {
      await page.goto(await login.url);
      await page.fill('#signup-name', 'webby');
      await page.fill('#signup-email', 'webby@example.com');
      await page.fill('#signup-password', 'webby-password');
      await page.click('#signup button[type=submit]');
      await page.waitForSelector('text=Logged in as webby');
      await page.screenshot({ path: join(registry.dataDir, 'adduser.png') });
    } finally {
      await page.close();
    }
    const result = await login.exit;
    expect(result.code).toBe(0);
    expect((await client.npm(['whoami'])).stdout.trim()).toBe('webby');
  });

  it('npm login: a wrong password is shown on the page, the right one logs in', async () => {
    const client = npmClient(registry.url);
    const login = startNpmLogin(client, 'login');
    const page = await browser.newPage();
    try {
      await page.goto(await login.url);
      await logInOnPage(page, 'webby', 'wrong-password', 'Wrong user name or password');
      await logInOnPage(page, 'webby', 'webby-password', 'Logged in as webby');
    } finally {
      await page.close();
    }
    expect((await login.exit).code).toBe(0);
    expect((await client.npm(['whoami'])).stdout.trim()).toBe('webby');
  });

  it('doneUrl hands the token out once; unknown sessions are refused', async () => {
    const started = await registry.request('POST', '/-/v1/login', { body: {} });
    const done = started.body.doneUrl.replace(registry.url, '');
    const pending = await registry.request('GET', done);
    expect(pending.status).toBe(202);
    expect(pending.headers.get('retry-after')).toBe('1');
    const page = await browser.newPage();
    try {
      await page.goto(started.body.loginUrl);
      await logInOnPage(page, 'webby', 'webby-password', 'Logged in as webby');
    } finally {
      await page.close();
    }
    const first = await registry.request('GET', done);
    expect(first.status).toBe(200);
    expect(first.body.token).toMatch(/^cnr_/);
    expect((await registry.request('GET', done)).status).toBe(404);
    expect((await registry.request('GET', '/-/v1/done/not-a-real-session-id')).status).toBe(404);
    const expired = await fetch(registry.url + '/-/login/not-a-real-session-id');
    expect(expired.status).toBe(404);
    expect(await expired.text()).toContain('expired');
  });
});

describe('web login sessions', () => {
  it('expire after their time to live, are swept, and each URL opens only its own part', async () => {
    const registry = await startTestRegistry();
    try {
      const store = new WebLoginStore(new Couch(registry.adminCouchUrl, registry.proxySecret), registry.registryDb + '-state');
      const now = Date.now();
      const keys = await store.start(false, now);
      expect(await store.get(keys.login, 'login', now + 1000)).not.toBeNull();
      expect(await store.get(keys.done, 'done', now + 1000)).not.toBeNull();
      // The login URL's key never collects the token, nor the done URL's opens the page.
      expect(await store.get(keys.login, 'done', now + 1000)).toBeNull();
      expect(await store.get(keys.done, 'login', now + 1000)).toBeNull();
      expect(keys.done.split('.')[1]).not.toBe(keys.login.split('.')[1]);
      expect(await store.get(keys.login, 'login', now + WEB_LOGIN_TTL_MS + 1)).toBeNull();
      expect(await store.get(keys.login, 'login', now + 1000)).toBeNull();
      // Logins nobody finished are swept once expired.
      const old = now - 2 * WEB_LOGIN_TTL_MS;
      const abandoned = [await store.start(false, old), await store.start(false, old), await store.start(true, old)];
      expect(await store.sweep(now)).toBeGreaterThanOrEqual(3);
      for (const key of abandoned) expect(await store.get(key.login, 'login', old + 1000)).toBeNull();
    } finally {
      await registry.stop();
    }
  });
});

/** Fills the page's login form and waits for `expected` to show. */
async function logInOnPage(page: import('playwright-core').Page, name: string, password: string, expected: string) {
  await page.fill('#login-name', name);
  await page.fill('#login-password', password);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('text=' + expected, { timeout: 10_000 });
}
