/**
 * The embedded CouchDB-compatible server: express-pouchdb over PouchDB with LevelDB storage under
 * `<dataDir>/couchdb`, Fauxton at `/_utils`, an admin user (no admin party), and proxy
 * authentication so that the gateway can write as the real user. It listens on 127.0.0.1 only:
 * design-document code runs in this process.
 */
import express from 'express';
import { mkdirSync } from 'fs';
import { Server } from 'http';
import { AddressInfo } from 'net';
import { join } from 'path';
import { verifyProxyHeaders } from './proxy-auth';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const PouchDB = require('pouchdb');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const expressPouchDB = require('express-pouchdb');

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  host?: string;
  adminName: string;
  adminPassword: string;
  proxySecret: string;
}

export interface EmbeddedCouch {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Routes of express-pouchdb left out: broken for this use, or a test backdoor. */
const EXCLUDED_PARTS = [
  'routes/special-test-auth',
  'routes/show',
  'routes/list',
  'routes/update',
  'routes/rewrite',
  'routes/vhosts',
  'routes/temp-views',
];

interface CouchSession {
  ok: boolean;
  userCtx: { name: string | null; roles: string[] };
  info: { authentication_db: string; authentication_handlers: string[]; authenticated?: string };
}

/**
 * express-pouchdb builds `req.couchSession` from cookies and Basic auth only. A request with valid proxy
 * headers gets its session pinned here, before that middleware, so the later assignment cannot replace it.
 */
function proxyAuthentication(secret: string): express.RequestHandler {
  return (req, _res, next) => {
    const user = verifyProxyHeaders(secret, req.headers);
    if (user) {
      const session: CouchSession = {
        ok: true,
        userCtx: { name: user.name, roles: user.roles },
        info: { authentication_db: '_users', authentication_handlers: ['proxy', 'cookie', 'default'], authenticated: 'proxy' },
      };
      delete req.headers.authorization;
      Object.defineProperty(req, 'couchSession', {
        configurable: true,
        get: () => session,
        set: () => undefined,
      });
    }
    next();
  };
}

/**
 * express-pouchdb crashes the process when a non-admin creates or deletes a database (its security
 * wrapper hands the route a rejected promise instead of a database). Those two requests are admin-only
 * in CouchDB, so they are checked here first, by asking the server's own `_session` who the caller is.
 */
function databaseAdminGuard(sessionOf: (req: express.Request) => Promise<CouchSession | null>): express.RequestHandler {
  return (req, res, next) => {
    const isDatabasePath = /^\/[^/]+\/?$/.test(req.path) && !req.path.startsWith('/_');
    if (!isDatabasePath || (req.method !== 'PUT' && req.method !== 'DELETE')) return next();
    sessionOf(req)
      .then((session) => {
        if (session && session.userCtx.roles.indexOf('_admin') !== -1) return next();
        res.status(401).json({ error: 'unauthorized', reason: 'You are not a server admin.' });
      })
      .catch(next);
  };
}

export async function startEmbeddedCouch(options: EmbeddedOptions): Promise<EmbeddedCouch> {
  const dir = join(options.dataDir, 'couchdb');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const LocalPouch = PouchDB.defaults({ prefix: dir + '/' });
  const couchApp = expressPouchDB(LocalPouch, {
    configPath: join(dir, 'config.json'),
    logPath: join(dir, 'log.txt'),
    mode: 'fullCouchDB',
    overrideMode: { exclude: EXCLUDED_PARTS },
  });
  await new Promise<void>((resolve, reject) =>
    couchApp.couchConfig.set('admins', options.adminName, options.adminPassword, (err: Error | null) =>
      err ? reject(err) : resolve(),
    ),
  );
  await new Promise<void>((resolve, reject) =>
    couchApp.couchConfig.set('log', 'level', 'warning', (err: Error | null) => (err ? reject(err) : resolve())),
  );

  const app = express();
  app.disable('x-powered-by');
  app.use(proxyAuthentication(options.proxySecret));
  let selfUrl = '';
  app.use(
    databaseAdminGuard(async (req) => {
      const pinned = (req as unknown as { couchSession?: CouchSession }).couchSession;
      if (pinned) return pinned;
      const headers: Record<string, string> = {};
      if (req.headers.authorization) headers.authorization = req.headers.authorization;
      if (req.headers.cookie) headers.cookie = req.headers.cookie;
      const response = await fetch(selfUrl + '/_session', { headers });
      return response.ok ? ((await response.json()) as CouchSession) : null;
    }),
  );
  app.use(couchApp);

  const host = options.host || '127.0.0.1';
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port, host, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  selfUrl = 'http://' + host + ':' + port;
  return {
    url: 'http://' + host + ':' + port,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
