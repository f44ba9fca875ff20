/**
 * Mirrored packages for the periodic advisory check (replication/advisories.ts): key `[origin, name]`,
 * value `[versions, digest]`: the versions to ask the upstream's advisory endpoint about, and the
 * digest of the answer kept (`origin_advisories.digest`, null when none is), so that a check reads
 * and writes only the documents whose answer changed.
 */
import { PackageDoc } from '../../core/types';
import { Emit } from './types';

export default function advisoryChecks(doc: PackageDoc, emit: Emit): void {
  if (!doc || typeof doc.name !== 'string' || typeof doc.origin !== 'string' || !/^https?:/i.test(doc.origin) || !doc.versions) return;
  const record = doc.origin_advisories as { digest?: unknown } | undefined;
  emit([doc.origin, doc.name], [Object.keys(doc.versions), record && typeof record.digest === 'string' ? record.digest : null]);
}
