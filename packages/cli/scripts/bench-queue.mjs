// Runs the queue benchmark once: `node packages/cli/scripts/bench-queue.mjs [trials] [epochs]`.
// Compiles the CLI from the current sources into a scratch directory (never into dist/), then
// runs runQueueBench with that build's bin.js as the `bnmlp worker` processes. Needs
// /usr/bin/redis-server (or BNMLP_BENCH_REDIS_URL) and a built @bnmlp/trainer.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const cliRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(cliRoot, 'node_modules', '.cache', 'bnmlp-bench-queue');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: cliRoot, encoding: 'utf8' });
if (build.status !== 0) {
  process.stderr.write(`tsc failed:\n${build.stdout}${build.stderr}`);
  process.exit(1);
}
const { runQueueBench, formatQueueBench } = await import(pathToFileURL(join(outDir, 'commands', 'bench-queue.js')).href);
const [trials, epochs] = process.argv.slice(2).map(Number);
const result = await runQueueBench(
  { trials: trials || 8, epochs: epochs || 10, redisUrl: process.env.BNMLP_BENCH_REDIS_URL, bin: join(outDir, 'bin.js') },
  (message) => process.stderr.write(`${message}\n`),
);
process.stdout.write(`${formatQueueBench(result)}\n${JSON.stringify(result)}\n`);
