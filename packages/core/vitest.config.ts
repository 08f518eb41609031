import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    setupFiles: ['../../scripts/vitest-event-loop-turn.mjs', 'src/test-support/fast-check-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
