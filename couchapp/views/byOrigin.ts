/**
 * Packages by where they come from (`origin`): this registry's id for local packages, an upstream for
 * mirrored ones, null for a document that does not say (from a plain CouchDB).
 */
import { PackageDoc } from '../../core/types';
import { Emit } from './types';

export default function byOrigin(doc: PackageDoc, emit: Emit): void {
  if (doc.name) emit(typeof doc.origin === 'string' ? doc.origin : null, null);
}
