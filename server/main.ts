/** `npm start`: runs the registry with the configuration from the environment. */
import pino from 'pino';
import { loadConfig } from '../config';
import { LogLines } from '../lib/log-lines';
import { startRegistry } from './registry';
import { withoutCredentials } from '../replication/couchdb';

async function main(): Promise<void> {
  const config = loadConfig();
  // Readable lines on a terminal; JSON, one object a line, for log collectors everywhere else. The
  // JSON lines are gathered and written in batches (lib/log-lines.ts): a write per line, done by
  // libuv's thread pool, took a third of the rate of the tarball fast path.
  let log: pino.Logger;
  let logLines: LogLines | undefined;
  if (process.stdout.isTTY) {
    log = pino({ level: config.logLevel, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' } } });
  } else {
    logLines = new LogLines(1);
    log = pino({ level: config.logLevel }, logLines);
  }
  const registry = await startRegistry(config, log);
  const lines = [
    '',
    'npm registry ready at ' + registry.url + (registry.localUrl !== registry.url ? ' (listening on ' + registry.localUrl + ')' : ''),
    '  use it:   npm config set registry ' + registry.url + '/',
    '  account:  npm adduser --registry ' + registry.url + '/',
    '  admin:    ' + registry.url + '/-/couchdb/_utils/  (Fauxton, and CouchDB\'s API under /-/couchdb/, for server admins: log in as "' + registry.adminName + '")',
    // Tests and the benchmarks find CouchDB's own address on this line.
    '  Fauxton:  ' + registry.fauxtonUrl + '  (CouchDB\'s own port)',
  ];
  const replication = config.replication;
  for (const upstream of config.upstreams) {
    lines.push('  upstream: ' + upstream.url + ' (' + (config.upstreams.length > 1 ? '"' + upstream.name + '" for ' + upstream.packages.join(' ') + ', ' : '') + 'unknown names: ' + upstream.mode + (upstream.token ? ', with a token' : '') + ')');
    if (upstream.feed) lines.push('  replicating: change feed ' + upstream.feed + ', mode ' + replication.mode + '; status: npm run replication');
  }
  if (replication.couchdb) lines.push('  replicating: CouchDB ' + withoutCredentials(replication.couchdb) + '; status: npm run replication');
  // The password itself is never printed: logs (journald, docker logs) would keep it.
  if (!config.couchdbUrl && !config.adminPassword) {
    lines.push('  admin password: in ' + config.dataDir + '/admin-password (readable by this user only' + (registry.adminPasswordGenerated ? ', generated now' : '') + ')');
  }
  process.stdout.write(lines.join('\n') + '\n\n');
  const stop = async (signal: string) => {
    log.info({ signal }, 'stopping');
    await registry.close();
    log.flush();
    await logLines?.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((err: Error) => {
  const hint = (err as { code?: string }).code === 'EADDRINUSE' ? ' Another program uses that port: stop it, or choose other ports with PORT (the registry) and COUCHDB_PORT (the embedded CouchDB).' : '';
  process.stderr.write('The registry could not start: ' + err.message + '.' + hint + '\n');
  process.exit(1);
});
