/**
 * A stand-in for the public npm registry and its replication feed (which cannot be reached from
 * here), speaking the same protocol: `GET <feed>/` ({update_seq}), `GET <feed>/_changes?since=&limit=`
 * ({results:[{seq,id,changes:[{rev}],deleted?}], last_seq}, no documents, opaque sequence strings),
 * `GET /<name>` (the full packument with `_rev`) and `GET /<name>/-/<file>` (tarballs). It can serve
 * the contract's quirks on demand: gaps in the sequence, entries that show up late behind the head,
 * changes without any entry, and packuments that lag behind their feed entry. Like the public
 * registry, it sends packuments gzipped to whoever accepts it; on demand it redirects tarball
 * requests to where the bytes are, or never answers a packument. It is the upstream's advisory endpoint
 * too: `POST /-/npm/v1/security/advisories/bulk` with `{"<name>": ["<version>", …]}` answers, as the
 * public registry does, `{"<name>": [{id, url, title, severity, vulnerable_versions, cwe, cvss}]}` with
 * the advisories (added and removed with `addAdvisory` / `removeAdvisory`) that cover a version asked
 * about; on demand the endpoint is absent (404, as a registry without audit) or down (503).
 */
import { createHash } from 'crypto';
import http from 'http';
import { AddressInfo } from 'net';
import { gunzipSync, gzipSync } from 'zlib';
import semver from 'semver';

interface Entry {
  n: number;
  id: string;
  rev: string;
  deleted?: boolean;
}

interface Package {
  rev: string;
  packument: Record<string, any>;
  /** Older packuments served first, one per request (a packument lagging its feed entry). */
  stale: Record<string, any>[];
}

/** An advisory as npm's bulk advisory API answers it. */
export interface StandInAdvisory {
  id: number;
  title: string;
  url: string;
  severity: 'info' | 'low' | 'moderate' | 'high' | 'critical';
  vulnerable_versions: string;
  cwe?: string[];
  cvss?: { score: number; vectorString: string | null };
}

export interface FeedStandIn {
  /** The registry URL (packuments, tarballs). */
  url: string;
  /** The feed URL (`<feed>/_changes`). */
  feedUrl: string;
  /**
   * Publishes `versions` of `name` as a new revision. `entry`: `normal` (appended to the feed),
   * `late` (nothing yet; call the returned `release` to insert it behind the head), `none` (never).
   * `lagRequests`: how many packument requests still get the previous revision.
   */
  publish(name: string, versions: string[], options?: { entry?: 'normal' | 'late' | 'none'; lagRequests?: number }): { rev: string; release(): void };
  /** Deletes a package, with a `deleted` feed entry. */
  remove(name: string): void;
  /** From now on, serves bytes for this tarball that do not match its integrity. */
  corruptTarball(name: string, version: string): void;
  /** From now on, sends this tarball in chunks without declaring its length. */
  streamTarball(name: string, version: string): void;
  /** From now on, answers tarball requests with a redirect to where the bytes are (as GitHub's registry does). */
  redirectTarballs(): void;
  /** From now on, never answers a request for this packument. */
  stall(name: string): void;
  /** How many packuments were sent gzipped (as the public registry sends them to whoever accepts it). */
  gzipped: number;
  /** How many packument requests were answered 304 (they named the packument's ETag). */
  notModified: number;
  /** How many packument requests each package got. */
  packumentRequests: Map<string, number>;
  /** Adds an advisory of `name` to the advisory endpoint. */
  addAdvisory(name: string, advisory: StandInAdvisory): void;
  /** Removes the advisory `id` (of every package). */
  removeAdvisory(id: number): void;
  /** The advisory endpoint from now on: `up`, `absent` (404) or `down` (503). */
  advisoryEndpoint(state: 'up' | 'absent' | 'down'): void;
  /** The bodies of the bulk advisory requests, in order. */
  advisoryRequests: Record<string, string[]>[];
  close(): Promise<void>;
}

const seqOf = (n: number) => n + '-g1AAAAstandin' + (n * 7919).toString(36);
const parseSeq = (seq: string | null) => (seq ? parseInt(seq, 10) || 0 : 0);

/** A small valid npm tarball (gzip of a tar holding package/package.json with `manifest`). */
export function manifestTarball(manifest: object): Buffer {
  const content = Buffer.from(JSON.stringify(manifest));
  const header = Buffer.alloc(512);
  header.write('package/package.json', 0);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(content.length.toString(8).padStart(11, '0') + '\0', 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0' + '00', 257);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const body = Buffer.concat([content, Buffer.alloc((512 - (content.length % 512)) % 512)]);
  return gzipSync(Buffer.concat([header, body, Buffer.alloc(1024)]));
}

const tarball = (name: string, version: string): Buffer => manifestTarball({ name, version });

/**
 * `packumentLatencyMs`: every packument is answered that long after it is asked (the public
 * registry is tens of milliseconds away; the benchmark measures the follower with such a wait).
 */
export async function startFeedStandIn(options: { packumentLatencyMs?: number } = {}): Promise<FeedStandIn> {
  const latency = options.packumentLatencyMs || 0;
  const packages = new Map<string, Package>();
  const tarballs = new Map<string, Buffer>();
  const streamed = new Set<string>();
  const fileOf = (name: string, version: string) => name + '/' + name.replace(/^@[^/]+\//, '') + '-' + version + '.tgz';
  const entries: Entry[] = [];
  /** Whether `entries` are in the order of their sequence numbers (appended ones are; a late one is not). */
  let inOrder = true;
  const packumentRequests = new Map<string, number>();
  /**
   * Each packument's gzipped bytes, made once (a packument is never changed once published: a new
   * revision is a new object), as the public registry's CDN keeps them: compressing again for every
   * request took the CPU of the follower measured beside it on a small machine.
   */
  const compressed = new WeakMap<object, Buffer>();
  const stalled = new Set<string>();
  let redirecting = false;
  let next = 0;
  let url = '';

  const advisories = new Map<string, StandInAdvisory[]>();
  let advisoryState: 'up' | 'absent' | 'down' = 'up';

  const server = http.createServer((req, res) => {
    const parsed = new URL(req.url || '/', 'http://standin');
    const send = (status: number, body: unknown) => {
      const data = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
      res.writeHead(status, { 'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json', 'content-length': data.length });
      res.end(data);
    };
    if (req.method === 'POST' && parsed.pathname === '/-/npm/v1/security/advisories/bulk') {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        if (advisoryState === 'absent') return send(404, { error: 'Not found' });
        if (advisoryState === 'down') return send(503, { error: 'Service Unavailable' });
        let raw = Buffer.concat(chunks);
        if (/gzip/.test(String(req.headers['content-encoding'] || ''))) raw = gunzipSync(raw);
        let query: Record<string, string[]>;
        try {
          query = JSON.parse(raw.toString('utf8'));
        } catch {
          return send(400, { error: 'not JSON' });
        }
        standIn.advisoryRequests.push(query);
        const answer: Record<string, StandInAdvisory[]> = {};
        for (const [name, versions] of Object.entries(query)) {
          const found = (advisories.get(name) || []).filter((a) => versions.some((v) => semver.satisfies(v, a.vulnerable_versions)));
          if (found.length) answer[name] = found;
        }
        send(200, answer);
      });
      return;
    }
    if (parsed.pathname === '/feed/' || parsed.pathname === '/feed') {
      return send(200, { db_name: 'registry', update_seq: seqOf(entries.reduce((most, e) => Math.max(most, e.n), 0)) });
    }
    if (parsed.pathname === '/feed/_changes') {
      const since = parseSeq(parsed.searchParams.get('since'));
      const limit = Number(parsed.searchParams.get('limit') || 1000);
      // In order of their sequence (a late entry is inserted behind the head), from the first after `since`.
      if (!inOrder) {
        entries.sort((a, b) => a.n - b.n);
        inOrder = true;
      }
      let first = 0;
      for (let last = entries.length; first < last; ) {
        const middle = (first + last) >> 1;
        if (entries[middle].n > since) last = middle;
        else first = middle + 1;
      }
      const results = entries.slice(first, first + limit);
      return send(200, {
        results: results.map((e) => ({ seq: seqOf(e.n), id: e.id, changes: [{ rev: e.rev }], ...(e.deleted ? { deleted: true } : {}) })),
        last_seq: seqOf(results.length ? results[results.length - 1].n : since),
      });
    }
    const path = decodeURIComponent(parsed.pathname.slice(1));
    const tarballMatch = /^(.+)\/-\/([^/]+\.tgz)$/.exec(path);
    if (tarballMatch && redirecting && !parsed.searchParams.has('blob')) {
      res.writeHead(302, { location: '/' + tarballMatch[1] + '/-/' + tarballMatch[2] + '?blob=1' });
      return void res.end();
    }
    if (tarballMatch) {
      const key = tarballMatch[1] + '/' + tarballMatch[2];
      const data = tarballs.get(key);
      if (!data) return send(404, { error: 'Not found' });
      if (!streamed.has(key)) return send(200, data);
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(data.subarray(0, data.length >> 1));
      return void setTimeout(() => res.end(data.subarray(data.length >> 1)), 10);
    }
    const answerPackument = () => {
      const pkg = packages.get(path);
      packumentRequests.set(path, (packumentRequests.get(path) || 0) + 1);
      if (stalled.has(path)) return;
      if (!pkg) return send(404, { error: 'Not found' });
      const packument = pkg.stale.shift() || pkg.packument;
      // As npm's registry: an ETag per revision, and 304 to a request that names it.
      const etag = '"' + String(packument._rev) + '"';
      if (req.headers['if-none-match'] === etag) {
        standIn.notModified++;
        res.writeHead(304, { etag });
        return void res.end();
      }
      if (!/\bgzip\b/.test(String(req.headers['accept-encoding'] || ''))) {
        const json = Buffer.from(JSON.stringify(packument));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': json.length, etag });
        return void res.end(json);
      }
      let data = compressed.get(packument);
      if (!data) compressed.set(packument, (data = gzipSync(JSON.stringify(packument))));
      standIn.gzipped++;
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': data.length, etag });
      res.end(data);
    };
    if (latency > 0) setTimeout(answerPackument, latency);
    else answerPackument();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = 'http://127.0.0.1:' + (server.address() as AddressInfo).port;

  const standIn: FeedStandIn = {
    url,
    feedUrl: url + '/feed',
    packumentRequests,
    gzipped: 0,
    notModified: 0,
    advisoryRequests: [],
    addAdvisory(name, advisory) {
      advisories.set(name, [...(advisories.get(name) || []).filter((a) => a.id !== advisory.id), { cwe: ['CWE-1321'], cvss: { score: 7.5, vectorString: null }, ...advisory }]);
    },
    removeAdvisory(id) {
      for (const [name, list] of advisories) advisories.set(name, list.filter((a) => a.id !== id));
    },
    advisoryEndpoint(state) {
      advisoryState = state;
    },
    publish(name, versions, options = {}) {
      const previous = packages.get(name);
      const generation = previous ? parseInt(previous.rev, 10) + 1 : 1;
      const rev = generation + '-' + createHash('md5').update(name + generation).digest('hex');
      const now = new Date().toISOString();
      const manifests: Record<string, any> = {};
      const time: Record<string, string> = { created: now, modified: now };
      for (const version of versions) {
        const data = tarball(name, version);
        const file = name.replace(/^@[^/]+\//, '') + '-' + version + '.tgz';
        tarballs.set(name + '/' + file, data);
        manifests[version] = {
          name,
          version,
          dist: {
            tarball: url + '/' + name + '/-/' + file,
            integrity: 'sha512-' + createHash('sha512').update(data).digest('base64'),
            shasum: createHash('sha1').update(data).digest('hex'),
          },
        };
        time[version] = now;
      }
      const packument = { _id: name, _rev: rev, name, 'dist-tags': { latest: versions[versions.length - 1] }, versions: manifests, time, maintainers: [{ name: 'upstream' }] };
      const stale = previous && options.lagRequests ? Array.from({ length: options.lagRequests }, () => previous.packument) : [];
      packages.set(name, { rev, packument, stale });
      next += 3; // the feed's sequence has gaps
      const reserved = next - 2;
      const entry = options.entry || 'normal';
      if (entry === 'normal') entries.push({ n: next, id: name, rev });
      return {
        rev,
        release: () => {
          if (entry !== 'late') return;
          entries.push({ n: reserved, id: name, rev });
          inOrder = false;
        },
      };
    },
    remove(name) {
      const pkg = packages.get(name);
      if (!pkg) return;
      packages.delete(name);
      next += 3;
      entries.push({ n: next, id: name, rev: parseInt(pkg.rev, 10) + 1 + '-deleted', deleted: true });
    },
    corruptTarball(name, version) {
      tarballs.set(fileOf(name, version), gzipSync(Buffer.from('not the published bytes')));
    },
    streamTarball(name, version) {
      streamed.add(fileOf(name, version));
    },
    redirectTarballs() {
      redirecting = true;
    },
    stall(name) {
      stalled.add(name);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return standIn;
}
