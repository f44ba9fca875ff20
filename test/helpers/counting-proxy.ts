/**
 * A small HTTP proxy in front of an upstream started by a test, which records every request it
 * passes on (method, decoded path, the Authorization header): what the registry asked of that
 * upstream, and with which credentials. Optionally it answers npm's bulk advisory request itself,
 * as a stand-in for the upstream's advisory service.
 */
import http from 'http';
import { gunzipSync } from 'zlib';
import { listenOnLoopback } from './servers';

export interface SeenRequest {
  method: string;
  /** The path as asked, decoded (`/@scope/name`). */
  path: string;
  authorization?: string;
  /** The JSON body of a bulk advisory request answered here. */
  body?: Record<string, string[]>;
  /** The conditional headers it came with (`If-None-Match`, `If-Modified-Since`). */
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  /** The status the upstream answered (once it did). */
  status?: number;
}

export interface CountingProxy {
  url: string;
  /** Where requests are passed on to (settable once that server is up). */
  target: string;
  requests: SeenRequest[];
  /** The requests whose path names `text`. */
  asked(text: string): SeenRequest[];
  stop(): Promise<void>;
}

const BULK = '/-/npm/v1/security/advisories/bulk';

export interface CountingProxyOptions {
  /** Answers npm's bulk advisory request here, with what this returns for the body. */
  advisories?: (body: Record<string, string[]>) => Record<string, unknown>;
  /** Paths answered 404 here instead of being passed on. */
  notFound?: (path: string) => boolean;
  /** Answers pass without `ETag` and `Last-Modified`, and conditional headers do not reach the upstream (an upstream without validators). */
  noValidators?: boolean;
  /** How long a request for `path` is held before it is passed on (a slow upstream): 0 by default. */
  delayMs?: (path: string) => number;
}

export async function startCountingProxy(target = '', options: CountingProxyOptions = {}): Promise<CountingProxy> {
  const proxy: CountingProxy = {
    url: '',
    target,
    requests: [],
    asked: (text) => proxy.requests.filter((r) => r.path.includes(text)),
    stop: () => Promise.resolve(),
  };
  const server = http.createServer((req, res) => {
    let path = req.url || '';
    try {
      path = decodeURIComponent(path);
    } catch {
      /* kept as asked */
    }
    const seen: SeenRequest = { method: req.method || 'GET', path, authorization: req.headers.authorization };
    if (typeof req.headers['if-none-match'] === 'string') seen.ifNoneMatch = req.headers['if-none-match'];
    if (typeof req.headers['if-modified-since'] === 'string') seen.ifModifiedSince = req.headers['if-modified-since'];
    const headers = { ...req.headers };
    if (options.noValidators) {
      delete headers['if-none-match'];
      delete headers['if-modified-since'];
    }
    proxy.requests.push(seen);
    if (options.advisories && req.method === 'POST' && req.url === BULK) {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        seen.body = JSON.parse((req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8'));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(options.advisories!(seen.body as Record<string, string[]>)));
      });
      return;
    }
    if (options.notFound && options.notFound(path)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return void res.end('{"error":"not found"}');
    }
    const pass = (): void => {
      const forward = http.request(proxy.target + (req.url || ''), { method: req.method, headers }, (answer) => {
        seen.status = answer.statusCode;
        const answered = { ...answer.headers };
        if (options.noValidators) {
          delete answered.etag;
          delete answered['last-modified'];
        }
        res.writeHead(answer.statusCode || 502, answered);
        answer.pipe(res);
      });
      forward.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      req.pipe(forward);
    };
    const delay = options.delayMs ? options.delayMs(path) : 0;
    if (delay > 0) setTimeout(pass, delay);
    else pass();
  });
  Object.assign(proxy, await listenOnLoopback(server));
  return proxy;
}
