import { inCidr, LoginRefused, LoginThrottle } from '../../gateway/throttle';
import { HttpError } from '../../gateway/errors';

describe('login throttle', () => {
  const statusOf = (fn: () => void) => {
    try {
      fn();
      return 'ok';
    } catch (e) {
      return (e as HttpError).status + ' ' + (e as HttpError).headers['Retry-After'];
    }
  };

  const limits = { pairLimit: 3, accountLimit: 5, addressLimit: 6, windowMs: 60_000, accountWindowMs: 20_000, knownMs: 600_000 };

  it('blocks one account from one address after the limit, for the rest of the window, and nobody else', () => {
    const throttle = new LoginThrottle(limits);
    for (let i = 0; i < 3; i++) throttle.fail('eve', '10.0.0.1', 1000 + i);
    expect(statusOf(() => throttle.check('eve', '10.0.0.1', 2000))).toBe('429 59');
    expect(statusOf(() => throttle.check('eve', '10.0.0.2', 2000))).toBe('ok');
    expect(statusOf(() => throttle.check('admin', '10.0.0.1', 2000))).toBe('ok');
    expect(statusOf(() => throttle.check('eve', '10.0.0.1', 61_001))).toBe('ok');
  });

  it('an account guessed at from many addresses waits only the short account window', () => {
    const throttle = new LoginThrottle(limits);
    for (let i = 0; i < 5; i++) throttle.fail('eve', '10.0.1.' + i, 1000);
    expect(statusOf(() => throttle.check('eve', '10.9.9.9', 2000))).toBe('429 19');
    expect(statusOf(() => throttle.check('eve', '10.9.9.9', 21_001))).toBe('ok');
  });

  it('the owner logs in from an address that worked before while the account is under attack', () => {
    const throttle = new LoginThrottle(limits);
    throttle.succeed('eve', '192.0.2.1', 1);
    for (let i = 0; i < 5; i++) throttle.fail('eve', '10.0.1.' + i, 1000);
    expect(statusOf(() => throttle.check('eve', '192.0.2.1', 2000))).toBe('ok');
    expect(statusOf(() => throttle.check('eve', '192.0.2.2', 2000))).toMatch(/^429/);
  });

  it('blocks an address that guesses many user names, except for accounts known there', () => {
    const throttle = new LoginThrottle(limits);
    throttle.succeed('carol', '192.0.2.7', 1);
    for (const user of ['a', 'b', 'c', 'd', 'e', 'f']) throttle.fail(user, '192.0.2.7', 1000);
    expect(statusOf(() => throttle.check('g', '192.0.2.7', 1000))).toMatch(/^429/);
    expect(statusOf(() => throttle.check('carol', '192.0.2.7', 1000))).toBe('ok');
    expect(statusOf(() => throttle.check('g', '192.0.2.8', 1000))).toBe('ok');
  });

  it('a successful login starts the pair again', () => {
    const throttle = new LoginThrottle(limits);
    throttle.fail('eve', '192.0.2.1', 1);
    throttle.fail('eve', '192.0.2.1', 2);
    throttle.succeed('eve', '192.0.2.1', 3);
    throttle.fail('eve', '192.0.2.1', 4);
    expect(statusOf(() => throttle.check('eve', '192.0.2.1', 5))).toBe('ok');
  });
});

describe('login throttle, attempts in flight', () => {
  const limits = { pairLimit: 3, accountLimit: 5, addressLimit: 6, windowMs: 60_000, accountWindowMs: 20_000, knownMs: 600_000 };

  it('counts an attempt when it is let through, so parallel guesses stop at the limit before any is checked', () => {
    const throttle = new LoginThrottle(limits);
    const letThrough: unknown[] = [];
    const refused: number[] = [];
    for (let i = 0; i < 50; i++) {
      try {
        letThrough.push(throttle.begin('eve', '10.0.0.1', 1000));
      } catch (err) {
        expect(err).toBeInstanceOf(LoginRefused);
        refused.push((err as LoginRefused).status);
      }
    }
    expect(letThrough).toHaveLength(3);
    expect(refused).toHaveLength(47);
    expect(new Set(refused)).toEqual(new Set([429]));
  });

  it('a success takes its attempt back, an attempt never checked is released, a failure stays counted', () => {
    const throttle = new LoginThrottle(limits);
    const first = throttle.begin('eve', '10.0.0.1', 1000);
    const second = throttle.begin('eve', '10.0.0.1', 1001);
    const third = throttle.begin('eve', '10.0.0.1', 1002);
    expect(() => throttle.begin('eve', '10.0.0.1', 1003)).toThrow(LoginRefused);
    throttle.release(first); // its client left: never checked
    const fourth = throttle.begin('eve', '10.0.0.1', 1004);
    throttle.succeed(second); // the pair starts again
    expect(() => throttle.begin('eve', '10.0.0.1', 1005)).not.toThrow();
    void third;
    void fourth;
    // Failures stay counted against the account from other addresses.
    const other = new LoginThrottle(limits);
    for (let i = 0; i < 5; i++) other.begin('eve', '10.0.2.' + i, 1000);
    expect(() => other.begin('eve', '10.0.3.1', 1001)).toThrow(LoginRefused);
  });
});

describe('CIDR', () => {
  it.each([
    ['127.0.0.1', '127.0.0.0/8', true],
    ['::ffff:127.0.0.1', '127.0.0.0/8', true],
    ['10.1.2.3', '10.1.0.0/16', true],
    ['10.2.0.1', '10.1.0.0/16', false],
    ['192.0.2.5', '192.0.2.5/32', true],
    ['192.0.2.6', '192.0.2.5/32', false],
    ['8.8.8.8', '0.0.0.0/0', true],
    ['::1', '127.0.0.0/8', false],
    ['1.2.3.4', 'garbage', false],
  ])('%s in %s: %s', (address, cidr, expected) => {
    expect(inCidr(address, cidr)).toBe(expected);
  });
});
