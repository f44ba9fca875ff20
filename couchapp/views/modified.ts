/** Packages by last modification time (ISO string): `?startkey="<time>"` lists what changed since. */
import { PackageDoc } from '../../core/types';
import { Emit } from './types';

export default function modified(doc: PackageDoc, emit: Emit): void {
  if (!doc || typeof doc.name !== 'string' || !doc.time) return;
  const time = doc.time.modified;
  if (typeof time === 'string') emit(time, doc.name);
}
