import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defineConfig } from 'vitest/config';

// The repository's setup file (a turn of the event loop after each test), looked up from here
// because StrykerJS runs this config from a sandbox copy of the package, deeper in the tree.
function repositoryFile(path: string, from = import.meta.dirname): string {
  if (existsSync(join(from, path))) return join(from, path);
  if (dirname(from) === from) throw new Error(`vitest.config.ts: ${path} not found above ${import.meta.dirname}`);
  return repositoryFile(path, dirname(from));
}

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    reporters: ['default', ['json', { outputFile: 'test-results.json' }]],
    setupFiles: [repositoryFile('scripts/vitest-event-loop-turn.mjs'), 'src/test-support/fast-check-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
