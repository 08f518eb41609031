import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    // fast-check's numRuns (FC_NUM_RUNS) and replay seed (FC_SEED) are set once, here.
    setupFiles: ['../../scripts/vitest-event-loop-turn.mjs', 'src/test-support/fast-check-setup.ts'],
    testTimeout: 120_000,
  },
});
