/**
 * The check of a provenance bundle published with a version (`npm publish --provenance`), done
 * offline before the version is stored: what of a Sigstore bundle can be verified without Sigstore's
 * services. The bundle must be a Sigstore bundle (v0.1 to v0.3) holding a DSSE envelope; its payload
 * an in-toto statement whose one subject is `pkg:npm/<name>@<version>` with the sha512 digest of the
 * published tarball, and whose predicate is SLSA provenance (v1 or v0.2); its one signature must
 * verify, over the envelope's PAE encoding, against the public key of the signing certificate in the
 * bundle.
 *
 * With a trusted root (`PROVENANCE_TRUSTED_ROOT`: a Sigstore `trusted_root.json`, such as the public
 * one npm ships in `@sigstore/tuf`'s seeds), the signing certificate must also have been issued by one
 * of its certificate authorities (Sigstore's Fulcio), when that authority was valid.
 *
 * Not verified here (README, "Provenance"): that the certificate was valid when it signed (Fulcio's
 * live ten minutes, and only the transparency log proves the time), the transparency-log entry
 * itself (Rekor's signed timestamp and inclusion proof), and whether the identity in the certificate
 * (the CI workflow) is one the package trusts. Clients that verify provenance (`npm audit signatures`,
 * with Sigstore's trusted root from TUF, online) check them.
 */
import { readFileSync } from 'fs';
import { KeyObject, verify, X509Certificate } from 'crypto';
import { invalid } from '../core/errors';
import { KeptProvenance } from '../core/packument';
import { isObject } from '../core/types';

/** The Sigstore bundle media types accepted (npm 9.5+ sends v0.1 to v0.3). */
const BUNDLE_MEDIA_TYPES = [
  'application/vnd.dev.sigstore.bundle+json;version=0.1',
  'application/vnd.dev.sigstore.bundle+json;version=0.2',
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
  'application/vnd.dev.sigstore.bundle.v0.3+json',
];

const INTOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const INTOTO_STATEMENT_TYPES = ['https://in-toto.io/Statement/v0.1', 'https://in-toto.io/Statement/v1'];

/** The predicate types of provenance npm makes and its registry serves. */
export const SLSA_PROVENANCE_TYPES = ['https://slsa.dev/provenance/v1', 'https://slsa.dev/provenance/v0.2'];

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The package URL npm signs provenance for (`npm-package-arg`'s `toPurl`): `pkg:npm/%40scope/name@1.0.0`. */
export function packageUrl(name: string, version: string): string {
  return 'pkg:npm/' + name.replace(/^@/, '%40') + '@' + version;
}

/** DSSE's pre-authentication encoding of a payload: what the envelope's signature signs. */
export function preAuthEncoding(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from('DSSEv1 ' + type.length + ' '), type, Buffer.from(' ' + payload.length + ' '), payload]);
}

/** The digest a signature over data is made with for `key` (null: the algorithm names its own, as Ed25519). */
function digestFor(key: KeyObject): string | null {
  if (key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448') return null;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (curve === 'secp384r1') return 'sha384';
  if (curve === 'secp521r1') return 'sha512';
  return 'sha256';
}

/** Certificate authorities whose signing certificates are accepted (from a Sigstore trusted root). */
export interface TrustedRoot {
  /** Each authority's chain, issuer of the signing certificates first, and when it was valid. */
  authorities: { chain: X509Certificate[]; start?: Date; end?: Date }[];
}

/**
 * Reads a Sigstore trusted root (`application/vnd.dev.sigstore.trustedroot+json`: its
 * `certificateAuthorities`, each with `certChain.certificates` and `validFor`). Throws an Error
 * naming the file and what is wrong, for start-up.
 */
export function readTrustedRoot(path: string): TrustedRoot {
  const problem = (why: string) => new Error('PROVENANCE_TRUSTED_ROOT (' + path + '): ' + why +
    '. It must be a Sigstore trusted_root.json, such as the one npm ships in node_modules/@sigstore/tuf/seeds.json.');
  let root: unknown;
  try {
    root = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw problem('cannot be read as JSON (' + (err as Error).message + ')');
  }
  if (!isObject(root) || !Array.isArray(root.certificateAuthorities) || root.certificateAuthorities.length === 0) {
    throw problem('it lists no "certificateAuthorities"');
  }
  const date = (value: unknown) => (typeof value === 'string' && !isNaN(Date.parse(value)) ? new Date(value) : undefined);
  const authorities = root.certificateAuthorities.map((authority, i) => {
    const certificates = isObject(authority) && isObject(authority.certChain) ? authority.certChain.certificates : undefined;
    if (!Array.isArray(certificates) || certificates.length === 0) throw problem('certificate authority ' + i + ' has no "certChain.certificates"');
    const chain = certificates.map((c) => {
      try {
        return new X509Certificate(Buffer.from(String(isObject(c) ? c.rawBytes : ''), 'base64'));
      } catch {
        throw problem('a certificate of certificate authority ' + i + ' is not an X.509 certificate');
      }
    });
    const validFor = isObject(authority) && isObject(authority.validFor) ? authority.validFor : {};
    return { chain, start: date(validFor.start), end: date(validFor.end) };
  });
  return { authorities };
}

/** Whether `certificate` was issued by one of `trust`'s authorities (its chain, link by link) while that authority was valid. */
function issuedByTrusted(certificate: X509Certificate, trust: TrustedRoot): boolean {
  const issuedAt = new Date(certificate.validFrom);
  const issued = (cert: X509Certificate, by: X509Certificate) => cert.checkIssued(by) && cert.verify(by.publicKey);
  return trust.authorities.some(({ chain, start, end }) => {
    if ((start && issuedAt < start) || (end && issuedAt > end)) return false;
    let cert = certificate;
    for (const authority of chain) {
      if (!issued(cert, authority)) return false;
      cert = authority;
    }
    return true;
  });
}

/** The signing certificate of a bundle (v0.3: `certificate`; v0.1 and v0.2: the first of `x509CertificateChain`). */
function signingCertificate(material: Record<string, unknown>, fail: (why: string) => never): X509Certificate {
  let raw: unknown;
  if (isObject(material.certificate)) raw = material.certificate.rawBytes;
  else if (isObject(material.x509CertificateChain) && Array.isArray(material.x509CertificateChain.certificates)) {
    const first = material.x509CertificateChain.certificates[0];
    raw = isObject(first) ? first.rawBytes : undefined;
  } else if (isObject(material.publicKey)) {
    fail('it is signed with a key ("publicKey"), not a signing certificate; this registry has no key to check it with. ' +
      'Publish with `npm publish --provenance` from CI, which signs with a Sigstore certificate');
  }
  if (typeof raw !== 'string' || raw === '' || !BASE64.test(raw)) {
    fail('"verificationMaterial" has no signing certificate ("certificate.rawBytes", base64 DER)');
  }
  try {
    return new X509Certificate(Buffer.from(raw, 'base64'));
  } catch {
    return fail('its signing certificate is not an X.509 certificate');
  }
}

/**
 * Checks `text`, the provenance bundle npm sent with `name@version` whose tarball's SRI digest is
 * `integrity` (checked against the tarball before), and answers what to keep; throws a domain error
 * (400) saying what is wrong. With `trust`, the signing certificate must come from one of its authorities.
 */
export function checkProvenanceBundle(
  text: string, subject: { name: string; version: string; integrity: string }, trust?: TrustedRoot,
): KeptProvenance {
  const spec = subject.name + '@' + subject.version;
  const fail = (why: string): never => {
    throw invalid('The provenance bundle of ' + spec + ' is refused: ' + why + '. The version was not published.');
  };
  let bundle: unknown;
  try {
    bundle = JSON.parse(text);
  } catch {
    return fail('it is not JSON (npm sends the Sigstore bundle as JSON text)');
  }
  if (!isObject(bundle)) return fail('it is not a JSON object');
  const mediaType = bundle.mediaType;
  if (typeof mediaType !== 'string' || BUNDLE_MEDIA_TYPES.indexOf(mediaType) === -1) {
    fail('its "mediaType" (' + JSON.stringify(mediaType) + ') is not a Sigstore bundle\'s (' + BUNDLE_MEDIA_TYPES.join(', ') + ')');
  }
  const envelope = bundle.dsseEnvelope;
  if (!isObject(envelope)) return fail('it has no "dsseEnvelope" (a signed in-toto statement)');
  if (envelope.payloadType !== INTOTO_PAYLOAD_TYPE) fail('its envelope\'s "payloadType" is not ' + INTOTO_PAYLOAD_TYPE);
  if (typeof envelope.payload !== 'string' || !BASE64.test(envelope.payload)) fail('its envelope has no base64 "payload"');
  const signatures = envelope.signatures;
  if (!Array.isArray(signatures) || signatures.length !== 1 || !isObject(signatures[0])) {
    fail('its envelope must have exactly one signature');
  }
  const sig = (signatures as Record<string, unknown>[])[0].sig;
  if (typeof sig !== 'string' || sig === '' || !BASE64.test(sig)) fail('its envelope\'s signature has no base64 "sig"');

  const payload = Buffer.from(envelope.payload as string, 'base64');
  let statement: unknown;
  try {
    statement = JSON.parse(payload.toString('utf8'));
  } catch {
    return fail('its envelope\'s payload is not JSON (an in-toto statement)');
  }
  if (!isObject(statement) || INTOTO_STATEMENT_TYPES.indexOf(statement._type as string) === -1) {
    return fail('its payload is not an in-toto statement ("_type" ' + INTOTO_STATEMENT_TYPES.join(' or ') + ')');
  }
  const predicateType = statement.predicateType;
  if (typeof predicateType !== 'string' || SLSA_PROVENANCE_TYPES.indexOf(predicateType) === -1) {
    fail('its predicate type (' + JSON.stringify(predicateType) + ') is not SLSA provenance (' + SLSA_PROVENANCE_TYPES.join(' or ') + ')');
  }
  if (!Array.isArray(statement.subject) || statement.subject.length !== 1 || !isObject(statement.subject[0])) {
    fail('its statement must name exactly one subject, the package');
  }
  const named = (statement.subject as Record<string, unknown>[])[0];
  const purl = packageUrl(subject.name, subject.version);
  if (named.name !== purl) fail('its subject is ' + JSON.stringify(named.name) + ', not this package (' + purl + ')');
  const sri = /^sha512-([A-Za-z0-9+/]+={0,2})$/.exec(subject.integrity);
  if (!sri) return fail('the version\'s "dist.integrity" is not a sha512 digest, which provenance names');
  const digest = Buffer.from(sri[1], 'base64').toString('hex');
  const signed = isObject(named.digest) ? named.digest.sha512 : undefined;
  if (signed !== digest) fail('its subject\'s sha512 digest is not the published tarball\'s (' + digest + ')');

  if (!isObject(bundle.verificationMaterial)) return fail('it has no "verificationMaterial"');
  const certificate = signingCertificate(bundle.verificationMaterial, fail);
  const key = certificate.publicKey;
  let verified: boolean;
  try {
    verified = verify(digestFor(key), preAuthEncoding(INTOTO_PAYLOAD_TYPE, payload), key, Buffer.from(sig as string, 'base64'));
  } catch {
    verified = false; // a signature that is not one (not DER), or a key that cannot verify
  }
  if (!verified) fail('its envelope\'s signature does not verify against the public key of its signing certificate');
  if (trust && !issuedByTrusted(certificate, trust)) {
    fail('its signing certificate (issued by "' + certificate.issuer.replace(/\n/g, ', ') + '") was not issued by a certificate authority of this ' +
      'registry\'s Sigstore trusted root (PROVENANCE_TRUSTED_ROOT); publish with `npm publish --provenance` from a CI that Sigstore\'s Fulcio certifies');
  }
  return { predicateType: predicateType as string, mediaType: mediaType as string, data: Buffer.from(text, 'utf8').toString('base64') };
}

