import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This file is packages/cli/src/test-support/paths.ts. */
export const cliRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const repoRoot = resolve(cliRoot, '..', '..');
export const tinyCifarDir = join(repoRoot, 'fixtures', 'cifar-10-tiny');
