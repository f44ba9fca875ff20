/** `npm run bench`: runs the benchmarks at full size, prints the table and writes bench/RESULTS.md. */
import { cpus, totalmem } from 'os';
import { writeFileSync } from 'fs';
import { join } from 'path';
import { markdownTable, runBenchmarks } from './harness';

async function main(): Promise<void> {
  const scale = process.argv.includes('--smoke') ? 'smoke' : 'full';
  const started = Date.now();
  const rows = await runBenchmarks(scale);
  const table = markdownTable(rows);
  const machine = cpus().length + ' cores (' + cpus()[0].model.trim() + '), ' + Math.round(totalmem() / 2 ** 30) + ' GiB, Node ' + process.version;
  const report = '# Benchmark results\n\nMeasured ' + new Date().toISOString().slice(0, 10) + ' on ' + machine + ', scale `' + scale + '`, in ' +
    Math.round((Date.now() - started) / 1000) + ' s.\n\n' + table + '\n';
  process.stdout.write(report);
  if (scale === 'full') writeFileSync(join(__dirname, '..', '..', 'bench', 'RESULTS.md'), report);
}

main().catch((err) => {
  process.stderr.write('benchmark failed: ' + (err as Error).stack + '\n');
  process.exit(1);
});
