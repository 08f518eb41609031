// StrykerJS settings shared by @bnmlp/reference and @bnmlp/core (not part of CI); each package's
// stryker.config.mjs names itself. Run through the root driver, `pnpm mutation` (docs/mutation.md):
// it sets the fixed fast-check seed and prints the score per file.
/** @returns {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export function strykerConfig(name) {
  return {
    packageManager: 'pnpm',
    testRunner: 'vitest',
    vitest: { configFile: 'vitest.config.ts' },
    plugins: ['@stryker-mutator/vitest-runner'],
    coverageAnalysis: 'perTest',
    // Test support (arbitraries, comparison helpers) is part of the tests, not of the code under test.
    mutate: ['src/**/*.ts', '!src/**/*.test.ts', '!src/test-support/**'],
    // TypeScript sources only (assembly/ is AssemblyScript, which Babel cannot parse).
    disableTypeChecks: 'src/**/*.ts',
    ignorePatterns: ['dist', 'test-results.json', 'coverage'],
    incremental: true,
    incrementalFile: `../../reports/mutation/${name}/stryker-incremental.json`,
    tempDirName: '.stryker-tmp',
    cleanTempDir: true,
    concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 1),
    timeoutMS: 60_000,
    timeoutFactor: 2,
    // STRYKER_EVENTS (`pnpm mutation -- --events`): also each mutant's result as it is tested.
    reporters: ['clear-text', 'progress-append-only', 'html', 'json', ...(process.env.STRYKER_EVENTS ? ['event-recorder'] : [])],
    htmlReporter: { fileName: `../../reports/mutation/${name}/index.html` },
    jsonReporter: { fileName: `../../reports/mutation/${name}/mutation.json` },
    clearTextReporter: { allowColor: false, logTests: false, reportMutants: true, reportScoreTable: true },
    thresholds: { high: 90, low: 80, break: null },
  };
}
