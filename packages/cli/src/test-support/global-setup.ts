import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { cliRoot } from './paths.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The CLI compiled from the current sources, shared by every end-to-end test file. */
    bnmlpBin: string;
  }
}

/**
 * Compiles the CLI once per test run, before any test file starts, into a scratch directory inside
 * node_modules (so @bnmlp/* still resolve), never into dist/, which a concurrent build may be
 * writing. It is compiled here and not in each file's beforeAll because a synchronous compile in a
 * test worker blocks vitest's worker RPC: on a loaded 2-core machine the compile outlasted the
 * RPC's 60 s timeout and failed the run with "Timeout calling onTaskUpdate".
 */
export default async function setup(project: TestProject): Promise<void> {
  const outDir = join(cliRoot, 'node_modules', '.cache', 'bnmlp-test-bin');
  rmSync(outDir, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    await promisify(execFile)(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: cliRoot, encoding: 'utf8' });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`tsc failed to compile the CLI for the end-to-end tests:\n${stdout}${stderr}`);
  }
  project.provide('bnmlpBin', join(outDir, 'bin.js'));
}
