/**
 * Throttling of password guesses, shared by every login path of a process (the gateway's Basic,
 * legacy login, token creation and pages, and the embedded CouchDB port's Basic and `POST /_session`),
 * so that guessing passwords is slow while nobody else is locked out for long:
 * - one account from one address: `pairLimit` attempts within `windowMs`, then that pair waits;
 * - one account from everywhere: `accountLimit` attempts within the shorter `accountWindowMs`, then
 *   the account waits, except from addresses it logged in from successfully (so an attacker cannot
 *   keep its owner out);
 * - one address across accounts (password spraying): `addressLimit` attempts within `windowMs`,
 *   except for accounts that logged in from there successfully (behind a reverse proxy without
 *   `TRUST_PROXY`, every user shares one address).
 * An attempt counts from the moment it is let through (`begin`), before its password is hashed, so
 * that parallel guesses cannot all pass the check before the first failure is recorded; a success
 * takes its attempt back, an attempt that was never checked (its client left, the hashing queue was
 * full) is released. Kept in memory: each process throttles what it sees (a cache, not state to
 * share).
 *
 * `loginAttempt` carries, through the asynchronous calls of one login, who tries (address), what
 * throttle counts it and when the client gave up: the password check deep below reads it.
 */
import { AsyncLocalStorage } from 'async_hooks';

export interface ThrottleLimits {
  pairLimit: number;
  accountLimit: number;
  addressLimit: number;
  windowMs: number;
  accountWindowMs: number;
  /** How long a successful login keeps an address known for its account. */
  knownMs: number;
}

export const DEFAULT_LIMITS: ThrottleLimits = {
  pairLimit: 10,
  accountLimit: 50,
  addressLimit: 100,
  windowMs: 15 * 60 * 1000,
  accountWindowMs: 5 * 60 * 1000,
  knownMs: 30 * 24 * 60 * 60 * 1000,
};

/** A login refused before its password was checked: 429 (throttled) or 503 (too many checks waiting), with when to retry. */
export class LoginRefused extends Error {
  readonly headers: Record<string, string>;

  constructor(
    readonly status: 429 | 503,
    message: string,
    readonly retryAfter: number,
  ) {
    super(message);
    this.headers = { 'Retry-After': String(retryAfter) };
  }
}

/** One attempt let through by `begin`: settled once with `succeed`, `fail` or `release`. */
export interface AttemptTicket {
  user: string;
  address: string;
  at: number;
}

export class LoginThrottle {
  private readonly attempts = new Map<string, number[]>();
  private readonly known = new Map<string, number>();
  private readonly limits: ThrottleLimits;

  constructor(limits: Partial<ThrottleLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  private recent(key: string, windowMs: number, now: number): number[] {
    const list = (this.attempts.get(key) || []).filter((t) => now - t < windowMs);
    if (list.length) this.attempts.set(key, list);
    else this.attempts.delete(key);
    return list;
  }

  private keys(user: string, address: string): [string, number][] {
    const { windowMs, accountWindowMs } = this.limits;
    return [['pair:' + user + '\0' + address, windowMs], ['user:' + user, accountWindowMs], ['addr:' + address, windowMs]];
  }

  private buckets(user: string, address: string, now: number): { key: string; limit: number; windowMs: number }[] {
    const { pairLimit, accountLimit, addressLimit, windowMs, accountWindowMs, knownMs } = this.limits;
    const pair = 'pair:' + user + '\0' + address;
    const knownAt = this.known.get(pair);
    const isKnown = knownAt !== undefined && now - knownAt < knownMs;
    const buckets = [{ key: pair, limit: pairLimit, windowMs }];
    if (!isKnown) {
      buckets.push({ key: 'user:' + user, limit: accountLimit, windowMs: accountWindowMs });
      buckets.push({ key: 'addr:' + address, limit: addressLimit, windowMs });
    }
    return buckets;
  }

  /** Throws a 429 `LoginRefused` when this account, from this address, may not try again yet. */
  check(user: string, address: string, now = Date.now()): void {
    for (const { key, limit, windowMs } of this.buckets(user, address, now)) {
      const list = this.recent(key, windowMs, now);
      if (list.length >= limit) {
        const retryAfter = Math.max(1, Math.ceil((list[list.length - limit] + windowMs - now) / 1000));
        throw new LoginRefused(429, 'Too many failed logins; try again in ' + retryAfter + ' seconds (tokens keep working).', retryAfter);
      }
    }
  }

  /**
   * Lets one attempt through, counted at once as if it failed (so that attempts in flight count), or
   * throws a 429 `LoginRefused`. Settle the ticket with `succeed`, `fail` or `release`.
   */
  begin(user: string, address: string, now = Date.now()): AttemptTicket {
    this.check(user, address, now);
    this.fail(user, address, now);
    return { user, address, at: now };
  }

  /** Records a failed attempt (without a ticket: one that was never let through `begin`). */
  fail(user: string, address: string, now = Date.now()): void {
    for (const [key, window] of this.keys(user, address)) {
      const list = this.recent(key, window, now);
      list.push(now);
      this.attempts.set(key, list);
    }
    if (this.attempts.size > 100_000) this.attempts.clear();
  }

  /** Takes back an attempt that was never checked (its client left, or the check was refused). */
  release(ticket: AttemptTicket): void {
    for (const [key] of this.keys(ticket.user, ticket.address)) {
      const list = this.attempts.get(key);
      const at = list ? list.indexOf(ticket.at) : -1;
      if (list && at !== -1) list.splice(at, 1);
      if (list && list.length === 0) this.attempts.delete(key);
    }
  }

  /**
   * A successful login: its attempt is taken back, the pair starts again, and the address becomes
   * known for the account. With a ticket, or with the user and address of an attempt made without one.
   */
  succeed(ticketOrUser: AttemptTicket | string, address?: string, now = Date.now()): void {
    const ticket = typeof ticketOrUser === 'string' ? null : ticketOrUser;
    if (ticket) this.release(ticket);
    const pair = 'pair:' + (ticket ? ticket.user : ticketOrUser) + '\0' + (ticket ? ticket.address : address);
    this.attempts.delete(pair);
    this.known.set(pair, now);
    if (this.known.size > 100_000) this.known.clear();
  }
}

/** The throttle every login path of this process shares (the gateway and the embedded CouchDB port). */
export const LOGIN_THROTTLE = new LoginThrottle();

/** What a password check deep below needs to know about the login it serves. */
export interface LoginAttempt {
  /** The client's address. */
  address: string;
  /** The throttle that counts it. */
  throttle: LoginThrottle;
  /** Aborted when the client has gone: a check still waiting for the hashing queue is then dropped. */
  signal?: AbortSignal;
}

export const loginAttempt = new AsyncLocalStorage<LoginAttempt>();
