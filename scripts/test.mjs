#!/usr/bin/env node
// The README's test command after setup: every package's tests through turbo (continuing past a
// failing package so all of them report), then one closing line over all packages,
// "tests: N passed, N failed, N skipped", read from each package's vitest JSON report.
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPnpm } from './pnpm.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const reports = readdirSync(join(root, 'packages')).map((name) => [name, join(root, 'packages', name, 'test-results.json')]);
for (const [, file] of reports) rmSync(file, { force: true });

const status = runPnpm(['exec', 'turbo', 'run', 'test', '--continue', ...process.argv.slice(2)]);

const totals = { passed: 0, failed: 0, skipped: 0 };
const lines = [];
for (const [name, file] of reports) {
  if (!existsSync(file)) {
    lines.push(`  ${name}: no report (its test task did not run to the end)`);
    continue;
  }
  const r = JSON.parse(readFileSync(file, 'utf8'));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  totals.passed += r.numPassedTests;
  totals.failed += r.numFailedTests;
  totals.skipped += skipped;
  lines.push(`  ${name}: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped (${r.numTotalTestSuites} suites)`);
}
console.log(`\n${lines.join('\n')}`);
console.log(`tests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(status !== 0 ? status : totals.failed > 0 ? 1 : 0);
