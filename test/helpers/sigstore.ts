/**
 * Sigstore provenance bundles made by the tests themselves, as `npm publish --provenance` makes them
 * in CI but without Sigstore's services: a key pair of the test's, a self-signed X.509 certificate
 * for it (DER written here with Node's crypto: Node parses certificates but does not make them), an
 * in-toto statement naming the package and its tarball's sha512, signed in a DSSE envelope (PAE).
 * Also the stand-in for npm's own check of `--provenance-file`, which asks Sigstore's TUF repository
 * online and would refuse a certificate that Sigstore's Fulcio did not issue.
 */
import { createHash, generateKeyPairSync, KeyObject, sign } from 'crypto';
import { writeFileSync } from 'fs';
import { join } from 'path';

export const SLSA_V1 = 'https://slsa.dev/provenance/v1';
export const BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json';

function der(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, content]);
}
const sequence = (...parts: Buffer[]) => der(0x30, Buffer.concat(parts));
/** A DER INTEGER of the unsigned big-endian `bytes`, minimal as DER requires (a serial that began with a zero byte made a certificate Node refuses, one time in 256). */
function integer(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const minimal = bytes.subarray(start);
  return der(0x02, minimal[0] & 0x80 ? Buffer.concat([Buffer.from([0]), minimal]) : minimal);
}
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const bytes = [40 * a + b];
  for (const n of rest) {
    const chunk = [n & 0x7f];
    for (let v = n >> 7; v > 0; v >>= 7) chunk.unshift((v & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return der(0x06, Buffer.from(bytes));
}
const commonName = (cn: string) => sequence(der(0x31, sequence(oid('2.5.4.3'), der(0x0c, Buffer.from(cn)))));
const utcTime = (date: Date) => der(0x17, Buffer.from(date.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z'));
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';

type Keys = { publicKey: KeyObject; privateKey: KeyObject };

/** A certificate authority of the test's: its keys, its name and its self-signed certificate. */
export interface Authority {
  keys: Keys;
  cn: string;
  certificate: Buffer;
}

/** An ECDSA P-256 certificate (DER) for `publicKey` named `cn`, valid for a day, issued (signed) by `issuer` or by itself. */
export function certificate(keys: Keys, cn: string, issuer?: Authority): Buffer {
  const now = Date.now();
  const tbs = sequence(
    der(0xa0, integer(Buffer.from([2]))),
    integer(createHash('sha256').update(cn + now + Math.random()).digest().subarray(0, 16)),
    sequence(oid(ECDSA_WITH_SHA256)),
    commonName(issuer ? issuer.cn : cn),
    sequence(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + 86400_000))),
    commonName(cn),
    keys.publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, (issuer ? issuer.keys : keys).privateKey);
  return sequence(tbs, sequence(oid(ECDSA_WITH_SHA256)), der(0x03, Buffer.concat([Buffer.from([0]), signature])));
}

export const selfSignedCertificate = (keys: Keys, cn = 'provenance test') => certificate(keys, cn);

export const newKeys = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

/** A new certificate authority (a stand-in for Sigstore's Fulcio). */
export function newAuthority(cn: string): Authority {
  const keys = newKeys();
  return { keys, cn, certificate: certificate(keys, cn) };
}

/** A Sigstore trusted root (`trusted_root.json`) listing `authorities`, as PROVENANCE_TRUSTED_ROOT reads it. */
export function trustedRoot(authorities: Authority[]): Record<string, unknown> {
  return {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: authorities.map((a) => ({
      subject: { commonName: a.cn },
      uri: 'https://fulcio.example',
      certChain: { certificates: [{ rawBytes: a.certificate.toString('base64') }] },
      validFor: { start: new Date(Date.now() - 86400_000).toISOString() },
    })),
  };
}

/** The package URL npm signs: `pkg:npm/%40scope/name@1.0.0`. */
export const purl = (name: string, version: string) => 'pkg:npm/' + name.replace(/^@/, '%40') + '@' + version;

/** DSSE's pre-authentication encoding. */
function pae(type: string, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from('DSSEv1 ' + Buffer.byteLength(type) + ' ' + type + ' ' + payload.length + ' '), payload]);
}

export interface BundleOptions {
  /** The subject: its package URL and the tarball's sha512 (hex). */
  subject: { name: string; sha512: string }[];
  predicateType?: string;
  /** The key that signs the envelope (default: the certificate's). */
  signWith?: KeyObject;
  /** Who issues the signing certificate (default: it is self-signed). */
  issuer?: Authority;
}

/** A Sigstore bundle (v0.3) of an SLSA provenance statement, signed by a fresh key with a certificate (self-signed unless `issuer`). */
export function provenanceBundle(options: BundleOptions): Record<string, any> {
  const keys = newKeys();
  const statement = {
    _type: 'https://in-toto.io/Statement/v1',
    subject: options.subject.map((s) => ({ name: s.name, digest: { sha512: s.sha512 } })),
    predicateType: options.predicateType || SLSA_V1,
    predicate: {
      buildDefinition: {
        buildType: 'https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1',
        externalParameters: { workflow: { ref: 'refs/heads/main', repository: 'https://git.example.com/acme/widgets', path: '.github/workflows/release.yml' } },
      },
      runDetails: { builder: { id: 'https://github.com/actions/runner/self-hosted' } },
    },
  };
  const payload = Buffer.from(JSON.stringify(statement));
  const sig = sign('sha256', pae('application/vnd.in-toto+json', payload), options.signWith || keys.privateKey);
  return {
    mediaType: BUNDLE_V03,
    verificationMaterial: { certificate: { rawBytes: certificate(keys, 'provenance test', options.issuer).toString('base64') }, tlogEntries: [], timestampVerificationData: {} },
    dsseEnvelope: { payload: payload.toString('base64'), payloadType: 'application/vnd.in-toto+json', signatures: [{ sig: sig.toString('base64'), keyid: '' }] },
  };
}

/**
 * A module for `NODE_OPTIONS=--require` that stands in for Sigstore's online verification in npm:
 * `npm publish --provenance-file` checks the bundle's subject against the package itself (kept), then
 * runs `sigstore.verify`, which fetches Sigstore's trusted root (TUF) from the internet and requires a
 * certificate from Sigstore's Fulcio. The stand-in answers that the bundle verified; everything else
 * npm does is its own. Written into `dir`; its path.
 */
export function sigstoreStandIn(dir: string): string {
  const file = join(dir, 'sigstore-stand-in.js');
  writeFileSync(file, [
    "const { dirname, join } = require('path');",
    "const { realpathSync } = require('fs');",
    'try {',
    '  const npm = join(dirname(realpathSync(process.argv[1])), "..");',
    "  const path = require.resolve('sigstore/dist/sigstore.js', { paths: [join(npm, 'node_modules', 'libnpmpublish')] });",
    '  require(path).verify = async () => undefined;',
    '} catch {}',
    '',
  ].join('\n'));
  return file;
}
