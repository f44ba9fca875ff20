/** Documents with conflicting revisions (only replication writes the mirror database, so these are the upstream's). */
import { PackageDoc } from '../../core/types';
import { Emit } from './types';

export default function conflicts(doc: PackageDoc & { _conflicts?: string[] }, emit: Emit): void {
  if (doc._conflicts && doc._conflicts.length) emit(doc._id, doc._conflicts.length);
}
