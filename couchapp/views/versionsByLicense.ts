/**
 * Every version of a package by the license it declares (`[license, version]`, `""` for none), id the
 * package; counted per license (`group_level=1`). For the license policy's status: the distinct
 * licenses are judged once each, and the versions of those not allowed are listed.
 */
import { declaredLicense } from '../../core/license-field';
import { PackageDoc, TIME_KEYS } from '../../core/types';
import { Emit } from './types';

export const reduce = '_count';

export default function versionsByLicense(doc: PackageDoc, emit: Emit): void {
  if (!doc || typeof doc.name !== 'string' || !doc.versions || typeof doc.versions !== 'object') return;
  for (const version of Object.keys(doc.versions)) {
    if (TIME_KEYS.indexOf(version) !== -1) continue;
    const license = declaredLicense(doc.versions[version]);
    emit([license === null ? '' : license.slice(0, 200), version], null);
  }
}
