import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { builtBin, runBin } from './test-support/built-bin.js';
import { tinyCifarDir } from './test-support/paths.js';

// End to end through the compiled bin (compiled once per test run by the global setup).
const bin = builtBin();
const bnmlp = (args: string[], env: Record<string, string | undefined> = {}) => runBin(bin, args, { env, timeoutMs: 120_000 });

describe('the bnmlp executable', () => {
  it('starts with a node shebang', () => {
    expect(readFileSync(bin, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
  });

  it('--help exits 0 and lists gradcheck', async () => {
    const { status, stdout } = await bnmlp(['--help']);
    expect(status).toBe(0);
    expect(stdout).toMatch(/^ {2}gradcheck /m);
  });

  it('gradcheck --json exits 0 with a JSON document, taking the data from $BNMLP_CIFAR_DIR', async () => {
    const { status, stdout, stderr } = await bnmlp(['gradcheck', '--json', '--layers', '2', '--hidden', '6'], { BNMLP_CIFAR_DIR: tinyCifarDir });
    expect(stderr).toBe('');
    expect(status).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc.passed).toBe(true);
    expect(doc.data).toMatchObject({ kind: 'env', dir: tinyCifarDir });
    expect(doc.configurations).toHaveLength(4);
  });

  it('a bad option value exits 2 with the message on stderr', async () => {
    const { status, stdout, stderr } = await bnmlp(['gradcheck', '--batch', 'ten']);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toBe("bnmlp gradcheck: option --batch must be an integer >= 2 (batch norm needs 2 rows), got 'ten'\n(see `bnmlp gradcheck --help`)\n");
  });
});
