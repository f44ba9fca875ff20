/**
 * The outbound request policy (config/outbound.ts) as a unit: which addresses are special in which
 * spelling, what the settings open, and the connect-time `lookup` that refuses a name resolving to a
 * refused address (DNS rebinding).
 */
import { isSpecialAddress, OutboundPolicy } from '../../config/outbound';
import { loadConfig } from '../../config';

const policy = (allowPrivate: string[] = [], configured: string[] = [], foreignHosts: string[] = []) => new OutboundPolicy({ allowPrivate, configured, foreignHosts });

/** What the lookup of `url` answers: the addresses, or the error's message. */
function lookup(p: OutboundPolicy, url: string): Promise<string> {
  const parsed = new URL(url);
  const { lookup } = p.connectOptions(parsed);
  return new Promise((resolve) => lookup(parsed.hostname, { all: true }, (err, addresses) => resolve(err ? 'refused: ' + err.message : JSON.stringify(addresses))));
}

describe('the outbound request policy', () => {
  it('knows loopback, private, link-local, CGNAT, unspecified and IPv4-mapped addresses as special', () => {
    for (const address of ['127.0.0.1', '127.255.0.9', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '224.0.0.1']) {
      expect([address, isSpecialAddress(address)]).toEqual([address, true]);
    }
    for (const address of ['93.184.216.34', '104.16.0.1', '2606:4700::1']) expect([address, isSpecialAddress(address)]).toEqual([address, false]);
  });

  it('refuses an address written in the URL, in every spelling Node accepts, and other schemes and credentials', () => {
    const p = policy();
    for (const url of ['http://127.0.0.1:5984/', 'http://2130706433/', 'http://0x7f.1/', 'http://127.1/', 'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://169.254.169.254/latest', 'http://0.0.0.0:5984/']) {
      expect(() => p.connectOptions(new URL(url))).toThrow(/outbound request policy/);
    }
    expect(() => p.connectOptions(new URL('file:///etc/passwd'))).toThrow(/only http and https/);
    expect(() => p.connectOptions(new URL('http://user:pw@registry.example.com/'))).toThrow(/credentials/);
    expect(() => p.connectOptions(new URL('https://93.184.216.34/'))).not.toThrow();
  });

  it('refuses a name that resolves to a loopback address when connecting (DNS rebinding), naming the setting', async () => {
    expect(await lookup(policy(), 'http://localhost:4873/x')).toMatch(/^refused: .*OUTBOUND_ALLOW_PRIVATE/);
    expect(await lookup(policy(['localhost']), 'http://localhost:4873/x')).toContain('127.0.0.1');
  });

  it('opens the configured hosts exactly, CIDR blocks and addresses for any port, and never CouchDB for a block', async () => {
    const p = policy(['10.0.0.0/8', '127.0.0.1'], ['http://127.0.0.1:4873'], []);
    await p.denyCouchDB('http://127.0.0.1:5984');
    expect(() => p.connectOptions(new URL('http://10.2.3.4:8080/'))).not.toThrow();
    expect(() => p.connectOptions(new URL('http://127.0.0.1:9000/'))).not.toThrow();
    expect(() => p.connectOptions(new URL('http://127.0.0.1:4873/'))).not.toThrow();
    expect(() => p.connectOptions(new URL('http://127.0.0.1:5984/registry'))).toThrow(/CouchDB/);
    expect(await lookup(p, 'http://localhost:5984/')).toMatch(/refused: .*CouchDB/);
    expect(() => p.connectOptions(new URL('http://192.168.0.1/'))).toThrow(/outbound request policy/);
    const exact = policy(['127.0.0.1:5984']);
    await exact.denyCouchDB('http://127.0.0.1:5984');
    expect(() => exact.connectOptions(new URL('http://127.0.0.1:5984/'))).not.toThrow();
  });

  it('is built from the settings, with the upstream, feed and replication source allowed and clear errors for wrong values', () => {
    const config = loadConfig({ UPSTREAM_REGISTRY: 'http://127.0.0.1:4873', REPLICATION_FEED: 'http://127.0.0.1:4874/feed', OUTBOUND_ALLOW_PRIVATE: 'hooks.internal' });
    expect(config.foreignMode).toBe('redirect');
    expect(() => config.outbound.connectOptions(new URL('http://127.0.0.1:4873/x'))).not.toThrow();
    expect(() => config.outbound.connectOptions(new URL('http://127.0.0.1:4874/feed/_changes'))).not.toThrow();
    expect(() => config.outbound.connectOptions(new URL('http://127.0.0.1:4875/'))).toThrow();
    expect(() => loadConfig({ FOREIGN_MODE: 'proxy' })).toThrow(/FOREIGN_HOSTS/);
    expect(() => loadConfig({ FOREIGN_MODE: 'fetch' })).toThrow(/FOREIGN_MODE/);
    expect(() => loadConfig({ OUTBOUND_ALLOW_PRIVATE: 'http://x/' })).toThrow(/OUTBOUND_ALLOW_PRIVATE/);
    expect(() => loadConfig({ FOREIGN_HOSTS: 'https://x' })).toThrow(/FOREIGN_HOSTS/);
  });

  it('compares host names as DNS sees them: case, IDNA and a trailing dot do not make another host', async () => {
    const p = policy(['Hooks.Internal.'], ['http://Registry.Internal.:4873'], ['NPM.pkg.github.com.', 'mirror.example:8443']);
    await p.denyCouchDB('http://127.0.0.1:5984');
    for (const url of ['http://localhost./', 'http://LOCALHOST.:5984/registry', 'http://localhost..:5984/', 'http://ｌｏｃａｌｈｏｓｔ/', 'http://localhost.localdomain/', 'http://ip6-localhost/', 'http://x.localhost./']) {
      expect([url, p.literalProblem(new URL(url))]).toEqual([url, expect.stringMatching(/this machine/)]);
    }
    expect(p.literalProblem(new URL('http://127.0.0.1.:5984/'))).toMatch(/CouchDB/);
    // Resolved as written (a resolver may not know `localhost.`): refused either way.
    expect(await lookup(p, 'http://localhost.:4873/x')).toMatch(/^refused: /);
    expect(await lookup(p, 'http://LOCALHOST.:5984/registry')).toMatch(/^refused: /);
    // What an admin listed is the same host in any of these spellings.
    expect(p.foreignHostListed(new URL('https://npm.PKG.github.com/'))).toBe(true);
    expect(p.foreignHostListed(new URL('https://npm.pkg.github.com./'))).toBe(true);
    expect(p.foreignHostListed(new URL('https://MIRROR.example.:8443/'))).toBe(true);
    expect(p.foreignHostListed(new URL('https://mirror.example/'))).toBe(false);
    expect(p.literalProblem(new URL('http://registry.internal:4873/'))).toBeNull();
  });
});

describe('sites (SITE_PEERS, SITE_PASSWORD)', () => {
  const peer = 'http://registry-site:site-password-123456@couch.site-b.internal:5984/registry';

  it('each peer is a registry database URL with the credentials of its site account, and its host is configured for the outbound policy', () => {
    const config = loadConfig({ SITE_PEERS: peer + '/ , https://registry-site:pw-of-site-c-12345@10.1.2.3/registry', SITE_PASSWORD: 'this-site-password-1' });
    expect(config.sites.peers).toEqual([peer, 'https://registry-site:pw-of-site-c-12345@10.1.2.3/registry']);
    // A site on a private address is allowed exactly: that address, not its neighbours.
    expect(config.outbound.literalProblem(new URL('https://10.1.2.3/registry'))).toBeNull();
    expect(config.outbound.literalProblem(new URL('https://10.1.2.4/registry'))).not.toBeNull();
  });

  it('refuses a peer without credentials, without a database, not http(s), and never repeats a password in the message', () => {
    const password = { SITE_PASSWORD: 'this-site-password-1' };
    expect(() => loadConfig({ ...password, SITE_PEERS: 'http://couch.site-b.internal:5984/registry' })).toThrow(/credentials of that site's account/);
    expect(() => loadConfig({ ...password, SITE_PEERS: 'http://registry-site:secret-value@couch.site-b.internal:5984/' })).toThrow(/registry database/);
    expect(() => loadConfig({ ...password, SITE_PEERS: 'ftp://registry-site:secret-value@couch.site-b.internal/registry' })).toThrow(/http\(s\)/);
    for (const bad of ['http://registry-site:secret-value@couch.site-b.internal:5984/', 'ftp://registry-site:secret-value@couch/registry', 'not a url secret-value']) {
      try {
        loadConfig({ ...password, SITE_PEERS: bad });
      } catch (err) {
        expect((err as Error).message).not.toContain('secret-value');
      }
    }
  });

  it('needs this site\'s own password, of at least 16 characters', () => {
    expect(() => loadConfig({ SITE_PEERS: peer })).toThrow(/SITE_PASSWORD/);
    expect(() => loadConfig({ SITE_PEERS: peer, SITE_PASSWORD: 'short' })).toThrow(/at least 16/);
    expect(loadConfig({}).sites).toEqual({ peers: [], password: undefined, checkSeconds: 30 });
  });
});
