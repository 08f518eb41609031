import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    setupFiles: ['src/test-support/fast-check-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
