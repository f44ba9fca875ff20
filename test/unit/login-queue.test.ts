/**
 * The password checks behind every login (couchdb/authentication.ts), under a burst of guesses: each
 * hash is counted by the throttle before it is computed, the hashing queue serves accounts in turn,
 * refuses when full, and drops a check whose client left; identical concurrent logins share a hash;
 * a changed password is seen at once.
 */
import { Authenticator, hashUserPassword, StoredUser } from '../../couchdb/authentication';
import { loginAttempt, LoginRefused, LoginThrottle } from '../../lib/login-throttle';

const users = new Map<string, StoredUser>();
const auth = new Authenticator({ secret: 'test-secret', adminHash: async () => undefined, readUser: async (name) => users.get(name) || null });

async function addUser(name: string, password: string): Promise<void> {
  users.set(name, { name, type: 'user', roles: [], ...(await hashUserPassword(password)) });
}

/** A login as `name` from `address`, counted by `throttle`, abandoned when `signal` aborts. */
const logIn = (throttle: LoginThrottle, name: string, password: string, signal?: AbortSignal, address = '192.0.2.1') =>
  loginAttempt.run({ address, throttle, signal }, () => auth.logIn(name, password));

/** How a login ended: 'ok', 'wrong', or the refusal's status. */
const outcome = (login: Promise<unknown>) =>
  login.then(
    (caller) => (caller ? 'ok' : 'wrong'),
    (err: unknown) => (err instanceof LoginRefused ? String(err.status) : 'aborted'),
  );

beforeAll(async () => {
  await addUser('victim', 'victim-password');
  await addUser('bystander', 'bystander-password');
  await addUser('changer', 'old-password');
}, 30_000);

describe('password checks under a burst of guesses', () => {
  it('checks at most the limit of parallel guesses, and another account is served before the burst ends', async () => {
    const throttle = new LoginThrottle({ pairLimit: 6 });
    const ended: string[] = [];
    const guesses = Array.from({ length: 50 }, (_, i) => outcome(logIn(throttle, 'victim', 'guess-' + i)).then((o) => (ended.push('victim'), o)));
    const other = outcome(logIn(throttle, 'bystander', 'bystander-password')).then((o) => (ended.push('bystander'), o));
    const results = await Promise.all(guesses);
    expect(await other).toBe('ok');
    expect(results.filter((r) => r === 'wrong')).toHaveLength(6);
    expect(results.filter((r) => r === '429')).toHaveLength(44);
    // One hash at a time per account, the other slot free for others: the bystander is among the first answered.
    // The 44 refusals end at once; of the 7 hashes, the bystander's is among the first two.
    expect(ended.slice(44).indexOf('bystander')).toBeLessThanOrEqual(1);
  }, 30_000);

  it('one address guessing many accounts fills only its own share of the queue, and waits its turn among addresses', async () => {
    const throttle = new LoginThrottle({ pairLimit: 1000, accountLimit: 1000, addressLimit: 1000 });
    const ended: string[] = [];
    const sprayed = Array.from({ length: 40 }, (_, i) => outcome(logIn(throttle, 'sprayed-' + i, 'guess', undefined, '203.0.113.66')).then((o) => (ended.push(o), o)));
    const other = outcome(logIn(throttle, 'bystander', 'bystander-password', undefined, '198.51.100.7')).then((o) => (ended.push('bystander'), o));
    const results = await Promise.all(sprayed);
    expect(await other).toBe('ok');
    // Two running and sixteen waiting from that address; the rest refused at once.
    expect(results.filter((r) => r === '503')).toHaveLength(22);
    expect(results.filter((r) => r === 'wrong')).toHaveLength(18);
    // Of the hashed checks, the bystander's ends among the first three (after the two already running).
    expect(ended.slice(22).indexOf('bystander')).toBeLessThanOrEqual(2);
  }, 30_000);

  it('refuses with 503 when an account already has its queue full, and drops a check whose client left', async () => {
    const throttle = new LoginThrottle({ pairLimit: 1000, accountLimit: 1000, addressLimit: 1000 });
    const controllers = Array.from({ length: 12 }, () => new AbortController());
    const started = Date.now();
    const checks = controllers.map((c, i) => outcome(logIn(throttle, 'victim', 'queued-' + i, c.signal)));
    // One running and eight waiting: the tenth and later are refused at once.
    const refused = await Promise.all(checks.slice(9));
    expect(refused).toEqual(['503', '503', '503']);
    // The waiting ones leave when their clients do, without being hashed.
    for (const c of controllers.slice(1, 9)) c.abort(new Error('client left'));
    const left = await Promise.all(checks.slice(1, 9));
    expect(left).toEqual(Array(8).fill('aborted'));
    expect(await checks[0]).toBe('wrong');
    // Only the running hash was computed (eight more would take seconds).
    expect(Date.now() - started).toBeLessThan(2000);
    // An abandoned check is not counted: with a limit of two, the third attempt after it is the one refused.
    const strict = new LoginThrottle({ pairLimit: 2 });
    const c = new AbortController();
    const running = outcome(logIn(strict, 'victim', 'x1'));
    const waiting = outcome(logIn(strict, 'victim', 'x2', c.signal));
    c.abort(new Error('client left'));
    expect(await waiting).toBe('aborted');
    expect(await outcome(logIn(strict, 'victim', 'x3'))).toBe('wrong');
    expect(await running).toBe('wrong');
    expect(await outcome(logIn(strict, 'victim', 'x4'))).toBe('429');
  }, 30_000);

  it('identical concurrent logins share one hash and one attempt; a changed password is seen at once', async () => {
    const throttle = new LoginThrottle({ pairLimit: 2 });
    const same = await Promise.all(Array.from({ length: 20 }, () => outcome(logIn(throttle, 'changer', 'old-password'))));
    expect(same).toEqual(Array(20).fill('ok'));
    expect(await outcome(logIn(throttle, 'changer', 'old-password'))).toBe('ok'); // remembered
    await addUser('changer', 'new-password');
    expect(await outcome(logIn(throttle, 'changer', 'old-password'))).toBe('wrong');
    expect(await outcome(logIn(throttle, 'changer', 'new-password'))).toBe('ok');
  }, 30_000);

  it('an unknown name costs a hash as a known one does', async () => {
    const throttle = new LoginThrottle();
    const time = async (name: string) => {
      const started = process.hrtime.bigint();
      expect(await outcome(logIn(throttle, name, 'some-guess', undefined, '192.0.2.9'))).toBe('wrong');
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    const known = await time('bystander');
    const unknown = await time('nobody-of-that-name');
    expect(unknown).toBeGreaterThan(known / 3);
  }, 30_000);
});
