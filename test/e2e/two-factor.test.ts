/**
 * Two-factor authentication with the real npm CLI: `npm profile enable-2fa` on a terminal (the
 * `otpauth://` secret shown, a first code asked, recovery codes printed), then `--otp` (and npm's
 * EOTP without it) on publish, dist-tag, unpublish and token changes; a recovery code works once; a
 * `--bypass-2fa` token publishes without a code; `npm login` asks for the code; the pages and Basic
 * credentials want it too; `disable-2fa`; and `TWO_FACTOR=required`.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Secret, TOTP } from 'otpauth';
import { startTestRegistry, TestRegistry } from '../helpers/registry';
import { makePackage, npmClient, NpmClient, onTerminal } from '../helpers/npm';

let registry: TestRegistry;
const work = mkdtempSync(join(tmpdir(), 'two-factor-'));
const password = 'two-factor-password';

const codeOf = (secret: string, periodsAhead = 0) => new TOTP({ secret: Secret.fromBase32(secret) }).generate({ timestamp: Date.now() + periodsAhead * 30_000 });

/** Turns two-factor authentication on for `client`'s account with npm itself; its secret and recovery codes. */
async function enableWithNpm(client: NpmClient, mode = 'auth-and-writes'): Promise<{ secret: string; recovery: string[]; output: string }> {
  let secret = '';
  const result = await onTerminal(client, 'profile enable-2fa ' + mode, [
    [/password:/i, () => password],
    [/OTP code from your authenticator:/, (seen) => {
      secret = /enter code:\s*([A-Z2-7]+)/i.exec(seen)![1];
      return codeOf(secret);
    }],
  ]);
  expect({ code: result.code, output: result.output.includes('2FA successfully enabled') ? true : result.output.slice(-500) }).toEqual({ code: 0, output: true });
  const recovery = [...result.output.matchAll(/\t([0-9a-f]{64})\r?$/gm)].map((m) => m[1]);
  return { secret, recovery, output: result.output };
}

async function publish(client: NpmClient, name: string, version: string, extra: string[] = []): Promise<{ code: number; output: string }> {
  const result = await client.npm(['publish', ...extra], makePackage(work, { name, version }));
  return { code: result.code, output: result.stdout + result.stderr };
}

beforeAll(async () => {
  registry = await startTestRegistry();
});

afterAll(async () => {
  await registry?.stop();
  rmSync(work, { recursive: true, force: true });
});

it('npm profile enable-2fa shows the secret, takes a first code, prints recovery codes; writes then need --otp', async () => {
  const token = await registry.signup('tfa-alice', password);
  const npm = npmClient(registry.url, token);
  expect((await publish(npm, 'tfa-pkg', '1.0.0')).code).toBe(0);
  const enabled = await enableWithNpm(npm);
  const { secret, recovery } = enabled;
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  expect(recovery).toHaveLength(8);
  const profile = JSON.parse((await npm.npm(['profile', 'get', '--json'])).stdout);
  expect(profile.tfa).toEqual({ mode: 'auth-and-writes', pending: false });

  // Without a code npm cannot ask (no terminal): EOTP, naming the one-time password.
  const bare = await publish(npm, 'tfa-pkg', '1.1.0');
  expect(bare.code).not.toBe(0);
  expect(bare.output).toMatch(/EOTP|one-time pass/i);
  expect((await publish(npm, 'tfa-pkg', '1.1.0', ['--otp', '000000'])).code).not.toBe(0);
  const code = codeOf(secret);
  expect((await publish(npm, 'tfa-pkg', '1.1.0', ['--otp', code])).code).toBe(0);
  expect((await npm.npm(['dist-tag', 'add', 'tfa-pkg@1.0.0', 'old', '--otp', code])).code).toBe(0);
  expect((await npm.npm(['dist-tag', 'add', 'tfa-pkg@1.0.0', 'older'])).code).not.toBe(0);
  // An unpublish is several requests with the same code.
  expect((await npm.npm(['unpublish', 'tfa-pkg@1.1.0', '--otp', code])).code).toBe(0);

  // A recovery code works once.
  expect((await publish(npm, 'tfa-pkg', '1.2.0', ['--otp', recovery[0]])).code).toBe(0);
  expect((await publish(npm, 'tfa-pkg', '1.3.0', ['--otp', recovery[0]])).code).not.toBe(0);

  // Tokens: making one needs the code; one made with --bypass-2fa publishes without.
  const noCode = await npm.npm(['token', 'create', '--password', password]);
  expect(noCode.code).not.toBe(0);
  const bypass = await npm.npm(['token', 'create', '--password', password, '--bypass-2fa', '--packages', 'tfa-pkg', '--otp', code]);
  expect(bypass.code).toBe(0);
  const automation = npmClient(registry.url, /Created token (\S+)/.exec(bypass.stdout)![1]);
  expect((await publish(automation, 'tfa-pkg', '1.4.0')).code).toBe(0);

  // npm login asks for the code on the terminal.
  const fresh = npmClient(registry.url);
  const login = await onTerminal(fresh, 'login --auth-type=legacy', [
    [/Username:/, () => 'tfa-alice'],
    [/password:/i, () => password],
    [/Enter OTP:/, () => codeOf(secret, 1)],
  ]);
  expect(login.output).toMatch(/Logged in/);
  expect(login.code).toBe(0);

  // Turning it off needs the code too; then writes need none.
  // (A recovery code: the current period's code was taken by the log-in above, which is another credential.)
  // (--auth-type=legacy: npm asks for the code on the terminal rather than offering the web page.)
  const off = await onTerminal(npm, 'profile disable-2fa --auth-type=legacy', [[/password:/i, () => password], [/Enter OTP:/, () => recovery[1]]]);
  expect(off.output).toContain('Two factor authentication disabled');
  expect((await publish(npm, 'tfa-pkg', '1.5.0')).code).toBe(0);
});

it('a password alone is not a log-in: the web login, the pages and Basic credentials want the code too', async () => {
  await registry.signup('tfa-bob', password);
  const basic = 'Basic ' + Buffer.from('tfa-bob:' + password).toString('base64');
  // Turned on through the same endpoint npm uses.
  const started = await registry.request('POST', '/-/npm/v1/user', { headers: { authorization: basic }, body: { tfa: { password, mode: 'auth-only' } } });
  expect(started.status).toBe(200);
  const secret = new URL(started.body.tfa).searchParams.get('secret')!;
  const confirmed = await registry.request('POST', '/-/npm/v1/user', { headers: { authorization: basic }, body: { tfa: [codeOf(secret)] } });
  expect(confirmed.status).toBe(200);
  expect(confirmed.body.tfa).toHaveLength(8);

  const whoami = await fetch(registry.url + '/-/whoami', { headers: { authorization: basic } });
  expect(whoami.status).toBe(401);
  expect(whoami.headers.get('www-authenticate')).toBe('OTP');
  const withCode = await fetch(registry.url + '/-/whoami', { headers: { authorization: basic, 'npm-otp': codeOf(secret, 1) } });
  expect(withCode.status).toBe(200);

  const form = (otp?: string) =>
    fetch(registry.url + '/-/web/login', {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(registry.url).origin, 'sec-fetch-site': 'same-origin' },
      body: new URLSearchParams({ name: 'tfa-bob', password, next: '/', ...(otp ? { otp } : {}) }).toString(),
    });
  const refused = await form();
  expect(refused.status).toBe(401);
  expect(await refused.text()).toContain('one-time password');
  const recovery = confirmed.body.tfa[0];
  const page = await form(recovery);
  expect(page.status).toBe(303);
  // auth-only: writes with a token need no code.
  const token = await registry.request('PUT', '/-/user/org.couchdb.user:tfa-bob', { body: { name: 'tfa-bob', password }, headers: { 'npm-otp': confirmed.body.tfa[1] } });
  expect(token.status).toBe(201);
  expect((await publish(npmClient(registry.url, token.body.token), 'tfa-bob-pkg', '1.0.0')).code).toBe(0);
});

/** Posts the web one-time-password page's form, as the browser does from the registry's own page. */
const approve = (authUrl: string, fields: Record<string, string>) =>
  fetch(authUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(registry.url).origin, 'sec-fetch-site': 'same-origin' },
    body: new URLSearchParams(fields).toString(),
  });

it("npm's web one-time password: npm on a terminal shows the page, waits, and publishes once the owner approves there with password and code", async () => {
  const token = await registry.signup('tfa-web', password);
  const auth = { authorization: 'Bearer ' + token };
  const started = await registry.request('POST', '/-/npm/v1/user', { headers: auth, body: { tfa: { password, mode: 'auth-and-writes' } } });
  const secret = new URL(started.body.tfa).searchParams.get('secret')!;
  expect((await registry.request('POST', '/-/npm/v1/user', { headers: auth, body: { tfa: [codeOf(secret)] } })).status).toBe(200);
  const npm = npmClient(registry.url, token);

  // npm without a terminal fails, printing both URLs.
  const bare = await publish(npm, 'tfa-web-pkg', '1.0.0');
  expect(bare.code).not.toBe(0);
  expect(bare.output).toMatch(/\/-\/otp\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/);
  expect(bare.output).toMatch(/\/-\/v1\/otp\/done\//);

  // On a terminal npm shows the page and polls; the test, as the owner, approves there.
  let approval: Promise<void> = Promise.resolve();
  const seen: { page?: string; wrong?: number; right?: number } = {};
  const dir = makePackage(work, { name: 'tfa-web-pkg', version: '1.0.0' });
  const result = await onTerminal(npm, 'publish ' + dir + ' --browser=false', [
    [/Authenticate your account at:\s*(http\S+)/, (output) => {
      const authUrl = /Authenticate your account at:\s*(http\S+)/.exec(output)![1];
      approval = (async () => {
        const page = await fetch(authUrl);
        seen.page = (await page.text()).includes('PUT /tfa-web-pkg') ? 'shows the publish' : 'status ' + page.status;
        seen.wrong = (await approve(authUrl, { password, otp: '000000' })).status;
        seen.right = (await approve(authUrl, { password, otp: codeOf(secret, 1) })).status;
      })();
      return '';
    }],
  ]);
  await approval;
  expect({ seen, output: result.output.slice(-1500) }).toEqual({ seen: { page: 'shows the publish', wrong: 401, right: 200 }, output: expect.any(String) });
  expect({ code: result.code, published: result.output.includes('+ tfa-web-pkg@1.0.0') }).toEqual({ code: 0, published: true });
  expect((await registry.request('GET', '/tfa-web-pkg')).body['dist-tags'].latest).toBe('1.0.0');
});

it('a web approval is handed out once, counts only for the token that asked, and its page wants the password and a right code', async () => {
  const token = await registry.signup('tfa-web2', password);
  const auth = { authorization: 'Bearer ' + token };
  const started = await registry.request('POST', '/-/npm/v1/user', { headers: auth, body: { tfa: { password, mode: 'auth-and-writes' } } });
  const secret = new URL(started.body.tfa).searchParams.get('secret')!;
  const confirmed = await registry.request('POST', '/-/npm/v1/user', { headers: auth, body: { tfa: [codeOf(secret)] } });
  expect(confirmed.status).toBe(200);
  expect((await publish(npmClient(registry.url, token), 'tfa-web2-pkg', '1.0.0', ['--otp', codeOf(secret, 1)])).code).toBe(0);
  const other = await registry.request('POST', '/-/npm/v1/tokens', { headers: { ...auth, 'npm-otp': codeOf(secret, 1) }, body: { password } });
  expect(other.status).toBe(201);

  const tag = (headers: Record<string, string>) => registry.request('PUT', '/-/package/tfa-web2-pkg/dist-tags/beta', { headers: { ...headers, 'content-type': 'application/json' }, raw: JSON.stringify('1.0.0') });
  // A client that did not ask for web authentication is asked for a code only.
  const legacy = await tag(auth);
  expect(legacy.status).toBe(401);
  expect(legacy.body.authUrl).toBeUndefined();
  const asked = await tag({ ...auth, 'npm-auth-type': 'web' });
  expect(asked.status).toBe(401);
  expect(asked.headers.get('www-authenticate')).toBe('OTP');
  const { authUrl, doneUrl } = asked.body as { authUrl: string; doneUrl: string };
  expect(authUrl).toContain(registry.url + '/-/otp/');
  expect((await fetch(doneUrl)).status).toBe(202);
  // A wrong secret in either URL finds nothing.
  expect((await fetch(authUrl.slice(0, -4) + 'AAAA')).status).toBe(404);
  expect((await fetch(doneUrl.slice(0, -4) + 'AAAA')).status).toBe(404);
  expect((await approve(authUrl, { password: 'wrong-password', otp: codeOf(secret) })).status).toBe(401);
  expect((await fetch(doneUrl)).status).toBe(202);
  // (A recovery code: this period's codes were taken by other credentials above; it is used up here.)
  expect((await approve(authUrl, { password, otp: confirmed.body.tfa[0] })).status).toBe(200);
  const done = await fetch(doneUrl);
  expect(done.status).toBe(200);
  const approvalCode = ((await done.json()) as { token: string }).token;
  expect((await fetch(doneUrl)).status).toBe(404);

  // Another token of the same account cannot use it; the token that asked can.
  expect((await tag({ authorization: 'Bearer ' + other.body.token, 'npm-otp': approvalCode })).status).toBe(401);
  expect((await tag({ ...auth, 'npm-otp': approvalCode })).status).toBeLessThan(300);
  expect((await registry.request('GET', '/-/package/tfa-web2-pkg/dist-tags')).body.beta).toBe('1.0.0');
});

it('TWO_FACTOR=required: publishing needs an account with two-factor authentication for writes', async () => {
  const strict = await startTestRegistry({ TWO_FACTOR: 'required' });
  try {
    const token = await strict.signup('tfa-carol', password);
    const npm = npmClient(strict.url, token);
    const refused = await publish(npm, 'tfa-carol-pkg', '1.0.0');
    expect(refused.code).not.toBe(0);
    expect(refused.output).toContain('requires two-factor authentication');
    const { secret } = await enableWithNpm(npm);
    expect((await publish(npm, 'tfa-carol-pkg', '1.0.0', ['--otp', codeOf(secret)])).code).toBe(0);
  } finally {
    await strict.stop();
  }
});

it('npm profile set changes the email, and the password: the old password and every token end at once', async () => {
  const token = await registry.signup('tfa-dave', password);
  const npm = npmClient(registry.url, token);
  const email = await npm.npm(['profile', 'set', 'email', 'dave@example.org']);
  expect(email.code).toBe(0);
  expect(JSON.parse((await npm.npm(['profile', 'get', '--json'])).stdout).email).toBe('dave@example.org');
  expect((await npm.npm(['profile', 'set', 'email', 'not-an-email'])).code).not.toBe(0);
  const changed = await onTerminal(npm, 'profile set password', [
    [/Current password:/i, () => password],
    [/New password:/i, () => 'a-new-password'],
    [/Again:/i, () => 'a-new-password'],
  ]);
  expect(changed.code).toBe(0);
  expect((await fetch(registry.url + '/-/whoami', { headers: { authorization: 'Bearer ' + token } })).status).toBe(401);
  const old = await registry.request('PUT', '/-/user/org.couchdb.user:tfa-dave', { body: { name: 'tfa-dave', password } });
  expect([401, 409]).toContain(old.status);
  expect(old.body.token).toBeUndefined();
  const fresh = await registry.request('PUT', '/-/user/org.couchdb.user:tfa-dave', { body: { name: 'tfa-dave', password: 'a-new-password' } });
  expect(fresh.status).toBe(201);
  // Fields npm does not set are refused, not ignored.
  const odd = await registry.request('POST', '/-/npm/v1/user', { token: fresh.body.token, body: { roles: ['_admin'] } });
  expect(odd.status).toBe(400);
});

it('npm access set mfa=publish|automation|none: the package then wants a code from every writer (automation tokens only with automation)', async () => {
  const token = await registry.signup('tfa-erin', password);
  const npm = npmClient(registry.url, token);
  expect((await publish(npm, 'tfa-erin-pkg', '1.0.0')).code).toBe(0);
  const status = await npm.npm(['access', 'get', 'status', 'tfa-erin-pkg']);
  expect(status.stdout).toContain('public');
  // Visibility is the access rules': refused, not ignored.
  expect((await npm.npm(['access', 'set', 'status=private', 'tfa-erin-pkg'])).code).not.toBe(0);
  // Two-factor authentication for log-ins only, and an automation token made now.
  const started = await registry.request('POST', '/-/npm/v1/user', { token, body: { tfa: { password, mode: 'auth-only' } } });
  const secret = new URL(started.body.tfa).searchParams.get('secret')!;
  expect((await registry.request('POST', '/-/npm/v1/user', { token, body: { tfa: [codeOf(secret)] } })).status).toBe(200);
  const made = await npm.npm(['token', 'create', '--password', password, '--bypass-2fa', '--otp', codeOf(secret)]);
  const automation = npmClient(registry.url, /Created token (\S+)/.exec(made.stdout)![1]);
  // auth-only: writes need no code yet.
  expect((await publish(npm, 'tfa-erin-pkg', '1.1.0')).code).toBe(0);
  expect((await npm.npm(['access', 'set', 'mfa=publish', 'tfa-erin-pkg'])).code).toBe(0);
  const bare = await publish(npm, 'tfa-erin-pkg', '1.2.0');
  expect(bare.code).not.toBe(0);
  expect(bare.output).toMatch(/EOTP|one-time pass/i);
  expect((await publish(automation, 'tfa-erin-pkg', '1.2.0')).code).not.toBe(0);
  expect((await publish(npm, 'tfa-erin-pkg', '1.2.0', ['--otp', codeOf(secret)])).code).toBe(0);
  // automation: the automation token writes without a code again.
  expect((await npm.npm(['access', 'set', 'mfa=automation', 'tfa-erin-pkg', '--otp', codeOf(secret)])).code).toBe(0);
  expect((await publish(automation, 'tfa-erin-pkg', '1.3.0')).code).toBe(0);
  // A maintainer without two-factor authentication cannot write it at all.
  const other = await registry.signup('tfa-frank', password);
  expect((await npm.npm(['owner', 'add', 'tfa-frank', 'tfa-erin-pkg', '--otp', codeOf(secret)])).code).toBe(0);
  const frank = await publish(npmClient(registry.url, other), 'tfa-erin-pkg', '1.4.0');
  expect(frank.code).not.toBe(0);
  expect(frank.output).toContain('require two-factor authentication');
  // none: back to the writers' own settings; the packument never shows the setting.
  expect((await npm.npm(['access', 'set', 'mfa=none', 'tfa-erin-pkg', '--otp', codeOf(secret)])).code).toBe(0);
  expect((await publish(npmClient(registry.url, other), 'tfa-erin-pkg', '1.4.0')).code).toBe(0);
  const packument = await (await fetch(registry.url + '/tfa-erin-pkg')).json();
  expect(JSON.stringify(packument)).not.toContain('registry_mfa');
});
