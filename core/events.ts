/**
 * What changed in a package, as the events other systems subscribe to (webhooks): a comparison of
 * the document before and after a write. Pure; the names follow npm's hooks (`package:publish`, …).
 */
import { publishedVersions } from './rules';
import { PackageDoc } from './types';

/**
 * `package:publish-refused`: a publish of a version number another copy of the registry published first
 * with other bytes (core/merge.ts). `package:stage`, `package:stage-approve`, `package:stage-reject`: a
 * version staged (`npm stage publish`), approved (its `package:publish` follows) or rejected.
 * `package:held`: mirrored versions the vulnerability policy holds back from now on, each with the
 * advisory that holds it back (gateway/advisories.ts).
 */
export type RegistryEventName =
  | 'package:publish' | 'package:unpublish' | 'package:dist-tag' | 'package:deprecate' | 'package:owner' | 'package:publish-refused'
  | 'package:stage' | 'package:stage-approve' | 'package:stage-reject' | 'package:held';

export const EVENT_NAMES: RegistryEventName[] = [
  'package:publish', 'package:unpublish', 'package:dist-tag', 'package:deprecate', 'package:owner', 'package:publish-refused',
  'package:stage', 'package:stage-approve', 'package:stage-reject', 'package:held',
];

export interface RegistryEvent {
  event: RegistryEventName;
  name: string;
  /** What changed: versions published or unpublished, tags moved, deprecations, owners added and removed. */
  change: Record<string, unknown>;
}

const versionsOf = (doc: PackageDoc | null) => Object.keys((doc && !doc._deleted && doc.versions) || {});
const namesOf = (doc: PackageDoc | null) => ((doc && doc.maintainers) || []).map((m) => m && m.name).filter(Boolean) as string[];

/** The events of one write that turned `before` (null: a new package) into `after`. */
export function eventsOf(before: PackageDoc | null, after: PackageDoc): RegistryEvent[] {
  const name = after.name;
  const events: RegistryEvent[] = [];
  const was = versionsOf(before);
  const is = versionsOf(after);
  const published = is.filter((v) => was.indexOf(v) === -1);
  const unpublished = was.filter((v) => is.indexOf(v) === -1);
  if (published.length) events.push({ event: 'package:publish', name, change: { versions: published, 'dist-tags': after['dist-tags'] } });
  if (unpublished.length) {
    events.push({ event: 'package:unpublish', name, change: { versions: unpublished, whole: is.length === 0 && publishedVersions(after).length > 0 } });
  }
  // Tags that move with a publish or an unpublish are part of that event.
  if (!published.length && !unpublished.length) {
    const tagsBefore = (before && before['dist-tags']) || {};
    const tagsAfter = after['dist-tags'] || {};
    const tags = Object.keys({ ...tagsBefore, ...tagsAfter }).filter((tag) => tagsBefore[tag] !== tagsAfter[tag]);
    for (const tag of tags) events.push({ event: 'package:dist-tag', name, change: { tag, from: tagsBefore[tag] || null, to: tagsAfter[tag] || null } });
  }
  for (const version of is) {
    if (was.indexOf(version) === -1) continue;
    const old = (before as PackageDoc).versions[version].deprecated || '';
    const now = after.versions[version].deprecated || '';
    if (old !== now) events.push({ event: 'package:deprecate', name, change: { version, deprecated: now || null } });
  }
  if (before && !before._deleted) {
    const ownersBefore = namesOf(before);
    const ownersAfter = namesOf(after);
    const added = ownersAfter.filter((n) => ownersBefore.indexOf(n) === -1);
    const removed = ownersBefore.filter((n) => ownersAfter.indexOf(n) === -1);
    if (added.length || removed.length) events.push({ event: 'package:owner', name, change: { added, removed } });
  }
  return events;
}
