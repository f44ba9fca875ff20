/**
 * The real-tree bench's fixture and preparation, without the network: the lockfile is a real tree
 * of at least 800 packages, and a packument is kept as it stood at the lockfile's date (later
 * versions, their times and the tags pointing at them dropped; tarball URLs moved to the static
 * server's). The installs themselves run in `node dist/bench/run.js --real-tree` (bench/README.md).
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { readFixture, trimPackument, writeStaticTree } from '../bench/real-tree';

it('the fixture is a real lockfile of at least 800 packages, with its date and every direct dependency in it', () => {
  const fixture = readFixture();
  expect(fixture.packages).toBeGreaterThanOrEqual(800);
  expect(Number.isNaN(Date.parse(fixture.resolvedAt))).toBe(false);
  for (const name of Object.keys(fixture.direct)) expect([name, fixture.versions.has(name)]).toEqual([name, true]);
  for (const versions of fixture.versions.values()) for (const integrity of versions.values()) expect(integrity).toMatch(/^sha(512|1)-/);
});

it('keeps a packument as it stood at the lockfile\'s date, its tarball URLs on the static server', () => {
  const tarball = (version: string) => ({ tarball: 'https://registry.npmjs.org/@scope/pkg/-/pkg-' + version + '.tgz', integrity: 'sha512-x' });
  const packument = {
    _id: '@scope/pkg',
    name: '@scope/pkg',
    'dist-tags': { latest: '2.0.0', next: '3.0.0-rc.1', old: '1.0.0' },
    versions: {
      '1.0.0': { name: '@scope/pkg', version: '1.0.0', dist: tarball('1.0.0') },
      '1.1.0': { name: '@scope/pkg', version: '1.1.0', dist: tarball('1.1.0') },
      '1.2.0-beta.1': { name: '@scope/pkg', version: '1.2.0-beta.1', dist: tarball('1.2.0-beta.1') },
      '2.0.0': { name: '@scope/pkg', version: '2.0.0', dist: tarball('2.0.0') },
      '3.0.0-rc.1': { name: '@scope/pkg', version: '3.0.0-rc.1', dist: tarball('3.0.0-rc.1') },
    },
    time: {
      created: '2020-01-01T00:00:00.000Z', modified: '2026-06-01T00:00:00.000Z',
      '1.0.0': '2020-01-01T00:00:00.000Z', '1.1.0': '2021-01-01T00:00:00.000Z', '1.2.0-beta.1': '2022-01-01T00:00:00.000Z', '2.0.0': '2026-01-01T00:00:00.000Z', '3.0.0-rc.1': '2026-06-01T00:00:00.000Z',
    },
  };
  const trimmed = trimPackument(JSON.parse(JSON.stringify(packument)), '2025-01-01T00:00:00.000Z');
  expect(Object.keys(trimmed.versions)).toEqual(['1.0.0', '1.1.0', '1.2.0-beta.1']);
  // latest moved to the highest kept version that is not a prerelease; tags of dropped versions gone.
  expect(trimmed['dist-tags']).toEqual({ latest: '1.1.0', old: '1.0.0' });
  expect(trimmed.time).toEqual({ created: '2020-01-01T00:00:00.000Z', modified: '2022-01-01T00:00:00.000Z', '1.0.0': '2020-01-01T00:00:00.000Z', '1.1.0': '2021-01-01T00:00:00.000Z', '1.2.0-beta.1': '2022-01-01T00:00:00.000Z' });
  // A latest still kept stays as it was.
  expect(trimPackument(JSON.parse(JSON.stringify(packument)), '2026-02-01T00:00:00.000Z')['dist-tags']).toEqual({ latest: '2.0.0', old: '1.0.0' });

  // Written for a static server: the packument at @scope/pkg/index.json, every tarball URL on the server's origin.
  const cache = mkdtempSync(join(tmpdir(), 'real-tree-cache-'));
  const dir = mkdtempSync(join(tmpdir(), 'real-tree-static-'));
  try {
    mkdirSync(join(cache, 'packuments'));
    mkdirSync(join(cache, 'tarballs', '@scope', 'pkg', '-'), { recursive: true });
    writeFileSync(join(cache, 'packuments', encodeURIComponent('@scope/pkg') + '.json'), JSON.stringify(trimmed));
    writeFileSync(join(cache, 'tarballs', '@scope', 'pkg', '-', 'pkg-1.1.0.tgz'), 'tarball bytes');
    writeStaticTree(dir, 'http://127.0.0.1:1234', cache);
    const served = JSON.parse(readFileSync(join(dir, '@scope', 'pkg', 'index.json'), 'utf8'));
    expect(served.versions['1.1.0'].dist.tarball).toBe('http://127.0.0.1:1234/@scope/pkg/-/pkg-1.1.0.tgz');
    expect(readFileSync(join(dir, '@scope', 'pkg', '-', 'pkg-1.1.0.tgz'), 'utf8')).toBe('tarball bytes');
  } finally {
    rmSync(cache, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
