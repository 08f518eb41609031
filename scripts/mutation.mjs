#!/usr/bin/env node
// `pnpm mutation`: StrykerJS over @bnmlp/reference and @bnmlp/core (packages/<pkg>/stryker.config.mjs:
// vitest runner, per-test coverage, incremental), then the planted kernel bugs
// (packages/core/scripts/kernel-mutants.mjs, also `pnpm mutation:kernels`). Not part of `npm test`.
// @bnmlp/trainer only when asked for (`--package trainer`, usually with --mutate): its whole
// suite (Redis, trial processes, full-size data) is too slow to run per mutant over all of src.
// Prints the mutation score per file and per package, every surviving mutant (file:line, mutator,
// replacement), and where the HTML reports are (reports/mutation/<pkg>/index.html).
//
//   node scripts/mutation.mjs [--package reference|core|trainer] [--mutate 'src/a.ts,src/b.ts']
//                             [--concurrency N] [--no-kernels] [--report-only] [--ignore-static] [--events]
//
// --ignore-static: Stryker's ignoreStatic, for a quicker partial run: mutants in code that runs
// outside any test (module load, beforeAll: for core, the kernel registrations) are reported as
// Ignored instead of running the whole suite for each; a later run without it tests them (the
// incremental file keeps the rest).
// --events: also Stryker's event-recorder reporter, which writes each mutant's result as it is
// tested (packages/<pkg>/reports/mutation/events), so a run stopped early still shows what it found.
//
// Property tests run with a fixed fast-check seed (FC_SEED, default 12) so a run is repeatable and
// a mutant is never "killed" by a lucky draw; FC_NUM_RUNS defaults to 10 per property here (the
// packages' own defaults are 100 and 12) to keep a run within the hour on 2 cores. Set either in
// the environment to override. --report-only prints the tables of the last run without running.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGES = ['reference', 'core'];
const ON_REQUEST = ['trainer'];

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const chosen = option('package');
if (chosen !== undefined && ![...PACKAGES, ...ON_REQUEST].includes(chosen)) {
  console.error(`mutation: --package must be one of ${[...PACKAGES, ...ON_REQUEST].join(', ')}, got '${chosen}'`);
  process.exit(2);
}
const packages = chosen ? [chosen] : PACKAGES;
const mutate = option('mutate');
const reportOnly = args.includes('--report-only');
const env = {
  ...process.env,
  FC_SEED: process.env.FC_SEED ?? '12',
  FC_NUM_RUNS: process.env.FC_NUM_RUNS ?? '10',
  STRYKER_CONCURRENCY: option('concurrency') ?? process.env.STRYKER_CONCURRENCY ?? '1',
  // Read by scripts/stryker-config.mjs: adds the event-recorder reporter to the configured ones.
  ...(args.includes('--events') ? { STRYKER_EVENTS: '1' } : {}),
};

const DETECTED = new Set(['Killed', 'Timeout']);
const UNDETECTED = new Set(['Survived', 'NoCoverage']);

/** Per-file and total counts from a Stryker JSON report (mutation-testing-report-schema). */
function summarize(report) {
  const rows = [];
  const survivors = [];
  const total = { detected: 0, undetected: 0, killed: 0, timeout: 0, survived: 0, noCoverage: 0, errors: 0 };
  for (const [file, { mutants }] of Object.entries(report.files).sort(([a], [b]) => a.localeCompare(b))) {
    const c = { detected: 0, undetected: 0, killed: 0, timeout: 0, survived: 0, noCoverage: 0, errors: 0 };
    for (const m of mutants) {
      if (DETECTED.has(m.status)) c.detected++;
      if (UNDETECTED.has(m.status)) c.undetected++;
      if (m.status === 'Killed') c.killed++;
      if (m.status === 'Timeout') c.timeout++;
      if (m.status === 'Survived') c.survived++;
      if (m.status === 'NoCoverage') c.noCoverage++;
      if (m.status === 'CompileError' || m.status === 'RuntimeError') c.errors++;
      if (UNDETECTED.has(m.status))
        survivors.push(`${file}:${m.location.start.line}:${m.location.start.column} ${m.status} ${m.mutatorName}: ${JSON.stringify(m.replacement ?? '').slice(0, 100)}`);
    }
    for (const k of Object.keys(total)) total[k] += c[k];
    rows.push([file, c]);
  }
  return { rows, total, survivors };
}

const score = (c) => (c.detected + c.undetected === 0 ? 'n/a' : `${((100 * c.detected) / (c.detected + c.undetected)).toFixed(2)}%`);

function printTable(pkg, { rows, total, survivors }) {
  const header = ['file', 'score', 'killed', 'timeout', 'survived', 'no cov', 'errors'];
  const body = [...rows, ['all files', total]].map(([file, c]) => [file, score(c), c.killed, c.timeout, c.survived, c.noCoverage, c.errors].map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  console.log(`\n@bnmlp/${pkg}: mutation score ${score(total)}`);
  console.log(line(header));
  for (const r of body) console.log(line(r));
  if (survivors.length) {
    console.log(`\nsurvivors (${survivors.length}):`);
    for (const s of survivors) console.log(`  ${s}`);
  }
  console.log(`HTML report: ${relative(process.cwd(), join(root, 'reports', 'mutation', pkg, 'index.html'))}`);
}

let status = 0;
for (const pkg of packages) {
  const cwd = join(root, 'packages', pkg);
  if (!reportOnly) {
    const strykerArgs = ['run', 'stryker.config.mjs', ...(mutate ? ['--mutate', mutate] : []), ...(args.includes('--ignore-static') ? ['--ignoreStatic'] : [])];
    console.error(`mutation: @bnmlp/${pkg}: stryker ${strykerArgs.join(' ')} (FC_SEED=${env.FC_SEED}, FC_NUM_RUNS=${env.FC_NUM_RUNS}, concurrency ${env.STRYKER_CONCURRENCY})`);
    const stryker = join(dirname(fileURLToPath(import.meta.resolve('@stryker-mutator/core/package.json'))), 'bin', 'stryker.js');
    const result = spawnSync(process.execPath, [stryker, ...strykerArgs], { cwd, env, stdio: 'inherit' });
    if (result.status !== 0) {
      console.error(`mutation: stryker failed for @bnmlp/${pkg} (exit ${result.status})`);
      status = 1;
      continue;
    }
  }
  const file = join(root, 'reports', 'mutation', pkg, 'mutation.json');
  if (!existsSync(file)) {
    console.error(`mutation: no report at ${file}`);
    status = 1;
    continue;
  }
  printTable(pkg, summarize(JSON.parse(readFileSync(file, 'utf8'))));
}

if (!args.includes('--no-kernels') && !reportOnly && (!chosen || chosen === 'core')) {
  console.error('\nmutation: planted kernel bugs (packages/core/scripts/kernel-mutants.mjs)');
  const result = spawnSync(process.execPath, [join(root, 'packages', 'core', 'scripts', 'kernel-mutants.mjs')], { stdio: 'inherit' });
  if (result.status !== 0) status = 1;
}
process.exit(status);
