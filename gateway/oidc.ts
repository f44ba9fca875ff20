/**
 * Verification of a CI's ID token (an OIDC JWT) for trusted publishing: its issuer must be one the
 * registry allows (`OIDC_ISSUERS`), its signature (RS256 or ES256) one of the keys that issuer
 * publishes, its audience `npm:<registry host>` (what npm asks its CI for), and its times current
 * (a small clock skew allowed). The claims it names are then the trust's to check (core/trust.ts).
 *
 * An issuer's keys come from its discovery document (`<issuer>/.well-known/openid-configuration`,
 * its `jwks_uri`), fetched through the outbound request policy like every request the registry makes
 * (an allowed issuer's own host may be private; a `jwks_uri` elsewhere must pass the policy on its
 * own), bounded in size and time. They are kept for ten minutes (an hour while the issuer cannot be
 * reached); a token signed with a key not among them fetches them again, at most once every thirty
 * seconds per issuer.
 */
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, JSONWebKeySet, JWTPayload, jwtVerify } from 'jose';
import { Config } from '../config';
import { AllowedIssuer } from '../core/trust';
import { fetchFailure, outboundRequest, readAll } from '../replication/upstream';
import { HttpError } from './errors';

/** How long an issuer's keys are used before they are fetched again. */
const KEYS_TTL_MS = 10 * 60_000;
/** How long keys fetched before still verify while their issuer cannot be reached. */
const STALE_KEYS_MS = 60 * 60_000;
/** The least time between two fetches of an issuer's keys (a token with an unknown key asks again). */
const REFETCH_MS = 30_000;
/** The clock skew allowed on `exp`, `nbf` and `iat`. */
export const CLOCK_SKEW_SECONDS = 60;
/** How long the registry waits for an issuer's documents, and how large they may be. */
const FETCH_TIMEOUT_MS = 5000;
const MAX_DOCUMENT_BYTES = 256 * 1024;
/** Longer ID tokens are refused unread (GitHub's and GitLab's are about 1-2 KB). */
export const MAX_ID_TOKEN_LENGTH = 16 * 1024;

/** A refusal of an ID token: 401 with words that say what is wrong and what to do. */
export const refusedToken = (message: string): HttpError => new HttpError(401, message);

interface IssuerKeys {
  keys: ReturnType<typeof createLocalJWKSet>;
  fetchedAt: number;
}

/** A verified ID token: its claims and the allowed issuer that signed it. */
export interface VerifiedIdToken {
  claims: JWTPayload & Record<string, unknown>;
  issuer: AllowedIssuer;
}

const normalIssuer = (issuer: string): string => issuer.replace(/\/+$/, '');

export class IdTokenVerifier {
  private readonly cache = new Map<string, IssuerKeys>();
  private readonly fetching = new Map<string, Promise<IssuerKeys>>();

  constructor(private readonly config: Pick<Config, 'oidcIssuers' | 'outbound'>) {}

  /** The allowed issuer `iss` names, or null. */
  allowed(iss: string): AllowedIssuer | null {
    return this.config.oidcIssuers.find((entry) => normalIssuer(entry.issuer) === normalIssuer(iss)) || null;
  }

  /**
   * Verifies `token` for `audience`; throws a 401 `HttpError` that says why it is refused (or a 424
   * when the issuer's keys cannot be had, which is not the CI's fault).
   */
  async verify(token: string, audience: string): Promise<VerifiedIdToken> {
    if (token.length > MAX_ID_TOKEN_LENGTH) throw refusedToken('The ID token is longer than ' + MAX_ID_TOKEN_LENGTH + ' characters; send the JWT your CI issued (NPM_ID_TOKEN, or GitHub\'s id-token).');
    let unverified: JWTPayload;
    let kid: string | undefined;
    try {
      unverified = decodeJwt(token);
      const header = decodeProtectedHeader(token);
      kid = typeof header.kid === 'string' ? header.kid : undefined;
    } catch {
      throw refusedToken('The credential sent for trusted publishing is not a JWT: send your CI\'s OIDC ID token (GitLab: an id_tokens entry NPM_ID_TOKEN with aud "' + audience + '"; GitHub Actions: permissions id-token: write).');
    }
    const iss = typeof unverified.iss === 'string' ? unverified.iss : '';
    const issuer = this.allowed(iss);
    if (!issuer) {
      throw refusedToken('ID tokens from the issuer "' + iss + '" are not accepted by this registry; an admin lists the issuers it trusts in OIDC_ISSUERS (now: ' + this.config.oidcIssuers.map((i) => i.issuer).join(', ') + ').');
    }
    let keys = await this.keysOf(issuer.issuer, false);
    for (let attempt = 0; ; attempt++) {
      try {
        const { payload } = await jwtVerify(token, keys.keys, {
          issuer: iss,
          audience,
          algorithms: ['RS256', 'ES256'],
          clockTolerance: CLOCK_SKEW_SECONDS,
          requiredClaims: ['exp', 'iat'],
        });
        if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + CLOCK_SKEW_SECONDS) throw refusedToken('The ID token was issued in the future (iat); check the clocks of the CI and of the registry.');
        return { claims: payload as JWTPayload & Record<string, unknown>, issuer };
      } catch (err) {
        if (err instanceof HttpError) throw err;
        // A key the issuer added since its keys were fetched: fetch them again (not too often).
        if (err instanceof joseErrors.JWKSNoMatchingKey && attempt === 0 && Date.now() - keys.fetchedAt >= REFETCH_MS) {
          keys = await this.keysOf(issuer.issuer, true);
          continue;
        }
        throw refusal(err, audience, iss, kid);
      }
    }
  }

  /** The keys of `issuer`, from the cache unless stale or `again`; concurrent callers share one fetch. */
  private async keysOf(issuer: string, again: boolean): Promise<IssuerKeys> {
    const kept = this.cache.get(issuer);
    if (kept && !again && Date.now() - kept.fetchedAt < KEYS_TTL_MS) return kept;
    let pending = this.fetching.get(issuer);
    if (!pending) {
      pending = this.fetchKeys(issuer).finally(() => this.fetching.delete(issuer));
      this.fetching.set(issuer, pending);
    }
    try {
      return await pending;
    } catch (err) {
      // Keys fetched before still verify for a while when the issuer cannot be reached.
      if (kept && Date.now() - kept.fetchedAt < STALE_KEYS_MS) return kept;
      throw err;
    }
  }

  private async fetchKeys(issuer: string): Promise<IssuerKeys> {
    const discovery = await this.fetchJson(issuer + '/.well-known/openid-configuration', issuer, 'its discovery document');
    const jwksUri = discovery.jwks_uri;
    if (typeof jwksUri !== 'string' || !/^https?:\/\//.test(jwksUri)) {
      throw unavailable(issuer, 'its discovery document names no http(s) jwks_uri');
    }
    if (typeof discovery.issuer === 'string' && normalIssuer(discovery.issuer) !== normalIssuer(issuer)) {
      throw unavailable(issuer, 'its discovery document names another issuer ("' + discovery.issuer + '")');
    }
    const jwks = await this.fetchJson(jwksUri, issuer, 'its keys (' + jwksUri + ')');
    if (!Array.isArray(jwks.keys)) throw unavailable(issuer, 'its keys (' + jwksUri + ') are not a JWK set');
    let keys: ReturnType<typeof createLocalJWKSet>;
    try {
      keys = createLocalJWKSet(jwks as unknown as JSONWebKeySet);
    } catch (err) {
      throw unavailable(issuer, 'its keys (' + jwksUri + ') are not a valid JWK set (' + (err as Error).message + ')');
    }
    const entry = { keys, fetchedAt: Date.now() };
    this.cache.set(issuer, entry);
    return entry;
  }

  private async fetchJson(url: string, issuer: string, what: string): Promise<Record<string, unknown>> {
    let text: string;
    try {
      const answer = await outboundRequest(new URL(url), {
        policy: this.config.outbound,
        headers: { accept: 'application/json', 'user-agent': 'couch-npm-registry-oidc' },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        maxBytes: MAX_DOCUMENT_BYTES,
      });
      if (answer.status !== 200) {
        answer.body.resume();
        throw unavailable(issuer, what + ' answered ' + answer.status);
      }
      text = (await readAll(answer.body)).toString('utf8');
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw unavailable(issuer, what + ' ' + fetchFailure(err).words);
    }
    try {
      const parsed = JSON.parse(text) as unknown;
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
    } catch {
      /* said below */
    }
    throw unavailable(issuer, what + ' is not a JSON object');
  }
}

/** The issuer's keys could not be had: 424, as for an upstream that failed (npm shows it at once, without retrying). */
function unavailable(issuer: string, why: string): HttpError {
  return new HttpError(424, 'The keys of the ID token\'s issuer ' + issuer + ' could not be fetched: ' + why + '. Try again later; if it lasts, an admin should check OIDC_ISSUERS and the outbound policy (OUTBOUND_ALLOW_PRIVATE).');
}

/** The words for a token jose refused. */
function refusal(err: unknown, audience: string, iss: string, kid: string | undefined): HttpError {
  if (err instanceof joseErrors.JWTExpired) return refusedToken('The ID token expired (exp); CI ID tokens live minutes: request a fresh one in the job that publishes.');
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return refusedToken('The ID token\'s audience (aud) is not "' + audience + '": ask your CI for a token with that audience (GitLab: id_tokens: NPM_ID_TOKEN: aud: "' + audience + '"; npm asks GitHub Actions for it itself).');
    if (err.claim === 'nbf') return refusedToken('The ID token is not valid yet (nbf); check the clocks of the CI and of the registry.');
    if (err.claim === 'iat' || err.claim === 'exp') return refusedToken('The ID token has no valid "' + err.claim + '" claim; send the token your CI issued.');
    return refusedToken('The ID token\'s claim "' + err.claim + '" is not valid (' + err.reason + ').');
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return refusedToken('The ID token is signed with a key (kid ' + String(kid) + ') that its issuer ' + iss + ' does not publish: it is forged or stale.');
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return refusedToken('The ID token\'s signature does not verify against the keys its issuer ' + iss + ' publishes: it is forged or altered.');
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return refusedToken('The ID token is signed with an algorithm this registry does not accept; RS256 and ES256 are.');
  if (err instanceof joseErrors.JOSEError) return refusedToken('The ID token is not valid (' + err.message + '); send the token your CI issued.');
  return refusedToken('The ID token could not be verified (' + (err as Error).message + ').');
}
