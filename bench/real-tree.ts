/**
 * The real-tree install bench (`node dist/bench/run.js --real-tree --runs 5`, issue 28): `npm install`
 * of a real dependency tree (bench/real-tree: a company web app's package.json and the lockfile npm
 * resolved for it from registry.npmjs.org) straight from nginx (the client's own limit), through this
 * registry and through Verdaccio 6.8 with nginx as their upstream: cold, warm, warm with every read
 * revalidated, and after a restart; interleaved rounds, medians, ratios to nginx and to Verdaccio.
 *
 * The preparation fetches, once, the full packument of every name in the lockfile and the tarball of
 * every version in it from registry.npmjs.org (`BENCH_REAL_TREE_CACHE`, default
 * ~/.cache/couch-registry-bench/real-tree), keeping only the versions published at or before the
 * lockfile's date; each run then writes the packuments, their tarball URLs pointing at its nginx, into
 * a static tree of its own (the tarballs hard-linked from the cache).
 */
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync, copyFileSync, openSync, readSync, closeSync, fstatSync, rmSync } from 'fs';
import { homedir, loadavg, tmpdir } from 'os';
import { dirname, join } from 'path';
import * as semver from 'semver';
import * as ssri from 'ssri';
import { dependenciesOf, versionFor } from '../replication/prefetch';
import { UpstreamPackument } from '../core/mirrored';
import { cpuSeconds, inTurn, installTimes, median, Ours, quiet, startOurs, startPeer, startStaticServer } from './harness';

const log = (message: string) => process.stderr.write('[bench] ' + message + '\n');

/** The fixture's folder in the repository, whether this runs compiled (dist/bench) or from source (ts-jest). */
const FIXTURE = existsSync(join(__dirname, 'real-tree', 'fixture.json')) ? join(__dirname, 'real-tree') : join(__dirname, '..', '..', 'bench', 'real-tree');
const NPM_REGISTRY = 'https://registry.npmjs.org';
/** What the kept versions' `dist.tarball` start with in the cache, replaced by each run's nginx URL. */
const ORIGIN_PLACEHOLDER = 'http://real-tree-origin.invalid';

export interface RealTreeFixture {
  resolvedAt: string;
  /** The dependencies of the project installed (the package.json's dependencies and devDependencies). */
  direct: Record<string, string>;
  /** Entries of the lockfile (its "packages" but the root). */
  packages: number;
  /** name → versions in the lockfile, with the integrity of each. */
  versions: Map<string, Map<string, string>>;
}

export function readFixture(): RealTreeFixture {
  const { resolvedAt } = JSON.parse(readFileSync(join(FIXTURE, 'fixture.json'), 'utf8')) as { resolvedAt: string };
  const manifest = JSON.parse(readFileSync(join(FIXTURE, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
  const lock = JSON.parse(readFileSync(join(FIXTURE, 'package-lock.json'), 'utf8')) as { packages: Record<string, { name?: string; version: string; integrity: string; link?: boolean }> };
  const versions = new Map<string, Map<string, string>>();
  let packages = 0;
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path || entry.link) continue;
    packages++;
    const name = entry.name || path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    if (!versions.has(name)) versions.set(name, new Map());
    versions.get(name)!.set(entry.version, entry.integrity);
  }
  return { resolvedAt, direct: { ...manifest.dependencies, ...manifest.devDependencies }, packages, versions };
}

export function cacheFolder(): string {
  return process.env.BENCH_REAL_TREE_CACHE || join(homedir(), '.cache', 'couch-registry-bench', 'real-tree');
}

/** Writes `data` to `file` whole or not at all (a run stopped halfway leaves no partial file to resume on). */
function writeAtomically(file: string, data: string | Buffer): void {
  mkdirSync(dirname(file), { recursive: true });
  const partial = file + '.partial-' + process.pid;
  writeFileSync(partial, data);
  renameSync(partial, file);
}

/** The body at `url`, after up to 4 tries; null for a 404 when `missingIsNull` (a name the registry does not know). */
async function fetchWithRetries(url: string, headers: Record<string, string>, missingIsNull = false): Promise<Buffer | null> {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(url, { headers });
      if (res.status === 404 && missingIsNull) return null;
      if (!res.ok) throw new Error(url + ' answered ' + res.status);
      return Buffer.from(await res.arrayBuffer());
    } catch (err) {
      if (attempt >= 4) throw new Error('fetching ' + url + ' failed 4 times (is registry.npmjs.org reachable?): ' + (err as Error).message, { cause: err });
      await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
    }
  }
}

/** The packument as it stood at `resolvedAt`: later versions dropped, `time` and dist-tags trimmed to what is kept, tarball URLs on the placeholder origin. */
export function trimPackument(packument: Record<string, any>, resolvedAt: string): Record<string, any> {
  const cutoff = Date.parse(resolvedAt);
  const time: Record<string, string> = packument.time || {};
  const versions: Record<string, any> = {};
  for (const [version, manifest] of Object.entries<Record<string, any>>(packument.versions || {})) {
    // A version without a time (rare, old packages) is kept: it was there before the lockfile.
    if (time[version] && Date.parse(time[version]) > cutoff) continue;
    if (manifest.dist?.tarball) manifest.dist.tarball = ORIGIN_PLACEHOLDER + new URL(manifest.dist.tarball).pathname;
    versions[version] = manifest;
  }
  const keptTime: Record<string, string> = {};
  for (const [key, value] of Object.entries(time)) if (key === 'created' || key in versions) keptTime[key] = value;
  const kept = Object.keys(versions).filter((v) => keptTime[v]);
  keptTime.modified = kept.length ? kept.map((v) => keptTime[v]).sort().pop()! : time.modified;
  const tags: Record<string, string> = {};
  for (const [tag, version] of Object.entries<string>(packument['dist-tags'] || {})) if (version in versions) tags[tag] = version;
  // latest as it was: the tag itself when its version is kept, else the highest kept non-prerelease.
  if (!tags.latest) {
    const stable = Object.keys(versions).filter((v) => semver.valid(v) && !semver.prerelease(v)).sort(semver.compare);
    const any = Object.keys(versions).filter((v) => semver.valid(v)).sort(semver.compare);
    const latest = stable.pop() || any.pop();
    if (latest) tags.latest = latest;
  }
  return { ...packument, 'dist-tags': tags, versions, time: keptTime };
}

const packumentFile = (cache: string, name: string) => join(cache, 'packuments', encodeURIComponent(name) + '.json');

/** A cached packument, or null when the registry did not know the name (remembered as `<name>.404`). */
function cachedPackument(cache: string, name: string): Record<string, any> | null {
  const file = packumentFile(cache, name);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  return null;
}

/**
 * Fetches what the cache lacks (resumable: each file is written whole once checked), 8 requests at a
 * time: the packument of every name in the lockfile and the tarball of every version in it (checked
 * against the lockfile's integrity); then what this registry's prefetching asks of its upstream on
 * top of what npm asks (replication/prefetch.ts: for every package a client read, the packuments its
 * latest version depends on, and the tarball each one's range picks), so that the upstream answers
 * those as the public registry would instead of 404 (checked against the packument's integrity).
 * Returns the sizes of the tree.
 */
export async function prepareRealTree(fixture: RealTreeFixture, cache = cacheFolder()): Promise<{ packumentBytes: number; tarballBytes: number; tarballs: number; fetched: number; names: number; extraNames: number; extraTarballs: number }> {
  let fetched = 0;
  const inParallel = async (jobs: (() => Promise<void>)[]) => {
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < jobs.length) await jobs[next++]();
    }));
  };
  const packumentOf = async (name: string): Promise<Record<string, any> | null> => {
    const cached = cachedPackument(cache, name);
    if (cached) return cached;
    if (existsSync(packumentFile(cache, name) + '.404')) return null;
    const res = await fetchWithRetries(NPM_REGISTRY + '/' + name.replace('/', '%2f'), { accept: 'application/json' }, true);
    fetched++;
    if (!res) {
      writeAtomically(packumentFile(cache, name) + '.404', '');
      return null;
    }
    const packument = trimPackument(JSON.parse(res.toString('utf8')), fixture.resolvedAt);
    writeAtomically(packumentFile(cache, name), JSON.stringify(packument));
    return packument;
  };
  const tarballPaths = new Set<string>();
  const tarballOf = async (name: string, version: string, manifest: Record<string, any>, integrity: string) => {
    const path = manifest.dist.tarball.slice(ORIGIN_PLACEHOLDER.length);
    const tarball = join(cache, 'tarballs', path);
    tarballPaths.add(tarball);
    if (existsSync(tarball)) return;
    const bytes = (await fetchWithRetries(NPM_REGISTRY + path, {}))!;
    if (!ssri.checkData(bytes, integrity)) throw new Error('the tarball of ' + name + '@' + version + ' does not match its integrity ' + integrity.slice(0, 20) + '…');
    writeAtomically(tarball, bytes);
    fetched++;
  };
  const names = [...fixture.versions.keys()].sort();
  let done = 0;
  await inParallel(names.map((name) => async () => {
    const packument = await packumentOf(name);
    if (!packument) throw new Error(name + ' is in the lockfile but ' + NPM_REGISTRY + ' does not know it');
    for (const [version, integrity] of fixture.versions.get(name)!) {
      const manifest = packument.versions[version];
      if (!manifest) throw new Error(name + '@' + version + ' is in the lockfile but not in its packument as of ' + fixture.resolvedAt);
      await tarballOf(name, version, manifest, integrity);
    }
    if (++done % 200 === 0) log('real tree: ' + done + ' of ' + names.length + ' packages ready');
  }));
  // What prefetching asks on top: the dependencies of each package's latest version, and the tarball each one's range picks.
  // Its packument for every dependency; its tarball for those not optional (mirror.ts fetches none ahead for an optional one).
  const ahead = new Map<string, Set<string>>();
  for (const name of names) {
    for (const dependency of dependenciesOf(cachedPackument(cache, name) as UpstreamPackument)) {
      if (!ahead.has(dependency.name)) ahead.set(dependency.name, new Set());
      if (!dependency.optional) ahead.get(dependency.name)!.add(dependency.spec);
    }
  }
  const extraNames = [...ahead.keys()].filter((name) => !fixture.versions.has(name)).sort();
  let extraTarballs = 0;
  await inParallel([...ahead.keys()].sort().map((name) => async () => {
    const packument = await packumentOf(name);
    if (!packument) return;
    for (const spec of ahead.get(name)!) {
      const version = versionFor(packument as UpstreamPackument, spec);
      if (!version || fixture.versions.get(name)?.has(version) || tarballPaths.has(join(cache, 'tarballs', packument.versions[version].dist.tarball.slice(ORIGIN_PLACEHOLDER.length)))) continue;
      const manifest = packument.versions[version];
      if (!manifest.dist?.integrity && !manifest.dist?.shasum) continue;
      extraTarballs++;
      await tarballOf(name, version, manifest, manifest.dist.integrity || ssri.fromHex(manifest.dist.shasum, 'sha1').toString());
    }
  }));
  const all = [...new Set([...names, ...extraNames])].filter((name) => existsSync(packumentFile(cache, name)));
  let packumentBytes = 0;
  for (const name of all) packumentBytes += statSync(packumentFile(cache, name)).size;
  let tarballBytes = 0;
  for (const tarball of tarballPaths) tarballBytes += statSync(tarball).size;
  const tarballs = tarballPaths.size;
  return { packumentBytes, tarballBytes, tarballs, fetched, names: all.length, extraNames: all.length - names.length, extraTarballs };
}

/**
 * The static tree nginx serves, in `dir`: `<name>/index.json` (scoped: `@scope/name/index.json`), the
 * tarballs in `<name>/-/` hard-linked from the cache (copied where the cache is on another file system),
 * every kept version's `dist.tarball` on `url`.
 */
export function writeStaticTree(dir: string, url: string, cache = cacheFolder()): void {
  for (const file of readdirSync(join(cache, 'packuments')).filter((entry) => entry.endsWith('.json'))) {
    const name = decodeURIComponent(file.slice(0, -'.json'.length));
    const text = readFileSync(join(cache, 'packuments', file), 'utf8').split(ORIGIN_PLACEHOLDER).join(url);
    mkdirSync(join(dir, name), { recursive: true });
    writeFileSync(join(dir, name, 'index.json'), text);
  }
  const link = (from: string, to: string) => {
    for (const entry of readdirSync(from, { withFileTypes: true })) {
      if (entry.isDirectory()) {
        mkdirSync(join(to, entry.name), { recursive: true });
        link(join(from, entry.name), join(to, entry.name));
      } else if (!existsSync(join(to, entry.name))) {
        try {
          linkSync(join(from, entry.name), join(to, entry.name));
        } catch {
          copyFileSync(join(from, entry.name), join(to, entry.name));
        }
      }
    }
  };
  link(join(cache, 'tarballs'), dir);
}

/** Lines nginx appended to `file` since `offset` bytes, and the new offset. */
function accessLogSince(file: string, offset: number): { lines: string[]; offset: number } {
  if (!existsSync(file)) return { lines: [], offset };
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const buffer = Buffer.alloc(Math.max(0, size - offset));
    readSync(fd, buffer, 0, buffer.length, offset);
    return { lines: buffer.toString('utf8').split('\n').filter(Boolean), offset: size };
  } finally {
    closeSync(fd);
  }
}

/** Upstream requests in nginx's access-log lines: packuments and tarballs, by status. */
function countRequests(lines: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of lines) {
    const match = /"(?:GET|HEAD|POST) (\S+) [^"]*" (\d{3})/.exec(line);
    if (!match) continue;
    const key = (match[1].includes('/-/') ? 'tarball ' : 'packument ') + match[2];
    counts[key] = (counts[key] || 0) + 1;
  }
  return counts;
}

const describeCounts = (counts: Record<string, number>) =>
  Object.keys(counts).length ? Object.keys(counts).sort().map((key) => counts[key] + ' × ' + key).join(', ') : 'none';

type Measure = 'nginx' | 'oursCold' | 'oursWarm' | 'oursRestarted' | 'oursRestartedRevalidating' | 'oursRevalidating' | 'peerCold' | 'peerWarm';

const LABELS: Record<Measure, string> = {
  nginx: 'straight from nginx (the client\'s own limit)',
  oursCold: 'this registry, cold, through pull-through (fresh, nginx as upstream)',
  oursWarm: 'this registry, warm (filled by the cold install, right after it)',
  oursRestarted: 'this registry, just restarted on its data (defaults; caches empty)',
  oursRestartedRevalidating: 'this registry, just restarted with UPSTREAM_MAX_AGE_SECONDS=0 (caches empty)',
  oursRevalidating: 'this registry, warm, every read revalidated (UPSTREAM_MAX_AGE_SECONDS=0, caches filled by the install before)',
  peerCold: 'Verdaccio 6.8, cold, nginx as uplink',
  peerWarm: 'Verdaccio 6.8, warm (filled by its cold install, right after it)',
};

/**
 * `--real-tree`: `rounds` rounds; in each, fresh registries, and three groups in turn (each first in
 * one round out of three): nginx; this registry cold, warm, restarted, restarted with every read
 * revalidated, and again (caches filled); Verdaccio cold, warm. Every install: an empty npm cache, no lockfile, `--prefer-online --ignore-scripts`.
 */
export async function runRealTree(rounds: number, options: { cpuProfileDir?: string } = {}): Promise<string> {
  const fixture = readFixture();
  const cache = cacheFolder();
  log('real tree: preparing ' + fixture.versions.size + ' packages in ' + cache + ' (fetched once from ' + NPM_REGISTRY + ')');
  const sizes = await prepareRealTree(fixture, cache);
  const mb = (bytes: number) => (bytes / 1e6).toFixed(0) + ' MB';
  log('real tree: ' + sizes.names + ' packuments (' + sizes.extraNames + ' of them and ' + sizes.extraTarballs + ' tarballs only for prefetching), ' + mb(sizes.packumentBytes) + '; ' + sizes.tarballs + ' tarballs, ' + mb(sizes.tarballBytes) + (sizes.fetched ? '; ' + sizes.fetched + ' files fetched now' : ''));
  const work = join(tmpdir(), 'bench-real-tree-' + process.pid);
  mkdirSync(work, { recursive: true });
  const staticDir = join(work, 'static');
  const written = Date.now();
  const nginx = await startStaticServer(staticDir, (url) => writeStaticTree(staticDir, url, cache));
  log('real tree: static tree written in ' + ((Date.now() - written) / 1000).toFixed(1) + ' s, served by ' + nginx.name + ' at ' + nginx.url);
  const accessLog = join(work, 'static-nginx-access.log');
  let logOffset = 0;
  const times: Record<Measure, number[]> = { nginx: [], oursCold: [], oursWarm: [], oursRestarted: [], oursRestartedRevalidating: [], oursRevalidating: [], peerCold: [], peerWarm: [] };
  const cpu: Partial<Record<Measure, number[]>> = {};
  const upstream: Partial<Record<Measure, Record<string, number>[]>> = {};
  const loads: string[] = [];
  const profiling = options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir=' + options.cpuProfileDir] : [];
  const args = ['--ignore-scripts'];
  try {
    for (let round = 0; round < rounds; round++) {
      loads.push(loadavg().map((l) => l.toFixed(2)).join(' '));
      log('real tree: round ' + (round + 1) + ' of ' + rounds + ' (load ' + loads[loads.length - 1] + ')');
      let ours: Ours = await startOurs({ UPSTREAM_REGISTRY: nginx.url, UPSTREAM_MODE: 'mirror' }, undefined, profiling);
      const peer = await startPeer(nginx.url);
      const pids = () => [ours.pid, peer.pid];
      /**
       * One install of the fixture from `url`, with the CPU `pid` used and the upstream requests made
       * for it, both until the registries are idle again: what a registry does after the client is
       * done (storing what it held back) is part of what the install cost it.
       */
      const install = async (measure: Measure, url: string, pid?: number) => {
        await quiet(pids());
        logOffset = accessLogSince(accessLog, logOffset).offset;
        const before = pid ? cpuSeconds(pid) : 0;
        const ms = (await installTimes(work, url, fixture.direct, LABELS[measure], false, { args, timeoutMs: 600_000 })).cold;
        const during = pid ? cpuSeconds(pid) - before : NaN;
        await quiet(pids());
        const used = pid ? cpuSeconds(pid) - before : NaN;
        const requests = countRequests(accessLogSince(accessLog, logOffset).lines);
        times[measure].push(ms);
        if (pid) (cpu[measure] ||= []).push(used);
        if (measure !== 'nginx') (upstream[measure] ||= []).push(requests);
        log('  ' + LABELS[measure] + ': ' + (ms / 1000).toFixed(1) + ' s' + (pid ? ', ' + used.toFixed(1) + ' s of CPU until idle (' + during.toFixed(1) + ' s while npm ran)' : '') + (measure !== 'nginx' ? '; upstream requests: ' + describeCounts(requests) : ''));
      };
      const restart = async (env: Record<string, string>) => {
        await ours.halt();
        ours = await startOurs({ UPSTREAM_REGISTRY: nginx.url, UPSTREAM_MODE: 'mirror', ...env }, ours, profiling);
      };
      const groups = [
        async () => install('nginx', nginx.url),
        async () => {
          await install('oursCold', ours.url, ours.pid);
          await install('oursWarm', ours.url, ours.pid);
          await restart({});
          await install('oursRestarted', ours.url, ours.pid);
          // "Long after the packuments were fetched": every read compared with the upstream. A read
          // that misses the caches does not ask for that (a restart's first reads), so once filled.
          await restart({ UPSTREAM_MAX_AGE_SECONDS: '0' });
          await install('oursRestartedRevalidating', ours.url, ours.pid);
          await install('oursRevalidating', ours.url, ours.pid);
        },
        async () => {
          await install('peerCold', peer.url, peer.pid);
          await install('peerWarm', peer.url, peer.pid);
        },
      ];
      try {
        for (const i of inTurn(groups.length, round)) await groups[i]();
      } finally {
        await ours.stop();
        await peer.stop();
      }
    }
    loads.push(loadavg().map((l) => l.toFixed(2)).join(' '));
  } finally {
    await nginx.stop();
    rmSync(work, { recursive: true, force: true });
  }
  return realTreeReport(fixture, sizes, rounds, times, cpu, upstream, loads, nginx.name);
}

function realTreeReport(
  fixture: RealTreeFixture,
  sizes: Awaited<ReturnType<typeof prepareRealTree>>,
  rounds: number,
  times: Record<Measure, number[]>,
  cpu: Partial<Record<Measure, number[]>>,
  upstream: Partial<Record<Measure, Record<string, number>[]>>,
  loads: string[],
  nginxName: string,
): string {
  const m = (measure: Measure) => median(times[measure]);
  const nginx = m('nginx');
  const targets: Partial<Record<Measure, number>> = { oursCold: 1.05, oursWarm: 1.02, oursRevalidating: 1.02, oursRestarted: 1.05, oursRestartedRevalidating: 1.05 };
  const peerOf: Partial<Record<Measure, Measure>> = { oursCold: 'peerCold', oursWarm: 'peerWarm', oursRevalidating: 'peerWarm', oursRestarted: 'peerWarm', oursRestartedRevalidating: 'peerWarm' };
  const seconds = (ms: number) => (ms / 1000).toFixed(1);
  const lines = [
    '| Install of the real tree | Time (median) | Rounds | × nginx | × Verdaccio (same state) | Target (× nginx) | Met | Registry CPU for the install, until idle again (median) | Upstream requests for the install (median of rounds) |',
    '| --- | ---: | --- | ---: | ---: | --- | --- | ---: | --- |',
  ];
  for (const measure of Object.keys(LABELS) as Measure[]) {
    const time = m(measure);
    const peer = peerOf[measure];
    const target = targets[measure];
    const counts = upstream[measure];
    const countKeys = counts ? [...new Set(counts.flatMap((c) => Object.keys(c)))].sort() : [];
    // The median, and each round's count where they differ (revalidation depends on how long the install before took).
    const countOf = (key: string) => {
      const each = counts!.map((c) => c[key] || 0);
      return median(each) + ' × ' + key + (new Set(each).size > 1 ? ' (' + each.join(', ') + ')' : '');
    };
    const countText = counts ? (countKeys.length ? countKeys.map(countOf).join(', ') : 'none') : '';
    lines.push('| ' + LABELS[measure] + ' | ' + seconds(time) + ' s | ' + times[measure].map(seconds).join(', ') + ' | ' + (time / nginx).toFixed(2) + ' | ' + (peer ? (time / m(peer)).toFixed(2) : '') + ' | ' + (target ? '≤ ' + target.toFixed(2) : '') + ' | ' +
      (target ? (time / nginx <= target ? 'yes' : 'no') : '') + ' | ' + (cpu[measure] ? median(cpu[measure]!).toFixed(1) + ' s (' + cpu[measure]!.map((c) => c.toFixed(1)).join(', ') + ')' : '') + ' | ' + countText + ' |');
  }
  const cpuRatio = median(cpu.oursCold!) / median(cpu.peerCold!);
  return [
    'Measured ' + new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC with `node dist/bench/run.js --real-tree --runs ' + rounds + '`.',
    '',
    'The tree: bench/real-tree (a company web app\'s package.json; the lockfile npm resolved for it from registry.npmjs.org on ' + fixture.resolvedAt + '): ' +
      fixture.packages + ' packages in the lockfile (' + [...fixture.versions.values()].reduce((n, v) => n + v.size, 0) + ' name-versions of ' + fixture.versions.size + ' names). Served by ' + nginxName + ': ' +
      sizes.names + ' full packuments (only the versions published by then), ' + (sizes.packumentBytes / 1e6).toFixed(0) + ' MB, and ' + sizes.tarballs + ' tarballs, ' + (sizes.tarballBytes / 1e6).toFixed(0) + ' MB. ' +
      'Of these, ' + sizes.extraNames + ' packuments and ' + sizes.extraTarballs + ' tarballs are not in the tree: they are what this registry\'s prefetching asks for on top (the dependencies of each package\'s latest version, replication/prefetch.ts), there so that nginx answers them as the public registry would rather than 404. ' +
      'registry.npmjs.org as reached from this machine serves packuments without readmes, maintainers or most manifest fields (lodash: 132 KB, typescript: 10 MB), so these are smaller than the public registry\'s.',
    '',
    'Every install: `npm install --prefer-online --ignore-scripts --no-audit --no-fund` of the package.json alone (no lockfile), npm cache empty. ' + rounds + ' rounds; in each, fresh registries and three groups in turn, each going first in one round out of three: nginx; ours cold → warm → restarted with its defaults and installed from (caches empty) → restarted with `UPSTREAM_MAX_AGE_SECONDS=0` and installed from (caches empty; its first reads are compared with the upstream too) → installed from again (caches filled: every read compared with the upstream, as long after the packuments were fetched); Verdaccio cold → warm (Verdaccio\'s `maxage` is its default, 2 minutes). The harness waits until both registries are idle before and after each install; a registry\'s CPU and its upstream requests are counted from the start of the install until then (what it does after npm is done, such as storing what it held, included).',
    '',
    ...lines,
    '',
    '- Our CPU for the cold install (until idle again) ÷ Verdaccio\'s: **' + cpuRatio.toFixed(2) + '** (target ≤ 0.40, ' + (cpuRatio <= 0.4 ? 'met' : 'not met') + ').',
    '- Machine load (1, 5, 15 min) at the start of each round and at the end: ' + loads.join('; ') + ' (2 cores, shared).',
    '',
  ].join('\n');
}
