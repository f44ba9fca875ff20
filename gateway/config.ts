/**
 * Every setting of the registry, read from the environment, with safe defaults. The README's
 * configuration table documents the same list.
 */
import { resolve } from 'path';

export type SignupMode = 'open' | 'closed';

export interface Config {
  /** Gateway port (`PORT`, default 5080). */
  port: number;
  /** Gateway bind address (`HOST`, default 127.0.0.1). */
  host: string;
  /** A real CouchDB with admin credentials (`COUCHDB_URL`); unset runs the embedded server. */
  couchdbUrl?: string;
  /** CouchDB's proxy-authentication secret (`COUCHDB_PROXY_SECRET`); read from its config API when unset. */
  couchdbProxySecret?: string;
  /** Port of the embedded server (`COUCHDB_PORT`, default 5984). */
  couchdbPort: number;
  /** Storage of the embedded server and generated secrets (`DATA_DIR`, default ./data). */
  dataDir: string;
  /** Base of tarball URLs (`REGISTRY_PUBLIC_URL`, default http://HOST:PORT). */
  publicUrl?: string;
  /** Admin password of the embedded server (`REGISTRY_ADMIN_PASSWORD`); generated once when unset. */
  adminPassword?: string;
  /** `open`: anyone may create an account; `closed`: only admins create users (`REGISTRY_SIGNUP`). */
  signup: SignupMode;
  /** Name of the registry database (`REGISTRY_DB`, default `registry`); tokens live in `<name>-tokens`. */
  registryDb: string;
  /** Largest accepted publish body in bytes (`MAX_PUBLISH_BYTES`, default 100 MiB). */
  maxPublishBytes: number;
  /** Registry that names unknown here are forwarded to (`UPSTREAM_REGISTRY`); off when unset. */
  upstreamRegistry?: string;
  /** `proxy`: served through the gateway; `redirect`: 302 to the upstream (`UPSTREAM_MODE`, default proxy). */
  upstreamMode: 'proxy' | 'redirect';
  /** How long to wait for the upstream before answering 502/504 (`UPSTREAM_TIMEOUT_MS`, default 10000). */
  upstreamTimeoutMs: number;
  /** Memory for packuments kept ready to serve (`PACKUMENT_CACHE_MB`, default 256; 0 turns it off). */
  packumentCacheBytes: number;
  /** Log level for pino (`LOG_LEVEL`, default info). */
  logLevel: string;
}

function integer(env: NodeJS.ProcessEnv, key: string, fallback: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(key + ' must be a non-negative integer, got "' + raw + '"');
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const signup = (env.REGISTRY_SIGNUP || 'open').toLowerCase();
  if (signup !== 'open' && signup !== 'closed') {
    throw new Error('REGISTRY_SIGNUP must be "open" or "closed", got "' + env.REGISTRY_SIGNUP + '"');
  }
  const registryDb = env.REGISTRY_DB || 'registry';
  if (!/^[a-z][a-z0-9_$()+/-]*$/.test(registryDb)) {
    throw new Error('REGISTRY_DB must be a valid CouchDB database name (lower case, starting with a letter)');
  }
  const upstreamMode = (env.UPSTREAM_MODE || 'proxy').toLowerCase();
  if (upstreamMode !== 'proxy' && upstreamMode !== 'redirect') {
    throw new Error('UPSTREAM_MODE must be "proxy" or "redirect", got "' + env.UPSTREAM_MODE + '"');
  }
  if (env.UPSTREAM_REGISTRY && !/^https?:\/\/[^/]+/.test(env.UPSTREAM_REGISTRY)) {
    throw new Error('UPSTREAM_REGISTRY must be an http(s) URL, got "' + env.UPSTREAM_REGISTRY + '"');
  }
  return {
    port: integer(env, 'PORT', 5080),
    host: env.HOST || '127.0.0.1',
    couchdbUrl: env.COUCHDB_URL || undefined,
    couchdbProxySecret: env.COUCHDB_PROXY_SECRET || undefined,
    couchdbPort: integer(env, 'COUCHDB_PORT', 5984),
    dataDir: resolve(env.DATA_DIR || './data'),
    publicUrl: env.REGISTRY_PUBLIC_URL ? env.REGISTRY_PUBLIC_URL.replace(/\/+$/, '') : undefined,
    adminPassword: env.REGISTRY_ADMIN_PASSWORD || undefined,
    signup: signup as SignupMode,
    registryDb,
    maxPublishBytes: integer(env, 'MAX_PUBLISH_BYTES', 100 * 1024 * 1024),
    upstreamRegistry: env.UPSTREAM_REGISTRY ? env.UPSTREAM_REGISTRY.replace(/\/+$/, '') : undefined,
    upstreamMode: upstreamMode as 'proxy' | 'redirect',
    upstreamTimeoutMs: integer(env, 'UPSTREAM_TIMEOUT_MS', 10000),
    packumentCacheBytes: integer(env, 'PACKUMENT_CACHE_MB', 256) * 1024 * 1024,
    logLevel: env.LOG_LEVEL || 'info',
  };
}
