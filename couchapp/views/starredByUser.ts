/** Stars: key the user who starred, value the package name (what `npm stars` prints). */
import { PackageDoc } from '../../core/types';
import { Emit } from './types';

export default function starredByUser(doc: PackageDoc, emit: Emit): void {
  if (!doc || typeof doc.name !== 'string' || !doc.users || typeof doc.users !== 'object') return;
  for (const user of Object.keys(doc.users)) if (doc.users[user] === true) emit(user, doc.name);
}
