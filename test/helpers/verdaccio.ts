/** A real Verdaccio 6.8.0 (installed from npm) on loopback, as an upstream registry for the tests. */
import { spawn, ChildProcess } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { dirname, join } from 'path';
import { freePort } from './servers';

export interface Verdaccio {
  url: string;
  /** Its storage folder (packages as <name>/package.json and tarballs). */
  storage: string;
  /** The process, for memory readings. */
  pid: number;
  /** Creates a user and returns its token. */
  adduser(name: string, password: string): Promise<string>;
  stop(): Promise<void>;
}

export interface VerdaccioOptions {
  /** `error` for the tests; the benchmarks run it at Verdaccio's default, `http` (a line per request). */
  logLevel?: string;
  /** An uplink every package is proxied from. */
  uplink?: string;
  /** Package patterns only logged-in users read (`access: $authenticated`), such as `@private/*`; the rest is read by anyone. */
  authenticated?: string[];
}

/**
 * Starts Verdaccio on a free port with its own storage and no uplinks. `logLevel` is `error` for the
 * tests; the benchmarks run it at Verdaccio's default, `http` (a line per request).
 */
export async function startVerdaccio(options: VerdaccioOptions = {}): Promise<Verdaccio> {
  const dir = mkdtempSync(join(tmpdir(), 'verdaccio-'));
  const port = await freePort();
  const config = join(dir, 'config.yaml');
  writeFileSync(config, [
    'storage: ' + join(dir, 'storage'),
    'auth:',
    '  htpasswd:',
    '    file: ' + join(dir, 'htpasswd'),
    '    max_users: 100',
    ...(options.uplink ? ['uplinks:', '  upstream:', '    url: ' + options.uplink] : ['uplinks: {}']),
    'packages:',
    ...(options.authenticated || []).flatMap((pattern) => ["  '" + pattern + "':", '    access: $authenticated', '    publish: $authenticated']),
    "  '**':",
    '    access: $all',
    '    publish: $authenticated',
    ...(options.uplink ? ['    proxy: upstream'] : []),
    'log: { type: stdout, format: pretty, level: ' + (options.logLevel || 'error') + ' }',
    'security:',
    '  api:',
    '    legacy: true',
    '',
  ].join('\n'));
  const pkg = require.resolve('verdaccio/package.json');
  const declared = (require(pkg) as { bin: string | Record<string, string> }).bin;
  const bin = join(dirname(pkg), typeof declared === 'string' ? declared : declared.verdaccio);
  const child: ChildProcess = spawn(process.execPath, [bin, '--config', config, '--listen', '127.0.0.1:' + port], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VERDACCIO_HANDLE_KILL_SIGNALS: 'true' } });
  let output = '';
  // Only the last few kilobytes are kept (for the error message of a failed start).
  const keep = (d: Buffer) => (output = (output + d).slice(-8192));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const url = 'http://127.0.0.1:' + port;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(url + '/-/ping');
      if (res.ok) break;
    } catch {
      /* not up yet */
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('Verdaccio did not start: ' + output);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    storage: join(dir, 'storage'),
    pid: child.pid as number,
    async adduser(name, password) {
      const res = await fetch(url + '/-/user/org.couchdb.user:' + name, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, password, email: name + '@example.com' }),
      });
      const body = (await res.json()) as { token?: string };
      if (!body.token) throw new Error('Verdaccio adduser failed: ' + res.status + ' ' + JSON.stringify(body));
      return body.token;
    },
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) {
          rmSync(dir, { recursive: true, force: true });
          return resolve();
        }
        child.once('exit', () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
}
