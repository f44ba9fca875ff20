/**
 * The design documents as the rest of the registry knows them: their names, their shapes and where
 * `build.ts` writes them. No build tools here, so a running registry needs none.
 */
import { basename, dirname, join } from 'path';

/** The design documents by name: `_design/<name>`. */
export const DESIGN = {
  /** Every rule of the registry and the views (`validate_doc_update.ts`, `views/`). */
  app: 'app',
  /** Publish rules (`access/`), with the admin's `rules` in the document. */
  access: 'access',
  /** What replication may write (`mirror/`), with the gateway's settings in the document. */
  mirror: 'mirror',
  /** In `<db>-state`: the configuration documents kept there (the supply-chain policy) checked when written (`config/`). */
  config: 'config',
} as const;

export type DesignName = (typeof DESIGN)[keyof typeof DESIGN];

export const designId = (name: DesignName | string): string => '_design/' + name;

/** The repository root, whether this runs compiled (dist/couchapp) or from source (couchapp). */
const ROOT = basename(dirname(__dirname)) === 'dist' ? join(__dirname, '..', '..') : join(__dirname, '..');
export const SOURCE_DIR = join(ROOT, 'couchapp');
/** The built design documents, one JSON file per design document. */
export const OUTPUT_FILES: Record<DesignName, string> = {
  app: join(ROOT, 'dist', 'couchapp', 'design.json'),
  access: join(ROOT, 'dist', 'couchapp', 'access.json'),
  mirror: join(ROOT, 'dist', 'couchapp', 'mirror.json'),
  config: join(ROOT, 'dist', 'couchapp', 'config.json'),
};

/** The code of `_design/access` and `_design/mirror`; their settings fields are kept across pushes. */
export interface SettingsDesignCode {
  _id: string;
  language: 'javascript';
  validate_doc_update: string;
  build_hash: string;
}

export interface DesignDoc {
  _id: string;
  _rev?: string;
  language: 'javascript';
  validate_doc_update: string;
  views: Record<string, { map: string; reduce?: string }>;
  /** sha256 of the compiled functions: the push skips an unchanged design. */
  build_hash: string;
}
