/** What every controller works with: configuration, CouchDB access, the token store and the logger. */
import Nano from 'nano';
import { Logger } from 'pino';
import { PackageDoc } from '../couchapp/lib/types';
import { Config } from './config';
import { Couch, couchFailure } from './couch';
import { HttpError } from './errors';
import { AccessRules } from './access';
import { PackumentCache } from './cache';
import { TarballCache } from './tarball-cache';
import { LoginThrottle } from './throttle';
import { TokenStore } from './tokens';

export interface Context {
  config: Config;
  couch: Couch;
  tokens: TokenStore;
  throttle: LoginThrottle;
  access: AccessRules;
  cache: PackumentCache;
  tarballs: TarballCache;
  registry: Nano.DocumentScope<PackageDoc>;
  /** Base of the URLs the registry hands out (tarballs, login pages). */
  baseUrl: string;
  log: Logger;
}

/** Reads a package document, or null when there is none. */
export async function readPackage(ctx: Context, name: string): Promise<PackageDoc | null> {
  try {
    return await ctx.registry.get(name);
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
}

/** A CouchDB refusal turned into the answer the npm user sees (validate_doc_update's reason included). */
export function fromCouch(err: unknown): HttpError {
  const failure = couchFailure(err);
  switch (failure.statusCode) {
    case 401:
    case 403:
      return new HttpError(failure.statusCode, failure.reason);
    case 409:
      return new HttpError(409, 'The package changed while this request was processed; run the command again.');
    case 413:
      return new HttpError(413, 'The package document is larger than CouchDB accepts (max_document_size); ask an admin to raise it.');
    default:
      return new HttpError(502, 'The registry database failed: ' + failure.reason + '. Try again later.');
  }
}

/** After this gateway wrote a package: its own caches drop it at once (others follow via _changes). */
export function changedHere(ctx: Context, name: string): void {
  ctx.cache.invalidate(name);
  ctx.tarballs.invalidate(name);
}

export const isConflict = (err: unknown): boolean => (err as { statusCode?: number }).statusCode === 409;
