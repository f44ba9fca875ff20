/** Packages by where they come from (`origin`): this registry's id for local packages, an upstream for mirrored ones. */
import { PackageDoc } from '../lib/types';
import { Emit } from './types';

export default function byOrigin(doc: PackageDoc, emit: Emit): void {
  if (doc.name && typeof doc.origin === 'string') emit(doc.origin, null);
}
