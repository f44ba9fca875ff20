/**
 * docker-compose.yml is valid (checked by Debian's docker-compose; no Docker engine runs here) and
 * passes every setting of config/index.ts to the registry's containers; the image keeps its data in a
 * volume and exposes one port.
 */
import { execFileSync } from 'child_process';
import { readFileSync } from 'fs';
import { join } from 'path';
import { run } from '../helpers/npm';
import { loadConfig } from '../../config';

const root = join(__dirname, '..', '..');
const hasCompose = (() => {
  try {
    execFileSync('docker-compose', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

// CI installs docker-compose (.ci/run); elsewhere the check is skipped with a notice.
const itWithCompose = hasCompose || process.env.CI ? it : it.skip;
if (!hasCompose && !process.env.CI) console.warn('docker-compose is not installed: skipping the docker-compose.yml check');

itWithCompose('docker-compose config accepts the file and wires the registry to CouchDB with proxy auth', async () => {
  const env = { ...process.env, COUCHDB_PASSWORD: 'pw', COUCHDB_PROXY_SECRET: 'secret' };
  const result = await run('docker-compose', ['-f', join(root, 'docker-compose.yml'), 'config'], { cwd: root, env });
  expect(result.stderr).not.toMatch(/error/i);
  expect(result.code).toBe(0);
  expect(result.stdout).toContain('COUCHDB_URL: http://admin:pw@couchdb:5984');
  expect(result.stdout).toMatch(/image: couchdb:3/);
  expect(result.stdout).toContain('127.0.0.1');
  const missing = await run('docker-compose', ['-f', join(root, 'docker-compose.yml'), 'config'], { cwd: root, env: { PATH: process.env.PATH } });
  expect(missing.code).not.toBe(0);
  expect(missing.stderr).toContain('COUCHDB_PASSWORD');
});

itWithCompose('the cluster profile: three CouchDB nodes joined by _cluster_setup, two gateways each in front of another node', async () => {
  const env = { ...process.env, COUCHDB_PASSWORD: 'pw', COUCHDB_PROXY_SECRET: 'secret' };
  const result = await run('docker-compose', ['-f', join(root, 'docker-compose.yml'), '--profile', 'cluster', 'config'], { cwd: root, env });
  expect(result.code).toBe(0);
  for (const node of ['couchdb-1', 'couchdb-2', 'couchdb-3']) expect(result.stdout).toContain('NODENAME: ' + node);
  expect(result.stdout).toContain('COUCHDB_URL: http://admin:pw@couchdb-1:5984');
  expect(result.stdout).toContain('COUCHDB_URL: http://admin:pw@couchdb-2:5984');
  expect(result.stdout).toContain('cluster.ini');
  expect(result.stdout).toContain('service_completed_successfully');
  expect(result.stdout).toMatch(/127\.0\.0\.1:5081|published: 5081/);
  expect(result.stdout).not.toMatch(/- 4369|- 9100|0\.0\.0\.0:5984/);
});

it('the image runs the built registry with production dependencies only: no tests, benchmarks or build tools', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const stages = dockerfile.split(/^FROM /m).slice(1);
  expect(stages.length).toBe(2);
  const runtime = stages[1];
  expect(runtime).toContain('npm ci --omit=dev');
  expect(runtime).not.toMatch(/COPY (\S+ )*(\.\/)?(test|bench)\b/);
  expect(runtime).not.toMatch(/dist\/(test|bench)/);
  expect(runtime).toMatch(/HEALTHCHECK .*\/-\/health/);
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  for (const tool of ['typescript', 'esbuild', 'jest', 'verdaccio']) expect([tool, tool in pkg.dependencies]).toEqual([tool, false]);
});

/** The sections and keys of a CouchDB ini file (`;` comments left out). */
function readIni(file: string): Record<string, Record<string, string>> {
  const sections: Record<string, Record<string, string>> = {};
  let section = '';
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) section = header[1];
    else if (line.includes('=')) (sections[section] ||= {})[line.slice(0, line.indexOf('=')).trim()] = line.slice(line.indexOf('=') + 1).trim();
  }
  return sections;
}

it('the single-node local.ini makes one copy of each shard; the cluster\'s cluster.ini sets three again', () => {
  const local = readIni(join(root, 'couchdb', 'local.ini'));
  expect(local.couchdb.single_node).toBe('true');
  // single_node does not set it: CouchDB 3.4.3 otherwise logs "Request to create N=3 DB but only 1 node(s)".
  expect(local.cluster && local.cluster.n).toBe('1');
  const cluster = readIni(join(root, 'couchdb', 'cluster.ini'));
  expect(cluster.couchdb.single_node).toBe('false');
  expect(cluster.cluster.n).toBe('3');
});

itWithCompose('the single node reads local.ini only; every cluster node reads cluster.ini after it, so n = 1 never reaches a cluster', async () => {
  const env = { ...process.env, COUCHDB_PASSWORD: 'pw', COUCHDB_PROXY_SECRET: 'secret' };
  const result = await run('docker-compose', ['-f', join(root, 'docker-compose.yml'), '--profile', 'cluster', 'config'], { cwd: root, env });
  expect(result.code).toBe(0);
  // Each service's block of the resolved file, and the ini files it mounts into local.d (by target).
  const blocks = result.stdout.split(/^ {2}(?=\S+:$)/m);
  const mounts = (service: string) => {
    const block = blocks.find((b) => b.startsWith(service + ':\n'));
    if (!block) throw new Error('no service ' + service + ' in docker-compose config');
    const found: Record<string, string> = {};
    for (const match of block.matchAll(/- \S*\/couchdb\/(\w+\.ini):(\/opt\/couchdb\/etc\/local\.d\/[^:]+):ro/g)) found[match[1]] = match[2];
    return found;
  };
  expect(Object.keys(mounts('couchdb')).sort()).toEqual(['local.ini']);
  for (const node of ['couchdb-1', 'couchdb-2', 'couchdb-3']) {
    const ini = mounts(node);
    expect(Object.keys(ini).sort()).toEqual(['cluster.ini', 'local.ini']);
    // CouchDB reads local.d in the order of the names: the later file wins.
    expect(ini['cluster.ini'] > ini['local.ini']).toBe(true);
  }
});

/** Every environment variable `loadConfig` reads: the registry's settings. */
function settingNames(): string[] {
  const read = new Set<string>();
  for (const given of [{}, { COUCHDB_URL: 'http://admin:pw@couchdb:5984', METRICS: 'token', METRICS_TOKEN: 'x'.repeat(32), UPSTREAM_REGISTRY: 'https://registry.example' }]) {
    const env = new Proxy(given as Record<string, string>, { get: (target, key) => (typeof key === 'string' && read.add(key), target[key as string]) });
    loadConfig(env);
  }
  return [...read].sort();
}

/** The environment of each service in `docker-compose config`'s output, by service. */
function environments(resolved: string): Record<string, Record<string, string>> {
  const found: Record<string, Record<string, string>> = {};
  let service = '';
  let inEnvironment = false;
  for (const line of resolved.split('\n')) {
    const name = /^ {2}([\w-]+):$/.exec(line);
    if (name) {
      service = name[1];
      inEnvironment = false;
      continue;
    }
    if (/^ {4}environment:$/.test(line)) {
      inEnvironment = true;
      found[service] = {};
      continue;
    }
    const entry = /^ {6}([A-Z][A-Z0-9_]*): ?(.*)$/.exec(line);
    if (inEnvironment && entry) found[service][entry[1]] = entry[2];
    else if (!/^ {6}/.test(line)) inEnvironment = false;
  }
  return found;
}

itWithCompose('every setting of config/index.ts is passed to every registry container (a setting left out of docker-compose.yml fails here)', async () => {
  const settings = settingNames();
  expect(settings.length).toBeGreaterThan(40);
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of settings) delete env[name];
  Object.assign(env, { COUCHDB_PASSWORD: 'pw', COUCHDB_PROXY_SECRET: 'secret' });
  const result = await run('docker-compose', ['-f', join(root, 'docker-compose.yml'), '--profile', 'cluster', 'config'], { cwd: root, env });
  expect([result.code, result.stderr]).toEqual([0, '']);
  const services = environments(result.stdout);
  for (const service of ['registry', 'registry-1', 'registry-2']) {
    expect([service, settings.filter((name) => !(name in (services[service] || {})))]).toEqual([service, []]);
  }
  // Unset, the settings are empty (the registry's defaults), and the registry starts with them.
  const registry = services.registry;
  expect(registry.COUCHDB_URL).toBe('http://admin:pw@couchdb:5984');
  const unquoted = Object.fromEntries(Object.entries(registry).map(([k, v]) => [k, v.replace(/^'(.*)'$/, '$1')]));
  const config = loadConfig(unquoted);
  expect(config.oidcIssuers.map((i) => i.provider)).toEqual(['github', 'gitlab']);
  expect(config).toEqual(loadConfig({ COUCHDB_URL: 'http://admin:pw@couchdb:5984', COUCHDB_PROXY_SECRET: 'secret', HOST: '0.0.0.0', PORT: '5080', DATA_DIR: '/app/data', REGISTRY_PUBLIC_URL: 'http://127.0.0.1:5080' }));
  // A value set in the environment reaches the container.
  const set = await run('docker-compose', ['-f', join(root, 'docker-compose.yml'), 'config'], { cwd: root, env: { ...env, UPSTREAM_MIN_AGE: '3d', OIDC_ISSUERS: '' } });
  expect(environments(set.stdout).registry.UPSTREAM_MIN_AGE).toBe('3d');
  expect(environments(set.stdout).registry.OIDC_ISSUERS).toBe("''");
});

it('the image declares its data volume and exposes one port, the gateway\'s (Fauxton is under /-/couchdb/ there)', () => {
  const runtime = readFileSync(join(root, 'Dockerfile'), 'utf8').split(/^FROM /m)[2];
  expect(runtime).toMatch(/^VOLUME \/app\/data$/m);
  expect(runtime).toMatch(/DATA_DIR=\/app\/data/);
  expect(runtime.match(/^EXPOSE .*$/gm)).toEqual(['EXPOSE 5080']);
});
