/**
 * Several upstreams: `UPSTREAMS` read and checked at start (what is wrong and what to do about it),
 * names routed to the first upstream whose pattern matches them and to no other, private scopes to
 * none, mirrored copies served only while their name is routed to their origin, and each upstream's
 * token sent to its own origin only (never to a tarball host elsewhere, never across a redirect).
 */
import http from 'http';
import { AddressInfo } from 'net';
import { inspect } from 'util';
import { loadConfig } from '../../config';
import { patternCovers } from '../../config/upstreams';
import { mirroredDoc } from '../../core/mirrored';
import { PackageDoc } from '../../core/types';
import { UpstreamRoutes } from '../../replication/routes';
import { readAll } from '../../replication/upstream';

const TOKEN = 'gh-token-0123456789abcdef';
const github = { name: 'github', url: 'https://npm.pkg.github.com', packages: ['@company-gh/*'], mode: 'proxy', tokenEnv: 'GITHUB_PACKAGES_TOKEN' };
const npmjs = { name: 'npmjs', url: 'https://registry.npmjs.org/', packages: ['**'] };
const load = (upstreams: unknown, env: Record<string, string> = {}) => loadConfig({ UPSTREAMS: JSON.stringify(upstreams), GITHUB_PACKAGES_TOKEN: TOKEN, ...env });
const failure = (upstreams: unknown, env: Record<string, string> = {}) => {
  try {
    load(upstreams, env);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('loadConfig accepted ' + JSON.stringify(upstreams));
};

describe('UPSTREAMS', () => {
  it('reads the list in order, with the defaults of UPSTREAM_MODE and UPSTREAM_TIMEOUT_MS, the token from the variable it names', () => {
    const config = load([github, npmjs], { UPSTREAM_MODE: 'mirror', UPSTREAM_TIMEOUT_MS: '7000' });
    expect(config.upstreams.map((u) => [u.name, u.url, u.packages, u.mode, u.timeoutMs, u.tokenFrom])).toEqual([
      ['github', 'https://npm.pkg.github.com', ['@company-gh/*'], 'proxy', 7000, 'env:GITHUB_PACKAGES_TOKEN'],
      ['npmjs', 'https://registry.npmjs.org', ['**'], 'mirror', 7000, undefined],
    ]);
    expect(config.upstreams[0].token?.value).toBe(TOKEN);
  });

  it('never shows the token: not in JSON, not in an inspection, not in a string', () => {
    const config = load([github, npmjs]);
    expect(JSON.stringify(config)).not.toContain(TOKEN);
    expect(inspect(config, { depth: 10 })).not.toContain(TOKEN);
    expect(String(config.upstreams[0].token)).toBe('(hidden)');
  });

  it('UPSTREAM_REGISTRY alone is one upstream, "default", for every name, with REPLICATION_FEED as its feed (the old settings unchanged)', () => {
    const config = loadConfig({ UPSTREAM_REGISTRY: 'https://registry.example/', UPSTREAM_MODE: 'proxy', REPLICATION_FEED: 'https://feed.example' });
    expect(config.upstreams).toEqual([{ name: 'default', url: 'https://registry.example', packages: ['**'], mode: 'proxy', timeoutMs: 10000, feed: 'https://feed.example' }]);
    expect(config.upstreamRegistry).toBe('https://registry.example');
    expect(loadConfig({}).upstreams).toEqual([]);
  });

  it('UPSTREAM_REGISTRY with UPSTREAMS is the last upstream, for the names no entry routes', () => {
    const config = load([github], { UPSTREAM_REGISTRY: 'https://registry.npmjs.org' });
    expect(config.upstreams.map((u) => u.name)).toEqual(['github', 'default']);
  });

  it('lets the outbound policy ask every upstream\'s exact host and feed, on a private address too', () => {
    const config = load([{ ...github, url: 'http://10.1.2.3:4873', feed: 'http://10.1.2.4:5080/-/replicate' }, npmjs]);
    expect(config.outbound.settings.configured).toEqual(expect.arrayContaining(['http://10.1.2.3:4873', 'http://10.1.2.4:5080/-/replicate', 'https://registry.npmjs.org']));
    expect(() => config.outbound.connectOptions(new URL('http://10.1.2.3:4873/x'))).not.toThrow();
    expect(() => config.outbound.connectOptions(new URL('http://10.1.2.3:4874/x'))).toThrow('OUTBOUND_ALLOW_PRIVATE');
  });

  it.each([
    ['not JSON', '[{', 'UPSTREAMS must be a JSON list'],
    ['not a list', { name: 'x' }, 'non-empty JSON list'],
    ['an unknown field', [{ ...npmjs, tokn: 'x' }], 'unknown fields "tokn"'],
    ['no name', [{ url: npmjs.url, packages: ['**'] }], 'needs a "name"'],
    ['a bad URL', [{ ...npmjs, url: 'registry.npmjs.org' }], '"url" must be an http(s) URL'],
    ['credentials in the URL', [{ ...npmjs, url: 'https://me:secret@registry.example' }], 'must carry no credentials'],
    ['a URL with a query', [{ ...npmjs, url: 'https://registry.example/?a=1' }], 'no query and no fragment'],
    ['no packages', [{ name: 'x', url: npmjs.url }], 'needs "packages"'],
    ['a bad pattern', [{ ...npmjs, packages: ['@a/b/c'] }], 'is not a package pattern'],
    ['an unknown mode', [{ ...npmjs, mode: 'cache' }], '"mode" must be one of "mirror", "proxy", "redirect", got "cache"'],
    ['a bad timeout', [{ ...npmjs, timeoutMs: '5s' }], '"timeoutMs" must be a whole number'],
    ['a name used twice', [{ ...github, name: 'npmjs' }, npmjs], 'the name "npmjs" is used twice'],
    ['a token with redirect', [{ ...github, mode: 'redirect' }, npmjs], 'has a token and mode "redirect": clients redirected there ask it themselves'],
    ['token and tokenEnv', [{ ...github, token: 'x' }], 'has both "token" and "tokenEnv"'],
    ['a bad feed', [{ ...npmjs, feed: 'ftp://feed' }], '"feed" must be an http(s) URL'],
    ['a feed followed twice', [{ ...github, feed: 'https://feed.example' }, { ...npmjs, feed: 'https://feed.example' }], 'follow the same feed'],
  ])('refuses %s, saying what to fix', (_what, upstreams, words) => {
    const message = typeof upstreams === 'string' ? (() => {
      try {
        loadConfig({ UPSTREAMS: upstreams });
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    })() : failure(upstreams);
    expect(message).toContain(words);
  });

  it('refuses a tokenEnv whose variable is not set, naming the variable and the upstream', () => {
    expect(failure([github, npmjs], { GITHUB_PACKAGES_TOKEN: '' })).toBe(
      'UPSTREAMS: the upstream "github" takes its token from the environment variable GITHUB_PACKAGES_TOKEN, which is not set or empty: set it to the token for https://npm.pkg.github.com, or remove "tokenEnv"',
    );
  });

  it('refuses a pattern an earlier one already covers: it could never be used', () => {
    expect(failure([npmjs, github])).toContain('the pattern "@company-gh/*" of the upstream "github" can never be used: "**" of the upstream "npmjs" comes first');
    expect(failure([{ ...github, packages: ['@company-gh/*', '@company-gh/tools-*'] }, npmjs])).toContain('"@company-gh/tools-*"');
    expect(failure([{ ...npmjs, packages: ['*'] }, { ...github, name: 'x', packages: ['left-*'] }])).toContain('"left-*"');
    expect(failure([npmjs], { UPSTREAM_REGISTRY: 'https://registry.example' })).toContain('UPSTREAM_REGISTRY (every name, "**") can never be used');
    // Narrower first is fine.
    expect(load([{ ...github, packages: ['@company-gh/tools-*', '@company-gh/*'] }, npmjs]).upstreams).toHaveLength(2);
  });

  it('refuses a pattern in a private scope: it is never asked of any upstream', () => {
    expect(failure([{ ...github, packages: ['@acme/*'] }], { REPLICATION_PRIVATE_SCOPES: '@acme' })).toContain('is in the private scope @acme (REPLICATION_PRIVATE_SCOPES)');
  });

  it('a REPLICATION_FEED without UPSTREAM_REGISTRY is refused: it belongs to an entry of UPSTREAMS', () => {
    expect(failure([npmjs], { REPLICATION_FEED: 'https://feed.example' })).toContain('give the feed to its upstream in UPSTREAMS');
  });

  it('patternCovers is sound: what it says is covered is matched', () => {
    expect(patternCovers('**', 'anything')).toBe(true);
    expect(patternCovers('@a/*', '@a/b-*')).toBe(true);
    expect(patternCovers('*', '@a/*')).toBe(false);
    expect(patternCovers('a-*', 'a-b')).toBe(true);
    expect(patternCovers('a-*', 'b-*')).toBe(false);
    expect(patternCovers('*', '**')).toBe(false);
  });
});

describe('routing', () => {
  const config = load([github, { ...npmjs, packages: ['*', '@types/*'] }], { REPLICATION_PRIVATE_SCOPES: '@corp' });
  const routes = new UpstreamRoutes(config);

  it('routes a name to the first upstream whose pattern matches it, and to no other', () => {
    expect(routes.upstreamFor('@company-gh/tool')?.name).toBe('github');
    expect(routes.upstreamFor('left-pad')?.name).toBe('npmjs');
    expect(routes.upstreamFor('@types/node')?.name).toBe('npmjs');
    expect(routes.upstreamFor('@company-gh/tool')?.registry.hasToken).toBe(true);
    expect(routes.upstreamFor('left-pad')?.registry.hasToken).toBe(false);
  });

  it('a private scope and a name no pattern matches go nowhere, with a 404 that says why', () => {
    expect(routes.upstreamFor('@corp/secret')).toBeNull();
    expect(routes.noRouteMessage('@corp/secret')).toContain('its scope is private here');
    expect(routes.upstreamFor('@other/thing')).toBeNull();
    expect(routes.noRouteMessage('@other/thing')).toBe('Package "@other/thing" is not here, and no upstream is configured for it (no pattern of UPSTREAMS matches the name).');
  });

  it('serves a mirrored copy only while its name is routed to its origin; copies of the native replication and all copies without upstreams as they are', () => {
    const copy = (name: string, origin: string) => ({ ...mirroredDoc(name, { versions: {} }, origin, null) }) as PackageDoc;
    expect(routes.serves(copy('@company-gh/tool', 'https://npm.pkg.github.com'))).toBe(true);
    // Mirrored from the public registry before the route sent the scope to GitHub: not served.
    expect(routes.serves(copy('@company-gh/tool', 'https://registry.npmjs.org'))).toBe(false);
    expect(routes.serves(copy('@other/thing', 'https://registry.npmjs.org'))).toBe(false);
    expect(routes.serves(copy('left-pad', 'https://registry.npmjs.org'))).toBe(true);
    expect(routes.serves(copy('left-pad', 'c0ffee-registry-id'))).toBe(true);
    expect(new UpstreamRoutes(loadConfig({})).serves(copy('left-pad', 'https://registry.npmjs.org'))).toBe(true);
  });

  it('a copy of another origin is replaced whole when stored from the upstream the name is routed to: nothing of the old copy is kept but its revision', () => {
    const old = { ...mirroredDoc('@company-gh/tool', { versions: { '1.0.0': { name: '@company-gh/tool', version: '1.0.0', dist: { integrity: 'sha512-old', shasum: 'a', tarball: 'https://registry.npmjs.org/x.tgz' } } } }, 'https://registry.npmjs.org', null), _rev: '3-abc' };
    old._attachments = { 'tool-1.0.0.tgz': { content_type: 'application/octet-stream', stub: true, length: 1 } } as never;
    const fresh = mirroredDoc('@company-gh/tool', { versions: { '1.0.0': { name: '@company-gh/tool', version: '1.0.0', dist: { integrity: 'sha512-new', shasum: 'b', tarball: 'https://npm.pkg.github.com/x.tgz' } } } }, 'https://npm.pkg.github.com', old as PackageDoc);
    expect(fresh._rev).toBe('3-abc');
    expect(fresh.origin).toBe('https://npm.pkg.github.com');
    expect(fresh.versions['1.0.0'].dist.integrity).toBe('sha512-new');
    expect(fresh._attachments).toEqual({});
  });
});

describe('an upstream\'s token', () => {
  let server: http.Server;
  let url: string;
  const seen: { path: string; host: string; authorization?: string }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ path: req.url || '', host: String(req.headers.host), authorization: req.headers.authorization });
      const other = url.replace('127.0.0.1', 'localhost');
      if (req.url === '/to-other-origin') {
        res.writeHead(302, { location: other + '/echo' });
        return void res.end();
      }
      if (req.url === '/refused') {
        res.writeHead(401);
        return void res.end();
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(req.headers.authorization || 'none').length });
      res.end(req.headers.authorization || 'none');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = 'http://127.0.0.1:' + (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const routesFor = (upstreams: unknown[]) => new UpstreamRoutes(load(upstreams, { OUTBOUND_ALLOW_PRIVATE: 'localhost' }));

  it('goes to its upstream\'s origin only: packuments, tarballs there and posts, never a tarball host elsewhere or across a redirect', async () => {
    const routes = routesFor([{ name: 'private', url, packages: ['**'], tokenEnv: 'GITHUB_PACKAGES_TOKEN' }]);
    const client = routes.upstreamFor('x')!.registry;
    expect(await client.get('/echo', 'a test')).toBe('Bearer ' + TOKEN);
    expect((await readAll((await client.download(url + '/x.tgz')).body)).toString()).toBe('Bearer ' + TOKEN);
    expect((await client.post('/-/npm/v1/security/advisories/bulk', {}, 1000)).text).toBe('Bearer ' + TOKEN);
    // A tarball on another origin (same server, another host name), and a redirect to another origin.
    expect((await readAll((await client.download(url.replace('127.0.0.1', 'localhost') + '/x.tgz')).body)).toString()).toBe('none');
    expect(await client.get('/to-other-origin', 'a test')).toBe('none');
    expect(seen.filter((s) => s.host.startsWith('localhost')).map((s) => s.authorization)).toEqual([undefined, undefined]);
  });

  it('is never sent to another upstream', async () => {
    const routes = routesFor([
      { name: 'private', url, packages: ['@private/*'], tokenEnv: 'GITHUB_PACKAGES_TOKEN' },
      { name: 'public', url: url.replace('127.0.0.1', 'localhost'), packages: ['**'] },
    ]);
    expect(await routes.upstreamFor('left-pad')!.registry.get('/echo', 'a test')).toBe('none');
    expect(await routes.upstreamFor('@private/x')!.registry.get('/echo', 'a test')).toBe('Bearer ' + TOKEN);
  });

  it('a refusal (401) says whether the token is missing or not accepted, never the token; counted as a failure', async () => {
    const without = routesFor([{ name: 'bare', url, packages: ['**'] }]).upstreamFor('x')!.registry;
    await expect(without.get('/refused', '"x"')).rejects.toThrow('it wants a token and none is set for the upstream "bare"; an admin sets one with "tokenEnv" in its UPSTREAMS entry');
    const withToken = routesFor([{ name: 'private', url, packages: ['**'], tokenEnv: 'GITHUB_PACKAGES_TOKEN' }]).upstreamFor('x')!.registry;
    const refusal = await withToken.get('/refused', '"x"').catch((err: Error) => err.message);
    expect(refusal).toContain('the token set for the upstream "private" (env:GITHUB_PACKAGES_TOKEN) is not accepted there');
    expect(refusal).not.toContain(TOKEN);
    expect(withToken.stats).toMatchObject({ requests: 1, failures: 1, reachable: false });
    expect(JSON.stringify(withToken)).not.toContain(TOKEN);
    expect(inspect(withToken, { depth: 10 })).not.toContain(TOKEN);
  });
});
