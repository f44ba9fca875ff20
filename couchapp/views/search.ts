/**
 * Search terms: one row per lower-case term of the name, its parts, the keywords and the description;
 * the value says where the term came from (0 exact name, 1 name part, 2 keyword, 3 description) so the
 * search can rank without reading documents.
 */
import { PackageDoc } from '../../core/types';
import { terms } from '../../core/search';
import { Emit } from './types';

export default function search(doc: PackageDoc, emit: Emit): void {
  if (!doc || typeof doc.name !== 'string' || !doc.versions || Object.keys(doc.versions).length === 0) return;
  const seen: Record<string, number> = {};
  const add = (term: string, rank: number) => {
    if (seen[term] === undefined || seen[term] > rank) seen[term] = rank;
  };
  const name = doc.name.toLowerCase();
  add(name, 0);
  for (const part of terms(name.replace(/^@/, ''))) add(part, 1);
  if (Array.isArray(doc.keywords)) {
    for (const keyword of doc.keywords) if (typeof keyword === 'string') for (const t of terms(keyword)) add(t, 2);
  }
  if (typeof doc.description === 'string') for (const t of terms(doc.description.slice(0, 1000))) add(t, 3);
  for (const term of Object.keys(seen)) emit(term, seen[term]);
}
