/**
 * Compiles the TypeScript design-document parts into one CouchDB design document
 * (`dist/couchapp/design.json`): each function is bundled with what it imports, self-contained,
 * ES2019, with no Node APIs, and wrapped in the `function (...) {...}` form CouchDB evaluates. What
 * CouchDB's JavaScript lacks and bundled libraries use is injected from `shims/`.
 */
import { buildSync } from 'esbuild';
import { createHash } from 'crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'fs';
import { dirname, join } from 'path';
import { DESIGN, DesignDoc, designId, DesignName, OUTPUT_FILES, SettingsDesignCode, SOURCE_DIR } from './design';

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
    inject: [join(SOURCE_DIR, 'shims', 'typed-arrays.ts')],
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
    const source = join(viewDir, file);
    // A view with a reduce says which of CouchDB's built-in ones (`export const reduce = '_count';`).
    const reduce = /^export const reduce = '(_count|_sum|_stats)';$/m.exec(readFileSync(source, 'utf8'));
    views[file.replace(/\.ts$/, '')] = { map: wrap('doc', source, 'doc, emit'), ...(reduce ? { reduce: reduce[1] } : {}) };
  }
  const validate = wrap(
    'newDoc, oldDoc, userCtx, secObj',
    join(SOURCE_DIR, 'validate_doc_update.ts'),
    'newDoc, oldDoc, userCtx, secObj',
  );
  const hash = createHash('sha256').update(JSON.stringify({ validate, views })).digest('hex');
  return { _id: designId(DESIGN.app), language: 'javascript', validate_doc_update: validate, views, build_hash: hash };
}

/** A design document made of one validate_doc_update whose settings are the document's own fields. */
function buildSettingsDesign(name: DesignName): SettingsDesignCode {
  const validate = wrap('newDoc, oldDoc, userCtx, secObj', join(SOURCE_DIR, name, 'validate_doc_update.ts'), 'newDoc, oldDoc, userCtx, secObj');
  const hash = createHash('sha256').update(validate).digest('hex');
  return { _id: designId(name), language: 'javascript', validate_doc_update: validate, build_hash: hash };
}

export const buildAccessDesign = (): SettingsDesignCode => buildSettingsDesign(DESIGN.access);
export const buildMirrorDesign = (): SettingsDesignCode => buildSettingsDesign(DESIGN.mirror);
export const buildConfigDesign = (): SettingsDesignCode => buildSettingsDesign(DESIGN.config);

if (require.main === module) {
  const doc = buildDesignDoc();
  mkdirSync(dirname(OUTPUT_FILES.app), { recursive: true });
  writeFileSync(OUTPUT_FILES.app, JSON.stringify(doc, null, 1));
  writeFileSync(OUTPUT_FILES.access, JSON.stringify(buildAccessDesign(), null, 1));
  writeFileSync(OUTPUT_FILES.mirror, JSON.stringify(buildMirrorDesign(), null, 1));
  writeFileSync(OUTPUT_FILES.config, JSON.stringify(buildConfigDesign(), null, 1));
  console.log('couchapp: built ' + doc._id + ' (' + Object.keys(doc.views).length + ' views) → ' + OUTPUT_FILES.app);
}
