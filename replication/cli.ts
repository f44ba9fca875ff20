/**
 * `npm run replication -- [--registry URL] [--watch]`: shows what `GET /-/replication` says, and a
 * live progress bar while an initial sync runs (until it ends; with `--watch`, until Ctrl-C). The
 * token is any user's (`npm token create`), read from REGISTRY_TOKEN only: a token in the command
 * line is seen by every user of the machine (`ps`) and kept in shell history, so `--token` is refused.
 * Exits 0 when replication works, 3 when a job is failing (a CouchDB job crashing, failed or missing,
 * another site's replication among them, a change feed that cannot be followed), 2 for a wrong command line, 1 when the registry cannot be asked.
 */
import type { RevalidationCounts } from './mirror';

/** The exit code when a replication job is failing. */
export const JOB_FAILING = 3;

/** The states of a native replication job that mean it is not working (as `/-/health` counts them). */
const FAILING_JOB_STATES = ['crashing', 'failed', 'error', 'missing'];

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
    else if (arg === '--token' || arg.startsWith('--token=')) {
      throw new Error('--token is not taken: a token in the command line is seen by every user of this machine (ps) and kept in shell history. Set REGISTRY_TOKEN instead (create a token with `npm token create`).');
    }
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
  // The first feed still in its initial sync.
  const feed = ((status.upstreams || []) as any[]).map((u) => u.feed).find((f) => f && f.initialSync && !f.initialSync.done) || status.feed;
  if (feed && feed.initialSync && !feed.initialSync.done) {
    const fraction = typeof feed.initialSync.progress === 'number' ? feed.initialSync.progress : 0;
    return { fraction, text: 'initial sync from the feed: ' + n(feed.lag.changes) + ' changes to go, ' + n(feed.packagesWritten) + ' packages written' };
  }
  const couch = status.couchdb;
  if (!couch) return null;
  const here = packages(couch.local);
  const there = packages(couch.upstream);
  // Pending changes, as CouchDB counts them, end at 0 even when some documents are refused (a
  // private scope); package counts are the fallback when CouchDB does not say.
  if (typeof couch.changesPending === 'number') {
    if (couch.changesPending === 0) return null;
    const done = typeof here === 'number' ? here : 0;
    return {
      fraction: done / (done + couch.changesPending),
      text: 'CouchDB replication: ' + n(couch.changesPending) + ' changes pending, ' + n(done) + ' packages here',
    };
  }
  if (typeof here === 'number' && typeof there === 'number' && here < there) {
    return { fraction: there ? here / there : 1, text: 'CouchDB replication: ' + n(here) + ' of ' + n(there) + ' packages' };
  }
  return null;
}

export function summary(status: any): string {
  const lines: string[] = [];
  const upstreams: any[] = status.upstreams || [];
  if (upstreams.length > 1) {
    // Each upstream with the names routed to it, in the order they are tried.
    for (const upstream of upstreams) {
      lines.push('upstream      ' + upstream.name + '  ' + upstream.url + '  ' + upstream.patterns.join(' ') + '  (unknown names: ' + upstream.mode + (upstream.token ? ', token from ' + upstream.token : '') + ')');
      lines.push('  health      ' + reachability(upstream));
      if (upstream.feed) feedLines(lines, upstream.feed);
    }
    lines.push('tarballs      ' + status.tarballs);
  } else {
    lines.push('upstream      ' + (status.upstream || '(none)') + (status.pullThrough ? '  (unknown names: ' + status.pullThrough + ', tarballs: ' + status.tarballs + ')' : ''));
    if (upstreams.length === 1) lines.push('  health      ' + reachability(upstreams[0]));
    if (status.feed) feedLines(lines, status.feed);
  }
  if (status.privateScopes && status.privateScopes.length) lines.push('private       ' + status.privateScopes.join(', '));
  const couch = status.couchdb;
  if (couch) {
    lines.push('couchdb       ' + couch.source + '  ' + couch.state);
    lines.push('  packages    ' + n(packages(couch.local)) + ' here, ' + n(packages(couch.upstream)) + ' upstream (design documents not counted)' +
      (couch.changesPending !== null ? ', ' + n(couch.changesPending) + ' changes pending' : ''));
    if (couch.checkpointedSourceSeq !== null && couch.checkpointedSourceSeq !== undefined) {
      lines.push('  checkpoint  ' + String(couch.checkpointedSourceSeq) + '  (' + (couch.checkpointedAt ? 'written ' + couch.checkpointedAt : 'CouchDB does not say when') + ')');
    }
    if (couch.lastUpdated) lines.push('  job state   ' + couch.state + ' since ' + couch.lastUpdated);
    if (couch.docWriteFailures) lines.push('  refused     ' + n(couch.docWriteFailures) + ' documents');
    if (couch.conflicts) lines.push('  conflicts   ' + n(couch.conflicts) + ' mirrored documents');
    if (couch.error) lines.push('  error       ' + couch.error);
  }
  for (const site of (status.sites && status.sites.peers) || []) {
    lines.push('site          ' + site.peer + '  ' + site.state + (site.id ? '  (id ' + site.id + ')' : ''));
    lines.push('  packages    ' + n(packages(site.local)) + ' here, ' + n(packages(site.upstream)) + ' there' +
      (site.changesPending !== null && site.changesPending !== undefined ? ', ' + n(site.changesPending) + ' changes pending' : ''));
    if (site.checkpointedAt) lines.push('  checkpoint  written ' + site.checkpointedAt);
    if (site.conflicts) lines.push('  conflicts   ' + n(site.conflicts) + ' packages waiting for the merge');
    if (site.rulesDiffer) lines.push('  WARNING     its access rules differ from these: a package private at one site may be readable at the other');
    if (site.error) lines.push('  error       ' + site.error);
  }
  for (const r of (status.refusedPublishes || []).slice(0, 10)) {
    lines.push('refused pub.  ' + r.name + '@' + r.version + ' ' + r.integrity.slice(0, 20) + '… by ' + (r.publisher || '?') + ' (the first publish, ' + r.kept.slice(0, 20) + '…, is kept)');
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
  const advisories = supplyChain && supplyChain.advisories;
  if (advisories) {
    const endpoints = (advisories.endpoints || []) as { upstream: string; state: string; lastError?: string | null }[];
    const endpoint = endpoints.length
      ? endpoints.map((e) => (endpoints.length > 1 ? e.upstream + ' ' : '') + e.state + (e.lastError && e.state !== 'ok' ? ' (' + e.lastError + ')' : '')).join(', ')
      : 'none';
    lines.push('advisories    ' + advisories.severity + ' and above: ' + n(advisories.heldBack.length) + ' versions held back; endpoint ' + endpoint + '; unchecked versions ' + (advisories.unchecked === 'hold' ? 'held back' : 'served'));
    for (const h of advisories.heldBack.slice(0, 10)) lines.push('  held        ' + h.name + '@' + h.version + ': ' + h.advisory.id + ' (' + h.advisory.severity + ') ' + h.advisory.title);
  }
  for (const failure of failingJobs(status)) lines.push('FAILING       ' + failure);
  return lines.join('\n');
}

/** The lines of one change feed's follower. */
function feedLines(lines: string[], feed: any): void {
  lines.push('feed          ' + feed.feed + '  mode ' + feed.mode + '  ' + feed.state);
  lines.push('  position    ' + String(feed.since) + '  (feed at ' + String(feed.head) + ')');
  lines.push('  checkpoint  ' + (feed.checkpointedAt ? 'saved ' + feed.checkpointedAt : 'not saved yet'));
  lines.push('  lag         ' + n(feed.lag.changes) + ' changes, ' + n(feed.lag.seconds) + ' s');
  lines.push('  written     ' + n(feed.packagesWritten) + ' packages, ' + n(feed.deleted) + ' deleted');
  if (feed.pending.length) {
    lines.push('  pending     ' + feed.pending.length + ' to retry');
    for (const p of feed.pending.slice(0, 5)) lines.push('              ' + p.name + ' (attempt ' + p.attempts + '): ' + p.reason);
  }
  if (feed.lastError) lines.push('  last error  ' + feed.lastError);
}

/** Whether an upstream answers, with its counts and its last error. */
function reachability(upstream: any): string {
  const state = upstream.reachable === null ? 'not asked yet' : upstream.reachable ? 'reachable' : 'UNREACHABLE';
  const compared = upstream.revalidations as RevalidationCounts | null | undefined;
  const revalidated = compared && compared.notModified + compared.unchanged + compared.changed > 0
    ? '; copies compared ' + n(compared.notModified + compared.unchanged + compared.changed) + ' times (' + n(compared.notModified) + ' not modified, ' + n(compared.unchanged) + ' unchanged, ' + n(compared.changed) + ' changed)'
    : '';
  return state + ', ' + n(upstream.requests) + ' requests, ' + n(upstream.failures) + ' failed' + revalidated + (upstream.lastError ? '; last error ' + (upstream.lastErrorAt || '') + ': ' + upstream.lastError : '');
}

/** Packages on one side of a native replication: its documents without design documents (older registries: all documents). */
function packages(side: { docCount?: number | null; packageCount?: number | null }): number | null | undefined {
  return side.packageCount !== undefined ? side.packageCount : side.docCount;
}

/** The replication jobs that are not working, each with why (the CLI then exits `JOB_FAILING`). */
export function failingJobs(status: any): string[] {
  const failing: string[] = [];
  const couch = status.couchdb;
  if (couch && FAILING_JOB_STATES.includes(couch.state)) failing.push('the CouchDB replication is ' + couch.state + (couch.error ? ': ' + couch.error : ''));
  for (const site of (status.sites && status.sites.peers) || []) {
    if (FAILING_JOB_STATES.includes(site.state)) failing.push('the replication from the site ' + site.peer + ' is ' + site.state + (site.error ? ': ' + site.error : ''));
  }
  const upstreams: any[] = status.upstreams || [];
  const feeds = upstreams.length ? upstreams.filter((u) => u.feed).map((u) => ({ feed: u.feed, which: upstreams.length > 1 ? ' of the upstream "' + u.name + '"' : '' })) : status.feed ? [{ feed: status.feed, which: '' }] : [];
  for (const { feed, which } of feeds) {
    if (feed.state === 'upstream-unreachable') failing.push('the change feed' + which + ' cannot be followed' + (feed.lastError ? ': ' + feed.lastError : ''));
  }
  return failing;
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
  if (response.status === 401) throw new Error('The registry wants a login: set REGISTRY_TOKEN to a token (create one with `npm token create`).');
  if (!response.ok) throw new Error('The registry answered ' + response.status + ': ' + (body.error || 'no reason given'));
  return body;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv, out: NodeJS.WriteStream): Promise<number> {
  let options: CliOptions;
  try {
    options = parseArgs(argv, env);
  } catch (err) {
    const message = (err as Error).message;
    out.write((message === 'usage' ? '' : message + '\n') + 'usage: REGISTRY_TOKEN=<token> npm run replication -- [--registry URL] [--watch]\n');
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
  return failingJobs(status).length ? JOB_FAILING : 0;
}

if (require.main === module) {
  main(process.argv.slice(2), process.env, process.stdout)
    .then((code) => process.exit(code))
    .catch((err: Error) => {
      process.stderr.write(err.message + '\n');
      process.exit(1);
    });
}
