/**
 * CouchDB and Fauxton through the gateway's port (`/-/couchdb/`), attacked: only server admins get
 * through (anonymous 401, a plain user or an npm token 403/401, before anything reaches CouchDB);
 * forged proxy-authentication headers are stripped; paths that try to leave or dodge the prefix reach
 * nothing; a page of another site cannot make a logged-in admin's browser write; a refused request's
 * body is never read (a huge declared body, a smuggled second request); an admin's large body
 * streams through. In Chromium, the admin logs in on the registry's pages and works in Fauxton under
 * the prefix; a plain user gets no further.
 */
import { createServer, Server } from 'http';
import { AddressInfo, connect } from 'net';
import { Browser } from 'playwright-core';
import { proxyHeaders } from '../../couchdb/proxy-auth';
import { describeWithBrowser, launchChromium } from '../helpers/browser';
import { basic, send } from '../helpers/principals';
import { basicAuthOf, startTestRegistry, TestRegistry } from '../helpers/registry';

let registry: TestRegistry;
let admin: { name: string; password: string };
const PLAIN = { name: 'plain-proxy-user', password: 'plain-user-password' };
let plainToken: string;
/** The database a page of another site tries to write (made empty by the admin first). */
const CSRF_DB = 'csrf-target-' + Math.random().toString(36).slice(2, 8);

beforeAll(async () => {
  // A small publish limit: a body that went through the gateway's own parsers would be refused.
  registry = await startTestRegistry({ MAX_PUBLISH_BYTES: String(1024 * 1024) });
  const url = new URL(registry.adminCouchUrl);
  admin = { name: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
  plainToken = await registry.signup(PLAIN.name, PLAIN.password);
});
afterAll(() => registry?.stop());

const gateway = (path: string, headers: Record<string, string> = {}, method = 'GET', body?: unknown) => send(registry.localUrl, method, path, { headers, body });
const asAdmin = () => ({ authorization: basic(admin.name, admin.password) });

/** What one raw HTTP/1.1 exchange on a fresh connection brings back before the server closes it (or `ms` pass). */
function raw(request: string, ms = 5000): Promise<{ text: string; closed: boolean; elapsed: number }> {
  const { port } = new URL(registry.localUrl);
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(request));
    let text = '';
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed, elapsed: Date.now() - started });
    };
    const timer = setTimeout(() => done(false), ms);
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('close', () => done(true));
    socket.on('error', () => done(true));
  });
}

describe('who gets through /-/couchdb/', () => {
  it('a server admin with Basic credentials reaches CouchDB\'s API, as themselves', async () => {
    const dbs = await gateway('/-/couchdb/_all_dbs', asAdmin());
    expect(dbs.status).toBe(200);
    expect(dbs.body).toEqual(expect.arrayContaining([registry.registryDb, registry.registryDb + '-state']));
    const session = await gateway('/-/couchdb/_session', asAdmin());
    expect(session.body.userCtx).toEqual({ name: admin.name, roles: ['_admin'] });
    // CouchDB's cookies never reach the browser through the gateway.
    const login = await send(registry.localUrl, 'POST', '/-/couchdb/_session', { headers: asAdmin(), body: { name: admin.name, password: admin.password } });
    expect(login.headers.get('set-cookie')).toBeNull();
  });

  it.each([
    ['anonymous', {}, 401],
    ['a plain user with Basic credentials', { authorization: basic(PLAIN.name, PLAIN.password) }, 403],
    ['a plain user\'s npm token', () => ({ authorization: 'Bearer ' + plainToken }), 401],
    ['a wrong admin password', () => ({ authorization: basic(admin.name, 'not-the-password') }), 401],
  ])('%s is refused before CouchDB is asked', async (_who, headers, status) => {
    const given = typeof headers === 'function' ? headers() : headers;
    for (const [method, path] of [['GET', '/-/couchdb/_all_dbs'], ['GET', '/-/couchdb/' + registry.registryDb + '-tokens/_all_docs'], ['PUT', '/-/couchdb/' + registry.registryDb + '/evil'], ['GET', '/-/couchdb/_utils/']]) {
      const answer = await gateway(path, { ...given, accept: 'application/json' }, method, method === 'PUT' ? { name: 'evil' } : undefined);
      expect([method, path, answer.status]).toEqual([method, path, status]);
      expect(answer.body.error).toBe(status === 401 ? 'unauthorized' : 'forbidden');
    }
    expect((await gateway('/-/couchdb/' + registry.registryDb + '/evil', asAdmin())).status).toBe(404);
  });

  it('an admin\'s npm token does not open CouchDB either', async () => {
    const token = await registry.adminToken();
    expect((await gateway('/-/couchdb/_all_dbs', { authorization: 'Bearer ' + token })).status).toBe(401);
  });

  it('forged proxy-authentication headers are stripped: they neither let anyone in nor change who an admin is', async () => {
    // Even with the right HMAC (which only the gateway and CouchDB know), the gateway's login comes first.
    const forged = proxyHeaders(registry.proxySecret, admin.name, ['_admin']);
    expect((await gateway('/-/couchdb/_all_dbs', forged)).status).toBe(401);
    expect((await gateway('/-/couchdb/_all_dbs', { ...forged, authorization: basic(PLAIN.name, PLAIN.password) })).status).toBe(403);
    const asSomeoneElse = await gateway('/-/couchdb/_session', { ...asAdmin(), ...proxyHeaders(registry.proxySecret, PLAIN.name, ['registry-gateway']), 'x-forwarded-for': '10.0.0.1', cookie: 'AuthSession=forged' });
    expect(asSomeoneElse.body.userCtx).toEqual({ name: admin.name, roles: ['_admin'] });
  });

  it('paths that try to leave or dodge the prefix reach nothing of CouchDB without an admin', async () => {
    for (const path of [
      '/-/couchdb/../_all_dbs', '/-/couchdb/%2e%2e/_all_dbs', '/-/couchdb/..%2f_all_dbs', '/-/COUCHDB/_all_dbs', '/-/couchdb//_all_dbs',
      '/-%2fcouchdb/_all_dbs', '/-/couchdb%2f_all_dbs', '/%2d/couchdb/_all_dbs', '//-/couchdb/_all_dbs', '/x/..%2f-/couchdb/_all_dbs', '/-/./couchdb/_all_dbs',
      '/-/couchdb%00/_all_dbs', '/-/couchdb\\_all_dbs', '/_all_dbs', '/' + registry.registryDb + '-tokens/_all_docs',
    ]) {
      const answer = await raw('GET ' + path + ' HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n');
      const status = Number(answer.text.slice(9, 12));
      expect([path, status >= 400 && status < 500]).toEqual([path, true]);
      expect(answer.text).not.toContain('"_users"');
      expect(answer.text).not.toContain(registry.registryDb + '-state');
    }
  });
});

describe('bodies through /-/couchdb/', () => {
  it('a refused request\'s body is never read: a gigabyte declared by an anonymous caller is answered at once and the connection closed', async () => {
    const answer = await raw('PUT /-/couchdb/' + registry.registryDb + '/huge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"a":');
    expect(answer.text.startsWith('HTTP/1.1 401')).toBe(true);
    expect(answer.closed).toBe(true);
    expect(answer.elapsed).toBeLessThan(4000);
  });

  it('a second request smuggled in a refused request\'s body is never served, and Content-Length with Transfer-Encoding is a 400', async () => {
    const smuggled = 'GET /-/couchdb/_all_dbs HTTP/1.1\r\nHost: 127.0.0.1\r\n' + Object.entries(proxyHeaders(registry.proxySecret, admin.name, ['_admin'])).map(([k, v]) => k + ': ' + v).join('\r\n') + '\r\n\r\n';
    const chunked = await raw('POST /-/couchdb/' + registry.registryDb + ' HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' + smuggled);
    expect(chunked.text.match(/HTTP\/1\.1 \d+/g)).toEqual(['HTTP/1.1 401']);
    expect(chunked.text).not.toContain('"_users"');
    const both = await raw('POST /-/couchdb/' + registry.registryDb + ' HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' + smuggled);
    expect(both.text.match(/HTTP\/1\.1 \d+/g)).toEqual(['HTTP/1.1 400']);
  });

  it('an admin\'s body larger than anything the gateway itself reads streams through to CouchDB', async () => {
    const size = 12 * 1024 * 1024;
    const data = Buffer.alloc(size, 7);
    const created = await send(registry.localUrl, 'PUT', '/-/couchdb/' + registry.registryDb + '-state/large-attachment-holder', { headers: asAdmin(), body: { note: 'admin' } });
    expect(created.status).toBe(201);
    const response = await fetch(registry.localUrl + '/-/couchdb/' + registry.registryDb + '-state/large-attachment-holder/blob.bin?rev=' + created.body.rev, {
      method: 'PUT', headers: { ...asAdmin(), 'content-type': 'application/octet-stream' }, body: data,
    });
    expect(response.status).toBe(201);
    const back = await fetch(registry.localUrl + '/-/couchdb/' + registry.registryDb + '-state/large-attachment-holder/blob.bin', { headers: asAdmin() });
    expect(Buffer.from(await back.arrayBuffer()).equals(data)).toBe(true);
  });
});

describeWithBrowser('the Fauxton-through-the-gateway tests')('Fauxton through the gateway port, in Chromium', () => {
  let browser: Browser;
  let attacker: Server;
  let attackerUrl: string;

  beforeAll(async () => {
    browser = await launchChromium();
    // A page of another origin (another port: same site, so the admin's SameSite=Lax cookie goes along).
    attacker = createServer((_req, res) => {
      const target = registry.localUrl + '/-/couchdb/' + CSRF_DB;
      res.setHeader('content-type', 'text/html');
      res.end(`<!doctype html><body>
<form id="f" method="post" action="${target}" enctype="text/plain"><input name='{"_id":"csrf-form","x":"' value='"}'></form>
<script>
fetch(${JSON.stringify(target + '/csrf-fetch')}, { method: 'PUT', mode: 'no-cors', credentials: 'include', headers: { 'content-type': 'text/plain' }, body: '{"x":1}' })
  .catch(() => null).then(() => { document.title = 'sent'; document.getElementById('f').submit(); });
</script></body>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    attackerUrl = 'http://127.0.0.1:' + (attacker.address() as AddressInfo).port + '/';
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => attacker?.close(resolve));
  });

  async function logIn(name: string, password: string) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(registry.localUrl + '/-/couchdb/_utils/');
    // Not logged in: the registry's login page, which comes back to Fauxton.
    expect(page.url()).toContain('/-/web/login?next=');
    await page.fill('#name', name);
    await page.fill('#password', password);
    await page.click('form.login button');
    await page.waitForLoadState('load');
    return { context, page };
  }

  it('the admin logs in on the registry\'s page and works in Fauxton under /-/couchdb/_utils/: the databases, then the registry database\'s documents', async () => {
    const { context, page } = await logIn(admin.name, admin.password);
    try {
      expect(page.url()).toBe(registry.localUrl + '/-/couchdb/_utils/');
      await page.waitForSelector('text=' + registry.registryDb + '-mirror', { timeout: 15_000 });
      expect(await page.textContent('body')).toContain(registry.registryDb + '-tokens');
      const asked: string[] = [];
      page.on('request', (request) => asked.push(new URL(request.url()).pathname));
      await page.goto(registry.localUrl + '/-/couchdb/_utils/#database/' + registry.registryDb + '/_all_docs');
      await page.waitForSelector('text=_design/access', { timeout: 15_000 });
      // Every request Fauxton made stayed under the prefix.
      expect(asked.filter((path) => !path.startsWith('/-/couchdb/'))).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('Fauxton\'s Logout ends the session: Fauxton and CouchDB are closed again', async () => {
    const { context, page } = await logIn(admin.name, admin.password);
    try {
      await page.waitForSelector('text=' + registry.registryDb + '-mirror', { timeout: 15_000 });
      // The embedded server's Fauxton has a "Logout" link; CouchDB 3.4.3's an icon link to #/logout.
      await page.locator('a[href="#/logout"]').or(page.locator('text=Logout')).first().click();
      await page.waitForTimeout(1000);
      expect((await page.evaluate(async () => (await fetch('/-/couchdb/_all_dbs')).status))).toBe(401);
    } finally {
      await context.close();
    }
  });

  it('a plain user who logs in gets no further than a refusal', async () => {
    const { context, page } = await logIn(PLAIN.name, PLAIN.password);
    try {
      const text = await page.textContent('body');
      expect(text).toContain('is not a server admin of this registry');
      expect(text).not.toContain(registry.registryDb + '-tokens');
    } finally {
      await context.close();
    }
  });

  it('a page of another site cannot make a logged-in admin\'s browser write through /-/couchdb/ (fetch nor form)', async () => {
    const { context, page } = await logIn(admin.name, admin.password);
    try {
      expect((await gateway('/-/couchdb/' + CSRF_DB, asAdmin(), 'PUT')).status).toBe(201);
      const evil = await context.newPage();
      await evil.goto(attackerUrl);
      await evil.waitForURL((url) => url.href.startsWith(registry.localUrl), { timeout: 10_000 });
      expect(await evil.textContent('body')).toContain('sent by a page of another site');
      expect((await gateway('/-/couchdb/' + CSRF_DB, asAdmin())).body.doc_count).toBe(0);
      expect((await gateway('/-/couchdb/' + CSRF_DB, asAdmin(), 'DELETE')).status).toBe(200);
      // The admin's own session still works from the registry's origin.
      expect((await page.evaluate(async () => (await fetch('/-/couchdb/_session')).json())).userCtx.name).toBe(admin.name);
    } finally {
      await context.close();
    }
  });

  it('Fauxton\'s answers may not be framed by another page', async () => {
    const answer = await fetch(registry.localUrl + '/-/couchdb/_utils/', { headers: { authorization: basicAuthOf(registry.adminCouchUrl) } });
    expect(answer.headers.get('x-frame-options')).toBe('DENY');
    expect(answer.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
  });
});
