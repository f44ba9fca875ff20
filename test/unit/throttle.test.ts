import { inCidr, LoginThrottle } from '../../gateway/throttle';
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

  it('blocks a user after the limit, for the rest of the window', () => {
    const throttle = new LoginThrottle(3, 60_000);
    for (let i = 0; i < 3; i++) throttle.fail('eve', '10.0.0.' + i, 1000 + i);
    expect(statusOf(() => throttle.check('eve', '10.9.9.9', 2000))).toBe('429 59');
    expect(statusOf(() => throttle.check('eve', '10.9.9.9', 61_001))).toBe('ok');
  });

  it('blocks an address that guesses many user names', () => {
    const throttle = new LoginThrottle(3, 60_000);
    for (const user of ['a', 'b', 'c']) throttle.fail(user, '192.0.2.7', 1000);
    expect(statusOf(() => throttle.check('d', '192.0.2.7', 1000))).toMatch(/^429/);
    expect(statusOf(() => throttle.check('d', '192.0.2.8', 1000))).toBe('ok');
  });

  it('a successful login clears the user, not the address', () => {
    const throttle = new LoginThrottle(2, 60_000);
    throttle.fail('eve', '192.0.2.1', 1);
    throttle.fail('eve', '192.0.2.2', 2);
    throttle.succeed('eve');
    expect(statusOf(() => throttle.check('eve', '192.0.2.3', 3))).toBe('ok');
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
