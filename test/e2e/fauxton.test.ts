/**
 * Admins work in Fauxton: in headless Chromium, the admin logs in on the CouchDB port's login form
 * (CouchDB's cookie session) and sees the registry's databases; a wrong password gets no further.
 */
import { Browser } from 'playwright-core';
import { describeWithBrowser, launchChromium } from '../helpers/browser';
import { basicAuthOf, startTestRegistry, TestRegistry } from '../helpers/registry';

describeWithBrowser('the Fauxton tests')('Fauxton', () => {
  let registry: TestRegistry;
  let browser: Browser;
  let admin: { name: string; password: string };

  beforeAll(async () => {
    registry = await startTestRegistry();
    const [name, password] = Buffer.from(basicAuthOf(registry.adminCouchUrl).slice(6), 'base64').toString('utf8').split(':');
    admin = { name, password };
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await registry?.stop();
  });

  async function logIn(password: string, name = admin.name) {
    const page = await browser.newPage();
    await page.goto(registry.fauxtonUrl);
    await page.fill('#username', name);
    await page.fill('#password', password);
    await page.click('#submit');
    return page;
  }

  it('the admin logs in and sees the package databases', async () => {
    const page = await logIn(admin.password);
    try {
      await page.waitForSelector('text=' + registry.registryDb + '-mirror', { timeout: 15_000 });
      const text = await page.textContent('body');
      expect(text).toContain(registry.registryDb + '-tokens');
      const cookies = await page.context().cookies();
      const session = cookies.find((c) => c.name === 'AuthSession');
      expect(session && session.httpOnly).toBe(true);
    } finally {
      await page.close();
    }
  });

  it('a wrong password gets no further than the login form', async () => {
    // Not the admin's name: a real CouchDB locks an account after five failures from one address.
    const page = await logIn('not-the-password', 'nobody-in-fauxton');
    try {
      await page.waitForTimeout(1500);
      expect(await page.$('#username')).not.toBeNull();
      expect(await page.textContent('body')).not.toContain(registry.registryDb + '-tokens');
      // No session: CouchDB itself answers a failed login with an empty AuthSession cookie.
      expect((await page.context().cookies()).find((c) => c.name === 'AuthSession' && c.value !== '')).toBeUndefined();
    } finally {
      await page.close();
    }
  });
});
