/**
 * Runs the real npm (and yarn, pnpm) CLIs against a registry, each test with its own user config,
 * cache and folders, so nothing leaks between tests or into the machine's npm settings.
 */
import { spawn } from 'child_process';
import { createHash } from 'crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface NpmClient {
  home: string;
  userconfig: string;
  env: NodeJS.ProcessEnv;
  npm(args: string[], cwd?: string): Promise<CliResult>;
  /** `npm adduser`/`npm login --auth-type=legacy`, answering the prompts on a real terminal. */
  loginLegacy(command: 'adduser' | 'login', name: string, password: string, email?: string): Promise<CliResult>;
}

const BIN = join(__dirname, '..', '..', 'node_modules', '.bin');

/**
 * The npm clients' homes of this test file, under one folder removed after its tests (each held a
 * 2 MB cache, and a full run left thousands behind); outside Jest, when the process exits.
 */
let clientsRoot: string | undefined;
const removeClients = () => {
  if (clientsRoot) rmSync(clientsRoot, { recursive: true, force: true });
  clientsRoot = undefined;
};
if (typeof afterAll === 'function') afterAll(removeClients);
else process.once('exit', removeClients);
function clientHome(): string {
  clientsRoot ||= mkdtempSync(join(tmpdir(), 'npm-clients-'));
  return mkdtempSync(join(clientsRoot, 'npm-client-'));
}

export function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs || 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(options.input || '');
  });
}

/** An npm client of its own for `registryUrl`, logged in with `token` when given. */
export function npmClient(registryUrl: string, token?: string): NpmClient {
  const home = clientHome();
  const userconfig = join(home, '.npmrc');
  const auth = token ? registryUrl.replace(/^https?:/, '') + '/:_authToken=' + token + '\n' : '';
  writeFileSync(userconfig, 'registry=' + registryUrl + '/\n' + auth);
  const env: NodeJS.ProcessEnv = {
    PATH: BIN + ':' + process.env.PATH,
    HOME: home,
    npm_config_userconfig: userconfig,
    npm_config_cache: join(home, 'cache'),
    npm_config_prefix: join(home, 'prefix'),
    npm_config_registry: registryUrl + '/',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    NO_COLOR: '1',
  };
  return {
    home,
    userconfig,
    env,
    npm: (args, cwd = home) => run('npm', args, { cwd, env }),
    loginLegacy: async (command, name, password, email = name + '@example.com') => {
      const answers: [RegExp, () => string][] = [[/Username:/, () => name], [/Password:/, () => password], [/Email/, () => email]];
      const result = await onTerminal({ home, env }, command + ' --auth-type=legacy', answers);
      return { code: result.code, stdout: result.output.replace(new RegExp(password, 'g'), '***'), stderr: '' };
    },
  };
}

/**
 * Runs `npm <args>` on a terminal (`script` gives npm the terminal its prompts require), answering
 * each prompt when it shows (`answer` sees everything printed so far); everything printed.
 */
export function onTerminal(client: Pick<NpmClient, 'home' | 'env'>, args: string, answers: [RegExp, (seen: string) => string][]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', 'npm ' + args, '/dev/null'], { cwd: client.home, env: client.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let pending = '';
    let all = '';
    child.stdout.on('data', (data) => {
      pending += data;
      all += data;
      while (answers.length && answers[0][0].test(pending)) {
        const [prompt, answer] = answers.shift()!;
        pending = pending.split(prompt).slice(1).join('');
        child.stdin.write(answer(all) + '\r');
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, output: all });
    });
  });
}

/** `npm publish` of a package folder made from `manifest` with `client`; throws when it fails. */
export async function publishWith(client: NpmClient, manifest: Record<string, unknown>): Promise<void> {
  const result = await client.npm(['publish'], makePackage(client.home, manifest));
  if (result.code !== 0) throw new Error('npm publish of ' + String(manifest.name) + ' failed: ' + result.stderr);
}

/** Writes a private project folder depending on `dependencies`; returns its path. */
export function makeProject(parent: string, name: string, dependencies: Record<string, string>): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true, dependencies }));
  return dir;
}

/** Writes a package folder with a package.json and an index.js; returns its path. */
export function makePackage(parent: string, manifest: Record<string, unknown>, files: Record<string, string> = {}): string {
  const dir = join(parent, 'pkg-' + String(manifest.name).replace(/[@/]/g, '_') + '-' + String(manifest.version));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ main: 'index.js', license: 'MIT', ...manifest }, null, 2));
  writeFileSync(join(dir, 'index.js'), files['index.js'] || 'module.exports = ' + JSON.stringify(String(manifest.name) + '@' + String(manifest.version)) + ';\n');
  for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, file), content);
  return dir;
}

export const sha1 = (data: Buffer) => createHash('sha1').update(data).digest('hex');
export const sha512 = (data: Buffer) => 'sha512-' + createHash('sha512').update(data).digest('base64');

/** Starts `npm <command>` and resolves the login URL it prints, and a promise of its exit. */
export function startNpmLogin(client: NpmClient, command: 'login' | 'adduser' = 'login') {
  const child = spawn('npm', [command], { cwd: client.home, env: client.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exit = new Promise<{ code: number; output: string }>((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, output })));
  const url = new Promise<string>((resolve, reject) => {
    const onData = (data: Buffer) => {
      output += data;
      const match = /(http:\/\/\S+\/-\/login\/\S+)/.exec(output);
      if (match) resolve(match[1]);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    setTimeout(() => reject(new Error('npm printed no login URL: ' + output)), 30_000).unref();
  });
  return { url, exit, kill: () => child.kill('SIGKILL') };
}
