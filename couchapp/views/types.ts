/** CouchDB's `emit`, passed to each map function so that it can be tested as a plain function. */
export type Emit = (key: unknown, value: unknown) => void;
