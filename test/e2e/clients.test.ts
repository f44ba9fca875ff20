/** yarn classic and pnpm install a package published with npm. */
import { mkdirSync, readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { makePackage, npmClient, run } from '../helpers/npm';
import { startTestRegistry, TestRegistry } from '../helpers/registry';

let registry: TestRegistry;

beforeAll(async () => {
  registry = await startTestRegistry();
  const token = await registry.signup('publisher');
  const client = npmClient(registry.url, token);
  const dep = makePackage(client.home, { name: 'clients-dep', version: '1.2.3' });
  const main = makePackage(client.home, { name: '@clients/main', version: '2.0.0', dependencies: { 'clients-dep': '^1.0.0' } });
  for (const dir of [dep, main]) {
    const published = await client.npm(['publish'], dir);
    if (published.code !== 0) throw new Error(published.stderr);
  }
});
afterAll(() => registry.stop());

function app(name: string): string {
  const dir = join(registry.dataDir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true, dependencies: { '@clients/main': '^2.0.0' } }));
  writeFileSync(join(dir, '.npmrc'), 'registry=' + registry.url + '/\n');
  return dir;
}

const BIN = join(__dirname, '..', '..', 'node_modules', '.bin');

it('yarn classic installs from the registry', async () => {
  const dir = app('yarn-app');
  const env = { ...process.env, HOME: dir, YARN_CACHE_FOLDER: join(dir, '.yarn-cache') };
  const result = await run(join(BIN, 'yarn'), ['install', '--registry', registry.url + '/', '--non-interactive', '--no-progress'], { cwd: dir, env });
  expect(result.stderr).not.toMatch(/error/i);
  expect(result.code).toBe(0);
  expect(readFileSync(join(dir, 'node_modules/@clients/main/index.js'), 'utf8')).toContain('@clients/main@2.0.0');
  expect(JSON.parse(readFileSync(join(dir, 'node_modules/clients-dep/package.json'), 'utf8')).version).toBe('1.2.3');
  expect(readFileSync(join(dir, 'yarn.lock'), 'utf8')).toContain(registry.url + '/@clients/main/-/main-2.0.0.tgz');
});

it('pnpm installs from the registry', async () => {
  const dir = app('pnpm-app');
  const env = { ...process.env, HOME: dir, npm_config_store_dir: join(dir, '.pnpm-store'), npm_config_registry: registry.url + '/' };
  const result = await run(join(BIN, 'pnpm'), ['install', '--registry', registry.url + '/', '--reporter', 'append-only'], { cwd: dir, env });
  expect(result.code).toBe(0);
  expect(readFileSync(join(dir, 'node_modules/@clients/main/index.js'), 'utf8')).toContain('@clients/main@2.0.0');
  expect(readFileSync(join(dir, 'pnpm-lock.yaml'), 'utf8')).toMatch(/clients-dep@1\.2\.3/);
});
