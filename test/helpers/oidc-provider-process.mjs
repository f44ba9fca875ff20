/**
 * A real OpenID provider for the single sign-on tests: the certified `oidc-provider` (ESM, hence this
 * child process), on a free loopback port, with its development login page (the password checked here
 * against the configured users) and consent granted without a page. The test drives it over IPC
 * (test/helpers/oidc-provider.ts): the client (the registry's redirect URI is known only once the
 * registry listens), the users and their groups (changed at any time, as an admin changes them at
 * the company's provider), and, to attack the registry, an ID token of its token answers replaced with
 * one of another issuer, another audience or a key the provider does not publish, or its discovery
 * document naming a token endpoint elsewhere.
 */
import { Buffer } from 'node:buffer';
import { createServer } from 'node:http';
import { URLSearchParams } from 'node:url';
import { generateKeyPair, exportJWK, SignJWT, decodeJwt } from 'jose';
import Provider from 'oidc-provider';

/** login -> { password, claims: { preferred_username, email, groups, ... } } */
const users = new Map();
let clients = [];
/** How the next token answers' ID tokens are altered (`iss`, `aud`, `forged`), or the discovery document's token endpoint (`tokenEndpoint`); null: not. */
let mischief = null;
let provider;

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await exportJWK(privateKey)), kid: 'provider-key-1', alg: 'RS256', use: 'sig' };
const stranger = await generateKeyPair('RS256');

const server = createServer((req, res) => {
  // The development login page accepts any password: the configured users' passwords are checked here.
  if (req.method === 'POST' && /^\/interaction\/[^/]+/.test(req.url || '')) {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const form = new URLSearchParams(raw);
      if (form.get('prompt') === 'login') {
        const user = users.get(form.get('login') || '');
        if (!user || user.password !== form.get('password')) {
          res.writeHead(401, { 'content-type': 'text/html' });
          res.end('<!doctype html><h1 id="idp-error">Wrong login or password at the test provider</h1>');
          return;
        }
      }
      req.body = raw;
      provider.callback()(req, res);
    });
    return;
  }
  provider.callback()(req, res);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = 'http://127.0.0.1:' + server.address().port;

function build() {
  provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingJwk] },
    // Lenient where a provider may be: the registry's own checks are what the tests see.
    pkce: { required: () => false },
    scopes: ['openid', 'profile', 'email', 'groups'],
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email', 'email_verified'], groups: ['groups'] },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['test-provider-cookie-key'] },
    ttl: { Session: 3600, Interaction: 600, Grant: 3600, AccessToken: 600, AuthorizationCode: 60, IdToken: 600 },
    async findAccount(_ctx, id) {
      const user = users.get(id);
      if (!user) return undefined;
      return { accountId: id, claims: () => ({ sub: id, ...users.get(id).claims }) };
    },
    // Consent is granted without a page (a company's provider does not ask for its own registry).
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const found = await ctx.oidc.provider.Grant.find(grantId);
        if (found) return found;
      }
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile email groups');
      await grant.save();
      return grant;
    },
  });
  provider.use(async (ctx, next) => {
    await next();
    if (mischief?.tokenEndpoint && ctx.path === '/.well-known/openid-configuration' && ctx.body) {
      ctx.body = { ...ctx.body, token_endpoint: mischief.tokenEndpoint };
      return;
    }
    if (!mischief || ctx.path !== '/token' || !ctx.body || typeof ctx.body.id_token !== 'string') return;
    const claims = decodeJwt(ctx.body.id_token);
    if (mischief.iss) claims.iss = mischief.iss;
    if (mischief.aud) claims.aud = mischief.aud;
    const key = mischief.forged || mischief.iss ? stranger.privateKey : privateKey;
    ctx.body = { ...ctx.body, id_token: await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: mischief.forged || mischief.iss ? 'stranger-key' : 'provider-key-1' }).sign(key) };
  });
}
build();

process.on('message', (message) => {
  const { id, type } = message;
  if (type === 'client') {
    clients = [message.client];
    build();
  } else if (type === 'users') {
    users.clear();
    for (const [login, user] of Object.entries(message.users)) users.set(login, user);
  } else if (type === 'mischief') {
    mischief = message.mischief;
  }
  process.send({ id, ok: true });
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true, issuer });
