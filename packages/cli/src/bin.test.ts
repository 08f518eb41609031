import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cliRoot, tinyCifarDir } from './test-support/paths.js';

// End to end through the compiled bin. It is compiled from the current sources into a scratch
// directory inside node_modules (so @bnmlp/* still resolve), never into dist/, which a concurrent
// build may be writing.
const outDir = join(cliRoot, 'node_modules', '.cache', 'bnmlp-cli-e2e');
const bin = join(outDir, 'bin.js');

function bnmlp(args: string[], env: Record<string, string | undefined> = {}) {
  const result = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(() => {
  rmSync(outDir, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: cliRoot, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`tsc failed:\n${build.stdout}${build.stderr}`);
});

describe('the bnmlp executable', () => {
  it('starts with a node shebang', () => {
    expect(readFileSync(bin, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
  });

  it('--help exits 0 and lists gradcheck', () => {
    const { status, stdout } = bnmlp(['--help']);
    expect(status).toBe(0);
    expect(stdout).toMatch(/^ {2}gradcheck /m);
  });

  it('gradcheck --json exits 0 with a JSON document, taking the data from $BNMLP_CIFAR_DIR', () => {
    const { status, stdout, stderr } = bnmlp(['gradcheck', '--json', '--layers', '2', '--hidden', '6'], { BNMLP_CIFAR_DIR: tinyCifarDir });
    expect(stderr).toBe('');
    expect(status).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.passed).toBe(true);
    expect(doc.data).toMatchObject({ kind: 'env', dir: tinyCifarDir });
    expect(doc.configurations).toHaveLength(4);
  });

  it('a bad option value exits 2 with the message on stderr', () => {
    const { status, stdout, stderr } = bnmlp(['gradcheck', '--batch', 'ten']);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toBe("bnmlp gradcheck: option --batch must be an integer >= 2 (batch norm needs 2 rows), got 'ten'\n(see `bnmlp gradcheck --help`)\n");
  });
});
