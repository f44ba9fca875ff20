/**
 * Brings a CouchDB to the state the registry needs: the databases, their `_security`, and the
 * compiled design document. A changed design is first saved under a staging id and its views are
 * built there; only then is it copied over the live design, whose index CouchDB (and PouchDB) reuse
 * because the view functions are identical. Reads never wait for a rebuild.
 */
import { randomUUID } from 'crypto';
import { readFileSync } from 'fs';
import { Logger } from 'pino';
import { DESIGN, DesignDoc, designId, OUTPUT_FILES, SettingsDesignCode } from '../couchapp/design';
import { MirrorSettings, PACKAGE_DB_SECURITY, SITE_ROLE } from '../core/provenance';
import { Config } from '../config';
import { jsonEqual } from '../core/rules';
import { DEFAULT_RULES } from '../core/access';
import { Couch, couchFailure } from '../couchdb/client';
import { linear, retry } from '../lib/retry';

const STAGING = DESIGN.app + '-staging';

export function loadDesignDoc(): DesignDoc {
  try {
    return JSON.parse(readFileSync(OUTPUT_FILES.app, 'utf8')) as DesignDoc;
  } catch {
    throw new Error('The compiled design document is missing (' + OUTPUT_FILES.app + '): run `npm run build` first.');
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
  const db = couch.db<SettingsDesignCode & { rules?: unknown }>(dbName);
  const live = await db.get(code._id);
  if (live && live.build_hash === code.build_hash) return;
  await db.put({ ...(live || { rules: DEFAULT_RULES }), ...code, _rev: live ? live._rev : undefined } as unknown as SettingsDesignCode);
}

/** Installs a design document that is only code (`_design/config`), replaced when its build changed. */
export async function pushCodeDesign(couch: Couch, dbName: string, code: SettingsDesignCode): Promise<void> {
  const db = couch.db<SettingsDesignCode>(dbName);
  const live = await db.get(code._id);
  if (live && live.build_hash === code.build_hash) return;
  await db.put({ ...code, _rev: live ? live._rev : undefined });
}

async function ensureDatabase(couch: Couch, name: string): Promise<void> {
  try {
    await couch.createDatabase(name);
  } catch (err) {
    const failure = couchFailure(err);
    throw new Error('Cannot create database "' + name + '": ' + failure.reason, { cause: err });
  }
}

function ignoreStatus(err: unknown, ...statuses: number[]): void {
  if (statuses.indexOf(couchFailure(err).statusCode) === -1) throw err;
}

async function putSecurity(couch: Couch, db: string, security: object): Promise<void> {
  await againOnConflict(() => couch.db(db).request('PUT', '_security', security));
}

type Security = { admins?: { names?: string[]; roles?: string[] }; members?: { names?: string[]; roles?: string[] } };

/**
 * Makes `db`'s `_security` grant at least `wanted`: names and roles an admin added (a reader account
 * by name, say) are kept; an open database (no members) becomes closed to everyone else.
 */
async function addSecurity(couch: Couch, db: string, wanted: Security): Promise<void> {
  const current = await couch.db(db).request<Security>('GET', '_security');
  const union = (a: string[] = [], b: string[] = []) => [...new Set([...a, ...b])];
  const merged: Security = {};
  const now: Security = {};
  for (const part of ['admins', 'members'] as const) {
    merged[part] = { names: union(current[part]?.names, wanted[part]?.names), roles: union(current[part]?.roles, wanted[part]?.roles) };
    now[part] = { names: union(current[part]?.names), roles: union(current[part]?.roles) };
  }
  if (jsonEqual(merged, now)) return;
  await couch.db(db).request('PUT', '_security', merged);
}

/**
 * Installs `_design/mirror` in both package databases: its code, this registry's id (`registry`,
 * made once in the local database and kept: it is the `origin` of every local package), the private
 * scopes from the configuration, and which database it guards. Returns the id.
 */
export async function pushMirrorDesign(couch: Couch, dbs: { local: string; mirror: string }, code: SettingsDesignCode, privateScopes: string[], accounts: boolean): Promise<string> {
  let registry = '';
  for (const database of ['local', 'mirror'] as const) {
    const db = couch.db<SettingsDesignCode & MirrorSettings>(dbs[database]);
    for (;;) {
      const live = await db.get(code._id);
      if (database === 'local') registry = live && typeof live.registry === 'string' && live.registry ? live.registry : randomUUID();
      if (live && live.build_hash === code.build_hash && live.registry === registry && live.database === database && jsonEqual(live.privateScopes, privateScopes) && live.accounts === accounts) break;
      try {
        await db.put({ ...(live || {}), ...code, registry, privateScopes, database, accounts, _rev: live ? live._rev : undefined });
        break;
      } catch (err) {
        // Another gateway starting at the same time wrote it first: take its id.
        if (couchFailure(err).statusCode !== 409) throw err;
      }
    }
  }
  return registry;
}

/** Saves the design document when its build differs from the one in the database. Returns true when it changed. */
export async function pushDesign(couch: Couch, dbName: string, design: DesignDoc): Promise<boolean> {
  const db = couch.db<DesignDoc>(dbName);
  const live = await db.get(design._id);
  if (live && live.build_hash === design.build_hash) return false;
  if (live) {
    // Build the new views under a staging id first; the live design keeps serving meanwhile.
    const staging = await db.get(designId(STAGING));
    const stagingDoc = { _id: designId(STAGING), language: 'javascript', views: design.views, build_hash: design.build_hash } as DesignDoc;
    if (staging) stagingDoc._rev = staging._rev;
    await db.put(stagingDoc);
    for (const view of Object.keys(design.views)) {
      await db.view(view, { limit: 1 }, STAGING);
    }
  }
  await db.put({ ...design, _rev: live ? live._rev : undefined });
  const staging = await db.get(designId(STAGING));
  // Another gateway pushing the same design may have removed it already.
  if (staging) await db.remove(staging._id, staging._rev).catch((err) => ignoreStatus(err, 404, 409));
  return true;
}

/** The design document of the mirror database: the same views, without the publishing rules (replication copies the upstream as it is). */
function viewsOnly(design: DesignDoc): DesignDoc {
  const { validate_doc_update, ...rest } = design;
  void validate_doc_update;
  return { ...rest, build_hash: design.build_hash + '-views' } as DesignDoc;
}

/**
 * Moves mirrored packages out of the registry database, where versions before the mirror database
 * kept them (everything whose `origin` is not this registry's id, as it was judged then), into the
 * mirror database, with their revision history and tarballs. Runs once (`migrated` in the local
 * `_design/mirror`); a start interrupted half-way finishes the move on the next start.
 */
async function moveMirroredPackages(couch: Couch, dbs: { local: string; mirror: string }, registryId: string, log?: Logger): Promise<void> {
  const local = couch.db<MirrorSettings & { migrated?: number }>(dbs.local);
  const mirror = couch.db<object>(dbs.mirror);
  const live = await local.get(designId(DESIGN.mirror));
  if (!live || live.migrated === 1) return;
  const view = await local.view<null>('byOrigin');
  const moving = view.rows.filter((row) => row.key !== registryId).map((row) => row.id);
  for (const id of moving) {
    const doc = await local.get(id, { attachments: true, revs: true });
    if (!doc) continue; // moved by another gateway
    if (!(await mirror.get(id))) {
      const [result] = await mirror.request<{ error?: string; reason?: string }[]>('POST', '_bulk_docs', { docs: [doc], new_edits: false });
      if (result && result.error) throw new Error('Cannot move the mirrored package "' + id + '" to ' + dbs.mirror + ': ' + result.reason);
    }
    await local.remove(id, doc._rev).catch((err) => ignoreStatus(err, 404)); // moved by another gateway
  }
  if (moving.length) log?.info({ packages: moving.length, to: dbs.mirror }, 'moved mirrored packages into the mirror database');
  await local.put({ ...live, migrated: 1 });
}

/**
 * Runs a set-up step again when another gateway starting at the same time wrote the same document
 * first (409): each step reads what is there and does only what is still missing.
 */
async function againOnConflict<T>(step: () => Promise<T>): Promise<T> {
  return retry(step, {
    attempts: 10,
    delay: linear(50),
    // CouchDB's Mango answers a colliding index creation with 500 "error_saving_ddoc".
    retryable: (err) => couchFailure(err).statusCode === 409 || couchFailure(err).error === 'error_saving_ddoc',
  });
}

/** Creates what the registry needs in CouchDB; safe to run at every start, by several gateways at once. */
export async function setupDatabases(couch: Couch, config: Config, log?: Logger): Promise<{ designChanged: boolean; designHash: string; registryId: string }> {
  const { registryDb, mirrorDb, tokensDb, stateDb, stageDb, downloadsDb } = config;
  for (const name of ['_users', '_replicator', registryDb, mirrorDb, tokensDb, stateDb, stageDb, downloadsDb]) await ensureDatabase(couch, name);
  // Deny by default: the package databases are for the gateway (which applies the access rules),
  // replication and downstream readers (role registry-reader); anonymous callers and plain users read
  // nothing on the CouchDB port, and validate_doc_update refuses their writes.
  for (const db of [registryDb, mirrorDb]) await againOnConflict(() => addSecurity(couch, db, PACKAGE_DB_SECURITY));
  // Token hashes are for admins (the gateway) and the other sites' replication (role registry-site);
  // the registry's bookkeeping is for admins only.
  await putSecurity(couch, tokensDb, { admins: { names: [], roles: ['_admin'] }, members: { names: [], roles: ['_admin', SITE_ROLE] } });
  // Staged publishes likewise (gateway/staging.ts): the gateway, and the other sites, which approve
  // and reject them too; never the downstream readers (role registry-reader), nor anyone else.
  await putSecurity(couch, stageDb, { admins: { names: [], roles: ['_admin'] }, members: { names: [], roles: ['_admin', SITE_ROLE] } });
  // Download counts (gateway/downloads.ts): the gateway, and the other sites, which pull them so that
  // every site's counts add up; never anyone else (the counts of a private package are as private as it).
  await putSecurity(couch, downloadsDb, { admins: { names: [], roles: ['_admin'] }, members: { names: [], roles: ['_admin', SITE_ROLE] } });
  await putSecurity(couch, stateDb, { admins: { names: [], roles: ['_admin'] }, members: { names: [], roles: ['_admin'] } });
  // Token look-up by user (npm token list).
  await againOnConflict(() => couch.db(tokensDb).request('POST', '_index', { index: { fields: ['user'] }, name: 'by-user', ddoc: 'tokens', type: 'json' }));
  // The supply-chain policy's document, for admins to fill in Fauxton (gateway/policy.ts).
  await againOnConflict(async () => {
    const state = couch.db<Record<string, unknown>>(stateDb);
    if (await state.get('supply-chain')) return;
    await state.put({
      _id: 'supply-chain',
      type: 'policy',
      help: 'Mirrored packages only. cooldownExceptions: package names or patterns (@acme/*) that UPSTREAM_MIN_AGE does not hold back. blocked: [{"package": "name or pattern", "version": "1.2.3 (leave out for every version)", "reason": "shown to npm users"}].',
      cooldownExceptions: [],
      blocked: [],
    });
  });
  // The configuration documents of the state database are checked when written (couchapp/config).
  await againOnConflict(() => pushCodeDesign(couch, stateDb, loadSettingsDesign(OUTPUT_FILES.config)));
  // Webhook deliveries due (gateway/webhooks.ts).
  await againOnConflict(() => couch.db(stateDb).request('POST', '_index', { index: { fields: ['type', 'state', 'next'] }, name: 'deliveries-due', ddoc: 'webhooks', type: 'json' }));
  // Closed sign-up holds at the database too. The embedded server lets only admins write _users
  // anyway; a real CouchDB lets anyone sign up there unless _users' members are restricted.
  if (config.couchdbUrl && config.signup === 'closed') await closeUserSignup(couch);
  // On a real CouchDB the site account is never an admin of _users: a database admin there writes its
  // design documents (no validate_doc_update holds them) and so could make itself a server admin.
  // Accounts replicate between sites on the embedded server only (replication/sites.ts).
  if (config.couchdbUrl) await noSiteAdminOfUsers(couch, log);
  if (config.sites.password) await againOnConflict(() => pushUsersSiteGuard(couch));
  const design = loadDesignDoc();
  const designChanged = await againOnConflict(() => pushDesign(couch, registryDb, design));
  await againOnConflict(() => pushDesign(couch, mirrorDb, viewsOnly(design)));
  await againOnConflict(() => pushAccessDesign(couch, registryDb, loadSettingsDesign(OUTPUT_FILES.access)));
  const dbs = { local: registryDb, mirror: mirrorDb };
  const registryId = await againOnConflict(() => pushMirrorDesign(couch, dbs, loadSettingsDesign(OUTPUT_FILES.mirror), config.replication.privateScopes, !config.couchdbUrl));
  await againOnConflict(() => moveMirroredPackages(couch, dbs, registryId, log));
  return { designChanged, designHash: design.build_hash, registryId };
}

/**
 * `_users`' validate_doc_update for the site account (which administers `_users` so that accounts
 * replicate): it writes people's accounts only. An account with a role of this registry
 * (`registry-…`) or a CouchDB one (`_…`), and the service accounts themselves, are each site's own:
 * written by the site account, one would be a key to the mirror database (`registry-replicator`) or to
 * direct writes (`registry-gateway`) made by whoever holds a site's password, at every site.
 * Replication skips such a document (counted as a write failure) and goes on.
 */
export const USERS_SITE_GUARD = {
  _id: '_design/registry-sites',
  language: 'javascript',
  validate_doc_update: [
    'function (newDoc, oldDoc, userCtx) {',
    "  if (!userCtx || !userCtx.roles || userCtx.roles.indexOf('" + SITE_ROLE + "') === -1) return;",
    '  function service(doc) {',
    '    if (!doc || doc._deleted && doc === newDoc) return false;',
    "    if (doc.name === 'registry-site' || doc.name === 'registry-replicator') return true;",
    '    var roles = doc.roles;',
    '    if (roles === undefined || roles === null) return false;',
    '    if (!isArray(roles)) return true;',
    '    for (var i = 0; i < roles.length; i++) {',
    "      if (typeof roles[i] !== 'string' || roles[i].charAt(0) === '_' || roles[i].indexOf('registry-') === 0) return true;",
    '    }',
    '    return false;',
    '  }',
    '  if (service(newDoc) || service(oldDoc)) {',
    '    throw({ forbidden: "The site account writes the accounts of people only: an account with a role of the registry (registry-...) or of CouchDB (_...), and the service accounts, are the own of each site; a server admin gives roles." });',
    '  }',
    '}',
  ].join('\n'),
};

/** Installs (or updates) `USERS_SITE_GUARD` in `_users`. */
async function pushUsersSiteGuard(couch: Couch): Promise<void> {
  const users = couch.db<typeof USERS_SITE_GUARD & { _rev?: string }>('_users');
  const current = await users.get(USERS_SITE_GUARD._id);
  if (current && current.validate_doc_update === USERS_SITE_GUARD.validate_doc_update) return;
  await users.put({ ...USERS_SITE_GUARD, ...(current ? { _rev: current._rev } : {}) });
}

/** Takes the site role out of a real CouchDB's `_users` admins, where an earlier version put it. */
async function noSiteAdminOfUsers(couch: Couch, log?: Logger): Promise<void> {
  const current = await couch.db('_users').request<Security>('GET', '_security');
  if (!(current.admins?.roles || []).includes(SITE_ROLE)) return;
  try {
    await putSecurity(couch, '_users', { ...current, admins: { names: current.admins?.names || [], roles: (current.admins?.roles || []).filter((role) => role !== SITE_ROLE) } });
    log?.warn('sites: the site account is no longer an admin of _users (it could have made itself a server admin of CouchDB)');
  } catch (err) {
    log?.error({ err: (err as Error).message }, 'sites: the site role could not be taken out of _users admins; remove "' + SITE_ROLE + '" from _users/_security admins by hand');
  }
}

/**
 * Restricts `_users` of a real CouchDB to admins: CouchDB 3.4 has it so by default, and allows changing
 * it only with `users_db_security_editable`.
 */
async function closeUserSignup(couch: Couch): Promise<void> {
  const current = await couch.db('_users').request<{ members?: { names?: string[]; roles?: string[] } }>('GET', '_security');
  const members = current.members || {};
  if ((members.names || []).length === 0 && (members.roles || []).length > 0 && (members.roles || []).every((role) => role === '_admin')) return;
  try {
    await putSecurity(couch, '_users', { admins: { names: [], roles: ['_admin'] }, members: { names: [], roles: ['_admin'] } });
  } catch (err) {
    if (couchFailure(err).statusCode !== 403) throw err;
    throw new Error(
      'REGISTRY_SIGNUP=closed needs CouchDB to let the gateway restrict _users, which CouchDB refuses by default: ' +
        'set [couchdb] users_db_security_editable = true (couchdb/local.ini has it) and restart CouchDB, or use REGISTRY_SIGNUP=open.',
      { cause: err },
    );
  }
}
