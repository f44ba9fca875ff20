/**
 * The license a published tarball's own package.json declares, checked against the license policy
 * when it checks publishes: npm reads the package.json in the tarball once installed (and so do
 * license checkers), while the policy read only the manifest of the publish, which a hand-made
 * publish can word otherwise. Read only when the policy checks publishes.
 */
import { gunzipSync } from 'zlib';
import { declaredLicense, LicensePolicy, publishLicenseProblem } from '../core/licenses';
import { versionOfTarball } from '../core/names';
import { VersionManifest } from '../core/types';

/** The most bytes a tarball is unpacked to, looking for its package.json. */
const MAX_UNPACKED = 256 * 1024 * 1024;

/** A NUL-terminated field of a tar header. */
function field(header: Buffer, start: number, length: number): string {
  const raw = header.subarray(start, start + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? raw.length : end).toString('utf8');
}

/**
 * The package.json at the top folder of the tarball `tgz` (`package/package.json`), as an extraction
 * leaves it (the last entry of that path wins), or null when there is none or the tarball cannot be
 * read. Long names (GNU `L`, pax `path`) are followed.
 */
export function packageJsonOf(tgz: Buffer): Record<string, unknown> | null {
  let tar: Buffer;
  try {
    tar = gunzipSync(tgz, { maxOutputLength: MAX_UNPACKED });
  } catch {
    return null;
  }
  let found: Record<string, unknown> | null = null;
  let longName: string | null = null;
  let offset = 0;
  while (offset + 512 <= tar.length) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    const size = parseInt(field(header, 124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) break;
    const type = String.fromCharCode(header[156]);
    const body = tar.subarray(offset + 512, offset + 512 + size);
    const prefix = field(header, 257, 6).startsWith('ustar') ? field(header, 345, 155) : '';
    const path = longName !== null ? longName : (prefix ? prefix + '/' : '') + field(header, 0, 100);
    longName = null;
    if (type === 'L') {
      longName = field(body, 0, body.length);
    } else if (type === 'x') {
      const pax = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      if (pax) longName = pax[1];
    } else if ((type === '0' || type === '\0') && /^[^/]+\/package\.json$/.test(path.replace(/^\.\//, ''))) {
      try {
        const parsed = JSON.parse(body.toString('utf8')) as unknown;
        found = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
      } catch {
        found = null;
      }
    }
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return found;
}

/**
 * Why the license policy refuses a publish body whose tarball's package.json declares another
 * license than its manifest, one the policy holds back; null when it does not check publishes, or
 * every tarball agrees with its manifest or passes.
 */
export function tarballLicenseProblem(policy: LicensePolicy | undefined, name: string, versions: unknown, attachments: unknown): string | null {
  if (!policy || !policy.checkPublishes || !versions || typeof versions !== 'object' || !attachments || typeof attachments !== 'object') return null;
  const manifests = versions as Record<string, VersionManifest>;
  for (const [file, attachment] of Object.entries(attachments as Record<string, { data?: unknown }>)) {
    if (!attachment || typeof attachment.data !== 'string') continue;
    const version = versionOfTarball({ name, versions: manifests }, file);
    if (!version) continue;
    const packageJson = packageJsonOf(Buffer.from(attachment.data, 'base64'));
    if (!packageJson || declaredLicense(packageJson as VersionManifest) === declaredLicense(manifests[version])) continue;
    const problem = publishLicenseProblem(policy, name, { [version]: packageJson });
    if (problem) return 'The package.json in the tarball declares another license than the publish says: ' + problem;
  }
  return null;
}
