/**
 * Issue 27 attacked by a user with an ordinary account (mallory) and by nobody at all: the admin
 * proxy `/-/couchdb/`, orgs and teams (a developer member, dave, and an outsider), every read surface
 * of a private org package, the downloads API and search qualifiers. Real registry processes, the
 * real npm CLI where a client's path matters. Refused attacks stay here as guards: each asserts the
 * status and that nothing of the private package leaked.
 */
import { createHash } from 'crypto';
import { makePackage, npmClient, NpmClient } from '../helpers/npm';
import { basic, send } from '../helpers/principals';
import { couchGet, startTestRegistry, storedDoc, TestRegistry } from '../helpers/registry';
import { manifest, tarballOf } from '../unit/fixtures';

let registry: TestRegistry;
const tokens: Record<string, string> = {};
const clients: Record<string, NpmClient> = {};
const PASSWORD = (user: string) => 'password-' + user;
/** A word only the private package has (its keyword, description and readme). */
const SECRET_WORD = 'zqxsecretword';
const SECRET = '@acme/secret';

const npmAs = (user: string, args: string[], cwd?: string) => clients[user].npm(args, cwd);
const api = (user: string | null, method: string, path: string, options: { body?: unknown; headers?: Record<string, string> } = {}) =>
  registry.request(method, path, { ...(user ? { token: tokens[user] } : {}), ...options });
const text = (body: unknown) => (typeof body === 'string' ? body : JSON.stringify(body));

beforeAll(async () => {
  registry = await startTestRegistry({ DOWNLOADS_FLUSH_SECONDS: '3600' });
  for (const name of ['alice', 'dave', 'mallory']) {
    tokens[name] = await registry.signup(name, PASSWORD(name));
    clients[name] = npmClient(registry.url, tokens[name]);
  }
  clients.anonymous = npmClient(registry.url);
  expect((await npmAs('alice', ['org', 'set', 'acme', 'alice'])).code).toBe(0);
  expect((await npmAs('alice', ['org', 'set', 'acme', 'dave'])).code).toBe(0);
  // A public package, and a private one of the org that depends on it.
  expect((await npmAs('alice', ['publish'], makePackage(clients.alice.home, { name: 'hostile27-base', version: '1.0.0' }))).code).toBe(0);
  const secret = makePackage(clients.alice.home, {
    name: SECRET, version: '1.0.0', description: 'the ' + SECRET_WORD, keywords: [SECRET_WORD], author: 'alice', dependencies: { 'hostile27-base': '^1.0.0' },
  }, { 'README.md': '# ' + SECRET_WORD + '\n' });
  const published = await npmAs('alice', ['publish', '--access', 'restricted'], secret);
  expect([published.code, published.stderr]).toEqual([0, expect.any(String)]);
  expect((await npmAs('alice', ['access', 'set', 'status=private', SECRET])).code).toBe(0);
  // Downloads by the owner, so that there are counts to leak.
  expect((await api('alice', 'GET', '/@acme/secret/-/secret-1.0.0.tgz')).status).toBe(200);
}, 180_000);
afterAll(() => registry?.stop());

describe('a private org package, read by an outsider and by nobody', () => {
  const reads: [string, string, Record<string, string>?][] = [
    ['packument', '/@acme%2fsecret'],
    ['packument, %2F', '/@acme%2Fsecret'],
    ['packument, %40', '/%40acme%2fsecret'],
    ['abbreviated packument', '/@acme%2fsecret', { accept: 'application/vnd.npm.install-v1+json' }],
    ['version manifest', '/@acme/secret/1.0.0'],
    ['dist-tag manifest', '/@acme/secret/latest'],
    ['tarball', '/@acme/secret/-/secret-1.0.0.tgz'],
    ['dist-tags', '/-/package/@acme%2fsecret/dist-tags'],
    ['collaborators', '/-/package/@acme%2fsecret/collaborators'],
    ['visibility', '/-/package/@acme%2fsecret/visibility'],
    ['staging', '/-/package/@acme%2fsecret/staging'],
    ['downloads point', '/-/downloads/point/last-month/@acme/secret'],
    ['downloads point, encoded', '/-/downloads/point/last-month/@acme%2fsecret'],
    ['downloads range', '/-/downloads/range/last-year/@acme/secret'],
    ['downloads versions', '/-/downloads/versions/last-week/@acme/secret'],
    ['dependents', '/-/v1/dependents/@acme/secret'],
    ['attestations', '/-/npm/v1/attestations/@acme%2fsecret@1.0.0'],
    ['org packages', '/-/org/acme/package'],
    ['org members', '/-/org/acme/user'],
    ['org teams', '/-/org/acme/team'],
    ['team packages', '/-/team/acme/developers/package'],
  ];

  it.each(reads)('%s: refused, nothing of it in the answer', async (_what, path, headers = {}) => {
    for (const who of ['mallory', null]) {
      const answer = await api(who, 'GET', path, { headers });
      expect([path, who, answer.status >= 400 && answer.status < 500]).toEqual([path, who, true]);
      expect(text(answer.body)).not.toContain(SECRET_WORD);
      expect(text(answer.body)).not.toContain('1.0.0');
      if (answer.headers.get('content-type')?.includes('json')) expect(typeof answer.body.error).toBe('string');
    }
    // The owner is not refused (the attack is not refused for being malformed); no attestations were published.
    expect((await api('alice', 'GET', path, { headers })).status).toBe(path.includes('attestations') ? 404 : 200);
  });

  it('the lists that name packages leave it out: search by word, keyword, maintainer, author and scope, dependents of what it depends on, the feed, views, user packages', async () => {
    for (const who of ['mallory', null]) {
      for (const query of [SECRET_WORD, 'keywords:' + SECRET_WORD, 'maintainer:alice', 'author:alice', 'scope:acme', 'secret', 'zqxsecretwrd']) {
        const found = await api(who, 'GET', '/-/v1/search?text=' + encodeURIComponent(query));
        expect([query, found.status]).toEqual([query, 200]);
        expect([query, text(found.body).includes(SECRET)]).toEqual([query, false]);
        // alice's public package is all that maintainer: and author: find.
        expect([query, found.body.total]).toEqual([query, query.startsWith('maintainer:') || query.startsWith('author:') ? 1 : 0]);
      }
      const dependents = await api(who, 'GET', '/-/v1/dependents/hostile27-base');
      expect([dependents.status, dependents.body.total, dependents.body.dependents]).toEqual([200, 0, []]);
      const feed = await api(who, 'GET', '/-/replicate/_changes');
      if (feed.status === 200) expect(text(feed.body)).not.toContain(SECRET);
      const view = await api(who, 'GET', '/-/_view/byMaintainer?key=' + encodeURIComponent('"alice"'));
      if (view.status === 200) expect(text(view.body)).not.toContain(SECRET);
      const packages = await api(who, 'GET', '/-/user/alice/package');
      if (packages.status === 200) expect(text(packages.body)).not.toContain(SECRET);
    }
    // The owner finds it by each.
    expect((await api('alice', 'GET', '/-/v1/search?text=keywords:' + SECRET_WORD)).body.total).toBe(1);
    expect((await api('alice', 'GET', '/-/v1/dependents/hostile27-base')).body.total).toBe(1);
  });

  it('the pages: the package, its version, the base package\'s Dependents, search and keyword search show nothing of it', async () => {
    const session = await webSession('mallory');
    for (const cookie of [session, '']) {
      for (const path of ['/@acme/secret', '/@acme/secret/v/1.0.0', '/hostile27-base', '/-/web/search?q=' + SECRET_WORD, '/-/web/search?q=keywords%3A' + SECRET_WORD, '/-/web/search?q=%40acme']) {
        const page = await registry.request('GET', path, { headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) } });
        expect([path, page.status < 500]).toEqual([path, true]);
        // A page repeats the name or query asked; none shows the package's description or another's name for it.
        expect([path, text(page.body).includes(SECRET) && !path.startsWith('/@acme'), text(page.body).includes('the ' + SECRET_WORD)]).toEqual([path, false, false]);
        if (!path.startsWith('/-/web/search')) expect(text(page.body)).not.toContain(SECRET_WORD);
      }
    }
  });

  it('a member\'s answers are not for shared caches, and a non-member\'s If-None-Match with the member\'s ETag gets no 304', async () => {
    for (const path of ['/@acme%2fsecret', '/@acme/secret/1.0.0', '/@acme/secret/-/secret-1.0.0.tgz']) {
      const owner = await api('alice', 'GET', path);
      expect(owner.status).toBe(200);
      expect([path, owner.headers.get('cache-control') || '']).toEqual([path, expect.not.stringMatching(/public|s-maxage/)]);
      const etag = owner.headers.get('etag');
      if (!etag) continue;
      for (const who of ['mallory', null]) {
        const answer = await api(who, 'GET', path, { headers: { 'if-none-match': etag } });
        expect([path, who, answer.status]).toEqual([path, who, who ? 404 : 401]);
      }
    }
  });

  it('straight on the CouchDB port with the outsider\'s own password, or with none: neither the package, the orgs in _design/access, nor the changes', async () => {
    const couch = new URL(registry.adminCouchUrl).origin;
    for (const headers of [{ authorization: basic('mallory', PASSWORD('mallory')) }, {}] as Record<string, string>[]) {
      for (const path of ['/' + registry.registryDb + '/' + encodeURIComponent(SECRET), '/' + registry.registryDb + '/_design/access', '/' + registry.registryDb + '/_changes?include_docs=true',
        '/' + registry.registryDb + '/_all_docs?include_docs=true', '/' + registry.registryDb + '-state/_all_docs', '/_users/org.couchdb.user:alice']) {
        const answer = await send(couch, 'GET', path, { headers: { accept: 'application/json', ...headers } });
        expect([path, headers.authorization ? 'mallory' : 'nobody', answer.status]).toEqual([path, headers.authorization ? 'mallory' : 'nobody', expect.any(Number)]);
        expect([path, answer.status >= 400 && answer.status < 500]).toEqual([path, true]);
        expect(text(answer.body)).not.toContain(SECRET_WORD);
        expect(text(answer.body)).not.toContain('"members"');
      }
    }
  });

  it('refused tarball requests are not counted as downloads of the private package', async () => {
    const counted = async () => (await api('alice', 'GET', '/-/downloads/versions/last-day/@acme/secret')).body.downloads['1.0.0'] || 0;
    const before = await counted();
    for (const who of ['mallory', null, 'mallory']) expect((await api(who, 'GET', '/@acme/secret/-/secret-1.0.0.tgz')).status).toBeGreaterThanOrEqual(401);
    expect(await counted()).toBe(before);
  });

  it('downloads in bulk: a private name among public ones is null or refused, never counted', async () => {
    const bulk = await api('mallory', 'GET', '/-/downloads/point/last-month/hostile27-base,@acme/secret');
    expect(bulk.status).toBe(400);
    expect(text(bulk.body)).not.toContain(SECRET_WORD);
    const encoded = await api('mallory', 'GET', '/-/downloads/point/last-month/hostile27-base,%40acme%2fsecret');
    expect(encoded.status).toBe(400);
  });
});

describe('writes into the org\'s scope by an outsider and by a developer', () => {
  it('npm: dist-tag, deprecate, owner add, unpublish, access set status and grant by an outsider; status, grant and org roles by a developer (not a maintainer): refused, nothing changed', async () => {
    const before = (await storedDoc(registry, SECRET)).body;
    for (const [who, args] of [
      ['mallory', ['dist-tag', 'add', SECRET + '@1.0.0', 'evil']],
      ['mallory', ['deprecate', SECRET, 'owned']],
      ['mallory', ['owner', 'add', 'mallory', SECRET]],
      ['mallory', ['unpublish', SECRET + '@1.0.0']],
      ['mallory', ['access', 'set', 'status=public', SECRET]],
      ['mallory', ['access', 'grant', 'read-write', 'acme:developers', SECRET]],
      ['dave', ['access', 'set', 'status=public', SECRET]],
      ['dave', ['access', 'grant', 'read-write', 'acme:developers', SECRET]],
      ['dave', ['org', 'set', 'acme', 'dave', 'owner']],
      ['dave', ['org', 'set', 'acme', 'mallory', 'developer']],
      ['dave', ['org', 'rm', 'acme', 'alice']],
    ] as [string, string[]][]) {
      const result = await npmAs(who, [...args, '--force']);
      expect([who, args.join(' '), result.code]).toEqual([who, args.join(' '), expect.not.stringMatching(/^0$/)]);
    }
    const after = (await storedDoc(registry, SECRET)).body;
    expect(after._rev).toBe(before._rev);
    const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
    expect(design.body.orgs.acme.members).toEqual({ alice: 'owner', dave: 'developer' });
    expect(design.body.orgs.acme.packages[SECRET]).toEqual({ status: 'private', teams: { developers: 'read-write' } });
  }, 180_000);
});

describe('writes by an outsider to a public package of the org, which they can read', () => {
  it('npm dist-tag, deprecate, owner add, unpublish and publish of a new version are refused; the package is unchanged', async () => {
    expect((await npmAs('alice', ['publish'], makePackage(clients.alice.home, { name: '@acme/open', version: '1.0.0' }))).code).toBe(0);
    expect((await npmAs('mallory', ['view', '@acme/open', 'version'])).stdout.trim()).toBe('1.0.0');
    const before = (await storedDoc(registry, '@acme/open')).body;
    for (const args of [
      ['dist-tag', 'add', '@acme/open@1.0.0', 'evil'], ['dist-tag', 'rm', '@acme/open', 'latest'], ['deprecate', '@acme/open', 'owned'], ['owner', 'add', 'mallory', '@acme/open'],
      ['owner', 'rm', 'alice', '@acme/open'], ['unpublish', '@acme/open@1.0.0', '--force'], ['unpublish', '@acme/open', '--force'], ['access', 'set', 'status=private', '@acme/open'],
    ]) {
      const result = await npmAs('mallory', args);
      expect([args.join(' '), result.code]).toEqual([args.join(' '), expect.not.stringMatching(/^0$/)]);
      expect([args.join(' '), result.stderr]).toEqual([args.join(' '), expect.stringMatching(/E40[13]|EOWNERRM|not a member|not a maintainer|may not/)]);
    }
    const published = await npmAs('mallory', ['publish'], makePackage(clients.mallory.home, { name: '@acme/open', version: '1.0.1' }));
    expect(published.stderr).toContain('not a member of the org @acme');
    const after = (await storedDoc(registry, '@acme/open')).body;
    expect([after._rev, after['dist-tags'], after.maintainers]).toEqual([before._rev, before['dist-tags'], before.maintainers]);
  }, 120_000);

  it('its collaborators name the org\'s members to members only: an outsider sees the maintainers, not the roster that npm org ls keeps from them', async () => {
    expect((await api('mallory', 'GET', '/-/org/acme/user')).status).toBe(403);
    const outsider = await npmAs('mallory', ['access', 'list', 'collaborators', '@acme/open', '--json']);
    expect(JSON.parse(outsider.stdout)).toEqual({ alice: 'read-write' });
    const member = await npmAs('dave', ['access', 'list', 'collaborators', '@acme/open', '--json']);
    expect(JSON.parse(member.stdout)).toEqual({ alice: 'read-write', dave: 'read-write' });
    // Nor does what a user's teams grant them (npm access list packages <user>) tell an outsider that they are a member.
    expect((await api('mallory', 'GET', '/-/user/dave/package')).body).toEqual({});
    expect((await api('dave', 'GET', '/-/user/dave/package')).body).toEqual({ '@acme/open': 'read-write', [SECRET]: 'read-write' });
    expect((await api('alice', 'GET', '/-/user/dave/package')).body).toEqual({ '@acme/open': 'read-write', [SECRET]: 'read-write' });
  });
});

describe('orgs and teams named like what objects inherit', () => {
  it('an outsider claims no such org nor gets into acme through one; names with underscores are refused with a 400', async () => {
    for (const name of ['__proto__', '_design', 'prototype%2f..', '..']) {
      const answer = await api('mallory', 'PUT', '/-/org/' + name + '/user', { body: { user: 'mallory' } });
      expect([name, answer.status >= 400 && answer.status < 500]).toEqual([name, true]);
    }
    for (const name of ['tostring', 'valueof', 'hasownproperty', 'isprototypeof']) {
      const made = await api('mallory', 'PUT', '/-/org/' + name + '/user', { body: { user: 'mallory' } });
      expect([name, made.status]).toEqual([name, 200]);
      // Its own org, nothing more: mallory is still no member of acme, and acme's package still refuses her.
      const team = await api('mallory', 'PUT', '/-/team/' + name + '/__proto__/user', { body: { user: 'mallory' } });
      expect([name, team.status]).toEqual([name, 400]);
      const proto = await api('mallory', 'PUT', '/-/team/' + name + '/constructor/package', { body: { package: SECRET, permissions: 'read-write' } });
      expect([name, proto.status >= 400 && proto.status < 500]).toEqual([name, true]);
    }
    expect((await api('mallory', 'GET', '/@acme%2fsecret')).status).toBe(404);
    expect((await api('mallory', 'GET', '/-/org/acme/user')).status).toBe(403);
    const design = await couchGet(registry, '/' + registry.registryDb + '/_design/access');
    expect(Object.keys(design.body.orgs).sort()).toEqual(['acme', 'hasownproperty', 'isprototypeof', 'tostring', 'valueof']);
    expect(design.body.orgs.acme.members).toEqual({ alice: 'owner', dave: 'developer' });
  });
});

describe('publishing into the org\'s scope as an outsider, by other paths than npm publish', () => {
  it('npm stage publish of a new and of an existing package of the scope is refused; nothing is staged or published', async () => {
    for (const [name, version] of [['@acme/staged-evil', '1.0.0'], [SECRET, '6.6.6']]) {
      const staged = await npmAs('mallory', ['stage', 'publish'], makePackage(clients.mallory.home, { name, version }));
      expect([name, staged.code]).toEqual([name, expect.not.stringMatching(/^0$/)]);
      expect(staged.stdout + staged.stderr).not.toMatch(/staged with id/);
    }
    const listed = await npmAs('alice', ['stage', 'list', '--json']);
    expect(listed.stdout).not.toContain('staged-evil');
    expect(listed.stdout).not.toContain('6.6.6');
    expect((await storedDoc(registry, '@acme/staged-evil')).status).toBe(404);
  }, 60_000);

  it('a version its owner staged of the private package is not listed, viewed or downloaded by an outsider', async () => {
    const staged = await npmAs('alice', ['stage', 'publish'], makePackage(clients.alice.home, { name: SECRET, version: '1.1.0', description: 'staged ' + SECRET_WORD }));
    expect([staged.code, staged.code ? staged.stderr : '']).toEqual([0, '']);
    const id = /staged with id ([0-9a-f-]{36})/.exec(staged.stdout + staged.stderr)![1];
    for (const args of [['stage', 'list', '--json'], ['stage', 'list', SECRET, '--json'], ['stage', 'view', id], ['stage', 'download', id], ['stage', 'approve', id], ['stage', 'reject', id]]) {
      const result = await npmAs('mallory', args, clients.mallory.home);
      expect([args.join(' '), (result.stdout + result.stderr).includes(SECRET_WORD)]).toEqual([args.join(' '), false]);
      if (args[1] !== 'list') expect([args.join(' '), result.code]).toEqual([args.join(' '), expect.not.stringMatching(/^0$/)]);
    }
    // Still staged, for its maintainers to decide.
    expect((await npmAs('alice', ['stage', 'view', id])).code).toBe(0);
    expect((await npmAs('alice', ['stage', 'reject', id])).code).toBe(0);
  }, 60_000);

  it('a PUT on the gateway of a new package of the scope, and a dist-tag or deprecation through the API, are refused', async () => {
    const tarball = tarballOf('@acme/raw', '1.0.0');
    const put = await api('mallory', 'PUT', '/@acme%2fraw', { body: {
      _id: '@acme/raw', name: '@acme/raw', 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': manifest('@acme/raw', '1.0.0') },
      _attachments: { 'raw-1.0.0.tgz': { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
    } });
    expect([put.status, put.body.error]).toEqual([403, expect.stringContaining('not a member of the org @acme')]);
    const tag = await api('mallory', 'PUT', '/-/package/@acme%2fsecret/dist-tags/evil', { body: '1.0.0' });
    expect([401, 403, 404]).toContain(tag.status);
    const anonymous = await api(null, 'PUT', '/-/package/@acme%2fsecret/dist-tags/evil', { body: '1.0.0' });
    expect(anonymous.status).toBe(401);
    expect((await storedDoc(registry, '@acme/raw')).status).toBe(404);
    expect((await storedDoc(registry, SECRET)).body['dist-tags']).toEqual({ latest: '1.0.0' });
  });
});

describe('the pages, attacked through a published package and from other sites', () => {
  const EVIL = '"><img src=x onerror=alert(1)><script>alert(2)</script>';

  it('package.json fields and a readme code block\'s language that inject are shown as text; no script, handler or javascript: link reaches the page', async () => {
    const name = 'hostile27-fields';
    const tarball = tarballOf(name, '1.0.0');
    const version = {
      ...manifest(name, '1.0.0'),
      description: EVIL, keywords: [EVIL, 'ok" onclick="alert(3)'], author: { name: EVIL, email: 'a@b.c' + EVIL, url: 'javascript:alert(4)' },
      repository: { type: 'git', url: 'git+javascript:alert(5)//x.git' }, homepage: ' javascript:alert(6)', bugs: { url: 'JAVASCRIPT:alert(7)', email: EVIL },
      license: EVIL, dependencies: { ['x' + EVIL]: EVIL, '@scope/y': '^1 <svg onload=alert(8)>' }, funding: 'javascript:alert(9)',
      readme: '```"><script>alert(10)</script>\ncode\n```\n\n```js onload=alert(11)\nlet a = "</code><script>alert(12)</script>";\n```\n\n```javascript" onmouseover="alert(13)\nx\n```\n',
    };
    const put = await api('alice', 'PUT', '/' + name, { body: {
      _id: name, name, 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': version }, readme: version.readme,
      _attachments: { [name + '-1.0.0.tgz']: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
    } });
    expect(put.status).toBeLessThan(300);
    const page = await fetch(registry.localUrl + '/' + name, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    const html = await page.text();
    // Every tag of the page: the registry's own scripts only, no handler attribute, no javascript: address.
    const tags = html.match(/<[a-zA-Z][^>]*>/g) || [];
    expect(tags.filter((tag) => /^<script/i.test(tag) && !/\ssrc="\/-\/static\//.test(tag))).toEqual([]);
    expect(tags.filter((tag) => /^<(img|svg|iframe|object|embed)\b/i.test(tag) || (/^<form/i.test(tag) && !tag.includes('action="/-/web/search"')))).toEqual([]);
    expect(tags.filter((tag) => /\son[a-z]+\s*=/i.test(tag) || /javascript:/i.test(tag))).toEqual([]);
    expect(html).toContain('&lt;script&gt;alert(2)&lt;/script&gt;');
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
  });

  it('the account page and its forms cannot be framed; a form posted from another port neither revokes a token nor changes a password; another user\'s token key is not found', async () => {
    const cookie = await webSession('mallory');
    const account = await fetch(registry.localUrl + '/-/web/account', { headers: { cookie, accept: 'text/html' } });
    expect(account.status).toBe(200);
    const framing = (account.headers.get('x-frame-options') || '') + ' ' + (account.headers.get('content-security-policy') || '');
    expect(framing).toMatch(/DENY|frame-ancestors 'none'/i);
    const other = 'http://127.0.0.1:1';
    for (const [path, form] of [['/-/web/account/password', { current: PASSWORD('mallory'), password: 'csrf-new-password', confirm: 'csrf-new-password' }], ['/-/web/account/tokens/revoke', { token: 'all' }]] as [string, Record<string, string>][]) {
      for (const headers of [{ origin: other }, { 'sec-fetch-site': 'same-site' }, { origin: 'null' }] as Record<string, string>[]) {
        const answer = await fetch(registry.localUrl + path, { method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString() });
        expect([path, headers, answer.status]).toEqual([path, headers, 403]);
      }
    }
    expect((await api('mallory', 'GET', '/-/whoami')).body.username).toBe('mallory');
    // From this registry's own page, another user's token key (the SHA-256 the pages list) is not mallory's to revoke.
    const aliceKey = createHash('sha256').update(tokens.alice).digest('hex');
    const revoke = await fetch(registry.localUrl + '/-/web/account/tokens/revoke', {
      method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', origin: new URL(registry.localUrl).origin },
      body: new URLSearchParams({ key: aliceKey }).toString(),
    });
    expect(revoke.status).toBe(404);
    expect((await api('alice', 'GET', '/-/whoami')).body.username).toBe('alice');
    const login = await api(null, 'PUT', '/-/user/org.couchdb.user:mallory', { body: { _id: 'org.couchdb.user:mallory', name: 'mallory', password: PASSWORD('mallory'), type: 'user', roles: [] } });
    expect(login.status).toBe(201);
  });
});

describe('the downloads API and search qualifiers, with odd and costly input', () => {
  it('odd names and periods: a 4xx with a JSON error or null, never a 5xx, nothing read outside the counts', async () => {
    for (const path of [
      '/-/downloads/point/last-day/__proto__', '/-/downloads/point/last-day/constructor', '/-/downloads/range/last-day/hasOwnProperty',
      '/-/downloads/point/last-day/..%2f..%2f_users', '/-/downloads/point/last-day/%2e%2e', '/-/downloads/point/last-day/a%00b', '/-/downloads/point/last-day/%E0%A4%A',
      '/-/downloads/point/0001-01-01:9999-12-31/hostile27-base', '/-/downloads/range/1970-01-01:2026-12-31/hostile27-base', '/-/downloads/point/2026-02-30/hostile27-base',
      '/-/downloads/point/last-day:last-week/hostile27-base', '/-/downloads/point/' + 'x'.repeat(5000) + '/hostile27-base',
      '/-/downloads/point/last-day/' + Array.from({ length: 129 }, (_, i) => 'n' + i).join(','),
      '/-/downloads/versions/last-day/hostile27-base,constructor', '/-/downloads/point/last-day/,,,', '/-/downloads/point/last-day/__proto__,constructor',
    ]) {
      const answer = await api('mallory', 'GET', path);
      // A bulk list answers 200 with nulls; anything else is a 4xx.
      expect([path.slice(0, 80), answer.status]).toEqual([path.slice(0, 80), answer.status === 200 && path.includes(',') ? 200 : expect.any(Number)]);
      expect(answer.status).toBeLessThan(500);
      if (answer.status >= 400) expect(typeof answer.body.error).toBe('string');
      expect(text(answer.body)).not.toContain('org.couchdb.user');
    }
    const prototypes = await api('mallory', 'GET', '/-/downloads/point/last-day/__proto__,constructor');
    // Every name asked is a key of the answer (__proto__ was dropped: it set the answer's prototype).
    expect([prototypes.status, text(prototypes.body)]).toEqual([200, '{"__proto__":null,"constructor":null}']);
  });

  it('128 names for a year in one request is answered in a few seconds at most', async () => {
    const names = ['hostile27-base', ...Array.from({ length: 127 }, (_, i) => 'no-such-' + i)].join(',');
    const started = Date.now();
    const answer = await api(null, 'GET', '/-/downloads/range/last-year/' + names);
    expect(answer.status).toBe(200);
    expect(Object.keys(answer.body)).toHaveLength(128);
    expect(answer.body['hostile27-base'].downloads).toHaveLength(365);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a keywords: qualifier naming one keyword thousands of times is answered as the plain one, at once (it used to read the keyword\'s packages once per repeat)', async () => {
    for (const crafted of ['keywords:' + 'hostile+'.repeat(1500), 'keywords:' + 'hostile,'.repeat(1500), 'keywords:' + '-hostile,'.repeat(1300) + ' base']) {
      const started = Date.now();
      const answer = await api(null, 'GET', '/-/v1/search?text=' + encodeURIComponent(crafted));
      expect([answer.status, Date.now() - started < 2000]).toEqual([200, true]);
      expect(text(answer.body)).not.toContain(SECRET);
    }
  });
});

describe('the admin proxy /-/couchdb/ attacked', () => {
  const admin = () => {
    const url = new URL(registry.adminCouchUrl);
    return { name: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
  };
  const asAdmin = () => ({ authorization: basic(admin().name, admin().password) });
  const proxy = (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) => send(registry.localUrl, method, '/-/couchdb' + path, { headers: { accept: 'application/json', ...headers }, body });
  const rules = async () => (await couchGet(registry, '/' + registry.registryDb + '/_design/access')).body;

  it('a plain user\'s pages session, token or password, and nobody, reach nothing: every method, WebDAV ones too', async () => {
    const cookie = await webSession('mallory');
    for (const [who, headers, status] of [
      ['session', { cookie }, 403], ['password', { authorization: basic('mallory', PASSWORD('mallory')) }, 403], ['token', { authorization: 'Bearer ' + tokens.mallory }, 401],
      ['session and a forged admin cookie', { cookie: cookie + '; AuthSession=' + Buffer.from(admin().name + ':0:x').toString('base64') }, 403], ['nobody', {}, 401],
    ] as [string, Record<string, string>, number][]) {
      for (const [method, path, extra] of [
        ['GET', '/_all_dbs', {}], ['GET', '/_users/_all_docs', {}], ['GET', '/' + registry.registryDb + '/' + encodeURIComponent(SECRET), {}],
        ['COPY', '/' + registry.registryDb + '/' + encodeURIComponent(SECRET), { destination: '@acme%2Fstolen' }], ['MOVE', '/' + registry.registryDb + '/x', {}],
        ['PROPFIND', '/' + registry.registryDb, {}], ['OPTIONS', '/_all_dbs', {}], ['POST', '/' + registry.registryDb + '/_bulk_docs', {}],
        ['PUT', '/' + registry.registryDb + '/_design/access', {}], ['GET', '/_node/_local/_config', {}],
      ] as [string, string, Record<string, string>][]) {
        const answer = await proxy(method, path, { ...headers, ...extra }, method === 'POST' || method === 'PUT' ? { docs: [] } : undefined);
        expect([who, method, path, answer.status]).toEqual([who, method, path, status]);
        expect(text(answer.body)).not.toContain(SECRET_WORD);
        expect(text(answer.body)).not.toContain('org.couchdb.user');
      }
    }
    expect((await storedDoc(registry, '@acme/stolen')).status).toBe(404);
  });

  it('a page of another origin on the same site (another port) cannot use an admin\'s session, by form or fetch', async () => {
    const cookie = await webSession(admin().name, admin().password);
    expect((await proxy('GET', '/_all_dbs', { cookie })).status).toBe(200);
    const other = 'http://127.0.0.1:1';
    for (const headers of [
      { origin: other }, { 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'cors' }, { 'sec-fetch-site': 'same-site', 'sec-fetch-mode': 'no-cors', origin: other },
      { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', origin: other }, { referer: other + '/', origin: 'null' },
    ] as Record<string, string>[]) {
      const answer = await proxy('PUT', '/hostile27-csrf-db', { cookie, 'content-type': 'text/plain', ...headers });
      expect([headers, answer.status]).toEqual([headers, 403]);
    }
    expect((await proxy('GET', '/hostile27-csrf-db', asAdmin())).status).toBe(404);
  });

  it('an admin cannot break _design/access by another path than a PUT of it: _bulk_docs, POST to the database, an empty or trailing segment', async () => {
    const before = await rules();
    expect((await proxy('PUT', '/' + registry.registryDb + '/hostile27-source', asAdmin(), { rules: [] })).status).toBe(201);
    const broken = { ...before, rules: [{ package: '**', read: 'everyone' }] };
    const brokenOrgs = { ...before, orgs: { acme: { members: { alice: 'king' }, teams: {} } } };
    for (const [how, method, path, body] of [
      ['_bulk_docs, broken rules', 'POST', '/' + registry.registryDb + '/_bulk_docs', { docs: [broken] }],
      ['_bulk_docs, broken orgs', 'POST', '/' + registry.registryDb + '/_bulk_docs', { docs: [{ _id: 'harmless' }, brokenOrgs] }],
      ['_bulk_docs, deleted', 'POST', '/' + registry.registryDb + '//_bulk_docs', { docs: [{ _id: '_design/access', _rev: before._rev, _deleted: true }] }],
      ['POST to the database', 'POST', '/' + registry.registryDb, broken],
      ['POST, trailing slash', 'POST', '/' + registry.registryDb + '/', brokenOrgs],
      ['PUT, trailing slash', 'PUT', '/' + registry.registryDb + '/_design/access/', broken],
      ['PUT, empty segment', 'PUT', '/' + registry.registryDb + '//_design/access', broken],
      ['PUT, encoded', 'PUT', '/' + registry.registryDb + '/_design%2Faccess', brokenOrgs],
      ['DELETE, trailing slash', 'DELETE', '/' + registry.registryDb + '/_design/access/?rev=' + before._rev, undefined],
      ['PUT, leading empty segment', 'PUT', '//' + registry.registryDb + '/_design/access', broken],
      ['COPY over it, leading empty segment', 'COPY', '//' + registry.registryDb + '/hostile27-source', undefined],
    ] as [string, string, string, unknown][]) {
      const extra: Record<string, string> = method === 'COPY' ? { destination: '_design/access?rev=' + before._rev } : {};
      const answer = await proxy(method, path, { ...asAdmin(), 'content-type': 'application/json', ...extra }, body);
      expect([how, answer.status, answer.body.error]).toEqual([how, 403, 'forbidden']);
    }
    for (const body of ['null', '0', '[]', '"x"']) {
      const answer = await send(registry.localUrl, 'PUT', '/-/couchdb/' + registry.registryDb + '/_design/access', { headers: { ...asAdmin(), 'content-type': 'application/json' }, raw: body });
      expect([body, answer.status]).toEqual([body, 400]);
      const bulk = await send(registry.localUrl, 'POST', '/-/couchdb/' + registry.registryDb + '/_bulk_docs', { headers: { ...asAdmin(), 'content-type': 'application/json' }, raw: body });
      expect([body, bulk.status]).toEqual([body, 400]);
    }
    const after = await rules();
    expect([after._rev, after.rules, after.orgs]).toEqual([before._rev, before.rules, before.orgs]);
    // Valid writes still go through: a bulk of other documents, and one that keeps the rules.
    const fine = await proxy('POST', '/' + registry.registryDb + '-state/_bulk_docs', asAdmin(), { docs: [{ _id: 'hostile27-a' }] });
    expect(fine.status).toBe(201);
    const kept = await proxy('POST', '/' + registry.registryDb + '/_bulk_docs', asAdmin(), { docs: [{ _id: 'hostile27-note', x: 1 }, before] });
    expect(kept.status).toBe(201);
    expect((await rules()).rules).toEqual(before.rules);
    // Sent in chunks (no Content-Length), as a streaming client sends it: read, checked and sent on whole.
    const chunked = await fetch(registry.localUrl + '/-/couchdb/' + registry.registryDb + '/_bulk_docs', {
      method: 'POST', headers: { ...asAdmin(), 'content-type': 'application/json' }, duplex: 'half',
      body: new ReadableStream({ start(controller) {
        controller.enqueue(new TextEncoder().encode('{"docs":[{"_id":"hostile27-chunked"}'));
        controller.enqueue(new TextEncoder().encode(',' + JSON.stringify(broken) + ']}'));
        controller.close();
      } }),
    } as RequestInit);
    expect(chunked.status).toBe(403);
    const chunkedFine = await fetch(registry.localUrl + '/-/couchdb/' + registry.registryDb + '/_bulk_docs', {
      method: 'POST', headers: { ...asAdmin(), 'content-type': 'application/json' }, duplex: 'half',
      body: new ReadableStream({ start(controller) {
        controller.enqueue(new TextEncoder().encode('{"docs":[{"_id":"hostile27-chunked"}'));
        controller.enqueue(new TextEncoder().encode(']}'));
        controller.close();
      } }),
    } as RequestInit);
    expect(chunkedFine.status).toBe(201);
    // A checked PUT of _design/access sent in chunks goes through too (Fauxton sends it with a length; scripts may not).
    const current = await rules();
    const put = await fetch(registry.localUrl + '/-/couchdb/' + registry.registryDb + '/_design/access', {
      method: 'PUT', headers: { ...asAdmin(), 'content-type': 'application/json' }, duplex: 'half',
      body: new ReadableStream({ start(controller) {
        controller.enqueue(new TextEncoder().encode(JSON.stringify(current)));
        controller.close();
      } }),
    } as RequestInit);
    expect(put.status).toBe(201);
    const last = await rules();
    expect([last.rules, last.orgs]).toEqual([before.rules, before.orgs]);
  });
});

/** A pages' session cookie of `user` (logs in on /-/web/login). */
async function webSession(user: string, password = PASSWORD(user)): Promise<string> {
  const login = await fetch(registry.localUrl + '/-/web/login', {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(registry.localUrl).origin },
    body: new URLSearchParams({ name: user, password }).toString(),
  });
  const cookie = login.headers.get('set-cookie');
  if (!cookie) throw new Error('no session for ' + user + ': ' + login.status);
  return cookie.split(';')[0];
}

