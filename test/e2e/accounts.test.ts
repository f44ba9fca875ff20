/**
 * Tokens, profile, throttling and search, through the npm CLI where it has a command, over HTTP where
 * it has none.
 */
import { makePackage, npmClient, NpmClient } from '../helpers/npm';
import { anotherGateway, startTestRegistry, TestRegistry } from '../helpers/registry';

let registry: TestRegistry;
let alice: NpmClient;

beforeAll(async () => {
  registry = await startTestRegistry();
  alice = npmClient(registry.url, await registry.signup('alice', 'alice-password'));
});
afterAll(() => registry.stop());

describe('tokens', () => {
  it('npm token create, list and revoke; a revoked token is refused at once', async () => {
    const created = await alice.npm(['token', 'create', '--password', 'alice-password', '--name', 'ci']);
    expect(created.code).toBe(0);
    const token = /Created token (\S+)/.exec(created.stdout)?.[1] as string;
    expect(token).toMatch(/^cnr_/);
    expect((await registry.request('GET', '/-/whoami', { token })).body).toEqual({ username: 'alice' });

    const list = await alice.npm(['token', 'list', '--json']);
    const tokens = JSON.parse(list.stdout) as { key: string; token: string; readonly: boolean }[];
    expect(tokens.length).toBe(2);
    const entry = tokens.find((t) => token.startsWith(t.token)) as { key: string };
    expect(entry).toBeDefined();
    expect(JSON.stringify(tokens)).not.toContain(token);

    expect((await alice.npm(['token', 'revoke', entry.key.slice(0, 12)])).code).toBe(0);
    const after = await registry.request('GET', '/-/whoami', { token });
    expect(after.status).toBe(401);
    expect(after.body.error).toContain('revoked');
  });

  it('npm token list names every token, and npm token revoke takes the token itself as well as its id', async () => {
    const created = await alice.npm(['token', 'create', '--password', 'alice-password']);
    const token = /Created token (\S+)/.exec(created.stdout)?.[1] as string;
    expect(token).toMatch(/^cnr_/);
    const list = await alice.npm(['token', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toContain('undefined');
    expect(list.stdout).toContain('name npm login');
    expect(list.stdout).toContain('name npm token create');

    const revoke = await alice.npm(['token', 'revoke', token]);
    expect(revoke.stderr).toBe('');
    expect(revoke.stdout).toContain('Removed 1 token');
    expect((await registry.request('GET', '/-/whoami', { token })).status).toBe(401);
  });

  it('a token revoked through one gateway is refused at once by another in front of the same CouchDB', async () => {
    const second = await anotherGateway(registry, 'second');
    try {
      const created = await registry.request('POST', '/-/npm/v1/tokens', { headers: { authorization: 'Basic ' + Buffer.from('alice:alice-password').toString('base64') }, body: { password: 'alice-password' } });
      const whoami = () => fetch(second.localUrl + '/-/whoami', { headers: { authorization: 'Bearer ' + created.body.token } });
      expect((await whoami()).status).toBe(200);
      expect((await registry.request('DELETE', '/-/npm/v1/tokens/token/' + created.body.key, { token: created.body.token })).status).toBe(204);
      expect((await whoami()).status).toBe(401);
    } finally {
      await second.close();
    }
  });

  it('token create needs the right password', async () => {
    const wrong = await alice.npm(['token', 'create', '--password', 'not-it']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/401/);
  });

  it('a read-only token reads but cannot publish', async () => {
    const created = await alice.npm(['token', 'create', '--password', 'alice-password', '--packages-and-scopes-permission', 'read-only']);
    const token = /Created token (\S+)/.exec(created.stdout)?.[1] as string;
    const reader = npmClient(registry.url, token);
    expect((await reader.npm(['whoami'])).stdout.trim()).toBe('alice');
    const publish = await reader.npm(['publish'], makePackage(reader.home, { name: 'ro-attempt', version: '1.0.0' }));
    expect(publish.code).not.toBe(0);
    expect(publish.stderr).toContain('read-only');
    expect((await registry.request('GET', '/ro-attempt')).status).toBe(404);
  });

  it('npm token create --cidr binds the token to addresses', async () => {
    const inside = await alice.npm(['token', 'create', '--password', 'alice-password', '--cidr', '127.0.0.0/8']);
    const insideToken = /Created token (\S+)/.exec(inside.stdout)?.[1] as string;
    expect(inside.stdout).toContain('127.0.0.0/8');
    expect((await registry.request('GET', '/-/whoami', { token: insideToken })).status).toBe(200);
    const outside = await alice.npm(['token', 'create', '--password', 'alice-password', '--cidr', '192.0.2.0/24']);
    const outsideToken = /Created token (\S+)/.exec(outside.stdout)?.[1] as string;
    expect((await registry.request('GET', '/-/whoami', { token: outsideToken })).status).toBe(403);
    const listed = JSON.parse((await alice.npm(['token', 'list', '--json'])).stdout) as { cidr_whitelist: string[] | null }[];
    expect(listed.map((t) => t.cidr_whitelist)).toContainEqual(['192.0.2.0/24']);
  });

  it('a CIDR-bound token works from inside the block and is refused from outside', async () => {
    const inside = await registry.request('POST', '/-/npm/v1/tokens', { token: await registry.signup('carol'), body: { password: 'password-carol', cidr_whitelist: ['127.0.0.0/8'] } });
    expect(inside.status).toBe(201);
    expect((await registry.request('GET', '/-/whoami', { token: inside.body.token })).status).toBe(200);
    const outside = await registry.request('POST', '/-/npm/v1/tokens', { headers: { authorization: 'Basic ' + Buffer.from('carol:password-carol').toString('base64') }, body: { password: 'password-carol', cidr_whitelist: ['10.1.0.0/16'] } });
    expect(outside.status).toBe(201);
    const refused = await registry.request('GET', '/-/whoami', { token: outside.body.token });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toContain('10.1.0.0/16');
    expect((await registry.request('POST', '/-/npm/v1/tokens', { token: inside.body.token, body: { password: 'password-carol', cidr_whitelist: ['nonsense'] } })).status).toBe(400);
  });
});

describe('profile and login throttling', () => {
  it('npm profile get shows the user', async () => {
    const profile = await alice.npm(['profile', 'get', '--json']);
    expect(profile.code).toBe(0);
    expect(JSON.parse(profile.stdout)).toMatchObject({ name: 'alice', email: 'alice@example.com' });
    // The account's dates, as `npm profile get` prints them (empty before they were kept).
    const created = (await alice.npm(['profile', 'get', 'created'])).stdout.trim();
    expect(new Date(created).getTime()).toBeGreaterThan(Date.now() - 3_600_000);
    expect((await alice.npm(['profile', 'get', 'updated'])).stdout.trim()).toBe(created);
  });

  it('sign-up and npm profile set password refuse passwords shorter than 8 characters, saying so', async () => {
    const short = await registry.request('PUT', '/-/user/org.couchdb.user:shorty', { body: { name: 'shorty', password: 'abc1234', email: 'shorty@example.com' } });
    expect(short.status).toBe(400);
    expect(short.body.error).toContain('at least 8 characters');
    // Nothing was made: the name is free for a good password.
    const changed = await registry.request('POST', '/-/npm/v1/user', { token: await registry.signup('shorty', 'shorty-password'), body: { password: { old: 'shorty-password', new: 'short12' } } });
    expect(changed.status).toBe(400);
    expect(changed.body.error).toContain('at least 8 characters');
  });

  it('failed logins are throttled per user with 429 and Retry-After', async () => {
    await registry.signup('dora', 'dora-password');
    const basic = (password: string) => ({ authorization: 'Basic ' + Buffer.from('dora:' + password).toString('base64') });
    let last;
    for (let i = 0; i < 11; i++) last = await registry.request('GET', '/-/whoami', { headers: basic('guess-' + i) });
    expect(last!.status).toBe(429);
    expect(Number(last!.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await registry.request('GET', '/-/whoami', { headers: basic('dora-password') })).status).toBe(429);
    const legacy = await registry.request('PUT', '/-/user/org.couchdb.user:dora', { body: { name: 'dora', password: 'dora-password' } });
    expect(legacy.status).toBe(429);
  });
});

describe('search', () => {
  beforeAll(async () => {
    for (const manifest of [
      { name: 'color-convert', version: '1.0.0', description: 'Convert between color formats', keywords: ['color', 'rgb'] },
      { name: 'color', version: '2.0.0', description: 'Color conversion and manipulation' },
      { name: '@paint/brush', version: '1.0.0', description: 'Draws with a color', keywords: ['paint'] },
      { name: 'unrelated', version: '1.0.0', description: 'Nothing to see' },
    ]) {
      const published = await alice.npm(['publish'], makePackage(alice.home, manifest));
      expect(published.code).toBe(0);
    }
  });

  it('npm search finds by name, keyword and description, exact name first', async () => {
    const result = await alice.npm(['search', 'color', '--json']);
    expect(result.code).toBe(0);
    const names = (JSON.parse(result.stdout) as { name: string }[]).map((p) => p.name);
    expect(names[0]).toBe('color');
    expect(names).toEqual(expect.arrayContaining(['color-convert', '@paint/brush']));
    expect(names).not.toContain('unrelated');
    const text = await alice.npm(['search', 'rgb']);
    expect(text.stdout).toContain('color-convert');
  });

  it('pages with size and from, and refuses bad parameters', async () => {
    const all = await registry.request('GET', '/-/v1/search?text=color&size=250');
    expect(all.body.total).toBe(3);
    const page = await registry.request('GET', '/-/v1/search?text=color&size=1&from=1');
    expect(page.body.objects).toHaveLength(1);
    expect(page.body.objects[0].package.name).toBe(all.body.objects[1].package.name);
    expect((await registry.request('GET', '/-/v1/search?text=color&size=251')).status).toBe(400);
    expect((await registry.request('GET', '/-/v1/search?text=')).status).toBe(400);
    const both = await registry.request('GET', '/-/v1/search?text=color%20paint');
    expect(both.body.objects.map((o: { package: { name: string } }) => o.package.name)).toEqual(['@paint/brush']);
  });
});


