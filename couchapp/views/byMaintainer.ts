/** Packages by maintainer name: key the user name, value the package name. */
import { PackageDoc } from '../../core/types';
import { Emit } from './types';

export default function byMaintainer(doc: PackageDoc, emit: Emit): void {
  if (!doc || typeof doc.name !== 'string' || !Array.isArray(doc.maintainers)) return;
  if (!doc.versions || Object.keys(doc.versions).length === 0) return;
  for (const m of doc.maintainers) if (m && typeof m.name === 'string') emit(m.name, doc.name);
}
