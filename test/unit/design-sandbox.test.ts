/**
 * The design functions as CouchDB runs them: its JavaScript (QuickJS in CouchDB 3.4.3) has no typed
 * arrays and no Node globals (`process`, `Buffer`, `require`), so each built function is evaluated in
 * a context without them, and called with ordinary documents: loading and running must not throw
 * anything but a refusal. (On CouchDB 3.4.3, semver's Uint8Array table made every write of
 * `<db>-state` fail with `ReferenceError` until the build injected a stand-in.)
 */
import { runInContext, createContext } from 'vm';
import { buildAccessDesign, buildConfigDesign, buildDesignDoc, buildMirrorDesign } from '../../couchapp/build';

function couchLike(globals: object = {}): object {
  const context = createContext({ ...globals });
  runInContext('for (const name of ["Uint8Array", "Uint16Array", "Int32Array", "Float64Array", "ArrayBuffer", "DataView", "SharedArrayBuffer"]) delete globalThis[name];', context);
  return context;
}

/** A design function as CouchDB evaluates it, with `globals` (a view's `emit`) and the design document as `this`. */
function compile(source: string, self: object = {}, globals: object = {}): (...args: unknown[]) => unknown {
  const fn = runInContext('(' + source + ')', couchLike(globals)) as (...args: unknown[]) => unknown;
  return (...args: unknown[]) => fn.apply(self, args);
}

/** Runs `call`; a refusal (`{forbidden}` or `{unauthorized}`) is an answer, anything else is thrown on. */
function outcome(call: () => unknown): string {
  try {
    call();
    return 'accepted';
  } catch (err) {
    const refusal = err as { forbidden?: string; unauthorized?: string };
    if (refusal && (refusal.forbidden || refusal.unauthorized)) return 'refused';
    throw err;
  }
}

const admin = { name: 'admin', roles: ['_admin'], db: 'registry' };
const alice = { name: 'alice', roles: [], db: 'registry' };

it('the sandbox has no typed arrays, as CouchDB 3.4.3 has none', () => {
  expect(() => runInContext('new Uint8Array(1)', couchLike())).toThrow(/Uint8Array is not defined/);
});

it('_design/config checks the supply-chain policy (with version ranges) without typed arrays', () => {
  const validate = compile(buildConfigDesign().validate_doc_update);
  expect(outcome(() => validate({ _id: 'signing-key:x', type: 'signing-key' }, null, admin, {}))).toBe('accepted');
  expect(outcome(() => validate({ _id: 'supply-chain', type: 'policy', blocked: [{ package: 'left-pad', version: '<2 || >=3.1.0', reason: 'bad' }] }, null, admin, {}))).toBe('accepted');
  expect(outcome(() => validate({ _id: 'supply-chain', type: 'policy', blocked: [{ package: 'left-pad', version: 'not a range', reason: 'bad' }] }, null, admin, {}))).toBe('refused');
  // The license policy's SPDX parser and its license lists run there too.
  expect(outcome(() => validate({ _id: 'supply-chain', type: 'policy', licenses: { allowed: ['MIT', 'Apache-2.0 WITH LLVM-exception'], denied: ['AGPL-3.0-only'] } }, null, admin, {}))).toBe('accepted');
  expect(outcome(() => validate({ _id: 'supply-chain', type: 'policy', licenses: { allowed: ['Apache 2.0'] } }, null, admin, {}))).toBe('refused');
  const advisories = { severity: 'high', unchecked: 'serve', exceptions: [{ package: '@types/*', reason: 'types only' }, { advisory: 1096755, reason: 'patched' }, { advisory: 'GHSA-35jh-r3h4-6jhm', package: 'lodash', reason: 'not reachable' }] };
  expect(outcome(() => validate({ _id: 'supply-chain', type: 'policy', advisories }, null, admin, {}))).toBe('accepted');
  expect(outcome(() => validate({ _id: 'supply-chain', type: 'policy', advisories: { ...advisories, severity: 'severe' } }, null, admin, {}))).toBe('refused');
  expect(outcome(() => validate({ _id: 'supply-chain', type: 'policy', advisories: { ...advisories, exceptions: [{ advisory: 1 }] } }, null, admin, {}))).toBe('refused');
});

it('_design/app, _design/access and _design/mirror load and judge a publish without typed arrays', () => {
  const doc = {
    _id: 'sandboxed',
    name: 'sandboxed',
    versions: { '1.0.0': { name: 'sandboxed', version: '1.0.0', dist: { tarball: 'http://x/sandboxed/-/sandboxed-1.0.0.tgz', shasum: 'x' } } },
    'dist-tags': { latest: '1.0.0' },
    time: { created: '2026-12-07T00:00:00.000Z', modified: '2026-12-07T00:00:00.000Z', '1.0.0': '2026-12-07T00:00:00.000Z' },
    maintainers: [{ name: 'alice' }],
    origin: 'https://registry.npmjs.org',
    origin_advisories: { changed: '2026-12-07T00:00:00.000Z', digest: '0123456789abcdef', checked: ['1.0.0'], advisories: { '1': { id: 1, title: 't', url: 'https://x/1', severity: 'high', vulnerable_versions: '<2' } }, affected: { '1.0.0': ['1'] } },
  };
  const app = buildDesignDoc();
  expect(() => outcome(() => compile(app.validate_doc_update)(doc, null, alice, {}))).not.toThrow();
  const access = buildAccessDesign();
  expect(() => outcome(() => compile(access.validate_doc_update, { rules: [{ package: '**', read: ['$all'], publish: ['$authenticated'] }] })(doc, null, alice, {}))).not.toThrow();
  expect(() => outcome(() => compile(buildMirrorDesign().validate_doc_update)(doc, null, alice, {}))).not.toThrow();
  for (const [name, view] of Object.entries(app.views)) {
    const emitted: unknown[] = [];
    const emit = (key: unknown, value: unknown) => emitted.push([key, value]);
    expect(() => compile(view.map, {}, { emit })(doc)).not.toThrow();
    expect({ view: name, emits: emitted.length > 0 || name === "conflicts" || name === "starredByUser" }).toEqual({ view: name, emits: true });
  }
});
