/**
 * Mirrored versions an advisory of the upstream covers (`origin_advisories.affected`, written by
 * replication/advisories.ts): key `[name, version]`, value the advisory (id, title, url, severity),
 * one row per advisory. For `/-/replication`'s list of what the vulnerability policy holds back.
 */
import { PackageDoc } from '../../core/types';
import { Emit } from './types';

export default function advisoriesByVersion(doc: PackageDoc, emit: Emit): void {
  const record = doc && (doc.origin_advisories as { affected?: Record<string, string[]>; advisories?: Record<string, { id: unknown; title: unknown; url: unknown; severity: unknown }> } | undefined);
  if (!record || typeof doc.name !== 'string' || !record.affected || !record.advisories) return;
  for (const version of Object.keys(record.affected)) {
    const ids = record.affected[version];
    if (!ids || !ids.length || !doc.versions || !doc.versions[version]) continue;
    for (let i = 0; i < ids.length; i++) {
      const advisory = record.advisories[ids[i]];
      if (advisory) emit([doc.name, version], { id: advisory.id, title: advisory.title, url: advisory.url, severity: advisory.severity });
    }
  }
}
