/** The registry as a separate process (`node dist/server/main.js`), for tests that kill it. */
import { ChildProcess, spawn } from 'child_process';
import { basename, join } from 'path';

/** The built registry, from the sources (ts-jest) or from their build (the bench runs from dist/). */
const MAIN = join(__dirname, '..', '..', ...(basename(join(__dirname, '..', '..')) === 'dist' ? [] : ['dist']), 'server', 'main.js');

export interface RegistryProcess {
  child: ChildProcess;
  /** The registry URL printed by `npm start`. */
  url: string;
  /** The CouchDB origin it uses (from the Fauxton line). */
  couchUrl: string;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
}

/**
 * Starts the registry with `env` added to this process's environment; resolves once it is ready.
 * `script` is what runs: the built registry, or `bin/registry.js` as `npm start` runs it.
 */
export function startRegistryProcess(env: Record<string, string>, script = MAIN): Promise<RegistryProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], {
      env: { ...process.env, PORT: '0', COUCHDB_PORT: '0', LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const ready = /ready at (http:\/\/\S+)/.exec(out);
      const fauxton = /Fauxton:\s+(http:\/\/[^/\s]+)/.exec(out);
      if (ready && fauxton) resolve({ child, url: ready[1], couchUrl: fauxton[1], output: () => out });
    });
    child.stderr!.on('data', (d) => (out += d));
    child.on('exit', (code) => reject(new Error('registry exited (' + code + '): ' + out)));
  });
}

/** Stops the process with `signal` (SIGKILL by default: no clean shutdown) and waits until it is gone. */
export function killProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.removeAllListeners('exit');
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}
