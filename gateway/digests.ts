/** Digests of tarballs, with Node's crypto: what the pure domain (`core/packument.ts`) asks for at publish. */
import { createHash } from 'crypto';
import ssri from 'ssri';
import { DigestCheck } from '../core/packument';

/** Which digest of `dist` the tarball (base64 `data`) fails, or null when both match. */
export const checkDigests: DigestCheck = (data, dist) => {
  const tarball = Buffer.from(data, 'base64');
  let integrityOk: boolean;
  try {
    integrityOk = !!ssri.checkData(tarball, dist.integrity);
  } catch {
    integrityOk = false;
  }
  if (!integrityOk) return 'integrity';
  return createHash('sha1').update(tarball).digest('hex') === dist.shasum ? null : 'shasum';
};

/** The ETag of stored bytes as CouchDB gives attachments: the quoted base64 MD5. */
export function md5Etag(data: Buffer): string {
  return '"' + createHash('md5').update(data).digest('base64') + '"';
}
