/**
 * Single sign-on with OpenID Connect, end to end: a real OpenID provider (the certified
 * `oidc-provider`, test/helpers/oidc-provider-process.mjs) on loopback with configured users and groups, the
 * registry with password logins off for people, Chromium signing in to the pages through the
 * provider, and the real npm CLI's `npm login` (web login) completed by the browser, then `npm whoami`
 * and `npm publish` to a scope whose access rule grants publishing to a group's role, lost after the
 * user is removed from the group and signs in again. Then a hostile user's attempts: replayed and
 * forged `state`, a callback from another browser, a code from another login, a code obtained without
 * PKCE, ID tokens of another issuer or audience or a key the provider does not publish, open
 * redirects through `next`, a provider account claiming a local account's name, and password logins
 * while they are off.
 */
import { Browser, BrowserContext } from 'playwright-core';
import { describeWithBrowser, launchChromium } from '../helpers/browser';
import { makePackage, npmClient, NpmClient, startNpmLogin } from '../helpers/npm';
import { startTestProvider, TestProvider, ProviderUser } from '../helpers/oidc-provider';
import { basicAuthOf, couchGet, removeDoc, startTestRegistry, TestRegistry } from '../helpers/registry';

const describeBrowser = describeWithBrowser('the single sign-on tests');

const CLIENT_ID = 'npm-registry';
const CLIENT_SECRET = 'client-secret-of-the-registry-at-the-provider';
const ALICE: ProviderUser = { password: 'alice-at-the-provider', claims: { preferred_username: 'alice', email: 'alice@acme.example', email_verified: true, groups: ['npm-publishers', 'staff'] } };
/** A provider user whose name claim is the local account "dave"'s. */
const MALLORY: ProviderUser = { password: 'mallory-at-the-provider', claims: { preferred_username: 'dave', email: 'mallory@acme.example', groups: ['npm-publishers'] } };
const ROOTLESS: ProviderUser = { password: 'rootless-at-the-provider', claims: { preferred_username: 'admin', groups: ['staff'] } };
/** A provider user in no group the registry allows (SSO_ALLOWED_GROUPS). */
const OUTSIDER: ProviderUser = { password: 'outsider-at-the-provider', claims: { preferred_username: 'outsider', groups: ['contractors'] } };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RULE_CACHE_MS = 2100;

let provider: TestProvider;
let registry: TestRegistry;
let browser: Browser;
let adminAuth: string;
/** The local password account made by an admin before anyone signed on, and its token. */
let daveToken: string;


/** Fills the provider's login page when it shows (a browser with a session at the provider goes straight back). */
async function signInAtProvider(page: import('playwright-core').Page, login: string, password: string) {
  await page.waitForSelector('input[name=login]', { timeout: 15_000 });
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
}

/** `npm login` (web) completed in `context`'s browser, signing in at the provider as `login` if it asks. */
async function npmLoginThroughBrowser(context: BrowserContext, client: NpmClient, login: [string, string] = ['alice', ALICE.password]) {
  const started = startNpmLogin(client);
  const page = await context.newPage();
  let visitedProvider = false;
  page.on('request', (request) => {
    if (new URL(request.url()).origin === provider.issuer) visitedProvider = true;
  });
  try {
    await page.goto(await started.url);
    // A browser without a session at the provider signs in there first.
    await page.locator('text=Logged in as').or(page.locator('input[name=login]')).first().waitFor({ timeout: 15_000 });
    if (await page.$('input[name=login]')) await signInAtProvider(page, login[0], login[1]);
    await page.waitForSelector('text=Logged in as', { timeout: 15_000 });
    return { text: await page.textContent('h1'), exit: await started.exit, visitedProvider };
  } finally {
    started.kill();
    await page.close();
  }
}

async function setRules(rules: unknown, at: TestRegistry = registry) {
  const current = await couchGet(at, '/' + at.registryDb + '/_design/access');
  const saved = await fetch(new URL(at.adminCouchUrl).origin + '/' + at.registryDb + '/_design/access', {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: basicAuthOf(at.adminCouchUrl) },
    body: JSON.stringify({ ...current.body, rules }),
  });
  expect(saved.status).toBe(201);
  await sleep(RULE_CACHE_MS);
}

/** `promise`, or a failure naming `step` once `ms` have passed. */
function within<T>(step: string, promise: Promise<T>, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(step + ' did not finish within ' + ms / 1000 + ' s')), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** A binding cookie a hostile user chooses for their own requests (the registry keeps a well-formed one). */
const bindingKey = () => require('crypto').randomBytes(32).toString('base64url') as string;

/** Starts a sign-on with `fetch` as the browser holding `key`: the provider's authorization URL. */
async function startSignOn(key: string, next = '/', at: { url: string } = registry): Promise<URL> {
  const started = await fetch(at.url + '/-/sso/login?next=' + encodeURIComponent(next), { redirect: 'manual', headers: { cookie: 'registry_sso=' + key } });
  expect(started.status).toBe(303);
  return new URL(started.headers.get('location') as string);
}

/**
 * Follows an authorization URL in a browser signed in at the provider as alice and returns the
 * callback URL the provider sends back. The browser's own delivery of it is refused (its binding
 * cookie is not the one the sign-on was started with) and spends nothing: the test delivers it.
 */
async function codeFromProvider(context: BrowserContext, authorizationUrl: string): Promise<URL> {
  const page = await context.newPage();
  let callback: string | undefined;
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === '/-/sso/callback') callback = request.url();
  });
  try {
    await page.goto(authorizationUrl);
    if (!callback && (await page.$('input[name=login]'))) await signInAtProvider(page, 'alice', ALICE.password);
    for (let i = 0; i < 100 && !callback; i++) await sleep(100);
  } finally {
    await page.close();
  }
  if (!callback) throw new Error('the provider sent no callback');
  return new URL(callback);
}

/** Delivers a callback as the browser holding `key` (none: a browser without the binding cookie). */
async function deliver(callback: URL, key?: string, to: { url: string } = registry) {
  const target = to.url + '/-/sso/callback' + callback.search;
  const response = await fetch(target, { redirect: 'manual', headers: key ? { cookie: 'registry_sso=' + key } : {} });
  return { status: response.status, text: await response.text(), location: response.headers.get('location'), cookies: response.headers.get('set-cookie') || '' };
}

describeBrowser('single sign-on with a real OpenID provider', () => {
  let context: BrowserContext;

  beforeAll(async () => {
    provider = await startTestProvider();
    await provider.setUsers({ alice: ALICE, mallory: MALLORY, rootless: ROOTLESS, outsider: OUTSIDER });
    registry = await startTestRegistry({
      SSO_ISSUER: provider.issuer,
      SSO_CLIENT_ID: CLIENT_ID,
      SSO_CLIENT_SECRET: CLIENT_SECRET,
      SSO_SCOPES: 'openid profile email groups',
      SSO_NAME: 'Acme Login',
      SSO_GROUP_ROLES: 'npm-publishers=acme-publishers',
      SSO_ALLOWED_GROUPS: 'npm-publishers staff',
      SSO_PASSWORD_LOGIN: 'off',
    });
    await provider.setClient({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [registry.url + '/-/sso/callback'] });
    adminAuth = basicAuthOf(registry.adminCouchUrl);
    // A local password account, made by a server admin (the break-glass password login still works for admins).
    const made = await registry.request('PUT', '/-/user/org.couchdb.user:dave', { headers: { authorization: adminAuth }, body: { name: 'dave', password: 'dave-local-password', email: 'dave@example.com' } });
    expect(made.status).toBe(201);
    daveToken = made.body.token;
    await setRules([
      { package: '@acme/*', read: ['$authenticated'], publish: ['role:acme-publishers'] },
      { package: '**', read: ['$all'], publish: ['$authenticated'] },
    ]);
    browser = await launchChromium();
    context = await browser.newContext();
  });
  afterAll(async () => {
    await browser?.close();
    if (process.env.COUCHDB_URL && registry) for (const name of ['alice', 'dave']) await removeDoc(process.env.COUCHDB_URL, '/_users/org.couchdb.user:' + name);
    await registry?.stop();
    await provider?.stop();
  });

  it('Chromium signs in to the pages through the provider; the account is made, bound to the provider\'s subject, with its group\'s role', async () => {
    const page = await context.newPage();
    try {
      await page.goto(registry.url + '/-/web/login?next=' + encodeURIComponent('/-/web/account'));
      // Password logins are off: no password form for people, the provider's button instead.
      expect(await page.$('input[type=password]')).toBeNull();
      await page.click('text=Sign in with Acme Login');
      await signInAtProvider(page, 'alice', ALICE.password);
      await page.waitForURL(registry.url + '/-/web/account', { timeout: 15_000 });
      expect(await page.textContent('main h1')).toBe('alice');
    } finally {
      await page.close();
    }
    const account = (await couchGet(registry, '/_users/org.couchdb.user:alice')).body;
    expect(account.roles).toEqual(['acme-publishers']);
    expect(account.email).toBe('alice@acme.example');
    expect(account.registry_sso).toMatchObject({ issuer: provider.issuer, subject: 'alice', roles: ['acme-publishers'] });
    // Nobody knows its password: it is random, and password logins are off anyway.
    expect(account.derived_key).toBeTruthy();
  });

  it('npm login (web) goes through the provider and back; npm whoami and npm publish to the group\'s scope work; removed from the group, the next sign-in takes the right away, from older tokens too', async () => {
    const first = npmClient(registry.url);
    // The browser has a session at the provider: the login URL leads through it and straight back.
    const login = await npmLoginThroughBrowser(context, first);
    expect(login.text).toBe('Logged in as alice');
    expect(login.visitedProvider).toBe(true);
    expect(login.exit.code).toBe(0);
    expect((await first.npm(['whoami'])).stdout.trim()).toBe('alice');
    const published = await first.npm(['publish'], makePackage(first.home, { name: '@acme/tool', version: '1.0.0' }));
    expect(published.stderr).not.toMatch(/ERR!/);
    expect(published.code).toBe(0);

    // An admin removes alice from the group at the provider; she signs in again (a new npm login).
    await provider.setUsers({ alice: { ...ALICE, claims: { ...ALICE.claims, groups: ['staff'] } }, mallory: MALLORY, rootless: ROOTLESS, outsider: OUTSIDER });
    const second = npmClient(registry.url);
    expect((await npmLoginThroughBrowser(context, second)).exit.code).toBe(0);
    expect((await second.npm(['whoami'])).stdout.trim()).toBe('alice');
    expect((await couchGet(registry, '/_users/org.couchdb.user:alice')).body.roles).toEqual([]);
    const refused = await second.npm(['publish'], makePackage(second.home, { name: '@acme/tool', version: '1.0.1' }));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/E403/);
    // The token of the first login reads the account's roles at each request: it lost the right too.
    const older = await first.npm(['publish'], makePackage(first.home, { name: '@acme/tool', version: '1.0.2' }));
    expect(older.code).not.toBe(0);
    expect(older.stderr).toMatch(/E403/);
    // What needs no group still works for her: a package anyone logged in may publish.
    expect((await second.npm(['publish'], makePackage(second.home, { name: 'alices-own', version: '1.0.0' }))).code).toBe(0);
    // Back in the group, back the right.
    await provider.setUsers({ alice: ALICE, mallory: MALLORY, rootless: ROOTLESS, outsider: OUTSIDER });
    expect((await npmLoginThroughBrowser(context, second)).exit.code).toBe(0);
    expect((await second.npm(['publish'], makePackage(second.home, { name: '@acme/tool', version: '1.0.3' }))).code).toBe(0);
  });

  it('a group\'s roles lapse on every token when the user has not signed on for SSO_GROUPS_MAX_AGE (7 days by default), and come back at the next sign-on', async () => {
    const client = npmClient(registry.url);
    expect((await npmLoginThroughBrowser(context, client)).exit.code).toBe(0);
    expect((await client.npm(['publish'], makePackage(client.home, { name: '@acme/lapse', version: '1.0.0' }))).code).toBe(0);
    // Eight days without a sign-on (the admin moves the last sign-on back, as time would).
    const path = '/_users/org.couchdb.user:alice';
    const account = (await couchGet(registry, path)).body;
    const moved = await fetch(new URL(registry.adminCouchUrl).origin + path, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: adminAuth },
      body: JSON.stringify({ ...account, registry_sso: { ...account.registry_sso, login: new Date(Date.now() - 8 * 86_400_000).toISOString() } }),
    });
    expect(moved.status).toBe(201);
    const lapsed = await client.npm(['publish'], makePackage(client.home, { name: '@acme/lapse', version: '1.0.1' }));
    expect(lapsed.code).not.toBe(0);
    expect(lapsed.stderr).toMatch(/E403/);
    expect((await client.npm(['whoami'])).stdout.trim()).toBe('alice');
    expect((await npmLoginThroughBrowser(context, npmClient(registry.url))).exit.code).toBe(0);
    expect((await client.npm(['publish'], makePackage(client.home, { name: '@acme/lapse', version: '1.0.2' }))).code).toBe(0);
  });

  it('npm token create works for an account of single sign-on (no password) soon after npm login through the provider, not with an older token', async () => {
    const client = npmClient(registry.url);
    expect((await npmLoginThroughBrowser(context, client)).exit.code).toBe(0);
    const created = await client.npm(['token', 'create', '--password', 'not-used', '--packages', '@acme/tool']);
    const token = /Created token (\S+)/.exec(created.stdout + created.stderr)?.[1];
    expect(token).toMatch(/^cnr_/);
    // The login's token made 20 minutes ago: a fresh sign-on is asked for.
    const loginToken = /:_authToken=(\S+)/.exec(require('fs').readFileSync(client.userconfig, 'utf8'))![1];
    const id = require('crypto').createHash('sha256').update(loginToken).digest('hex');
    const path = '/' + registry.registryDb + '-tokens/' + id;
    const record = (await couchGet(registry, path)).body;
    expect(record.signOn).toBe(true);
    const aged = await fetch(new URL(registry.adminCouchUrl).origin + path, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: adminAuth },
      body: JSON.stringify({ ...record, created: new Date(Date.now() - 20 * 60_000).toISOString() }),
    });
    expect(aged.status).toBe(201);
    const refused = await client.npm(['token', 'create', '--password', 'not-used']);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toContain('run `npm login` (sign in with Acme Login), then create the token within 15 minutes');
    // The token made works for its package.
    const limited = npmClient(registry.url, token);
    expect((await limited.npm(['whoami'])).stdout.trim()).toBe('alice');
  });

  it('the registry asks for the code with PKCE (S256), a state and a nonce, and only the configured scopes', async () => {
    const url = await startSignOn(bindingKey());
    expect(url.origin).toBe(provider.issuer);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('response_type')).toBe('code');
    expect(url.searchParams.get('client_id')).toBe(CLIENT_ID);
    expect(url.searchParams.get('redirect_uri')).toBe(registry.url + '/-/sso/callback');
    expect(url.searchParams.get('scope')).toBe('openid profile email groups');
    expect(url.searchParams.get('client_secret')).toBeNull();
  });

  it('a callback is used once: replayed, its state is unknown; a forged state logs nobody in', async () => {
    const key = bindingKey();
    const callback = await codeFromProvider(context, (await startSignOn(key)).href);
    const used = await deliver(callback, key);
    expect(used.status).toBe(303);
    expect(used.cookies).toContain('registry_session=');
    const replayed = await deliver(callback, key);
    expect(replayed.status).toBe(400);
    expect(replayed.text).toContain('unknown, expired or was already used');
    expect(replayed.cookies).not.toContain('registry_session=');
    const forged = new URL(callback.href);
    forged.searchParams.set('state', bindingKey());
    expect((await deliver(forged, key)).status).toBe(400);
    const none = new URL(callback.href);
    none.searchParams.delete('state');
    const noState = await deliver(none, key);
    expect(noState.status).toBe(400);
    expect(noState.text).toContain('no valid state');
  });

  it('a callback sent to another browser (login CSRF) logs nobody in there, and leaves the sign-on to its own browser', async () => {
    const key = bindingKey();
    const callback = await codeFromProvider(context, (await startSignOn(key)).href);
    const victim = await deliver(callback);
    expect(victim.status).toBe(403);
    expect(victim.text).toContain('started in another browser');
    expect(victim.cookies).not.toContain('registry_session=');
    const otherBrowser = await deliver(callback, bindingKey());
    expect(otherBrowser.status).toBe(403);
    expect((await deliver(callback, key)).status).toBe(303);
  });

  it('a code from another login is refused (its PKCE verifier and nonce are the other login\'s)', async () => {
    const key = bindingKey();
    const mine = await startSignOn(key);
    const other = await codeFromProvider(context, (await startSignOn(key)).href);
    // The other login's answer (its code, and the provider's iss) under this login's state.
    const swapped = new URL(other.href);
    swapped.searchParams.set('state', mine.searchParams.get('state') as string);
    const answer = await deliver(swapped, key);
    expect(answer.text).toContain('refused the sign-in: invalid_grant');
    expect(answer.status).toBe(401);
    expect(answer.cookies).not.toContain('registry_session=');
    // The other login's own state was not spent by the attempt.
    expect((await deliver(other, key)).status).toBe(303);
  });

  it('a code the provider issued without PKCE (the challenge stripped from the request) is refused', async () => {
    const key = bindingKey();
    const url = await startSignOn(key);
    url.searchParams.delete('code_challenge');
    url.searchParams.delete('code_challenge_method');
    const callback = await codeFromProvider(context, url.href);
    expect(callback.searchParams.get('code')).toBeTruthy();
    const answer = await deliver(callback, key);
    expect(answer.status).toBe(401);
    expect(answer.text).toContain('invalid_grant');
    expect(answer.cookies).not.toContain('registry_session=');
  });

  it('ID tokens of another issuer, for another audience, or signed with a key the provider does not publish are refused', async () => {
    const cases: [Parameters<TestProvider['setMischief']>[0], RegExp][] = [
      [{ iss: 'http://127.0.0.1:9/another-issuer' }, /does not verify \(.*(iss|issuer)/],
      [{ aud: 'another-client' }, /does not verify \(.*aud/],
      [{ forged: true }, /does not verify \(.*key/],
    ];
    try {
      for (const [mischief, words] of cases) {
        await provider.setMischief(mischief);
        const key = bindingKey();
        const callback = await codeFromProvider(context, (await startSignOn(key)).href);
        const answer = await deliver(callback, key);
        expect({ mischief, status: answer.status }).toEqual({ mischief, status: 401 });
        expect(answer.text).toMatch(words);
        expect(answer.cookies).not.toContain('registry_session=');
      }
    } finally {
      await provider.setMischief(null);
    }
  });

  it('after a sign-on, `next` leads only to a path of this registry (no open redirect)', async () => {
    for (const [next, expected] of [
      ['https://evil.example/steal', '/'],
      ['//evil.example/steal', '/'],
      ['/\\evil.example', '/'],
      ['javascript:alert(1)', '/'],
      ['/-/web/account', '/-/web/account'],
    ]) {
      const key = bindingKey();
      const answer = await deliver(await codeFromProvider(context, (await startSignOn(key, next)).href), key);
      expect({ next, status: answer.status, location: answer.location }).toEqual({ next, status: 303, location: expected });
    }
  });

  it('a provider account in no allowed group (SSO_ALLOWED_GROUPS) gets no account', async () => {
    const other = await browser.newContext();
    try {
      const page = await other.newPage();
      await page.goto(registry.url + '/-/sso/login');
      await signInAtProvider(page, 'outsider', OUTSIDER.password);
      await page.waitForSelector('text=in none of the groups allowed', { timeout: 15_000 });
      expect((await other.cookies(registry.url)).map((c) => c.name)).not.toContain('registry_session');
    } finally {
      await other.close();
    }
    expect((await couchGet(registry, '/_users/org.couchdb.user:outsider')).status).toBe(404);
  });

  it('a provider account whose name claim is a local account\'s does not take it over; a reserved name is refused', async () => {
    const other = await browser.newContext();
    try {
      const page = await other.newPage();
      await page.goto(registry.url + '/-/sso/login');
      await signInAtProvider(page, 'mallory', MALLORY.password);
      await page.waitForSelector('text=belongs to another account', { timeout: 15_000 });
      expect(await page.textContent('main h1')).toContain('"dave"');
      const cookies = await other.cookies(registry.url);
      expect(cookies.map((c) => c.name)).not.toContain('registry_session');
      await page.close();
      const admin = await (await browser.newContext()).newPage();
      await admin.goto(registry.url + '/-/sso/login');
      await signInAtProvider(admin, 'rootless', ROOTLESS.password);
      await admin.waitForSelector('text=is reserved', { timeout: 15_000 });
      await admin.context().close();
    } finally {
      await other.close();
    }
    const dave = (await couchGet(registry, '/_users/org.couchdb.user:dave')).body;
    expect(dave.registry_sso).toBeUndefined();
    expect(dave.roles).toEqual([]);
    expect(dave.email).toBe('dave@example.com');
    // dave's own token still is dave's.
    expect((await registry.request('GET', '/-/whoami', { token: daveToken })).body).toEqual({ username: 'dave' });
    expect((await couchGet(registry, '/_users/org.couchdb.user:admin')).status).toBe(404);
  });

  it('password logins are refused for people everywhere while off, with words that say to use npm login; tokens and the server admins\' password (break-glass) still work', async () => {
    const basic = 'Basic ' + Buffer.from('dave:dave-local-password').toString('base64');
    const byBasic = await registry.request('GET', '/-/whoami', { headers: { authorization: basic } });
    expect(byBasic.status).toBe(403);
    expect(byBasic.body.error).toContain('`npm login`');
    const legacy = await registry.request('PUT', '/-/user/org.couchdb.user:dave', { body: { name: 'dave', password: 'dave-local-password' } });
    expect(legacy.status).toBe(403);
    expect(legacy.body.error).toContain('Password logins are turned off');
    const signup = await registry.request('PUT', '/-/user/org.couchdb.user:newcomer', { body: { name: 'newcomer', password: 'newcomer-password', email: 'n@example.com' } });
    expect(signup.status).toBe(403);
    expect(signup.body.error).toContain('run `npm login`');
    // The real npm's legacy login says it too.
    const npmLegacy = await npmClient(registry.url).loginLegacy('login', 'dave', 'dave-local-password');
    expect(npmLegacy.code).not.toBe(0);
    expect(npmLegacy.stdout).toContain('Password logins are turned off');
    // The pages: the form posted anyway is refused, before any password is checked.
    const posted = await fetch(registry.url + '/-/web/login', { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' }, body: 'name=dave&password=dave-local-password&next=%2F' });
    expect(posted.status).toBe(403);
    expect(await posted.text()).toContain('Password logins are turned off');
    expect(posted.headers.get('set-cookie') || '').not.toContain('registry_session=');
    // npm's web login page goes straight to the provider; its password form posted anyway is refused.
    const started = await registry.request('POST', '/-/v1/login', { body: {} });
    const loginPage = await fetch(started.body.loginUrl, { redirect: 'manual' });
    expect(loginPage.status).toBe(303);
    expect(loginPage.headers.get('location')).toMatch(/\/-\/login\/[^/]+\/sso$/);
    const webPost = await fetch(started.body.loginUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'action=login&name=dave&password=dave-local-password' });
    expect(webPost.status).toBe(403);
    expect(await webPost.text()).toContain('Password logins are turned off');
    expect((await registry.request('GET', started.body.doneUrl.replace(registry.url, ''))).status).toBe(202);
    // Tokens keep working; the server admins log in with their password (break-glass), also on the page.
    expect((await registry.request('GET', '/-/whoami', { token: daveToken })).body).toEqual({ username: 'dave' });
    expect((await registry.request('GET', '/-/whoami', { headers: { authorization: adminAuth } })).body).toEqual({ username: decodeURIComponent(new URL(registry.adminCouchUrl).username) });
    const breakGlass = await (await fetch(registry.url + '/-/web/login?admin', { headers: { accept: 'text/html' } })).text();
    expect(breakGlass).toContain('type="password"');
    expect(breakGlass).toContain('break-glass');
  });

  it('a discovery document naming a token endpoint elsewhere (this registry\'s CouchDB) is not followed: the outbound policy allows only SSO_ISSUER\'s own host', async () => {
    // Each step bounded and named: a step that hangs (seen once on CI, 180 s) says which one it was.
    const other = await within('starting the second registry', startTestRegistry({ SSO_ISSUER: provider.issuer, SSO_CLIENT_ID: CLIENT_ID, SSO_CLIENT_SECRET: CLIENT_SECRET }));
    try {
      // Read at its first sign-on: the discovery document names its CouchDB as the token endpoint.
      await within('setting the provider\'s mischief', provider.setMischief({ tokenEndpoint: new URL(other.adminCouchUrl).origin + '/_session' }));
      await within('setting the provider\'s client', provider.setClient({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [registry.url + '/-/sso/callback', other.url + '/-/sso/callback'] }));
      const key = bindingKey();
      const authorization = await within('starting the sign-on', startSignOn(key, '/', other));
      const callback = await within('the browser at the provider', codeFromProvider(context, authorization.href), 60_000);
      const answer = await within('delivering the callback', deliver(callback, key, other));
      expect(answer.status).toBe(424);
      expect(answer.text).toContain('outbound request policy');
      expect(answer.cookies).not.toContain('registry_session=');
    } finally {
      await within('clearing the provider\'s mischief', provider.setMischief(null));
      await within('stopping the second registry', other.stop());
    }
  });
});

describe('single sign-on beside password logins', () => {
  let local: TestRegistry;
  beforeAll(async () => {
    // A provider that cannot be reached (nothing listens on port 9): pages render, sign-ons fail cleanly.
    local = await startTestRegistry({ SSO_ISSUER: 'http://127.0.0.1:9', SSO_CLIENT_ID: CLIENT_ID, SSO_CLIENT_SECRET: CLIENT_SECRET, SSO_NAME: 'Acme Login' });
  });
  afterAll(() => local?.stop());

  it('the pages\' and npm\'s login pages offer the provider beside the password form', async () => {
    const page = await (await fetch(local.url + '/-/web/login?next=%2F-%2Fweb%2Faccount', { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('href="/-/sso/login?next=%2F-%2Fweb%2Faccount">Sign in with Acme Login</a>');
    expect(page).toContain('type="password"');
    const started = await local.request('POST', '/-/v1/login', { body: {} });
    const key = started.body.loginUrl.split('/-/login/')[1];
    const webLogin = await (await fetch(started.body.loginUrl)).text();
    expect(webLogin).toContain('href="/-/login/' + key + '/sso">Sign in with Acme Login</a>');
    expect(webLogin).toContain('id="login-password"');
    expect(webLogin).toContain('id="signup"');
  });

  it('an account an admin linked to the provider, logging in with its password (Basic), has its groups\' roles lapse as with a token', async () => {
    await local.signup('erin', 'erin-password');
    await setRules([{ package: '@acme/*', read: ['$authenticated'], publish: ['role:acme-publishers'] }, { package: '**', read: ['$all'], publish: ['$authenticated'] }], local);
    const path = '/_users/org.couchdb.user:erin';
    const link = async (daysAgo: number) => {
      const account = (await couchGet(local, path)).body;
      const login = new Date(Date.now() - daysAgo * 86_400_000).toISOString();
      const saved = await fetch(new URL(local.adminCouchUrl).origin + path, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', authorization: basicAuthOf(local.adminCouchUrl) },
        body: JSON.stringify({ ...account, roles: ['acme-publishers'], registry_sso: { issuer: 'http://127.0.0.1:9', subject: 'erin-at-the-provider', roles: ['acme-publishers'], login } }),
      });
      expect(saved.status).toBe(201);
    };
    const client = npmClient(local.url);
    require('fs').appendFileSync(client.userconfig, local.url.replace(/^http:/, '') + '/:_auth=' + Buffer.from('erin:erin-password').toString('base64') + '\n');
    await link(8);
    const lapsed = await client.npm(['publish'], makePackage(client.home, { name: '@acme/linked', version: '1.0.0' }));
    expect(lapsed.stderr).toMatch(/E403/);
    await link(0);
    const published = await client.npm(['publish'], makePackage(client.home, { name: '@acme/linked', version: '1.0.0' }));
    expect(published.code).toBe(0);
  });

  it('a provider that cannot be reached gives a page that says so (424), not an error; a web login key that is not one gives 404', async () => {
    const answer = await fetch(local.url + '/-/sso/login', { redirect: 'manual', headers: { accept: 'text/html' } });
    expect(answer.status).toBe(424);
    expect(await answer.text()).toContain('could not be asked');
    expect((await fetch(local.url + '/-/login/not-a-key/sso', { redirect: 'manual' })).status).toBe(404);
    const callback = await fetch(local.url + '/-/sso/callback?code=x&state=' + 'a'.repeat(43), { redirect: 'manual' });
    expect(callback.status).toBe(400);
  });
});

describe('single sign-on settings', () => {
  const { loadConfig } = require('../../config') as typeof import('../../config');
  const base = { SSO_ISSUER: 'https://login.example.com/realms/acme', SSO_CLIENT_ID: 'registry', SSO_CLIENT_SECRET: 'the-secret-value' };

  it('are checked at start, and the client secret never shows in logs or JSON', () => {
    const config = loadConfig({ ...base, SSO_GROUP_ROLES: 'npm-publishers=acme-publishers, platform=acme-publishers, platform=platform, *=idp-' });
    const sso = config.sso!;
    expect(sso.groupRoles.map.get('platform')).toEqual(['acme-publishers', 'platform']);
    expect(sso.groupRoles.prefix).toBe('idp-');
    expect(sso.passwordLogin).toBe(true);
    expect(sso.groupsMaxAgeMs).toBe(7 * 86_400_000);
    expect(sso.allowedGroups).toEqual([]);
    expect(loadConfig({ ...base, SSO_ALLOWED_GROUPS: 'npm-users, staff' }).sso!.allowedGroups).toEqual(['npm-users', 'staff']);
    expect(loadConfig({ ...base, SSO_GROUPS_MAX_AGE: '0' }).sso!.groupsMaxAgeMs).toBe(0);
    expect(() => loadConfig({ ...base, SSO_GROUPS_MAX_AGE: 'a week' })).toThrow(/SSO_GROUPS_MAX_AGE/);
    expect(sso.scopes).toEqual(['openid', 'profile', 'email']);
    expect(JSON.stringify(config)).not.toContain('the-secret-value');
    expect(require('util').inspect(config, { depth: 10 })).not.toContain('the-secret-value');
    expect(sso.clientSecret.value).toBe('the-secret-value');
    // The provider's exact host is the one the outbound policy lets be private.
    expect(() => config.outbound.connectOptions(new URL('http://login.example.com/x'))).not.toThrow();
    expect(() => loadConfig({ ...base, SSO_GROUP_ROLES: 'ops=_admin' })).toThrow(/SSO_GROUP_ROLES/);
    expect(() => loadConfig({ ...base, SSO_GROUP_ROLES: 'ops=registry-replicator' })).toThrow(/machinery/);
    expect(() => loadConfig({ ...base, SSO_CLIENT_SECRET: '' })).toThrow(/SSO_CLIENT_SECRET/);
    expect(() => loadConfig({ SSO_CLIENT_ID: 'x' })).toThrow(/need SSO_ISSUER/);
    expect(() => loadConfig({ ...base, SSO_PASSWORD_LOGIN: 'maybe' })).toThrow(/SSO_PASSWORD_LOGIN/);
    expect(() => loadConfig({ ...base, SSO_ISSUER: 'ftp://x' })).toThrow(/SSO_ISSUER/);
  });

  it('groups map to roles, never to the registry\'s own or CouchDB\'s', () => {
    const { rolesForGroups } = require('../../gateway/sso') as typeof import('../../gateway/sso');
    const config = loadConfig({ ...base, SSO_GROUP_ROLES: 'eng=acme-devs, *=registry-' }).sso!;
    expect(rolesForGroups(config, ['eng', 'gateway', 'replicator', 'ops', 'has space'])).toEqual(['acme-devs', 'registry-eng', 'registry-ops']);
  });
});
