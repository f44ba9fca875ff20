/** Every version of a package by its publish time (ISO string): the version, id the package. For the cooldown's status (what is held back). */
import { PackageDoc, TIME_KEYS } from '../../core/types';
import { Emit } from './types';

export default function versionsByTime(doc: PackageDoc, emit: Emit): void {
  if (!doc || typeof doc.name !== 'string' || !doc.versions || !doc.time) return;
  for (const version of Object.keys(doc.versions)) {
    const time = doc.time[version];
    if (TIME_KEYS.indexOf(version) === -1 && typeof time === 'string') emit(time, version);
  }
}
