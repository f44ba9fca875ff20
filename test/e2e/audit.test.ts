/**
 * `npm audit` through this registry: the bulk advisory request is forwarded to the upstream (here a
 * stand-in that speaks the public registry's advisory protocol, which cannot be reached from here),
 * and without an upstream npm shows a clear error instead of hanging.
 */
import { createServer, Server } from 'http';
import { AddressInfo } from 'net';
import { gunzipSync } from 'zlib';
import { mkdirSync } from 'fs';
import { join } from 'path';
import { makePackage, makeProject, npmClient, NpmClient, run } from '../helpers/npm';

const BIN = join(__dirname, '..', '..', 'node_modules', '.bin');
import { startTestRegistry, TestRegistry } from '../helpers/registry';

let advisories: Server;
let advisoriesUrl: string;
const received: unknown[] = [];

beforeAll(async () => {
  advisories = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/-/npm/v1/security/advisories/bulk') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
        return;
      }
      const raw = Buffer.concat(chunks);
      const body = JSON.parse((req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString()) as Record<string, string[]>;
      received.push(body);
      const answer: Record<string, unknown[]> = {};
      if (body['audited-pkg']) {
        answer['audited-pkg'] = [{ id: 1001, url: 'https://advisories.example/1001', title: 'Prototype pollution in audited-pkg', severity: 'high', vulnerable_versions: '<1.1.0', cwe: ['CWE-1321'], cvss: { score: 7.5, vectorString: null } }];
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((resolve) => advisories.listen(0, '127.0.0.1', resolve));
  advisoriesUrl = 'http://127.0.0.1:' + (advisories.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => advisories.close(() => resolve())));

async function projectWithLock(registry: TestRegistry): Promise<{ client: NpmClient; dir: string }> {
  const client = npmClient(registry.url, await registry.signup('auditor'));
  expect((await client.npm(['publish'], makePackage(client.home, { name: 'audited-pkg', version: '1.0.0' }))).code).toBe(0);
  const dir = makeProject(client.home, 'app', { 'audited-pkg': '1.0.0' });
  expect((await client.npm(['install', '--package-lock-only'], dir)).code).toBe(0);
  return { client, dir };
}

it('forwards npm audit to the upstream and npm reports its advisories', async () => {
  const registry = await startTestRegistry({ UPSTREAM_REGISTRY: advisoriesUrl });
  try {
    const { client, dir } = await projectWithLock(registry);
    const audit = await client.npm(['audit', '--json'], dir);
    const report = JSON.parse(audit.stdout);
    expect(report.vulnerabilities['audited-pkg'].severity).toBe('high');
    expect(report.vulnerabilities['audited-pkg'].via[0].title).toBe('Prototype pollution in audited-pkg');
    expect(received).toContainEqual({ 'audited-pkg': ['1.0.0'] });
  } finally {
    await registry.stop();
  }
});

it('without an upstream, npm audit fails at once with the reason', async () => {
  const registry = await startTestRegistry();
  try {
    const { client, dir } = await projectWithLock(registry);
    const started = Date.now();
    const audit = await client.npm(['audit'], dir);
    expect(Date.now() - started).toBeLessThan(15000);
    expect(audit.code).not.toBe(0);
    expect(audit.stderr).toContain('424');
    expect(audit.stderr).toContain('UPSTREAM_REGISTRY is not set');
    // pnpm retries every 5xx for over a minute; a 424 ends at once with the registry's words.
    const pnpmHome = join(client.home, 'pnpm-audit');
    mkdirSync(pnpmHome, { recursive: true });
    const env = { ...process.env, HOME: pnpmHome, npm_config_store_dir: join(pnpmHome, '.pnpm-store'), npm_config_registry: registry.url + '/' };
    expect((await run(join(BIN, 'pnpm'), ['install', '--lockfile-only', '--registry', registry.url + '/'], { cwd: dir, env })).code).toBe(0);
    const pnpmStarted = Date.now();
    const pnpmAudit = await run(join(BIN, 'pnpm'), ['audit', '--registry', registry.url + '/'], { cwd: dir, env });
    expect(Date.now() - pnpmStarted).toBeLessThan(20000);
    expect(pnpmAudit.code).not.toBe(0);
    expect(pnpmAudit.stdout + pnpmAudit.stderr).toContain('424');
  } finally {
    await registry.stop();
  }
});
