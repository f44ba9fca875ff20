/**
 * CouchDB's JavaScript for design functions has no typed arrays (measured on CouchDB 3.4.3 with its
 * QuickJS: `ReferenceError: 'Uint8Array' is not defined`), and semver builds a `Uint8Array` lookup
 * table when it loads. The bundler (`build.ts`, esbuild's `inject`) makes bundled references to the
 * global `Uint8Array` use this stand-in: a plain array of zeros, for the tables such code fills and
 * reads by index.
 */
function PlainUint8Array(length: number): number[] {
  const table: number[] = [];
  for (let i = 0; i < length; i++) table.push(0);
  return table;
}

export { PlainUint8Array as Uint8Array };
