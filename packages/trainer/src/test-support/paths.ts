import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findInAncestors } from '../shared-paths.js';

/**
 * The repository root: the nearest ancestor with pnpm-workspace.yaml (looked up, not counted:
 * StrykerJS runs the tests from a sandbox copy of the package, deeper in the tree).
 */
export const repoRoot = dirname(findInAncestors('pnpm-workspace.yaml', existsSync, [dirname(fileURLToPath(import.meta.url))]) ?? noRepository());

function noRepository(): never {
  throw new Error(`test-support/paths.ts: no pnpm-workspace.yaml above ${fileURLToPath(import.meta.url)}`);
}

export const fixturesDir = join(repoRoot, 'fixtures');
export const tinyCifarDir = join(fixturesDir, 'cifar-10-tiny');
