// Lint: typescript-eslint's recommended rules, and the folders' "may import" rules (each folder's
// README says the same in words). `npm run lint`; .ci/run runs it before the tests.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const NODE_BUILTINS = ['assert', 'buffer', 'child_process', 'crypto', 'dns', 'events', 'fs', 'fs/promises', 'http', 'https', 'net', 'os', 'path', 'stream', 'stream/promises', 'url', 'util', 'zlib'];

/** An import of a top-level folder of this repository, from anywhere below the root. */
const folder = (name) => '^(\\.\\./)+' + name + '(/|$)';

/** Forbids importing the given top-level folders (regular expressions of `folder`), saying why. */
function mayNotImport(why, ...folders) {
  return { regex: folders.length === 1 ? folders[0] : '(' + folders.join('|') + ')', message: why };
}

const restrict = (...patterns) => ({ 'no-restricted-imports': ['error', { patterns }] });

const noNode = { regex: '^(node:.*|' + NODE_BUILTINS.join('|').replace(/\//g, '\\/') + ')$', message: 'This code runs inside CouchDB\'s JavaScript engine: no Node APIs.' };

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: 'module' },
    rules: {
      // The registry reads untyped JSON from clients, CouchDB and upstreams in places; `any` there is deliberate.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    files: ['core/**/*.ts'],
    rules: restrict(
      noNode,
      { regex: '^\\.\\./', message: 'core/ is the pure domain: it imports only its own files (see core/README.md).' },
    ),
  },
  {
    files: ['couchapp/validate_doc_update.ts', 'couchapp/access/**/*.ts', 'couchapp/mirror/**/*.ts', 'couchapp/views/**/*.ts'],
    rules: restrict(
      noNode,
      mayNotImport('Design documents import only core/ and their own files (see couchapp/README.md).', folder('(config|couchdb|gateway|lib|replication|server)')),
    ),
  },
  {
    files: ['couchapp/build.ts', 'couchapp/design.ts'],
    rules: restrict(mayNotImport('couchapp/ imports only core/ and its own files (see couchapp/README.md).', folder('(config|couchdb|gateway|lib|replication|server)'))),
  },
  {
    files: ['lib/**/*.ts'],
    rules: restrict({ regex: '^\\.\\./', message: 'lib/ holds helpers with no registry knowledge: it imports nothing of the project.' }),
  },
  {
    files: ['config/**/*.ts'],
    rules: restrict(mayNotImport('config/ imports only core/ (see config/README.md).', folder('(couchapp|couchdb|gateway|lib|replication|server)'))),
  },
  {
    files: ['couchdb/**/*.ts'],
    rules: restrict(
      mayNotImport('couchdb/ imports only core/, lib/ and the design names of couchapp/ (see couchdb/README.md).', folder('(config|gateway|replication|server)'), '^(\\.\\./)+couchapp/(?!design$)'),
    ),
  },
  {
    files: ['replication/**/*.ts'],
    rules: restrict(
      mayNotImport('replication/ imports core/, couchdb/client, lib/ and config/, never the gateway (see replication/README.md); the gateway hands it what it needs (MirrorHost).', folder('(gateway|server|couchapp)'), '^(\\.\\./)+couchdb/(?!client$)'),
    ),
  },
  {
    files: ['gateway/**/*.ts'],
    rules: restrict(
      mayNotImport('gateway/ imports core/, couchdb/client, lib/, config/, replication/ and the design names of couchapp/; start-up lives in server/ (see gateway/README.md).', folder('server'), '^(\\.\\./)+couchapp/(?!design$)', '^(\\.\\./)+couchdb/(?!client$)'),
    ),
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { module: 'writable', require: 'readonly', process: 'readonly', __dirname: 'readonly', console: 'readonly' } },
  },
  {
    // Plain CommonJS scripts that run before (or without) a build.
    files: ['bin/**/*.js', 'jest.config.js'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
