/**
 * The benchmark's data, generated the same for both registries: real gzip tarballs (as `npm pack`
 * makes them), publish bodies as npm sends them, and a very large packument written straight to
 * each registry's storage (publishing 4,000 versions one by one would take hours on either).
 */
import { createHash, randomBytes } from 'crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import * as tar from 'tar';

export interface Manifest {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  [key: string]: unknown;
}

/** A real npm tarball of `manifest` with `padding` bytes of incompressible content. */
export async function packTarball(manifest: Manifest, padding = 0): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-pack-'));
  try {
    mkdirSync(join(dir, 'package'));
    writeFileSync(join(dir, 'package', 'package.json'), JSON.stringify(manifest, null, 2));
    writeFileSync(join(dir, 'package', 'index.js'), 'module.exports = ' + JSON.stringify(manifest.name + '@' + manifest.version) + ';\n');
    if (padding > 0) writeFileSync(join(dir, 'package', 'data.bin'), randomBytes(padding));
    const chunks: Buffer[] = [];
    const stream = tar.c({ gzip: true, cwd: dir, portable: true }, ['package']) as unknown as NodeJS.ReadableStream;
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function integrity(data: Buffer): { shasum: string; integrity: string } {
  return {
    shasum: createHash('sha1').update(data).digest('hex'),
    integrity: 'sha512-' + createHash('sha512').update(data).digest('base64'),
  };
}

/** The body `npm publish` sends for one version. */
export function publishBody(manifest: Manifest, tarball: Buffer, registryUrl: string): Record<string, unknown> {
  const file = manifest.name.split('/').pop() + '-' + manifest.version + '.tgz';
  return {
    _id: manifest.name,
    name: manifest.name,
    description: manifest.description,
    'dist-tags': { latest: manifest.version },
    versions: {
      [manifest.version]: {
        ...manifest,
        _id: manifest.name + '@' + manifest.version,
        dist: { ...integrity(tarball), tarball: registryUrl + '/' + manifest.name + '/-/' + file },
      },
    },
    readme: '# ' + manifest.name,
    _attachments: { [file]: { content_type: 'application/octet-stream', data: tarball.toString('base64'), length: tarball.length } },
  };
}

/**
 * The packument a registry serves for one version, as a static file (the install ceiling: the same
 * tree served by nginx). The tarball is at `<registryUrl>/<name>/-/<file>`.
 */
export function staticPackument(manifest: Manifest, tarball: Buffer, registryUrl: string): Record<string, unknown> {
  const body = publishBody(manifest, tarball, registryUrl);
  const { _attachments, _id, ...packument } = body;
  void _attachments;
  void _id;
  const time = '2026-01-01T00:00:00.000Z';
  return { ...packument, time: { created: time, modified: time, [manifest.version]: time } };
}

/** A packument with `count` versions of about `versionBytes` each (without tarballs), for read benchmarks. */
export function largePackument(name: string, count: number, versionBytes: number, registryUrl: string): Record<string, any> {
  const filler = 'x'.repeat(Math.max(0, versionBytes - 600));
  const versions: Record<string, unknown> = {};
  const time: Record<string, string> = { created: '2020-01-01T00:00:00.000Z', modified: '2024-01-01T00:00:00.000Z' };
  for (let i = 0; i < count; i++) {
    const version = Math.floor(i / 100) + '.' + (i % 100) + '.0';
    const fake = createHash('sha512').update(name + version).digest();
    versions[version] = {
      name,
      version,
      description: 'A very large package, version ' + version + ' ' + filler,
      main: 'index.js',
      license: 'MIT',
      dependencies: { 'left-pad': '^1.0.0', 'right-pad': '^2.' + (i % 10) + '.0' },
      _id: name + '@' + version,
      dist: {
        shasum: fake.subarray(0, 20).toString('hex'),
        integrity: 'sha512-' + fake.toString('base64'),
        tarball: registryUrl + '/' + name + '/-/' + name + '-' + version + '.tgz',
      },
    };
    time[version] = new Date(Date.UTC(2020, 0, 1) + i * 3600_000).toISOString();
  }
  const latest = Object.keys(versions).pop() as string;
  return { _id: name, name, description: 'A very large package', 'dist-tags': { latest }, versions, time, maintainers: [{ name: 'bench' }], readme: '# ' + name };
}

/** A dependency tree of about `count` packages: `roots` direct dependencies, each with children. */
export function dependencyTree(prefix: string, count: number, roots: number): { manifests: Manifest[]; direct: Record<string, string> } {
  const manifests: Manifest[] = [];
  // Licenses as the public registry's packages declare them, for the license policy's cost.
  const licenses = ['MIT', 'MIT', 'ISC', 'Apache-2.0', 'BSD-3-Clause', '(MIT OR Apache-2.0)', 'BSD-2-Clause'];
  for (let i = 0; i < count; i++) manifests.push({ name: prefix + '-' + i, version: '1.0.' + (i % 7), description: 'tree package ' + i, license: licenses[i % licenses.length] });
  for (let i = roots; i < count; i++) {
    const parent = manifests[i % roots];
    parent.dependencies = { ...(parent.dependencies || {}), [manifests[i].name]: '^' + manifests[i].version };
  }
  const direct: Record<string, string> = {};
  for (let i = 0; i < roots; i++) direct[manifests[i].name] = '^' + manifests[i].version;
  return { manifests, direct };
}
