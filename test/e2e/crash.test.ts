/**
 * A publish interrupted by killing the registry process leaves either the whole version (manifest and
 * a tarball matching its integrity) or nothing of it, and the version can be published afterwards.
 */
import { ChildProcess } from 'child_process';
import { createHash, randomBytes } from 'crypto';
import http from 'http';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { sha1, sha512 } from '../helpers/npm';
import { killProcess, startRegistryProcess } from '../helpers/process';
import { databasesOf, removeDoc } from '../helpers/registry';

const dataDir = mkdtempSync(join(tmpdir(), 'registry-crash-'));
const registryDb = process.env.COUCHDB_URL ? 'registry-crash-' + Math.random().toString(36).slice(2, 8) : 'registry';

const startProcess = () => startRegistryProcess({ DATA_DIR: dataDir, REGISTRY_DB: registryDb, REGISTRY_ADMIN_PASSWORD: 'crash-admin' });
const stop = killProcess;

function publishBody(name: string, version: string, tarball: Buffer): Buffer {
  return Buffer.from(JSON.stringify({
    _id: name, name, 'dist-tags': { latest: version },
    versions: { [version]: { name, version, dist: { shasum: sha1(tarball), integrity: sha512(tarball), tarball: 'x' } } },
    _attachments: { [name + '-' + version + '.tgz']: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
  }));
}

/** Sends a publish and kills the registry when `sentFraction` of the body is written. */
function interruptedPublish(url: string, token: string, body: Buffer, sentFraction: number, child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    const request = http.request(url + '/crashpkg', {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'content-length': body.length, authorization: 'Bearer ' + token },
    });
    request.on('error', () => resolve());
    request.on('response', (res) => { res.resume(); res.on('end', resolve); });
    const cut = Math.floor(body.length * sentFraction);
    request.write(body.subarray(0, cut), () => {
      if (sentFraction < 1) {
        void stop(child).then(resolve);
      } else {
        request.end(() => setTimeout(() => void stop(child), 5));
      }
    });
  });
}

async function signup(url: string, name: string): Promise<string> {
  const res = await fetch(url + '/-/user/org.couchdb.user:' + name, {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, password: 'crash-password', email: name + '@example.com' }),
  });
  return ((await res.json()) as { token: string }).token;
}

afterAll(async () => {
  if (process.env.COUCHDB_URL) {
    const u = new URL(process.env.COUCHDB_URL);
    const auth = 'Basic ' + Buffer.from(decodeURIComponent(u.username) + ':' + decodeURIComponent(u.password)).toString('base64');
    for (const db of databasesOf(registryDb)) await fetch(u.origin + '/' + db, { method: 'DELETE', headers: { authorization: auth } });
    await removeDoc(process.env.COUCHDB_URL, '/_users/' + encodeURIComponent('org.couchdb.user:crasher'));
  }
  rmSync(dataDir, { recursive: true, force: true });
});

it.each([
  ['half of the body sent', 0.5, '1.0.0'],
  ['the whole body sent', 1, '1.0.1'],
])('killed with %s: the version is whole or absent', async (_label, fraction, version) => {
  let server = await startProcess();
  const token = await signup(server.url, 'crasher');
  const tarball = randomBytes(6 * 1024 * 1024);
  await interruptedPublish(server.url, token, publishBody('crashpkg', version, tarball), fraction, server.child);
  await stop(server.child);

  server = await startProcess();
  try {
    const res = await fetch(server.url + '/crashpkg');
    const doc = res.status === 200 ? ((await res.json()) as any) : null;
    const tarballRes = await fetch(server.url + '/crashpkg/-/crashpkg-' + version + '.tgz');
    if (doc && doc.versions[version]) {
      expect(tarballRes.status).toBe(200);
      const bytes = Buffer.from(await tarballRes.arrayBuffer());
      expect('sha512-' + createHash('sha512').update(bytes).digest('base64')).toBe(doc.versions[version].dist.integrity);
    } else {
      expect(tarballRes.status).toBe(404);
      // Nothing half-written blocks the retry.
      const retry = await fetch(server.url + '/crashpkg', {
        method: 'PUT', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token },
        body: publishBody('crashpkg', version, tarball) as unknown as BodyInit,
      });
      expect(retry.status).toBe(201);
    }
    if (fraction < 1) expect(doc && doc.versions[version]).toBeFalsy();
  } finally {
    await stop(server.child);
  }
});

it('download counts: killed (SIGKILL), a gateway loses at most what it counted since its last flush; stopped (SIGTERM), nothing', async () => {
  const downloaded = async (url: string, times: number) => {
    for (let i = 0; i < times; i++) {
      const res = await fetch(url + '/countpkg/-/countpkg-1.0.0.tgz');
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
  };
  const counted = async (url: string) => ((await (await fetch(url + '/-/downloads/point/last-day/countpkg')).json()) as { downloads: number }).downloads;
  let server = await startRegistryProcess({ DATA_DIR: dataDir, REGISTRY_DB: registryDb, REGISTRY_ADMIN_PASSWORD: 'crash-admin', DOWNLOADS_FLUSH_SECONDS: '1' });
  try {
    const token = await signup(server.url, 'crasher');
    const published = await fetch(server.url + '/countpkg', {
      method: 'PUT', headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token },
      body: publishBody('countpkg', '1.0.0', randomBytes(1024)) as unknown as BodyInit,
    });
    expect(published.status).toBe(201);
    await downloaded(server.url, 2);
    // A flush (every second) writes those two; the third is killed with the process before the next.
    await new Promise((r) => setTimeout(r, 2500));
    await downloaded(server.url, 1);
  } finally {
    await stop(server.child);
  }
  // A long flush interval from now on: only a clean stop writes.
  server = await startRegistryProcess({ DATA_DIR: dataDir, REGISTRY_DB: registryDb, REGISTRY_ADMIN_PASSWORD: 'crash-admin', DOWNLOADS_FLUSH_SECONDS: '3600' });
  let afterKill: number;
  try {
    afterKill = await counted(server.url);
    expect(afterKill).toBeGreaterThanOrEqual(2);
    expect(afterKill).toBeLessThanOrEqual(3);
    await downloaded(server.url, 2);
  } finally {
    await stop(server.child, 'SIGTERM');
  }
  server = await startRegistryProcess({ DATA_DIR: dataDir, REGISTRY_DB: registryDb, REGISTRY_ADMIN_PASSWORD: 'crash-admin', DOWNLOADS_FLUSH_SECONDS: '3600' });
  try {
    expect(await counted(server.url)).toBe(afterKill + 2);
  } finally {
    await stop(server.child);
  }
});
