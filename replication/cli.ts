/**
 * `npm run replication -- [--registry URL] [--token TOKEN] [--watch]`: shows what `GET /-/replication`
 * says, and a live progress bar while an initial sync runs (until it ends; with `--watch`, until
 * Ctrl-C). The token is any user's (`npm token create`), also read from REGISTRY_TOKEN.
 */

export interface CliOptions {
  registry: string;
  token?: string;
  watch: boolean;
}

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv): CliOptions {
  const options: CliOptions = { registry: env.REGISTRY_URL || 'http://127.0.0.1:5080', token: env.REGISTRY_TOKEN, watch: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--watch') options.watch = true;
    else if (arg === '--registry') options.registry = argv[++i];
    else if (arg === '--token') options.token = argv[++i];
    else if (arg === '--help' || arg === '-h') throw new Error('usage');
    else throw new Error('Unknown argument "' + arg + '"');
  }
  options.registry = String(options.registry || '').replace(/\/+$/, '');
  return options;
}

/** `[██████░░░░]  60%` */
export function progressBar(fraction: number, width = 30): string {
  const f = Math.max(0, Math.min(1, fraction));
  const filled = Math.round(f * width);
  return '[' + '█'.repeat(filled) + '░'.repeat(width - filled) + '] ' + String(Math.floor(f * 100)).padStart(3) + '%';
}

const n = (value: unknown) => (typeof value === 'number' ? value.toLocaleString('en-US') : '?');

/** Progress of an initial sync, or null when none is running. */
export function syncProgress(status: any): { fraction: number; text: string } | null {
  const feed = status.feed;
  if (feed && feed.initialSync && !feed.initialSync.done) {
    const fraction = typeof feed.initialSync.progress === 'number' ? feed.initialSync.progress : 0;
    return { fraction, text: 'initial sync from the feed: ' + n(feed.lag.changes) + ' changes to go, ' + n(feed.packagesWritten) + ' packages written' };
  }
  const couch = status.couchdb;
  // Pending changes, as CouchDB counts them, end at 0 even when some documents are refused (a
  // private scope); document counts are the fallback when CouchDB does not say.
  if (couch && typeof couch.changesPending === 'number') {
    if (couch.changesPending === 0) return null;
    const here = typeof couch.local.docCount === 'number' ? couch.local.docCount : 0;
    return {
      fraction: here / (here + couch.changesPending),
      text: 'CouchDB replication: ' + n(couch.changesPending) + ' changes pending, ' + n(here) + ' documents here',
    };
  }
  if (couch && typeof couch.upstream.docCount === 'number' && typeof couch.local.docCount === 'number' && couch.local.docCount < couch.upstream.docCount) {
    return {
      fraction: couch.upstream.docCount ? couch.local.docCount / couch.upstream.docCount : 1,
      text: 'CouchDB replication: ' + n(couch.local.docCount) + ' of ' + n(couch.upstream.docCount) + ' documents',
    };
  }
  return null;
}

export function summary(status: any): string {
  const lines: string[] = [];
  lines.push('upstream      ' + (status.upstream || '(none)') + (status.pullThrough ? '  (unknown names: ' + status.pullThrough + ', tarballs: ' + status.tarballs + ')' : ''));
  if (status.privateScopes && status.privateScopes.length) lines.push('private       ' + status.privateScopes.join(', '));
  const feed = status.feed;
  if (feed) {
    lines.push('feed          ' + feed.feed + '  mode ' + feed.mode + '  ' + feed.state);
    lines.push('  position    ' + String(feed.since) + '  (feed at ' + String(feed.head) + ')');
    lines.push('  lag         ' + n(feed.lag.changes) + ' changes, ' + n(feed.lag.seconds) + ' s');
    lines.push('  written     ' + n(feed.packagesWritten) + ' packages, ' + n(feed.deleted) + ' deleted');
    if (feed.pending.length) {
      lines.push('  pending     ' + feed.pending.length + ' to retry');
      for (const p of feed.pending.slice(0, 5)) lines.push('              ' + p.name + ' (attempt ' + p.attempts + '): ' + p.reason);
    }
    if (feed.lastError) lines.push('  last error  ' + feed.lastError);
  }
  const couch = status.couchdb;
  if (couch) {
    lines.push('couchdb       ' + couch.source + '  ' + couch.state);
    lines.push('  documents   ' + n(couch.local.docCount) + ' here, ' + n(couch.upstream.docCount) + ' upstream' +
      (couch.changesPending !== null ? ', ' + n(couch.changesPending) + ' changes pending' : ''));
    if (couch.checkpointedSourceSeq !== null && couch.checkpointedSourceSeq !== undefined) lines.push('  checkpoint  ' + String(couch.checkpointedSourceSeq) + (couch.lastUpdated ? '  (' + couch.lastUpdated + ')' : ''));
    if (couch.docWriteFailures) lines.push('  refused     ' + n(couch.docWriteFailures) + ' documents');
    if (couch.conflicts) lines.push('  conflicts   ' + n(couch.conflicts) + ' mirrored documents');
    if (couch.error) lines.push('  error       ' + couch.error);
  }
  lines.push('written       ' + n(status.packagesWritten) + ' packages, ' + n(status.tarballsWritten) + ' tarballs by this gateway since it started');
  if (status.shadowed.length) lines.push('shadowed      ' + status.shadowed.join(', ') + '  (local packages; the upstream\'s are refused)');
  const other = status.refused.filter((r: { kind: string }) => r.kind !== 'shadowed');
  for (const r of other.slice(0, 10)) lines.push('refused       ' + r.name + ': ' + r.reason);
  for (const f of status.failures.slice(-5)) lines.push('failure       ' + f.at + ' ' + f.name + ': ' + f.reason);
  const supplyChain = status.supplyChain;
  if (supplyChain && supplyChain.minAgeSeconds) {
    lines.push('cooldown      ' + Math.round(supplyChain.minAgeSeconds / 3600) + ' h: ' + n(supplyChain.heldBack.length) + ' upstream versions held back' +
      (supplyChain.heldBack.length ? ', next available ' + supplyChain.heldBack.map((h: { availableAt: string }) => h.availableAt).sort()[0] : ''));
  }
  if (supplyChain && supplyChain.blocked.length) lines.push('blocked       ' + supplyChain.blocked.map((b: { package: string; version?: string }) => b.package + (b.version ? '@' + b.version : '')).join(', '));
  return lines.join('\n');
}

async function fetchStatus(options: CliOptions): Promise<any> {
  let response: Response;
  try {
    response = await fetch(options.registry + '/-/replication', {
      headers: { accept: 'application/json', ...(options.token ? { authorization: 'Bearer ' + options.token } : {}) },
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new Error('Cannot reach the registry at ' + options.registry + ' (' + ((err as { cause?: { code?: string } }).cause?.code || (err as Error).message) + '). Pass --registry URL.', { cause: err });
  }
  const body = (await response.json().catch(() => ({}))) as { error?: string };
  if (response.status === 401) throw new Error('The registry wants a login: pass --token (create one with `npm token create`) or set REGISTRY_TOKEN.');
  if (!response.ok) throw new Error('The registry answered ' + response.status + ': ' + (body.error || 'no reason given'));
  return body;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv, out: NodeJS.WriteStream): Promise<number> {
  let options: CliOptions;
  try {
    options = parseArgs(argv, env);
  } catch (err) {
    const message = (err as Error).message;
    out.write((message === 'usage' ? '' : message + '\n') + 'usage: npm run replication -- [--registry URL] [--token TOKEN] [--watch]\n');
    return 2;
  }
  let status = await fetchStatus(options);
  let drawing = false;
  for (;;) {
    const progress = syncProgress(status);
    if (progress) {
      const line = progressBar(progress.fraction) + '  ' + progress.text;
      out.write(out.isTTY ? '\r' + line + '\x1b[K' : line + '\n');
      drawing = true;
    } else {
      if (drawing && out.isTTY) out.write('\r' + progressBar(1) + '  caught up\x1b[K\n');
      drawing = false;
      if (!options.watch) break;
      out.write(out.isTTY ? '\x1b[2J\x1b[H' + summary(status) + '\n' : summary(status) + '\n\n');
    }
    await new Promise((resolve) => setTimeout(resolve, out.isTTY ? 1000 : 5000));
    status = await fetchStatus(options);
  }
  out.write(summary(status) + '\n');
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2), process.env, process.stdout)
    .then((code) => process.exit(code))
    .catch((err: Error) => {
      process.stderr.write(err.message + '\n');
      process.exit(1);
    });
}
