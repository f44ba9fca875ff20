/**
 * The license a version declares, read from its manifest as npm has written it over the years. Apart
 * from `core/licenses.ts` (which judges it) so that the `versionsByLicense` view bundles only this. Pure.
 */
import { VersionManifest } from './types';

/**
 * The license a version declares, as one expression: `license` (a string, or the old `{type}`
 * object), or the old `licenses` list (any of them, so joined with OR); null when it declares none.
 */
export function declaredLicense(manifest: VersionManifest | undefined): string | null {
  if (!manifest) return null;
  const typeOf = (value: unknown): string | null => {
    if (typeof value === 'string') return value.trim() || null;
    if (value && typeof value === 'object' && typeof (value as { type?: unknown }).type === 'string') return ((value as { type: string }).type).trim() || null;
    return null;
  };
  const license = typeOf((manifest as { license?: unknown }).license);
  if (license) return license;
  const list = (manifest as { licenses?: unknown }).licenses;
  if (Array.isArray(list)) {
    const types = list.map(typeOf).filter((t): t is string => !!t);
    if (types.length === 1) return types[0];
    if (types.length > 1) return types.map((t) => '(' + t + ')').join(' OR ');
  }
  return null;
}
