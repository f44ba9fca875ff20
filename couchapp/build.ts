/**
 * Compiles the TypeScript design-document parts into one CouchDB design document
 * (`dist/couchapp/design.json`): each function is bundled with what it imports, self-contained,
 * ES2019, with no Node APIs, and wrapped in the `function (...) {...}` form CouchDB evaluates.
 */
import { buildSync } from 'esbuild';
import { createHash } from 'crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'fs';
import { basename, dirname, join } from 'path';

export const DESIGN_ID = '_design/app';
/** The repository root, whether this runs compiled (dist/couchapp) or from source (couchapp). */
const ROOT = basename(dirname(__dirname)) === 'dist' ? join(__dirname, '..', '..') : join(__dirname, '..');
const SOURCE_DIR = join(ROOT, 'couchapp');
export const OUTPUT_FILE = join(ROOT, 'dist', 'couchapp', 'design.json');
export const ACCESS_OUTPUT_FILE = join(ROOT, 'dist', 'couchapp', 'access.json');
export const ACCESS_ID = '_design/access';
export const MIRROR_OUTPUT_FILE = join(ROOT, 'dist', 'couchapp', 'mirror.json');
export const MIRROR_ID = '_design/mirror';

/** The code of `_design/access`; its `rules` are the admin's, kept across pushes. */
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

/** Bundles `entry` and returns the source of an expression whose `.default` is the module's default export. */
function bundle(entry: string): string {
  const result = buildSync({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'iife',
    globalName: '__module',
    target: 'es2019',
    platform: 'neutral',
    mainFields: ['main', 'module'],
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
  });
  return result.outputFiles[0].text.trim();
}

/** CouchDB calls design functions with the design document as `this`; the wrapper passes it on. */
function wrap(params: string, entry: string, call: string): string {
  return 'function (' + params + ') {\n' + bundle(entry) + '\nreturn __module.default.call(this, ' + call + ');\n}';
}

export function buildDesignDoc(): DesignDoc {
  const views: DesignDoc['views'] = {};
  const viewDir = join(SOURCE_DIR, 'views');
  for (const file of readdirSync(viewDir).sort()) {
    if (!file.endsWith('.ts') || file === 'types.ts') continue;
    views[file.replace(/\.ts$/, '')] = { map: wrap('doc', join(viewDir, file), 'doc, emit') };
  }
  const validate = wrap(
    'newDoc, oldDoc, userCtx, secObj',
    join(SOURCE_DIR, 'validate_doc_update.ts'),
    'newDoc, oldDoc, userCtx, secObj',
  );
  const hash = createHash('sha256').update(JSON.stringify({ validate, views })).digest('hex');
  return { _id: DESIGN_ID, language: 'javascript', validate_doc_update: validate, views, build_hash: hash };
}

/** A design document made of one validate_doc_update whose settings are the document's own fields. */
function buildSettingsDesign(id: string, folder: string): SettingsDesignCode {
  const validate = wrap('newDoc, oldDoc, userCtx, secObj', join(SOURCE_DIR, folder, 'validate_doc_update.ts'), 'newDoc, oldDoc, userCtx, secObj');
  const hash = createHash('sha256').update(validate).digest('hex');
  return { _id: id, language: 'javascript', validate_doc_update: validate, build_hash: hash };
}

export const buildAccessDesign = (): SettingsDesignCode => buildSettingsDesign(ACCESS_ID, 'access');
export const buildMirrorDesign = (): SettingsDesignCode => buildSettingsDesign(MIRROR_ID, 'mirror');

if (require.main === module) {
  const doc = buildDesignDoc();
  mkdirSync(dirname(OUTPUT_FILE), { recursive: true });
  writeFileSync(OUTPUT_FILE, JSON.stringify(doc, null, 1));
  writeFileSync(ACCESS_OUTPUT_FILE, JSON.stringify(buildAccessDesign(), null, 1));
  writeFileSync(MIRROR_OUTPUT_FILE, JSON.stringify(buildMirrorDesign(), null, 1));
  console.log('couchapp: built ' + DESIGN_ID + ' (' + Object.keys(doc.views).length + ' views) → ' + OUTPUT_FILE);
}
