/**
 * Identity is the account, and throttles that hold (issue 23, holes 3, 5, 8, 10 and 11): nobody signs
 * up as a server admin or under a reserved name; tokens and sessions die with their account and with a
 * password change, at once; a parallel burst of guesses is counted as it arrives and does not delay
 * anyone else's login, on the gateway and on the CouchDB port; logins do not tell which names exist;
 * no secret reaches the access log; a read-only token manages no tokens; the pages refuse forms posted
 * from other sites; the web login's two URLs carry independent secrets; pending web logins are
 * bounded. The registry runs as its own process (a crash shows), logging at info to see its access log.
 */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { basic, send } from '../helpers/principals';
import { killProcess, RegistryProcess, startRegistryProcess } from '../helpers/process';
import { databasesOf } from '../helpers/registry';

const run = Math.random().toString(36).slice(2, 8);
const couchEnv = process.env.COUCHDB_URL ? new URL(process.env.COUCHDB_URL) : null;
let registry: RegistryProcess;
let dataDir: string;
let gateway: string;
let couch: string;
let admin: { name: string; password: string };
const made: string[] = [];
const registryDb = couchEnv ? 'registry-identity-' + run : 'registry';

const adminCouch = () => ({ authorization: basic(admin.name, admin.password) });
const bearer = (token: string) => ({ authorization: 'Bearer ' + token });
const userPath = (name: string) => '/-/user/org.couchdb.user:' + encodeURIComponent(name);

/** Signs `name` up through the legacy login; its token. */
async function signup(name: string, password: string): Promise<string> {
  const res = await send(gateway, 'PUT', userPath(name), { body: { name, password, email: name + '@example.com' } });
  if (res.status !== 201) throw new Error('signup of ' + name + ': ' + res.status + ' ' + JSON.stringify(res.body));
  made.push(name);
  return res.body.token;
}

/** Changes a password as an admin does in Fauxton: the `_users` document saved with a new `password`. */
async function changePassword(name: string, password: string): Promise<void> {
  const doc = await send(couch, 'GET', '/_users/org.couchdb.user:' + name, { headers: adminCouch() });
  expect(doc.status).toBe(200);
  const saved = await send(couch, 'PUT', '/_users/org.couchdb.user:' + name, { headers: adminCouch(), body: { ...doc.body, password } });
  expect(saved.status).toBeLessThan(300);
}

/** Logs in on the pages; the session cookie (`name=value`). */
async function pageLogin(name: string, password: string): Promise<string> {
  const res = await fetch(gateway + '/-/web/login', {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(gateway).origin },
    body: new URLSearchParams({ name, password, next: '/' }).toString(),
  });
  expect(res.status).toBe(303);
  return (res.headers.get('set-cookie') as string).split(';')[0];
}

/** The account page with `cookie`: 200 when the session is live, a redirect to the login page when not. */
const accountPage = (cookie: string) => fetch(gateway + '/-/web/account', { redirect: 'manual', headers: { cookie, accept: 'text/html' } });

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'registry-identity-'));
  registry = await startRegistryProcess({ DATA_DIR: dataDir, REGISTRY_DB: registryDb, REGISTRY_ADMIN_PASSWORD: '', LOG_LEVEL: 'info' });
  gateway = registry.url;
  couch = registry.couchUrl;
  admin = couchEnv
    ? { name: decodeURIComponent(couchEnv.username), password: decodeURIComponent(couchEnv.password) }
    : { name: 'admin', password: readFileSync(join(dataDir, 'admin-password'), 'utf8').trim() };
});

afterAll(async () => {
  // Nothing reached the last-resort handler: no request crashed anything.
  expect(registry.output()).not.toMatch(/unhandled rejection|uncaught exception/);
  await killProcess(registry.child, 'SIGTERM');
  if (couchEnv) {
    for (const db of databasesOf(registryDb)) await fetch(couchEnv.origin + '/' + db, { method: 'DELETE', headers: adminCouch() });
    for (const name of made) {
      const doc = await send(couchEnv.origin, 'GET', '/_users/org.couchdb.user:' + name, { headers: adminCouch() });
      if (doc.status === 200) await send(couchEnv.origin, 'DELETE', '/_users/org.couchdb.user:' + name + '?rev=' + doc.body._rev, { headers: adminCouch() });
    }
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe('hole 3: nobody signs up as a server admin or under a reserved name', () => {
  it('the legacy login refuses the admin name and reserved names in any spelling, and makes no account', async () => {
    const names = [admin.name, admin.name.toUpperCase(), 'Admin', 'ADMINISTRATOR', 'root', 'couchdb', 'npm', 'registry', 'ad.min', 'r_o-o.t', 'registry-site', 'Registry_Site', 'registry-replicator'];
    const stored = async (name: string) => {
      const found = await send(couch, 'GET', '/_users/org.couchdb.user:' + encodeURIComponent(name), { headers: adminCouch() });
      return found.status === 200 ? found.body._rev : found.status;
    };
    for (const name of names) {
      // (On a shared CouchDB the service accounts, such as registry-site, exist already: they must stay as they are.)
      const before = await stored(name);
      const res = await send(gateway, 'PUT', userPath(name), { body: { name, password: 'hostile-password', email: 'm@example.com' } });
      expect([name, [403, 409].includes(res.status)]).toEqual([name, true]);
      expect(res.body.token).toBeUndefined();
      expect(res.body.error).toMatch(/choose another name/);
      // No `_users` document was made or changed under that name.
      expect([name, await stored(name)]).toEqual([name, before]);
      if (!['registry-site', 'registry-replicator'].includes(name)) expect([name, before]).toEqual([name, 404]);
    }
    // The admin's own login still works, and gets a token that acts as the admin.
    const own = await send(gateway, 'PUT', userPath(admin.name), { body: { name: admin.name, password: admin.password } });
    expect(own.status).toBe(201);
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(own.body.token) })).body.username).toBe(admin.name);
  });

  it('the web login page refuses to sign up a reserved name', async () => {
    const started = await send(gateway, 'POST', '/-/v1/login', { body: {} });
    const res = await fetch(started.body.loginUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(gateway).origin },
      body: new URLSearchParams({ action: 'signup', name: 'Root', email: 'm@example.com', password: 'hostile-password' }).toString(),
    });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain('choose another name');
    expect((await send(couch, 'GET', '/_users/org.couchdb.user:Root', { headers: adminCouch() })).status).toBe(404);
  });
});

describe('tokens and sessions die with their account and with a password change', () => {
  it('a token does not outlive its account, nor work for a new account of the same name', async () => {
    const name = 'gone-' + run;
    const token = await signup(name, 'first-password');
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(token) })).status).toBe(200);
    const doc = await send(couch, 'GET', '/_users/org.couchdb.user:' + name, { headers: adminCouch() });
    expect((await send(couch, 'DELETE', '/_users/org.couchdb.user:' + name + '?rev=' + doc.body._rev, { headers: adminCouch() })).status).toBe(200);
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(token) })).status).toBe(401);
    // Someone else takes the name: the old token is still nobody's.
    const newToken = await signup(name, 'second-password');
    const old = await send(gateway, 'GET', '/-/whoami', { headers: bearer(token) });
    expect(old.status).toBe(401);
    expect(old.body.error).toMatch(/npm login/);
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(newToken) })).body.username).toBe(name);
  });

  it('a password change ends the old password, the tokens and the page sessions at once, on both ports', async () => {
    const name = 'changer-' + run;
    const token = await signup(name, 'old-password');
    // Successful checks are remembered: use the old password on both ports before the change.
    expect((await send(gateway, 'GET', '/-/whoami', { headers: { authorization: basic(name, 'old-password') } })).status).toBe(200);
    expect((await send(couch, 'GET', '/_session', { headers: { authorization: basic(name, 'old-password') } })).status).toBe(200);
    const cookie = await pageLogin(name, 'old-password');
    expect((await accountPage(cookie)).status).toBe(200);

    await changePassword(name, 'new-password');

    expect((await send(gateway, 'GET', '/-/whoami', { headers: { authorization: basic(name, 'old-password') } })).status).toBe(401);
    expect((await send(couch, 'GET', '/_session', { headers: { authorization: basic(name, 'old-password') } })).status).toBe(401);
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(token) })).status).toBe(401);
    expect((await accountPage(cookie)).status).toBe(303);
    // The new password works everywhere, and its tokens are listed; the dead one is not.
    expect((await send(gateway, 'GET', '/-/whoami', { headers: { authorization: basic(name, 'new-password') } })).body.username).toBe(name);
    expect((await send(couch, 'GET', '/_session', { headers: { authorization: basic(name, 'new-password') } })).body.userCtx.name).toBe(name);
    const fresh = await send(gateway, 'PUT', userPath(name) + '/-rev/1-x', { body: { name, password: 'new-password' } });
    expect(fresh.status).toBe(201);
    const listed = await send(gateway, 'GET', '/-/npm/v1/tokens', { headers: bearer(fresh.body.token) });
    expect(listed.body.objects.map((t: { token: string }) => t.token)).toEqual([fresh.body.token.slice(0, 10)]);
  });
});

describe('hole 5: the login throttle holds under concurrency and nobody else waits', () => {
  /**
   * How long a first login takes here without any burst (a password hash, on a machine that may be
   * busy with other tests): the bystander's login during a burst is held to 1 s, or to a little more
   * than this when the machine itself is slower than that.
   */
  async function calmLogin(url: string, path: string, tag: string): Promise<number> {
    const name = 'calm-' + tag + '-' + run;
    await signup(name, 'calm-password');
    const res = await send(url, 'GET', path, { headers: { authorization: basic(name, 'calm-password') } });
    expect(res.status).toBe(200);
    return res.ms;
  }
  const bystanderLimit = (calm: number) => Math.max(1000, 3 * calm);

  /** 300 parallel wrong guesses for `victim` at `url`, and meanwhile another user's first login there. */
  async function burst(url: string, path: string, victim: string, bystander: string, bystanderPassword: string) {
    const guesses = Array.from({ length: 300 }, (_, i) => send(url, 'GET', path, { headers: { authorization: basic(victim, 'guess-' + i) } }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const other = await send(url, 'GET', path, { headers: { authorization: basic(bystander, bystanderPassword) } });
    const statuses = (await Promise.all(guesses)).map((res) => res.status);
    return { other, checked: statuses.filter((s) => s === 401).length, refused: statuses.filter((s) => s === 429 || s === 503).length, statuses };
  }

  /**
   * A burst against a fresh victim with a fresh bystander, after a calm first login, each checked for
   * what the throttle lets through; tried up to three times until the bystander's login is within its
   * limit (on a machine shared with other test files, a moment of their load can slow one try; the code
   * before this fix made every try wait for the whole burst, over 20 s).
   */
  async function burstWithBystander(url: string, path: string, tag: string) {
    let result;
    for (let attempt = 1; attempt <= 3; attempt++) {
      const victim = 'victim-' + tag + attempt + '-' + run;
      const bystander = 'bystander-' + tag + attempt + '-' + run;
      await signup(victim, 'victim-password');
      await signup(bystander, 'bystander-password');
      const calm = await calmLogin(url, path, tag + attempt);
      const { other, checked, refused } = await burst(url, path, victim, bystander, 'bystander-password');
      expect(other.status).toBe(200);
      expect(checked).toBeLessThanOrEqual(10);
      expect(checked + refused).toBe(300);
      result = { calm, other, checked, victim, bystander };
      if (other.ms < bystanderLimit(calm)) break;
    }
    return result as NonNullable<typeof result>;
  }

  it('through the gateway: at most the limit of guesses is checked, another user logs in under 1 s', async () => {
    const { calm, other, bystander } = await burstWithBystander(gateway, '/-/whoami', 'g');
    expect(other.ms).toBeLessThan(bystanderLimit(calm));
    // Another account from this address still logs in.
    expect((await send(gateway, 'GET', '/-/whoami', { headers: { authorization: basic(bystander, 'bystander-password') } })).status).toBe(200);
  });

  // The embedded server's port is the registry's own; a real CouchDB's port answers with CouchDB's own
  // password checks and lock-out ([chttpd_auth_lockout]), which this registry does not run.
  const embeddedPort = process.env.COUCHDB_URL ? it.skip : it;
  embeddedPort('through the CouchDB port (Basic and POST /_session): the same throttle, another user logs in under 1 s', async () => {
    const { calm, other, checked, victim } = await burstWithBystander(couch, '/_session', 'c');
    expect(other.ms).toBeLessThan(bystanderLimit(calm));
    // POST /_session counts against the same throttle: once the pair's ten failures are spent (guesses
    // refused while the hashing queue was full were never checked, and count for nothing), it is refused.
    let session = await send(couch, 'POST', '/_session', { body: { name: victim, password: 'another-guess' } });
    for (let i = checked; i < 10 && session.status === 401; i++) session = await send(couch, 'POST', '/_session', { body: { name: victim, password: 'another-guess-' + i } });
    expect(session.status).toBe(429);
    expect(Number(session.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(session.body.error).toBe('too_many_requests');
  });
});

describe('hole 10: a login does not tell which names exist', () => {
  const attempt = (name: string) => send(gateway, 'PUT', userPath(name) + '/-rev/1-x', { body: { name, password: 'a-wrong-password' } });

  it('an unknown name is answered as a known one with a wrong password: same status, same body, similar time, throttled alike', async () => {
    const known = 'known-' + run;
    await signup(known, 'known-password');
    const unknown = 'unknown-' + run;
    const knownAnswers = [];
    const unknownAnswers = [];
    for (let i = 0; i < 3; i++) {
      knownAnswers.push(await attempt(known));
      unknownAnswers.push(await attempt(unknown));
    }
    for (const res of [...knownAnswers, ...unknownAnswers]) {
      expect(res.status).toBe(401);
      expect(res.body).toEqual(knownAnswers[0].body);
    }
    const average = (answers: { ms: number }[]) => answers.reduce((sum, res) => sum + res.ms, 0) / answers.length;
    expect(average(unknownAnswers)).toBeGreaterThan(average(knownAnswers) / 3);
    // Throttled alike: the eleventh attempt of each is refused the same way.
    let lastKnown = knownAnswers[0];
    let lastUnknown = unknownAnswers[0];
    for (let i = 3; i < 11; i++) {
      lastKnown = await attempt(known);
      lastUnknown = await attempt(unknown);
    }
    expect(lastKnown.status).toBe(429);
    expect(lastUnknown.status).toBe(429);
    expect(lastUnknown.body.error.replace(/\d+/g, 'N')).toBe(lastKnown.body.error.replace(/\d+/g, 'N'));
  });
});

describe('hole 11: secrets stay out of the log, read-only tokens manage no tokens, forms and web logins resist other sites', () => {
  it('no token and no web login key reaches the access log', async () => {
    const owner = 'logged-' + run;
    const token = await signup(owner, 'logged-password');
    const other = await signup('other-' + run, 'other-password');
    // A failed revocation of a live token, by someone else; a key in npm token revoke's path.
    expect((await send(gateway, 'DELETE', '/-/user/token/' + encodeURIComponent(token), { headers: bearer(other) })).status).toBe(404);
    expect((await send(gateway, 'DELETE', '/-/npm/v1/tokens/token/' + encodeURIComponent(token), { headers: bearer(other) })).status).toBe(404);
    const started = await send(gateway, 'POST', '/-/v1/login', { body: {} });
    await send(gateway, 'GET', new URL(started.body.doneUrl).pathname);
    await fetch(started.body.loginUrl);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const log = registry.output();
    expect(log).toContain('"path":"/-/user/token/<redacted>"');
    expect(log).not.toContain(token);
    for (const url of [started.body.loginUrl, started.body.doneUrl]) expect(log).not.toContain(new URL(url).pathname.split('/').pop());
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(token) })).status).toBe(200);
  });

  it('a read-only token neither creates nor revokes tokens, except itself (npm logout)', async () => {
    const name = 'reader-' + run;
    const full = await signup(name, 'reader-password');
    const readonly = (await send(gateway, 'POST', '/-/npm/v1/tokens', { headers: bearer(full), body: { password: 'reader-password', packages_and_scopes_permission: 'read-only' } })).body.token;
    const listed = await send(gateway, 'GET', '/-/npm/v1/tokens', { headers: bearer(full) });
    const fullKey = listed.body.objects.find((t: { readonly: boolean }) => !t.readonly).key;
    for (const [method, path, body] of [
      ['DELETE', '/-/user/token/' + encodeURIComponent(full), undefined],
      ['DELETE', '/-/npm/v1/tokens/token/' + fullKey, undefined],
      ['DELETE', '/-/npm/v1/tokens/token/' + encodeURIComponent(full), undefined],
      ['POST', '/-/npm/v1/tokens', { password: 'reader-password' }],
    ] as const) {
      const res = await send(gateway, method, path, { headers: bearer(readonly), body });
      expect({ method, path, status: res.status }).toEqual({ method, path, status: 403 });
      expect(res.body.error).toMatch(/read-only/);
    }
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(full) })).status).toBe(200);
    expect((await send(gateway, 'GET', '/-/npm/v1/tokens', { headers: bearer(full) })).body.total).toBe(2);
    // npm logout with the read-only token revokes that token.
    expect((await send(gateway, 'DELETE', '/-/user/token/' + encodeURIComponent(readonly), { headers: bearer(readonly) })).status).toBe(200);
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(readonly) })).status).toBe(401);
  });

  it('the pages refuse a login or a logout posted from another site', async () => {
    const name = 'csrf-' + run;
    await signup(name, 'csrf-password');
    const form = (path: string, headers: Record<string, string>, fields: Record<string, string>, cookie = '') =>
      fetch(gateway + path, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, ...headers }, body: new URLSearchParams(fields).toString() });
    for (const headers of [{ origin: 'http://evil.example' }, { origin: 'null' }, { 'sec-fetch-site': 'cross-site' }] as Record<string, string>[]) {
      const login = await form('/-/web/login', headers, { name, password: 'csrf-password', next: '/' });
      expect(login.status).toBe(403);
      expect(login.headers.get('set-cookie')).toBeNull();
    }
    const cookie = await pageLogin(name, 'csrf-password');
    const logout = await form('/-/web/logout', { origin: 'http://evil.example' }, {}, cookie);
    expect(logout.status).toBe(403);
    expect((await accountPage(cookie)).status).toBe(200);
    // From the registry's own page, logging out works.
    expect((await form('/-/web/logout', { origin: new URL(gateway).origin, 'sec-fetch-site': 'same-origin' }, {}, cookie)).status).toBe(303);
    expect((await accountPage(cookie)).status).toBe(303);
  });

  it('whoever sees the web login URL cannot collect the token: the done URL has its own secret', async () => {
    const name = 'weblogin-' + run;
    await signup(name, 'weblogin-password');
    const started = await send(gateway, 'POST', '/-/v1/login', { body: {} });
    const loginKey = new URL(started.body.loginUrl).pathname.split('/').pop() as string;
    const doneKey = new URL(started.body.doneUrl).pathname.split('/').pop() as string;
    expect(started.body.loginUrl).not.toContain(doneKey.split('.').pop());
    const page = await fetch(started.body.loginUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(gateway).origin },
      body: new URLSearchParams({ action: 'login', name, password: 'weblogin-password' }).toString(),
    });
    expect(page.status).toBe(200);
    // The login URL's key, tried on the done URL: nothing.
    expect((await send(gateway, 'GET', '/-/v1/done/' + loginKey)).status).toBe(404);
    const done = await send(gateway, 'GET', '/-/v1/done/' + doneKey);
    expect(done.status).toBe(200);
    expect((await send(gateway, 'GET', '/-/whoami', { headers: bearer(done.body.token) })).body.username).toBe(name);
  });
});

describe('hole 8: anonymous web logins are bounded', () => {
  it('one address may not start more than 30 pending logins', async () => {
    const answers = [];
    for (let i = 0; i < 40; i++) answers.push(await send(gateway, 'POST', '/-/v1/login', { body: {} }));
    const refused = answers.filter((res) => res.status === 429);
    expect(answers.filter((res) => res.status === 200).length).toBeLessThanOrEqual(30);
    expect(refused.length).toBeGreaterThanOrEqual(10);
    expect(Number(refused[0].headers.get('retry-after'))).toBeGreaterThan(0);
    expect(refused[0].body.error).toMatch(/Too many logins/);
  });
});
