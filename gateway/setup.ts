/**
 * Brings a CouchDB to the state the registry needs: the databases, their `_security`, and the
 * compiled design document. A changed design is first saved under a staging id and its views are
 * built there; only then is it copied over the live design, whose index CouchDB (and PouchDB) reuse
 * because the view functions are identical. Reads never wait for a rebuild.
 */
import { randomUUID } from 'crypto';
import { readFileSync } from 'fs';
import Nano from 'nano';
import { ACCESS_OUTPUT_FILE, DesignDoc, MIRROR_OUTPUT_FILE, OUTPUT_FILE, SettingsDesignCode } from '../couchapp/build';
import { jsonEqual } from '../couchapp/validate_doc_update';
import { DEFAULT_RULES } from '../couchapp/lib/access';
import { Couch, couchFailure } from './couch';

export const DESIGN_NAME = 'app';
const STAGING_ID = '_design/app-staging';

export function loadDesignDoc(): DesignDoc {
  try {
    return JSON.parse(readFileSync(OUTPUT_FILE, 'utf8')) as DesignDoc;
  } catch {
    throw new Error('The compiled design document is missing (' + OUTPUT_FILE + '): run `npm run build` first.');
  }
}

function loadSettingsDesign(file: string): SettingsDesignCode {
  return JSON.parse(readFileSync(file, 'utf8')) as SettingsDesignCode;
}

/**
 * Installs `_design/access`: its code is replaced when it changed, its `rules` (an admin's to edit in
 * Fauxton) are created with the defaults once and never overwritten.
 */
export async function pushAccessDesign(couch: Couch, dbName: string, code: SettingsDesignCode): Promise<void> {
  const db = couch.use<SettingsDesignCode & { rules?: unknown }>(dbName);
  const live = await getOrNull(db, code._id);
  if (live && live.build_hash === code.build_hash) return;
  await db.insert({ ...(live || { rules: DEFAULT_RULES }), ...code, _rev: live ? live._rev : undefined } as unknown as SettingsDesignCode);
}

async function ensureDatabase(couch: Couch, name: string): Promise<void> {
  try {
    await couch.server.db.create(name);
  } catch (err) {
    const failure = couchFailure(err);
    if (failure.statusCode !== 412) throw new Error('Cannot create database "' + name + '": ' + failure.reason);
  }
}

async function getOrNull<T>(db: Nano.DocumentScope<T>, id: string): Promise<(T & { _rev: string }) | null> {
  try {
    return (await db.get(id)) as T & { _rev: string };
  } catch (err) {
    if (couchFailure(err).statusCode === 404) return null;
    throw err;
  }
}

async function putSecurity(couch: Couch, db: string, security: object): Promise<void> {
  await couch.server.relax({ method: 'PUT', db, path: '_security', body: security });
}

/**
 * Installs `_design/mirror`: its code, this registry's id (`registry`, made once and kept: it is the
 * `origin` of every local package) and the private scopes from the configuration. Returns the id.
 */
export async function pushMirrorDesign(couch: Couch, dbName: string, code: SettingsDesignCode, privateScopes: string[]): Promise<string> {
  const db = couch.use<SettingsDesignCode & { registry?: string; privateScopes?: string[] }>(dbName);
  for (;;) {
    const live = await getOrNull(db, code._id);
    const registry = live && typeof live.registry === 'string' && live.registry ? live.registry : randomUUID();
    if (live && live.build_hash === code.build_hash && live.registry === registry && jsonEqual(live.privateScopes, privateScopes)) return registry;
    try {
      await db.insert({ ...(live || {}), ...code, registry, privateScopes, _rev: live ? live._rev : undefined });
      return registry;
    } catch (err) {
      // Another gateway starting at the same time wrote it first: take its id.
      if (couchFailure(err).statusCode !== 409) throw err;
    }
  }
}

/** Saves the design document when its build differs from the one in the database. Returns true when it changed. */
export async function pushDesign(couch: Couch, dbName: string, design: DesignDoc): Promise<boolean> {
  const db = couch.use<DesignDoc>(dbName);
  const live = await getOrNull(db, design._id);
  if (live && live.build_hash === design.build_hash) return false;
  if (live) {
    // Build the new views under a staging id first; the live design keeps serving meanwhile.
    const staging = await getOrNull(db, STAGING_ID);
    const stagingDoc = { _id: STAGING_ID, language: 'javascript', views: design.views, build_hash: design.build_hash } as Partial<DesignDoc>;
    if (staging) stagingDoc._rev = staging._rev;
    await db.insert(stagingDoc as DesignDoc);
    for (const view of Object.keys(design.views)) {
      await db.view('app-staging', view, { limit: 1 });
    }
  }
  await db.insert({ ...design, _rev: live ? live._rev : undefined });
  const staging = await getOrNull(db, STAGING_ID);
  if (staging) await db.destroy(STAGING_ID, staging._rev);
  return true;
}

/** Creates what the registry needs in CouchDB; safe to run at every start. */
export async function setupDatabases(
  couch: Couch,
  registryDb: string,
  signup: 'open' | 'closed',
  privateScopes: string[] = [],
): Promise<{ designChanged: boolean; registryId: string }> {
  for (const name of ['_users', '_replicator', registryDb, registryDb + '-tokens']) await ensureDatabase(couch, name);
  // The registry is readable by everyone; writes are decided by validate_doc_update.
  await putSecurity(couch, registryDb, { admins: { names: [], roles: ['_admin'] }, members: { names: [], roles: [] } });
  // Token hashes are for admins (the gateway) only.
  await putSecurity(couch, registryDb + '-tokens', { admins: { names: [], roles: ['_admin'] }, members: { names: [], roles: ['_admin'] } });
  // Token look-up by user (npm token list).
  await couch.server.relax({ method: 'POST', db: registryDb + '-tokens', path: '_index', body: { index: { fields: ['user'] }, name: 'by-user', ddoc: 'tokens', type: 'json' } });
  // Closed sign-up holds at the database too: only admins may create users in _users directly.
  const userMembers = signup === 'closed' ? { names: [], roles: ['_admin'] } : { names: [], roles: [] };
  await putSecurity(couch, '_users', { admins: { names: [], roles: ['_admin'] }, members: userMembers });
  const designChanged = await pushDesign(couch, registryDb, loadDesignDoc());
  await pushAccessDesign(couch, registryDb, loadSettingsDesign(ACCESS_OUTPUT_FILE));
  const registryId = await pushMirrorDesign(couch, registryDb, loadSettingsDesign(MIRROR_OUTPUT_FILE), privateScopes);
  return { designChanged, registryId };
}
