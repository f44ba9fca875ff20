/** Unit, contract and end-to-end tests; TypeScript through ts-jest (types are checked by `npm run build`). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
  testTimeout: 180000,
  // A real CouchDB (COUCHDB_URL) has one _users and one _replicator for every test file: one file at a time.
  maxWorkers: process.env.COUCHDB_URL ? 1 : 2,
};
