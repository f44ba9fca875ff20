/**
 * Holes of issue 23 at the gateway's edge, against a registry process: large bodies are read only from
 * callers with credentials, private packages are never marked for shared caches, a dependency's name
 * cannot make the pages link to another host, and a maintainer's many concurrent writes all land, even
 * while others star the package.
 */
import net from 'net';
import { basic, Principals, publishBody, send, startPrincipals } from '../helpers/principals';
import { eventually } from '../helpers/wait';

let p: Principals;
let gateway: string;
const as = (token: string) => ({ authorization: 'Bearer ' + token });
const admin = () => ({ authorization: basic(p.admin.name, p.admin.password) });

beforeAll(async () => {
  p = await startPrincipals('limits');
  gateway = p.registry.url;
});
afterAll(async () => {
  expect(p.registry.output()).not.toMatch(/unhandled rejection|uncaught exception/);
  await p.stop();
});

/**
 * Sends a PUT declaring `bytes` of JSON body, in chunks, over a plain socket, and reports the answer
 * and how much of the body went out before it came (a server that answers early may close the
 * connection while the body is still being sent: the answer is read all the same).
 */
function upload(path: string, bytes: number, headers: Record<string, string> = {}): Promise<{ status: number; body: string; sent: number }> {
  return new Promise((resolve) => {
    const url = new URL(gateway + path);
    const socket = net.connect(Number(url.port), url.hostname);
    let sent = 0;
    let answer = '';
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      socket.destroy();
      const [head, ...rest] = answer.split('\r\n\r\n');
      const body = rest.join('\r\n\r\n');
      resolve({ status: Number((/^HTTP\/1\.1 (\d+)/.exec(head) || [])[1] || 0), body: body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1), sent: sentAtAnswer });
    };
    let sentAtAnswer = -1;
    socket.on('data', (chunk) => {
      if (sentAtAnswer === -1) sentAtAnswer = sent;
      answer += chunk.toString('latin1');
      if (/\r\n\r\n[\s\S]*\}/.test(answer)) setTimeout(finish, 50);
    });
    socket.on('error', () => setTimeout(finish, 200));
    socket.on('close', () => setTimeout(finish, 200));
    const lines = ['PUT ' + url.pathname + ' HTTP/1.1', 'Host: ' + url.host, 'Content-Type: application/json', 'Content-Length: ' + bytes, ...Object.entries(headers).map(([k, v]) => k + ': ' + v)];
    socket.write(lines.join('\r\n') + '\r\n\r\n{"name":"big","x":"');
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const pump = () => {
      while (!done && !socket.destroyed && sent < bytes) {
        sent += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
    };
    pump();
    setTimeout(finish, 20_000);
  });
}

describe('bodies are read only as large as the caller may send', () => {
  it('an anonymous 50 MB body is refused with 413 before it is read, a wrong token with 401 before it is read', async () => {
    const anonymous = await upload('/big', 50 * 1024 * 1024);
    expect(anonymous.status).toBe(413);
    expect(anonymous.sent).toBeGreaterThanOrEqual(0);
    expect(anonymous.sent).toBeLessThan(40 * 1024 * 1024);
    expect(JSON.parse(anonymous.body).error).toMatch(/without credentials.*npm login/);
    const wrong = await upload('/big', 50 * 1024 * 1024, { authorization: 'Bearer not-a-token' });
    expect(wrong.status).toBe(401);
    // Neither was read: the answer came before most of the body was sent.
    expect(wrong.sent).toBeGreaterThanOrEqual(0);
    expect(wrong.sent).toBeLessThan(40 * 1024 * 1024);
  });

  it('a logged-in user still publishes a package larger than the anonymous limit', async () => {
    const tarball = Buffer.alloc(3 * 1024 * 1024, 7);
    const res = await send(gateway, 'PUT', '/big-but-allowed', { headers: as(p.tokens.alice), body: publishBody('big-but-allowed', '1.0.0', tarball) });
    expect(res.status).toBe(201);
  });
});

describe('shared caches never keep a private package', () => {
  beforeAll(async () => {
    const design = await send(p.registry.couchUrl, 'GET', '/' + p.registryDb + '/_design/access', { headers: admin() });
    const rules = [{ package: '@acme/*', read: ['$authenticated'], publish: ['$authenticated'] }, { package: '**', read: ['$all'], publish: ['$authenticated'] }];
    expect((await send(p.registry.couchUrl, 'PUT', '/' + p.registryDb + '/_design/access', { headers: admin(), body: { ...design.body, rules } })).status).toBe(201);
    for (const name of ['@acme/secret', 'open-pkg']) {
      expect((await send(gateway, 'PUT', '/' + name.replace('/', '%2f'), { headers: as(p.tokens.alice), body: publishBody(name, '1.0.0') })).status).toBe(201);
    }
    await new Promise((resolve) => setTimeout(resolve, 2100)); // the gateway reads the rules again
  });

  it('a private tarball and packument are Cache-Control: private; a public tarball stays public and immutable', async () => {
    const secret = await send(gateway, 'GET', '/@acme/secret/-/secret-1.0.0.tgz', { headers: as(p.tokens.mallory) });
    expect(secret.status).toBe(200);
    expect(secret.headers.get('cache-control')).toMatch(/^private\b/);
    // Read twice: the second answer comes from the gateway's own caches.
    const again = await send(gateway, 'GET', '/@acme/secret/-/secret-1.0.0.tgz', { headers: as(p.tokens.mallory) });
    expect(again.headers.get('cache-control')).toMatch(/^private\b/);
    const packument = await send(gateway, 'GET', '/@acme%2fsecret', { headers: as(p.tokens.mallory) });
    expect(packument.status).toBe(200);
    expect(packument.headers.get('cache-control')).toMatch(/^private\b/);
    const version = await send(gateway, 'GET', '/@acme%2fsecret/1.0.0', { headers: as(p.tokens.mallory) });
    expect(version.headers.get('cache-control')).toMatch(/^private\b/);
    const open = await send(gateway, 'GET', '/open-pkg/-/open-pkg-1.0.0.tgz');
    expect(open.status).toBe(200);
    expect(open.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    // Read by a logged-in user, a package anyone may read is still public.
    const openByUser = await send(gateway, 'GET', '/open-pkg/-/open-pkg-1.0.0.tgz', { headers: as(p.tokens.mallory) });
    expect(openByUser.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
  });
});

it('a dependency named like another host is shown as text on the pages, not as a link', async () => {
  const body = publishBody('links-here', '1.0.0');
  Object.assign(body.versions['1.0.0'], { dependencies: { '//evil.example/x': '1.0.0', '@scope/fine': '^1.0.0', 'plain-dep': '1' } });
  expect((await send(gateway, 'PUT', '/links-here', { headers: as(p.tokens.alice), body })).status).toBe(201);
  const page = await send(gateway, 'GET', '/links-here', { headers: { accept: 'text/html' } });
  expect(page.status).toBe(200);
  const hrefs = [...String(page.body).matchAll(/href="([^"]*)"/g)].map((m) => m[1]);
  expect(hrefs.some((href) => href.includes('evil.example'))).toBe(false);
  expect(String(page.body)).toContain('//evil.example/x');
  expect(hrefs).toContain('/@scope/fine');
  expect(hrefs).toContain('/plain-dep');
});

it('a maintainer publishing 30 versions of one package at once, while another user stars it, sees every version land', async () => {
  expect((await send(gateway, 'PUT', '/busy', { headers: as(p.tokens.alice), body: publishBody('busy', '0.0.1') })).status).toBe(201);
  const versions = Array.from({ length: 30 }, (_, i) => '1.' + i + '.0');
  const stars = (async () => {
    for (let i = 0; i < 5; i++) {
      const doc = await send(gateway, 'GET', '/busy?write=true', { headers: as(p.tokens.mallory) });
      await send(gateway, 'PUT', '/busy', { headers: as(p.tokens.mallory), body: { _id: 'busy', _rev: doc.body._rev, users: { [p.mallory]: i % 2 === 0 } } });
    }
  })();
  const published = await Promise.all(versions.map((version) => send(gateway, 'PUT', '/busy', { headers: as(p.tokens.alice), body: publishBody('busy', version) })));
  await stars;
  expect(published.map((res) => res.status)).toEqual(versions.map(() => 201));
  // On a CouchDB cluster a version acknowledged after CouchDB's 202 may first live in a losing
  // conflict revision; the resolver merges it back within a moment. Nothing acknowledged is lost.
  const expected = ['0.0.1', ...versions].sort();
  const served = await eventually(async () => {
    const doc = await send(gateway, 'GET', '/busy');
    const present = Object.keys(doc.body.versions || {}).sort();
    return JSON.stringify(present) === JSON.stringify(expected) ? present : null;
  }, 15_000, 'every acknowledged version served').catch(async () => Object.keys((await send(gateway, 'GET', '/busy')).body.versions || {}).sort());
  expect(served).toEqual(expected);
  for (const version of versions) {
    const tarball = await send(gateway, 'GET', '/busy/-/busy-' + version + '.tgz');
    expect(tarball.status).toBe(200);
  }
});

it('100 versions of one package published at once through one gateway are all acknowledged: they queue instead of beating each other with 409s', async () => {
  expect((await send(gateway, 'PUT', '/crowded', { headers: as(p.tokens.alice), body: publishBody('crowded', '0.0.1') })).status).toBe(201);
  const versions = Array.from({ length: 100 }, (_, i) => '2.' + i + '.0');
  // As npm waits: minutes, not send's 10 s (on a CouchDB cluster 100 writes of one document take longer).
  const publish = (version: string) =>
    fetch(gateway + '/crowded', { method: 'PUT', headers: { ...as(p.tokens.alice), 'content-type': 'application/json' }, body: JSON.stringify(publishBody('crowded', version)), signal: AbortSignal.timeout(120_000) })
      .then(async (res) => (await res.arrayBuffer(), res.status))
      .catch(() => 0);
  const published = await Promise.all(versions.map(publish));
  const statuses: Record<string, number> = {};
  for (const status of published) statuses[status] = (statuses[status] || 0) + 1;
  expect(statuses).toEqual({ 201: 100 });
  const doc = await eventually(async () => {
    const served = await send(gateway, 'GET', '/crowded');
    return Object.keys(served.body.versions || {}).length === 101 ? served.body : null;
  }, 15_000, 'every acknowledged version served');
  expect(Object.keys(doc.versions).sort()).toEqual(['0.0.1', ...versions].sort());
});

it('pages are sent unframeable, with a policy that allows only the registry\'s own scripts, and their session cookie is HttpOnly and SameSite', async () => {
  const page = await fetch(gateway + '/', { headers: { accept: 'text/html' } });
  expect(page.status).toBe(200);
  expect(page.headers.get('x-frame-options')).toBe('DENY');
  expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'/);
  // Scripts only from the registry itself (the pages' copy buttons), none inline, none from elsewhere.
  const directives = String(page.headers.get('content-security-policy')).split(';').map((d) => d.trim());
  expect(directives.filter((d) => d.startsWith('script-src'))).toEqual(["script-src 'self'"]);
  const login = await fetch(gateway + '/-/web/login', {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(gateway).origin, 'sec-fetch-site': 'same-origin' },
    body: new URLSearchParams({ name: p.mallory, password: p.passwords[p.mallory], next: '/' }).toString(),
  });
  expect(login.status).toBe(303);
  const cookie = login.headers.get('set-cookie') || '';
  expect(cookie).toMatch(/HttpOnly/i);
  expect(cookie).toMatch(/SameSite=(Lax|Strict)/i);
  // The pages' cookie is no login for the npm API.
  const whoami = await send(gateway, 'GET', '/-/whoami', { headers: { cookie: cookie.split(';')[0] } });
  expect(whoami.status).toBe(401);
});
