/**
 * `npm run bench`: runs the benchmarks at full size, prints the table and writes bench/RESULTS.md.
 * `npm run bench:scale` (`--scale [--sizes 1000,10000] [--first-reads]`): the scale series, written to bench/SCALE.md
 * (`--first-reads`: only the reads, first and again, of packuments, tarballs and unknown names).
 * `--restart [--runs 5]`: only the cold install from this registry just restarted, beside nginx, in rounds (medians).
 * `--pull-through [--runs 3]`: only the cold install through pull-through mirroring, beside Verdaccio, in rounds (medians).
 * `--sites [--samples 40]`: only the convergence between two sites (p50, p95).
 * `--policies [--runs 3]`: what the license and vulnerability policies cost: the cold pull-through install and mirrored packuments with and without them, beside Verdaccio.
 * `--ingest [--packages 10000] [--runs 3] [--latency ms] [--concurrency n] [--native]`: only the replication ingest through the npm change feed
 *   (packuments answered after `--latency` ms; the registry's REPLICATION_CONCURRENCY), and natively with `--native`, in runs (medians);
 * `BENCH_REGISTRY_MAIN=<other build>/dist/server/main.js` alternates that build's runs with this one's.
 * `BENCH_REGISTRY_NODE_ARGS` (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`): Node options of the registry processes the bench starts.
 * `--real-tree [--runs 5] [--cpu-prof DIR]`: installs of a real tree (bench/real-tree) from nginx, this registry and Verdaccio, cold, warm and after a restart; writes bench/REAL-TREE.md.
 */
import { cpus, totalmem } from 'os';
import { writeFileSync } from 'fs';
import { join } from 'path';
import { ingestTable, markdownTable, measureNativeIngest, measureSiteConvergence, runBenchmarks, runIngest, runPolicies, runPullThrough, runRestart } from './harness';
import { runRealTree } from './real-tree';
import { runScale, scaleTable } from './scale';

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at === -1 ? undefined : process.argv[at + 1];
}

async function main(): Promise<void> {
  const smoke = process.argv.includes('--smoke');
  const started = Date.now();
  const machine = cpus().length + ' cores (' + cpus()[0].model.trim() + '), ' + Math.round(totalmem() / 2 ** 30) + ' GiB, Node ' + process.version;
  const header = (title: string, what: string) =>
    '# ' + title + '\n\nMeasured ' + new Date().toISOString().slice(0, 10) + ' on ' + machine + ', ' + what + ', in ' + Math.round((Date.now() - started) / 1000) + ' s' +
    (process.env.COUCHDB_URL ? ', on a real CouchDB (COUCHDB_URL)' : ', on the embedded CouchDB') + '.\n\n';
  if (process.argv.includes('--scale')) {
    const sizes = (argument('--sizes') || (smoke ? '200' : '1000,10000,100000')).split(',').map(Number);
    const readsOnly = process.argv.includes('--first-reads');
    const rows = await runScale({ sizes, seconds: smoke ? 1 : 10, connections: smoke ? 5 : 50, readsOnly });
    const report = header('Scale series', 'sizes ' + sizes.join(', ') + (readsOnly ? ', reads only' : '')) + scaleTable(sizes, rows) + '\n';
    process.stdout.write(report);
    if (!smoke && !readsOnly && !argument('--sizes')) writeFileSync(join(__dirname, '..', '..', 'bench', 'SCALE.md'), report);
    return;
  }
  if (process.argv.includes('--sites')) {
    const samples = Number(argument('--samples') || (smoke ? 3 : 40));
    const sites = await measureSiteConvergence(samples);
    process.stdout.write(header('Site convergence', samples + ' publishes') + 'p50 ' + sites.p50 + ' ms, p95 ' + sites.p95 + ' ms (target p95 ≤ 2,000 ms)\n');
    return;
  }
  if (process.argv.includes('--policies')) {
    const rows = await runPolicies(smoke ? 'smoke' : 'full', Number(argument('--runs') || 3));
    process.stdout.write(header('The policies\' cost', 'the full tree') + markdownTable(rows) + '\n');
    return;
  }
  if (process.argv.includes('--restart')) {
    const rows = await runRestart(smoke ? 'smoke' : 'full', Number(argument('--runs') || 5));
    process.stdout.write(header('Install after a restart', 'the full tree') + markdownTable(rows) + '\n');
    return;
  }
  if (process.argv.includes('--ingest')) {
    const packages = Number(argument('--packages') || (smoke ? 50 : 10_000));
    const runs = Number(argument('--runs') || (smoke ? 1 : 3));
    const latency = Number(argument('--latency') || 0);
    const concurrency = argument('--concurrency');
    const results = await runIngest(packages, runs, latency, concurrency ? { REPLICATION_CONCURRENCY: concurrency } : {});
    const what = packages.toLocaleString('en-US') + ' packages through the npm change feed (stand-in upstream' + (latency ? ', packuments answered after ' + latency + ' ms' : '') + ')' + (concurrency ? ', REPLICATION_CONCURRENCY=' + concurrency : '');
    let report = header('Replication ingest', what) + ingestTable(packages, results) + '\n';
    if (process.argv.includes('--native')) {
      const native = await measureNativeIngest(packages);
      report += '\nNative CouchDB replication: ' + Math.round(native.docsPerSecond) + ' docs/s, registry CPU ' + native.cpuSeconds.toFixed(1) + ' s, peak RSS ' + Math.round(native.peakRss / 2 ** 20) + ' MiB\n';
    }
    process.stdout.write(report);
    return;
  }
  if (process.argv.includes('--real-tree')) {
    if (smoke) {
      // The tree is prepared from registry.npmjs.org and each install takes tens of seconds: not for --smoke.
      process.stdout.write('real tree: skipped in --smoke (it needs registry.npmjs.org to prepare its cache, and minutes per round); run `node dist/bench/run.js --real-tree --runs 5`\n');
      return;
    }
    const runs = Number(argument('--runs') || 5);
    const profiles = argument('--cpu-prof');
    const table = await runRealTree(runs, { cpuProfileDir: profiles });
    const report = header('Real-tree installs', runs + ' rounds') + table;
    process.stdout.write(report);
    // A profiled run measures the profiler too: its table is printed, not written.
    if (!profiles) writeFileSync(join(__dirname, '..', '..', 'bench', 'REAL-TREE.md'), report);
    return;
  }
  if (process.argv.includes('--pull-through')) {
    const rows = await runPullThrough(smoke ? 'smoke' : 'full', Number(argument('--runs') || 3));
    process.stdout.write(header('Pull-through install', 'the full tree') + markdownTable(rows) + '\n');
    return;
  }
  const scale = smoke ? 'smoke' : 'full';
  const rows = await runBenchmarks(scale);
  const report = header('Benchmark results', 'scale `' + scale + '`') + markdownTable(rows) + '\n';
  process.stdout.write(report);
  if (scale === 'full') writeFileSync(join(__dirname, '..', '..', 'bench', 'RESULTS.md'), report);
}

main().catch((err) => {
  process.stderr.write('benchmark failed: ' + (err as Error).stack + '\n');
  process.exit(1);
});
