/**
 * Reads served from registries elsewhere: the configured upstream for names unknown here (redirected,
 * or proxied), and foreign packages registered here with the `url` of the registry that hosts them
 * (always proxied: a redirect would carry this registry's credentials along when both registries
 * share a host). Proxied packuments point their tarball URLs at this registry, which streams the
 * tarballs through; nothing of the client's credentials is passed on. The upstream's HTTP client
 * for mirroring is `replication/upstream.ts`.
 */
import { Readable } from 'stream';
import { Request, Response } from 'express';
import { HttpError, UPSTREAM_FAILED } from './errors';
import { tarballUrl } from '../core/packument';
import { Config } from '../config';
import { fetchFailure, upstreamPath } from '../replication/upstream';

function unreachable(upstream: string, err: unknown): HttpError {
  return new HttpError(UPSTREAM_FAILED, 'The upstream registry ' + upstream + ' ' + fetchFailure(err).words + '; packages already here are still served. Try again later.');
}

/** Headers worth passing to an upstream registry (not the client's credentials for this registry). */
function forwardHeaders(req: Request): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of ['accept', 'if-none-match', 'accept-encoding', 'user-agent', 'npm-command', 'npm-session']) {
    const value = req.headers[name];
    if (typeof value === 'string') headers[name] = name === 'accept-encoding' ? 'identity' : value;
  }
  return headers;
}

/** Serves `GET /<name>[/...]` for a name that is not here, from the upstream; false when none is configured. */
export async function forwardToUpstream(config: Config, baseUrl: string, req: Request, res: Response, name: string, rest: string[]): Promise<boolean> {
  const upstream = config.upstreamRegistry;
  if (!upstream) return false;
  if (config.upstreamMode === 'redirect') {
    res.redirect(302, upstream + upstreamPath(name, rest));
    return true;
  }
  await proxyRead(upstream, config.upstreamTimeoutMs, baseUrl, req, res, name, rest, 'Package "' + name + '" is neither in this registry nor in its upstream ' + upstream + '.');
  return true;
}

/**
 * Serves a read of `name` (its packument, a version, a tarball) from the registry at `registry`;
 * `missing` is the answer when that registry does not have it either.
 */
export async function proxyRead(registry: string, timeoutMs: number, baseUrl: string, req: Request, res: Response, name: string, rest: string[], missing: string): Promise<void> {
  let response: globalThis.Response;
  try {
    response = await fetch(registry + upstreamPath(name, rest), { headers: forwardHeaders(req), signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
  } catch (err) {
    throw unreachable(registry, err);
  }
  const isTarball = rest.length === 2 && rest[0] === '-';
  if (response.status === 404) {
    await response.body?.cancel();
    throw new HttpError(404, missing);
  }
  if (response.status >= 500) {
    await response.body?.cancel();
    throw new HttpError(UPSTREAM_FAILED, 'The registry ' + registry + ' answered ' + response.status + ' for "' + name + '"; packages already here are still served. Try again later.');
  }
  for (const header of ['etag', 'last-modified', 'cache-control']) {
    const value = response.headers.get(header);
    if (value) res.setHeader(header, value);
  }
  res.setHeader('X-Registry-Upstream', registry);
  if (isTarball || response.status !== 200) {
    res.status(response.status);
    const type = response.headers.get('content-type');
    if (type) res.setHeader('content-type', type);
    const length = response.headers.get('content-length');
    if (length) res.setHeader('content-length', length);
    if (!response.body || req.method === 'HEAD') {
      await response.body?.cancel();
      res.end();
      return;
    }
    const body = Readable.fromWeb(response.body as import('stream/web').ReadableStream);
    body.on('error', () => res.destroy());
    body.pipe(res);
    return;
  }
  // A packument or a version: its tarball URLs are pointed at this registry, which streams them through.
  const doc = (await response.json()) as Record<string, unknown>;
  const point = (manifest: { version?: string; dist?: { tarball?: string } }) => {
    if (manifest && manifest.dist && typeof manifest.version === 'string') manifest.dist.tarball = tarballUrl(baseUrl, name, manifest.version);
  };
  if (doc.versions && typeof doc.versions === 'object') for (const manifest of Object.values(doc.versions)) point(manifest);
  else point(doc);
  res.removeHeader('etag');
  res.type(response.headers.get('content-type') || 'application/json').send(JSON.stringify(doc));
}

/** POST bodies forwarded as JSON to the upstream (audit), with a clear answer when it cannot help. */
export async function postToUpstream(config: Config, path: string, body: unknown): Promise<{ status: number; body: unknown }> {
  const upstream = config.upstreamRegistry;
  if (!upstream) {
    throw new HttpError(503, 'This registry has no upstream to ask for security advisories (UPSTREAM_REGISTRY is not set); `npm audit` cannot check here.');
  }
  let response: globalThis.Response;
  try {
    response = await fetch(upstream + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(config.upstreamTimeoutMs),
    });
  } catch (err) {
    throw unreachable(upstream, err);
  }
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) };
  } catch {
    throw new HttpError(UPSTREAM_FAILED, 'The upstream registry ' + upstream + ' answered the audit with something that is not JSON (' + response.status + ').');
  }
}
