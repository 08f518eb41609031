import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { locateSharedCifar } from '@bnmlp/trainer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { locateTinyFixture, resolveDataSource } from './data-source.js';
import { CliArgumentError } from './errors.js';
import { cliRoot, tinyCifarDir } from './test-support/paths.js';

const nowhere = resolve('/nonexistent-bnmlp-test/a/b');

function thrown(fn: () => unknown): CliArgumentError {
  try {
    fn();
  } catch (error) {
    return error as CliArgumentError;
  }
  throw new Error('expected a throw');
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bnmlp-cli-data-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('resolveDataSource', () => {
  it('uses --data when given, relative to the working directory, and rejects a non-CIFAR directory', () => {
    const source = resolveDataSource('bnmlp gradcheck', '--data', 'fixtures/cifar-10-tiny', { cwd: resolve(cliRoot, '..', '..') });
    expect(source).toMatchObject({ kind: 'option', dir: tinyCifarDir });
    expect(source.description).toBe(`CIFAR-10 binary data from ${tinyCifarDir} (given by --data)`);
    expect(source.format).toBe('binary');
    const error = thrown(() => resolveDataSource('bnmlp gradcheck', '--data', tmp));
    expect(error).toBeInstanceOf(CliArgumentError);
    expect([error.op, error.argument, error.actual]).toEqual(['bnmlp gradcheck', '--data', `'${tmp}'`]);
  });

  it('prefers $BNMLP_CIFAR_DIR, and names it when it is wrong', () => {
    const source = resolveDataSource('op', '--data', null, { env: { BNMLP_CIFAR_DIR: tinyCifarDir }, cwd: nowhere, moduleDir: nowhere });
    expect(source).toMatchObject({ kind: 'env', dir: tinyCifarDir });
    expect(source.description).toContain('$BNMLP_CIFAR_DIR');
    const error = thrown(() => resolveDataSource('op', '--data', null, { env: { BNMLP_CIFAR_DIR: tmp }, cwd: nowhere, moduleDir: nowhere }));
    expect(error).toBeInstanceOf(CliArgumentError);
    expect(error.argument).toBe('$BNMLP_CIFAR_DIR');
  });

  it('finds the shared subset above the working directory', () => {
    const shared = join(tmp, 'work', 'shared', 'datasets', 'cifar-10-subset');
    mkdirSync(shared, { recursive: true });
    writeFileSync(join(shared, 'data_batch_1.bin'), new Uint8Array(3073));
    const cwd = join(tmp, 'work', 'main');
    mkdirSync(cwd, { recursive: true });
    expect(resolveDataSource('op', '--data', null, { env: {}, cwd, moduleDir: nowhere })).toMatchObject({ kind: 'shared', dir: shared });
  });

  it('falls back to the repository fixture, saying it is synthetic, when there is no shared subset', () => {
    const source = resolveDataSource('op', '--data', null, { env: {}, locateShared: () => null });
    expect(source).toMatchObject({ kind: 'fixture', dir: tinyCifarDir });
    expect(source.description).toContain('synthetic images, not CIFAR-10');
    expect(locateTinyFixture(join(cliRoot, 'dist'))).toBe(tinyCifarDir);
  });

  it('asks for --data when neither exists', () => {
    const error = thrown(() => resolveDataSource('bnmlp gradcheck', '--data', null, { env: {}, locateShared: () => null, moduleDir: nowhere }));
    expect(error).toBeInstanceOf(CliArgumentError);
    expect(error.argument).toBe('--data');
    expect(error.message).toContain('nor fixtures/cifar-10-tiny was found');
  });

  it('by default says which data it found (the shared subset when present, else the fixture)', () => {
    const shared = locateSharedCifar();
    const source = resolveDataSource('op', '--data', null);
    expect(source.dir).toBe(shared ?? tinyCifarDir);
    expect(source.kind).toBe(shared ? (process.env.BNMLP_CIFAR_DIR ? 'env' : 'shared') : 'fixture');
  });
});
