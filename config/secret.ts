/** Secrets of the settings (a client secret, an upstream's token), kept out of logs, inspections and JSON. */
/** A secret that never shows in a log, an inspection or JSON: its value only through `value`. */
export class HiddenSecret {
  #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  get value(): string {
    return this.#value;
  }
  toJSON(): string {
    return '(hidden)';
  }
  toString(): string {
    return '(hidden)';
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return '(hidden)';
  }
}
